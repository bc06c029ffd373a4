"""Frequentist checks that a term differs between groups: Cochran's Q on per-group estimates and likelihood-ratio
tests of nested random-intercept models by maximum likelihood (not REML, whose likelihoods of models with different
fixed effects cannot be compared), with a residual sd per group; by REML when only a variance component differs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from scipy.optimize import minimize


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


def _county_statistics(data: pd.DataFrame, group: str) -> pd.DataFrame:
    """Each county's homes, sums of y, y², x, xy (x the floor, 0 or 1) and its group: all a random-intercept
    likelihood needs."""
    return (
        data.assign(y2=data["log_radon"] ** 2, xy=data["log_radon"] * data["floor"])
        .groupby("county", observed=True)
        .agg(
            n=("log_radon", "size"),
            sy=("log_radon", "sum"),
            sy2=("y2", "sum"),
            sx=("floor", "sum"),
            sxy=("xy", "sum"),
            group=(group, "first"),
        )
    )


def random_intercept_loglik(counties: pd.DataFrame, level, floor, residual_sd, county_sd) -> float:
    """The exact log-likelihood of the homes under y = level + floor·x + county effect + noise, the county effects
    N(0, county_sd) and the noise N(0, residual_sd), all four given per county (arrays over the rows of
    `counties`, from `_county_statistics`). A county's homes have covariance σ²I + τ²11ᵀ, whose inverse and
    determinant are closed-form (x² = x for a floor of 0 or 1)."""
    n, sy, sy2, sx, sxy = (counties[column].to_numpy(float) for column in ("n", "sy", "sy2", "sx", "sxy"))
    s2, t2 = np.asarray(residual_sd) ** 2, np.asarray(county_sd) ** 2
    squares = sy2 - 2 * level * sy - 2 * floor * sxy + n * level**2 + 2 * level * floor * sx + floor**2 * sx
    total = sy - n * level - floor * sx
    quadratic = (squares - t2 / (s2 + n * t2) * total**2) / s2
    log_determinant = (n - 1) * np.log(s2) + np.log(s2 + n * t2)
    return float(-0.5 * (quadratic + log_determinant + n * np.log(2 * np.pi)).sum())


def _ml_by_group(counties: pd.DataFrame, names, per_group: dict[str, bool], start: pd.DataFrame) -> float:
    """The maximum log-likelihood of a level per group and, per `per_group`, a floor effect, residual sd and county
    sd per group or shared, from `start` (one row per group: level, floor, residual_sd, county_sd). Sds are
    optimised on the log scale; L-BFGS then BFGS from where it stopped, keeping the best."""
    index = pd.Series(range(len(names)), index=names)[counties["group"]].to_numpy()
    columns = ("floor", "residual_sd", "county_sd")
    sizes = [len(names) if per_group[column] else 1 for column in columns]

    def unpack(parameters):
        level = parameters[: len(names)]
        rest, offset = [], len(names)
        for column, size in zip(columns, sizes, strict=True):
            value = parameters[offset : offset + size]
            rest.append(np.exp(value) if column != "floor" else value)
            offset += size
        return [level[index]] + [value[index] if value.size > 1 else np.repeat(value, len(index)) for value in rest]

    initial = [start["level"].to_numpy()]
    for column, size in zip(columns, sizes, strict=True):
        value = start[column].to_numpy() if size > 1 else np.array([start[column].mean()])
        initial.append(np.log(value) if column != "floor" else value)
    best = None
    for method in ("L-BFGS-B", "BFGS"):
        result = minimize(
            lambda parameters: -random_intercept_loglik(counties, *unpack(parameters)),
            np.concatenate(initial) if best is None else best.x,
            method=method,
        )
        if best is None or result.fun < best.fun:
            best = result
    return float(-best.fun)


def likelihood_ratio_tests(
    data: pd.DataFrame, group: str = "state", residual_sd_per_group: bool = True
) -> pd.DataFrame:
    """Two likelihood-ratio tests of nested random-intercept models fitted by ML (a level per `group`, counties as
    random intercepts, and a residual sd per group unless `residual_sd_per_group` is False): a floor effect per group
    against one, and, with a floor effect per group, a county sd per group against one. Groups are independent, so
    the model with everything per group is each group's own MixedLM fit, their log-likelihoods summed; the nested
    models share a term across groups and are maximised jointly on the exact likelihood
    (`random_intercept_loglik`), starting from the separate fits."""
    data = data.assign(**{group: data[group].astype(str), "county": data["county"].astype(str)})
    separate = {}
    for name, homes in data.groupby(group):
        result = _ml_fit(smf.mixedlm("log_radon ~ floor", homes, groups=homes["county"]), BOTH_OPTIMIZERS)
        separate[name] = {
            "level": result.fe_params["Intercept"],
            "floor": result.fe_params["floor"],
            "residual_sd": np.sqrt(result.scale),
            "county_sd": np.sqrt(max(result.cov_re.iloc[0, 0], 1e-6)),
            "llf": result.llf,
        }
    start = pd.DataFrame(separate).T.astype(float)
    names = list(start.index)
    counties = _county_statistics(data, group)

    def fitted(floor, county_sd):
        if floor and county_sd and residual_sd_per_group:
            return float(start["llf"].sum())
        return _ml_by_group(
            counties, names, {"floor": floor, "residual_sd": residual_sd_per_group, "county_sd": county_sd}, start
        )

    one_floor, floors, county_sds = fitted(False, False), fitted(True, False), fitted(True, True)
    rows = {}
    for name, null, alternative in (
        (f"a floor effect per {group}", one_floor, floors),
        (f"a county sd per {group}", floors, county_sds),
    ):
        statistic = 2 * (alternative - null)
        rows[name] = {
            "statistic": statistic,
            "df": len(names) - 1,
            "p": float(stats.chi2.sf(statistic, len(names) - 1)),
            "log-likelihood": alternative,
        }
    return pd.DataFrame(rows).T


def jackknife_by_group(data: pd.DataFrame, formula: str, term: str, group: str = "county") -> dict[str, float]:
    """Least squares' estimate of `term` and its leave-one-group-out jackknife standard error: refitted without
    each group in turn, sqrt((G - 1)/G · Σ (estimate without g - their mean)²). Robust to homes of a group being
    alike, and honest when the estimate rests on a few groups. Groups whose removal leaves `term` unestimable (no
    variation left) are skipped and not counted."""
    estimate = float(smf.ols(formula, data).fit().params[term])
    refitted = []
    for name in data[group].unique():
        rest = data[data[group] != name]
        if rest[term].nunique() < 2:
            continue
        refitted.append(float(smf.ols(formula, rest).fit().params[term]))
    refitted = np.asarray(refitted)
    error = float(np.sqrt((len(refitted) - 1) / len(refitted) * ((refitted - refitted.mean()) ** 2).sum()))
    return {"estimate": estimate, "jackknife SE": error, "groups": len(refitted)}
