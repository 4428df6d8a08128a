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
