"""One checkpoint format (models/checkpoint.py): every family saves and loads through it, and bad files are
one-line errors. IDF's own cases are in test_models_idf.py."""

from __future__ import annotations

import pytest
import torch

from flowkernels.models.checkpoint import read_checkpoint
from flowkernels.models.glow import Glow


def small_glow(dtype: torch.dtype = torch.float32) -> Glow:
    torch.manual_seed(0)
    model = Glow(1, 2, 1, 8, conv="emerging", image_size=(8, 8)).to(dtype)
    with torch.no_grad():
        model(torch.rand(16, 1, 8, 8, dtype=dtype))  # ActNorm's data-dependent initialisation
    return model.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_glow_round_trips_through_its_checkpoint(tmp_path, dtype):
    model = small_glow(dtype)
    path = model.save(tmp_path / "glow.pt", train={"epochs": 3})
    loaded = Glow.from_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    assert next(loaded.parameters()).dtype == dtype
    x = torch.rand(4, 1, 8, 8, dtype=dtype)
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    assert read_checkpoint(path)["train"] == {"epochs": 3}


def test_glow_checkpoint_errors_name_the_file_and_the_family(tmp_path):
    model = small_glow()
    cases = {
        "idf.pt": ({"config": {"colour": "red"}, "state_dict": {}}, "does not describe a Glow"),
        "half.pt": (
            {"config": model.config, "state_dict": {k: v.half() for k, v in model.state_dict().items()}},
            "float32 or float64, got torch.float16",
        ),
        "shapes.pt": ({"config": {**model.config, "hidden": 4}, "state_dict": model.state_dict()}, "do not fit"),
    }
    for name, (content, message) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(ValueError, match=rf"{name}: .*{message}"):
            Glow.from_checkpoint(tmp_path / name)
