"""Tests of predictive sampling: fixed-point iteration and forecasting give exactly the sequential samples."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from flowkernels.models.distributions import Categorical, DiscretizedLogisticMixture
from flowkernels.models.pixelcnn import ForecastingModules, PixelCNN
from flowkernels.sampling import (
    REPORTED_OFFSETS,
    SAMPLERS,
    SamplingResult,
    compare_samplers,
    draw_noise,
    fixed_point,
    forecast,
    sample_arm,
    sequential,
)

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")

SEEDS = (0, 1, 2)
BATCH = 4


def random_arm(
    distribution, *, embedding=None, image_size=(5, 6), seed=0, channels=1
) -> tuple[PixelCNN, ForecastingModules]:
    """An untrained ARM and forecaster, with all parameters perturbed (no zero-initialised shortcuts)."""
    torch.manual_seed(seed)
    options = {"hidden": 8, "layers": 2, "input_kernel": 5, "embedding": embedding, "channels": channels}
    arm = PixelCNN(distribution, image_size=image_size, **options)
    forecaster = ForecastingModules(8, distribution, horizon=3, hidden=8)
    with torch.no_grad():
        for parameter in [*arm.parameters(), *forecaster.parameters()]:
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return arm.eval(), forecaster.eval()


UNTRAINED = {
    "binary": lambda: random_arm(Categorical(2)),
    "categorical": lambda: random_arm(Categorical(7), image_size=(4, 4)),
    "embedded": lambda: random_arm(Categorical(5), embedding=3),
    "logistic": lambda: random_arm(DiscretizedLogisticMixture(256, 3), image_size=(4, 5)),
    "rgb-logistic": lambda: random_arm(DiscretizedLogisticMixture(256, 3), image_size=(3, 4), channels=3),
    "rgb-categorical": lambda: random_arm(Categorical(4), image_size=(3, 3), channels=3),
}


@pytest.fixture(scope="module")
def trained():
    """A small ARM and forecaster trained for a few seconds on the binarised digits (8x8)."""
    pytest.importorskip("sklearn")
    from flowkernels.data import load_digits
    from flowkernels.models.arm_training import train_forecaster, train_pixelcnn

    train, test = load_digits("train", data_levels=2)[:512], load_digits("test", data_levels=2)[:100]
    arm, _ = train_pixelcnn(train, test, Categorical(2), epochs=3, batch_size=32, hidden=16, layers=3, progress=False)
    forecaster, _ = train_forecaster(arm, train, test, horizon=4, epochs=2, batch_size=32, hidden=16, progress=False)
    return arm, forecaster


def check_result(result: SamplingResult, dims: int, batch: int) -> None:
    """Invariants of every sampler's result."""
    assert result.samples.shape[0] == batch and result.samples.dtype == torch.long
    assert 1 <= result.calls <= dims, "every call accepts at least one dimension"
    assert result.accepted.shape == (result.calls, batch)
    previous = torch.zeros(batch, dtype=torch.long)
    for accepted in result.accepted:
        assert (accepted >= previous).all(), "the accepted prefix shrank"
        assert ((accepted > previous) | (previous == dims)).all(), "a call accepted nothing"
        previous = accepted
    assert (previous == dims).all()
    assert int(result.calls_per_example.max()) == result.calls and (result.calls_per_example >= 1).all()
    done_at = (result.accepted == dims).int().argmax(0) + 1  # the first call after which each was complete
    assert torch.equal(done_at, result.calls_per_example)
    # Offset t exists after a call where the example's prefix is at most dims - t long.
    for t in range(1, REPORTED_OFFSETS + 1):
        assert int(result.offset_trials[t - 1]) == int((result.accepted <= dims - t).sum())
    assert (result.offset_hits <= result.offset_trials).all()


def check_samplers_agree(arm, forecaster, seed: int) -> None:
    noise = draw_noise(arm, BATCH, torch.Generator().manual_seed(seed))
    dims = arm.dims
    reference = sequential(arm, noise)
    check_result(reference, dims, BATCH)
    assert reference.calls == dims and (reference.calls_per_example == dims).all()
    others = [fixed_point(arm, noise)] + [forecast(arm, noise, forecaster, t) for t in range(1, forecaster.horizon + 1)]
    for result in others:
        check_result(result, dims, BATCH)
        assert torch.equal(result.samples, reference.samples)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", UNTRAINED)
def test_untrained_arms_sample_exactly(kind, seed):
    check_samplers_agree(*UNTRAINED[kind](), seed)


@needs_sklearn
@pytest.mark.parametrize("seed", SEEDS)
def test_trained_arm_samples_exactly_in_fewer_calls(trained, seed):
    arm, forecaster = trained
    check_samplers_agree(arm, forecaster, seed)
    noise = draw_noise(arm, BATCH, torch.Generator().manual_seed(seed))
    # A trained ARM on mostly blank digits: fixed-point iteration needs well under half the sequential calls.
    assert fixed_point(arm, noise).calls < arm.dims // 2


@pytest.mark.parametrize("kind", ["binary", "categorical"])
def test_offset_hits_of_sequential_sampling_count_the_zeros_ahead(kind):
    """Sequential sampling guesses 0 for every dimension after the prefix (k after call k), so its hits at
    offset t are the zeros of the final sample at dimensions k + t - 1, counted independently here."""
    arm, _ = UNTRAINED[kind]()
    result = sequential(arm, draw_noise(arm, BATCH, torch.Generator().manual_seed(3)))
    flat = result.samples.flatten(1)
    dims = flat.shape[1]
    for t in range(1, REPORTED_OFFSETS + 1):
        positions = [k + t - 1 for k in range(1, dims + 1) if k + t - 1 < dims]
        assert int(result.offset_hits[t - 1]) == int((flat[:, positions] == 0).sum())
        assert result.offset_hit_rates[t - 1] == int((flat[:, positions] == 0).sum()) / (len(positions) * BATCH)


def test_sample_arm_gives_the_sequential_samples_of_its_noise():
    arm, _ = UNTRAINED["categorical"]()
    samples = sample_arm(arm, 6, batch_size=4, generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    expected = torch.cat([sequential(arm, draw_noise(arm, size, generator)).samples for size in (4, 2)])
    assert torch.equal(samples, expected)
    with pytest.raises(ValueError, match="count must be a positive integer"):
        sample_arm(arm, 0)


def test_samples_do_not_depend_on_batch_companions():
    """Each example's sample and its calls are the same whether sampled alone or in a batch."""
    arm, forecaster = UNTRAINED["categorical"]()
    noise = draw_noise(arm, 3, torch.Generator().manual_seed(5))
    batch = fixed_point(arm, noise)
    for index in range(3):
        alone = fixed_point(arm, noise[index : index + 1].contiguous())
        assert torch.equal(alone.samples[0], batch.samples[index])
        assert alone.calls == int(batch.calls_per_example[index])


class InputBlindARM(nn.Module):
    """An ARM whose distributions ignore the input: fixed logits per dimension. Its features at a
    dimension are the one-hot code of that dimension, so that :class:`OracleForecaster` can read them."""

    def __init__(self, data_levels: int = 4, image_size=(3, 5)) -> None:
        super().__init__()
        self.distribution = Categorical(data_levels)
        self.event_shape = (1, *image_size)
        self.logits = nn.Parameter(
            torch.randn(1, *self.event_shape, data_levels, generator=torch.Generator().manual_seed(0))
        )

    @property
    def dims(self) -> int:
        return self.event_shape[1] * self.event_shape[2]

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.logits.expand(x.shape[0], *self.logits.shape[1:])
        features = torch.eye(self.dims).view(1, self.dims, *self.event_shape[1:]).expand(x.shape[0], -1, -1, -1)
        return params, features


class OracleForecaster(nn.Module):
    """Perfect forecasts for an :class:`InputBlindARM`: module t at dimension i returns the ARM's logits of i + t."""

    def __init__(self, arm: InputBlindARM, horizon: int) -> None:
        super().__init__()
        self.arm, self.horizon = arm, horizon

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        position = features.argmax(1)  # [B, h, w]
        logits = self.arm.logits.flatten(1, -2)[0]  # [d, K]
        targets = [(position + t).clamp(max=self.arm.dims - 1) for t in range(1, self.horizon + 1)]
        return torch.stack([logits[target] for target in targets], dim=1).unsqueeze(2)  # [B, T, 1, h, w, K]


@pytest.mark.parametrize("seed", SEEDS)
def test_arm_that_ignores_its_input_needs_one_call_plus_verification(seed):
    arm = InputBlindARM()
    noise = draw_noise(arm, BATCH, torch.Generator().manual_seed(seed))
    reference = sequential(arm, noise)
    # Fixed-point iteration: the first call's sample is right everywhere, the second confirms it. Forecasting
    # with perfect forecasts (and fixed-point guesses beyond them) does the same, whatever the horizon.
    results = [fixed_point(arm, noise)] + [forecast(arm, noise, OracleForecaster(arm, t)) for t in (1, 2, 7)]
    for result in results:
        assert result.calls <= 2
        assert torch.equal(result.samples, reference.samples)
    # With all-zero samples, the all-zero first guess is already right: one call and no verification.
    zero_noise = noise.clone()
    zero_noise[..., 0] = 1 - 1e-7
    zero_noise[..., 1:] = 1e-30
    assert fixed_point(arm, zero_noise).calls == 1
    assert (sequential(arm, zero_noise).samples == 0).all()


def test_draw_noise_is_seeded_and_inside_the_unit_interval():
    arm, _ = UNTRAINED["logistic"]()
    noise = draw_noise(arm, 3, torch.Generator().manual_seed(4))
    assert noise.shape == (3, 1, 4, 5, 4) and noise.dtype == torch.float32
    assert torch.equal(noise, draw_noise(arm, 3, torch.Generator().manual_seed(4)))
    assert ((noise > 0) & (noise < 1)).all()
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        draw_noise(arm, 0)


@pytest.mark.parametrize("name", SAMPLERS)
def test_noise_of_the_wrong_shape_or_kind_raises(name):
    arm, forecaster = UNTRAINED["binary"]()
    sampler = SAMPLERS[name]
    extra = {"forecaster": forecaster} if name == "forecast" else {}
    good = draw_noise(arm, 2, torch.Generator().manual_seed(0))  # [2, 1, 5, 6, 2]
    bad_noises = {
        "no noise axis": good[..., 0],
        "wrong width": good[:, :, :, :5],
        "wrong noise size": torch.cat([good, good], dim=-1),
        "flat": good.reshape(2, 30, 2),
        "no batch": good[0],
        "empty batch": good[:0],
    }
    for what, noise in bad_noises.items():
        with pytest.raises(ValueError, match=rf"{name}: noise must (have shape|hold at least one)"):
            sampler(arm, noise, **extra)
        assert what
    with pytest.raises(ValueError, match="floating-point"):
        sampler(arm, (good * 10).long(), **extra)
    with pytest.raises(ValueError, match=r"strictly inside \(0, 1\)"):
        sampler(arm, torch.zeros_like(good), **extra)


def test_forecast_horizon_is_checked():
    arm, forecaster = UNTRAINED["binary"]()
    noise = draw_noise(arm, 1)
    for horizon in (0, 4, True):
        with pytest.raises(ValueError, match=r"horizon must be an integer in 1\.\.3"):
            forecast(arm, noise, forecaster, horizon)


def test_compare_samplers_reports_every_sampler_on_the_same_noise():
    arm, forecaster = UNTRAINED["embedded"]()
    noise = draw_noise(arm, 2, torch.Generator().manual_seed(3))
    runs = compare_samplers(arm, noise, forecaster=forecaster, horizons=(1, 3))
    assert [run.name for run in runs] == ["sequential", "fixed_point", "forecast T=1", "forecast T=3"]
    assert all(run.identical and run.seconds > 0 for run in runs)
    assert runs[0].result.calls == arm.dims and runs[0].result.call_fraction == 1.0
    assert 0 < runs[1].result.mean_call_fraction <= runs[1].result.call_fraction <= 1
    assert arm.training is False
    several = compare_samplers(arm, noise, forecaster={"data": forecaster, "draws": forecaster}, horizons=(2,))
    assert [run.name for run in several][2:] == ["forecast[data] T=2", "forecast[draws] T=2"]
    assert torch.equal(several[2].result.offset_hits, several[3].result.offset_hits)  # the same modules


@needs_sklearn
def test_results_script_quick_run(tmp_path):
    """The experiment script runs end to end (one setting, smoke budget) and finds the samples identical."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "predictive_sampling_results.py"
    command = [sys.executable, str(script), "--quick", "--settings", "digits-binary", "--threads", "1"]
    completed = subprocess.run([*command, "--out", str(tmp_path), "--no-progress"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert "| digits-binary (d=64) | fixed_point |" in completed.stdout
    payload = json.loads((tmp_path / "predictive_sampling.json").read_text())
    assert all(row["identical"] for row in payload["results"][0]["rows"])
    assert (tmp_path / "predictive_sampling_digits-binary.png").exists()
    assert [row["sampler"] for row in payload["summary"]][-1] == "forecast[draws] T=8"
    # The README renders this results file: both forecasters' hit rates, and the verdict of a single seed.
    spec = importlib.util.spec_from_file_location("render_readme", script.parents[1] / "render_readme.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    text = render.render_predictive([("predictive_sampling.json", payload)])
    assert "| digits-binary | forecast[data] T=8 |" in text and "| digits-binary | forecast[draws] T=8 |" in text
    assert "- digits-binary (a target setting): " in text and "one seed: it cannot tell" in text


def test_results_script_goes_on_from_the_settings_it_finished(tmp_path):
    """--add-seeds keeps each (seed, setting) run that a results file holds at that setting's budget, so a stopped
    run goes on from its last finished setting, and one setting's budget can change without rerunning the
    others; settings not asked are left out."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "predictive_sampling_results.py"
    spec = importlib.util.spec_from_file_location("predictive_sampling_results", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = [{"seed": 0, "setting": s, "calls": 1} for s in ("digits", "photos-rgb")] + [
        {"seed": 1, "setting": "digits", "calls": 2}
    ]
    document = {"machine": {"commit": "abc", "threads": 1}, "quick": False, "budget": script.FULL}
    (tmp_path / "a.json").write_text(json.dumps(document | {"seeds": [0, 1], "results": results}))
    settings = ["digits", "photos-rgb"]
    kept = script.kept_runs([tmp_path / "a.json", tmp_path / "missing.json"], script.FULL, settings)
    assert {seed: sorted(runs) for seed, runs in kept.items()} == {0: settings, 1: ["digits"]}
    assert (kept[0]["photos-rgb"]["commit"], kept[0]["photos-rgb"]["threads"], kept[1]["digits"]["calls"]) == (
        "abc",
        1,
        2,
    )
    assert script.kept_runs([tmp_path / "a.json"], script.FULL, ["photos-rgb"]) == {
        0: {"photos-rgb": kept[0]["photos-rgb"]}
    }
    # Another draws budget for photos-rgb: its runs cannot be kept, while those of the digits still can.
    other = script.FULL | {"draws_by_setting": {"photos-rgb": {"train": 8, "test": 2, "batch": 2}}}
    with pytest.raises(ValueError, match="another budget"):
        script.kept_runs([tmp_path / "a.json"], other, ["photos-rgb"])
    assert script.kept_runs([tmp_path / "a.json"], other, ["digits"]) == {
        0: {"digits": kept[0]["digits"]},
        1: {"digits": kept[1]["digits"]},
    }
    # A file written before draws_by_setting existed ran every setting at the common draws budget.
    assert script.setting_draws({"draws": {"train": 3}}, "vq-latents") == {"train": 3}


def test_results_script_joins_kept_runs_without_running_any(tmp_path):
    """--join-only writes the tables of the runs that --add-seeds keeps and trains nothing: a (seed, setting) that
    no file holds is left out. Joined here: the committed seed-0 run of the binarised digits."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "predictive_sampling_results.py"
    spec = importlib.util.spec_from_file_location("predictive_sampling_results", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    committed = path.parents[1] / "results" / "predictive_sampling.json"
    run = next(
        r for r in json.loads(committed.read_text())["results"] if (r["seed"], r["setting"]) == (0, "digits-binary")
    )
    argv = ["--join-only", "--out", str(tmp_path), "--threads", "1", "--settings", "digits-binary", "--seeds", "0", "7"]
    assert script.main([*argv, "--add-seeds", str(committed)]) == 0
    joined = json.loads((tmp_path / "predictive_sampling.json").read_text())
    assert joined["seeds"] == [0] and joined["results"] == [run]
    assert joined["header"].endswith("joined from kept runs (nothing trained)")
    assert {row["seeds"][0] for row in joined["summary"]} == {0} and not (
        tmp_path / "predictive_sampling_digits-binary.png"
    ).exists()
    with pytest.raises(SystemExit):
        script.parse_args(["--join-only"])
    assert script.main(["--join-only", "--out", str(tmp_path / "none"), "--seeds", "7", "--add-seeds"]) == 2
