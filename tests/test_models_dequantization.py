"""Dequantization (models/dequantization.py): the bounds, the dequantizers, and the dequantized flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from flowkernels.models.bounds import elbo, iw_bound, renyi_bound
from flowkernels.models.dequantization import (
    DEQUANTIZERS,
    ARConvDequantizer,
    AutoregressiveDequantizer,
    DequantizedFlow,
    UniformDequantizer,
    VariationalDequantizer,
    make_dequantizer,
    toy_flow,
)
from flowkernels.models.dequantization_training import train_dequantized

LEVELS = 4
# The dequantizers whose q factorises in the raster order, with conditional_log_prob.
TRIANGULAR = ("arconv", "autoregressive")


def randomize(module: nn.Module, scale: float = 0.1, seed: int = 0) -> nn.Module:
    """Give every parameter (including the zero-initialised ones) random values, so q is far from its init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def toy_model(kind: str, seed: int = 0, *, channels: int = 2, **kwargs) -> DequantizedFlow:
    """A float64 dequantized toy flow on ``[B, channels, 1, 1]`` with ``LEVELS`` levels, randomised."""
    torch.manual_seed(seed)
    deq_kwargs = {} if kind == "uniform" else {"hidden": 8, "steps": 2}
    model = DequantizedFlow(
        toy_flow(channels, steps=2, hidden=8), make_dequantizer(kind, channels, LEVELS, **deq_kwargs)
    )
    model = model.double()
    x = torch.randint(0, LEVELS, (64, channels, 1, 1))
    with torch.no_grad():
        model.log_weights(x, 1)  # ActNorm's data-dependent initialisation
    randomize(model.dequantizer, seed=seed)
    randomize(model.flow, scale=0.05, seed=seed + 1)
    return model.eval()


def all_cells(channels: int = 2) -> torch.Tensor:
    """Every x of the toy: ``LEVELS ** channels`` vectors ``[N, channels, 1, 1]``."""
    grids = torch.cartesian_prod(*[torch.arange(LEVELS)] * channels).view(-1, channels)
    return grids.view(-1, channels, 1, 1)


# ---------------------------------------------------------------------------------------------------------
# The objectives on shared samples.


def shared_log_weights(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    spread = torch.rand(1, 6, generator=generator, dtype=torch.float64) * 20
    return -50 + spread * torch.randn(16, 6, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
def test_bounds_are_ordered_on_shared_samples(seed):
    log_weights = shared_log_weights(seed)
    lower, upper = elbo(log_weights), iw_bound(log_weights)
    previous = upper
    for alpha in (0.01, 0.1, 0.5, 0.9, 0.99):
        value = renyi_bound(log_weights, alpha)
        assert torch.all(lower <= value + 1e-12) and torch.all(value <= upper + 1e-12)
        assert torch.all(value <= previous + 1e-12)  # non-increasing in alpha
        previous = value
    assert torch.all(lower < upper)  # the weights differ, so the inequalities are strict somewhere


def test_renyi_endpoints():
    log_weights = shared_log_weights(7)
    torch.testing.assert_close(renyi_bound(log_weights, 0.0), iw_bound(log_weights), rtol=1e-13, atol=1e-12)
    assert torch.equal(renyi_bound(log_weights, 1.0), elbo(log_weights))
    for gap in (1e-3, 1e-6, 1e-9):
        # alpha -> 1 tends to the ELBO, with no cancellation blow-up near the limit (error ~ gap * variance).
        difference = (renyi_bound(log_weights, 1 - gap) - elbo(log_weights)).abs().max().item()
        assert difference <= 200 * gap + 1e-9
    # float32 near the limit: still within rounding of the ELBO.
    single = log_weights.float()
    assert (renyi_bound(single, 1 - 1e-6) - elbo(single)).abs().max() < 1e-2


def test_iw_with_one_sample_is_the_elbo():
    log_weights = shared_log_weights(3)[:1]
    assert torch.equal(iw_bound(log_weights), elbo(log_weights))
    torch.testing.assert_close(renyi_bound(log_weights, 0.5), elbo(log_weights), rtol=0, atol=1e-12)


def test_bounds_are_stable_for_very_negative_log_weights():
    log_weights = torch.tensor([[-1e4, -2e4], [-1e4 + 1.0, -2e4 - 5.0]])
    assert torch.all(torch.exp(log_weights) == 0)  # a naive log(mean(exp(.))) would give -inf
    expected_iw = torch.tensor([-1e4 + math.log((1 + math.e) / 2), -2e4 + math.log((1 + math.exp(-5)) / 2)])
    torch.testing.assert_close(iw_bound(log_weights.double()), expected_iw.double())
    for alpha in (0.0, 0.5, 0.999):
        value = renyi_bound(log_weights, alpha)
        assert torch.isfinite(value).all()
        assert torch.all(elbo(log_weights) <= value + 1e-2) and torch.all(value <= iw_bound(log_weights) + 1e-2)


def test_bound_gradients_are_finite_near_alpha_one_and_far_out():
    log_weights = torch.tensor([[-1e4, 3.0], [50.0, -3.0], [0.0, 1e-3]], dtype=torch.float64, requires_grad=True)
    for alpha in (0.0, 0.5, 1 - 1e-8):
        (gradient,) = torch.autograd.grad(renyi_bound(log_weights, alpha).sum(), log_weights)
        assert torch.isfinite(gradient).all()
        # The gradient of each bound is a set of normalised importance weights: it sums to 1 per example.
        torch.testing.assert_close(gradient.sum(0), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_out_of_range_is_an_error(alpha):
    with pytest.raises(ValueError, match="alpha must be in"):
        renyi_bound(torch.zeros(2, 3), alpha)
    with pytest.raises(ValueError, match="alpha must be in"):
        DequantizedFlow(toy_flow(), UniformDequantizer(2, LEVELS), objective="renyi", alpha=alpha)


def test_fewer_than_one_sample_is_an_error():
    for function in (elbo, iw_bound):
        with pytest.raises(ValueError, match="K >= 1"):
            function(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="K >= 1"):
        renyi_bound(torch.zeros(0, 3), 0.5)
    with pytest.raises(ValueError, match=r"\[K, B\]"):
        iw_bound(torch.zeros(3))
    model = DequantizedFlow(toy_flow(), UniformDequantizer(2, LEVELS))
    for k in (0, -1, 2.5):
        with pytest.raises(ValueError, match="K must be an integer >= 1"):
            model.log_weights(all_cells(), k)
        with pytest.raises(ValueError, match="K must be an integer >= 1"):
            DequantizedFlow(toy_flow(), UniformDequantizer(2, LEVELS), num_samples=k)


# ---------------------------------------------------------------------------------------------------------
# Bounds of real dequantized flows against the exact log P of the toy.


@pytest.mark.parametrize("kind", DEQUANTIZERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_mean_iw_bound_is_non_decreasing_in_k(kind, seed):
    """Averaged over a pool of samples split into nested groups, iw(2K) >= iw(K) (Jensen on each merge)."""
    model = toy_model(kind, seed)
    x = all_cells()
    with torch.no_grad():
        pool = model.log_weights(x, 256, torch.Generator().manual_seed(seed))
    means = []
    for k in (1, 2, 4, 8, 16, 64, 256):
        groups = pool.view(256 // k, k, -1)
        means.append(torch.stack([iw_bound(group) for group in groups]).mean().item())
    assert all(later >= earlier - 1e-12 for earlier, later in zip(means, means[1:], strict=False))
    assert means[-1] > means[0]


@pytest.mark.parametrize("kind", DEQUANTIZERS)
def test_every_bound_is_below_the_exact_log_likelihood(kind):
    model = toy_model(kind, seed=2)
    x = all_cells()
    exact = model.quadrature_log_prob(x, nodes=64)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for objective, k in (("elbo", 1), ("elbo", 8), ("iw", 8), ("renyi", 8)):
            draws = torch.stack([model.bound(x, objective, k, generator=generator) for _ in range(200)])
            mean, standard_error = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
            assert torch.all(mean <= exact + 4 * standard_error + 1e-9), objective
        # The iw bound closes the gap as K grows (to Monte-Carlo noise of about 1e-3 at K = 4096).
        gaps = [
            (exact - model.iw_log_likelihood(x, k, chunk=1024, generator=generator)).mean().item()
            for k in (1, 64, 4096)
        ]
        assert gaps[0] > gaps[1] > gaps[2] > -5e-3
        assert gaps[2] < 0.25 * gaps[0] + 5e-3


def test_quadrature_log_prob_sums_to_the_mass_of_the_flow_in_the_box():
    """Sum of P(x) over every cell = mass of p on [0, levels)^2; the same mass by a fine grid in y."""
    model = toy_model("uniform", seed=3)
    total = model.quadrature_log_prob(all_cells(), nodes=32).exp().sum()
    side = torch.linspace(0, 1, 801, dtype=torch.float64)[:-1] + 1 / 1600  # midpoints of a 800x800 grid
    y = torch.cartesian_prod(side, side).view(-1, 2, 1, 1)
    with torch.no_grad():
        mass = model.flow.log_prob(y).exp().mean()
    torch.testing.assert_close(total, mass, rtol=1e-4, atol=0)
    assert 0 < total <= 1


class PiecewiseConstantDensity(nn.Module):
    """A density on [0, 1)^2 constant on each of the LEVELS x LEVELS cells: ``p = LEVELS^2 * P[cell]``."""

    def __init__(self, probabilities: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("log_p", torch.log(probabilities))

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        cell = torch.floor(y.flatten(1) * LEVELS).long().clamp(0, LEVELS - 1)
        return self.log_p[cell[:, 0], cell[:, 1]] + 2 * math.log(LEVELS)


def test_uniform_dequantization_is_exact_for_a_piecewise_constant_density():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.rand(LEVELS, LEVELS, generator=generator, dtype=torch.float64) + 0.1
    probabilities /= probabilities.sum()
    model = DequantizedFlow(PiecewiseConstantDensity(probabilities), UniformDequantizer(2, LEVELS).double())
    x = all_cells()
    exact = torch.log(probabilities[x[:, 0, 0, 0], x[:, 1, 0, 0]])
    for objective in ("elbo", "iw", "renyi"):
        for k in (1, 5):
            torch.testing.assert_close(model.bound(x, objective, k, generator=generator), exact, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.quadrature_log_prob(x, nodes=8), exact, rtol=0, atol=1e-12)


def test_evaluate_bpd_is_the_exact_bits_per_dim_where_the_bound_is_exact():
    """The README's test bits/dim come from evaluate_bpd: with a density constant on every bin the iw bound
    is log P(x) exactly, so evaluate_bpd must be -mean log2 P(x) / D, whatever the batching and K."""
    generator = torch.Generator().manual_seed(1)
    probabilities = torch.rand(LEVELS, LEVELS, generator=generator, dtype=torch.float64) + 0.1
    probabilities /= probabilities.sum()
    model = DequantizedFlow(PiecewiseConstantDensity(probabilities), UniformDequantizer(2, LEVELS).double())
    x = all_cells()
    expected = -torch.log2(probabilities[x[:, 0, 0, 0], x[:, 1, 0, 0]]).mean().item() / 2
    for batch_size, k, chunk in ((5, 7, 3), (100, 1, 1), (16, 12, 12)):
        value = model.evaluate_bpd(x, k, batch_size=batch_size, chunk=chunk)
        assert value == pytest.approx(expected, rel=1e-12, abs=0)


def test_evaluate_bpd_approaches_the_exact_value_from_above_for_a_flow():
    model = toy_model("uniform", seed=6)
    x = all_cells()
    exact = -(model.quadrature_log_prob(x, nodes=64) / math.log(2)).mean().item() / 2
    coarse = model.evaluate_bpd(x.repeat(256, 1, 1, 1), 1, batch_size=512)  # the ELBO, averaged over many draws
    fine = model.evaluate_bpd(x, 4096, batch_size=7, chunk=1024)
    assert coarse > fine >= exact - 2e-3  # an upper bound in bits (to Monte-Carlo noise), tightening with K
    assert fine - exact < 0.25 * (coarse - exact) + 2e-3


# ---------------------------------------------------------------------------------------------------------
# The dequantizers.


@pytest.mark.parametrize("kind", DEQUANTIZERS)
def test_samples_lie_in_their_bin(kind):
    torch.manual_seed(0)
    dequantizer = make_dequantizer(kind, 1, 17) if kind == "uniform" else make_dequantizer(kind, 1, 17, hidden=8)
    x = torch.randint(0, 17, (8, 1, 8, 8))
    # 0.1: a trained-looking q; 30: logits far beyond where a float32 sigmoid rounds to 1 (u would be 1).
    for scale in (0.1, 30.0):
        randomize(dequantizer, scale=scale)
        u, log_q = dequantizer.sample(x, 4, torch.Generator().manual_seed(1))
        assert u.shape == (4, *x.shape) and log_q.shape == (4, 8)
        assert torch.all(u >= 0) and torch.all(u < 1)
        assert torch.equal(torch.floor(x + u).long(), x.expand_as(u))
        if scale < 1:
            assert torch.isfinite(log_q).all()


@pytest.mark.parametrize("kind", ["variational", "arconv", "autoregressive"])
def test_log_prob_of_samples_matches_the_sampling_density(kind):
    dequantizer = randomize(make_dequantizer(kind, 2, LEVELS, hidden=8, steps=3)).double()
    x = torch.randint(0, LEVELS, (5, 2, 3, 3))
    u, log_q = dequantizer.sample(x, 1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(dequantizer.log_prob(u[0], x), log_q[0], rtol=1e-10, atol=1e-9)


def integrate_over_unit_cube(log_density, dims: int, nodes: int) -> torch.Tensor:
    """``integral over [0, 1)^dims of exp(log_density(u)) du``, by Gauss-Legendre in ``t = logit(u)``.

    In logit space the integrand (the density of ``logit(u)``) is smooth and decays exponentially, where
    in ``u`` a q with a logistic base may have integrable but infinite peaks at the faces of the cube.
    ``t`` in [-30, 30] leaves out less than ``exp(-30 / scale)`` of the mass.
    """
    points, weights = (torch.from_numpy(a) * 30 for a in np.polynomial.legendre.leggauss(nodes))
    t = torch.cartesian_prod(*[points] * dims).view(-1, dims)
    w = torch.cartesian_prod(*[weights] * dims).view(-1, dims).prod(1)
    jacobian = (torch.nn.functional.logsigmoid(t) + torch.nn.functional.logsigmoid(-t)).sum(1)
    return ((log_density(torch.sigmoid(t)) + jacobian).exp() * w).sum()


@pytest.mark.parametrize("kind", ["variational", "arconv", "autoregressive"])
@pytest.mark.parametrize("seed", [0, 1])
def test_q_integrates_to_one_over_the_bin(kind, seed):
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.manual_seed(seed)  # the initial weights too, not just the randomisation: no dependence on test order
    dequantizer = randomize(make_dequantizer(kind, 2, LEVELS, hidden=8, steps=2), seed=seed).double()
    for cell in ([0, 3], [2, 1]):
        x = torch.tensor(cell).view(1, 2, 1, 1)

        def log_q(u, x=x):
            return dequantizer.log_prob(u.view(-1, 2, 1, 1), x.expand(len(u), -1, -1, -1))

        torch.testing.assert_close(integrate_over_unit_cube(log_q, 2, 300), one, atol=1e-5, rtol=0)
    # One dimension.
    dequantizer = randomize(make_dequantizer(kind, 1, LEVELS, hidden=8, steps=2), seed=seed).double()

    def log_q_1d(u):
        u = u.view(-1, 1, 1, 1)
        return dequantizer.log_prob(u, torch.ones_like(u, dtype=torch.long))

    torch.testing.assert_close(integrate_over_unit_cube(log_q_1d, 1, 1000), one, atol=1e-6, rtol=0)


def raster_index(shape: tuple[int, int, int], position: int) -> tuple[int, int, int]:
    """(channel, row, column) of element ``position`` in the raster order: pixels row by row, channels inside."""
    channels, _, width = shape
    pixel, channel = divmod(position, channels)
    return channel, pixel // width, pixel % width


@pytest.mark.parametrize("kind", TRIANGULAR)
def test_autoregressive_conditionals_depend_only_on_earlier_dimensions(kind):
    torch.manual_seed(0)
    dequantizer = randomize(make_dequantizer(kind, 2, LEVELS, hidden=8, steps=3)).double()
    shape = (2, 4, 4)
    x = torch.randint(0, LEVELS, (3, *shape))
    u = torch.rand(3, *shape, dtype=torch.float64)
    terms = dequantizer.conditional_log_prob(u, x)
    torch.testing.assert_close(terms.flatten(1).sum(1), dequantizer.log_prob(u, x))
    order = [raster_index(shape, d) for d in range(math.prod(shape))]
    for d in (0, 5, 13, 31):
        perturbed = u.clone()
        for c, i, j in order[d + 1 :]:
            perturbed[:, c, i, j] = torch.rand(3, dtype=torch.float64)
        new_terms = dequantizer.conditional_log_prob(perturbed, x)
        for c, i, j in order[: d + 1]:
            torch.testing.assert_close(new_terms[:, c, i, j], terms[:, c, i, j], rtol=0, atol=1e-12)
        if d + 1 < len(order):
            assert not torch.allclose(new_terms, terms)  # the later factors do depend on what changed


@pytest.mark.parametrize("kind", TRIANGULAR)
def test_autoregressive_conditional_is_a_normalised_density(kind):
    """For fixed u_<d, integrating q(u_d | u_<d, x) over u_d in [0, 1) gives 1."""
    dequantizer = randomize(make_dequantizer(kind, 1, LEVELS, hidden=8, steps=2)).double()
    x = torch.randint(0, LEVELS, (1, 1, 3, 3))
    u = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    c, i, j = raster_index((1, 3, 3), 4)

    def log_conditional(u_d):
        grid = u.repeat(len(u_d), 1, 1, 1)
        grid[:, c, i, j] = u_d[:, 0]
        return dequantizer.conditional_log_prob(grid, x.expand(len(u_d), -1, -1, -1))[:, c, i, j]

    mass = integrate_over_unit_cube(log_conditional, 1, 1000)
    torch.testing.assert_close(mass, torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0)


def test_dequantizers_depend_on_x():
    for dequantizer in (
        randomize(VariationalDequantizer(1, 17, hidden=8)),
        randomize(ARConvDequantizer(1, 17, hidden=8)),
        randomize(AutoregressiveDequantizer(1, 17, hidden=8)),
    ):
        u, _ = dequantizer.sample(torch.zeros(2, 1, 4, 4, dtype=torch.long), 1, torch.Generator().manual_seed(0))
        v, _ = dequantizer.sample(torch.full((2, 1, 4, 4), 16), 1, torch.Generator().manual_seed(0))
        assert not torch.allclose(u, v)


# ---------------------------------------------------------------------------------------------------------
# The dequantized flow.


@pytest.mark.parametrize("kind", DEQUANTIZERS)
@pytest.mark.parametrize("objective", ["elbo", "iw", "renyi"])
def test_gradients_reach_the_flow_and_q(kind, objective):
    torch.manual_seed(0)
    from flowkernels.models.glow import Glow

    deq_kwargs = {} if kind == "uniform" else {"hidden": 8, "steps": 2}
    model = DequantizedFlow(
        Glow(1, 2, 1, 8), make_dequantizer(kind, 1, 17, **deq_kwargs), objective=objective, num_samples=3
    )
    x = torch.randint(0, 17, (4, 1, 8, 8))
    model(x).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert sum(p.grad.abs().sum() for p in model.flow.parameters()) > 0
    if kind != "uniform":
        # The zero-initialised output convs of q get a gradient at once (the layers before them one step later).
        assert sum(p.grad.abs().sum() for p in model.dequantizer.parameters()) > 0


@pytest.mark.parametrize("conv", ["emerging", "periodic"])
def test_any_glow_convolution_can_be_dequantized(conv):
    torch.manual_seed(0)
    from flowkernels.models.glow import Glow

    model = DequantizedFlow(Glow(1, 2, 1, 8, conv=conv), AutoregressiveDequantizer(1, 17, hidden=8), objective="iw")
    x = torch.randint(0, 17, (4, 1, 8, 8))
    loss = model(x)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_bad_data_is_an_error():
    model = DequantizedFlow(toy_flow(), VariationalDequantizer(2, LEVELS, hidden=8))
    with pytest.raises(ValueError, match=r"\[B, 2, H, W\]"):
        model.log_weights(torch.zeros(3, 1, 1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        model.log_weights(torch.zeros(3, 2, 1, 1))
    with pytest.raises(ValueError, match=r"0 \.\. 3"):
        model.log_weights(torch.full((3, 2, 1, 1), 4))
    with pytest.raises(ValueError, match="shape of x"):
        model.dequantizer.log_prob(torch.zeros(3, 2, 2, 1), torch.zeros(3, 2, 1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="objective must be one of"):
        DequantizedFlow(toy_flow(), UniformDequantizer(2, LEVELS), objective="kl")
    with pytest.raises(ValueError, match="kind must be one of"):
        make_dequantizer("gaussian", 1, LEVELS)
    with pytest.raises(ValueError, match="D <= 3"):
        DequantizedFlow(toy_flow(4), UniformDequantizer(4, LEVELS)).quadrature_log_prob(torch.zeros(1, 4, 1, 1).long())


def test_iw_log_likelihood_in_chunks_equals_one_pass():
    model = toy_model("variational", seed=4)
    x = all_cells()
    one_pass = iw_bound(model.log_weights(x, 60, torch.Generator().manual_seed(5)))
    chunked = model.iw_log_likelihood(x, 60, chunk=25, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(chunked, one_pass, rtol=1e-12, atol=1e-12)


def test_train_dequantized_runs_and_is_deterministic():
    runs = [
        train_dequantized(
            "autoregressive",
            "renyi",
            num_samples=2,
            epochs=1,
            batch_size=500,
            steps_per_scale=1,
            hidden=8,
            dequantizer_hidden=8,
            dequantizer_steps=1,
            eval_samples=2,
            progress=False,
        )
        for _ in range(2)
    ]
    (model, history), (_, again) = runs
    assert history.train_bpd == again.train_bpd and history.test_bpd == again.test_bpd
    assert len(history.train_bpd) == 1 and [epoch for epoch, _ in history.test_bpd] == [0, 1]
    assert all(math.isfinite(value) for _, value in history.test_bpd)
    assert not model.training


def test_the_experiment_script_runs_in_quick_mode(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "dequantization_results.py"
    spec = importlib.util.spec_from_file_location("dequantization_results", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| uniform |" in printed and "| autoregressive (ARD) |" in printed and "| uniform, iw (K=8) |" in printed
    assert "| ar_conv2d flow (linear in u_<d) |" in printed and "seeds [0]" in printed
    assert "claim: uniform, iw (K=8) improves on uniform" in printed  # the paper's claim, with uniform q
    assert (tmp_path / "dequantization_toy_gap.png").stat().st_size > 0


def test_the_experiment_script_joins_seeds_run_elsewhere(tmp_path):
    """--add-seeds: each seed's runs come whole from the first results file that has the seed, stamped with the
    commit and threads they ran at; a smoke run or another budget is refused."""
    import importlib.util
    import json
    from pathlib import Path

    from flowkernels.benchmarks.seeds import runs_by_seed

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "dequantization_results.py"
    spec = importlib.util.spec_from_file_location("dequantization_results", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    budget = {"digits_epochs": 40, "toy_eval_k": [1, 8]}

    def results_file(name, seeds, commit, quick=False, budget=budget):
        runs = [{"seed": seed, "label": label, "test_bpd": seed + 0.5} for seed in seeds for label in ("a", "b")]
        document = {"machine": {"commit": commit, "threads": 1}, "quick": quick, "budget": budget}
        document |= {"digits": {"runs": runs}, "toy": {"runs": runs[:1]}}
        (tmp_path / name).write_text(json.dumps(document))
        return tmp_path / name

    first, second = results_file("first.json", [0], "aaa"), results_file("second.json", [0, 1], "bbb")
    files = [first, second, tmp_path / "missing.json"]
    kept = {
        name: runs_by_seed(files, budget, lambda d, name=name: script._section(d, name)) for name in ("toy", "digits")
    }
    assert sorted(kept["digits"]) == [0, 1] and sorted(kept["toy"]) == [0]
    assert [run["commit"] for run in kept["digits"][0]] == ["aaa", "aaa"]  # seed 0 whole from the first file
    assert [(run["label"], run["commit"], run["threads"]) for run in kept["digits"][1]] == [
        ("a", "bbb", 1),
        ("b", "bbb", 1),
    ]
    digits = lambda document: script._section(document, "digits")  # noqa: E731
    with pytest.raises(ValueError, match="another budget"):
        runs_by_seed([results_file("other.json", [2], "c", budget={"digits_epochs": 5})], budget, digits)
    with pytest.raises(ValueError, match="smoke run"):
        runs_by_seed([results_file("quick.json", [2], "c", quick=True)], budget, digits)
