"""Shared fixtures: the executed chapters (built once per session) and small data sets."""

from __future__ import annotations

import pytest

from pooling.build import build_preview
from pooling.render.preview import PREVIEW_DIR


@pytest.fixture(scope="session")
def built_chapters():
    """Execute every chapter once (two at a time: seeded fits give the same results) and write the offline preview."""
    return {result.source: result for result in build_preview(out_dir=PREVIEW_DIR, jobs=2)}
