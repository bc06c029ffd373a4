"""Data: the simulated sites of Part I and the verified radon survey of Part II."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RAW_DIR = PROJECT_ROOT / "data" / "raw"

# Checksums of the ARM copies documented in data/README.md; anything else is refused.
RADON_FILES = {
    "srrs2.dat": "11d037030ed4af5a5eb99a443163b469b10147864e61b3902b34445435205c39",
    "cty.dat": "5aa648547b9b565d77b9f55defd2f292520441cc6df7a27206802006dade7b63",
}
RADON_URL = "https://raw.githubusercontent.com/stan-dev/example-models/master/ARM/Ch.12/"
MIRROR_VARIABLE = "RADON_MIRROR"


class DataError(RuntimeError):
    """A data file is missing, corrupt or malformed; the message names the file."""


def simulate_sites(
    slopes=(2.0, -5.0),
    points_per_site: int = 20,
    x_sd: float = 0.5,
    noise_sd: float = 1.0,
    seed: int = 42,
    site_names=None,
) -> pd.DataFrame:
    """Simulate `y = slope[site] * x + noise` with `x ~ N(0, x_sd^2)`, as in the original notebook.

    Returns one row per point with columns `site` (categorical), `x`, `y` and `true_slope`.
    """
    slopes = np.asarray(slopes, dtype=float)
    if slopes.ndim != 1 or slopes.size == 0:
        raise ValueError(f"slopes must be a non-empty list of numbers, got {slopes!r}")
    if not np.all(np.isfinite(slopes)):
        raise ValueError(f"slopes must be finite, got {slopes.tolist()}")
    if isinstance(points_per_site, bool) or int(points_per_site) != points_per_site or points_per_site < 1:
        raise ValueError(f"points_per_site must be a whole number >= 1, got {points_per_site!r}")
    for name, value in (("x_sd", x_sd), ("noise_sd", noise_sd)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if site_names is None:
        site_names = [f"site {number}" for number in range(1, slopes.size + 1)]
    if len(site_names) != slopes.size:
        raise ValueError(f"site_names has {len(site_names)} names for {slopes.size} slopes")

    rng = np.random.default_rng(seed)
    points_per_site = int(points_per_site)
    x = rng.normal(0.0, x_sd, size=(slopes.size, points_per_site))
    y = slopes[:, None] * x + rng.normal(0.0, noise_sd, size=x.shape)
    return pd.DataFrame(
        {
            "site": pd.Categorical(np.repeat(site_names, points_per_site), categories=site_names),
            "x": x.ravel(),
            "y": y.ravel(),
            "true_slope": np.repeat(slopes, points_per_site),
        }
    )


def two_sites() -> pd.DataFrame:
    """The data of Part I: the original notebook's two sites, slopes 2 and -5, 20 points each."""
    return simulate_sites(slopes=(2.0, -5.0), points_per_site=20, x_sd=0.5, noise_sd=1.0, seed=42)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, name: str, source: str) -> None:
    expected = RADON_FILES[name]
    actual = sha256(path)
    if actual != expected:
        raise DataError(
            f"{name} from {source} is corrupt or not the documented copy: "
            f"SHA-256 {actual} but expected {expected}. "
            "Point RADON_MIRROR at a folder holding the original ARM files (see data/README.md)."
        )


def fetch_radon_files(raw_dir: Path = RAW_DIR, mirror: str | None = None) -> dict[str, Path]:
    """Make sure the verified survey files are in `raw_dir`, copying or downloading them if needed.

    Sources, in order: files already in `raw_dir` (re-verified every time), the folder named by
    `mirror` or the RADON_MIRROR environment variable, then the public URL. A file is moved into
    place only after its checksum is verified, so a failed fetch leaves nothing half-written.
    """
    raw_dir = Path(raw_dir)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_VARIABLE)
    paths = {}
    for name in RADON_FILES:
        target = raw_dir / name
        if target.exists():
            _verify(target, name, str(target))
            paths[name] = target
            continue
        raw_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=raw_dir, prefix=f".{name}.", delete=False) as handle:
            partial = Path(handle.name)
        try:
            if mirror:
                source = Path(mirror) / name
                if not source.exists():
                    raise DataError(f"{name} is missing from the mirror folder {Path(mirror).resolve()}")
                shutil.copyfile(source, partial)
                source = str(source)
            else:
                source = RADON_URL + name
                try:
                    urllib.request.urlretrieve(source, partial)
                except OSError as error:
                    raise DataError(
                        f"{name} is not in {raw_dir} and could not be downloaded from {source} ({error}). "
                        "Set RADON_MIRROR to a folder that holds srrs2.dat and cty.dat."
                    ) from error
            _verify(partial, name, source)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        paths[name] = target
    return paths


def _read_table(path: Path, required: list[str]) -> pd.DataFrame:
    table = pd.read_csv(path, skipinitialspace=True, dtype=str)
    table.columns = table.columns.str.strip()
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise DataError(f"{path.name} lacks the columns {missing}")
    return table.apply(lambda column: column.str.strip())


def _numeric(table: pd.DataFrame, column: str, file: str) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = table.loc[values.isna(), column]
    if len(bad):
        raise DataError(f"{file}: column {column!r} has non-numeric value {bad.iloc[0]!r} (row {bad.index[0] + 2})")
    return values


def county_uranium(raw_dir: Path = RAW_DIR) -> pd.DataFrame:
    """Every county of cty.dat, measured or not: fips, state, county_name and uranium (ppm), one row per FIPS."""
    counties = _read_table(fetch_radon_files(raw_dir)["cty.dat"], ["stfips", "ctfips", "st", "cty", "Uppm"])
    return pd.DataFrame(
        {
            "fips": (_numeric(counties, "stfips", "cty.dat") * 1000 + _numeric(counties, "ctfips", "cty.dat")).astype(
                int
            ),
            "state": counties["st"],
            "county_name": counties["cty"],
            "uranium": _numeric(counties, "Uppm", "cty.dat"),
        }
    ).drop_duplicates("fips")  # two Minnesota FIPS codes are listed twice with the same value


def radon_survey(raw_dir: Path = RAW_DIR) -> pd.DataFrame:
    """The whole radon survey, one row per home, joined with county uranium (Gelman and Hill's derivation).

    Columns: survey (srrs2.dat's `state`: a state's own survey, or "R5" for the EPA Region 5 sample),
    state (the home's state, srrs2.dat's `state2`), county (``"STATE:NAME"``), county_name, fips,
    floor (0 basement, 1 first floor), activity, log_radon = log(activity + 0.1), uranium (ppm) and
    log_uranium. Duplicate `idnum` rows are dropped. Counties missing from cty.dat keep a missing
    uranium; a uranium of 0 keeps a missing log_uranium.
    """
    paths = fetch_radon_files(raw_dir)
    columns = ["idnum", "state", "state2", "stfips", "cntyfips", "county", "floor", "activity"]
    homes = _read_table(paths["srrs2.dat"], columns)

    table = pd.DataFrame(
        {
            "idnum": _numeric(homes, "idnum", "srrs2.dat").astype(int),
            "survey": homes["state"],
            "state": homes["state2"],
            "county_name": homes["county"],
            "fips": (_numeric(homes, "stfips", "srrs2.dat") * 1000 + _numeric(homes, "cntyfips", "srrs2.dat")).astype(
                int
            ),
            "floor": _numeric(homes, "floor", "srrs2.dat").astype(int),
            "activity": _numeric(homes, "activity", "srrs2.dat"),
        }
    )
    uranium = county_uranium(raw_dir).rename(columns={"county_name": "fips_county_name"})[
        ["fips", "uranium", "fips_county_name"]
    ]
    table = table.merge(uranium, on="fips", how="left", validate="many_to_one")
    table = table.drop_duplicates("idnum").reset_index(drop=True)
    table["log_radon"] = np.log(table["activity"] + 0.1)
    table["log_uranium"] = np.log(table["uranium"].where(table["uranium"] > 0))
    table["county"] = table["state"] + ":" + table["county_name"]
    return table


def radon_minnesota(raw_dir: Path = RAW_DIR) -> pd.DataFrame:
    """The standard Minnesota radon table: 919 homes in 85 counties, with a county index.

    These are the homes of Minnesota's own survey; the 269 Minnesota homes of the Region 5 sample are
    left out, as in Gelman and Hill and the PyMC primer.
    """
    table = radon_survey(raw_dir)
    table = table[table["survey"] == "MN"].reset_index(drop=True)
    table["county"] = pd.Categorical(table["county_name"], categories=sorted(table["county_name"].unique()))
    table["county_index"] = table["county"].cat.codes
    return table[
        ["idnum", "county", "county_index", "fips", "floor", "activity", "log_radon", "uranium", "log_uranium"]
    ]


def radon_all_states(raw_dir: Path = RAW_DIR) -> pd.DataFrame:
    """Every home of the survey (12,777 homes, 9 states, 472 counties), counties nested in states.

    `floor` is 0 for a basement and 1 for any floor above it (missing when unknown); `floor_code` keeps
    the survey's code. A county is its FIPS code, named from cty.dat: the Region 5 sample writes tribal
    lands in the county field, so one name can span several counties. FIPS codes that cty.dat does not
    list (mostly xx999, county unknown) get a name that says so and no uranium; counties whose uranium
    is 0 have no log uranium.
    """
    table = radon_survey(raw_dir)
    unknown = "not in cty.dat (FIPS " + table["fips"].astype(str) + ")"
    table["county_name"] = table["fips_county_name"].fillna(unknown)
    table["county"] = table["state"] + ":" + table["county_name"]
    table["state"] = pd.Categorical(table["state"], categories=sorted(table["state"].unique()))
    table["county"] = pd.Categorical(table["county"], categories=sorted(table["county"].unique()))
    # Outside Minnesota the survey also measured second (2) and third (3) floors and has 9 for "unknown":
    # `floor` becomes "above the basement" (0 or 1), missing where the floor is unknown.
    table["floor_code"] = table["floor"]
    table["floor"] = (table["floor_code"] >= 1).astype(float).where(table["floor_code"] != 9)
    return table.drop(columns="fips_county_name")
