"""Tests of Lorentz batch normalisation (``lorentzcv.nn.norm``, ``docs/method.md`` §5.4)."""

from __future__ import annotations

import io

import pytest
import torch
from torch.func import functional_call

from lorentzcv.geometry import Lorentz, ManifoldParameter, RescaleConfig
from lorentzcv.geometry import math as lmath
from lorentzcv.geometry.rescale import rescale_euclid
from lorentzcv.kernels import batch_norm as bn_kernels
from lorentzcv.nn import LorentzBatchNorm1d, LorentzBatchNorm2d

C = 3  # space channels
VARIANTS = ["hcnn", "rhl"]
IMPLS = ["fused", "autograd", "reference"]


# ------------------------------------------------------------------------------------------------------------
# a slow reference written literally from ``docs/method.md`` §5.4 (independent of the module's own reference)
# ------------------------------------------------------------------------------------------------------------
def _reference_forward(x, beta, gamma, k, rm, rv, *, variant, rescale, eps=1e-5, two_stage, rdtype=None):
    """``x``: (B, N, 1+C) channels-last points (N = 1 for 1-d). Returns (y, μ, σ)."""
    beta = lmath.projx(beta, k)  # β = projx(β_param)
    if rv is None:  # training: batch statistics
        if two_stage:
            mean = lmath.centroid(lmath.centroid(x, k, reduce_dim=1), k, reduce_dim=0)
        else:
            mean = lmath.centroid(x[:, 0], k, reduce_dim=0)
    else:
        mean = lmath.expmap0(rm, k)
    u = lmath.logmap(mean, x, k)
    if variant == "hcnn":
        u = lmath.transp0back(mean, u, k)
    var = torch.linalg.vector_norm(u, dim=-1).mean() if rv is None else rv
    u = u * (gamma / (var + eps))
    if rescale is not None:
        u = rescale_euclid(u, k, dim=-1, config=rescale, dtype=rdtype)  # default: the dtype of the computation
    v = lmath.transp0(beta, u, k) if variant == "hcnn" else lmath.transp(mean, beta, u, k)
    return lmath.expmap(beta, v, k), mean, var


def _points(shape, k, scale=1.0, dtype=torch.float64, seed=0):
    """Random points with time at dim 1 (channels-first), shape (B, 1+C, ...)."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(shape[0], shape[1] - 1, *shape[2:], generator=g, dtype=dtype) * scale
    xs = xs + 0.4 * torch.randn(1, shape[1] - 1, *([1] * (len(shape) - 2)), generator=g, dtype=dtype)
    return lmath.add_time(xs, torch.as_tensor(k, dtype=dtype), dim=1)


def _make(cls, manifold, variant, impl="fused", rescale=None, dtype=torch.float64, seed=1):
    """A layer with non-trivial β, γ and running statistics."""
    layer = cls(manifold, C, variant=variant, impl=impl, rescale=rescale).to(dtype)
    g = torch.Generator().manual_seed(seed)
    k = manifold.k.detach().to(dtype)
    with torch.no_grad():
        layer.beta.copy_(lmath.expmap0(torch.cat([torch.zeros(1, dtype=dtype),
                                                  0.6 * torch.randn(C, generator=g, dtype=dtype)]), k))
        layer.gamma.fill_(0.8)
        layer.running_mean.copy_(torch.cat([torch.zeros(1, dtype=dtype), 0.5 * torch.randn(C, generator=g,
                                                                                             dtype=dtype)]))
        layer.running_var.fill_(1.3)
    return layer


def _on_manifold_err(y, k):
    k = torch.as_tensor(k).to(y.dtype)
    return ((lmath.inner(y, y, dim=1) + k).abs() / (k + lmath.time(y, dim=1).squeeze(1) ** 2)).max().item()


CASES = [(LorentzBatchNorm1d, (6, 1 + C)), (LorentzBatchNorm2d, (4, 1 + C, 3, 2))]
CASE_IDS = ["1d", "2d"]


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """Force several cache blocks even for the tiny test shapes (exercises the chunked loops)."""
    monkeypatch.setattr(bn_kernels, "_CHUNK_ELEMS", 20)
    monkeypatch.setattr(bn_kernels, "_CHUNK_ELEMS_MT", 20)


# ------------------------------------------------------------------------------------------------------------
# semantics
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,shape", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_output_on_manifold(cls, shape, variant, training, dtype):
    k = 0.625
    m = Lorentz(k=k)
    layer = _make(cls, m, variant, dtype=dtype).train(training)
    x = _points(shape, k, scale=2.0, dtype=dtype)
    y = layer(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.isfinite(y).all()
    assert (lmath.time(y, dim=1) > 0).all()
    assert _on_manifold_err(y, m.k.detach()) < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("cls,shape", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rescale", [False, True], ids=["norescale", "rescale"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_spec_reference(cls, shape, variant, rescale, training, impl):
    """Output, running statistics and gradients (w.r.t. the space coordinates of the input, β, γ and k)
    agree with the literal formula in float64."""
    k0 = 1.75
    m = Lorentz(k=k0, learnable=True).double()
    layer = _make(cls, m, variant, impl=impl, rescale=rescale).train(training)
    ref_m = Lorentz(k=k0, learnable=True).double()
    ref = _make(cls, ref_m, variant, rescale=rescale)  # holds the reference's parameters
    x0 = _points(shape, k0, scale=1.5)
    w = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    xs = lmath.space(x0, dim=1).clone().requires_grad_()
    y = layer(lmath.add_time(xs, m.k, dim=1))
    (y * w).sum().backward()

    xs_r = lmath.space(x0, dim=1).clone().requires_grad_()
    x_r = lmath.add_time(xs_r, ref_m.k, dim=1)
    two_stage = x0.dim() == 4
    xl = x_r.flatten(2).transpose(1, 2) if two_stage else x_r[:, None]
    rv = None if training else ref.running_var
    cfg = RescaleConfig() if rescale else None
    y_r, mu_r, var_r = _reference_forward(xl, ref.beta, ref.gamma, ref_m.k, ref.running_mean, rv,
                                          variant=variant, rescale=cfg, two_stage=two_stage)
    y_r = y_r.transpose(1, 2).reshape(x0.shape) if two_stage else y_r[:, 0]
    (y_r * w).sum().backward()

    tol = dict(rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(y, y_r, **tol)
    torch.testing.assert_close(xs.grad, xs_r.grad, **tol)
    torch.testing.assert_close(layer.beta.grad, ref.beta.grad, **tol)
    torch.testing.assert_close(layer.gamma.grad, ref.gamma.grad, **tol)
    torch.testing.assert_close(m.k.grad, ref_m.k.grad, **tol)
    if training:  # running statistics, momentum 0.1, from the values set by _make
        with torch.no_grad():
            pts = torch.stack([lmath.expmap0(ref.running_mean, ref_m.k), mu_r])
            w_m = torch.tensor([0.9, 0.1], dtype=torch.float64)
            rm = lmath.logmap0(lmath.centroid(pts, ref_m.k, weights=w_m, reduce_dim=0), ref_m.k)
        torch.testing.assert_close(layer.running_mean, rm, **tol)
        torch.testing.assert_close(layer.running_var, 0.9 * ref.running_var + 0.1 * var_r.detach(), **tol)
        assert int(layer.num_batches_tracked) == 1
    else:
        torch.testing.assert_close(layer.running_mean, ref.running_mean, rtol=0, atol=0)
        assert int(layer.num_batches_tracked) == 0


@pytest.mark.parametrize("cls,shape", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_isometry_and_batch_mean_at_beta(cls, shape, variant):
    """With γ = σ + ε (unit scale) and no rescaling, the layer is the hyperbolic isometry taking the batch mean μ to
    β: pairwise distances are preserved and the batch mean of the output (same two-stage definition) is β."""
    k = 0.75
    m = Lorentz(k=k).double()
    layer = _make(cls, m, variant, rescale=False)
    x = _points(shape, k, scale=1.2)
    layer.train()
    with torch.no_grad():
        layer.reset_running_stats()
        layer(x)
        sigma = (layer.running_var - 0.9) / 0.1  # rv = 0.9·1 + 0.1·σ
        layer.gamma.fill_(float(sigma) + layer.eps)
        y = layer(x)
    pts_x = x.flatten(2).transpose(1, 2).reshape(-1, 1 + C) if x.dim() == 4 else x
    pts_y = y.flatten(2).transpose(1, 2).reshape(-1, 1 + C) if y.dim() == 4 else y
    kk = m.k.detach()
    dx = lmath.dist(pts_x[:, None], pts_x[None], kk)
    dy = lmath.dist(pts_y[:, None], pts_y[None], kk)
    torch.testing.assert_close(dy, dx, rtol=1e-10, atol=1e-10)
    if y.dim() == 4:
        mean_y = lmath.centroid(lmath.centroid(y.flatten(2).transpose(1, 2), kk, reduce_dim=1), kk, reduce_dim=0)
    else:
        mean_y = lmath.centroid(y, kk, reduce_dim=0)
    torch.testing.assert_close(mean_y, lmath.projx(layer.beta.detach(), kk), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("cls,shape", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_uses_running_statistics(cls, shape, variant):
    k = 1.25
    m = Lorentz(k=k).double()
    layer = _make(cls, m, variant)
    for seed in range(3):  # some training steps move the running statistics
        layer.train()(_points(shape, k, seed=10 + seed))
    rm, rv, nbt = layer.running_mean.clone(), layer.running_var.clone(), int(layer.num_batches_tracked)
    assert nbt == 3 and not torch.equal(rm, torch.zeros_like(rm))
    layer.eval()
    x1 = _points(shape, k, seed=20)
    x2 = x1.clone()
    x2[1:] = _points(shape, k, scale=3.0, seed=21)[1:]  # same first sample, different rest of the batch
    y1, y2 = layer(x1), layer(x2)
    torch.testing.assert_close(y1[0], y2[0], rtol=1e-12, atol=1e-12)
    assert torch.equal(layer.running_mean, rm) and torch.equal(layer.running_var, rv)
    assert int(layer.num_batches_tracked) == nbt
    # ... whereas in training the other samples change the first one's output
    layer.train()
    assert not torch.allclose(layer(x1)[0], layer(x2)[0])


def test_momentum_none_is_cumulative_average():
    m = Lorentz(k=1.0).double()
    layer = LorentzBatchNorm1d(m, C, momentum=None).double()
    sig = []
    for seed in range(3):
        layer(_points((5, 1 + C), 1.0, seed=seed))
        sig.append(layer.running_var.item())
    # rv_n = rv_{n-1} + (σ_n - rv_{n-1})/n from rv_0 = 1: rv_1 = σ_1
    layer2 = LorentzBatchNorm1d(m, C, momentum=1.0).double()
    layer2(_points((5, 1 + C), 1.0, seed=0))
    assert sig[0] == pytest.approx(layer2.running_var.item(), rel=1e-12)


def test_no_grad_matches_grad_path():
    m = Lorentz(k=0.875, learnable=True)
    layer = _make(LorentzBatchNorm2d, m, "hcnn", rescale=True, dtype=torch.float32)
    x = _points((4, 1 + C, 3, 3), 0.875, dtype=torch.float32)
    y_grad = layer(x.clone().requires_grad_())
    with torch.no_grad():
        layer.reset_running_stats()
        y_nograd = layer(x)
    torch.testing.assert_close(y_grad.detach(), y_nograd, rtol=0, atol=0)


def test_curvature_is_read_at_every_forward_and_learned():
    m = Lorentz(k=1.0, learnable=True).double()
    layer = LorentzBatchNorm2d(m, C).double()
    x = _points((3, 1 + C, 2, 2), 1.0)
    layer(x).sum().backward()
    assert m.k.grad is not None and torch.isfinite(m.k.grad) and m.k.grad.abs() > 0
    with torch.no_grad():
        m.k.fill_(2.5)
    y = layer(lmath.projx(x, m.k.detach(), dim=1))
    assert _on_manifold_err(y, m.k.detach()) < 1e-12


def test_channels_last_memory_format_and_contiguity():
    m = Lorentz(k=1.0)
    layer = LorentzBatchNorm2d(m, C)
    x = _points((4, 1 + C, 3, 3), 1.0, dtype=torch.float32)
    y1 = layer(x)
    y2 = layer(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y1, y2)


def test_degenerate_batches_are_finite():
    """All pixels at one point (σ = 0, every ``a = 1``) and points far from the origin: finite values/gradients."""
    m = Lorentz(k=1.0, learnable=True)
    layer = LorentzBatchNorm2d(m, C, rescale=True)
    p = lmath.expmap0(torch.tensor([0.0, 0.3, -0.2, 0.5]), m.k.detach())
    x = p[None, :, None, None].expand(3, 1 + C, 2, 2).clone().requires_grad_()
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(layer.gamma.grad)
    far = _points((4, 1 + C, 3, 3), 1.0, scale=1.0, dtype=torch.float32)
    far = lmath.expmap0(8.0 * lmath.logmap0(far, m.k.detach(), dim=1) / 3.0, m.k.detach(), dim=1)  # dist0 ≈ 8
    far.requires_grad_()
    y = layer(far)
    y.square().mean().backward()
    assert torch.isfinite(y).all() and torch.isfinite(far.grad).all()
    assert _on_manifold_err(y.detach(), 1.0) < 1e-5


# ------------------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,shape", [(LorentzBatchNorm1d, (4, 1 + C)), (LorentzBatchNorm2d, (3, 1 + C, 2, 2))],
                         ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rescale", [False, True], ids=["norescale", "rescale"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck(cls, shape, variant, rescale, training):
    m = Lorentz(k=0.625, learnable=True).double()
    layer = _make(cls, m, variant, rescale=rescale).train(training)
    x = _points(shape, 0.625, scale=1.2).requires_grad_()
    beta = layer.beta.detach().clone().requires_grad_()
    gamma = layer.gamma.detach().clone().requires_grad_()
    k = m.k.detach().clone().requires_grad_()

    def f(x, beta, gamma, k):
        return functional_call(layer, {"beta": beta, "gamma": gamma, "manifold.k": k}, (x,))

    assert torch.autograd.gradcheck(f, (x, beta, gamma, k), eps=1e-6, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# module plumbing
# ------------------------------------------------------------------------------------------------------------
def test_state_dict_round_trip_and_dtype_move():
    m = Lorentz(k=1.5)
    layer = _make(LorentzBatchNorm2d, m, "rhl", dtype=torch.float32)
    x = _points((4, 1 + C, 2, 3), 1.5, dtype=torch.float32)
    layer(x)  # move the running statistics
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = LorentzBatchNorm2d(Lorentz(k=1.5), C, variant="rhl")
    other.load_state_dict(torch.load(buf))
    for name, t in layer.state_dict().items():
        assert torch.equal(t, other.state_dict()[name]), name
    torch.testing.assert_close(layer.eval()(x), other.eval()(x), rtol=0, atol=0)

    layer64 = layer.to(torch.float64)
    assert isinstance(layer64.beta, ManifoldParameter) and layer64.beta.dtype == torch.float64
    assert layer64.beta.manifold is layer64.manifold
    assert layer64.running_var.dtype == torch.float64
    assert layer64(x.double()).dtype == torch.float64


@pytest.mark.parametrize("variant", VARIANTS)
def test_autocast_bfloat16(variant):
    torch.manual_seed(0)
    m = Lorentz(k=1.0, learnable=True)
    conv = torch.nn.Conv2d(C, C, 3, padding=1)
    layer = LorentzBatchNorm2d(m, C, variant=variant, rescale=True)
    xs = torch.randn(4, C, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(xs)
        assert h.dtype == torch.bfloat16
        x = torch.cat([(h.float().pow(2).sum(1, keepdim=True) + 1).sqrt().to(h.dtype), h], 1)
        y = layer(x)
        loss = y.float().square().mean()
    loss.backward()
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert _on_manifold_err(y.detach(), 1.0) < 1e-5
    assert all(torch.isfinite(p.grad).all() for p in (conv.weight, layer.beta, layer.gamma, m.k))


def test_errors():
    m = Lorentz()
    bn2 = LorentzBatchNorm2d(m, C)
    bn1 = LorentzBatchNorm1d(m, C)
    with pytest.raises(ValueError, match="1\\+C = 4"):
        bn2(torch.randn(2, C, 3, 3))  # time channel missing
    with pytest.raises(ValueError, match="channels-last"):
        bn2(torch.randn(2, 3, 3, 1 + C))
    with pytest.raises(ValueError, match="channels-first"):
        bn2(torch.randn(2, 1 + C))
    with pytest.raises(ValueError, match="\\(B, 1\\+C\\)"):
        bn1(torch.randn(2, 1 + C, 3, 3))
    with pytest.raises(ValueError, match="1\\+C = 4"):
        bn1(torch.randn(2, 2 + C))
    with pytest.raises(ValueError, match="variant"):
        LorentzBatchNorm2d(m, C, variant="allvar")
    with pytest.raises(ValueError, match="impl"):
        LorentzBatchNorm2d(m, C, impl="triton")
    with pytest.raises(ValueError, match="momentum"):
        LorentzBatchNorm2d(m, C, momentum=2.0)


def test_repr_and_defaults():
    m = Lorentz()
    bn = LorentzBatchNorm2d(m, 8)
    assert bn.variant == "hcnn" and bn.rescale is False and bn.impl == "fused"
    assert LorentzBatchNorm2d(m, 8, variant="rhl").rescale is True  # [A] rescales in batch2d
    assert LorentzBatchNorm2d(m, 8, variant="rhl", rescale=False).rescale is False
    assert bn.beta.shape == (9,) and bn.gamma.shape == () and bn.running_mean.shape == (9,)
    assert isinstance(bn.beta, ManifoldParameter) and bn.beta.manifold is m
    torch.testing.assert_close(bn.beta.detach(), m.origin(9))
    assert "variant='hcnn'" in repr(bn)


def test_rescale_with_rapidity_floor_matches_reference():
    """``RescaleConfig(min_rapidity>0)`` (served by the autograd closed form) agrees with the literal formula."""
    cfg = RescaleConfig(min_rapidity=0.05)
    out = {}
    for impl in ("fused", "reference"):
        m = Lorentz(k=0.75, rescale=cfg).double()
        layer = _make(LorentzBatchNorm2d, m, "hcnn", impl=impl, rescale=True)
        x = _points((3, 1 + C, 2, 2), 0.75).requires_grad_()
        y = layer(x)
        y.square().sum().backward()
        out[impl] = (y.detach(), layer.gamma.grad)
    torch.testing.assert_close(out["fused"], out["reference"], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls,shape", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rescale", [False, True], ids=["norescale", "rescale"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_float32_close_to_float64_reference(cls, shape, variant, rescale, training):
    """The float32 fast path (its own series thresholds and clamps) against the literal formula in float64
    (rescaling radius of float32), including points near the batch mean (small ``a - 1`` and θ, where the
    series branches are used)."""
    k0 = 0.75
    x64 = _points(shape, k0, scale=0.05, seed=3)  # a tight cluster: distances to μ straddle the thresholds
    x64[0] = _points(shape, k0, scale=2.0, seed=4)[0]  # plus one spread-out sample
    w = torch.randn(x64.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    two_stage = x64.dim() == 4
    # float32 layer
    m = Lorentz(k=k0, learnable=True)
    layer = _make(cls, m, variant, rescale=rescale, dtype=torch.float32).train(training)
    xs = lmath.space(x64, dim=1).float().requires_grad_()
    y = layer(lmath.add_time(xs, m.k, dim=1))
    (y * w.float()).sum().backward()
    got = [y.detach(), xs.grad, layer.beta.grad, layer.gamma.grad, m.k.grad]
    # float64 literal reference with the same parameters
    ref_m = Lorentz(k=k0, learnable=True).double()
    ref = _make(cls, ref_m, variant, rescale=rescale)
    xs_r = lmath.space(x64, dim=1).clone().requires_grad_()
    x_r = lmath.add_time(xs_r, ref_m.k, dim=1)
    xl = x_r.flatten(2).transpose(1, 2) if two_stage else x_r[:, None]
    y_r, _, _ = _reference_forward(xl, ref.beta, ref.gamma, ref_m.k, ref.running_mean,
                                   None if training else ref.running_var, variant=variant,
                                   rescale=RescaleConfig() if rescale else None, two_stage=two_stage,
                                   rdtype=torch.float32)
    y_r = y_r.transpose(1, 2).reshape(x64.shape) if two_stage else y_r[:, 0]
    (y_r * w).sum().backward()
    want = [y_r.detach(), xs_r.grad, ref.beta.grad, ref.gamma.grad, ref_m.k.grad]
    for name, g32, g64 in zip(["y", "x", "beta", "gamma", "k"], got, want):
        torch.testing.assert_close(g32.double(), g64, rtol=2e-4, atol=2e-4 * float(g64.abs().max()), msg=name)


@pytest.mark.parametrize("k0", [0.0625, 16.0])
@pytest.mark.parametrize("variant", VARIANTS)
def test_extreme_curvature_matches_reference(k0, variant):
    """Near the default curvature bounds (0.05, 20): fused path = literal formula (float64), finite in float32."""
    out = {}
    for impl in ("fused", "reference"):
        m = Lorentz(k=k0, learnable=True).double()
        layer = _make(LorentzBatchNorm2d, m, variant, impl=impl, rescale=True)
        xs = lmath.space(_points((3, 1 + C, 2, 2), k0, scale=k0 ** 0.5), dim=1).requires_grad_()
        y = layer(lmath.add_time(xs, m.k, dim=1))  # on the manifold of the current k (k-gradient along it)
        y.square().sum().backward()
        out[impl] = (y.detach(), xs.grad, layer.gamma.grad, m.k.grad)
    torch.testing.assert_close(out["fused"], out["reference"], rtol=1e-8, atol=1e-9)
    m = Lorentz(k=k0, learnable=True)
    layer = LorentzBatchNorm2d(m, C, variant=variant)
    x = _points((3, 1 + C, 4, 4), k0, scale=3 * k0 ** 0.5, dtype=torch.float32).requires_grad_()
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(m.k.grad)
    assert _on_manifold_err(y.detach(), m.k.detach()) < 1e-5


@pytest.mark.parametrize("radius,spread", [(2.0, 0.03), (5.0, 0.03), (5.0, 0.3)])
def test_float32_accuracy_far_from_origin(radius, spread):
    """A tight batch far from the origin (where ``arcosh(-<μ,x>_L/k)`` loses half the digits): the float32 fast
    path is as accurate as the literal formula in float32 (whose kernels use the squared chord)."""
    torch.manual_seed(0)
    k = torch.tensor(1.0, dtype=torch.float64)
    center = torch.randn(C, dtype=torch.float64)
    v = radius * center / center.norm()
    v = v[None, :, None, None] + spread * torch.randn(4, C, 3, 3, dtype=torch.float64)
    x64 = lmath.expmap0(torch.cat([torch.zeros(4, 1, 3, 3, dtype=torch.float64), v], 1), k, dim=1)
    out = {}
    for dtype, impl in ((torch.float64, "reference"), (torch.float32, "fused"), (torch.float32, "reference")):
        layer = LorentzBatchNorm2d(Lorentz(k=1.0).to(dtype), C, impl=impl).to(dtype)
        out[dtype, impl] = layer(lmath.projx(x64.to(dtype), k.to(dtype), dim=1)).double()
    truth = out[torch.float64, "reference"]
    err_fused = (out[torch.float32, "fused"] - truth).abs().max().item()
    err_literal = (out[torch.float32, "reference"] - truth).abs().max().item()
    assert err_fused <= 3 * err_literal + 1e-6, (err_fused, err_literal)


def test_cache_blocking_does_not_change_results(monkeypatch):
    """Whole-batch passes (the multi-threaded default) and small cache blocks give the same values/gradients."""
    out = []
    for elems in (20, None):
        monkeypatch.setattr(bn_kernels, "_CHUNK_ELEMS", elems if elems is not None else 1 << 40)
        monkeypatch.setattr(bn_kernels, "_CHUNK_ELEMS_MT", elems)
        m = Lorentz(k=0.75, learnable=True).double()
        layer = _make(LorentzBatchNorm2d, m, "rhl")
        x = _points((5, 1 + C, 3, 2), 0.75).requires_grad_()
        y = layer(x)
        (y * torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).sin()).sum().backward()
        out.append((y.detach(), x.grad, layer.beta.grad, layer.gamma.grad, m.k.grad))
    torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=1e-12)
