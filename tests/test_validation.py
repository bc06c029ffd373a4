"""Bad input and left-behind files, second round (issue 24): each fault the issue lists, reproduced, with the message
it now gives. Nothing here samples a model: `fit` checks everything before sampling, and the tests make sampling
fail loudly to prove it."""

from __future__ import annotations

import dataclasses
import re

import arviz as az
import bambi as bmb
import numpy as np
import pandas as pd
import pytest

from pooling import files, fitting
from pooling.data import simulate_sites
from pooling.fitting import DiagnosticsError, fit
from pooling.models import RADON_MODELS, TOY_MODELS, ModelSpec

POOLED = TOY_MODELS["toy_pooled"]


class Sampled(Exception):
    """Raised in place of sampling: a check that should have refused the input did not."""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLING_CACHE", str(tmp_path / "cache" / "fits"))
    monkeypatch.delenv("POOLING_CHAPTER", raising=False)
    monkeypatch.delenv(files.NOTICES_VARIABLE, raising=False)
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


def test_every_model_of_the_book_passes_the_checks_and_reaches_the_sampler(no_sampling):
    """No false alarm: each catalogue model, on its own data, gets through to sampling."""
    from pooling.data import radon_all_states, radon_minnesota, two_sites

    minnesota, states = radon_minnesota(), radon_all_states().dropna(subset=["floor"])
    for name, spec in {**TOY_MODELS, **RADON_MODELS}.items():
        frame = two_sites() if name.startswith("toy") else minnesota
        if "states" in name or "three_levels" in name:
            frame = states
        with pytest.raises(Sampled):
            fit(spec, frame, use_cache=False)


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
