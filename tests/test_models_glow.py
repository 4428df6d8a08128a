"""Tests of the multi-scale Glow (1x1, emerging and periodic convs), its training loop and sample grids."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from flowkernels.models.dequantization import UniformDequantizer, quantize
from flowkernels.models.glow import CONV_KINDS, Glow
from flowkernels.models.glow_training import save_sample_grid, train_glow

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
LEVELS = 17

# Optional dependencies (the `models` extra): training reads the scikit-learn digits, grids are drawn by matplotlib.
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")


def make_glow(kind: str, dtype: torch.dtype = torch.float32, steps: int = 2, hidden: int = 16) -> Glow:
    """A small digits Glow, ActNorm-initialised on data and then perturbed so that no layer is the identity.

    The zero-initialised convs (coupling outputs, split priors) would otherwise hide bugs in their inverses.
    """
    torch.manual_seed(0)
    model = Glow(1, 2, steps, hidden, conv=kind).to(dtype)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.log_prob(torch.rand(16, 1, 8, 8, generator=generator, dtype=dtype))
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=dtype) * 0.02)
    return model


def digits_like(batch: int, dtype: torch.dtype = torch.float32, seed: int = 3) -> torch.Tensor:
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("kind", CONV_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_round_trip(kind, dtype):
    model = make_glow(kind, dtype)
    x = digits_like(3, dtype)
    with torch.no_grad():
        zs, logdet = model(x)
        assert [tuple(z.shape) for z in zs] == model.latent_shapes(3) == [(3, 2, 4, 4), (3, 8, 2, 2)]
        assert logdet.shape == (3,)
        torch.testing.assert_close(model.inverse(zs), x, rtol=0, atol=TOLERANCE[dtype])
        model.eval()  # the cached 1x1 inverses must give the same result
        torch.testing.assert_close(model.inverse(zs), x, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("kind", CONV_KINDS)
def test_log_prob_is_change_of_variables(kind):
    """log p(x) = log N(z; 0, I) + log|det dz/dx| with the Jacobian of the whole model from autograd."""
    model = make_glow(kind, torch.float64, steps=1, hidden=8)
    x = digits_like(2, torch.float64)
    log_prob = model.log_prob(x)
    assert log_prob.shape == (2,) and torch.isfinite(log_prob).all()
    for i in range(2):
        sample = x[i : i + 1]
        jacobian = torch.autograd.functional.jacobian(
            lambda t: torch.cat([z.flatten(1) for z in model(t)[0]], dim=1), sample, vectorize=True
        ).reshape(64, 64)
        z = torch.cat([z.flatten() for z in model(sample)[0]])
        expected = torch.linalg.slogdet(jacobian).logabsdet - 0.5 * (z.square().sum() + 64 * math.log(2 * math.pi))
        torch.testing.assert_close(log_prob[i], expected, rtol=1e-10, atol=1e-10)


def test_sample_inverts_its_noise():
    model = make_glow("emerging")
    samples = model.sample(5, temperature=0.7, generator=torch.Generator().manual_seed(4))
    assert samples.shape == (5, 1, 8, 8) and torch.isfinite(samples).all()
    generator = torch.Generator().manual_seed(4)
    noise = [torch.randn(shape, generator=generator) * 0.7 for shape in model.latent_shapes(5)]
    with torch.no_grad():
        for z, expected in zip(model(samples)[0], noise, strict=True):
            torch.testing.assert_close(z, expected, rtol=0, atol=1e-4)
    again = model.sample(5, temperature=0.7, generator=torch.Generator().manual_seed(4))
    assert torch.equal(samples, again)


def test_bits_per_dim_is_dequantized_log_prob():
    model = make_glow("periodic")
    x_int = torch.randint(0, LEVELS, (4, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    bpd = model.bits_per_dim(x_int, LEVELS, torch.Generator().manual_seed(6))
    x_cont, _ = UniformDequantizer(x_int.shape[1], LEVELS).dequantize(x_int, torch.Generator().manual_seed(6))
    assert ((x_cont >= x_int / LEVELS) & (x_cont < (x_int + 1) / LEVELS)).all()
    expected = -(model.log_prob(x_cont) - 64 * math.log(LEVELS)) / (64 * math.log(2))
    assert bpd.shape == (4,)
    torch.testing.assert_close(bpd, expected)


def test_quantize_inverts_dequantize():
    x_int = torch.arange(LEVELS).repeat(50).view(-1, 1, 1, 1)
    uniform = UniformDequantizer(x_int.shape[1], LEVELS)
    for seed in range(3):
        assert torch.equal(quantize(uniform.dequantize(x_int, torch.Generator().manual_seed(seed))[0], LEVELS), x_int)
    assert torch.equal(quantize(torch.tensor([-0.3, 1.2]), LEVELS), torch.tensor([0, LEVELS - 1]))


def test_unknown_conv_kind_raises():
    with pytest.raises(ValueError, match="conv must be one of"):
        Glow(1, 2, 1, 8, conv="3x3")


TINY = {"epochs": 3, "batch_size": 128, "lr": 5e-3, "progress": False, "steps_per_scale": 1, "hidden": 16}


@needs_sklearn
@pytest.mark.parametrize("kind", CONV_KINDS)
def test_training_lowers_test_bits_per_dim(kind):
    model, history = train_glow(kind, seed=0, warmup_steps=5, **TINY)
    (first_epoch, initial), (last_epoch, final) = history.test_bpd[0], history.test_bpd[-1]
    assert (first_epoch, last_epoch) == (0, 3)
    assert len(history.train_bpd) == 3 and history.train_bpd[2] < history.train_bpd[1] < history.train_bpd[0]
    # 3 epochs of a tiny model already beat the uniform distribution over 17 levels (log2 17 = 4.09 bits/dim).
    assert final < min(initial - 0.4, math.log2(LEVELS)), history.test_bpd
    assert history.train_time_s > 0 and not model.training


@needs_sklearn
def test_training_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model_a, history_a = train_glow("1x1", seed=7, warmup_steps=5, **TINY)
    assert torch.equal(torch.rand(3), expected_next)
    model_b, history_b = train_glow("1x1", seed=7, warmup_steps=5, **TINY)
    assert history_a.train_bpd == history_b.train_bpd and history_a.test_bpd == history_b.test_bpd
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    _, history_c = train_glow("1x1", seed=8, warmup_steps=5, **TINY)
    assert history_c.train_bpd != history_a.train_bpd


@needs_matplotlib
def test_sample_grid_is_a_png(tmp_path):
    from matplotlib import image

    model = make_glow("emerging")
    path = tmp_path / "grid" / "samples.png"
    samples = save_sample_grid(model, path, n=10, temperature=0.7, seed=0, upscale=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert samples.shape == (10, 1, 8, 8) and samples.dtype == torch.long
    assert samples.min() >= 0 and samples.max() <= LEVELS - 1
    pixels = image.imread(path)
    # 10 images -> 4 columns x 3 rows of 8x8 with one-pixel frames, upscaled twice.
    assert pixels.shape[:2] == ((3 * 9 + 1) * 2, (4 * 9 + 1) * 2)
    # Same seed, same samples.
    assert torch.equal(save_sample_grid(model, tmp_path / "again.png", n=10, seed=0, upscale=2), samples)


@needs_sklearn
@needs_matplotlib
def test_benchmark_script_quick(tmp_path, capsys):
    """benchmarks/experiments/glow_results.py --quick: the CI smoke run of the comparison table."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "glow_results.py"
    spec = importlib.util.spec_from_file_location("glow_results", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "seeds [0]" in table  # --quick: one seed, so no spread to print
    for kind in CONV_KINDS:
        assert f"| {kind} |" in table
        assert (tmp_path / f"glow_{kind}_samples.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_train_glow_writes_a_loadable_checkpoint_and_a_grid(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import subprocess
    import sys

    command = [sys.executable, "-m", "flowkernels.cli", "train-glow", "--conv", "emerging", "--epochs", "1"]
    command += ["--hidden", "8", "--steps-per-scale", "1", "--out", str(tmp_path), "--no-progress"]
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "bits/dim" in proc.stdout
    assert (tmp_path / "glow_emerging_samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = torch.load(tmp_path / "glow_emerging.pt", weights_only=True)
    config = saved["config"]
    model = Glow(1, 2, config["steps_per_scale"], config["hidden"], conv="emerging", kernel_size=config["kernel_size"])
    model.load_state_dict(saved["state_dict"])
    model.eval()
    # The restored model scores the test split exactly as the trained one did (ActNorm's
    # data-dependent initialisation is part of the state, not redone on load).
    import re

    from flowkernels.data import DIGITS_LEVELS, load_digits

    printed = float(re.search(r"test (\d+\.\d+) bits/dim", proc.stdout).group(1))
    assert abs(model.evaluate_bpd(load_digits("test"), DIGITS_LEVELS) - printed) <= 5e-4 + 1e-9
