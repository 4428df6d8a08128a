"""CUDA checks outside pytest, for ``scripts/gpu_check.sh``: a smoke run of every CUDA kernel
(small odd shapes and edge cases, quick enough for ``compute-sanitizer``) and a CPU-vs-CUDA sweep.

    python tests/gpu/check_cuda.py smoke          # every kernel once; run it under compute-sanitizer
    python tests/gpu/check_cuda.py sweep          # CPU vs CUDA: bytes, values, determinism, streams

Without a GPU (``--dry-run`` of the script, CI) both run with ``cpu`` standing in for ``cuda``, so the
script itself is exercised everywhere. Each check prints one line; the exit status is the number of
failed checks (capped at 100).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import flowkernels
from flowkernels import ops
from flowkernels.ops.rans import RansCoder, quantize_pdf

CUDA = torch.cuda.is_available() and flowkernels.has_cuda_kernels()
DEVICE = "cuda" if CUDA else "cpu"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
_failures: list[str] = []


def check(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Runs the decorated function at once; records a failure instead of stopping."""

    def run(fn: Callable[[], None]) -> Callable[[], None]:
        try:
            fn()
            if CUDA:
                torch.cuda.synchronize()
            print(f"ok    {name}", flush=True)
        except Exception:  # every failure is reported, then the next check runs
            _failures.append(name)
            print(f"FAIL  {name}\n{traceback.format_exc(limit=3)}", flush=True)
        return fn

    return run


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same(a: torch.Tensor, b: torch.Tensor, what: str, *, tol: float = 0.0) -> None:
    a, b = a.detach().cpu(), b.detach().cpu()
    if tol == 0.0:
        if not torch.equal(a, b) and not (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                          and torch.equal(a.nan_to_num(), b.nan_to_num())):
            raise AssertionError(f"{what}: CPU and {DEVICE} differ")
    else:
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True, msg=what)


# ---------------------------------------------------------------------------------------------------
# Smoke: every kernel once, small odd shapes and edge cases


def smoke() -> None:
    d = DEVICE

    @check("coupling: round_ste, integer_coupling (odd sizes, empty, NaN/inf)")
    def _():
        x = torch.tensor([0.5, 1.5, -2.5, float("nan"), float("inf"), 3.7], device=d)
        ops.round_ste(x)
        ops.integer_coupling(x, x, inverse=True)
        ops.round_ste(torch.empty(0, device=d))

    @check("coupling: discretized_logistic_logp K=1 without logits, K=3, bounds, float64, backward")
    def _():
        for dtype in (torch.float32, torch.float64):
            x = torch.randint(0, 256, (3, 5, 7), generator=_gen(0)).to(d, dtype)
            for K, pi in ((1, False), (3, True)):
                mu = torch.randn(3, 5, 7, K, generator=_gen(1)).to(d, dtype).mul(50).add(128).requires_grad_()
                ls = torch.randn(3, 5, 7, K, generator=_gen(2)).to(d, dtype).requires_grad_()
                logit = torch.randn(3, 5, 7, K, generator=_gen(3)).to(d, dtype).requires_grad_() if pi else None
                out = ops.discretized_logistic_logp(x, mu, ls, logit, lower=0.0, upper=255.0)
                out.sum().backward()
                empty = [t[:0].detach() if t is not None else None for t in (mu, ls, logit)]
                ops.discretized_logistic_logp(x[:0], *empty)

    @check("rans: categorical, probs and logistic push/pop, L=0, escapes, precisions 12/16/24")
    def _():
        for precision in (12, 16, 24):
            probs = torch.softmax(torch.randn(3, 5, 4, generator=_gen(4)), -1).to(d)
            symbols = torch.randint(0, 4, (3, 5), generator=_gen(5)).to(d)
            coder = RansCoder(3, device=d)
            coder.push(symbols, quantize_pdf(probs.cpu(), precision=min(precision, 16)).to(d))
            coder.push_probs(symbols, probs, precision=min(precision, 16))
            mu = torch.randn(3, 5, generator=_gen(6)).to(d)
            ls = torch.zeros(3, 5, device=d)
            far = torch.tensor([[0, 1, 10**6, -(10**6), 3]] * 3, device=d)  # escapes
            coder.push_logistic(far, mu, ls, precision=precision)
            back = coder.pop_logistic(mu, ls, precision=precision)
            assert torch.equal(back.cpu(), far.cpu()), "logistic escapes did not round-trip"
            coder.pop_probs(probs, precision=min(precision, 16))
            empty = RansCoder(2, device=d)
            empty.push_logistic(torch.zeros(2, 0, dtype=torch.long, device=d), torch.zeros(2, 0, device=d),
                                torch.zeros(2, 0, device=d))

    @check("arconv: ar_conv2d and inverse, k=1/3/5, reverse, H=1, W=1, float64")
    def _():
        for k, reverse, shape in ((1, False, (2, 3, 5, 4)), (3, True, (1, 2, 1, 7)), (5, False, (2, 4, 6, 1))):
            for dtype in (torch.float32, torch.float64):
                c = shape[1]
                w = torch.randn(c, c, k, k, generator=_gen(7), dtype=dtype) * 0.1
                w[range(c), range(c), k // 2, k // 2] = 1.0
                x = torch.randn(shape, generator=_gen(8), dtype=dtype).to(d)
                y = ops.ar_conv2d(x, w.to(d), reverse=reverse)
                ops.ar_conv2d_inverse(y, w.to(d), reverse=reverse)

    @check("arconv: a singular weight raises")
    def _():
        w = torch.zeros(2, 2, 3, 3, device=d)
        try:
            ops.ar_conv2d_inverse(torch.zeros(1, 2, 3, 3, device=d), w)
        except (ValueError, RuntimeError):
            return
        raise AssertionError("no error for a singular weight")

    @check("hex: hex_conv2d, weight backward, filter transform (p6, p6m), odd sizes")
    def _():
        x = torch.randn(2, 3, 7, 5, generator=_gen(9)).to(d).requires_grad_()
        w = torch.randn(4, 3, 3, 3, generator=_gen(10)).to(d).requires_grad_()
        ops.hex_conv2d(x, w).square().sum().backward()
        for in_group, out_group in (("z2", "p6"), ("p6m", "p6m")):
            g = {"z2": 1, "p6": 6, "p6m": 12}[in_group]
            weight = torch.randn(2, 3, g, 3, 3, generator=_gen(11)).to(d).requires_grad_()
            ops.hex_filter_transform(weight, in_group, out_group).sum().backward()

    @check("intconv: int_conv2d, 1x1/3x3/5x5, odd channels, int16 and int32 outputs, empty batch")
    def _():
        for i, o, k, dtype in ((3, 5, 3, torch.int16), (7, 2, 1, torch.int32), (2, 3, 5, torch.int32)):
            x = torch.randint(-(2**15), 2**15, (2, i, 5, 7), generator=_gen(12), dtype=torch.int16).to(d)
            w = torch.randint(-127, 128, (o, i, k, k), generator=_gen(13), dtype=torch.int8).to(d)
            z = torch.zeros(o, dtype=torch.int32, device=d)
            m = torch.full((o,), 2**30, dtype=torch.int32, device=d)
            s = torch.full((o,), 40, dtype=torch.int32, device=d)
            ops.int_conv2d(x, w, z, m, s, padding=k // 2, out_dtype=dtype)
            ops.int_conv2d(x[:0], w, z, m, s, padding=k // 2, out_dtype=dtype)


# ---------------------------------------------------------------------------------------------------
# Sweep: CPU vs CUDA


def sweep() -> None:
    d = DEVICE

    @check("rans: logistic bytes identical CPU vs device, decoded on the other (K, bounds, dtype, precision)")
    def _():
        for dtype in (torch.float32, torch.float64):
            for K in (1, 5):
                for bounds in ({}, {"lower": -20.0, "upper": 20.0}):
                    for precision in (16, 24):
                        mu = (torch.randn(8, 64, K, generator=_gen(20)) * 5).to(dtype)
                        ls = torch.randn(8, 64, K, generator=_gen(21)).to(dtype)
                        pi = torch.randn(8, 64, K, generator=_gen(22)).to(dtype) if K > 1 else None
                        sym = torch.randint(-20, 21, (8, 64), generator=_gen(23))
                        streams = []
                        for device in ("cpu", d):
                            coder = RansCoder(8, device=device)
                            args = [t.to(device) if t is not None else None for t in (sym, mu, ls, pi)]
                            coder.push_logistic(*args, precision=precision, **bounds)
                            streams.append(coder.to_bytes())
                        assert streams[0] == streams[1], f"bytes differ ({dtype}, K={K}, {bounds}, {precision})"
                        for device in (d, "cpu"):
                            back = RansCoder.from_bytes(streams[0], device=device).pop_logistic(
                                *[t.to(device) if t is not None else None for t in (mu, ls, pi)],
                                precision=precision, **bounds,
                            )
                            assert torch.equal(back.cpu(), sym), f"decode on {device} differs"

    @check("rans: categorical and probs bytes identical CPU vs device")
    def _():
        probs = torch.softmax(torch.randn(16, 32, 7, generator=_gen(24)) * 2, -1)
        sym = torch.multinomial(probs.reshape(-1, 7), 1, generator=_gen(25)).reshape(16, 32)
        for precision in (12, 16):
            streams = []
            for device in ("cpu", d):
                coder = RansCoder(16, device=device)
                coder.push_probs(sym.to(device), probs.to(device), precision=precision)
                coder.push(sym.to(device), quantize_pdf(probs, precision=precision).to(device))
                streams.append(coder.to_bytes())
            assert streams[0] == streams[1], f"bytes differ at precision {precision}"

    @check("coupling: values CPU vs device, NaN and inf included (bit for bit for the integer ops)")
    def _():
        x = torch.tensor([0.5, 1.5, -2.5, float("nan"), float("inf"), -float("inf"), 1e30, 3.7])
        _same(ops.round_ste(x), ops.round_ste(x.to(d)), "round_ste")
        _same(ops.integer_coupling(x, x), ops.integer_coupling(x.to(d), x.to(d)), "integer_coupling")
        xs = torch.tensor([float("nan"), 3.0, 255.0, 0.0, 1e6])
        mu = torch.randn(5, 3, generator=_gen(26)) * 3
        mu[3, 1] = float("nan")
        ls, pi = torch.zeros(5, 3), torch.randn(5, 3, generator=_gen(27))
        cpu = ops.discretized_logistic_logp(xs, mu, ls, pi, lower=0.0, upper=255.0)
        dev = ops.discretized_logistic_logp(xs.to(d), mu.to(d), ls.to(d), pi.to(d), lower=0.0, upper=255.0)
        assert bool(cpu[0].isnan()) and bool(dev[0].isnan()) and bool(dev[3].isnan()), "NaN must propagate"
        _same(cpu, dev, "discretized_logistic_logp", tol=1e-5)

    @check("arconv: CPU vs device, deterministic, and the same on a non-default stream")
    def _():
        w = torch.randn(6, 6, 3, 3, generator=_gen(28)) * 0.05
        w[range(6), range(6), 1, 1] = 1.0
        x = torch.randn(3, 6, 17, 13, generator=_gen(29))
        y = ops.ar_conv2d(x, w)
        yd = ops.ar_conv2d(x.to(d), w.to(d))
        _same(y, yd, "ar_conv2d", tol=1e-5)
        inv = [ops.ar_conv2d_inverse(yd, w.to(d)) for _ in range(2)]
        _same(inv[0], inv[1], "ar_conv2d_inverse run to run")
        _same(ops.ar_conv2d_inverse(y, w), inv[0], "ar_conv2d_inverse", tol=1e-5)
        if CUDA:
            stream = torch.cuda.Stream()
            with torch.cuda.stream(stream):
                on_stream = ops.ar_conv2d_inverse(yd, w.to(d))
            stream.synchronize()
            _same(on_stream, inv[0], "ar_conv2d_inverse on a side stream")

    @check("hex: CPU vs device (float32 without TF32, float64), deterministic")
    def _():
        for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
            x = torch.randn(2, 8, 15, 11, generator=_gen(30), dtype=dtype)
            w = torch.randn(8, 8, 5, 5, generator=_gen(31), dtype=dtype) / 10
            runs = [ops.hex_conv2d(x.to(d), w.to(d)) for _ in range(2)]
            _same(runs[0], runs[1], "hex_conv2d run to run")
            _same(ops.hex_conv2d(x, w), runs[0], f"hex_conv2d {dtype}", tol=tol)

    @check("intconv: int_conv2d bit for bit CPU vs device")
    def _():
        x = torch.randint(-(2**15), 2**15, (3, 36, 16, 16), generator=_gen(32), dtype=torch.int16)
        w = torch.randint(-60, 61, (64, 36, 3, 3), generator=_gen(33), dtype=torch.int8)
        b = torch.randint(-(2**20), 2**20, (64,), generator=_gen(34), dtype=torch.int32)
        m = torch.randint(0, 2**31 - 1, (64,), generator=_gen(35), dtype=torch.int32)
        s = torch.randint(0, 63, (64,), generator=_gen(36), dtype=torch.int32)
        args = (x, w, b, m, s)
        _same(ops.int_conv2d(*args, padding=1, out_dtype=torch.int32),
              ops.int_conv2d(*(t.to(d) for t in args), padding=1, out_dtype=torch.int32), "int_conv2d")

    @check("codec: golden files encode on the device to the committed bytes and decode there")
    def _():
        from flowkernels.codec import LosslessImageCodec, read_header, resolve_model

        for name, model in (("digits", "digits"), ("photos_gray", "photos-gray"), ("photos_rgb", "photos-rgb")):
            data = (GOLDEN / f"{name}.fkc").read_bytes()
            pixels = torch.from_numpy(np.load(GOLDEN / f"{name}.npy"))
            codec = LosslessImageCodec(resolve_model(model).to(d))
            assert codec.encode(pixels, stream=read_header(data).stream) == data, f"{name}: bytes differ"
            assert torch.equal(codec.decode(data), pixels), f"{name}: pixels differ"


def main(argv: list[str]) -> int:
    sections = {"smoke": smoke, "sweep": sweep}
    if len(argv) != 1 or argv[0] not in sections:
        print(f"usage: check_cuda.py {{{'|'.join(sections)}}}", file=sys.stderr)
        return 2
    print(f"# {argv[0]} on {DEVICE}" + ("" if CUDA else " (no CUDA: cpu stands in, a dry run)"), flush=True)
    sections[argv[0]]()
    print(f"# {argv[0]}: {len(_failures)} failed", flush=True)
    return min(len(_failures), 100)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
