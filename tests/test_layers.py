"""Imports run one way (pyproject's import-linter contract), checked where CI runs the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300)


def test_the_layer_contract_is_kept():
    done = _lint(ROOT / "src")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_import_against_the_layers_breaks_the_contract(tmp_path):
    """The contract can fail: the model layer reaching up into the coder is reported."""
    shutil.copytree(ROOT / "src" / "compressnet", tmp_path / "compressnet",
                    ignore=shutil.ignore_patterns("weights", "__pycache__", "static"))
    io = tmp_path / "compressnet" / "models" / "io.py"
    io.write_text(io.read_text() + "\nfrom compressnet.entropy import coder  # noqa: E402,F401\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "compressnet.models.io -> compressnet.entropy.coder" in done.stdout
