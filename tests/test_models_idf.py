"""Tests of flowkernels.models.idf: exact bijection, likelihood, the coding interface, training, checkpoints."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

from flowkernels.models.idf import (
    IDF,
    ChannelPermutation,
    IntegerCoupling,
    LatentStep,
)
from flowkernels.models.idf_training import train_idf
from flowkernels.nn import Squeeze
from flowkernels.ops import discretized_logistic_logp

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
needs_tqdm = pytest.mark.skipif(importlib.util.find_spec("tqdm") is None, reason="needs tqdm")


def perturb(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter, so that the zero-initialised nets compute non-trivial translations."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            parameter.add_(std * noise.to(parameter.dtype))
    return module


def random_model(dtype=torch.float32, seed=0, **kwargs) -> IDF:
    config = {
        "in_channels": 3,
        "height": 8,
        "width": 8,
        "num_scales": 2,
        "steps_per_scale": 2,
        "hidden": 16,
        "num_mixtures": 3,
    }
    config.update(kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = IDF(**config)
    return perturb(model.to(dtype), seed + 1)


def random_integers(shape, low, high, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=generator, dtype=torch.int64).to(dtype)


# Magnitudes that keep every intermediate sum exactly representable (below 2^24 in float32, 2^53 in float64).
RANGES = {
    torch.float32: [(0, 256), (-300, 300), (-(10**5), 10**5)],
    torch.float64: [(-(10**5), 10**5), (-(10**11), 10**11)],
}


# ---------------------------------------------------------------------------------------------------
# The bijection


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("net", ["resnet", "densenet"])
def test_integer_coupling_layer_is_exact_and_rounds_its_translation(dtype, net):
    torch.manual_seed(0)
    layer = perturb(IntegerCoupling(8, hidden=16, blocks=1, net=net, data_levels=256), 1, std=0.1).to(dtype)
    assert layer.split == 6  # 3/4 of the channels condition the last quarter
    for low, high in RANGES[dtype]:
        x = random_integers((5, 8, 4, 4), low, high, dtype)
        z, logdet = layer(x)
        assert z.dtype == dtype and torch.equal(logdet, torch.zeros(5, dtype=dtype))
        assert torch.equal(z[:, :6], x[:, :6])  # the conditioning part passes unchanged
        shift = z[:, 6:] - x[:, 6:]
        assert torch.equal(shift, torch.round(layer.translation(x[:, :6])))
        assert shift.abs().max() > 0  # a non-trivial translation
        assert torch.equal(z, torch.round(z))
        assert torch.equal(layer.inverse(z), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_permutation_and_squeeze_layers_are_exact(dtype):
    torch.manual_seed(0)
    x = random_integers((3, 12, 4, 6), -(10**6), 10**6, dtype)
    for layer in (ChannelPermutation(12, "random"), ChannelPermutation(12, "reverse"), Squeeze()):
        z, logdet = layer(x)
        assert torch.equal(layer.inverse(z), x) and torch.equal(logdet, torch.zeros(3, dtype=dtype))
        assert torch.equal(z.flatten(1).sort(1).values, x.flatten(1).sort(1).values)  # entries moved, not changed
    reverse, _ = ChannelPermutation(12, "reverse")(x)
    assert torch.equal(reverse, x.flip(1))
    with pytest.raises(ValueError, match="permutation must be one of"):
        ChannelPermutation(4, "shuffle")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("net", ["resnet", "densenet"])
def test_model_is_an_exact_bijection_on_integers(dtype, net):
    model = random_model(dtype, net=net)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        for index, (low, high) in enumerate(RANGES[dtype]):
            x = random_integers((7, 3, 8, 8), low, high, dtype, seed=index)
            zs = model(x)
            assert [tuple(z.shape[1:]) for z in zs] == model.latent_shapes() == [(24, 2, 2), (6, 4, 4)]
            assert all(z.dtype == dtype and torch.equal(z, torch.round(z)) for z in zs)
            assert torch.equal(model.inverse(zs), x)
    # Per level: each block (squeeze, then permutations and couplings) is exact on its own too.
    for block, shape in zip(model.blocks, [(4, 3, 8, 8), (4, 6, 4, 4)], strict=True):
        x = random_integers(shape, -5000, 5000, dtype)
        y, logdet = block(x)
        assert torch.equal(block.inverse(y), x) and torch.equal(logdet, torch.zeros(4, dtype=dtype))
    # Integer dtypes go in directly; other float dtypes are refused rather than silently rounded.
    pixels = random_integers((2, 3, 8, 8), 0, 256, torch.int64)
    assert torch.equal(model.inverse(model(pixels.to(torch.uint8))), pixels.to(dtype))
    other = torch.float64 if dtype == torch.float32 else torch.float32
    with pytest.raises(ValueError, match="must be"):
        model(pixels.to(other))


def test_bad_inputs_and_arguments_raise():
    model = random_model()
    with pytest.raises(ValueError, match=r"x must be \[N, 3, H, W\]"):
        model(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"x must be \[N, \*\(3, 8, 8\)\]"):
        model.log_prob(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="expected 2 latents"):
        model.inverse([torch.zeros(1, 24, 2, 2)])
    with pytest.raises(ValueError, match="divisible by 2\\*\\*num_scales = 4"):
        IDF(1, 6, 8, num_scales=2)
    with pytest.raises(ValueError, match="net must be one of"):
        IDF(1, 8, 8, net="unet")
    with pytest.raises(ValueError, match="num_mixtures"):
        IDF(1, 8, 8, num_mixtures=17)


# ---------------------------------------------------------------------------------------------------
# Likelihood and the coding interface


def test_log_prob_is_the_sum_of_the_latents_logistic_log_probabilities():
    model = random_model(torch.float64).eval()
    x = random_integers((20, 3, 8, 8), 0, 256, torch.float64)
    steps = model.encode_latents(x)
    assert all(isinstance(step, LatentStep) for step in steps)
    assert [tuple(step.z.shape) for step in steps] == [(20, *shape) for shape in model.latent_shapes()]
    for step in steps:
        assert step.mu.shape == step.log_scale.shape == step.logit_pi.shape == (*step.z.shape, 3)
        assert all(t.is_contiguous() for t in (step.mu, step.log_scale, step.logit_pi))
    # The latents of the coding path are those of forward(), and the log-likelihood is their sum.
    assert all(torch.equal(step.z, z) for step, z in zip(steps, model(x), strict=True))
    expected = sum(discretized_logistic_logp(s.z, s.mu, s.log_scale, s.logit_pi).flatten(1).sum(1) for s in steps)
    log_prob = model.log_prob(x)
    assert log_prob.shape == (20,)
    torch.testing.assert_close(log_prob, expected, rtol=1e-12, atol=1e-9)
    assert (log_prob < 0).all()
    torch.testing.assert_close(model.bits_per_dim(x), -expected / (192 * math.log(2)), rtol=1e-12, atol=1e-9)
    # In training mode (whole-batch networks) the value is the same up to rounding of float sums.
    model.train()
    torch.testing.assert_close(model.log_prob(x), expected, rtol=1e-9, atol=1e-6)


def test_eval_log_prob_of_an_image_does_not_depend_on_its_batch():
    model = random_model().eval()
    x = random_integers((40, 3, 8, 8), 0, 256, torch.float32)
    batch = model.log_prob(x)
    for index in (0, 17, 39):
        assert torch.equal(model.log_prob(x[index : index + 1]), batch[index : index + 1])
    assert torch.equal(model.log_prob(x.flip(0)), batch.flip(0))


def _checking_pop(steps: list[LatentStep], rows: torch.Tensor, calls: list[int]):
    """A ``pop`` that checks it gets exactly the encoder's parameters for ``rows`` and returns their latents."""

    def pop(mu, log_scale, logit_pi):
        step = steps[len(calls)]
        calls.append(len(calls))
        assert torch.equal(mu, step.mu[rows])
        assert torch.equal(log_scale, step.log_scale[rows])
        assert torch.equal(logit_pi, step.logit_pi[rows])
        return step.z[rows]

    return pop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("num_scales", [2, 3])
def test_decode_latents_reproduces_x_with_the_encoders_exact_parameters(dtype, num_scales):
    model = random_model(dtype, num_scales=num_scales, in_channels=1, coding_batch=16).eval()
    x = random_integers((64, 1, 8, 8), 0, 256, dtype)
    steps = model.encode_latents(x)
    assert len(steps) == num_scales
    cases = {
        "batch 64, same order": torch.arange(64),
        "batch 64, reversed": torch.arange(63, -1, -1),
        "batch 1": torch.tensor([37]),
        "batch 3, a subset": torch.tensor([50, 3, 21]),
        "batch 20, crossing chunks": torch.arange(5, 45, 2),
    }
    for name, rows in cases.items():
        calls: list[int] = []
        decoded = model.decode_latents(len(rows), _checking_pop(steps, rows, calls))
        assert len(calls) == num_scales, name
        assert decoded.dtype == dtype and torch.equal(decoded, x[rows]), name
    # And the other way round: one image encoded alone decodes inside a batch of 64.
    alone = model.encode_latents(x[9:10])
    for step, full in zip(alone, steps, strict=True):
        assert torch.equal(step.mu, full.mu[9:10]) and torch.equal(step.log_scale, full.log_scale[9:10])
        assert torch.equal(step.logit_pi, full.logit_pi[9:10]) and torch.equal(step.z, full.z[9:10])


def test_decode_latents_checks_what_pop_returns():
    model = random_model().eval()
    with pytest.raises(ValueError, match=r"pop must return a tensor of shape \[2, 24, 2, 2\]"):
        model.decode_latents(2, lambda mu, log_scale, logit_pi: torch.zeros(2, 24, 2))
    with pytest.raises(ValueError, match="n must be positive"):
        model.decode_latents(0, lambda *params: None)
    # Integer latents from a coder (int64) are accepted.
    x = random_integers((2, 3, 8, 8), 0, 256, torch.float32)
    steps = iter(model.encode_latents(x))
    assert torch.equal(model.decode_latents(2, lambda *params: next(steps).z.long()), x)


def test_patch_shape_and_config_rebuild_the_model():
    model = random_model(num_scales=2, net="densenet", permutation="reverse", data_levels=17)
    assert model.patch_shape == (3, 8, 8)
    assert all(isinstance(value, (int, float, str)) for value in model.config.values())
    rebuilt = IDF(**IDF.arguments_from_config(model.config))
    rebuilt.load_state_dict(model.state_dict())
    x = random_integers((4, 3, 8, 8), 0, 17, torch.float32)
    assert torch.equal(rebuilt.eval().log_prob(x), model.eval().log_prob(x))


# ---------------------------------------------------------------------------------------------------
# Training and checkpoints


@needs_sklearn
@needs_tqdm
def test_training_lowers_bits_per_dim_and_is_deterministic(tmp_path):
    kwargs = {
        "epochs": 3,
        "batch_size": 32,
        "lr": 1e-2,
        "seed": 3,
        "progress": False,
        "distributed": False,
        "steps_per_scale": 2,
        "hidden": 16,
        "max_train": 480,
        "warmup_steps": 5,
    }
    model, history = train_idf("digits", checkpoint=tmp_path / "idf.pt", **kwargs)
    assert [epoch for epoch, _ in history.test_bpd] == [0, 1, 2, 3]
    test_bpd = [bpd for _, bpd in history.test_bpd]
    # Untrained, the model is worse than the uniform distribution over 17 levels (4.09 bits/dim); 45 steps
    # take it well below (measured: 5.13 -> 3.27).
    assert test_bpd[0] > 4.5 and test_bpd[-1] < 3.6
    assert all(later < earlier for earlier, later in itertools.pairwise(test_bpd))
    assert all(later < earlier for earlier, later in itertools.pairwise(history.train_bpd))
    end = test_bpd[-1]
    again, history_again = train_idf("digits", **kwargs)
    assert history_again.test_bpd == history.test_bpd
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    # The checkpoint holds the final model.
    loaded = IDF.from_checkpoint(tmp_path / "idf.pt")
    from flowkernels.data import load_digits

    test = load_digits("test").float()
    assert torch.equal(loaded.log_prob(test), model.log_prob(test))
    assert loaded.bits_per_dim(test).mean().item() == pytest.approx(end, rel=1e-6)
    meta = torch.load(tmp_path / "idf.pt", weights_only=True)["train"]
    assert meta["epoch"] == 3 and meta["test_bpd"] == pytest.approx(end)


@needs_sklearn
@needs_tqdm
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import flowkernels.models.idf_training as idf_module

    kwargs = {
        "epochs": 3,
        "batch_size": 64,
        "lr": 1e-2,
        "seed": 5,
        "progress": False,
        "distributed": False,
        "steps_per_scale": 1,
        "hidden": 8,
        "max_train": 256,
        "warmup_steps": 2,
    }
    whole, whole_history = train_idf("digits", checkpoint=tmp_path / "whole.pt", **kwargs)
    assert not idf_module.resume_path(tmp_path / "whole.pt").exists()  # a finished run leaves none

    real_save = idf_module._save_resume_state

    def save_then_stop(path, **state):  # the run is killed right after epoch 2 was saved
        real_save(path, **state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(idf_module, "_save_resume_state", save_then_stop)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train_idf("digits", checkpoint=checkpoint, **kwargs)
    assert idf_module.resume_path(checkpoint).is_file()
    with pytest.raises(ValueError, match=r"another run \(differs in lr\)"):
        train_idf("digits", checkpoint=checkpoint, resume=True, **{**kwargs, "lr": 2e-2})
    monkeypatch.setattr(idf_module, "_save_resume_state", real_save)
    resumed, history = train_idf("digits", checkpoint=checkpoint, resume=True, **kwargs)
    assert history.train_bpd == whole_history.train_bpd and history.test_bpd == whole_history.test_bpd
    pairs = zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not idf_module.resume_path(checkpoint).exists()
    idf_module.resume_path(checkpoint).write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot resume from"):
        train_idf("digits", checkpoint=checkpoint, resume=True, **kwargs)


def test_save_and_load_round_trip_and_bad_files(tmp_path):
    model = random_model(torch.float64, data_levels=17)
    path = model.save(tmp_path / "sub" / "model.pt")
    loaded = IDF.from_checkpoint(path)
    assert loaded.config == model.config and not loaded.training and loaded.dtype == torch.float64
    x = random_integers((3, 3, 8, 8), 0, 17, torch.float64)
    assert torch.equal(loaded.log_prob(x), model.eval().log_prob(x))

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a flowkernels checkpoint: torch.load"):
        IDF.from_checkpoint(tmp_path / "garbage.pt")
    cases = {
        "list.pt": ([1, 2], "not a model checkpoint"),
        "no_state.pt": ({"config": model.config}, "not a model checkpoint"),
        "bad_config.pt": ({"config": {"levels": {"a": 1}}, "state_dict": {}}, "'config' must be a dict of numbers"),
        "unknown_key.pt": ({"config": {"colour": "red"}, "state_dict": {}}, "does not describe an IDF"),
        "bad_state.pt": ({"config": model.config, "state_dict": {"top.raw": 3}}, "must be a dict of tensors"),
        "wrong_shapes.pt": (
            {"config": {**model.config, "hidden": 8}, "state_dict": model.state_dict()},
            "do not fit its config",
        ),
        "mixed_dtypes.pt": (
            {"config": model.config, "state_dict": {**model.state_dict(), "top.raw": model.top.raw.float()}},
            "must share one dtype",
        ),
    }
    for name, (content, message) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(ValueError, match=message):
            IDF.from_checkpoint(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        IDF.from_checkpoint(tmp_path / "missing.pt")


@needs_sklearn
@needs_tqdm
def test_cli_train_idf_writes_a_loadable_checkpoint(tmp_path, capsys):
    from flowkernels.cli import main

    out = tmp_path / "run" / "digits.pt"
    argv = ["train-idf", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--no-progress"]
    argv += ["--steps-per-scale", "1", "--hidden", "8", "--max-train", "128", "--batch-size", "64"]
    assert main(argv) == 0
    model = IDF.from_checkpoint(out)
    assert model.patch_shape == (1, 8, 8) and model.config["hidden"] == 8 and model.config["data_levels"] == 17
    printed = capsys.readouterr().out
    assert "test" in printed and "bits/dim" in printed and str(out) in printed
