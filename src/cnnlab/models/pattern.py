"""The lesson's pattern notation as a network builder.

    INPUT => [[CONV => RELU]*N => POOL?]*M => [FC => RELU]*K => FC

``from_pattern(text, input_shape, num_classes, **options)`` parses such a text and builds the network it
describes. The grammar:

    pattern := ["INPUT" "=>"] item ("=>" item)*
    item    := "[" pattern "]" ["*" count]  |  LAYER ["?"] ["(" args ")"] ["*" count]
    count   := integer | a variable name given as an option (N=2, M=3, K=2)
    args    := value ("," value)* with "name=value" allowed (CONV(96, 11, stride=4, padding=valid))

Layers: CONV (filters, kernel, stride, padding, groups), POOL (size, stride, kind: max or avg), MAXPOOL and
AVGPOOL (size, stride), FC (units), RELU / TANH / SIGMOID / ELU / GELU / LEAKYRELU, BN, DROPOUT (rate), LRN,
FLATTEN, SOFTMAX.
``X?`` marks an optional layer, built when the option ``optional=True`` (the default) and left out otherwise.
A Flatten is inserted before the first FC after spatial layers; the last FC without a width gets
``num_classes``; BN becomes BatchNorm2d or BatchNorm1d by where it stands.

Whatever a layer's arguments leave open comes from the options, per stage (a stage ends at each pool):
``filters`` (an int, doubled per stage by ``filter_growth``, or a list per stage), ``kernel_size`` (3),
``stride`` (1), ``padding`` ("same"), ``pool`` ("max"), ``pool_size`` (2), ``pool_stride`` (the size),
``fc`` (hidden widths, an int or a list), ``dropout`` (0.5, or a list), ``activation`` (what RELU builds).

``same_padding``: "keras" (the default) pads as Keras' Conv2D(padding="same") with any kernel and stride; "centred"
is k // 2 on every side at stride 1, the rule of runs written before run format 3, which for an even kernel gives
one pixel more than Keras' (the run directory reads such runs with it).
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace

from torch import nn

from ..errors import UsageError, expect_type, image_shape, whole_number
from .layers import AvgPool2d, KerasSameConv2d, Tanh
from .registry import register_model


class PatternError(UsageError):
    """Malformed pattern text; the message shows the position and what was expected there."""

    def __init__(self, text: str, pos: int, expected: str):
        found = repr(text[pos : pos + 12]) if pos < len(text) else "the end"
        super().__init__(
            f"pattern error at position {pos + 1}: expected {expected}, found {found}\n  {text}\n  {' ' * pos}^"
        )
        self.pos = pos


# --- parsing ----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<arrow>=>)|(?P<lbr>\[)|(?P<rbr>\])|(?P<star>\*)|(?P<q>\?)|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<eq>=)|"
    r"(?P<name>[A-Za-z_][A-Za-z_0-9.]*)|(?P<num>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))"
)


@dataclass
class Layer:
    kind: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    optional: bool = False
    pos: int = 0


@dataclass
class Group:
    items: list
    count: object = 1  # int or variable name
    pos: int = 0


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = []  # (kind, value, pos)
        pos = 0
        while text[pos:].strip():
            m = _TOKEN.match(text, pos)
            if not m:
                start = len(text) - len(text[pos:].lstrip())
                raise PatternError(text, start, "a layer name, '[', ']', '=>', '*', '(' or a number")
            self.tokens.append((m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
            pos = m.end()
        self.i = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", None, len(self.text))

    def accept(self, kind) -> bool:
        """Consume the next token if it is a ``kind``."""
        if self.peek()[0] != kind:
            return False
        self.i += 1
        return True

    def take(self, kind, expected):
        if not self.accept(kind):
            raise PatternError(self.text, self.peek()[2], expected)

    def parse(self) -> list:
        kind, value, _ = self.peek()
        if kind == "name" and value.upper() == "INPUT":
            self.i += 1
            if self.peek()[0] != "end":
                self.take("arrow", "'=>' after INPUT")
        items = self.sequence()
        self.take("end", "'=>' or the end of the pattern")
        return items

    def sequence(self) -> list:
        items = [self.item()]
        while self.accept("arrow"):
            items.append(self.item())
        return items

    def count(self):
        if not self.accept("star"):
            return 1
        kind, value, pos = self.peek()
        if kind == "name" or (kind == "num" and value.isdigit()):
            self.i += 1
            return value if kind == "name" else int(value)
        raise PatternError(self.text, pos, "a repeat count (a whole number or a name such as N) after '*'")

    def item(self):
        kind, value, pos = self.peek()
        if self.accept("lbr"):
            items = self.sequence()
            self.take("rbr", f"']' to close the group opened at position {pos + 1}")
            return Group(items, self.count(), pos)
        if kind == "name":
            name = value.upper()
            if name not in LAYERS:
                raise PatternError(self.text, pos, f"a layer ({', '.join(sorted(LAYERS))})")
            self.i += 1
            layer = Layer(name, optional=self.accept("q"), pos=pos)
            if self.accept("lp"):
                self.arguments(layer)
            count = self.count()
            return layer if count == 1 else Group([layer], count, pos)
        raise PatternError(self.text, pos, "a layer name or '['")

    def arguments(self, layer: Layer):
        if self.accept("rp"):
            return
        while True:
            kind, value, pos = self.peek()
            if kind == "name" and self.i + 1 < len(self.tokens) and self.tokens[self.i + 1][0] == "eq":
                self.i += 2
                layer.kwargs[value] = self.value()
            elif kind in ("num", "name"):
                if layer.kwargs:
                    raise PatternError(self.text, pos, "name=value (positional arguments come first)")
                layer.args.append(self.value())
            else:
                raise PatternError(self.text, pos, "an argument (a number, a word or name=value)")
            if not self.accept("comma"):
                self.take("rp", "',' or ')' in the argument list")
                return

    def value(self):
        kind, value, pos = self.peek()
        self.i += 1
        if kind == "num":
            return float(value) if any(c in value for c in ".eE") else int(value)
        if kind == "name":
            return {"true": True, "false": False, "none": None}.get(value.lower(), value)
        raise PatternError(self.text, pos, "a value")


def parse_pattern(text: str) -> list:
    """The pattern's syntax tree (``Layer`` and ``Group`` items); raises ``PatternError``."""
    return _Parser(text).parse()


# --- building ---------------------------------------------------------------------------------------

ACTIVATIONS = {
    "RELU": nn.ReLU,
    "TANH": Tanh,
    "SIGMOID": nn.Sigmoid,
    "ELU": nn.ELU,
    "GELU": nn.GELU,
    "LEAKYRELU": nn.LeakyReLU,
}


def _per_stage(value, stage: int, growth: float = 1.0):
    if isinstance(value, (list, tuple)):
        return value[min(stage, len(value) - 1)]
    return int(round(value * growth**stage)) if growth != 1.0 else value


POOL_KINDS = ("max", "avg")
SAME_PADDING = ("keras", "centred")  # see the module docstring


class PatternNet(nn.Sequential):
    """A network built from a pattern; ``pattern`` holds its text."""

    pattern: str = ""


class _Builder:
    """Walks the syntax tree in order, following the volume's shape (c, h, w until the first FC, then ``flat``
    units), and collects the (kind, module) pairs of the network."""

    def __init__(self, text: str, input_shape, total_fc: int, **options):
        self.text, self.total_fc = text, total_fc
        self.o = SimpleNamespace(**options)  # from_pattern's: what a layer's own arguments leave open
        self.c, self.h, self.w = (int(v) for v in input_shape)
        self.flat: int | None = None  # the width once the volume is flattened
        self.stage = self.fc_index = self.drop_index = 0
        self.layers: list[tuple[str, nn.Module]] = []

    def fail(self, layer: Layer, message: str):
        raise PatternError(self.text, layer.pos, message)

    def build(self, item) -> None:
        if isinstance(item, Group):
            for _ in range(self.repeats(item)):
                for sub in item.items:
                    self.build(sub)
        elif not item.optional or self.o.optional:
            _BUILDERS[item.kind](self, item, item.args, dict(item.kwargs))

    def repeats(self, group: Group) -> int:
        count = group.count
        if isinstance(count, str):
            if count not in self.o.variables:
                raise PatternError(self.text, group.pos, f"a value for {count} (pass {count}=... as an option)")
            count = self.o.variables[count]
        if not isinstance(count, int) or count < 0:
            raise PatternError(self.text, group.pos, f"a whole-number repeat count, got {count!r}")
        return count

    def shrink(self, layer: Layer, what: str, k: int, s: int, p: int) -> None:
        self.h, self.w = ((side + 2 * p - k) // s + 1 for side in (self.h, self.w))  # floor, as PyTorch and Keras
        if min(self.h, self.w) < 1:
            self.fail(layer, f"a larger input: the volume shrinks below 1x1 at this {what}")

    def conv(self, layer: Layer, a: list, kw: dict) -> None:
        o = self.o
        if self.flat is not None:
            self.fail(layer, "no CONV after an FC (the volume is flat by then)")
        out = int(a[0]) if len(a) > 0 else _per_stage(o.filters, self.stage, o.filter_growth)
        k = int(a[1]) if len(a) > 1 else int(kw.pop("kernel", kw.pop("kernel_size", o.kernel_size)))
        s = int(kw.pop("stride", o.stride))
        pad = kw.pop("padding", o.padding)
        groups = int(kw.pop("groups", 1))
        if kw:
            self.fail(layer, f"CONV options filters, kernel, stride, padding, groups (not {', '.join(kw)})")
        if isinstance(pad, str) and pad not in ("same", "valid"):
            self.fail(layer, f"padding same, valid or a number of pixels (not {pad!r})")
        if pad == "same" and s != 1 and o.same_padding == "centred":
            self.fail(layer, "padding=same with stride 1 (same_padding='centred' has no rule for strides)")
        if self.c % groups or out % groups:
            self.fail(layer, f"channels divisible by groups={groups}")
        if pad == "same" and (k % 2 == 0 or s != 1) and o.same_padding == "keras":
            conv = KerasSameConv2d(self.c, out, k, stride=s, groups=groups)  # uneven, or by the input's size
            self.h, self.w = -(-self.h // s), -(-self.w // s)
        else:  # an odd kernel's "same" at stride 1 is k // 2 on every side in both rules
            p = (k // 2 if pad == "same" else 0) if isinstance(pad, str) else int(pad)
            conv = nn.Conv2d(self.c, out, k, stride=s, padding=p, groups=groups)
            self.shrink(layer, "CONV", k, s, p)
        self.c = out
        self.layers.append(("conv", conv))

    def pool(self, layer: Layer, a: list, kw: dict) -> None:
        if self.flat is not None:
            self.fail(layer, "no POOL after an FC (the volume is flat by then)")
        size = int(a[0]) if len(a) > 0 else int(kw.pop("size", self.o.pool_size))
        stride = int(a[1]) if len(a) > 1 else int(kw.pop("stride", self.o.pool_stride or size))
        # MAXPOOL and AVGPOOL name their kind; only POOL takes one (kind= on them is refused below)
        kind = kw.pop("kind", self.o.pool) if layer.kind == "POOL" else {"MAXPOOL": "max", "AVGPOOL": "avg"}[layer.kind]
        if kind not in POOL_KINDS:
            self.fail(layer, f"POOL kind max or avg (not {kind!r})")
        if kw:
            takes = "size, stride, kind" if layer.kind == "POOL" else "size, stride"
            self.fail(layer, f"{layer.kind} options {takes} (not {', '.join(kw)})")
        self.shrink(layer, "POOL", size, stride, 0)
        self.stage += 1  # a stage ends at each pool
        self.layers.append(("pool", nn.MaxPool2d(size, stride) if kind == "max" else AvgPool2d(size, stride)))

    def flatten(self, layer=None, a=(), kw=None) -> None:
        if self.flat is None:
            self.layers.append(("flatten", nn.Flatten()))
            self.flat = self.c * self.h * self.w

    def fc(self, layer: Layer, a: list, kw: dict) -> None:
        self.flatten()
        self.fc_index += 1
        widths = self.o.fc
        if a:
            units = int(a[0])
        elif self.fc_index == self.total_fc:  # the last FC is the classifier
            units = self.o.num_classes
        elif isinstance(widths, (list, tuple)):
            units = widths[min(self.fc_index - 1, len(widths) - 1)]
        else:
            units = int(widths)
        self.layers.append(("fc", nn.Linear(self.flat, units)))
        self.flat = units

    def activation(self, layer: Layer, a: list, kw: dict) -> None:
        self.layers.append(("act", ACTIVATIONS[self.o.activation if layer.kind == "RELU" else layer.kind]()))

    def bn(self, layer: Layer, a: list, kw: dict) -> None:
        self.layers.append(("bn", nn.BatchNorm2d(self.c) if self.flat is None else nn.BatchNorm1d(self.flat)))

    def dropout(self, layer: Layer, a: list, kw: dict) -> None:
        rate = float(a[0]) if a else _per_stage(self.o.dropout, self.drop_index)
        self.drop_index += 1
        self.layers.append(("dropout", nn.Dropout(rate)))

    def lrn(self, layer: Layer, a: list, kw: dict) -> None:
        self.layers.append(("lrn", nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)))

    def softmax(self, layer: Layer, a: list, kw: dict) -> None:
        self.layers.append(("softmax", nn.Softmax(dim=1)))

    def network(self) -> PatternNet:
        """conv1, act1, pool1, ..., fc3: names a reader can match to the text."""
        counts: dict[str, int] = {}
        named = OrderedDict()
        for kind, module in self.layers:
            counts[kind] = counts.get(kind, 0) + 1
            named[f"{kind}{counts[kind]}"] = module
        net = PatternNet(named)
        net.pattern = self.text
        return net


_BUILDERS = {
    "CONV": _Builder.conv, "POOL": _Builder.pool, "MAXPOOL": _Builder.pool, "AVGPOOL": _Builder.pool,
    "FLATTEN": _Builder.flatten, "FC": _Builder.fc, "BN": _Builder.bn, "DROPOUT": _Builder.dropout,
    "LRN": _Builder.lrn, "SOFTMAX": _Builder.softmax, **{kind: _Builder.activation for kind in ACTIVATIONS},
}  # fmt: skip
LAYERS = set(_BUILDERS)  # the layer names the notation knows


def from_pattern(
    text: str,
    input_shape=(1, 28, 28),
    num_classes: int = 10,
    *,
    filters=32,
    filter_growth=2.0,
    kernel_size=3,
    stride=1,
    padding="same",
    pool="max",
    pool_size=2,
    pool_stride=None,
    fc=128,
    dropout=0.5,
    activation="relu",
    optional=True,
    same_padding="keras",
    **variables,
) -> PatternNet:
    """Build the network that ``text`` describes for input ``(C, H, W)``; see the module's docstring."""
    expect_type(text, str, "from_pattern(): text", "a pattern such as 'INPUT => [CONV => RELU => POOL]*2 => FC'")
    input_shape = image_shape(input_shape, "from_pattern(): input_shape")
    num_classes = whole_number(num_classes, "from_pattern(): num_classes")
    tree = parse_pattern(text)
    if same_padding not in SAME_PADDING:
        raise UsageError(f"same_padding must be one of {', '.join(SAME_PADDING)}, got {same_padding!r}")
    if pool not in POOL_KINDS:
        raise UsageError(f"pool must be one of {', '.join(POOL_KINDS)}, got {pool!r}")
    act_name = activation.upper().replace("_", "")
    if act_name not in ACTIVATIONS:
        raise UsageError(f"activation must be one of {', '.join(k.lower() for k in ACTIVATIONS)}, got {activation!r}")
    counts = count_names(tree)
    if unused := sorted(set(variables) - counts):
        options = [name for name, p in inspect.signature(from_pattern).parameters.items() if p.kind == p.KEYWORD_ONLY]
        close = difflib.get_close_matches(unused[0], [*options, *counts], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"from_pattern(): {unused[0]}={variables[unused[0]]!r} is neither an option nor a repeat count of this "
            f"pattern{hint}; options: {', '.join(options)}; counts: {', '.join(sorted(counts)) or 'none'}"
        )
    builder = _Builder(
        text, input_shape, _count_fc(tree, variables), num_classes=num_classes, filters=filters,
        filter_growth=filter_growth, kernel_size=kernel_size, stride=stride, padding=padding, pool=pool,
        pool_size=pool_size, pool_stride=pool_stride, fc=fc, dropout=dropout, activation=act_name, optional=optional,
        same_padding=same_padding, variables=variables,
    )  # fmt: skip
    for item in tree:
        builder.build(item)
    return builder.network()


def options_before_format_3(options: dict) -> dict:
    """A pattern network's options as runs before run format 3 recorded them, for today's builder: their "same"
    padding was centred, and a count their text does not use was dropped without a word (refused today)."""
    used = count_names(parse_pattern(options.get("text", LESSON)))
    return {"same_padding": "centred", **{k: v for k, v in options.items() if k not in ("N", "M", "K") or k in used}}


def count_names(tree) -> set[str]:
    """The variables a pattern's repeat counts name (N, M, K in the lesson's)."""
    names = set()
    for item in tree:
        if isinstance(item, Group):
            names |= count_names(item.items) | ({item.count} if isinstance(item.count, str) else set())
    return names


def _count_fc(tree, variables) -> int:
    def count(item):
        if isinstance(item, Group):
            n = item.count if isinstance(item.count, int) else variables.get(item.count, 0)
            return (n if isinstance(n, int) else 0) * sum(count(i) for i in item.items)
        return 1 if item.kind == "FC" else 0

    return sum(count(i) for i in tree)


# --- the lesson's networks in the notation ----------------------------------------------------------

LENET5 = (
    "INPUT => CONV(6, 5) => TANH => AVGPOOL(2) => CONV(16, 5, padding=valid) => TANH => AVGPOOL(2) "
    "=> FC(120) => TANH => FC(84) => TANH => FC"
)
ALEXNET_BN = (
    "INPUT => CONV(96, 11, stride=4, padding=valid) => RELU => BN => POOL(3, 2) => DROPOUT(0.25) "
    "=> CONV(256, 5) => RELU => BN => POOL(3, 2) => DROPOUT(0.25) "
    "=> [CONV(384, 3) => RELU => BN]*2 => CONV(256, 3) => RELU => BN => POOL(3, 2) => DROPOUT(0.25) "
    "=> [FC(4096) => RELU => BN => DROPOUT(0.5)]*2 => FC"
)
ALEXNET = (
    "INPUT => CONV(96, 11, stride=4, padding=valid) => RELU => LRN => POOL(3, 2) "
    "=> CONV(256, 5, groups=2) => RELU => LRN => POOL(3, 2) => CONV(384, 3) => RELU "
    "=> CONV(384, 3, groups=2) => RELU => CONV(256, 3, groups=2) => RELU => POOL(3, 2) "
    "=> [DROPOUT(0.5) => FC(4096) => RELU]*2 => FC"
)
LESSON = "INPUT => [[CONV => RELU]*N => POOL?]*M => [FC => RELU]*K => FC"


@register_model(input_size=(1, 28, 28))
def pattern(
    text: str = LESSON,
    num_classes: int = 10,
    in_chans: int = 1,
    img_size: int = 28,
    N: int = 2,
    M: int = 2,
    K: int = 1,
    filters=32,
    filter_growth: float = 2.0,
    kernel_size: int = 3,
    stride: int = 1,
    padding="same",
    pool: str = "max",
    pool_size: int = 2,
    pool_stride=None,
    fc=128,
    dropout=0.5,
    activation: str = "relu",
    optional: bool = True,
    same_padding: str = "keras",
) -> nn.Module:
    """A network from the lesson's pattern notation (default: the lesson's generic pattern, N=2, M=2, K=1)."""
    used = count_names(parse_pattern(text))
    if other := sorted(used - {"N", "M", "K"}):  # from_pattern counts with any name; this model's options are three
        raise UsageError(f"pattern: a repeat count is N, M, K or a whole number here, not {other[0]} (*{other[0]})")
    for name, value in dict(N=N, M=M, K=K).items():  # every run records all three, so the defaults pass
        if name not in used and value != inspect.signature(pattern).parameters[name].default:
            raise UsageError(
                f"pattern: {name}={value!r} is not a repeat count of this pattern; its counts: "
                f"{', '.join(sorted(used)) or 'none'}"
            )
    counts = {name: value for name, value in dict(N=N, M=M, K=K).items() if name in used}
    return from_pattern(
        text, (in_chans, img_size, img_size), num_classes, filters=filters, filter_growth=filter_growth,
        kernel_size=kernel_size, stride=stride, padding=padding, pool=pool, pool_size=pool_size,
        pool_stride=pool_stride, fc=fc, dropout=dropout, activation=activation, optional=optional,
        same_padding=same_padding, **counts,
    )  # fmt: skip
