"""Tests of the conditional flows (arXiv:1912.00042): invertibility, exact log-likelihoods, conditioning, sampling,
binary dequantization, the factorised baselines, shape errors, the training loop and the benchmark's smoke run."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from flowkernels.models.conditional import (
    BinaryDequantizer,
    ConditionalFlow,
    ConditionNet,
    Upsample,
    downsample,
    resize_features,
)
from flowkernels.models.conditional_baselines import FactorizedBernoulli, FactorizedLogistic
from flowkernels.models.conditional_training import train_conditional
from flowkernels.models.dequantization import UniformDequantizer

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
KINDS = ("1x1", "emerging")

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
needs_skimage = pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")


def perturb(model: nn.Module, seed: int, scale: float = 0.05) -> None:
    """Add noise to every parameter, so that no zero-initialised layer is the identity or ignores ``x``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * scale)


def make_flow(
    kind: str = "1x1",
    dtype: torch.dtype = torch.float32,
    *,
    num_scales: int = 2,
    steps_per_scale: int = 2,
    upscale: int = 2,
) -> ConditionalFlow:
    """A small x2 super-resolution flow, ActNorm-initialised on data and then perturbed."""
    torch.manual_seed(0)
    flow = ConditionalFlow(
        ConditionNet(1, 6, 8, 1), num_scales, steps_per_scale, hidden=8, conv=kind, upscale=upscale
    ).to(dtype)
    size = 2**num_scales * 2
    with torch.no_grad():
        flow.log_prob(rand(8, 1, size, size, dtype, 1), rand(8, 1, size // upscale, size // upscale, dtype, 2))
    perturb(flow, 3)
    return flow


def rand(*shape: int | torch.dtype) -> torch.Tensor:
    """``rand(*size, dtype, seed)``: uniform [0, 1) from a seeded generator."""
    *size, dtype, seed = shape
    return torch.rand(*size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_round_trip(kind, dtype):
    flow = make_flow(kind, dtype, num_scales=3)
    y, x = rand(3, 1, 16, 16, dtype, 4), rand(3, 1, 8, 8, dtype, 5)
    with torch.no_grad():
        zs, logdet = flow(y, x)
        assert (
            [tuple(z.shape) for z in zs]
            == flow.latent_shapes(3, (16, 16))
            == [(3, 2, 8, 8), (3, 4, 4, 4), (3, 16, 2, 2)]
        )
        assert logdet.shape == (3,) and torch.isfinite(logdet).all()
        torch.testing.assert_close(flow.inverse(zs, x), y, rtol=0, atol=TOLERANCE[dtype])
        flow.eval()  # cached 1x1 inverses
        torch.testing.assert_close(flow.inverse(zs, x), y, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_is_change_of_variables(kind):
    """log p(y | x) = log N(z; 0, I) + log|det dz/dy| with the Jacobian of the whole flow (x fixed) from autograd."""
    flow = make_flow(kind, torch.float64, steps_per_scale=1)
    y, x = rand(2, 1, 4, 4, torch.float64, 6), rand(2, 1, 2, 2, torch.float64, 7)
    log_prob = flow.log_prob(y, x)
    assert log_prob.shape == (2,) and torch.isfinite(log_prob).all()
    for i in range(2):
        x_i = x[i : i + 1]
        jacobian = torch.autograd.functional.jacobian(
            lambda t, x_i=x_i: torch.cat([z.flatten(1) for z in flow(t, x_i)[0]], dim=1), y[i : i + 1], vectorize=True
        ).reshape(16, 16)
        z = torch.cat([z.flatten() for z in flow(y[i : i + 1], x_i)[0]])
        expected = torch.linalg.slogdet(jacobian).logabsdet - 0.5 * (z.square().sum() + 16 * math.log(2 * math.pi))
        torch.testing.assert_close(log_prob[i], expected, rtol=1e-10, atol=1e-10)


def test_output_depends_on_x():
    flow = make_flow().eval()
    y = rand(2, 1, 8, 8, torch.float32, 8)
    x1, x2 = rand(2, 1, 4, 4, torch.float32, 9), rand(2, 1, 4, 4, torch.float32, 10)
    with torch.no_grad():
        assert (flow.log_prob(y, x1) - flow.log_prob(y, x2)).abs().min() > 1e-3
    for tau in (0.0, 0.7):
        a = flow.sample(x1, tau, torch.Generator().manual_seed(0))
        b = flow.sample(x2, tau, torch.Generator().manual_seed(0))
        assert (a - b).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    # Each output depends on its own input only: changing the second input leaves the first sample alone.
    x3 = torch.cat([x1[:1], x2[1:]])
    torch.testing.assert_close(flow.sample(x3, 0.0)[:1], flow.sample(x1, 0.0)[:1], rtol=0, atol=1e-6)


def test_tau_zero_is_deterministic_and_the_zero_latent():
    flow = make_flow("emerging").eval()
    x = rand(3, 1, 4, 4, torch.float32, 11)
    mode = flow.sample(x, 0.0, torch.Generator().manual_seed(1))
    assert mode.shape == (3, 1, 8, 8)
    assert torch.equal(mode, flow.sample(x, 0.0, torch.Generator().manual_seed(2)))
    assert torch.equal(mode, flow.sample(x, 0.0))
    with torch.no_grad():
        zeros = [torch.zeros(shape) for shape in flow.latent_shapes(3, (8, 8))]
        torch.testing.assert_close(flow.inverse(zeros, x), mode, rtol=0, atol=0)
    # Samples at tau > 0 differ between draws, and are reproducible from a seed.
    a, b = flow.sample(x, 1.0, torch.Generator().manual_seed(1)), flow.sample(x, 1.0, torch.Generator().manual_seed(2))
    assert not torch.allclose(a, b)
    assert torch.equal(a, flow.sample(x, 1.0, torch.Generator().manual_seed(1)))


def test_sample_inverts_its_noise_and_repeats_inputs():
    flow = make_flow().eval()
    x = rand(2, 1, 4, 4, torch.float32, 12)
    samples = flow.sample(x, 0.6, torch.Generator().manual_seed(3), num_samples=3)
    assert samples.shape == (6, 1, 8, 8)
    generator = torch.Generator().manual_seed(3)
    noise = [torch.randn(shape, generator=generator) * 0.6 for shape in flow.latent_shapes(6, (8, 8))]
    with torch.no_grad():
        for z, expected in zip(flow(samples, x.repeat_interleave(3, 0))[0], noise, strict=True):
            torch.testing.assert_close(z, expected, rtol=0, atol=1e-4)


def test_base_shifts_y_by_a_function_of_x_with_jacobian_one():
    flow = make_flow()
    flow.base = Upsample(2, shift=0.5)
    y, x = rand(3, 1, 8, 8, torch.float32, 16), rand(3, 1, 4, 4, torch.float32, 17) - 0.5
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False) + 0.5
    with torch.no_grad():
        with_base = flow.log_prob(y, x)
        zs = flow(y, x)[0]
        torch.testing.assert_close(flow.inverse(zs, x), y, rtol=0, atol=1e-5)
        flow.base = None
        torch.testing.assert_close(with_base, flow.log_prob(y - up, x))
        flow.base = nn.Identity()
        with pytest.raises(ValueError, match=r"base must map x \[3, 1, 4, 4\] to the shape of y \[3, 1, 8, 8\]"):
            flow.log_prob(y, x)


def test_sampling_stays_finite_far_out_in_the_tails():
    """The soft-clamped scales keep the inverse finite for latents far beyond anything seen in training."""
    flow = make_flow("emerging").eval()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.mul_(20.0)  # extreme scales everywhere
    x = rand(2, 1, 4, 4, torch.float32, 18)
    assert torch.isfinite(flow.sample(x, 30.0, torch.Generator().manual_seed(0))).all()


def test_bits_per_dim_includes_the_dequantization_term():
    flow = make_flow()
    y_int = torch.randint(0, 256, (4, 1, 8, 8), generator=torch.Generator().manual_seed(13))
    x = rand(4, 1, 4, 4, torch.float32, 14)
    bpd = flow.bits_per_dim(y_int, x, 256, torch.Generator().manual_seed(15))
    y, _ = UniformDequantizer(y_int.shape[1], 256).dequantize(y_int, torch.Generator().manual_seed(15))
    assert ((y >= y_int / 256) & (y < (y_int + 1) / 256)).all()
    expected = -(flow.log_prob(y, x) - 64 * math.log(256)) / (64 * math.log(2))
    assert bpd.shape == (4,)
    torch.testing.assert_close(bpd, expected)


def test_mismatched_shapes_raise():
    flow = make_flow()
    y, x = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"x must be \[2, 1, 8/2, 8/2\].*got x of shape \[3, 1, 4, 4\]"):
        flow.log_prob(y, torch.rand(3, 1, 4, 4))  # batch
    with pytest.raises(ValueError, match=r"upscale 2.*got x of shape \[2, 1, 8, 8\]"):
        flow.log_prob(y, torch.rand(2, 1, 8, 8))  # resolution
    with pytest.raises(ValueError, match=r"got x of shape \[2, 3, 4, 4\]"):
        flow.log_prob(y, torch.rand(2, 3, 4, 4))  # channels of the conditioning net's input
    with pytest.raises(ValueError, match=r"y must be \[B, 1, H, W\], got \[2, 2, 8, 8\]"):
        flow.log_prob(torch.rand(2, 2, 8, 8), x)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*num_scales = 4"):
        flow.log_prob(torch.rand(2, 1, 6, 6), torch.rand(2, 1, 3, 3))
    zs = flow(y, x)[0]
    with pytest.raises(ValueError, match="expected 2 latents, got 1"):
        flow.inverse(zs[:1], x)
    with pytest.raises(ValueError, match="got x of shape"):
        flow.inverse(zs, torch.rand(2, 1, 2, 2))
    with pytest.raises(ValueError, match="temperature must be non-negative"):
        flow.sample(x, -0.5)
    with pytest.raises(ValueError, match="conv must be one of"):
        ConditionalFlow(ConditionNet(1, 4), 2, 1, conv="3x3")
    with pytest.raises(ValueError, match="feature_channels must be a positive int"):
        ConditionalFlow(nn.Identity(), 2, 1)
    bad_net = ConditionalFlow(nn.Conv2d(1, 4, 3, padding=1), 2, 1, feature_channels=5)
    with pytest.raises(
        ValueError, match=r"condition_net must map x \[2, 1, 8, 8\] to \[2, 5, h, w\], got \[2, 4, 8, 8\]"
    ):
        bad_net.log_prob(y, torch.rand(2, 1, 8, 8))
    baseline = FactorizedLogistic(ConditionNet(1, 4), upscale=2)
    with pytest.raises(ValueError, match="got x of shape"):
        baseline.bits_per_dim(torch.randint(0, 256, (2, 1, 8, 8)), torch.rand(2, 1, 8, 8))


def make_dequantizer(dtype: torch.dtype = torch.float32) -> BinaryDequantizer:
    torch.manual_seed(0)
    flow = ConditionalFlow(ConditionNet(1, 4, 8, 0), 2, 1, hidden=8, upscale=2)
    model = BinaryDequantizer(flow, 1, hidden=8).to(dtype)
    perturb(model, 4, 0.1)
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [-200.0, -30.0, 0.0, 30.0])
def test_binary_dequantization_lies_on_the_side_of_y(dtype, bias):
    """1[v > 0.5] == y for every draw, including where softplus(r) underflows (bias -200) or is huge."""
    model = make_dequantizer(dtype)
    with torch.no_grad():
        model.net[-1].bias[0] = bias  # the mean of r
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 2, (8, 1, 8, 8), generator=generator)
        x = torch.randn(8, 1, 4, 4, generator=generator, dtype=dtype)
        v, log_q = model.dequantize(y, x, generator)
        assert v.dtype == dtype and torch.isfinite(v).all() and torch.isfinite(log_q).all()
        assert torch.equal((v > 0.5).long(), y)
        assert torch.equal((v > 0.5).long(), (v >= 0.5).long())  # never exactly on the threshold


class GaussianModel(nn.Module):
    """p(v | x) = N(v; 0.5 + x resized to v, sigma^2) per pixel: P(y | x) has a closed form."""

    in_channels = 1

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def mean(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return 0.5 + resize_features(x, size)

    def log_prob(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        normal = torch.distributions.Normal(self.mean(x, v.shape[2:]), self.sigma)
        return normal.log_prob(v).flatten(1).sum(1)

    def exact_log_prob(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        above = torch.distributions.Normal(self.mean(x, y.shape[2:]), self.sigma).cdf(torch.tensor(0.5)).neg().add(1)
        return torch.where(y.bool(), above, 1 - above).log().flatten(1).sum(1)


def test_binary_bound_is_below_the_exact_log_probability():
    """With a p(v | x) whose orthant probabilities are known: E_q[bound] <= log P(y | x) <= 0, and the
    importance-weighted bound closes most of the gap."""
    torch.manual_seed(0)
    model = BinaryDequantizer(GaussianModel(0.4), 1, hidden=8).double()
    perturb(model, 5, 0.1)
    generator = torch.Generator().manual_seed(6)
    y = torch.randint(0, 2, (3, 1, 2, 2), generator=generator)
    x = 0.3 * torch.randn(3, 1, 1, 1, generator=generator, dtype=torch.float64)
    exact = model.flow.exact_log_prob(y, x)
    assert (exact < 0).all()
    with torch.no_grad():
        draws = torch.stack([model.log_prob_bound(y, x, generator) for _ in range(400)])
        elbo, error = draws.mean(0), draws.std(0) / 20
        assert (elbo <= exact + 3 * error).all() and (elbo <= 0).all()
        assert (elbo < exact - 0.5).all()  # an untrained q leaves a real gap ...
        iw = model.log_prob_bound(y, x, generator, num_samples=4096)
        assert (iw <= exact).all() and (exact - iw < 0.3 * (exact - elbo)).all()  # ... that importance weights close


class SoftplusMixture(nn.Module):
    """p(v | x) per pixel: with probability sigmoid(3 x) ``0.5 + softplus(r) + margin``, else ``0.5 - ...``, with
    ``r ~ N(mean, exp(log_scale)^2)``: the posterior p(v | y, x) is then exactly the dequantizer's q family."""

    in_channels = 1

    def __init__(self, mean: float, log_scale: float, margin: float) -> None:
        super().__init__()
        self.mean, self.log_scale, self.margin = mean, log_scale, margin

    def log_p_one(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.nn.functional.logsigmoid(3 * resize_features(x, size))

    def log_prob(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # The density of v, written by inverting the map (the dequantizer goes forwards from r).
        r = torch.log(torch.expm1((v - 0.5).abs() - self.margin))
        log_density = torch.distributions.Normal(self.mean, math.exp(self.log_scale)).log_prob(r)
        log_density = log_density - torch.nn.functional.logsigmoid(r)
        log_p_one = self.log_p_one(x, v.shape[2:])
        log_side = torch.where(v > 0.5, log_p_one, torch.log1p(-log_p_one.exp()))
        return (log_side + log_density).flatten(1).sum(1)

    def exact_log_prob(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_p_one = self.log_p_one(x, y.shape[2:])
        return torch.where(y.bool(), log_p_one, torch.log1p(-log_p_one.exp())).flatten(1).sum(1)


def test_binary_bound_is_tight_when_q_is_the_posterior():
    """log p(v | x) - log q(v | y, x) = log P(y | x) for EVERY draw when q is the posterior: checks the
    log-density of q (Gaussian, softplus Jacobian, margin) against the same density computed backwards."""
    model = BinaryDequantizer(SoftplusMixture(0.3, -0.5, 1e-6), 1, hidden=8).double()
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.copy_(torch.tensor([0.3, -0.5]))
    generator = torch.Generator().manual_seed(6)
    y = torch.randint(0, 2, (4, 1, 4, 4), generator=generator)
    x = torch.randn(4, 1, 2, 2, generator=generator, dtype=torch.float64)
    exact = model.flow.exact_log_prob(y, x)
    for _ in range(3):
        torch.testing.assert_close(model.log_prob_bound(y, x, generator), exact, rtol=0, atol=1e-6)


def test_binary_dequantizer_with_a_flow():
    model = make_dequantizer()
    generator = torch.Generator().manual_seed(7)
    y = torch.randint(0, 2, (4, 1, 8, 8), generator=generator)
    x = torch.randn(4, 1, 4, 4, generator=generator)
    with torch.no_grad():
        assert torch.stack([model.log_prob_bound(y, x, generator) for _ in range(32)]).mean() < 0
        bound = model.log_prob_bound(y, x, generator, num_samples=16)
    torch.testing.assert_close(
        model.bits_per_dim(y, x, torch.Generator().manual_seed(8), num_samples=2),
        -model.log_prob_bound(y, x, torch.Generator().manual_seed(8), num_samples=2) / (64 * math.log(2)),
    )
    assert bound.shape == (4,) and (bound < 0).all()
    model.eval()
    mode = model.predict(x, 0.0)
    assert mode.shape == y.shape and set(mode.unique().tolist()) <= {0, 1}
    assert torch.equal(mode, model.predict(x, 0.0))
    assert torch.equal(mode, (model.flow.sample(x, 0.0) > 0.5).long())
    votes = model.predict(x, 1.0, torch.Generator().manual_seed(9), num_samples=5)
    draws = model.flow.sample(x, 1.0, torch.Generator().manual_seed(9), num_samples=5).view(4, 5, 1, 8, 8) > 0.5
    assert torch.equal(votes, (draws.sum(1) >= 3).long())
    not_binary = y.clone()
    not_binary[0, 0, 0, :3] = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"y must be binary \(0 or 1\), got values \[0, 1, 2\]"):
        model.log_prob_bound(not_binary, x)
    with pytest.raises(ValueError, match=r"x \[B, 1, h, w\] with the same B"):
        model.log_prob_bound(y, x[:3])


def test_factorized_logistic_is_a_distribution_over_256_levels():
    torch.manual_seed(0)
    model = FactorizedLogistic(ConditionNet(1, 4, 8, 0), hidden=8)
    x = torch.full((256, 1, 1, 1), 0.2)
    y = torch.arange(256).view(256, 1, 1, 1)
    with torch.no_grad():
        probabilities = torch.exp2(-model.bits_per_dim(y, x).double())
        torch.testing.assert_close(probabilities.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-4)
        mode = model.sample(x[:1], 0.0)
        mu, _ = model._mu_log_scale(x[:1])
    assert int(mode) == int(torch.floor(mu * 256).clamp(0, 255))
    samples = model.sample(x[:1].expand(2000, 1, 1, 1), 1.0, torch.Generator().manual_seed(0))
    assert samples.min() >= 0 and samples.max() <= 255
    # The sample mean follows the distribution's mean.
    mean = (probabilities * torch.arange(256, dtype=torch.float64)).sum()
    assert abs(samples.double().mean() - mean) < 4


def test_factorized_bernoulli():
    torch.manual_seed(0)
    model = FactorizedBernoulli(ConditionNet(1, 4, 8, 0), upscale=2, hidden=8)
    x = torch.randn(3, 1, 4, 4)
    y = torch.randint(0, 2, (3, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    logits = model.logits(x)
    expected = -(torch.where(y.bool(), torch.sigmoid(logits), 1 - torch.sigmoid(logits))).log2().flatten(1).mean(1)
    torch.testing.assert_close(model.bits_per_dim(y, x), expected)
    assert torch.equal(model.sample(x, 0.0), (logits > 0).long())
    with pytest.raises(ValueError, match="must be binary"):
        model.bits_per_dim(y * 2, x)


def test_downsample_is_rounded_area_average():
    y = torch.tensor([[[[0, 1, 10, 10], [2, 2, 10, 11], [255, 255, 0, 0], [255, 254, 0, 1]]]])
    assert torch.equal(downsample(y, 2), torch.tensor([[[[1, 10], [255, 0]]]]))
    with pytest.raises(ValueError, match="divisible by 3"):
        downsample(y, 3)


def tiny_pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth 8-bit 8x8 images and their 4x4 area averages: a super-resolution task that trains in seconds."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 2, 2, generator=generator)
    y = (torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False) * 255).round()
    y = (y + torch.randint(-8, 9, y.shape, generator=generator)).clamp(0, 255).long()
    return y, downsample(y, 2).float() / 255 - 0.5


def flow_loss(model, y, x, generator):
    return model.bits_per_dim(y, x, 256, generator)


TINY = {"epochs": 3, "batch_size": 64, "lr": 1e-2, "progress": False, "warmup_steps": 2}


def tiny_flow() -> ConditionalFlow:
    return ConditionalFlow(ConditionNet(1, 4, 8, 0), 2, 1, hidden=8, upscale=2)


def test_training_lowers_bits_per_dim_deterministically_and_leaves_global_rng_alone():
    train, test = tiny_pairs(256, 0), tiny_pairs(64, 1)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model_a, history_a = train_conditional(tiny_flow, flow_loss, train, test, seed=7, **TINY)
    assert torch.equal(torch.rand(3), expected_next)
    (first, initial), (last, final) = history_a.test_bpd[0], history_a.test_bpd[-1]
    assert (first, last) == (0, 3) and final < initial - 0.5, history_a.test_bpd
    assert len(history_a.train_bpd) == 3 and history_a.train_time_s > 0 and not model_a.training
    model_b, history_b = train_conditional(tiny_flow, flow_loss, train, test, seed=7, **TINY)
    assert history_a.train_bpd == history_b.train_bpd and history_a.test_bpd == history_b.test_bpd
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="as many y as x"):
        train_conditional(tiny_flow, flow_loss, (train[0], train[1][:3]), seed=0, **TINY)


@needs_sklearn
@needs_skimage
@needs_matplotlib
def test_benchmark_script_quick(tmp_path, capsys):
    """benchmarks/experiments/conditional_results.py --quick: the CI smoke run of the tables and figures."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "conditional_results.py"
    spec = importlib.util.spec_from_file_location("conditional_results", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--no-progress", "--out", str(tmp_path), "--experiments", "sr2", "binary"]) == 0
    printed = capsys.readouterr().out
    rows = ("| bicubic |", "| flow temperature=0.0 |", "| logistic temperature=1.0 |", "| bernoulli argmax |")
    for row in (*rows, "| flow temperature=0 |"):
        assert row in printed
    for name in ("conditional_sr_x2.png", "conditional_binary.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| flow temperature=0.5 |" in (tmp_path / "conditional_results.md").read_text()
    # The README renders the results file the script writes (one seed in a quick run: no spread to judge by).
    spec = importlib.util.spec_from_file_location("render_readme", script.parents[1] / "render_readme.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    document = json.loads((tmp_path / "conditional_results.json").read_text())
    assert document["seeds"] == [0] and [run["seed"] for run in document["sr2"]["runs"]] == [0]
    for experiment in ("sr2", "binary"):
        text = render.render_conditional([("conditional_results.json", document)], experiment)
        assert "Mean ± sample standard deviation over seeds 0." in text
        assert text.count("one seed: it cannot tell the difference from noise") == 2
    assert "| bicubic | — |" in render.render_conditional([("conditional_results.json", document)], "sr2")


def test_benchmark_script_keeps_runs_written_under_the_old_names(tmp_path):
    """Seed 0 of the committed results was written before the glossary renamed the flow's budget keys (levels,
    steps) and the temperature (tau): --add-seeds reads those runs under today's names, so that they match
    today's budget and group with new seeds by method."""
    from flowkernels.benchmarks.seeds import runs_by_seed

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "conditional_results.py"
    spec = importlib.util.spec_from_file_location("conditional_results", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    budget = module.FULL["sr"][2]
    old_flow = {"levels": budget["flow"]["num_scales"], "steps": budget["flow"]["steps_per_scale"]}
    old_budget = budget | {"flow": {**old_flow, "hidden": budget["flow"]["hidden"], "conv": budget["flow"]["conv"]}}
    rows = [{"method": "flow tau=0.0", "bpd": 2.9}, {"method": "bicubic", "bpd": None}]
    section = {"budget": old_budget, "runs": [{"seed": 0, "budget": old_budget, "rows": rows}]}
    document = {"machine": {"commit": "abc", "threads": 1}, "sr2": section}
    (tmp_path / "old.json").write_text(json.dumps(document))
    kept = runs_by_seed([tmp_path / "old.json"], budget, lambda doc: module.with_current_names(doc.get("sr2")))
    assert [row["method"] for row in kept[0][0]["rows"]] == ["flow temperature=0.0", "bicubic"]
    assert kept[0][0]["budget"] == json.loads(json.dumps(budget)) and kept[0][0]["commit"] == "abc"
    # Without the renames the budgets differ: the names are what changed, nothing else.
    with pytest.raises(ValueError, match="another budget"):
        runs_by_seed([tmp_path / "old.json"], budget, lambda doc: doc.get("sr2"))
    assert module.with_current_names(None) is None


@needs_sklearn
@needs_skimage
def test_benchmark_script_keeps_each_runs_commit_when_it_rewrites_the_file(tmp_path):
    """Runs written without their own commit take their file's; the script rewrites that file after each
    experiment, so it must read every kept run (and stamp the carried-over ones) before the first rewrite, or
    the later experiments' seeds would claim the new commit. Joined here: the committed seed-0 runs, nothing
    trained."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "conditional_results.py"
    spec = importlib.util.spec_from_file_location("conditional_results", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    document = json.loads((script.parents[1] / "results" / "conditional_results.json").read_text())
    document["machine"] |= {"commit": "0ld", "threads": 7}
    for experiment in ("sr2", "sr4", "binary"):
        section = document[experiment]
        section["runs"] = [
            {k: v for k, v in run.items() if k not in ("commit", "threads")}
            for run in section["runs"]
            if run["seed"] == 0
        ]
    (tmp_path / "conditional_results.json").write_text(json.dumps(document))
    argv = ["--out", str(tmp_path), "--seeds", "0", "--no-progress", "--add-seeds"]
    assert module.main([*argv, "--experiments", "sr2", "binary"]) == 0
    joined = json.loads((tmp_path / "conditional_results.json").read_text())
    for experiment in ("sr2", "sr4", "binary"):  # sr4: carried over, not asked for
        assert [(run["commit"], run["threads"]) for run in joined[experiment]["runs"]] == [("0ld", 7)], experiment
    assert joined["machine"]["commit"] != "0ld"
    assert "Nothing trained" in (tmp_path / "conditional_results.md").read_text()


def test_evaluate_conditional_is_the_mean_per_pair_over_any_batching():
    """The README's conditional bits/dim come from evaluate_conditional: the mean of the per-pair loss over
    every pair, the same for every batch size, with noise that is seeded and so repeatable."""
    from flowkernels.models.conditional_training import evaluate_conditional

    y = torch.arange(23, dtype=torch.float64).view(23, 1, 1, 1)
    x = torch.zeros(23, 1, 1, 1)
    model = nn.Linear(1, 1)

    def deterministic(net, y_batch, x_batch, generator):
        assert not net.training  # evaluated in eval mode
        return y_batch.flatten(1).mean(1) * 2 + 1

    for batch_size in (1, 5, 23, 256):
        assert evaluate_conditional(model, deterministic, y, x, batch_size=batch_size) == pytest.approx(23.0)
    assert model.training  # the caller's mode is restored

    def noisy(net, y_batch, x_batch, generator):
        return torch.rand(len(y_batch), generator=generator, dtype=torch.float64)

    first = evaluate_conditional(model, noisy, y, x, batch_size=4)
    assert first == evaluate_conditional(model, noisy, y, x, batch_size=4) and 0 < first < 1


def test_evaluate_conditional_gives_the_factorised_logistic_its_exact_bits():
    from flowkernels.models.conditional_training import evaluate_conditional

    torch.manual_seed(0)
    model = FactorizedLogistic(ConditionNet(1, 4, 8, 0), hidden=8, upscale=2).double()
    y = torch.randint(0, 256, (6, 1, 8, 8))
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    value = evaluate_conditional(model, lambda net, yb, xb, g: net.bits_per_dim(yb, xb), y, x, batch_size=4)
    with torch.no_grad():
        model.eval()
        assert value == pytest.approx(model.bits_per_dim(y, x).mean().item(), rel=1e-12)
