"""Tests of the integer IDF (flowkernels.models.idf_integer, flowkernels.nn.quant): fixed-point
rescaling, integer layers, calibration and conversion, exactness, batch / thread / instruction-set
invariance of every number the decoder recomputes, checkpoints, quantization-aware training."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from flowkernels import cpu
from flowkernels.codec import LosslessImageCodec, read_header
from flowkernels.models.idf import IDF
from flowkernels.models.idf_integer import FRACTION_BITS
from flowkernels.models.idf_training import train_idf
from flowkernels.nn import IntConv2d
from flowkernels.nn.quant import fake_quantize, fake_quantize_weight, quantize_multiplier, weight_scale

from .test_models_idf import random_integers, random_model

needs_training = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("tqdm") is None,
    reason="needs scikit-learn and tqdm",
)


# ---------------------------------------------------------------------------------------------------
# Fixed point and the integer layer


def test_quantize_multiplier_represents_every_scale_to_31_bits():
    scales = torch.cat(
        [torch.tensor([1.0, 0.5, 2.0**-20, 3.0, 2.0**30 * 1.9999]), torch.rand(500, dtype=torch.float64) * 4.0**-5]
    )
    multiplier, shift = quantize_multiplier(scales)
    assert multiplier.dtype == shift.dtype == torch.int32
    assert bool((multiplier >= 2**30).all()) and bool((shift >= 0).all()) and bool((shift <= 62).all())
    represented = multiplier.double() / 2.0 ** shift.double()
    assert torch.allclose(represented, scales, rtol=2.0**-30, atol=0)


def test_quantize_multiplier_edges():
    multiplier, shift = quantize_multiplier(torch.tensor([0.0, 2.0**-70, 2.0**-40]))
    assert multiplier.tolist()[:2] == [0, 0] and shift[0] == 0 and shift.max() <= 62
    assert multiplier[2] / 2.0 ** shift[2].item() == pytest.approx(2.0**-40, rel=2**-20)
    for bad in (-1.0, float("nan"), float("inf"), 2.0**31):
        with pytest.raises(ValueError, match="finite, >= 0 and < 2\\^31"):
            quantize_multiplier(torch.tensor([bad]))


def test_fake_quantization_is_the_grid_with_a_straight_through_gradient():
    x = torch.tensor([-3.0, -0.26, 0.24, 0.5, 9.0], requires_grad=True)
    y = fake_quantize(x, 0.5, -4, 4)
    assert y.tolist() == [-2.0, -0.5, 0.0, 0.5, 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # no gradient where the clamp saturates
    w = torch.randn(4, 3, 3, 3)
    q = fake_quantize_weight(w) / weight_scale(w).view(-1, 1, 1, 1)
    assert torch.allclose(q, torch.round(q), atol=1e-4) and q.abs().max() <= 127 + 1e-4


def test_int_conv_layer_approximates_its_float_conv():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 5, 3, 3, generator=generator, dtype=torch.float64) * 0.2
    bias = torch.randn(8, generator=generator, dtype=torch.float64)
    x = torch.randint(-1000, 1000, (2, 5, 6, 6), generator=generator)
    in_scale, out_scale = 1e-3, 2e-3
    layer = IntConv2d(5, 8, 3, padding=1).load_float(weight, bias, input_scale=in_scale, output_scale=out_scale)
    got = layer(x.to(torch.int16)).double() * out_scale
    want = F.conv2d(x.double() * in_scale, weight, bias, padding=1)
    # int8 weights: about 0.4% of the largest weight per tap
    assert (got - want).abs().max() < 0.02 * want.abs().max()
    assert {str(v.dtype) for v in layer.state_dict().values()} == {"torch.int8", "torch.int32"}


def test_int_conv_layer_always_fits_the_accumulator():
    # huge weights and bias would overflow int32: the conversion coarsens those channels instead
    weight = torch.full((2, 64, 3, 3), 1.0, dtype=torch.float64)
    bias = torch.tensor([1e6, -1e6], dtype=torch.float64)
    layer = IntConv2d(64, 2, 3, padding=1).load_float(weight, bias, input_scale=1.0, output_scale=1.0)
    worst = layer.weight.abs().long().sum((1, 2, 3)) * 2**15 + layer.bias.abs().long()
    assert bool((worst < 2**31).all())
    x = torch.full((1, 64, 4, 4), -(2**15), dtype=torch.int16)
    layer(x)  # accepted by the op


# ---------------------------------------------------------------------------------------------------
# The integer IDF


def integer_model(seed: int = 0, **kwargs) -> tuple[IDF, IDF, torch.Tensor]:
    """A random float IDF, calibrated on random images, and its integer form; and the images."""
    model = random_model(seed=seed, **kwargs).eval()
    x = random_integers((64, *model.patch_shape), 0, 256, torch.float32, seed=seed)
    model.calibrate(x)
    return model, model.to_integer(), x


def test_integer_model_is_an_exact_bijection_with_integer_state():
    float_model, model, x = integer_model()
    assert model.config["arithmetic"] == "integer" and "arithmetic" not in float_model.config
    assert model.portable and model.batch_invariant and not float_model.portable
    for name, value in model.state_dict().items():
        assert not value.is_floating_point() or name == "top.unit", name
    for low, high in [(0, 256), (-3000, 3000)]:
        images = random_integers((5, *model.patch_shape), low, high, torch.float32, seed=1)
        latents = model(images)
        assert all(torch.equal(z, torch.round(z)) for z in latents)
        assert torch.equal(model.inverse(latents), images)


def test_integer_model_scores_like_the_quantization_aware_float_model():
    float_model, model, x = integer_model()
    with torch.no_grad():
        simulated, exact = float_model.bits_per_dim(x[:16]), model.bits_per_dim(x[:16])
    # the float simulation of the integer networks differs only in rounding ties and the prior's fixed point
    assert torch.allclose(simulated, exact, rtol=2e-3)


def test_integer_prior_parameters_are_fixed_point_numbers():
    _, model, x = integer_model()
    for step in model.encode_latents(x[:4]):
        for params in (step.mu, step.log_scale, step.logit_pi):
            fixed = params.double() * 2**FRACTION_BITS
            assert torch.equal(fixed, torch.round(fixed)) and fixed.abs().max() < 2**24


def _coding_numbers(model: IDF, x: torch.Tensor) -> list[torch.Tensor]:
    return [t for step in model.encode_latents(x) for t in (step.z, step.mu, step.log_scale, step.logit_pi)]


def test_every_coded_number_is_the_same_for_any_batch_thread_count_and_cpu_path():
    _, model, x = integer_model(seed=3)
    reference = _coding_numbers(model, x[:12])
    threads = torch.get_num_threads()
    variants = []
    try:
        for count in (1, max(2, threads)):
            torch.set_num_threads(count)
            for isa in cpu.available_isas():
                with cpu.isa_ceiling(isa):
                    variants.append(_coding_numbers(model, x[:12]))
    finally:
        torch.set_num_threads(threads)
    alone = [_coding_numbers(model, x[i : i + 1]) for i in range(12)]
    variants.append([torch.cat([a[k] for a in alone]) for k in range(len(reference))])
    shuffled = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    back = torch.argsort(shuffled)
    variants.append([t[back] for t in _coding_numbers(model, x[:12][shuffled])])
    for variant in variants:
        assert all(torch.equal(a, b) for a, b in zip(reference, variant, strict=True))


def test_integer_model_codes_portable_files(tmp_path):
    _, model, _ = integer_model(seed=4)
    images = random_integers((2, 3, 13, 21), 0, 256, torch.int64, seed=5).to(torch.uint8)
    codec = LosslessImageCodec(model)
    data = codec.encode(images)
    assert read_header(data).portable and read_header(data).version == 3
    assert torch.equal(codec.decode(data), images)
    path = model.save(tmp_path / "integer.pt")
    loaded = IDF.from_checkpoint(path)
    assert loaded.integer and torch.equal(LosslessImageCodec(loaded).decode(data), images)
    assert LosslessImageCodec(loaded).encode(images) == data


def test_integer_arithmetic_errors():
    with pytest.raises(ValueError, match="integer arithmetic needs net='resnet'"):
        IDF(3, 8, 8, num_scales=2, net="densenet", arithmetic="integer")
    with pytest.raises(ValueError, match="arithmetic must be one of"):
        IDF(3, 8, 8, num_scales=2, arithmetic="fixed")
    model = random_model()
    with pytest.raises(ValueError, match="call calibrate"):
        model.to_integer()
    with pytest.raises(ValueError, match="only net='resnet'"):
        random_model(net="densenet").calibrate(torch.zeros(2, 3, 8, 8))
    _, integer, _ = integer_model()
    with pytest.raises(ValueError, match="already integer"):
        integer.calibrate(torch.zeros(2, 3, 8, 8))


@needs_training
def test_quantization_aware_training_returns_an_integer_model(tmp_path):
    path = tmp_path / "float.pt"
    float_model, _ = train_idf("digits", epochs=1, batch_size=64, lr=2e-3, seed=0, progress=False, checkpoint=path)
    model, history = train_idf(
        "digits", epochs=0, qat_epochs=1, batch_size=64, lr=2e-3, seed=0, progress=False, init=path,
        checkpoint=tmp_path / "integer.pt",
    )  # fmt: skip
    assert model.integer and not model.training
    assert history.float_test_bpd == pytest.approx(float_model.evaluate_bpd(_digits_test()), rel=1e-6)
    assert history.integer_test_bpd == pytest.approx(model.evaluate_bpd(_digits_test()), rel=1e-9)
    assert history.integer_test_bpd < 1.02 * history.float_test_bpd
    loaded = IDF.from_checkpoint(tmp_path / "integer.pt")
    assert loaded.integer and torch.load(tmp_path / "integer.pt", weights_only=True)["train"]["float_test_bpd"]
    with pytest.raises(ValueError, match="must be a float IDF"):
        train_idf("digits", epochs=0, qat_epochs=1, batch_size=64, lr=1e-3, seed=0, progress=False,
                  init=tmp_path / "integer.pt")  # fmt: skip


def _digits_test() -> torch.Tensor:
    from flowkernels.data import load_dataset

    return load_dataset("digits", "test").float()


def test_cli_train_idf_refuses_a_bad_init_in_one_line(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "not_a_checkpoint.pt"
    bad.write_bytes(b"FKIC" + bytes(100))
    for init in (tmp_path / "missing.pt", bad):
        done = subprocess.run(
            [sys.executable, "-m", "flowkernels.cli", "train-idf", "--init", str(init), "--epochs", "0"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and str(init) in done.stderr
