r"""Lorentz 2-D convolutions (``docs/method.md`` §5.2, §5.3; ``docs/design.md`` §4.1).

Curvature convention: ``k > 0`` (``<x,x>_L = -k``, sectional curvature ``K = -1/k``), read from the manifold at
every forward so gradients reach a learnable ``k``. Feature maps are channels-first ``(B, 1+C, H, W)`` with time
at channel 0; ``in_channels``/``out_channels`` count **space** channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from ..geometry import Lorentz
from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast
from ..geometry.rescale import computation_dtype, rescale
from ..kernels import use_fused
from .functional import check_points, lift
from .linear import LorentzLinear

__all__ = ["LorentzConv2d", "cayley"]


def cayley(p: torch.Tensor, cols: int) -> torch.Tensor:
    r"""First ``cols`` columns of the Cayley transform :math:`Q = (I + A/2)(I - A/2)^{-1}` of the skew matrix
    :math:`A = L - L^\top`, ``L`` the strictly lower triangle of the square ``p`` (orthonormal columns)."""
    a = torch.tril(p, -1)
    a = a - a.transpose(-1, -2)
    eye = torch.eye(p.size(-1), dtype=p.dtype, device=p.device)
    # (I + A/2) and (I - A/2)^{-1} commute, so Q = (I - A/2)^{-1} (I + A/2)
    q = torch.linalg.solve(eye - a / 2, eye + a / 2)
    return q[..., :cols]


class _SpaceChannels(torch.autograd.Function):
    """``x[:, 1:]`` as a dense tensor; the backward pads the gradient with a zero time channel in one pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if (not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last)) else torch.contiguous_format
        return x.narrow(1, 1, x.size(1) - 1).contiguous(memory_format=fmt)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return F.pad(g, (0, 0, 0, 0, 1, 0))


class _SpaceView(torch.autograd.Function):
    """``x[:, 1:]`` as a view; the backward writes the gradient with its zero time channel in one ``torch.cat`` of
    the gradient and an expanded zero scalar (``zero``, a buffer of the layer: no fill kernel), where autograd's
    ``slice_backward`` launches two kernels (a zero fill of the whole map and a copy)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        ctx.zero = zero
        return x.narrow(1, 1, x.size(1) - 1)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        z = ctx.zero.to(g.dtype).expand(g.size(0), 1, *g.shape[2:])
        return torch.cat([z, g], dim=1), None


class LorentzConv2d(nn.Module):
    r"""Lorentz convolution on channels-first maps ``(B, 1 + C_in, H, W) → (B, 1 + C_out, H', W')``.

    ``impl="efficient"`` (default, HECNN+, §5.3 item 1): a standard convolution on the space channels,
    time from space, then maximum distance rescaling (§2.2),

    .. math:: y_s = \mathrm{conv2d}(x_s;\,w, b),\qquad y = \mathrm{rescale}\big((\sqrt{\|y_s\|^2 + k},\ y_s)\big).

    Zero padding of the space channels is origin padding. By the identity of §5.3 this equals the HCNN
    unfold + direct concatenation + *space-only* LFC with conv weight ``w[o, c, i, j]`` = LFC column
    ``p·C_in + c``, ``p = i·kw + j`` (see :meth:`conv_weight`). Opt-in extras of [A]'s
    ``PureHyperbolicEfficientConv``: ``boost_scale`` (a learnable :math:`\gamma`, init 1, scaling the rapidity
    :math:`r \mapsto |\gamma| r` before the rescaling, §5.3 item 2.4) and ``cayley`` (the weight is the first
    ``C_in·K/groups`` columns of a Cayley-orthogonal ``C_out × C_out`` matrix, raw-reshaped to the kernel,
    §5.3 item 2.2; needs ``C_out ≥ C_in·K/groups``, ``cayley="auto"`` silently falls back to a plain weight
    otherwise, as [A]). Init: ``nn.Conv2d``'s (kaiming-uniform, a = √5), as [A]; the Cayley parameter starts
    at ``N(0, 1/C_out)``.

    ``impl="unfold"`` (HCNN, §5.2; the baseline of the compute table and the reference of the tests):
    ``nn.functional.unfold`` of the full ambient map, time entries clamped to :math:`\ge\sqrt{k}` (padded pixels
    become the origin), direct concatenation of the ``K = kh·kw`` points of each patch
    (:math:`t = \sqrt{\sum_p t_p^2 - (K-1)k}`, space position-major), an optional maximum distance rescaling
    of each concatenated patch ([A]'s ``LorentzConv2d``), then the LFC :class:`LorentzLinear`
    (``lfc="hcnn"``: full ambient including the time column, [H]; ``lfc="space"``: space only, [A]).
    Init as [H]: weight and bias :math:`U(-\sigma, \sigma)`, :math:`\sigma = \sqrt{2/(C_{in}K)}`. ``groups``
    must be 1.

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` manifold of input and output.
        in_channels, out_channels: numbers of **space** channels.
        kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d`` (padding is origin padding).
        impl: ``"efficient"`` or ``"unfold"``.
        rescale: maximum distance rescaling with ``manifold.rescale_config``; ``None`` = the impl's default
            (efficient: on the output points, ``True``; unfold: on each concatenated patch, ``False`` = HCNN).
        boost_scale, cayley: efficient-only extras (above).
        lfc: ``"hcnn"`` (default) or ``"space"``, the LFC of ``impl="unfold"``.

    Precision: under ``torch.autocast`` the efficient convolution itself runs in the autocast dtype (that is
    where the speed is); time, boost and rescaling run in float32 with float32's rescaling radius m ≈ 9.56
    (``lorentzcv.geometry.rescale.computation_dtype``), not the autocast dtype's, and the output is float32. ``impl="unfold"`` is a
    float32 island throughout (its time concatenation cancels catastrophically in half precision).

    Cost (``tests/nn/bench_conv.py``): after the convolution the efficient path adds one reduction and one
    multiply over ``y_s`` in forward and three passes in backward (closed-form backward of time + rescaling,
    :func:`lorentzcv.nn.functional.lift`); it saves only its output for the backward. The unfold path
    materialises the ``(B, L, 1 + C_in·K)`` patch matrix (≈ K× the input) and is several times slower.
    """

    # How the conv reads x_s: "view" (x[:, 1:]; the conv keeps a view of x for its backward and makes it dense
    # in forward and again in backward) or "copy" (one dense copy, kept for the backward: +1 input-sized
    # activation, but 10-15% faster on CPU for the conv alone in tests/nn/bench_conv.py); "auto" = "view" everywhere:
    # in a whole ResNet-18 step the copy cost 0.4x of the Euclidean activation memory for no measurable time
    # gain (BENCHMARKS.md). Results are identical.
    _input_mode = "auto"

    def __init__(
        self, manifold: Lorentz, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
        groups: int = 1, bias: bool = True, impl: str = "efficient", rescale: bool | None = None,
        boost_scale: bool = False, cayley: bool | str = False, lfc: str = "hcnn",
    ) -> None:
        super().__init__()
        if impl not in ("efficient", "unfold"):
            raise ValueError(f"unknown LorentzConv2d impl {impl!r}; expected 'efficient' or 'unfold'")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels count space channels and must be >= 1, got "
                             f"{in_channels}, {out_channels}")
        if isinstance(padding, str):
            raise ValueError("LorentzConv2d takes numeric padding (origin padding), got a string")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide the space channels in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if cayley not in (False, True, "auto"):
            raise ValueError(f"cayley must be False, True or 'auto', got {cayley!r}")
        if impl == "unfold":
            if groups != 1:
                raise ValueError("impl='unfold' supports groups=1 only; use impl='efficient' for grouped convs")
            if boost_scale or cayley:
                raise ValueError("boost_scale and cayley are options of impl='efficient'")
            if lfc not in ("hcnn", "space"):
                raise ValueError(f"unknown lfc {lfc!r}; expected 'hcnn' or 'space'")
        self.manifold = manifold
        self.register_buffer("_zero", torch.zeros(()), persistent=False)  # for _SpaceView's backward
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.groups, self.impl, self.lfc = groups, impl, lfc
        self.rescale = (impl == "efficient") if rescale is None else bool(rescale)
        kh, kw = self.kernel_size
        kk = kh * kw
        if impl == "unfold":
            self.linear = LorentzLinear(manifold, in_channels * kk, out_channels, bias=bias, variant=lfc)
            self.reset_parameters()
            return
        fan = in_channels // groups * kk
        self.cayley = bool(cayley) and out_channels >= fan
        if cayley is True and not self.cayley:
            raise ValueError(f"cayley=True needs out_channels >= in_channels/groups*kh*kw ({out_channels} < {fan}); "
                             f"use cayley='auto' to fall back to a plain weight")
        if self.cayley:
            self.cayley_weight = nn.Parameter(torch.empty(out_channels, out_channels))
            self.register_parameter("weight", None)
        else:
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.boost = nn.Parameter(torch.ones(())) if boost_scale else None
        self.reset_parameters()

    # ----------------------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        kh, kw = self.kernel_size
        fan = self.in_channels // self.groups * kh * kw
        if self.impl == "unfold":
            sigma = math.sqrt(2.0 / fan)
            nn.init.uniform_(self.linear.weight, -sigma, sigma)
            if self.linear.bias is not None:
                nn.init.uniform_(self.linear.bias, -sigma, sigma)
            return
        if self.cayley:
            nn.init.normal_(self.cayley_weight, std=1.0 / math.sqrt(self.out_channels))
        else:
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(fan)
            nn.init.uniform_(self.bias, -bound, bound)
        if self.boost is not None:
            nn.init.ones_(self.boost)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, dilation={self.dilation}, impl={self.impl!r}, rescale={self.rescale}")
        if self.impl == "unfold":
            return s + f", lfc={self.lfc!r}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + f", bias={self.bias is not None}, boost_scale={self.boost is not None}, cayley={self.cayley}"

    def conv_weight(self) -> torch.Tensor:
        """The space-to-space convolution weight ``(C_out, C_in/groups, kh, kw)``.

        For ``impl="unfold"`` this is the equivalent efficient weight (§5.3): ``w[o, c, i, j]`` = LFC space
        column ``p·C_in + c`` with ``p = i·kw + j`` (for ``lfc="hcnn"`` the time row and the ``t`` column are
        dropped, so the two agree only when that column is zero).
        """
        kh, kw = self.kernel_size
        if self.impl == "unfold":
            w = self.linear.weight
            if self.lfc == "hcnn":
                w = w[1:, 1:]
            return w.reshape(self.out_channels, kh, kw, self.in_channels).permute(0, 3, 1, 2)
        if self.cayley:
            fan = self.in_channels // self.groups * kh * kw
            return cayley(self.cayley_weight, fan).reshape(self.out_channels, self.in_channels // self.groups, kh, kw)
        return self.weight

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(H', W')`` for an input of ``H × W`` pixels (the ``nn.Conv2d`` formula)."""
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip((h, w), self.padding, self.dilation, self.kernel_size, self.stride)
        )

    # ----------------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_points(x, self.in_channels, dim=1, ndim=4, name="input", what=type(self).__name__)
        if self.impl == "unfold":
            return self._forward_unfold(x)
        dtype = computation_dtype(x)
        mode = self._input_mode
        if mode == "auto":
            mode = "view"  # "copy" was ~10% faster on CPU for the conv alone but saves an input-sized copy
        if mode == "copy":
            xin = _SpaceChannels.apply(x)
        elif use_fused(x) and x.requires_grad and torch.is_grad_enabled():
            xin = _SpaceView.apply(x, self._zero)  # one kernel in the backward instead of two (CUDA launches)
        else:
            xin = lmath.space(x, dim=1)
        w = self.conv_weight()
        if xin.dtype != w.dtype and not torch.is_autocast_enabled(xin.device.type):
            # a model cast with .half()/.bfloat16(): the convolution runs in its weights' dtype, as under autocast
            # (the points arrive in float32 from the previous float32 island; time and rescaling stay float32)
            xin = xin.to(w.dtype)
        ys = F.conv2d(xin, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        cfg = self.manifold.rescale_config if self.rescale else None
        return lift(ys, self.manifold.use_k(), dim=1, rescale=cfg, gamma=self.boost, dtype=dtype)

    def _forward_unfold(self, x: torch.Tensor) -> torch.Tensor:
        dtype = computation_dtype(x)
        with no_autocast(x):
            x = upcast(x)
            b, _, h, w = x.shape
            c, (kh, kw) = self.in_channels, self.kernel_size
            kk = kh * kw
            k = lmath._k(self.manifold.use_k(), x)
            ho, wo = self.output_size(h, w)
            cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, (1+C)·K, L)
            cols = cols.view(b, 1 + c, kk, ho * wo)
            t = cols[:, 0].clamp_min(k.sqrt())  # (B, K, L); padded pixels -> origin
            t_cat = ((t * t).sum(1) - (kk - 1) * k).clamp_min(k).sqrt()  # (B, L), direct concatenation
            s = cols[:, 1:].permute(0, 3, 2, 1).reshape(b, ho * wo, kk * c)  # position-major space p·C + c
            patch = torch.cat([t_cat.unsqueeze(-1), s], dim=-1)  # (B, L, 1 + K·C)
            if self.rescale:
                patch = rescale(patch, k, dim=-1, config=self.manifold.rescale_config, dtype=dtype)
            y = self.linear(patch)  # (B, L, 1 + C_out)
            return y.transpose(1, 2).reshape(b, 1 + self.out_channels, ho, wo)
