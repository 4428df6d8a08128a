"""IDF models shipped inside the package, made by ``bash scripts/train_pretrained.sh``.

The default models are integer-only (:mod:`flowkernels.models.idf_integer`): every number the decoder
recomputes is an integer, so their files decode on any machine. Their float originals ship too, for
the files that flowkernels wrote with them before (codec format version 2), which decode where they did.

===================  ==========================================================  ========================
name                 data (fixed splits of flowkernels.data)                     file
===================  ==========================================================  ========================
``digits``           scikit-learn's 8x8 digits, 17 levels                        idf_digits.pt
``photos-gray``      32x32 patches of scikit-image's grayscale photographs       idf_photos_gray.pt
``photos-rgb``       32x32 patches of scikit-image's colour photographs          idf_photos_rgb.pt
``photos-dev-gray``  64x64 patches of scikit-image's photographs and of the      idf_photos_dev_gray.pt
                     development wallpapers (:mod:`flowkernels.photo_sources`)
``photos-dev-rgb``   the same in colour                                          idf_photos_dev_rgb.pt
``*-float``          the float models the first three were fine-tuned from       idf_*_float.pt
===================  ==========================================================  ========================

The float models were trained with ``flowkernels train-idf --seed 0``; the integer ones with
``flowkernels train-idf --init <float model> --epochs 0 --qat-epochs N`` (quantization-aware
fine-tuning, then conversion); the script has the exact commands. Each file is a plain
``{"config", "state_dict", "train"}`` checkpoint, loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHIPPED", "LEGACY", "available", "checkpoint_path"]

SHIPPED = {
    "digits": "idf_digits.pt",
    "photos-gray": "idf_photos_gray.pt",
    "photos-rgb": "idf_photos_rgb.pt",
    "digits-float": "idf_digits_float.pt",
    "photos-gray-float": "idf_photos_gray_float.pt",
    "photos-rgb-float": "idf_photos_rgb_float.pt",
    "photos-dev-gray": "idf_photos_dev_gray.pt",
    "photos-dev-rgb": "idf_photos_dev_rgb.pt",
}
#: float models kept to decode the files made with them (they decode only on the same kind of machine)
LEGACY = ("digits-float", "photos-gray-float", "photos-rgb-float")

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
