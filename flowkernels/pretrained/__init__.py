"""IDF models shipped inside the package (a few MB each), made by ``bash scripts/train_pretrained.sh``.

========================  =============================================================  ===========
name                      data (fixed splits of flowkernels.data)                        file
========================  =============================================================  ===========
``digits``                scikit-learn's 8x8 digits, 17 levels                           idf_digits.pt
``photos-gray``           32x32 patches of scikit-image's grayscale photographs, 8-bit   idf_photos_gray.pt
``photos-rgb``            32x32 patches of scikit-image's colour photographs, 8-bit      idf_photos_rgb.pt
========================  =============================================================  ===========

Each was trained with ``flowkernels train-idf --seed 0`` (the script has the exact commands) and is
a plain ``{"config", "state_dict", "train"}`` checkpoint, loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHIPPED", "available", "checkpoint_path"]

SHIPPED = {
    "digits": "idf_digits.pt",
    "photos-gray": "idf_photos_gray.pt",
    "photos-rgb": "idf_photos_rgb.pt",
}

_HERE = Path(__file__).resolve().parent


def checkpoint_path(name: str) -> Path:
    """The file of the shipped model ``name`` (ValueError for unknown or missing models)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped model {name!r}; choose from {sorted(SHIPPED)}")
    path = _HERE / SHIPPED[name]
    if not path.is_file():
        raise ValueError(f"the shipped model {name!r} is missing from this installation ({path})")
    return path


def available() -> list[str]:
    """Names of the shipped models present in this installation."""
    return [name for name, file in SHIPPED.items() if (_HERE / file).is_file()]
