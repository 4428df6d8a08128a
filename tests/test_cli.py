"""The command line's everyday surface: --version, the list of models, help with defaults and examples."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowkernels
from flowkernels import cli, pretrained


def run(capsys, *argv: str) -> tuple[int, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as done:  # argparse's --version and --help exit
        status = done.code
    return status, capsys.readouterr().out


def test_version_names_flowkernels_torch_and_the_cpu_path(capsys):
    status, out = run(capsys, "--version")
    assert status == 0 and out.startswith(f"flowkernels {flowkernels.__version__} (torch ")
    assert f"CPU path {flowkernels.cpu.isa()}" in out


def test_models_lists_every_shipped_model_with_its_fingerprint(capsys):
    from flowkernels.codec.container import model_fingerprint
    from flowkernels.codec.registry import resolve_model

    status, out = run(capsys, "models")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "channels"]
    listed = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(listed) == set(pretrained.available())
    for name, cells in listed.items():
        assert cells[-1] == model_fingerprint(resolve_model(name)).hex()[:16]
    if "digits" in listed:
        assert listed["digits"][1:4] == ["1", "8x8", "integer"]


def test_help_has_examples_no_markup_and_shows_defaults(capsys):
    status, out = run(capsys, "--help")
    assert status == 0 and "Examples:" in out and "flowkernels compress photo.png" in out and "``" not in out
    status, out = run(capsys, "train-idf", "--help")
    flat = " ".join(out.split())
    assert "(default: 60)" in flat and "(default: 0.002)" in flat and "(default: digits)" in flat
    assert "(default: None)" not in flat and "(default: False)" not in flat


@pytest.mark.parametrize(
    "command", ["models", "demo", "bench", "train-glow", "train-idf", "compress", "decompress"]
)
def test_every_subcommand_help_has_examples_and_fits_100_columns(capsys, command):
    status, out = run(capsys, command, "--help")
    assert status == 0 and "examples:\n  flowkernels " in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_the_package_declares_its_type_hints():
    assert (Path(flowkernels.__file__).parent / "py.typed").is_file()


def test_load_idf_accepts_a_shipped_name():
    from flowkernels.models.idf import IDF

    if "digits" not in pretrained.available():
        pytest.skip("the shipped digits model is not in this checkout")
    model = IDF.from_checkpoint("digits")
    assert not model.training and model.config["arithmetic"] == "integer"


def test_train_idf_on_missing_data_or_a_foreign_resume_file_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWKERNELS_DATA_ROOT", str(tmp_path))  # no wallpaper package under this root
    status = cli.main(["train-idf", "--dataset", "photos-dev-gray", "--epochs", "1", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "apt-get install mate-backgrounds" in err
    (tmp_path / "m.pt.resume.pt").write_bytes(b"\x00" * 10)
    status = cli.main(["train-idf", "--epochs", "1", "--no-progress", "--resume", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "cannot resume from" in err
    assert (tmp_path / "m.pt.resume.pt").read_bytes() == b"\x00" * 10  # the file is left as it was
