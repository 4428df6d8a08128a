"""Deprecated names: each old public name that a published README example used still works, with a warning
that names its new home; no other old name is kept."""

from __future__ import annotations

import warnings

import pytest
import torch

from flowkernels.models.idf import IDF, load_idf


def test_load_idf_is_a_deprecated_name_of_from_checkpoint():
    with pytest.warns(DeprecationWarning, match="IDF.from_checkpoint"):
        model = load_idf("digits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = IDF.from_checkpoint("digits")
    assert model.config == again.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_categorical_from_pixelcnn_is_a_deprecated_import():
    import flowkernels.models.pixelcnn as pixelcnn
    from flowkernels.models.distributions import Categorical

    with pytest.warns(DeprecationWarning, match="flowkernels.models.distributions"):
        assert pixelcnn.Categorical is Categorical
    with pytest.raises(AttributeError):
        pixelcnn.NoSuchThing  # noqa: B018


def test_the_rans_coder_moved_to_ops_and_the_old_import_warns():
    import flowkernels.rans as old
    from flowkernels.ops.rans import RansCoder

    with pytest.warns(DeprecationWarning, match="flowkernels.ops.rans"):
        assert old.RansCoder is RansCoder
    with pytest.raises(AttributeError):
        old.NoSuchThing  # noqa: B018


def test_conditional_flows_old_keywords_tau_and_samples_still_work_with_a_warning():
    from flowkernels.models.conditional import BinaryDequantizer, ConditionalFlow, ConditionNet

    torch.manual_seed(0)
    flow = ConditionalFlow(ConditionNet(1, 4), 2, 1, upscale=2).eval()
    x = torch.rand(2, 1, 4, 4)
    with pytest.warns(DeprecationWarning, match="tau= is deprecated, use temperature="):
        old = flow.sample(x, tau=0.0)
    assert torch.equal(old, flow.sample(x, temperature=0.0))
    with pytest.warns(DeprecationWarning, match="samples= is deprecated, use num_samples="):
        assert flow.sample(x, 0.5, torch.Generator().manual_seed(1), samples=3).shape[0] == 6
    with pytest.raises(ValueError, match="give temperature= or its old name tau=, not both"):
        flow.sample(x, temperature=0.5, tau=0.5)
    binary = BinaryDequantizer(ConditionalFlow(ConditionNet(1, 4), 2, 1, upscale=2), 1, 4)
    y = (torch.rand(2, 1, 8, 8) > 0.5).long()
    with pytest.warns(DeprecationWarning, match="samples= is deprecated"):
        old = binary.log_prob_bound(y, x, torch.Generator().manual_seed(2), samples=4)
    new = binary.log_prob_bound(y, x, torch.Generator().manual_seed(2), num_samples=4)
    assert torch.equal(old, new)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_the_glossarys_old_keywords_of_the_readme_examples_still_work_with_a_warning():
    from flowkernels.data import load_digits
    from flowkernels.models.conditional import ConditionalFlow, ConditionNet
    from flowkernels.models.dequantization import AutoregressiveDequantizer
    from flowkernels.models.glow import Glow

    def built(factory, **kwargs):
        torch.manual_seed(0)
        return factory(**kwargs)

    with pytest.warns(DeprecationWarning, match="Glow: levels= is deprecated, use num_scales="):
        old = built(Glow, in_channels=1, levels=2, steps_per_scale=1, hidden=4)
    assert old.num_scales == 2 and _same_weights(
        old, built(Glow, in_channels=1, num_scales=2, steps_per_scale=1, hidden=4)
    )
    with pytest.warns(DeprecationWarning, match="Glow: steps_per_level= is deprecated, use steps_per_scale="):
        old = built(Glow, in_channels=1, num_scales=2, steps_per_level=3, hidden=4)
    assert old.config["steps_per_scale"] == 3
    with pytest.raises(ValueError, match="Glow: give num_scales= or its old name levels=, not both"):
        Glow(1, num_scales=2, levels=2, steps_per_scale=1)

    with (
        pytest.warns(DeprecationWarning, match="ConditionalFlow: levels= is deprecated, use num_scales="),
        pytest.warns(DeprecationWarning, match="ConditionalFlow: steps= is deprecated, use steps_per_scale="),
    ):
        flow = ConditionalFlow(ConditionNet(1, 4), levels=2, steps=1, upscale=2)
    assert flow.num_scales == 2

    with pytest.warns(DeprecationWarning, match="AutoregressiveDequantizer: levels= is deprecated, use data_levels="):
        assert AutoregressiveDequantizer(channels=1, levels=17, hidden=4, steps=1).data_levels == 17

    with pytest.warns(DeprecationWarning, match="load_digits: levels= is deprecated, use data_levels="):
        old = load_digits("test", levels=2)
    assert torch.equal(old, load_digits("test", data_levels=2))
