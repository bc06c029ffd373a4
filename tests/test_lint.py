"""Ruff over the package, the tests and the benchmarks: lint rules and formatting."""

from __future__ import annotations

import subprocess
import sys

from pooling.data import PROJECT_ROOT

TARGETS = ["src", "tests", "benchmarks"]


def test_ruff_check_passes():
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *TARGETS], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_format_is_clean():
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *TARGETS], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
