"""The fit path: cache keys, a cache that refits corrupt entries, reproducible draws and the diagnostics gate."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pooling.chapter import number
from pooling.data import simulate_sites
from pooling.fitting import (
    GATE_COLUMN,
    Diagnostics,
    DiagnosticsError,
    LedgerError,
    cache_key,
    fit,
    fit_ledger,
    forget_chapter,
    formatted_report,
)
from pooling.models import TOY_MODELS, ModelSpec

SMALL = {"draws": 300, "tune": 300, "chains": 2}
POOLED = TOY_MODELS["toy_pooled"]


@pytest.fixture
def sites():
    return simulate_sites(seed=42)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLING_CACHE", str(tmp_path / "fits"))
    return tmp_path / "fits"


def test_cache_key_changes_with_everything_that_changes_the_fit(sites):
    settings = {"draws": 1000, "tune": 1000, "chains": 4}
    base = cache_key(POOLED, sites, "nutpie", settings, 1)
    assert base == cache_key(POOLED, sites.copy(), "nutpie", dict(settings), 1)
    other_data = sites.assign(y=sites["y"] + 1e-9)
    other_prior = ModelSpec(POOLED.name, POOLED.formula, {"x": TOY_MODELS["toy_pooled"].priors["sigma"]})
    variants = [
        cache_key(POOLED, other_data, "nutpie", settings, 1),
        cache_key(TOY_MODELS["toy_unpooled"], sites, "nutpie", settings, 1),
        cache_key(other_prior, sites, "nutpie", settings, 1),
        cache_key(POOLED, sites, "pymc", settings, 1),
        cache_key(POOLED, sites, "nutpie", settings | {"draws": 999}, 1),
        cache_key(POOLED, sites, "nutpie", settings, 2),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


@pytest.mark.slow
def test_cache_returns_the_same_fit_and_refits_a_corrupt_entry(sites, private_cache, capsys):
    first = fit(POOLED, sites, **SMALL, demonstrates_failure=True)
    assert not first.from_cache
    again = fit(POOLED, sites, **SMALL, demonstrates_failure=True)
    assert again.from_cache
    np.testing.assert_array_equal(first.idata.posterior["x"], again.idata.posterior["x"])

    (entry,) = private_cache.glob("*.nc")
    entry.write_bytes(entry.read_bytes()[:200])  # truncated, as by a crash or a full disk
    refitted = fit(POOLED, sites, **SMALL, demonstrates_failure=True)
    assert not refitted.from_cache
    assert "Refitting toy_pooled-" in capsys.readouterr().err
    # Same seed, same draws: the refit reproduces the lost posterior exactly.
    np.testing.assert_array_equal(first.idata.posterior["x"], refitted.idata.posterior["x"])
    assert not list(private_cache.glob(".*partial"))
    with pytest.raises(LedgerError, match="lists no fits from any chapter"):
        fit_ledger()  # fits made outside a chapter are not listed in the appendix


@pytest.mark.slow
def test_ledger_lists_each_chapter_fit_once(sites, private_cache, monkeypatch):
    monkeypatch.setenv("POOLING_CHAPTER", "99-test")
    fit(POOLED, sites, **SMALL, demonstrates_failure=True)
    fit(POOLED, sites, **SMALL, demonstrates_failure=True)
    fit(POOLED, sites, **SMALL, target_accept=0.9, demonstrates_failure=True)
    fit(POOLED, sites.assign(y=-sites["y"]), **SMALL, demonstrates_failure=True)  # the same model, other data
    ledger = fit_ledger()
    assert list(ledger["chapter"]) == ["99-test", "99-test", "99-test"]
    assert sorted(ledger["target accept"]) == [0.8, 0.8, 0.9]
    forget_chapter("99-test")
    with pytest.raises(LedgerError, match="lists no fits from any chapter"):
        fit_ledger()


@pytest.mark.slow
def test_gate_stops_a_fit_that_has_not_converged(sites, private_cache):
    starved = {"draws": 30, "tune": 30, "chains": 2}
    with pytest.raises(DiagnosticsError, match=r"'toy_pooled'.*bulk ESS \d+ < 400"):
        fit(POOLED, sites, **starved)
    shown = fit(POOLED, sites, **starved, demonstrates_failure=True)
    assert shown.from_cache
    assert any("bulk ESS" in problem for problem in shown.diagnostics.problems())
    # The tables' gate column says which lines failed, and an old ledger row without the column gets the same verdict
    row = formatted_report(shown.report())
    assert row[GATE_COLUMN].startswith("fails: ") and "bulk ESS" in row[GATE_COLUMN]
    assert "r_hat ≤ 1.01" in GATE_COLUMN and "bulk ESS ≥ 400" in GATE_COLUMN and "tail ESS ≥ 400" in GATE_COLUMN
    legacy = {column: value for column, value in shown.report().items() if column != GATE_COLUMN}
    without_names = re.sub(r" \(worst: [^)]*\)", "", row[GATE_COLUMN])
    assert formatted_report(legacy)[GATE_COLUMN] == without_names and "bulk ESS" in without_names
    passing = Diagnostics(1.01, 400, 400, 0, "", "", "")
    assert passing.verdict() == "passes"
    assert Diagnostics(1.0101, 400, 400, 0, "", "", "").verdict() == "fails: r_hat 1.010 > 1.01"
    assert Diagnostics(1.0, 400, 399.4, 2, "", "", "").verdict() == "fails: tail ESS 399 < 400; 2 divergent transitions"


@pytest.mark.slow
def test_cache_holds_the_draws_alone_and_the_log_likelihood_is_derived_on_request(sites, private_cache):
    """The cached file keeps posterior, sample stats and observed data only; LOO's pointwise log-likelihood is
    computed from the draws when asked for, cached or not, and equals the normal density computed by hand."""
    import arviz as az
    from scipy import stats

    sampled = fit(POOLED, sites, **SMALL, log_likelihood=True, demonstrates_failure=True)
    (entry,) = private_cache.glob("*.nc")
    stored = az.from_netcdf(entry)
    assert set(stored.groups()) == {"posterior", "sample_stats", "observed_data"}
    assert sorted(stored.posterior.data_vars) == ["sigma", "x"]  # no `sigma_log__`, no per-observation `mu`
    assert "mu" not in sampled.idata.posterior

    loaded = fit(POOLED, sites, **SMALL, log_likelihood=True, demonstrates_failure=True)
    assert loaded.from_cache
    posterior = loaded.idata.posterior
    by_hand = stats.norm.logpdf(
        sites["y"].to_numpy(),
        posterior["x"].to_numpy()[..., None] * sites["x"].to_numpy(),
        posterior["sigma"].to_numpy()[..., None],
    )
    np.testing.assert_allclose(loaded.idata.log_likelihood["y"].to_numpy(), by_hand, rtol=1e-9)
    np.testing.assert_array_equal(sampled.idata.log_likelihood["y"], loaded.idata.log_likelihood["y"])
    assert "log_likelihood" not in fit(POOLED, sites, **SMALL, demonstrates_failure=True).idata.groups()


def test_downloads_narrow_to_float32_only_where_six_significant_digits_survive():
    from pooling.fitting import _compact

    ordinary = np.random.default_rng(1).normal(size=1000) * 1e3
    assert _compact(ordinary).dtype == np.float32
    assert _compact(np.array([1.0, 1e-50])).dtype == np.float64  # 1e-50 underflows in float32
    assert _compact(np.array([1.0, 1e300])).dtype == np.float64  # and 1e300 overflows
    assert _compact(np.array([1, 2])).dtype == np.array([1, 2]).dtype  # integers are left alone


@pytest.mark.slow
def test_a_downloaded_posterior_loads_with_its_fits_means(sites, private_cache, tmp_path, monkeypatch):
    import arviz as az

    from pooling import fitting

    monkeypatch.setattr(fitting, "DOWNLOADS_DIR", tmp_path / "posteriors")
    result = fit(POOLED, sites, log_likelihood=True)  # default settings: passes the gate, so it is published
    failing = fit(POOLED, sites, draws=30, tune=30, chains=2, demonstrates_failure=True)
    table = fitting.diagnostics_table([result, failing])
    assert table.loc[POOLED.name, fitting.DOWNLOAD_COLUMN].iloc[1] == fitting.NOT_PUBLISHED
    (path,) = (tmp_path / "posteriors").glob("*.nc")
    assert f'{path.name}" download>' in table._repr_html_()
    assert f"arviz.from_netcdf(&quot;{path.name}&quot;)" in table._repr_html_()
    download = az.from_netcdf(path)
    assert set(download.groups()) == {"posterior", "sample_stats", "observed_data"}  # no log-likelihood
    assert set(download.posterior.data_vars) == set(result.idata.posterior.data_vars)
    for variable, values in result.idata.posterior.items():
        assert download.posterior[variable].dtype == np.float32
        np.testing.assert_allclose(download.posterior[variable], values, rtol=1e-6)
    longer = fit(POOLED, sites, draws=2000, tune=300, chains=2)  # a download keeps 1000 draws per chain
    stale = fitting.download_path(longer)
    stale.write_text("a download of an older format")
    thinned = az.from_netcdf(fitting.export_posterior(longer))  # rewritten: its format is not today's
    assert thinned.posterior.sizes == {"chain": 2, "draw": 1000} and thinned.sample_stats.sizes["draw"] == 1000
    np.testing.assert_allclose(thinned.posterior["x"], longer.idata.posterior["x"][:, ::2], rtol=1e-6)
    assert thinned.posterior.attrs[fitting.FORMAT_ATTRIBUTE] == fitting.DOWNLOAD_FORMAT
    stale.unlink()
    path.unlink()
    unpublished = fitting.diagnostics_table([result], publish=False)  # an exercise's fit: readers make their own
    assert fitting.DOWNLOAD_COLUMN not in unpublished and "download" not in unpublished._repr_html_()
    assert tuple(result.report()) == fitting.REPORT_COLUMNS  # the appendix orders its columns by it
    expected = {k: v for k, v in fitting.formatted_report(result.report()).items() if k != "model"}
    assert unpublished.loc[POOLED.name].to_dict() == expected
    assert expected["bulk ESS min"] == number(result.diagnostics.ess_bulk_min, 0)  # as the prose rounds it
    assert not list((tmp_path / "posteriors").glob("*.nc"))


def test_e_bfmi_is_the_energy_formula_and_flags_a_sticky_chain():
    """E-BFMI per chain, sum of squared energy changes over the sum of squared deviations from the mean, computed
    here from the energy; a chain whose energy moves as a slow random walk has a low one."""
    import arviz as az

    from pooling.fitting import BFMI_LOW, diagnose

    rng = np.random.default_rng(2)
    independent = rng.normal(size=2000)
    sticky = np.cumsum(rng.normal(scale=0.1, size=2000))
    energy = np.stack([independent, sticky])
    idata = az.from_dict(
        posterior={"x": rng.normal(size=(2, 2000))},
        sample_stats={"energy": energy, "diverging": np.zeros((2, 2000), dtype=bool)},
    )
    by_hand = [np.sum(np.diff(chain) ** 2) / np.sum((chain - chain.mean()) ** 2) for chain in energy]
    diagnostics = diagnose(idata)
    assert diagnostics.bfmi_min == pytest.approx(min(by_hand))
    assert by_hand[0] > 1 > BFMI_LOW > by_hand[1]
    without_energy = az.from_dict(
        posterior={"x": rng.normal(size=(2, 2000))}, sample_stats={"diverging": np.zeros((2, 2000), dtype=bool)}
    )
    assert np.isnan(diagnose(without_energy).bfmi_min)
