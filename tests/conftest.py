"""Shared fixtures: the executed chapters (built once per session) and small data sets."""

from __future__ import annotations

import pytest

from pooling.build import PREVIEW_DIR, build_preview


@pytest.fixture(scope="session")
def built_chapters():
    """Execute every chapter once and write the offline preview; tests read the results."""
    return {result.source: result for result in build_preview(out_dir=PREVIEW_DIR)}
