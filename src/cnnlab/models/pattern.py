"""The lesson's pattern notation as a network builder.

    INPUT => [[CONV => RELU]*N => POOL?]*M => [FC => RELU]*K => FC

``from_pattern(text, input_shape, num_classes, **options)`` parses such a text and builds the network it
describes. The grammar:

    pattern := ["INPUT" "=>"] item ("=>" item)*
    item    := "[" pattern "]" ["*" count]  |  LAYER ["?"] ["(" args ")"] ["*" count]
    count   := integer | a variable name given as an option (N=2, M=3, K=2)
    args    := value ("," value)* with "name=value" allowed (CONV(96, 11, stride=4, padding=valid))

Layers: CONV (filters, kernel, stride, padding, groups), POOL / MAXPOOL / AVGPOOL (size, stride), FC (units),
RELU / TANH / SIGMOID / ELU / GELU / LEAKYRELU, BN, DROPOUT (rate), LRN, FLATTEN, SOFTMAX.
``X?`` marks an optional layer, built when the option ``optional=True`` (the default) and left out otherwise.
A Flatten is inserted before the first FC after spatial layers; the last FC without a width gets
``num_classes``; BN becomes BatchNorm2d or BatchNorm1d by where it stands.

Whatever a layer's arguments leave open comes from the options, per stage (a stage ends at each pool):
``filters`` (an int, doubled per stage by ``filter_growth``, or a list per stage), ``kernel_size`` (3),
``stride`` (1), ``padding`` ("same"), ``pool`` ("max"), ``pool_size`` (2), ``pool_stride`` (the size),
``fc`` (hidden widths, an int or a list), ``dropout`` (0.5, or a list), ``activation`` (what RELU builds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from ..errors import UsageError
from .layers import AvgPool2d, Tanh
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
    r"\s*(?:(=>)|(\[)|(\])|(\*)|(\?)|(\()|(\))|(,)|(=)|([A-Za-z_][A-Za-z_0-9.]*)|"
    r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))"
)

LAYERS = {
    "CONV",
    "POOL",
    "MAXPOOL",
    "AVGPOOL",
    "FC",
    "RELU",
    "TANH",
    "SIGMOID",
    "ELU",
    "GELU",
    "LEAKYRELU",
    "BN",
    "DROPOUT",
    "LRN",
    "FLATTEN",
    "SOFTMAX",
}


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
        kinds = ["arrow", "lbr", "rbr", "star", "q", "lp", "rp", "comma", "eq", "name", "num"]
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                start = len(text) - len(text[pos:].lstrip())
                raise PatternError(text, start, "a layer name, '[', ']', '=>', '*', '(' or a number")
            for i, kind in enumerate(kinds):
                if m.group(i + 1) is not None:
                    self.tokens.append((kind, m.group(i + 1), m.start(i + 1)))
            pos = m.end()
        self.i = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", None, len(self.text))

    def take(self, kind, expected):
        tok = self.peek()
        if tok[0] != kind:
            raise PatternError(self.text, tok[2], expected)
        self.i += 1
        return tok

    def parse(self) -> list:
        tok = self.peek()
        if tok[0] == "name" and tok[1].upper() == "INPUT":
            self.i += 1
            if self.peek()[0] != "end":
                self.take("arrow", "'=>' after INPUT")
        items = self.sequence()
        tok = self.peek()
        if tok[0] != "end":
            raise PatternError(self.text, tok[2], "'=>' or the end of the pattern")
        return items

    def sequence(self) -> list:
        items = [self.item()]
        while self.peek()[0] == "arrow":
            self.i += 1
            items.append(self.item())
        return items

    def count(self):
        if self.peek()[0] != "star":
            return 1
        self.i += 1
        kind, value, pos = self.peek()
        if kind == "num" and value.isdigit():
            self.i += 1
            return int(value)
        if kind == "name":
            self.i += 1
            return value
        raise PatternError(self.text, pos, "a repeat count (a whole number or a name such as N) after '*'")

    def item(self):
        kind, value, pos = self.peek()
        if kind == "lbr":
            self.i += 1
            items = self.sequence()
            self.take("rbr", f"']' to close the group opened at position {pos + 1}")
            return Group(items, self.count(), pos)
        if kind == "name":
            name = value.upper()
            if name not in LAYERS:
                raise PatternError(self.text, pos, f"a layer ({', '.join(sorted(LAYERS))})")
            self.i += 1
            layer = Layer(name, pos=pos)
            if self.peek()[0] == "q":
                self.i += 1
                layer.optional = True
            if self.peek()[0] == "lp":
                self.i += 1
                self.arguments(layer)
            count = self.count()
            return layer if count == 1 else Group([layer], count, pos)
        raise PatternError(self.text, pos, "a layer name or '['")

    def arguments(self, layer: Layer):
        if self.peek()[0] == "rp":
            self.i += 1
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
            kind, _, pos = self.peek()
            if kind == "comma":
                self.i += 1
                continue
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


def _out_size(size: int, k: int, s: int, p: int) -> float:
    return (size + 2 * p - k) / s + 1


class PatternNet(nn.Sequential):
    """A network built from a pattern; ``pattern`` holds its text."""

    pattern: str = ""


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
    **variables,
) -> PatternNet:
    """Build the network that ``text`` describes for input ``(C, H, W)``; see the module's docstring."""
    tree = parse_pattern(text)
    c, h, w = (int(v) for v in input_shape)
    layers: list[tuple[str, nn.Module]] = []
    state = {"c": c, "h": h, "w": w, "flat": None, "stage": 0, "fc_index": 0, "drop_index": 0}
    fc_widths = list(fc) if isinstance(fc, (list, tuple)) else None
    total_fc = _count_fc(tree, variables, text)
    act_name = activation.upper().replace("_", "")
    if act_name not in ACTIVATIONS:
        raise UsageError(f"activation must be one of {', '.join(k.lower() for k in ACTIVATIONS)}, got {activation!r}")

    def fail(layer, message):
        raise PatternError(text, layer.pos, message)

    def add(kind, module):
        layers.append((kind, module))

    def spatial():
        return state["flat"] is None

    def build(item):
        if isinstance(item, Group):
            count = item.count
            if isinstance(count, str):
                if count not in variables:
                    raise PatternError(text, item.pos, f"a value for {count} (pass {count}=... as an option)")
                count = variables[count]
            if not isinstance(count, int) or count < 0:
                raise PatternError(text, item.pos, f"a whole-number repeat count, got {count!r}")
            for _ in range(count):
                for sub in item.items:
                    build(sub)
            return
        layer = item
        if layer.optional and not optional:
            return
        kind, a, kw = layer.kind, layer.args, dict(layer.kwargs)
        if kind == "CONV":
            if not spatial():
                fail(layer, "no CONV after an FC (the volume is flat by then)")
            out = int(a[0]) if len(a) > 0 else _per_stage(filters, state["stage"], filter_growth)
            k = int(a[1]) if len(a) > 1 else int(kw.pop("kernel", kw.pop("kernel_size", kernel_size)))
            s = int(kw.pop("stride", stride))
            pad = kw.pop("padding", padding)
            groups = int(kw.pop("groups", 1))
            if kw:
                fail(layer, f"CONV options filters, kernel, stride, padding, groups (not {', '.join(kw)})")
            p = (k // 2 if pad == "same" else 0) if isinstance(pad, str) else int(pad)
            if pad == "same" and s != 1:
                fail(layer, "padding=same with stride 1 (use an explicit padding with strides)")
            if state["c"] % groups or out % groups:
                fail(layer, f"channels divisible by groups={groups}")
            conv = nn.Conv2d(state["c"], out, k, stride=s, padding=p, groups=groups)
            state["h"], state["w"] = (int(_out_size(state["h"], k, s, p)), int(_out_size(state["w"], k, s, p)))
            state["c"] = out
            if min(state["h"], state["w"]) < 1:
                fail(layer, "a larger input: the volume shrinks below 1x1 at this CONV")
            add("conv", conv)
        elif kind in ("POOL", "MAXPOOL", "AVGPOOL"):
            if not spatial():
                fail(layer, "no POOL after an FC (the volume is flat by then)")
            size = int(a[0]) if len(a) > 0 else int(kw.pop("size", pool_size))
            st = int(a[1]) if len(a) > 1 else int(kw.pop("stride", pool_stride or size))
            kind_name = {"MAXPOOL": "max", "AVGPOOL": "avg"}.get(kind, kw.pop("kind", pool))
            if kw:
                fail(layer, f"POOL options size, stride, kind (not {', '.join(kw)})")
            module = nn.MaxPool2d(size, st) if kind_name == "max" else AvgPool2d(size, st)
            state["h"], state["w"] = int(_out_size(state["h"], size, st, 0)), int(_out_size(state["w"], size, st, 0))
            if min(state["h"], state["w"]) < 1:
                fail(layer, "a larger input: the volume shrinks below 1x1 at this POOL")
            state["stage"] += 1
            add("pool", module)
        elif kind == "FC":
            if spatial():
                add("flatten", nn.Flatten())
                state["flat"] = state["c"] * state["h"] * state["w"]
            state["fc_index"] += 1
            last = state["fc_index"] == total_fc
            if a:
                units = int(a[0])
            elif last:
                units = num_classes
            elif fc_widths is not None:
                units = fc_widths[min(state["fc_index"] - 1, len(fc_widths) - 1)]
            else:
                units = int(fc)
            add("fc", nn.Linear(state["flat"], units))
            state["flat"] = units
        elif kind in ACTIVATIONS:
            add("act", ACTIVATIONS[act_name if kind == "RELU" else kind]())
        elif kind == "BN":
            add("bn", nn.BatchNorm2d(state["c"]) if spatial() else nn.BatchNorm1d(state["flat"]))
        elif kind == "DROPOUT":
            if a:
                rate = float(a[0])
            else:
                rate = _per_stage(dropout, state["drop_index"]) if isinstance(dropout, (list, tuple)) else dropout
            state["drop_index"] += 1
            add("dropout", nn.Dropout(rate))
        elif kind == "LRN":
            add("lrn", nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0))
        elif kind == "FLATTEN":
            if spatial():
                add("flatten", nn.Flatten())
                state["flat"] = state["c"] * state["h"] * state["w"]
        elif kind == "SOFTMAX":
            add("softmax", nn.Softmax(dim=1))

    for item in tree:
        build(item)
    from collections import OrderedDict

    counts: dict[str, int] = {}
    named = OrderedDict()
    for kind, module in layers:  # conv1, act1, pool1, ..., fc3: names a reader can match to the text
        counts[kind] = counts.get(kind, 0) + 1
        named[f"{kind}{counts[kind]}"] = module
    net = PatternNet(named)
    net.pattern = text
    return net


def _count_fc(tree, variables, text) -> int:
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
) -> nn.Module:
    """A network from the lesson's pattern notation (default: the lesson's generic pattern, N=2, M=2, K=1)."""
    return from_pattern(
        text,
        (in_chans, img_size, img_size),
        num_classes,
        filters=filters,
        filter_growth=filter_growth,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        pool=pool,
        pool_size=pool_size,
        pool_stride=pool_stride,
        fc=fc,
        dropout=dropout,
        activation=activation,
        optional=optional,
        N=N,
        M=M,
        K=K,
    )
