"""The CPU kernels' instruction-set paths (flowkernels.cpu): the switch, and what each path guarantees.

The op test modules run whole once per path this machine supports (conftest.every_cpu_isa); here
the paths are compared with each other: bit-identical results for the auto-vectorised families
(an rANS stream written on one path decodes on every other), float32 agreement for the hex direct
kernel, whose paths sum in other orders.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import flowkernels
from flowkernels import cpu, ops
from flowkernels.ops.rans import RansCoder
from flowkernels.reference import hex as hex_ref

from .conftest import CPU_ISAS
from .test_ops_arconv import make_weight


def _on_every_path(fn):
    """{path: fn()} for every path this machine supports."""
    results = {}
    for path in CPU_ISAS:
        with cpu.isa_ceiling(path) as active:
            assert active == path
            results[path] = fn()
    return results


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


# ---- the switch ---------------------------------------------------------------------------------


def test_paths_are_ordered_and_the_supported_one_is_in_effect_by_default():
    assert CPU_ISAS[0] == "baseline" and CPU_ISAS[-1] == cpu.supported_isa()
    assert set(CPU_ISAS) <= set(cpu.ISA_PATHS)
    assert cpu.isa() == cpu.supported_isa()  # nothing left lowered by another test


def test_a_ceiling_lowers_the_path_and_is_restored():
    top = cpu.isa()
    with cpu.isa_ceiling("baseline") as path:
        assert path == "baseline" == cpu.isa()
        assert set(cpu.kernel_paths().values()) == {"baseline", "oneDNN"}
    assert cpu.isa() == top
    # a ceiling above what the CPU runs is no error: the CPU's best path runs
    assert cpu.set_isa("avx512") == cpu.supported_isa()


def test_an_unknown_path_is_refused():
    with pytest.raises(ValueError, match="unknown path 'sse2'"):
        cpu.set_isa("sse2")
    assert cpu.isa() == cpu.supported_isa()


def test_kernel_paths_name_every_family():
    paths = cpu.kernel_paths()
    assert set(paths) == {"coupling", "rans", "arconv", "hex", "intconv"}
    assert paths["coupling"] == paths["rans"] == paths["arconv"] == paths["intconv"] == cpu.isa()


def test_a_bad_environment_value_stops_the_import_with_one_line():
    done = _run("import flowkernels", FLOWKERNELS_CPU_ISA="avx9000")
    assert done.returncode != 0
    assert "FLOWKERNELS_CPU_ISA='avx9000' is not one of baseline, avx2, avx512" in done.stderr


def test_import_does_not_load_the_compiler_stack():
    # torch._dynamo alone doubles the import time of every `flowkernels` command
    done = _run("import sys, flowkernels; print('torch._dynamo' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ---- bit-identical families ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coupling_ops_give_the_same_bits_on_every_path(dtype):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(1000, generator=gen, dtype=dtype) * 40).round()
    t = torch.randn(1000, generator=gen, dtype=dtype) * 30
    mu = torch.randn(1000, 5, generator=gen, dtype=dtype) * 20
    log_scale = torch.randn(1000, 5, generator=gen, dtype=dtype).clamp(-4, 3)
    logit_pi = torch.randn(1000, 5, generator=gen, dtype=dtype, requires_grad=True)
    mu.requires_grad_()

    def run():
        logp = ops.discretized_logistic_logp(x, mu, log_scale, logit_pi, lower=-255.0, upper=255.0)
        grads = torch.autograd.grad(logp.sum(), [mu, logit_pi])
        return [
            ops.round_ste(t * 1.37),
            ops.integer_coupling(x, t),
            ops.integer_coupling(x, t, inverse=True, scale=0.5),
            logp.detach(),
            ops.discretized_logistic_logp(x, mu[:, 0], log_scale[:, 0]).detach(),
            *grads,
        ]

    results = _on_every_path(run)
    for path, outputs in results.items():
        for got, expected in zip(outputs, results["baseline"], strict=True):
            assert torch.equal(got, expected), path


def test_rans_streams_are_the_same_bytes_on_every_path_and_decode_on_every_other():
    gen = torch.Generator().manual_seed(4)
    lanes, length, components = 9, 300, 3
    mu = torch.randn(lanes, length, components, generator=gen) * 30
    log_scale = torch.rand(lanes, length, components, generator=gen) * 3 - 1
    logit_pi = torch.randn(lanes, length, components, generator=gen)
    symbols = (mu[..., 0] + torch.randn(lanes, length, generator=gen) * 5).round().long()
    probs = torch.softmax(torch.randn(lanes, length, 40, generator=gen), -1)
    categorical = torch.randint(0, 40, (lanes, length), generator=gen)

    def encode():
        coder = RansCoder(lanes)
        coder.push_probs(categorical, probs)
        coder.push_logistic(symbols, mu, log_scale, logit_pi, lower=-200.0, upper=200.0)
        coder.push_logistic(symbols, mu[..., 0], log_scale[..., 0])
        return coder.to_bytes()

    streams = _on_every_path(encode)
    assert len(set(streams.values())) == 1, "the paths wrote different streams"

    def decode():
        coder = RansCoder.from_bytes(streams["baseline"])
        single = coder.pop_logistic(mu[..., 0], log_scale[..., 0])
        mixture = coder.pop_logistic(mu, log_scale, logit_pi, lower=-200.0, upper=200.0)
        return single, mixture, coder.pop_probs(probs)

    for path, (single, mixture, popped) in _on_every_path(decode).items():
        assert torch.equal(single, symbols) and torch.equal(mixture, symbols), path
        assert torch.equal(popped, categorical), path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ar_conv_inverse_gives_the_same_bits_on_every_path(dtype):
    gen = torch.Generator().manual_seed(5)
    y = torch.randn(5, 7, 9, 11, generator=gen, dtype=dtype)
    weight = make_weight(7, 3, gen, dtype)
    bias = torch.randn(7, generator=gen, dtype=dtype)
    results = _on_every_path(lambda: ops.ar_conv2d_inverse(y, weight, bias))
    assert bool(results["baseline"].isfinite().all())
    for path, x in results.items():
        assert torch.equal(x, results["baseline"]), path


# ---- the hex direct kernel ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("B", "I", "O", "H", "W", "R"), [(2, 16, 16, 32, 64, 1), (3, 5, 13, 9, 23, 1), (2, 4, 6, 11, 7, 2)]
)
def test_hex_conv2d_and_its_weight_gradient_agree_on_every_path(B, I, O, H, W, R):  # noqa: E741
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(B, I, H, W, generator=gen)
    weight = torch.randn(O, I, 2 * R + 1, 2 * R + 1, generator=gen) / (3 * R * R + 3 * R + 1) ** 0.5
    bias = torch.randn(O, generator=gen)
    exact = hex_ref.hex_conv2d(x.double(), weight.double(), bias.double())
    grad = torch.randn(B, O, H, W, generator=gen)
    w64 = weight.double().requires_grad_()
    (exact_dw,) = torch.autograd.grad((hex_ref.hex_conv2d(x.double(), w64) * grad).sum(), [w64])
    k = 2 * R + 1
    results = _on_every_path(
        lambda: (ops.hex_conv2d(x, weight, bias), torch.ops.flowkernels.hex_conv2d_weight_backward(grad, x, k))
    )
    for path, (y, dw) in results.items():
        torch.testing.assert_close(y.double(), exact, rtol=0, atol=2e-5 * max(1.0, I**0.5), msg=path)
        torch.testing.assert_close(dw.double(), exact_dw, rtol=0, atol=2e-5 * (B * H * W) ** 0.5, msg=path)


def test_the_environment_variable_makes_the_process_act_as_on_an_older_cpu():
    code = "from flowkernels import cpu; cpu.set_isa('avx512'); print(cpu.isa(), cpu.available_isas()[-1])"
    for path in CPU_ISAS:
        done = _run(code, FLOWKERNELS_CPU_ISA=path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [path, path]
    assert flowkernels.cpu.isa() == cpu.supported_isa()
