"""Bad input and left-behind files, second round (issue 24): each fault the issue lists, reproduced, with the message
it now gives. Nothing here samples a model: `fit` checks everything before sampling, and the tests make sampling
fail loudly to prove it."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import arviz as az
import bambi as bmb
import numpy as np
import pandas as pd
import pytest

from pooling import data, files, fitting
from pooling.data import DataError, simulate_sites
from pooling.fitting import DiagnosticsError, fit
from pooling.models import RADON_MODELS, TOY_MODELS, ModelSpec
from pooling.shrinkage import ScalePrior, exact_priors, gaussian_grid_posterior, varying_intercept_posterior

POOLED = TOY_MODELS["toy_pooled"]


class Sampled(Exception):
    """Raised in place of sampling: a check that should have refused the input did not."""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLING_CACHE", str(tmp_path / "cache" / "fits"))
    monkeypatch.delenv("POOLING_CHAPTER", raising=False)
    monkeypatch.delenv(files.NOTICES_VARIABLE, raising=False)
    monkeypatch.setattr(files, "_SWEPT", set())
    return tmp_path / "cache" / "fits"


@pytest.fixture
def no_sampling(cache, monkeypatch):
    def sample(*args, **kwargs):
        raise Sampled

    monkeypatch.setattr(fitting, "_sample", sample)


@pytest.fixture(scope="module")
def sites():
    return simulate_sites()


def _with_nan(frame: pd.DataFrame, column: str, row: int) -> pd.DataFrame:
    values = frame[column].to_numpy(dtype=float, copy=True)
    values[row] = np.nan
    return frame.assign(**{column: values})


# ---------------------------------------------------------------- fit: everything is refused before sampling

NEGATIVE_SCALE = ModelSpec("negative_scale", "y ~ 0 + x", {"x": bmb.Prior("Normal", mu=0, sigma=-1)})
ZERO_HYPERPRIOR = ModelSpec(
    "zero_hyperprior",
    "y ~ 0 + x + (0 + x | site)",
    {"x|site": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=0))},
)
# The pooled model's priors on a formula without `x`: Bambi dropped the prior on `x` and used its default.
NORMAL = bmb.Prior("Normal", mu=0, sigma=1)
PRIOR_OFF_THE_FORMULA = dataclasses.replace(POOLED, name="unpooled_with_pooled_priors", formula="y ~ 0 + x:site")

FIT_FAULTS = {
    "a column the formula uses is missing": (
        lambda sites: (POOLED, sites.drop(columns="x"), {}),
        ValueError,
        "data has no column 'x', which model 'toy_pooled' (y ~ 0 + x) uses; its columns: ['site', 'y', 'true_slope']",
    ),
    "an empty frame": (
        lambda sites: (POOLED, sites.iloc[:0], {}),
        ValueError,
        "data has 0 rows: model 'toy_pooled' (y ~ 0 + x) needs at least 2",
    ),
    "a negative prior scale": (
        lambda sites: (NEGATIVE_SCALE, sites, {}),
        ValueError,
        "the prior on 'x', Normal(mu: 0.0, sigma: -1.0), has sigma=-1.0: a Normal's sigma must be positive",
    ),
    "a fixed sigma whose square underflows (hypothesis found it: the log density was -inf)": (
        lambda sites: (dataclasses.replace(POOLED, priors={"sigma": 1.8e-200}), sites, {}),
        ValueError,
        "the prior on 'sigma' is 1.8e-200: sigma must be from 1e-150 to 1e150",
    ),
    "a zero scale of a hyperprior": (
        lambda sites: (ZERO_HYPERPRIOR, sites, {}),
        ValueError,
        "has sigma.sigma=0.0: a HalfNormal's sigma must be positive",
    ),
    "a prior on a term that is not in the formula": (
        lambda sites: (PRIOR_OFF_THE_FORMULA, sites, {}),
        ValueError,
        "priors['x'] names no term of model 'unpooled_with_pooled_priors' (y ~ 0 + x:site), so Bambi would ignore "
        "it and use its default prior. The model's terms: ['x:site']",
    ),
    "NaN in the response": (
        lambda sites: (POOLED, _with_nan(sites, "y", 3), {}),
        ValueError,
        "data['y'] (the response of model 'toy_pooled' (y ~ 0 + x)) is missing (NaN) in row 3: drop or fill such "
        "rows first, e.g. data.dropna(subset=['y'])",
    ),
    "numbers as text": (
        lambda sites: (POOLED, sites.assign(x=sites["x"].astype(str)), {}),
        TypeError,
        "data['x'] (used by model 'toy_pooled' (y ~ 0 + x)) holds numbers stored as text",
    ),
    "target_accept above 1": (
        lambda sites: (POOLED, sites, {"target_accept": 1.5}),
        ValueError,
        "target_accept must be strictly between 0 and 1 (the sampler's target acceptance rate",
    ),
    "words as the response": (
        lambda sites: (POOLED, sites.assign(y=np.where(sites["y"] > 0, "high", "low")), {}),
        TypeError,
        "data['y'] (the response of model 'toy_pooled' (y ~ 0 + x)) holds categories",
    ),
    "a constant given for a term": (
        lambda sites: (ModelSpec("constant", "y ~ 0 + x", {"x": 1.5}), sites, {}),
        TypeError,
        "the prior on 'x' is 1.5: only a parameter of the gaussian family (sigma) takes a constant",
    ),
    "a group term's prior without a prior on its sd": (
        lambda sites: (ModelSpec("no_hyperprior", "y ~ 0 + x + (0 + x | site)", {"x|site": NORMAL}), sites, {}),
        ValueError,
        "the prior on 'x|site', Normal(mu: 0.0, sigma: 1.0), needs a prior on its sigma",
    ),
    "a predictor constant within a group (Bambi's default prior gets scale inf)": (
        lambda sites: (
            ModelSpec("unpooled", "y ~ 0 + x:site"),
            sites.assign(x=sites["x"].where(sites["site"] == "site 1", 0.0)),
            {},
        ),
        ValueError,
        "sigma: [14.1904     inf]), has sigma[1]=inf: a Normal's sigma must be finite. It is Bambi's default prior",
    ),
    "a constant response (Bambi's default priors get scale 0)": (
        lambda sites: (ModelSpec("defaults", "y ~ 0 + x"), sites.assign(y=1.0), {}),
        ValueError,
        "It is Bambi's default prior for model 'defaults' (y ~ 0 + x), scaled by the data's sd",
    ),
}


@pytest.mark.parametrize("fault", FIT_FAULTS)
def test_fit_refuses_bad_input_by_name_before_sampling(fault, sites, no_sampling):
    make, error, message = FIT_FAULTS[fault]
    spec, frame, settings = make(sites)
    with pytest.raises(error, match=re.escape(message)) as raised:
        fit(spec, frame, **settings)
    assert "94%" not in str(raised.value) and "\n" not in str(raised.value)


def test_numbers_as_text_name_the_cause(sites, no_sampling):
    with pytest.raises(TypeError) as raised:
        fit(POOLED, sites.assign(x=sites["x"].astype(str)))
    assert "categorical with 40 levels" in str(raised.value)
    assert "data['x'] = pd.to_numeric(data['x'])" in str(raised.value)


def test_a_hand_written_model_names_the_column_it_lacks(no_sampling):
    radon = pd.DataFrame({"log_radon": [1.0, 2.0], "floor": [0, 1]})
    spec = RADON_MODELS["radon_correlated_slopes"]
    with pytest.raises(ValueError, match=re.escape("data has no column 'county', which model 'radon_correlated_")):
        fit(spec, radon)


def test_priors_given_to_a_hand_written_model_are_refused_not_ignored(no_sampling):
    spec = dataclasses.replace(RADON_MODELS["radon_three_levels"], priors={"floor": bmb.Prior("Normal", mu=0, sigma=9)})
    with pytest.raises(ValueError, match=re.escape("priors ['floor'] would be ignored: model 'radon_three_levels' (")):
        fit(spec, pd.DataFrame({"log_radon": [1.0, 2.0], "floor": [0, 1]}))


def test_every_model_of_the_book_passes_the_checks_and_reaches_the_sampler(no_sampling, catalogue_data):
    """No false alarm: each catalogue model, on its own data, gets through to sampling."""
    for name, spec in {**TOY_MODELS, **RADON_MODELS}.items():
        with pytest.raises(Sampled):
            fit(spec, catalogue_data(name), use_cache=False)


def _fake_sampler(diverging: int = 0):
    """A sampler that returns 2 short, badly mixed chains of the pooled model's parameters at once."""

    def sample(model, sampler, settings, seed):
        rng = np.random.default_rng(seed)
        drift = np.linspace(0, 3, 30)
        posterior = {"x": rng.normal(size=(2, 30)) + [drift, -drift], "sigma": np.exp(rng.normal(size=(2, 30)))}
        divergent = np.zeros((2, 30), bool)
        divergent.flat[:diverging] = True
        return az.from_dict(posterior=posterior, sample_stats={"diverging": divergent})

    return sample


def test_a_gate_failure_says_what_to_do(sites, cache, monkeypatch):
    monkeypatch.setattr(fitting, "_sample", _fake_sampler(diverging=3))
    with pytest.raises(DiagnosticsError) as raised:
        fit(POOLED, sites, use_cache=False)
    failure, advice = str(raised.value).split("\n")
    assert re.search(r"r_hat [\d.]+ > 1.01 \(worst: x\)", failure) and "3 divergent transitions" in failure
    assert advice.startswith("What to do: r_hat/ESS: more draws and tuning, e.g. fit(..., draws=2000, tune=1000)")
    assert "divergences: a tighter prior, or, with care, target_accept=0.95" in advice  # no group effects here
    grouped = fitting.gate_advice(["2 divergent transitions"], fitting.SAMPLER_SETTINGS)
    assert grouped.startswith("divergences: the other form of the group effects (ModelSpec(noncentered=...))")


# ---------------------------------------------------------------- the exact engines accept what they can solve


@pytest.fixture(scope="module")
def intercepts():
    """Small data for y ~ 1 + x + (1 | site): four sites of ten points."""
    frame = simulate_sites(slopes=(1.0, -1.0, 0.5, 2.0), points_per_site=10, seed=3)
    return frame.assign(y=frame["y"] + frame["site"].cat.codes, count=np.arange(len(frame)) % 5)


def _fast(model, **arguments):
    return varying_intercept_posterior(model, grid_points=12, passes=2, **arguments)


EXACT_FAULTS = {
    "Student's t family": (
        lambda d: bmb.Model("y ~ 1 + x + (1 | site)", d, family="t"),
        ValueError,
        "varying_intercept_posterior solves Gaussian models with the identity link; y ~ 1 + x + (1 | site) has "
        "family 't' (link 'identity')",
    ),
    "a Poisson family": (
        lambda d: bmb.Model("count ~ 1 + x + (1 | site)", d, family="poisson"),
        ValueError,
        "has family 'poisson' (link 'log')",
    ),
    "a Gaussian with a log link": (
        lambda d: bmb.Model("count ~ 1 + x + (1 | site)", d.assign(count=d["count"] + 1), link="log"),
        ValueError,
        "has family 'gaussian' (link 'log')",
    ),
    "not a model": (lambda d: "y ~ 1 + x + (1 | site)", TypeError, "model must be a bambi.Model"),
    "a varying slope": (
        lambda d: bmb.Model("y ~ 1 + x + (0 + x | site)", d),
        ValueError,
        "group term x|site is a varying slope, not (1 | group)",
    ),
    "no intercept": (
        lambda d: bmb.Model("y ~ 0 + x + (1 | site)", d),
        ValueError,
        "has no intercept beside its group term",
    ),
    "an interaction": (
        lambda d: bmb.Model("y ~ 1 + x:count + (1 | site)", d),
        ValueError,
        "the exact engine handles numeric and categorical terms; y ~ 1 + x:count + (1 | site) has ['x:count']",
    ),
    "an offset": (lambda d: bmb.Model("y ~ 1 + x + offset(x) + (1 | site)", d), ValueError, "has ['offset(x)']"),
    "sigma with a formula": (
        lambda d: bmb.Model(bmb.Formula("y ~ 1 + x + (1 | site)", "sigma ~ x"), d),
        ValueError,
        "needs one sigma for every observation; y ~ 1 + x + (1 | site) gives sigma a formula of its own (sigma ~ x)",
    ),
    "a StudentT prior on the group effects": (
        lambda d: bmb.Model(
            "y ~ 1 + x + (1 | site)",
            d,
            priors={"1|site": bmb.Prior("StudentT", nu=3, mu=0, sigma=bmb.Prior("HalfNormal", sigma=1))},
        ),
        ValueError,
        "the exact engine needs a Normal(0, tau) prior on 1|site, which has StudentT(",
    ),
}


@pytest.mark.parametrize("fault", EXACT_FAULTS)
def test_varying_intercept_posterior_refuses_what_it_cannot_solve(fault, intercepts):
    make, error, message = EXACT_FAULTS[fault]
    with pytest.raises(error, match=re.escape(message)):
        _fast(make(intercepts))


def test_a_fit_passed_for_its_model_is_named(intercepts):
    result = type("Fit", (), {"model": bmb.Model("y ~ 1 + x + (1 | site)", intercepts)})()
    message = "model must be a bambi.Model (a spec's .build(data)), got Fit: pass its .model"
    with pytest.raises(TypeError, match=re.escape(message)):
        _fast(result)


@pytest.mark.parametrize("probability", [0, 1e-174, 1, 1.5, -0.1, float("nan"), "0.94"])
def test_the_interval_probability_must_be_between_0_and_1(probability, intercepts):
    """probability=0 returned zero-width intervals."""
    error = TypeError if isinstance(probability, str) else ValueError
    with pytest.raises(error, match="probability must be"):
        _fast(bmb.Model("y ~ 1 + x + (1 | site)", intercepts), probability=probability)


def test_a_fixed_sigma_is_solved_as_fixed(intercepts):
    """Bambi takes a constant for sigma; the engine reads it as a fixed scale instead of failing."""
    model = bmb.Model("y ~ 1 + x + (1 | site)", intercepts, priors={"sigma": 1.5})
    summary = _fast(model).summary()
    assert summary.loc["sigma", "mean"] == pytest.approx(1.5) and summary.loc["sigma", "sd"] == 0
    assert np.isfinite(summary.to_numpy()).all()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda s: bmb.Model("y ~ 0 + x + (0 + x | site)", s, family="t"), ValueError, "exact_priors solves Gaussian"),
        (lambda s: "a model", TypeError, "model must be a bambi.Model"),
        (
            lambda s: bmb.Model(bmb.Formula("y ~ 0 + x + (0 + x | site)", "sigma ~ x"), s),
            ValueError,
            "the exact engine handles a noise sd per site as sigma ~ 0 + site; got terms ['Intercept', 'x']",
        ),
    ],
)
def test_exact_priors_refuses_what_the_slope_engine_cannot_solve(make, error, message, sites):
    with pytest.raises(error, match=re.escape(message)):
        exact_priors(make(sites))


FLOATING_POINT = "data: the exact posterior cannot be computed in floating point"


def _tiny_engine(**changes):
    y = np.array([0.5, 1.5, -0.2, 0.8, 2.0, 1.1])
    arguments = {
        "y": y,
        "fixed_design": np.ones((6, 1)),
        "fixed_prior_mean": [0.0],
        "fixed_prior_sd": [1.0],
        "group_design": np.repeat(np.eye(2), 3, axis=0),
        "sigma_prior": ScalePrior("halfnormal", 1.0),
        "tau_prior": ScalePrior("halfnormal", 1.0),
        "combinations": np.eye(3),
        "names": ["mu", "a", "b"],
        "grid_points": 8,
    }
    return gaussian_grid_posterior(**(arguments | changes))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"probability": 0}, ValueError, "probability must be strictly between 0 and 1"),
        ({"probability": 1.5}, ValueError, "probability must be strictly between 0 and 1"),  # was brentq's error
        ({"passes": 0}, ValueError, "passes must be a whole number >= 1"),  # was an UnboundLocalError
        ({"sigma_prior": "halfnormal"}, TypeError, "sigma_prior must be a ScalePrior, got 'halfnormal'"),
        ({"y": [np.nan, 1, 1, 1, 1, 1]}, ValueError, "y must be finite, got nan (entry 0)"),
        ({"y": []}, ValueError, "y must be a non-empty list of numbers"),
        ({"fixed_prior_sd": [0.0]}, ValueError, "fixed_prior_sd must be positive, got 0.0"),  # was brentq's error
        ({"fixed_prior_sd": [-1.0]}, ValueError, "fixed_prior_sd must be positive, got -1.0"),  # was accepted
        ({"fixed_design": np.ones((5, 1))}, ValueError, "fixed_design must have a row per value of y (6)"),
        ({"fixed_prior_mean": [0.0, 0.0]}, ValueError, "fixed_prior_mean must have one value per column"),
        ({"combinations": np.eye(3)[:, :2]}, ValueError, "combinations must have a column per coefficient"),
        ({"names": ["mu", "a"]}, ValueError, "names must be a list of one name per combination (3)"),  # was accepted
    ],
)
def test_the_general_engine_names_each_bad_argument(changes, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _tiny_engine(**changes)


def test_a_y_that_barely_varies_is_named_not_a_linalg_error():
    """Found by the property test: a Cholesky factor lost to rounding raised numpy's LinAlgError."""
    barely = {"y": [0.0, 4e-33], "fixed_design": [[0.0, 0.0], [1.0, 1.0]], "group_design": np.ones((2, 1))}
    with pytest.raises(ValueError, match=re.escape(FLOATING_POINT)):
        _tiny_engine(**barely, fixed_prior_mean=[0.0, 0.0], fixed_prior_sd=[1.0, 1.0])


# ---------------------------------------------------------------- left behind, overwritten, not noticed


def _killed_writer(target: Path) -> Path:
    """Run a process that is killed in the middle of `atomic_write(target)`; return the temporary file it left."""
    script = (
        "import os, signal; from pathlib import Path; from pooling.files import atomic_write\n"
        "def write(path):\n    path.write_text('half a fi')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write(Path({str(target)!r}), write)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], env=os.environ).returncode == -signal.SIGKILL
    (partial,) = target.parent.glob(f".{target.name}.*.partial")
    return partial


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_what_a_killed_writer_left_in_the_fit_cache_is_swept(sites, cache, monkeypatch, capsys):
    cache.mkdir(parents=True)
    left = _killed_writer(cache / "toy_pooled-0123456789abcdef.nc")
    recent = _killed_writer(cache / "toy_pooled-fedcba9876543210.nc")
    _age(left, 2 * files.STALE_PARTIAL_SECONDS)
    # A write in progress: this process's own temporary file, however old, is never touched.
    running = cache / f".toy_pooled-0000.nc.{os.getpid()}.abcdefgh.partial"
    running.write_text("being written")
    _age(running, 2 * files.STALE_PARTIAL_SECONDS)
    monkeypatch.setattr(fitting, "_sample", _fake_sampler())
    fit(POOLED, sites, demonstrates_failure=True)
    assert not left.exists()
    assert recent.exists() and running.exists()  # too recent to be sure its writer is gone; a live writer
    assert f"Removed 1 temporary file(s) left in {cache} by a killed process." in capsys.readouterr().err
    assert len(list(cache.glob("toy_pooled-*.nc"))) == 1  # the fit itself was cached


def test_partials_without_a_pid_are_swept_by_age_alone(tmp_path):
    old, new = tmp_path / ".ledger.json.k2j4h5g6.partial", tmp_path / ".page.html.a1b2c3d4.partial"
    for partial in (old, new):
        partial.write_text("x")
    _age(old, 2 * files.STALE_PARTIAL_SECONDS)
    assert files.sweep_partials(tmp_path) == [old]
    assert new.exists() and not old.exists()


def test_a_second_unreadable_ledger_does_not_overwrite_the_first(tmp_path, monkeypatch, capsys):
    ledger = tmp_path / "ledger.json"
    for text in ("{first, cut sh", "[second]"):
        ledger.write_text(text)
        assert fitting.read_ledger(ledger) == {}
    assert (tmp_path / "ledger.json.unreadable").read_text() == "{first, cut sh"
    assert (tmp_path / "ledger.json.unreadable-2").read_text() == "[second]"
    assert "(moved to ledger.json.unreadable-2)" in capsys.readouterr().err


@pytest.fixture
def verified_files(tmp_path):
    folder = tmp_path / "verified"
    folder.mkdir()
    for name, path in data.fetch_radon_files().items():
        (folder / name).write_bytes(path.read_bytes())
    return folder


def test_bad_copies_moved_aside_in_the_same_second_are_both_kept(tmp_path, verified_files, monkeypatch):
    monkeypatch.setattr(data.time, "strftime", lambda form: "20240101-120000")  # both in one second
    raw = tmp_path / "raw"
    raw.mkdir()
    for damage in (b"first damage", b"second damage"):
        (raw / "cty.dat").write_bytes(damage)
        data.fetch_radon_files(raw, mirror=str(verified_files), url=None)
    assert (raw / "cty.dat.bad-20240101-120000").read_bytes() == b"first damage"
    assert (raw / "cty.dat.bad-20240101-120000-2").read_bytes() == b"second damage"


def test_a_raw_dir_that_does_not_exist_is_refused_not_created(tmp_path):
    typo = tmp_path / "dtaa" / "raw"
    with pytest.raises(ValueError, match=re.escape(f"raw_dir {typo} does not exist: create it and put srrs2.dat")):
        data.radon_minnesota(raw_dir=typo)
    assert not typo.exists() and not typo.parent.exists()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        data.county_uranium(raw_dir=tmp_path / "a-file")


def test_an_existing_raw_dir_and_the_default_are_used(verified_files, monkeypatch):
    assert len(data.radon_minnesota(raw_dir=verified_files)) == 919
    assert data._raw_folder(str(data.RAW_DIR)) == data.RAW_DIR  # the default is made on first use, not refused


def _failing_fetch(*args, **kwargs):
    raise DataError("srrs2.dat is not in data/raw and could not be fetched. To fix it, run `python -m pooling.data`.")


def test_the_data_command_fails_with_its_message_alone(monkeypatch, capsys):
    monkeypatch.delenv(files.DEBUG_VARIABLE, raising=False)
    monkeypatch.setattr(data, "fetch_radon_files", _failing_fetch)
    assert data.main([]) == 1
    captured = capsys.readouterr()
    assert captured.err == "python -m pooling.data: srrs2.dat is not in data/raw and could not be fetched. To fix " + (
        "it, run `python -m pooling.data`.\n"
    )
    assert captured.out == ""
    with pytest.raises(DataError):
        data.main(["--debug"])
    monkeypatch.setenv(files.DEBUG_VARIABLE, "1")
    with pytest.raises(DataError):
        data.main([])


def test_the_data_command_run_as_users_run_it(tmp_path):
    """`python -m pooling.data` in a copy of the project with no survey files, no mirror and no network: one line on
    standard error, exit status 1; with POOLING_DEBUG=1, the traceback."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(Path(data.__file__).parent, project / "src" / "pooling")
    (tmp_path / "empty").mkdir()
    environment = os.environ | {
        "PYTHONPATH": str(project / "src"),
        "RADON_MIRROR": str(tmp_path / "empty"),
        "https_proxy": "http://127.0.0.1:9",  # a closed port: the download fails at once
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    environment.pop(files.DEBUG_VARIABLE, None)
    command = [sys.executable, "-m", "pooling.data"]
    quiet = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert quiet.returncode == 1, quiet.stderr
    notice, message = quiet.stderr.splitlines()  # the mirror's failure as it happened, then the error
    assert notice.startswith(f"srrs2.dat is missing from the mirror folder {tmp_path / 'empty'}")
    assert message.startswith(f"python -m pooling.data: srrs2.dat is not in {project / 'data' / 'raw'}")
    assert "Traceback" not in quiet.stderr
    loud = subprocess.run(command, env=environment | {files.DEBUG_VARIABLE: "1"}, capture_output=True, text=True)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "DataError" in loud.stderr


def test_a_tiny_sum_of_squares_is_data_not_a_bad_scale():
    """Only a prior's scale must lie from 1e-150 to 1e150; a site whose x are nearly 0 (hypothesis found
    sum_x_squared = 3.8e-274) gets weight 0 on its own data, not a refusal."""
    from pooling.shrinkage import shrinkage_factor

    assert shrinkage_factor(3.8e-274, 1.0, 1.0) == pytest.approx(0.0, abs=1e-270)
