"""The README as a user meets it: its results tables agree with the committed results files, and every
python block runs as written."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# A python block may be preceded by `<!-- test with: A -> B; C -> D -->`: the test runs it with those
# replacements (smaller budgets), and the README shows the reader what changes.
BLOCK = re.compile(r"(?:<!-- test with: (?P<with>[^\n]*?) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def _renderer():
    spec = importlib.util.spec_from_file_location("render_readme", ROOT / "benchmarks" / "render_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_blocks() -> list[tuple[str, str]]:
    """(id, code) of every python block, with its `test with` replacements applied."""
    text = README.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        code = match["code"]
        for pair in filter(None, (match["with"] or "").split(";")):
            old, new = (part.strip() for part in pair.split("->"))
            if old not in code:
                raise AssertionError(f"`test with: {old} -> {new}` names text that is not in its block")
            code = code.replace(old, new)
        heading = [line for line in text[: match.start()].splitlines() if line.startswith("## ")][-1]
        line = text[: match.start()].count("\n") + 1
        blocks.append((f"line{line}-{heading[3:].split(':')[0].split()[0].lower()}", code))
    return blocks


def test_readme_tables_agree_with_their_results_files(capsys):
    render = _renderer()
    assert render.main(["--check"]) == 0, capsys.readouterr().out[-4000:]
    text = README.read_text()
    blocks = render.BLOCK.findall(text)
    assert len(blocks) >= 15  # every results table of the README is a generated block
    # no hand-typed verdicts outside the generated blocks
    outside = render.BLOCK.sub("", text)
    assert not re.search(r"\|[^|\n]*: (?:met|not met)[^|\n]*\|", outside), "a target verdict typed by hand"


def test_render_check_fails_on_a_changed_number(tmp_path):
    render = _renderer()
    text = README.read_text()
    rendered = render.render(text)
    # change one digit inside a generated table: --check must notice
    match = re.search(r"(<!-- results: glow .*?\n.*?\| )(\d)", rendered, re.DOTALL)
    assert match
    digit = match.group(2)
    tampered = rendered[: match.start(2)] + str((int(digit) + 1) % 10) + rendered[match.end(2) :]
    path = tmp_path / "README.md"
    path.write_text(tampered)
    assert render.main(["--check", "--readme", str(path)]) == 1
    path.write_text(rendered)
    assert render.main(["--check", "--readme", str(path)]) == 0


def test_render_refuses_a_results_file_without_its_machine(tmp_path):
    render = _renderer()
    (tmp_path / "glow_results.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="records no machine"):
        render.render_block("glow", ["glow_results.json"], tmp_path)
    with pytest.raises(ValueError, match="missing"):
        render.render_block("glow", ["nothing.json"], tmp_path)


BLOCKS = python_blocks()


def test_the_readme_has_its_python_blocks():
    assert len(BLOCKS) >= 9


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_readme_python_block_runs_as_written(code, tmp_path):
    # A fresh interpreter in an empty folder: a block may use only what it imports and creates itself.
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"the block failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
