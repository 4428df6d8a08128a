"""Benchmarks of the context family: subpixels per second, encode and decode, against the pure-Python
specification and against JPEG-LS and PNG (imagecodecs), on a gray and an RGB photograph.

The specification codes a crop (it is ~10^4x slower); its rate is per subpixel like the others. Each
row's notes give the bits per subpixel of the kernel and of the peers on the same pixels. The target
is the codec issue's: a 768x512 gray photograph in under 5 s, i.e. at least 0.079 million subpixels
per second each way.
"""

from __future__ import annotations

import numpy as np
import torch

from flowkernels.codec.imageio import to_tensor
from flowkernels.ops import context_decode, context_encode
from flowkernels.reference import context as ref

from .harness import Case, Target

FAMILY = "context"
#: 768 x 512 subpixels in 5 s
USABLE = Target(min_rate=768 * 512 / 5 / 1e6)
#: side of the crop the pure-Python specification codes
REFERENCE_SIDE = 24


def _photographs(quick: bool) -> list[tuple[str, np.ndarray]]:
    from skimage import data

    side = 64 if quick else 512
    return [("gray photograph", data.camera()[:side, :side]), ("RGB photograph", data.astronaut()[:side, :side])]


def _peers(image: np.ndarray) -> tuple[dict, dict, str]:
    """Encode and decode callables of JPEG-LS and PNG (level 9), and their sizes, where imagecodecs is."""
    try:
        import imagecodecs
    except ImportError:  # pragma: no cover - an optional peer
        return {}, {}, ""
    codecs = {
        "JPEG-LS": (lambda: imagecodecs.jpegls_encode(image), imagecodecs.jpegls_decode),
        "PNG -9": (lambda: imagecodecs.png_encode(image, level=9), imagecodecs.png_decode),
    }
    encoded = {name: encode() for name, (encode, _) in codecs.items()}
    sizes = ", ".join(f"{name} {8 * len(data) / image.size:.3f}" for name, data in encoded.items())
    encoders = {name: encode for name, (encode, _) in codecs.items()}
    decoders = {name: (lambda decode=decode, data=encoded[name]: decode(data)) for name, (_, decode) in codecs.items()}
    return encoders, decoders, sizes


def cases(*, quick: bool = False, device: str = "cpu", compile_peers: bool = True) -> list[Case]:
    """Benchmark cases of the family (CPU only: the coder is serial); ``quick`` uses small crops."""
    del compile_peers  # nothing to compile: the peers are C libraries
    if torch.device(device).type != "cpu":
        return []
    out = []
    for label, image in _photographs(quick):
        tensor = to_tensor(np.ascontiguousarray(image))[0][0]
        crop = tensor[:, :REFERENCE_SIDE, :REFERENCE_SIDE].contiguous()
        stream = context_encode(tensor)
        crop_bytes = ref.encode(crop.numpy())
        encoders, decoders, sizes = _peers(np.ascontiguousarray(image))
        notes = f"bits/subpixel: context {8 * stream.numel() / tensor.numel():.3f}" + (f", {sizes}" if sizes else "")
        shape = "x".join(str(s) for s in tensor.shape)
        for op, kernel, reference, peers in (
            ("encode", lambda t=tensor: context_encode(t), lambda c=crop: ref.encode(c.numpy()), encoders),
            (
                "decode",
                lambda s=stream, t=tensor: context_decode(s, t.shape),
                lambda b=crop_bytes, c=crop: ref.decode(b, *c.shape),
                decoders,
            ),
        ):
            out.append(
                Case(
                    FAMILY,
                    f"context {op}, {label}",
                    shape,
                    "fwd",
                    kernel=kernel,
                    reference=reference,
                    peers=peers,
                    target=USABLE,
                    items=tensor.numel(),
                    reference_items=crop.numel(),
                    threads=1,
                    measure_memory=False,
                    notes=notes if op == "encode" else "",
                )
            )
    return out
