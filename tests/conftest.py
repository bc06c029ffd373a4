"""Shared fixtures: the executed chapters (built once per session) and small data sets; Hypothesis's CI profile."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from pooling.build import build_preview
from pooling.render.preview import PREVIEW_DIR

# On CI the property tests draw the same examples every run, so a verdict depends on the commit alone; elsewhere each
# run explores new ones, and what they find becomes a named regression test (tests/test_validation.py).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def built_chapters():
    """Execute every chapter once (two at a time: seeded fits give the same results) and write the offline preview."""
    return {result.source: result for result in build_preview(out_dir=PREVIEW_DIR, jobs=2)}


@pytest.fixture(scope="session")
def catalogue_data():
    """The data each model of the catalogues (`TOY_MODELS`, `RADON_MODELS`) is fitted to in the book, by name."""
    from pooling.data import radon_all_states, radon_minnesota, radon_minnesota_both_components, two_sites
    from pooling.models import with_first_floor_share

    frames = {
        "toy": two_sites(),
        "minnesota": radon_minnesota(),
        "states": radon_all_states().dropna(subset=["floor"]),
        "tribal": radon_minnesota_both_components(),
    }

    def data_for(name: str):
        if name.startswith("toy"):
            return frames["toy"]
        if "tribal" in name:
            return frames["tribal"]
        if name == "radon_contextual":
            return with_first_floor_share(frames["minnesota"])
        return frames["states"] if "states" in name or "three_levels" in name else frames["minnesota"]

    return data_for
