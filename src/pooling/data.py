"""Data: the simulated sites of Part I and the verified radon survey of Part II."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from pooling import checks
from pooling.files import atomic_write, debugging, move_aside, notify

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RAW_DIR = PROJECT_ROOT / "data" / "raw"

# Checksums of the ARM copies documented in data/README.md; anything else is refused.
RADON_FILES = {
    "srrs2.dat": "11d037030ed4af5a5eb99a443163b469b10147864e61b3902b34445435205c39",
    "cty.dat": "5aa648547b9b565d77b9f55defd2f292520441cc6df7a27206802006dade7b63",
}
RADON_URL = "https://raw.githubusercontent.com/stan-dev/example-models/master/ARM/Ch.12/"
MIRROR_VARIABLE = "RADON_MIRROR"
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download is abandoned


# How log radon is derived from the measured activity (pCi/L). The book adds 0.1 to every reading, as PyMC's primer
# and posteriordb do; Gelman and Hill (ARM ch. 12) replace only readings of 0 by 0.1. One switch, one pipeline.
LOG_RADON_TRANSFORMS = {
    "book": lambda activity: np.log(activity + 0.1),
    "gelman_hill": lambda activity: np.log(activity.where(activity != 0, 0.1)),
}


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
    try:
        slopes = np.asarray(slopes, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"slopes must be a list of numbers, got {slopes!r}") from error
    if slopes.ndim != 1 or slopes.size == 0:
        raise ValueError(f"slopes must be a non-empty list of numbers, got {slopes!r}")
    if not np.all(np.isfinite(slopes)):
        raise ValueError(f"slopes must be finite, got {slopes.tolist()}")
    points_per_site = checks.whole_number("points_per_site", points_per_site)
    if slopes.size * points_per_site > checks.MAX_ROWS:
        raise ValueError(
            f"{slopes.size} sites of points_per_site={points_per_site:,} points exceed {checks.MAX_ROWS:,} points"
        )
    x_sd, noise_sd = checks.number("x_sd", x_sd, positive=True), checks.number("noise_sd", noise_sd, positive=True)
    seed = checks.whole_number("seed", seed, minimum=0)
    if site_names is None:
        site_names = [f"site {number}" for number in range(1, slopes.size + 1)]
    if isinstance(site_names, str) or not hasattr(site_names, "__len__"):
        raise TypeError(f"site_names must be a list of names, got {site_names!r}")
    if len(site_names) != slopes.size:
        raise ValueError(f"site_names has {len(site_names)} names for {slopes.size} slopes")
    if not all(isinstance(name, str) and name.strip() for name in site_names):
        raise TypeError(f"site_names must be non-empty strings, got {list(site_names)!r}")
    if len(set(site_names)) != len(site_names):
        raise ValueError(f"site_names must be distinct, got {list(site_names)!r}")

    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, x_sd, size=(slopes.size, points_per_site))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below, by name
        y = slopes[:, None] * x + rng.normal(0.0, noise_sd, size=x.shape)
    if not np.isfinite(y).all():
        raise ValueError(f"slopes {slopes.tolist()}, x_sd={x_sd} and noise_sd={noise_sd} are too large: y overflows")
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
            f"{name} from {source} is corrupt or not the documented copy: SHA-256 {actual} but expected {expected}"
        )


def _copy_verified(name: str, source: str, target: Path) -> None:
    """Copy (a path) or download (a URL) `source` into `target`, only if its checksum is the documented one."""

    def fetch(partial: Path) -> None:
        if "://" in source:
            try:  # with a timeout: a blocked network must fail with this message, not hang the build
                with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT) as response, open(partial, "wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as error:
                raise DataError(f"{name} could not be downloaded from {source} ({error})") from error
        elif not Path(source).is_file():
            raise DataError(f"{name} is missing from the mirror folder {Path(source).parent} (no file {source})")
        else:
            shutil.copyfile(source, partial)
        _verify(partial, name, source)

    try:
        atomic_write(target, fetch)
    except OSError as error:
        raise DataError(f"{name} from {source} could not be saved: {error}") from error


def fetch_radon_files(raw_dir: Path = RAW_DIR, mirror: str | None = None, url: str | None = RADON_URL) -> dict:
    """Make sure the verified survey files are in `raw_dir`, copying or downloading them if needed.

    Sources, in order: files already in `raw_dir` (re-verified every time), the folder named by `mirror` or the
    RADON_MIRROR environment variable, then `url` (None: no download). A local copy that fails its checksum, or a
    folder in its place, is moved aside (renamed `NAME.bad-DATE`) and fetched again. A file is moved into place
    only after its checksum is verified, so a failed fetch leaves nothing half-written; files are readable by all.
    """
    raw_dir = Path(raw_dir)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_VARIABLE)
    paths = {}
    for name in RADON_FILES:
        target = raw_dir / name
        if target.is_file() and sha256(target) == RADON_FILES[name]:
            paths[name] = target
            continue
        if target.exists() or target.is_symlink():
            problem = "a folder, not a file" if target.is_dir() else "corrupt or not the documented copy"
            aside = move_aside(target, f"bad-{time.strftime('%Y%m%d-%H%M%S')}")  # kept, never overwritten
            notify(f"{target} was {problem}: moved it to {aside.name} and fetching a verified copy.")
        raw_dir.mkdir(parents=True, exist_ok=True)
        sources = ([str(Path(mirror) / name)] if mirror else []) + ([url + name] if url else [])
        failures = []
        for source in sources:
            try:
                _copy_verified(name, source, target)
                break
            except DataError as error:
                failures.append(str(error))
                if source != sources[-1]:
                    notify(f"{error}; trying {sources[sources.index(source) + 1]} instead.")
        else:
            tried = " ".join(f"({number}) {failure}." for number, failure in enumerate(failures, 1)) or (
                "No source: RADON_MIRROR is not set and downloads are off."
            )
            raise DataError(
                f"{name} is not in {raw_dir} and could not be fetched. {tried} To fix it, put the ARM copies of "
                f"srrs2.dat and cty.dat (see data/README.md) in a folder and run "
                f"`RADON_MIRROR=/that/folder python -m pooling.data`, or run `python -m pooling.data` with network "
                "access to download them."
            )
        paths[name] = target
    return paths


def _raw_folder(raw_dir) -> Path:
    """The folder a loader reads the survey files from: the default data/raw/ is made on first use, any other must
    exist, so a typo in a path is refused rather than filled with a new copy of the survey."""
    if isinstance(raw_dir, str | Path) and Path(raw_dir).resolve() == RAW_DIR:
        return RAW_DIR
    fix = "create it and put srrs2.dat and cty.dat in it (data/README.md), or leave raw_dir out to use data/raw/"
    return checks.folder("raw_dir", raw_dir, fix)


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


def _log_radon_transform(log_radon: str):
    if log_radon not in LOG_RADON_TRANSFORMS:
        raise ValueError(f"log_radon must be one of {list(LOG_RADON_TRANSFORMS)}, got {log_radon!r}")
    return LOG_RADON_TRANSFORMS[log_radon]


def county_uranium(raw_dir: Path = RAW_DIR) -> pd.DataFrame:
    """Every county of cty.dat, measured or not: fips, state, county_name, uranium (ppm) and rows (how many rows of
    cty.dat list it), one row per FIPS.

    cty.dat lists some counties on several rows, each with the same name and uranium (in Minnesota, Carver and Lac
    qui Parle, twice each): one row is kept. A FIPS code listed with different names or uranium is refused.
    """
    raw_dir = _raw_folder(raw_dir)
    counties = _read_table(fetch_radon_files(raw_dir)["cty.dat"], ["stfips", "ctfips", "st", "cty", "Uppm"])
    table = pd.DataFrame(
        {
            "fips": (_numeric(counties, "stfips", "cty.dat") * 1000 + _numeric(counties, "ctfips", "cty.dat")).astype(
                int
            ),
            "state": counties["st"],
            "county_name": counties["cty"],
            "uranium": _numeric(counties, "Uppm", "cty.dat"),
        }
    )
    conflicting = table.drop_duplicates().duplicated("fips")
    if conflicting.any():
        fips = int(table.loc[conflicting.idxmax(), "fips"])
        raise DataError(f"cty.dat lists FIPS code {fips} twice with different names or uranium: which is right?")
    return table.assign(rows=table.groupby("fips")["fips"].transform("size")).drop_duplicates("fips")


# The two components of srrs2.dat. Its `state` column names the survey a record comes from: a state's own survey
# (`state` equals `state2`, the home's state) or "R5", the EPA Region 5 sample of homes on tribal lands, whose
# `state2` (MI, MN or WI) is the state the home lies in and whose county field names the reservation.
COMPONENTS = ("state survey", "tribal lands")
TRIBAL_SURVEY_CODE = "R5"
# What a record's FIPS county code is: a county of its state listed in cty.dat, "county unknown" (county code 999),
# or a code that is neither (not a county of that state).
COUNTY_CODES = ("county", "county unknown", "not a county")
UNKNOWN_COUNTY = 999


def _components(homes: pd.DataFrame) -> pd.Series:
    """Each record's survey component, from srrs2.dat's `state` and `state2`; any other pairing is refused."""
    tribal = homes["state"] == TRIBAL_SURVEY_CODE
    own = homes["state"] == homes["state2"]
    neither = ~(tribal | own)
    if neither.any():
        row = neither.idxmax()
        raise DataError(
            f"srrs2.dat row {row + 2}: survey {homes.loc[row, 'state']!r} is neither the home's state "
            f"{homes.loc[row, 'state2']!r} nor the Region 5 sample {TRIBAL_SURVEY_CODE!r}"
        )
    return pd.Series(np.where(tribal, COMPONENTS[1], COMPONENTS[0]), index=homes.index)


def radon_survey(raw_dir: Path = RAW_DIR, log_radon: str = "book") -> pd.DataFrame:
    """Every record of srrs2.dat, one row per home, classified and joined with county uranium (Gelman and Hill's
    derivation of the county: FIPS = state code x 1000 + county code).

    Columns: idnum; component ("state survey": a state's own survey; "tribal lands": the EPA Region 5 sample of
    homes on tribal lands, srrs2.dat's `state` "R5"); state (the home's state, srrs2.dat's `state2`); county_code
    ("county": a county of the state listed in cty.dat; "county unknown": county code 999; "not a county": any
    other code); county (``"STATE:NAME"``) and county_name (srrs2.dat's county field: a reservation's name for
    tribal lands); fips; floor (0 basement, 1 first floor, 2 and 3 higher floors, 9 unknown); activity; log_radon;
    weight (srrs2.dat's `adjwt`) and stratum; uranium (ppm) and log_uranium. `log_radon` is log(activity + 0.1)
    ("book") or Gelman and Hill's log(activity, with 0 read as 0.1) ("gelman_hill"); basement (srrs2.dat's own
    answer to "does the home have a basement": "Y", "N", or missing where it is blank) and dupflag (0, 1 or 2, a
    flag the files carry without a codebook; see chapter 6). Every record is a home of its own: an `idnum` that
    appears twice is refused. Codes missing from cty.dat keep a missing uranium; a uranium of 0 keeps a missing
    log_uranium.
    """
    transform = _log_radon_transform(log_radon)  # checked before any file is touched
    raw_dir = _raw_folder(raw_dir)
    paths = fetch_radon_files(raw_dir)
    columns = ["idnum", "state", "state2", "stfips", "cntyfips", "county", "floor", "activity", "adjwt", "stratum"]
    columns += ["basement", "dupflag"]
    homes = _read_table(paths["srrs2.dat"], columns)
    county_code = _numeric(homes, "cntyfips", "srrs2.dat").astype(int)

    table = pd.DataFrame(
        {
            "idnum": _numeric(homes, "idnum", "srrs2.dat").astype(int),
            "component": _components(homes),
            "state": homes["state2"],
            "county_name": homes["county"],
            "fips": (_numeric(homes, "stfips", "srrs2.dat") * 1000 + county_code).astype(int),
            "floor": _numeric(homes, "floor", "srrs2.dat").astype(int),
            "activity": _numeric(homes, "activity", "srrs2.dat"),
            "weight": _numeric(homes, "adjwt", "srrs2.dat"),
            "stratum": _numeric(homes, "stratum", "srrs2.dat").astype(int),
            "basement": homes["basement"].where(homes["basement"] != ""),
            "dupflag": _numeric(homes, "dupflag", "srrs2.dat").astype(int),
        }
    )
    repeated = table["idnum"].duplicated()
    if repeated.any():
        row = int(repeated.idxmax())
        raise DataError(
            f"srrs2.dat row {row + 2}: idnum {table.loc[row, 'idnum']} is a second record of a home already read; "
            "the documented copy has one record per home (see data/README.md)"
        )
    uranium = county_uranium(raw_dir).drop(columns="rows")
    uranium = uranium.rename(columns={"county_name": "fips_county_name", "state": "fips_state"})
    table = table.merge(uranium, on="fips", how="left", validate="many_to_one")
    listed = table["fips_state"] == table["state"]  # a county of the home's own state, as cty.dat lists it
    table["county_code"] = np.select(
        [listed, county_code.to_numpy() == UNKNOWN_COUNTY], COUNTY_CODES[:2], COUNTY_CODES[2]
    )
    table = table.drop(columns="fips_state")
    table["log_radon"] = transform(table["activity"])
    table["log_uranium"] = np.log(table["uranium"].where(table["uranium"] > 0))
    table["county"] = table["state"] + ":" + table["county_name"]
    return table


def radon_minnesota(raw_dir: Path = RAW_DIR, log_radon: str = "book") -> pd.DataFrame:
    """The standard Minnesota radon table: 919 homes in 85 counties, with a county index.

    `log_radon="gelman_hill"` derives log radon as Gelman and Hill do (see `radon_survey`); nothing else changes.

    These are the homes of Minnesota's own survey; the 269 Minnesota homes of the Region 5 tribal-lands sample are
    left out, as in Gelman and Hill and the PyMC primer.
    """
    table = radon_survey(raw_dir, log_radon)
    table = table[(table["component"] == "state survey") & (table["state"] == "MN")].reset_index(drop=True)
    table["county"] = pd.Categorical(table["county_name"], categories=sorted(table["county_name"].unique()))
    table["county_index"] = table["county"].cat.codes
    return table[
        ["idnum", "county", "county_index", "fips", "floor", "activity", "log_radon", "uranium", "log_uranium"]
    ]


def radon_all_states(raw_dir: Path = RAW_DIR, states=None, tribal_lands: bool = False) -> pd.DataFrame:
    """The homes of the seven state surveys (11,843 homes in 439 counties of AZ, IN, MA, MN, MO, ND and PA),
    counties nested in states; with `tribal_lands=True` the 934 homes of the Region 5 tribal-lands sample as well
    (12,777 homes; its MI and WI homes are the only ones of those two states); with `states` (a list of two-letter
    codes such as ["PA"]) the homes of those states and their counties only.

    `floor` is 0 for a basement and 1 for any floor above it (missing when unknown); `floor_code` keeps the survey's
    code. A county is its FIPS code, named from cty.dat. A tribal-lands home keeps its reservation (`reservation`,
    missing for the state surveys) and the FIPS code the sample gave it, which may be "county unknown" (xx999) or
    not a county of the state at all (`county_code`); such codes get a name that says so and no uranium. Counties
    whose uranium is 0 have no log uranium.
    """
    table = radon_survey(raw_dir)
    if not tribal_lands:
        table = table[table["component"] == "state survey"].reset_index(drop=True)
    if states is not None:
        if isinstance(states, str) or not all(isinstance(state, str) for state in states):
            raise TypeError(f"states must be a list of state codes such as ['PA'], got {states!r}")
        known = sorted(table["state"].unique())
        unknown_states = [state for state in states if state not in known]
        if unknown_states or not states:
            raise ValueError(f"states {unknown_states or states!r} are not in the survey: choose from {known}")
        table = table[table["state"].isin(states)].reset_index(drop=True)
    table["reservation"] = table["county_name"].where(table["component"] == "tribal lands")
    code_name = table["county_code"] + " (FIPS " + table["fips"].astype(str) + ")"
    table["county_name"] = table["fips_county_name"].where(table["county_code"] == "county", code_name)
    table["county"] = table["state"] + ":" + table["county_name"]
    table["state"] = pd.Categorical(table["state"], categories=sorted(table["state"].unique()))
    table["county"] = pd.Categorical(table["county"], categories=sorted(table["county"].unique()))
    # The surveys also measured second (2) and third (3) floors and have 9 for "unknown": `floor` becomes "above
    # the basement" (0 or 1), missing where the floor is unknown.
    table["floor_code"] = table["floor"]
    table["floor"] = (table["floor_code"] >= 1).astype(float).where(table["floor_code"] != 9)
    return table.drop(columns="fips_county_name")


def radon_minnesota_both_components(raw_dir: Path = RAW_DIR) -> pd.DataFrame:
    """Every Minnesota home of both collections whose code is a county and whose floor is known, `tribal_lands` 1.0
    for a home of the Region 5 tribal-lands sample and 0.0 for the state survey: the two compared at the same floor
    and in the same county (the model `radon_minnesota_tribal_lands`)."""
    homes = radon_all_states(raw_dir, states=["MN"], tribal_lands=True)
    homes = homes[homes["county_code"] == "county"].dropna(subset=["floor"])
    return homes.assign(
        tribal_lands=(homes["component"] == "tribal lands").astype(float), county=homes["county"].astype(str)
    ).reset_index(drop=True)


def subsample_groups(data: pd.DataFrame, sizes: dict, group: str = "site", seed: int = 0) -> pd.DataFrame:
    """`data` with each group named in `sizes` cut down to that many of its rows, chosen at random (the same rows
    for the same seed), and every other group kept whole: what happens when a group has less data.

    `subsample_groups(radon, {"ST LOUIS": 2}, group="county")` keeps two of St Louis's 116 homes. Rows keep their
    order, and a categorical group keeps its categories, so the models see the same groups.
    """
    checks.frame("data", data, [group])
    if not isinstance(sizes, dict) or not sizes:
        raise TypeError(f"sizes must map group names to numbers of rows, e.g. {{'site 2': 3}}, got {sizes!r}")
    counts = data[group].astype(str).value_counts()
    missing = [name for name in sizes if str(name) not in counts.index]
    if missing:
        raise ValueError(f"data[{group!r}] has no group {missing[0]!r}: its groups include {list(counts.index[:5])}")
    seed = checks.whole_number("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    dropped = []
    for name, size in sizes.items():
        size = checks.whole_number(f"sizes[{name!r}]", size, maximum=int(counts[str(name)]))
        rows = data.index[data[group].astype(str) == str(name)]
        dropped.extend(rng.choice(rows, len(rows) - size, replace=False))
    return data.drop(index=dropped).reset_index(drop=True)


def main(argv=None) -> int:
    """`python -m pooling.data`: fetch and verify the survey files into data/raw/ (from RADON_MIRROR, else the web).

    A failure prints its message alone and exits with status 1; `--debug` or POOLING_DEBUG=1 shows the traceback.
    """
    parser = argparse.ArgumentParser(description="Fetch and verify the radon survey files into data/raw/.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure (or POOLING_DEBUG=1)")
    args = parser.parse_args(argv)
    try:
        fetched = fetch_radon_files()
    except (DataError, OSError) as error:
        if debugging(args.debug):
            raise
        print(f"python -m pooling.data: {error}", file=sys.stderr)
        return 1
    for path in fetched.values():
        print(f"verified {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
