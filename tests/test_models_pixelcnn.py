"""Tests of the gated PixelCNN, its output distributions, the forecasting modules and the VQ autoencoder."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

from flowkernels.models.arm_training import train_forecaster, train_pixelcnn, train_vq_autoencoder
from flowkernels.models.distributions import Categorical, DiscretizedLogisticMixture
from flowkernels.models.figures import save_image_grid
from flowkernels.models.pixelcnn import ForecastingModules, PixelCNN

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="needs scipy")

# Every kind of ARM: (distribution, embedding, channels) with value inputs and with learned embeddings, on one
# channel and on several (planes in order, each seeing the earlier ones).
ARM_KINDS = {
    "binary": (Categorical(2), None, 1),
    "categorical": (Categorical(5), None, 1),
    "embedded": (Categorical(6), 4, 1),
    "logistic": (DiscretizedLogisticMixture(256, 3), None, 1),
    "rgb-logistic": (DiscretizedLogisticMixture(256, 3), None, 3),
    "rgb-categorical": (Categorical(5), None, 3),
    "embedded-2-channels": (Categorical(6), 4, 2),
}


def make_arm(kind: str, image_size=(4, 5), seed: int = 0, **options) -> PixelCNN:
    """A small random PixelCNN whose biases are perturbed too, so that nothing is zero by accident."""
    distribution, embedding, channels = ARM_KINDS[kind]
    torch.manual_seed(seed)
    options = {"hidden": 8, "layers": 2, "input_kernel": 5, "channels": channels, **options}
    arm = PixelCNN(distribution, image_size=image_size, embedding=embedding, **options)
    with torch.no_grad():
        for parameter in arm.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return arm.eval()


def random_images(arm: PixelCNN, batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, arm.distribution.data_levels, (batch, *arm.event_shape), generator=generator)


@pytest.mark.parametrize("kind", ARM_KINDS)
def test_causal_and_no_blind_spot(kind):
    """Changing dimension j (raster order) changes the outputs of exactly the dimensions after j.

    Outputs (parameters and features) of dimensions <= j must not change at all, bit for bit. With random
    weights and a receptive field that covers the 4x5 image, the features of every later dimension do
    change: the model has no blind spot. (The parameters could, in principle, be cut off by the head's
    ReLUs, so the blind-spot check is on the features.)
    """
    arm = make_arm(kind)
    x = random_images(arm, 1)
    data_levels, dims = arm.distribution.data_levels, arm.dims
    with torch.no_grad():
        params, features = arm.predict(x)
        params_changed = torch.zeros(dims, dims, dtype=torch.bool)
        features_changed = torch.zeros(dims, dims, dtype=torch.bool)
        for j in range(dims):
            y = x.clone()
            y.view(-1)[j] = (y.view(-1)[j] + data_levels // 2) % data_levels
            new_params, new_features = arm.predict(y)
            params_changed[j] = (new_params != params).any(-1).view(-1)
            features_changed[j] = (new_features != features).any(1).view(-1)
    assert not params_changed.tril().any(), "a dimension's output depends on itself or a later dimension"
    assert not features_changed.tril().any(), "a dimension's features depend on itself or a later dimension"
    later = torch.ones(dims, dims, dtype=torch.bool).triu(1)  # [j, i]: i after j
    assert features_changed[later].all(), "a dimension's features ignore an earlier dimension (blind spot)"


def test_outputs_depend_on_prefix_only_for_any_batch_content():
    """The output at dimension i is the same, to the last bit, whatever the later dimensions hold."""
    arm = make_arm("logistic", image_size=(6, 6))
    x = random_images(arm, 3)
    with torch.no_grad():
        base = arm(x).flatten(1, -2)
        for i in (0, 7, 20, 35):
            y = random_images(arm, 3, seed=10 + i)
            y.view(3, -1)[:, :i] = x.view(3, -1)[:, :i]
            assert torch.equal(arm(y).flatten(1, -2)[:, : i + 1], base[:, : i + 1])


@pytest.mark.parametrize("kind", ["categorical", "embedded", "logistic"])
def test_probabilities_of_all_images_sum_to_one(kind):
    """A 2x2 image with 3 (or 6) levels: the ARM's probabilities of all images sum to 1."""
    distribution, embedding, _ = (DiscretizedLogisticMixture(3, 2), None, 1) if kind == "logistic" else ARM_KINDS[kind]
    torch.manual_seed(0)
    arm = PixelCNN(distribution, image_size=(2, 2), hidden=8, layers=1, input_kernel=3, embedding=embedding).double()
    data_levels = distribution.data_levels
    images = torch.tensor(list(itertools.product(range(data_levels), repeat=4))).view(-1, 1, 2, 2)
    with torch.no_grad():
        total = arm.log_prob(images).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("embedding", [None, 3])
def test_probabilities_of_all_two_channel_images_sum_to_one(embedding):
    """Two channels of a 2x1 image with 3 levels (81 images): the plane-by-plane ARM is normalised."""
    torch.manual_seed(1)
    options = {"hidden": 8, "layers": 1, "input_kernel": 3, "embedding": embedding, "channels": 2}
    arm = PixelCNN(Categorical(3), image_size=(2, 1), **options)
    images = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2, 1)
    with torch.no_grad():
        total = arm.double().log_prob(images).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-10)


def test_several_channels_are_planes_of_one_tall_image():
    arm = make_arm("rgb-categorical")
    x = random_images(arm, 2)
    params, features = arm.predict(x)
    assert params.shape == (2, 3, 4, 5, 5) and features.shape == (2, 8, 12, 5)
    assert arm.event_shape == (3, 4, 5) and arm.dims == 60
    assert torch.equal(arm.positions(x)[:, 0, 4:8], x[:, 1])  # rows 4..7 of the tall image are channel 1
    torch.testing.assert_close(arm.bits_per_dim(x), -arm.log_prob(x) / (60 * math.log(2)))


def test_bits_per_dim_and_shapes():
    arm = make_arm("binary")
    x = random_images(arm, 3)
    params, features = arm.predict(x)
    assert params.shape == (3, 1, 4, 5, 2) and features.shape == (3, 8, 4, 5)
    assert arm.event_shape == (1, 4, 5) and arm.dims == 20
    torch.testing.assert_close(arm.bits_per_dim(x), -arm.log_prob(x) / (20 * math.log(2)))


def test_bad_inputs_raise():
    arm = make_arm("categorical")
    with pytest.raises(ValueError, match="integer tensor"):
        arm(torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\] \(1 channel\(s\)\)"):
        arm(torch.zeros(1, 3, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        make_arm("rgb-categorical")(torch.zeros(1, 1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        PixelCNN(Categorical(2), channels=0)
    with pytest.raises(ValueError, match=r"values must be in 0\.\.4"):
        arm.log_prob(torch.full((1, 1, 4, 5), 5))
    with pytest.raises(ValueError, match="odd"):
        PixelCNN(Categorical(2), kernel_size=2)
    with pytest.raises(ValueError, match="Distribution"):
        PixelCNN("categorical")
    with pytest.raises(ValueError, match="data_levels must be an integer >= 2"):
        Categorical(1)
    with pytest.raises(ValueError, match="num_mixtures must be a positive integer"):
        DiscretizedLogisticMixture(256, 0)
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        ForecastingModules(8, Categorical(2), 0)


def chi_square_pvalue(samples: torch.Tensor, probs: torch.Tensor) -> float:
    stats = pytest.importorskip("scipy.stats")
    counts = torch.bincount(samples, minlength=probs.numel()).double()
    expected = probs.double() * samples.numel()
    keep = expected > 5  # chi-square needs enough expected counts; pool the rest
    observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
    expected = torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)])
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    expected = expected * observed.sum() / expected.sum()
    return float(stats.chisquare(observed.numpy(), expected.numpy()).pvalue)


@needs_scipy
def test_gumbel_max_frequencies_match_softmax():
    distribution = Categorical(6)
    logits = torch.tensor([1.5, -0.5, 0.0, 2.0, -3.0, 0.7])
    generator = torch.Generator().manual_seed(0)
    n = 60_000
    noise = torch.rand(n, 6, generator=generator).clamp(1e-30, 1 - 1e-7)
    samples = distribution.sample(logits.expand(n, 6), noise)
    assert chi_square_pvalue(samples, torch.softmax(logits, 0)) > 1e-3


@needs_scipy
def test_logistic_inverse_cdf_frequencies_match_the_likelihood_op():
    """Gumbel-max over components + inverse CDF + binning samples exactly ``exp(discretized_logistic_logp)``."""
    distribution = DiscretizedLogisticMixture(8, 3)
    params = torch.tensor([0.3, -0.4, 0.1, -0.6, 0.2, 0.7, -1.2, -0.8, -1.5], dtype=torch.float64)
    probs = distribution.log_prob_table(params).exp()
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    n = 60_000
    noise = torch.rand(n, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64).clamp(1e-300, 1 - 1e-16)
    samples = distribution.sample(params.expand(n, 9), noise)
    assert chi_square_pvalue(samples, probs) > 1e-3
    torch.testing.assert_close(distribution.log_prob(torch.arange(8), params.expand(8, 9)), probs.log())


def test_forecaster_kl_is_zero_when_it_copies_the_arm():
    """``kl_to`` compares module t at dimension i with the ARM at i + t (raster order, across rows)."""
    arm = make_arm("categorical")
    forecaster = ForecastingModules(8, arm.distribution, horizon=3)
    params = arm(random_images(arm, 2))
    flat = params.flatten(1, -2)  # [B, d, P]
    shifted = torch.stack([torch.roll(flat, -t, dims=1) for t in (1, 2, 3)], dim=1)  # entry i holds the ARM at i + t
    copy = shifted.view(2, 3, 1, 4, 5, -1)
    torch.testing.assert_close(forecaster.kl_to(params, copy), torch.zeros(3), rtol=0, atol=1e-6)
    assert (forecaster.kl_to(params, torch.zeros_like(copy)) > 0).all()
    assert forecaster(torch.randn(2, 8, 4, 5), random_images(arm, 2)).shape == (2, 3, 1, 4, 5, 5)


@pytest.mark.parametrize("kind", ["categorical", "logistic"])
def test_draws_nll_scores_module_t_at_i_on_the_value_t_later(kind):
    """A forecaster that copies the ARM's distribution of dimension i + t scores x_{i+t} as the ARM does."""
    arm = make_arm(kind)
    x = random_images(arm, 2)
    params = arm(x)
    forecaster = ForecastingModules(8, arm.distribution, horizon=3)
    flat = params.flatten(1, -2)  # [B, d, P]
    copy = torch.stack([torch.roll(flat, -t, dims=1) for t in (1, 2, 3)], dim=1).view(2, 3, 1, 4, 5, -1)
    arm_log_probs = arm.distribution.log_prob(x, params).flatten(1)  # [B, d]
    expected = torch.stack([-arm_log_probs[:, t:].mean() for t in (1, 2, 3)])
    torch.testing.assert_close(forecaster.draws_nll(x, copy), expected)


def test_logistic_kl_estimate_is_unbiased():
    """The one-sample KL of a logistic mixture averages to the exact sum over all values."""
    distribution = DiscretizedLogisticMixture(16, 2)
    generator = torch.Generator().manual_seed(0)
    p = torch.randn(6, distribution.params_per_dim, generator=generator, dtype=torch.float64)
    q = p + 0.5 * torch.randn(p.shape, generator=generator, dtype=torch.float64)
    exact = Categorical.kl(
        distribution, p, q, None
    )  # the base class's exact sum, on this distribution's log_prob_table
    n = 40_000
    noise = torch.rand(n, 6, 3, generator=generator, dtype=torch.float64).clamp(1e-300, 1 - 1e-16)
    estimate = distribution.kl(p.expand(n, 6, -1), q.expand(n, 6, -1), noise).mean(0)
    assert (exact > 0).all()
    torch.testing.assert_close(estimate, exact, rtol=0.1, atol=0.01)


@needs_sklearn
def test_training_lowers_bits_and_is_deterministic():
    from flowkernels.data import load_digits

    train, test = load_digits("train", data_levels=2)[:256], load_digits("test", data_levels=2)[:64]
    options = {"epochs": 2, "batch_size": 32, "hidden": 8, "layers": 1, "progress": False}
    arm, history = train_pixelcnn(train, test, Categorical(2), **options)
    again, _ = train_pixelcnn(train, test, Categorical(2), **options)
    assert history.final_test_bpd < history.test_bpd[0][1]
    assert all(torch.equal(a, b) for a, b in zip(arm.state_dict().values(), again.state_dict().values(), strict=True))
    assert not arm.training
    forecaster, kl_history = train_forecaster(arm, train, test, horizon=2, epochs=2, hidden=8, progress=False)
    assert kl_history.final_test_bpd < kl_history.test_bpd[0][1]
    assert all(p.requires_grad for p in arm.parameters()), "the ARM must be left trainable"
    # On the ARM's own draws, scored against them.
    from flowkernels.sampling import sample_arm

    draws = sample_arm(arm, 96, batch_size=48, generator=torch.Generator().manual_seed(0))
    _, draws_history = train_forecaster(
        arm, draws[:64], draws[64:], horizon=2, epochs=2, hidden=8, progress=False, objective="draws"
    )
    assert draws_history.final_test_bpd < draws_history.test_bpd[0][1]
    assert draws_history.config["objective"] == "draws"
    with pytest.raises(ValueError, match="objective must be one of"):
        train_forecaster(arm, train, test, horizon=2, epochs=1, objective="likelihood")


def test_vq_autoencoder_round_trip_shapes_and_training():
    generator = torch.Generator().manual_seed(0)
    # Smooth random 16x16 "photographs": a coarse pattern upsampled, so that an autoencoder can learn them.
    coarse = torch.randint(0, 256, (96, 1, 4, 4), generator=generator).double()
    images = torch.nn.functional.interpolate(coarse, scale_factor=4, mode="bilinear").round().long()
    model, history = train_vq_autoencoder(
        images[:64], images[64:], epochs=12, batch_size=8, lr=5e-3, codes=8, dim=4, hidden=8, progress=False
    )
    assert history.final_test_bpd < history.test_bpd[0][1] - 0.25
    codes = model.encode(images[:5])
    assert codes.shape == (5, 1, 4, 4) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < model.codes
    decoded = model.decode(codes)
    assert decoded.shape == (5, 1, 16, 16) and 0 <= decoded.min() and decoded.max() <= 255
    with pytest.raises(ValueError, match="divisible by 4"):
        model.encode(images[:1, :, :15])


@needs_matplotlib
def test_save_image_grid(tmp_path):
    images = torch.randint(0, 17, (5, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    path = save_image_grid(images, tmp_path / "grid.png", 17, cmap="gray_r")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"\[N, 1 or 3, H, W\]"):
        save_image_grid(images[:, 0], tmp_path / "bad.png", 17)
    # RGB: the pixels keep their colours (upscaled 2x, one-pixel frames, a 2x2 grid of 2x3 images).
    import matplotlib.image

    rgb = torch.randint(0, 256, (4, 3, 2, 3), generator=torch.Generator().manual_seed(1))
    picture = matplotlib.image.imread(save_image_grid(rgb, tmp_path / "rgb.png", 256, upscale=2))
    assert picture.shape[:2] == (2 * (2 * 3 + 1), 2 * (2 * 4 + 1))
    top_left = torch.from_numpy(picture[2:6:2, 2:8:2, :3].copy()).permute(2, 0, 1)  # image 0, one copy per pixel
    torch.testing.assert_close(top_left * 255, rgb[0].float(), atol=0.51, rtol=0)


def test_vq_reconstruction_bpd_is_minus_log2_of_the_logistic_bins_per_dim():
    """The README's reconstruction bits/dim: with the decoder's output fixed, the value must equal an
    independent float64 computation from the logistic CDF (edge bins open to +-infinity)."""
    from flowkernels.models.vq import VQAutoencoder

    data_levels = 16
    model = VQAutoencoder(data_levels=data_levels, codes=4, dim=4, hidden=8).double()
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, data_levels, (3, 1, 8, 8), generator=generator)
    mu = torch.rand(3, 1, 8, 8, generator=generator, dtype=torch.float64) * 2.4 - 1.2
    # scales 0.14..1: no bin underflows in float64
    log_scale = torch.rand(3, 1, 8, 8, generator=generator, dtype=torch.float64) * 2 - 2

    class FixedOutput(torch.nn.Module):  # the decoder's [B, 2, H, W] output (mean, log-scale), codes ignored
        def forward(self, quantized):
            return torch.cat([mu, log_scale], dim=1)

    model.decoder = FixedOutput()
    bits = model.reconstruction_bpd(x, quantized=torch.zeros(3, 4, 2, 2, dtype=torch.float64))

    width = 2.0 / (data_levels - 1)
    centre = x.double() * width - 1.0
    scale = log_scale.exp()
    upper = torch.where(x == data_levels - 1, 1.0, torch.sigmoid((centre + width / 2 - mu) / scale))
    lower = torch.where(x == 0, 0.0, torch.sigmoid((centre - width / 2 - mu) / scale))
    expected = -torch.log2(upper - lower).flatten(1).sum(1) / 64
    torch.testing.assert_close(bits, expected, rtol=1e-9, atol=1e-9)
