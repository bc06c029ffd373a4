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
