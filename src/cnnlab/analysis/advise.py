"""The lesson's best practices as checks on a concrete network.

Each rule looks at the traced layers (shapes from one forward pass) and reports findings with the rule
broken, the layer, and a concrete suggestion. Severity ``warning`` means a best practice is broken (the
command exits 1, usable in CI); ``note`` is advice that breaks nothing (exit 0).

The lesson's rules, in its words as far as they go: square inputs divisible by two; 3x3 and 5x5
filters, with 7x7 or 11x11 only in the first layer and only for inputs over 200 px; stride 1 with
same padding, leaving downsampling to pooling (2x2 stride 2, or 3x3 early in the network); batch norm
after the activation (the lesson's Keras code) or before it (the original paper).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from ..models.layers import KerasSameConv2d
from ..summary import TracedLayer, trace


@dataclass
class Finding:
    rule: str
    severity: str  # "warning" | "note"
    layer: str  # layer name, or "input"
    message: str
    suggestion: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _geometry(m: nn.Module):
    """(kernel, stride, padding) along height and width of a layer that changes spatial size, else None."""
    # Keras' and PyTorch's "same" pad to fit, even kernels too: ceil(side / stride), nothing dropped (_walk_sizes)
    if isinstance(m, KerasSameConv2d) or (isinstance(m, nn.Conv2d) and m.padding == "same"):
        return m.kernel_size, m.stride, (None, None)
    if isinstance(m, nn.Conv2d):  # whose kernel_size, stride and numeric padding PyTorch keeps as pairs
        return m.kernel_size, m.stride, (0, 0) if m.padding == "valid" else m.padding
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
    return None


def _walk_sizes(layers: list[TracedLayer], size: int, axis: int = 0):
    """Follow one spatial size through the layers: [(layer, size in, exact size out)]."""
    steps = []
    for layer in layers:
        geo = _geometry(layer.module)
        if geo is None:
            continue
        k, s, p = geo[0][axis], geo[1][axis], geo[2][axis]
        out = -(-size // s) if p is None else (size + 2 * p - k) / s + 1
        steps.append((layer, size, out))
        if out < 1:
            break
        size = int(out)
    return steps


def _exact_sizes(layers, around: int, axis: int = 0, count: int = 3) -> list[int]:
    """Input sizes near ``around`` for which every downsampling step divides exactly, nearest (then smaller) first."""
    good = []
    for delta in range(1, 65):
        for candidate in (around - delta, around + delta):
            if candidate < 8:
                continue
            steps = _walk_sizes(layers, candidate, axis)
            if steps and all(out == int(out) and out >= 1 for _, _, out in steps):
                good.append(candidate)
        if len(good) >= count:
            break
    return good[:count]


def _fmt(shape) -> str:
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}x{shape[0]}"
    return "x".join(str(s) for s in shape)


@dataclass
class _Net:
    """What every rule looks at: the traced layers and the input's height and width."""

    layers: list[TracedLayer]
    h: int
    w: int

    @property
    def convs(self) -> list[TracedLayer]:
        return [layer for layer in self.layers if isinstance(layer.module, nn.Conv2d)]

    @property
    def pools(self) -> list[TracedLayer]:
        return [layer for layer in self.layers if isinstance(layer.module, (nn.MaxPool2d, nn.AvgPool2d))]


def _square_input(net: _Net):
    h, w = net.h, net.w
    if h != w:
        yield Finding(
            "square-input",
            "warning",
            "input",
            f"input {h}x{w} is not square",
            f"resize or crop to a square, e.g. {max(h, w)}x{max(h, w)} or {min(h, w)}x{min(h, w)}",
        )


def _divisible_input(net: _Net):
    """Each spatial size must pass every downsampling step exactly (one finding per axis, both when not square)."""
    h, w, layers = net.h, net.w, net.layers
    for axis, size in ((0, h),) if h == w else ((0, h), (1, w)):
        steps = _walk_sizes(layers, size, axis)
        inexact = [(layer, s_in, out) for layer, s_in, out in steps if out != int(out)]
        dim = "" if h == w else (" (height)" if axis == 0 else " (width)")
        if inexact:
            layer, s_in, out = inexact[0]
            k, s, p = (g[axis] for g in _geometry(layer.module))
            lost = (s_in + 2 * p - k) % s
            fixes = _exact_sizes(layers, size, axis)
            yield Finding(
                "divisible-input",
                "warning",
                layer.name,
                f"input size {size}{dim} becomes fractional at {layer.name} ({layer.kind} {k}x{k}/{s}): "
                f"{s_in} -> {out:g}, so {lost} row(s)/column(s) of the map are dropped"
                + (f"; {len(inexact) - 1} more such step(s) follow" if len(inexact) > 1 else ""),
                f"use an input size every downsampling step divides: {', '.join(map(str, fixes))}"
                if fixes
                else "change the input size or the strides so that each step divides exactly",
            )
        elif size % 2 and any(_geometry(p.module)[1][axis] == 2 for p in net.pools):
            yield Finding(
                "divisible-input",
                "note",
                "input",
                f"input size {size}{dim} is odd (the lesson prefers sizes divisible by two), but every "
                "downsampling step here divides exactly, so no pixels are lost",
                f"keep {size}: the nearest even sizes would drop pixels"
                if not any(sz % 2 == 0 for sz in _exact_sizes(layers, size, axis, 2))
                else "",
            )


def _conv_rules(net: _Net):
    """Filter size, stride and padding of every convolution, in layer order."""
    for i, layer in enumerate(net.convs):
        (kh, kw), (sh, sw), _ = _geometry(layer.module)
        side = min(layer.in_shape[1], layer.in_shape[2])
        k = max(kh, kw)
        if i > 0 and k > 5:
            yield Finding(
                "large-filter",
                "warning",
                layer.name,
                f"{kh}x{kw} filters after the first layer",
                "use 3x3 (or 5x5) filters; stack two 3x3 convolutions for the receptive field of one 5x5 with "
                "fewer weights",
            )
        if kh % 2 == 0 or kw % 2 == 0:
            yield Finding(
                "even-filter",
                "warning",
                layer.name,
                f"{kh}x{kw} filters have no centre pixel, so 'same' padding pads one side more than the other",
                "use 3x3 or 5x5 filters",
            )
        if i == 0 and k >= 7 and side <= 200:
            yield Finding(
                "large-filter",
                "warning",
                layer.name,
                f"{kh}x{kw} first-layer filters on a {side}-px input (the lesson keeps 7x7 and 11x11 for inputs "
                "over 200 px)",
                "use 3x3 or 5x5 filters at this size",
            )
        if max(sh, sw) > 1 and i == 0 and side >= 200:
            yield Finding(
                "conv-stride",
                "note",
                layer.name,
                f"stride {sh} in the first layer on a {side}-px input: allowed by the lesson to cut a large "
                "input down early",
            )
        elif max(sh, sw) > 1:
            yield Finding(
                "strided-downsampling",
                "warning",
                layer.name,
                f"convolution with stride {sh} downsamples a {side}-px map",
                "use stride 1 with same padding and downsample with a 2x2/2 pool",
            )
        if max(sh, sw) == 1 and k > 1 and min(layer.out_shape[1], layer.out_shape[2]) < side:
            yield Finding(
                "same-padding",
                "warning",
                layer.name,
                f"valid padding shrinks the volume {_fmt(layer.in_shape)} -> {_fmt(layer.out_shape)}",
                f"use padding={k // 2 if k % 2 else 'same'} ('same') so that only pooling changes the spatial size",
            )


def _pool_settings(net: _Net):
    """2x2/2 anywhere, 3x3/2 (overlapping) early; anything else is a warning."""
    for j, layer in enumerate(net.pools):
        (kh, _), (sh, _), _ = _geometry(layer.module)
        if (kh, sh) == (3, 2) and j >= 2:
            yield Finding(
                "pool-settings",
                "note",
                layer.name,
                "3x3/2 overlapping pooling late in the network (the lesson uses it early)",
                "2x2/2 pooling is the usual choice past the first blocks",
            )
        elif (kh, sh) not in ((2, 2), (3, 2)):
            yield Finding(
                "pool-settings",
                "warning",
                layer.name,
                f"{kh}x{kh} pooling with stride {sh}",
                "pool 2x2 with stride 2 (or 3x3 with stride 2 early in the network)",
            )


def _era_choices(net: _Net):
    """LeNet-5's era against the lesson's pattern: saturating activations and average pooling."""
    if saturating := [layer.name for layer in net.layers if isinstance(layer.module, (nn.Tanh, nn.Sigmoid))]:
        yield Finding(
            "activation",
            "note",
            saturating[0],
            f"saturating activations (tanh/sigmoid) in {len(saturating)} layer(s): {', '.join(saturating)}",
            "the lesson's pattern uses ReLU, which trains faster in deep stacks; keep tanh to reproduce LeNet-5",
        )
    if averaging := [layer.name for layer in net.pools if isinstance(layer.module, nn.AvgPool2d)]:
        yield Finding(
            "pool-kind",
            "note",
            averaging[0],
            f"average pooling in {len(averaging)} layer(s): {', '.join(averaging)}",
            "max pooling is the modern default for downsampling between conv blocks",
        )


def _early_collapse(net: _Net):
    """The first map that is 1 px wide while convolutions still follow."""
    spatial = [layer for layer in net.layers if len(layer.out_shape) == 3]
    for idx, layer in enumerate(spatial):
        later_conv = any(isinstance(later.module, nn.Conv2d) for later in spatial[idx + 1 :])
        if min(layer.out_shape[1], layer.out_shape[2]) <= 1 and later_conv:
            yield Finding(
                "early-collapse",
                "warning",
                layer.name,
                f"the map is {_fmt(layer.out_shape)} already, and convolutions follow",
                "use a larger input or fewer downsampling steps",
            )
            return


_ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.ELU, nn.GELU, nn.LeakyReLU, nn.Sigmoid)
_AFTER = "after the activation, as the lesson's Keras code places it"
_BETWEEN = "between the layer and its activation, as Ioffe & Szegedy (2015) place it"


def _bn_placement(net: _Net):
    """One note per placement of batch norm, naming its layers."""
    placements: dict[str, list[str]] = {}
    for before, layer in zip(net.layers, net.layers[1:]):
        if isinstance(layer.module, nn.modules.batchnorm._BatchNorm):
            if isinstance(before.module, _ACTIVATIONS):
                placements.setdefault(_AFTER, []).append(layer.name)
            elif isinstance(before.module, (nn.Conv2d, nn.Linear)):
                placements.setdefault(_BETWEEN, []).append(layer.name)
    for where, names in placements.items():
        yield Finding(
            "bn-placement",
            "note",
            names[0],
            f"batch norm {where} ({len(names)} layer(s): {', '.join(names)})",
            "both work; the lesson reports that after the activation often does slightly better",
        )


def _large_fc(net: _Net):
    """A first dense layer that holds most of the network's weights (AlexNet's 9216x4096)."""
    first = next((layer for layer in net.layers if isinstance(layer.module, nn.Linear)), None)
    if first is None or first.weights <= 1_000_000:
        return
    total = sum(layer.weights for layer in net.layers)  # >= first.weights, so never 0 here
    share = first.weights / total
    if share > 0.5:
        m = first.module
        yield Finding(
            "large-fc",
            "warning",
            first.name,
            f"the first dense layer ({m.in_features}x{m.out_features}) holds {share:.0%} of all {total:,} weights",
            "shrink the map before flattening (more pooling, or global average pooling) or use fewer units",
        )


# In this order: findings on the same layer are listed in the order of their rules.
RULES = (
    _square_input,
    _divisible_input,
    _conv_rules,
    _pool_settings,
    _era_choices,
    _early_collapse,
    _bn_placement,
    _large_fc,
)


def advise(model: nn.Module, input_size) -> list[Finding]:
    """Check ``model`` at ``input_size`` (C, H, W) against the lesson's best practices."""
    layers = trace(model, input_size)  # checks both arguments
    _, h, w = input_size
    net = _Net(layers, h, w)
    findings = [finding for rule in RULES for finding in rule(net)]
    order = {layer.name: layer.index for layer in layers}
    findings.sort(key=lambda f: -1 if f.layer == "input" else order.get(f.layer, len(order)))
    return findings


def format_findings(findings: list[Finding], title: str) -> str:
    lines = [title]
    by_layer: dict[str, list[Finding]] = {}
    for f in findings:
        by_layer.setdefault(f.layer, []).append(f)
    for layer, items in by_layer.items():
        lines.append(f"\n{layer}")
        for f in items:
            lines.append(f"  {f.severity.upper():8s} [{f.rule}] {f.message}")
            if f.suggestion:
                lines.append(f"           -> {f.suggestion}")
    warnings = sum(f.severity == "warning" for f in findings)
    notes = len(findings) - warnings
    lines.append(f"\n{warnings} warning(s), {notes} note(s)" + ("" if warnings else ": follows the lesson's practices"))
    return "\n".join(lines)
