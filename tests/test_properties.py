"""Property tests: arbitrary arguments give a clean result or a ValueError/TypeError that names the argument.

"Clean" means the documented shape with finite numbers; anything else (a KeyError, a ZeroDivisionError, a NaN
result, a MemoryError) is a failure.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pooling.data import simulate_sites
from pooling.shrinkage import ScalePrior, least_squares_slopes, partial_pooling_posterior, sufficient_statistics

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(st.floats(), max_size=2),
)
ARGUMENTS = ("slopes", "points_per_site", "x_sd", "noise_sd", "seed", "site_names")


def _named(error: Exception, names) -> bool:
    return any(name in str(error) for name in names)


@settings(max_examples=300, deadline=None)
@given(
    slopes=st.one_of(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=4), ANYTHING),
    points_per_site=st.one_of(st.integers(min_value=-2, max_value=50), ANYTHING),
    x_sd=st.one_of(st.floats(min_value=1e-3, max_value=1e3), ANYTHING),
    noise_sd=st.one_of(st.floats(min_value=1e-3, max_value=1e3), ANYTHING),
    seed=st.one_of(st.integers(min_value=0, max_value=2**32), ANYTHING),
    site_names=st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=2), st.none()), max_size=4), ANYTHING),
)
def test_simulator_gives_clean_data_or_a_named_error(slopes, points_per_site, x_sd, noise_sd, seed, site_names):
    arguments = dict(zip(ARGUMENTS, (slopes, points_per_site, x_sd, noise_sd, seed, site_names), strict=True))
    try:
        sites = simulate_sites(**arguments)
    except (ValueError, TypeError) as error:
        assert _named(error, ARGUMENTS), error
        return
    assert list(sites.columns) == ["site", "x", "y", "true_slope"]
    assert len(sites) == len(np.atleast_1d(slopes)) * int(points_per_site)
    assert np.isfinite(sites[["x", "y", "true_slope"]].to_numpy()).all()


def _priors(kinds=("halfcauchy", "halfnormal", "halfstudentt", "fixed")):
    return st.builds(
        lambda kind, scale: ScalePrior(kind, scale, 3.0 if kind == "halfstudentt" else None),
        kind=st.sampled_from(kinds),
        scale=st.floats(min_value=1e-2, max_value=1e2),
    )


PRIORS, SIGMA_PRIORS = _priors(), _priors(("halfcauchy", "halfnormal", "halfstudentt"))


def _priors_or_errors():
    """A valid ScalePrior, or something that is not one."""
    return st.one_of(PRIORS, ANYTHING)


@settings(max_examples=200, deadline=None)
@given(kind=st.one_of(st.sampled_from(["halfcauchy", "halfstudentt", "fixed"]), ANYTHING), scale=ANYTHING, nu=ANYTHING)
def test_scale_prior_is_made_or_refused_by_name(kind, scale, nu):
    try:
        prior = ScalePrior(kind, scale, nu)
    except (ValueError, TypeError) as error:
        assert _named(error, ("kind", "scale", "nu", "degrees of freedom")), error
        return
    values, log_weights = prior.grid(8, 0.1, 10.0)
    assert np.isfinite(values).all() and not np.isnan(log_weights).any()


@st.composite
def data_sets(draw, extreme: bool = True):
    """Small data sets with arbitrary values: zeros and repeats, and unless not `extreme`, huge and tiny numbers,
    NaN, infinities and one-point groups."""
    groups = draw(st.integers(min_value=1, max_value=4))
    sizes = draw(st.lists(st.integers(min_value=1 if extreme else 2, max_value=6), min_size=groups, max_size=groups))
    values = st.one_of(
        st.floats(min_value=-1e3, max_value=1e3),
        st.sampled_from([0.0, 1e-300, 1e300, -1e300, float("nan"), float("inf")] if extreme else [0.0, 1.0]),
    )
    rows = sum(sizes)
    return pd.DataFrame(
        {
            "site": np.repeat([f"g{number}" for number in range(groups)], sizes),
            "x": draw(st.lists(values, min_size=rows, max_size=rows)),
            "y": draw(st.lists(values, min_size=rows, max_size=rows)),
        }
    )


NAMES = ("data", "probability", "grid_points", "mu_prior_sd", "tau_prior", "sigma_prior", "scale", "nu")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(data_sets(), data_sets(extreme=False)),
    probability=st.one_of(st.floats(min_value=0.5, max_value=0.99), ANYTHING),
)
def test_least_squares_gives_finite_intervals_or_a_named_error(data, probability):
    try:
        table = least_squares_slopes(data, probability=probability)
    except (ValueError, TypeError) as error:
        assert _named(error, NAMES), error
        event(f"refused: {type(error).__name__}: {str(error)[:50]}")
        return
    event("clean result")
    assert list(table.index[:-1]) == sorted(data["site"].unique()) and table.index[-1] == "pooled"
    assert np.isfinite(table[["slope", "standard_error", "low", "high"]].to_numpy()).all()
    assert (table["low"] <= table["slope"]).all() and (table["slope"] <= table["high"]).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=data_sets(),
    tau_prior=_priors_or_errors(),
    sigma_prior=SIGMA_PRIORS,
    mu_prior_sd=st.one_of(st.none(), st.floats(min_value=1e-2, max_value=1e2), ANYTHING),
    grid_points=st.one_of(st.integers(min_value=2, max_value=40), ANYTHING),
)
def test_exact_posterior_of_anything_is_finite_or_a_named_error(data, tau_prior, sigma_prior, mu_prior_sd, grid_points):
    _exact_posterior_is_clean_or_refused(data, tau_prior, sigma_prior, mu_prior_sd, grid_points)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=data_sets(extreme=False),
    tau_prior=PRIORS,
    sigma_prior=SIGMA_PRIORS,
    mu_prior_sd=st.one_of(st.none(), st.floats(min_value=1e-2, max_value=1e2)),
    grid_points=st.integers(min_value=2, max_value=40),
)
def test_exact_posterior_of_ordinary_data_is_finite(data, tau_prior, sigma_prior, mu_prior_sd, grid_points):
    _exact_posterior_is_clean_or_refused(data, tau_prior, sigma_prior, mu_prior_sd, grid_points)


def _exact_posterior_is_clean_or_refused(data, tau_prior, sigma_prior, mu_prior_sd, grid_points):
    try:
        posterior = partial_pooling_posterior(data, tau_prior, sigma_prior, mu_prior_sd, grid_points=grid_points)
    except (ValueError, TypeError) as error:
        assert _named(error, NAMES), error
        event(f"refused: {type(error).__name__}: {str(error)[:50]}")
        return
    event("clean result")
    assert posterior.groups == list(sufficient_statistics(data).index)
    summaries = np.concatenate([posterior.mean, posterior.sd, posterior.low, posterior.high, posterior.weight])
    assert np.isfinite(summaries).all() and math.isfinite(posterior.mu_mean)
    assert (posterior.low <= posterior.high).all()
    assert np.isclose(posterior.posterior.scale_mass("tau")[1].sum(), 1.0)


# ---------------------------------------------------------------- fit's checks and the exact engine (issue 24)

FORMULAS = ["y ~ 0 + x", "y ~ 0 + x:site", "y ~ 0 + x + (0 + x | site)", "y ~ 1 + x + (1 | site)"]
TERMS = ["x", "x:site", "x|site", "1|site", "Intercept", "sigma", "z"]


class Sampled(Exception):
    """Raised in place of sampling, carrying the model that would have been sampled."""


@st.composite
def _values(draw, rows: int):
    """A column of numbers, now and then with one NaN, infinity or zero in it, or stored as text, or words."""
    values = draw(st.lists(st.floats(min_value=-100, max_value=100), min_size=rows, max_size=rows))
    fault = draw(st.sampled_from(["none"] * 6 + ["special", "text", "words"]))
    if fault == "special" and rows:
        values[draw(st.integers(0, rows - 1))] = draw(st.sampled_from([0.0, float("nan"), float("inf")]))
    if fault == "text":
        return [str(value) for value in values]
    if fault == "words":
        return draw(st.lists(st.sampled_from(["a", "b"]), min_size=rows, max_size=rows))
    return values


@st.composite
def fit_data(draw):
    """Mostly a data set a model can be fitted to; now and then with too few rows, a column missing or a bad column."""
    rows = draw(st.sampled_from([2, 3, 4, 5, 6, 7, 8, 0]))
    columns = {
        "site": draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), min_size=rows, max_size=rows)),
        "x": draw(_values(rows)),
        "y": draw(_values(rows)),
    }
    dropped = draw(st.sampled_from([None] * 8 + list(columns)))
    return pd.DataFrame({name: values for name, values in columns.items() if name != dropped})


SCALE = st.one_of(st.floats(min_value=-2, max_value=5), st.sampled_from([0, float("nan"), float("inf"), "1", None]))


@st.composite
def bambi_prior(draw, depth: int = 0):
    import bambi as bmb

    kind = draw(st.sampled_from(["Normal", "HalfNormal", "HalfCauchy", "Exponential", "Uniform"]))
    if kind == "Normal":
        sigma = draw(bambi_prior(depth + 1)) if depth == 0 and draw(st.booleans()) else draw(SCALE)
        return bmb.Prior(kind, mu=draw(st.floats(min_value=-3, max_value=3)), sigma=sigma)
    arguments = {"HalfNormal": ["sigma"], "HalfCauchy": ["beta"], "Exponential": ["lam"], "Uniform": ["lower", "upper"]}
    return bmb.Prior(kind, **{name: draw(SCALE) for name in arguments[kind]})


SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "target_accept": st.one_of(st.floats(min_value=-1, max_value=2), ANYTHING),
        "draws": st.one_of(st.integers(min_value=-2, max_value=2000), ANYTHING),
        "chains": st.one_of(st.integers(min_value=0, max_value=4), ANYTHING),
    },
)
# Bambi's own refusals name the term: "The term 'x' is constant!", "The term 'x:site' has only 1 category!",
# "Trying to set hyperprior on 'x'. Can't set a hyperprior on common effects."
FIT_NAMES = ("data", "the prior on '", "priors[", "target_accept", "draws", "chains", "The term '", "hyperprior on '")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    formula=st.sampled_from(FORMULAS),
    data=fit_data(),
    priors=st.dictionaries(st.sampled_from(TERMS), st.one_of(bambi_prior(), SCALE), max_size=3),
    options=SETTINGS,
)
def test_fit_refuses_by_name_or_samples_a_model_with_a_finite_log_density(formula, data, priors, options):
    """Whatever `fit` is given, it refuses by name before sampling, or the model it would sample has a finite log
    density at its initial point (PyMC's own check of every prior and of the data), every prior it was given among
    the model's own, and every setting in range. No KeyError, no Rust panic, no silent default."""
    from unittest import mock

    import pytensor

    from pooling import fitting
    from pooling.models import ModelSpec

    spec = ModelSpec("property", formula, priors)

    def sample(model, sampler, settings, seed):
        raise Sampled(model, settings)

    with mock.patch.object(fitting, "_sample", sample):
        try:
            fitting.fit(spec, data, use_cache=False, **options)
        except (ValueError, TypeError) as error:
            assert _named(error, FIT_NAMES), error
            event(f"refused: {str(error)[:40]}")
            return
        except Sampled as sampled:
            model, chosen = sampled.args
    event("sampled")
    assert 0 < chosen["target_accept"] < 1 and chosen["draws"] >= 1 and chosen["chains"] >= 1
    terms = set(model.components["mu"].terms) | set(model.components)
    assert set(priors) <= terms
    model.build()
    with pytensor.config.change_flags(mode="FAST_COMPILE"):  # compiles in a fraction of the time
        log_density = model.backend.model.point_logps()
    assert all(np.isfinite(value) for value in log_density.values()), log_density


@st.composite
def exact_models(draw):
    """A Bambi model the exact engine may or may not solve, on a tiny data set."""
    import bambi as bmb

    data = simulate_sites(
        slopes=(1.0, -1.0, 0.5), points_per_site=draw(st.integers(2, 6)), seed=draw(st.integers(0, 9))
    )
    data = data.assign(count=np.arange(len(data)) % 4, z=np.arange(len(data)) % 3 == 0)
    formula = draw(
        st.sampled_from(
            [
                "y ~ 1 + x + (1 | site)",
                "y ~ 1 + x + (1 | site)",
                "y ~ 1 + (1 | site)",
                "y ~ 0 + x + (1 | site)",
                "y ~ 1 + x",
                "y ~ 1 + x + (0 + x | site)",
                "y ~ 1 + x + (1 | site) + (1 | count)",
                "y ~ 1 + C(count) + (1 | site)",
                "count ~ 1 + x + (1 | site)",
            ]
        )
    )
    family = draw(st.sampled_from(["gaussian"] * 4 + ["t", "poisson", "negativebinomial"]))
    sigma = draw(st.sampled_from([None, 1.5, "formula"]))
    formula = bmb.Formula(formula, "sigma ~ x") if sigma == "formula" else formula
    priors = {"sigma": sigma} if isinstance(sigma, float) else None
    try:
        return bmb.Model(formula, data, family=family, priors=priors)
    except Exception:  # noqa: BLE001 (a model Bambi itself refuses is not the engine's input)
        return "not a model"


EXACT_NAMES = ("model must", "exact engine", "varying_intercept_posterior", "probability", "grid_points", "passes")
GRID_SETTINGS = {
    "probability": st.floats(min_value=0.5, max_value=0.99),
    "grid_points": st.integers(min_value=2, max_value=12),
    "passes": st.integers(min_value=1, max_value=3),
}


# Wrong values of the kinds a caller passes by mistake: None, bools, text, NaN and infinities, arrays of the wrong
# length or shape, negative numbers. (Magnitudes stay within 1e6: this is about the argument checks, not about
# floating point at 1e150.)
MISTAKES = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(min_value=-1e6, max_value=1e6) | st.sampled_from([float("nan"), float("inf")]),
    st.lists(st.floats(min_value=-1e6, max_value=1e6) | st.just(float("nan")), max_size=4),
    st.lists(st.lists(st.floats(min_value=-10, max_value=10), min_size=1, max_size=3), min_size=1, max_size=4),
)


@st.composite
def one_fault(draw, valid: dict):
    """Valid arguments (each from its strategy in `valid`), then at most one of them replaced by a mistake."""
    arguments = {name: draw(strategy) for name, strategy in valid.items()}
    faulty = draw(st.sampled_from([None, None, None, *valid]))
    if faulty is not None:
        arguments[faulty] = draw(MISTAKES)
    return arguments


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arguments=one_fault({"model": exact_models(), **GRID_SETTINGS}))
def test_varying_intercept_posterior_is_finite_or_a_named_refusal(arguments):
    """A model the engine solves gives finite summaries and intervals of positive width; anything else is refused
    by name (family, link, group terms, predictors, priors, the probability and the grid)."""
    from pooling.shrinkage import varying_intercept_posterior

    try:
        posterior = varying_intercept_posterior(**arguments)
    except (ValueError, TypeError) as error:
        assert _named(error, EXACT_NAMES), error
        event(f"refused: {str(error)[:40]}")
        return
    event("clean result")
    model = arguments["model"]
    assert model.family.name == "gaussian" and model.family.link["mu"].name == "identity"
    assert len(model.components["mu"].group_specific_terms) <= 1
    summary = posterior.summary()
    assert np.isfinite(summary.to_numpy()).all() and (summary["low"] <= summary["high"]).all()
    assert (summary["low"] < summary["high"]).loc[summary["sd"] > 0].all()  # no zero-width interval


ENGINE_NAMES = (
    "y must",
    "fixed_design",
    "fixed_prior_mean",
    "fixed_prior_sd",
    "combinations",
    "names must",
    "sigma_prior",
    "probability",
    "grid_points",
    "passes",
    "data: y's sd",  # y too extreme for the grid, named with its scale
    "data: the exact posterior cannot be computed in floating point",
)


@st.composite
def engine_arguments(draw):
    """A valid call of the general engine (y, X with 1 or 2 columns, Z for 1 to 3 groups), or one with a fault."""
    rows, columns, groups = draw(st.integers(1, 7)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    number = st.floats(min_value=-10, max_value=10)
    matrix = st.lists(st.lists(number, min_size=columns, max_size=columns), min_size=rows, max_size=rows)
    valid = {
        "y": st.lists(number, min_size=rows, max_size=rows),
        "fixed_design": matrix,
        "fixed_prior_mean": st.lists(number, min_size=columns, max_size=columns),
        "fixed_prior_sd": st.lists(st.floats(min_value=0.1, max_value=10), min_size=columns, max_size=columns),
        "combinations": st.just(np.eye(columns + groups)),
        "names": st.just([f"c{index}" for index in range(columns + groups)]),
        "sigma_prior": SIGMA_PRIORS,
        "probability": GRID_SETTINGS["probability"],
    }
    arguments = draw(one_fault(valid))
    arguments["group_design"] = np.eye(groups)[np.arange(rows) % groups]
    return arguments


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arguments=engine_arguments())
def test_general_engine_is_finite_or_a_named_refusal(arguments):
    """Arrays of any shape and content: the engine's result is finite, or it refuses naming the argument."""
    from pooling.shrinkage import gaussian_grid_posterior

    try:
        posterior = gaussian_grid_posterior(
            **arguments, tau_prior=ScalePrior("halfnormal", 1.0), grid_points=6, passes=1
        )
    except (ValueError, TypeError) as error:
        assert _named(error, ENGINE_NAMES), error
        event(f"refused: {str(error)[:40]}")
        return
    event("clean result")
    table = posterior.summary()
    assert np.isfinite(table.to_numpy()).all() and len(table) == len(arguments["names"]) + 2
