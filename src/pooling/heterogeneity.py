"""Frequentist checks that a term differs between groups: Cochran's Q on per-group estimates and likelihood-ratio
tests of nested MixedLM fits by maximum likelihood (not REML, whose likelihoods of models with different fixed effects
cannot be compared), or by REML when only a variance component differs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLMParams


def cochran_q(estimates, standard_errors) -> dict[str, float]:
    """Cochran's Q: the inverse-variance weighted squared deviations of the estimates from their weighted mean,
    chi-squared on (groups - 1) degrees of freedom if the groups share one true value."""
    estimates, weights = np.asarray(estimates, float), 1 / np.asarray(standard_errors, float) ** 2
    pooled = float((weights * estimates).sum() / weights.sum())
    q = float((weights * (estimates - pooled) ** 2).sum())
    return {
        "statistic": q,
        "df": len(estimates) - 1,
        "p": float(stats.chi2.sf(q, len(estimates) - 1)),
        "pooled": pooled,
    }


BOTH_OPTIMIZERS = (None, ["nm", "lbfgs"])


def _ml_fit(model, methods=(None,), reml: bool = False, **options):
    """The ML fit of the highest likelihood from `methods` (None: statsmodels' default optimizers; ["nm", "lbfgs"]:
    Nelder-Mead then L-BFGS from where it stopped, as `published.mixedlm_estimates`). On the states' own models the
    default stops short of the maximum (Indiana, Missouri) and Nelder-Mead does not, so they take both; on the
    seven-state models the two agree and Nelder-Mead takes a minute, so they take the default."""
    fits = []
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reports of boundary steps and optimizers handing over; see below
            result = model.fit(reml=reml, **({"method": method} if method else {}), **options)
        if result.converged and np.isfinite(result.llf):
            fits.append(result)
    if not fits:
        raise RuntimeError(f"MixedLM did not converge on {model.formula}")
    return max(fits, key=lambda result: result.llf)


def varying_slope_test(data: pd.DataFrame, slope: str = "floor", group: str = "county") -> dict[str, float]:
    """The prior-free check of a varying slope without correlation: REML fits of `log_radon ~ slope` with random
    intercepts by `group`, with and without an independent random slope. The two share their fixed effects, so
    their REML likelihoods compare. Returns the slope sd's REML estimate ("sd"), the intercept sd, the drop in log
    likelihood when the slope sd is set to 0 ("drop") and the boundary p-value, half the chi-squared(1) tail of
    twice the drop (the null sits on the edge of the parameter space)."""
    groups = data[group].astype(str)
    with_slope = _ml_fit(
        smf.mixedlm(f"log_radon ~ {slope}", data, groups=groups, re_formula="1", vc_formula={slope: f"0 + {slope}"}),
        BOTH_OPTIMIZERS,
        reml=True,
    )
    without = _ml_fit(smf.mixedlm(f"log_radon ~ {slope}", data, groups=groups), BOTH_OPTIMIZERS, reml=True)
    drop = float(with_slope.llf - without.llf)
    return {
        "sd": float(np.sqrt(with_slope.vcomp[0])),
        "intercept_sd": float(np.sqrt(with_slope.cov_re.iloc[0, 0])),
        "drop": drop,
        "p": float(0.5 * stats.chi2.sf(2 * max(drop, 0.0), 1)),
    }


def per_group_floor_effects(data: pd.DataFrame, group: str = "state") -> pd.DataFrame:
    """Each group's floor effect and its standard error from its own varying-intercept MixedLM (ML), counties as
    the random intercepts."""
    rows = {}
    for name, homes in data.groupby(group, observed=True):
        result = _ml_fit(smf.mixedlm("log_radon ~ floor", homes, groups=homes["county"].astype(str)), BOTH_OPTIMIZERS)
        rows[str(name)] = {"floor": result.fe_params["floor"], "SE": result.bse_fe["floor"]}
    return pd.DataFrame(rows).T


def likelihood_ratio_tests(data: pd.DataFrame, group: str = "state") -> pd.DataFrame:
    """Two likelihood-ratio tests of nested MixedLM fits (ML; a level per `group`, counties as random intercepts,
    one residual sd): a floor effect per group against one floor effect, and, with a floor effect per group, a county
    variance per group against one. Each county's random-effects design has one non-zero column, its group's, so
    the covariance of the per-group model is diagonal and fitted as such."""
    data = data.assign(**{group: data[group].astype(str), "county": data["county"].astype(str)})
    per_group = f"0 + C({group}) + C({group}):floor"
    one_floor = _ml_fit(smf.mixedlm(f"log_radon ~ 0 + C({group}) + floor", data, groups=data["county"]))
    floors = _ml_fit(smf.mixedlm(f"log_radon ~ {per_group}", data, groups=data["county"]))
    groups = data[group].nunique()
    model = smf.mixedlm(f"log_radon ~ {per_group}", data, groups=data["county"], re_formula=f"0 + C({group})")
    diagonal = MixedLMParams.from_components(np.ones(model.k_fe), np.eye(groups))
    county_variances = _ml_fit(model, free=diagonal)
    rows = {}
    for name, null, alternative in (
        (f"a floor effect per {group}", one_floor, floors),
        (f"a county sd per {group}", floors, county_variances),
    ):
        statistic = 2 * (alternative.llf - null.llf)
        rows[name] = {"statistic": statistic, "df": groups - 1, "p": float(stats.chi2.sf(statistic, groups - 1))}
    return pd.DataFrame(rows).T
