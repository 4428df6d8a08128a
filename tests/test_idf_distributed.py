"""train_idf under torchrun: two CPU processes (gloo), DistributedDataParallel, one checkpoint, ranks in sync."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from flowkernels.models.idf import IDF

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn"),
    pytest.mark.skipif(importlib.util.find_spec("tqdm") is None, reason="needs tqdm"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed"),
]

# Each rank trains through the same code path as `flowkernels train-idf` (train_idf with distributed
# detected from torchrun's environment) and then writes its own parameters, for the test to compare.
DRIVER = textwrap.dedent(
    """
    import json, os, sys

    import torch

    from flowkernels.models.idf_training import train_idf

    out = sys.argv[1]
    model, history = train_idf(
        "digits", epochs=1, batch_size=32, lr=1e-2, seed=0, progress=False, checkpoint=os.path.join(out, "idf.pt"),
        steps_per_scale=1, hidden=8, max_train=192, warmup_steps=2,
    )
    rank = int(os.environ["RANK"])
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump({"world_size": history.world_size, "test_bpd": history.test_bpd,
                   "initialized": torch.distributed.is_initialized()}, handle)
    """
)


def test_two_process_training_writes_one_checkpoint_and_keeps_ranks_identical(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [*command, str(driver), str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(report["world_size"] == 2 for report in reports)
    assert not any(report["initialized"] for report in reports)  # train_idf destroyed the group it created
    assert reports[0]["test_bpd"] == reports[1]["test_bpd"]  # all-reduced evaluation
    assert reports[0]["test_bpd"][-1][1] < reports[0]["test_bpd"][0][1] - 0.3  # it did learn

    states = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    model = IDF.from_checkpoint(tmp_path / "idf.pt")  # only rank 0 wrote it, and it is the trained model
    # The ranks trained on different halves of each batch, so agreeing means the gradients were averaged;
    # and they did train: the zero-initialised last convs of the couplings have moved.
    zero_initialised = [
        key for key, value in IDF(**IDF.arguments_from_config(model.config)).state_dict().items() if not value.any()
    ]
    assert any(key.endswith(".weight") and key.startswith("blocks.") for key in zero_initialised)
    assert all(states[0][key].any() for key in zero_initialised if key.endswith(".weight"))
    assert all(torch.equal(value, states[0][key]) for key, value in model.state_dict().items())
    meta = torch.load(tmp_path / "idf.pt", weights_only=True)["train"]
    assert meta["world_size"] == 2 and meta["epoch"] == 1
