"""Published results: Gelman and Hill's Minnesota radon estimates, and their reproduction by REML and by the book."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from pooling.data import radon_minnesota
from pooling.fitting import fit
from pooling.models import RADON_MODELS
from pooling.shrinkage import exact_against_mcmc, varying_intercept_draws, varying_intercept_posterior

# Gelman and Hill (2007), ARM ch. 12-13, lmer (REML) fits of the Minnesota radon data on their log transform.
# Each value is printed to two decimals, so a reproduction is exact when it rounds to the same: within 0.005.
PUBLISHED_ROUNDING = 0.005
PUBLISHED = {
    "varying intercepts": {
        "formula": "y ~ x + (1 | county)",
        "source": "ARM p. 258",
        "estimates": {"intercept": 1.46, "floor": -0.69, "county sd": 0.33, "residual sd": 0.76},
    },
    "county uranium": {
        "formula": "y ~ x + u + (1 | county)",
        "source": "ARM ch. 12.6",
        "estimates": {"intercept": 1.47, "floor": -0.67, "log uranium": 0.72, "county sd": 0.16, "residual sd": 0.76},
    },
    "varying slopes": {
        "formula": "y ~ x + (1 + x | county)",
        "source": "ARM ch. 13.1",
        "estimates": {
            "intercept": 1.46,
            "floor": -0.68,
            "county sd": 0.35,
            "floor slope sd": 0.34,
            "correlation": -0.34,
            "residual sd": 0.75,
        },
    },
}
# The book's model of each published one (pooling.models.RADON_MODELS): the same formula, with priors.
BOOK_MODEL = {
    "varying intercepts": "radon_varying_intercepts",
    "county uranium": "radon_uranium",
    "varying slopes": "radon_correlated_slopes",
}
# Where each published quantity sits in the book's posterior: a variable, and a selection within it.
POSTERIOR_NAMES = {
    "intercept": ("Intercept", {}),
    "floor": ("floor", {}),
    "log uranium": ("log_uranium", {}),
    "county sd": ("1|county_sigma", {}),
    "residual sd": ("sigma", {}),
}
CORRELATED_POSTERIOR_NAMES = {
    "county sd": ("county_sd", {"effect": "intercept"}),
    "floor slope sd": ("county_sd", {"effect": "floor"}),
    "correlation": ("county_correlation", {}),
}


def mixedlm_estimates(data: pd.DataFrame, model: str) -> pd.Series:
    """The REML estimates of one of the published models, by statsmodels' MixedLM, named as in `PUBLISHED`.

    The REML surface is flat along the county sds, and single optimizers stop short of its maximum on one model
    or another (BFGS on the uranium model, Powell on the varying slopes). Nelder-Mead then L-BFGS from where it
    stopped reaches the maximum on all three; a fit that does not converge raises.
    """
    if model not in PUBLISHED:
        raise ValueError(f"model must be one of {list(PUBLISHED)}, got {model!r}")
    formula = "log_radon ~ floor + log_uranium" if model == "county uranium" else "log_radon ~ floor"
    re_formula = "~floor" if model == "varying slopes" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reports of the first optimizer handing over; convergence is checked below
        result = smf.mixedlm(formula, data, groups=data["county"].astype(str), re_formula=re_formula).fit(
            reml=True, method=["nm", "lbfgs"]
        )
    if not result.converged:
        raise RuntimeError(f"MixedLM did not converge on the {model} model")
    covariance = result.cov_re.to_numpy()
    sds = np.sqrt(np.diag(covariance))
    estimates = {"intercept": result.fe_params["Intercept"], "floor": result.fe_params["floor"]}
    if model == "county uranium":
        estimates["log uranium"] = result.fe_params["log_uranium"]
    estimates["county sd"] = sds[0]
    if model == "varying slopes":
        estimates["floor slope sd"] = sds[1]
        estimates["correlation"] = covariance[0, 1] / (sds[0] * sds[1])
    estimates["residual sd"] = np.sqrt(result.scale)
    return pd.Series(estimates, dtype=float)


def posterior_estimates(result, model: str) -> pd.DataFrame:
    """Posterior mean, sd and MCSE of the mean of each published quantity, from a fit of the book's model."""
    names = POSTERIOR_NAMES | (CORRELATED_POSTERIOR_NAMES if model == "varying slopes" else {})
    rows = {}
    for quantity in PUBLISHED[model]["estimates"]:
        variable, selection = names[quantity]
        draws = result.idata.posterior[variable].sel(selection)
        mcse = float(az.mcse(draws.to_dataset(name="value"))["value"])
        rows[quantity] = {"mean": float(draws.mean()), "sd": float(draws.std()), "mcse": mcse}
    return pd.DataFrame(rows).T


EXACT_NAMES = {"intercept": "Intercept", "log uranium": "log_uranium", "county sd": "tau", "residual sd": "sigma"}


def exact_estimates(data: pd.DataFrame, model: str) -> pd.DataFrame:
    """Exact posterior mean and sd of each published quantity of a varying-intercept model (no sampling)."""
    if model == "varying slopes":
        raise ValueError("the exact engine has one group term: the varying-slopes model has no exact posterior")
    summary = varying_intercept_posterior(RADON_MODELS[BOOK_MODEL[model]].build(data)).summary()
    quantities = list(PUBLISHED[model]["estimates"])
    table = summary.loc[[EXACT_NAMES.get(quantity, quantity) for quantity in quantities], ["mean", "sd"]]
    return table.set_axis(quantities)


def book_estimates(data: pd.DataFrame, model: str) -> pd.DataFrame:
    """The book's posterior mean and sd of each published quantity: exact for the two varying-intercept models (no
    sampling error), from the MCMC fit (cached) for the varying-slopes model, which has no exact posterior."""
    if model == "varying slopes":
        return posterior_estimates(fit(RADON_MODELS[BOOK_MODEL[model]], data), model)[["mean", "sd"]]
    return exact_estimates(data, model)


def reference_checks() -> pd.DataFrame:
    """Every Part II model with an exact or published reference, and its largest disagreement with it.

    Units: for the exact posterior, MCMC means and sds in Monte Carlo standard errors; for a published number,
    REML's difference in units of the last printed digit (0.01); for the posterior against REML, posterior sds.
    Fits are the book's (cached), on the book's transform for the exact check; the posterior against REML is
    `book_estimates` on Gelman and Hill's transform.
    """
    book, gelman_hill = radon_minnesota(), radon_minnesota(log_radon="gelman_hill")
    rows = []
    for model, name in BOOK_MODEL.items():
        if model != "varying slopes":
            result = fit(RADON_MODELS[name], book)
            comparison = exact_against_mcmc(
                varying_intercept_posterior(result.model).summary(), varying_intercept_draws(result.model, result.idata)
            )
            worst = comparison[["z_mean", "z_sd"]].abs()
            where = worst.max(axis=1).idxmax()
            rows.append([name, "exact posterior", "MCMC mean or sd − exact, in MCSEs", worst.max().max(), where])
        reml = mixedlm_estimates(gelman_hill, model)
        published = pd.Series(PUBLISHED[model]["estimates"])
        source = f"{PUBLISHED[model]['source']}, REML"
        off = (reml - published).abs() / 0.01
        rows.append([name, source, "REML − published, in units of 0.01", off.max(), off.idxmax()])
        posterior = book_estimates(gelman_hill, model)
        apart = ((posterior["mean"] - reml) / posterior["sd"]).abs()
        rows.append([name, "REML", "posterior mean − REML, in posterior sds", apart.max(), apart.idxmax()])
    return pd.DataFrame(rows, columns=["model", "reference", "measure", "largest disagreement", "where"])
