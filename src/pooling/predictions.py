"""Predictions: for a group the model has not seen (Bambi's resampling and the textbook draw), out of sample (LOO),
and replicated data sets for predictive checks.

Bambi 0.17.2's `predict(..., sample_new_groups=True)` does not draw a new group's effect from N(0, tau): in
`bambi/model_components.py`, `GroupSpecificComponent._construct_u_with_new_groups` picks, for each draw index,
one EXISTING group at random (`rng.choice` over the group's levels, shared by the chains) and gives the new group
that group's posterior draw; its docstring calls this "the variation across existing groups" (brms's
`sample_new_levels="uncertainty"`). The textbook predictive [@gelman2007data, sec. 12.8] draws u ~ N(0, tau) per
posterior draw instead. The two agree when there are many groups whose effects look like draws from N(0, tau), and
differ when there are few: with two groups, resampling can only return one of two effects.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm

from pooling.fitting import Fit, add_log_likelihood


def _stacked(values) -> np.ndarray:
    """Draws x rows (or draws) from a posterior array with chain and draw dimensions."""
    stacked = values.stack(sample=("chain", "draw"))
    return stacked.transpose("sample", ...).to_numpy()


def new_group_predictions(result: Fit, rows: pd.DataFrame, term: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Posterior draws of the mean and of a new observation for `rows`, whose group the model has not seen.

    `term` is the model's one group-specific term for that group, e.g. "1|county" or "x|site". Returns
    {"resampled": {...}, "textbook": {...}}, each with "mean" and "response" arrays of shape draws x rows:
    "resampled" is Bambi's `sample_new_groups=True`; "textbook" adds u ~ N(0, tau) per draw, times the term's
    predictor (1 for an intercept), to the prediction without group effects. Both add N(0, sigma) noise.
    """
    if term not in result.idata.posterior:
        known = list(result.idata.posterior)
        raise ValueError(f"{result.spec.name} has no group term {term!r}; its posterior has {known}")
    rng = np.random.default_rng(seed)
    model, idata = result.model, result.idata
    resampled = model.predict(
        idata, data=rows, kind="response_params", inplace=False, sample_new_groups=True, random_seed=seed
    )
    common = model.predict(idata, data=rows, kind="response_params", inplace=False, include_group_specific=False)
    tau = _stacked(idata.posterior[f"{term}_sigma"])
    expression = term.split("|")[0]
    predictor = np.ones(len(rows)) if expression == "1" else rows[expression].to_numpy(dtype=float)
    means = {
        "resampled": _stacked(resampled.posterior["mu"]),
        "textbook": _with_new_effects(_stacked(common.posterior["mu"]), tau, predictor, np.zeros(len(rows), int), rng),
    }
    sigma = _stacked(idata.posterior["sigma"])[:, None]
    return {
        name: {"mean": mean, "response": mean + sigma * rng.standard_normal(mean.shape)} for name, mean in means.items()
    }


def _with_new_effects(common: np.ndarray, tau: np.ndarray, predictor: np.ndarray, codes: np.ndarray, rng):
    """`common` (draws x rows) plus, per draw, a fresh effect u_g ~ N(0, tau) for each group code g in `codes`,
    times the term's predictor: the textbook draw for groups the model has not seen."""
    effects = rng.normal(0.0, tau[:, None], size=(len(tau), codes.max() + 1))
    return common + effects[:, codes] * predictor


def new_groups_replicates(result: Fit, data: pd.DataFrame, term: str, seed: int) -> np.ndarray:
    """Replicated data sets (draws x rows of `data`) in which every group of `term` (e.g. "1|county") is new:
    per posterior draw, each group gets a fresh effect u_g ~ N(0, tau) instead of its fitted one, plus N(0, sigma)
    noise. What the group-level model says about groups, not what the data said about these ones: a check of the
    group level that the fitted effects cannot pass by copying the data."""
    if term not in result.idata.posterior:
        known = list(result.idata.posterior)
        raise ValueError(f"{result.spec.name} has no group term {term!r}; its posterior has {known}")
    rng = np.random.default_rng(seed)
    idata = result.idata
    common = result.model.predict(idata, data=data, kind="response_params", inplace=False, include_group_specific=False)
    expression, group = (part.strip() for part in term.split("|"))
    predictor = np.ones(len(data)) if expression == "1" else data[expression].to_numpy(dtype=float)
    codes = pd.factorize(data[group])[0]
    mean = _with_new_effects(
        _stacked(common.posterior["mu"]), _stacked(idata.posterior[f"{term}_sigma"]), predictor, codes, rng
    )
    sigma = _stacked(idata.posterior["sigma"])[:, None]
    return mean + sigma * rng.standard_normal(mean.shape)


def _loo(idata) -> az.ELPDData:
    with warnings.catch_warnings():
        # Pareto-k warnings are reported per model in the LOO table; here only the values are wanted.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        return az.loo(idata, pointwise=True)


def pointwise_loo(result: Fit, step: int = 1, start: int = 0) -> az.ELPDData:
    """PSIS-LOO of a fit, pointwise, from every `step`-th draw of each chain, beginning at draw `start`
    [@vehtari2017practical]; thinnings with different starts use disjoint draws, so their difference shows the
    Monte Carlo error of the thinning.

    The pointwise log-likelihood is computed for those draws alone and not kept: for thousands of observations it is
    the largest array of a fit. Every draw of a thinned chain is still a draw from the posterior, so `step` trades
    Monte Carlo precision for time and memory, and a fit that needed long chains for the gate need not pay for them
    twice.
    """
    thinned = result.idata.isel(draw=slice(start, None, step))
    if "log_likelihood" not in thinned.groups():
        add_log_likelihood(result.model, thinned)
    return _loo(thinned)


def loo_summary(loo: az.ELPDData) -> dict:
    """A LOO's elpd, its standard error (the data's, not the draws') and its Pareto k diagnostics
    [@vehtari2017practical]: how many k exceed 0.5 and 0.7 (above 0.7 the importance-sampling estimate of that point
    is unreliable), the largest and where it is."""
    k = loo.pareto_k.to_series()
    return {
        "elpd": float(loo.elpd_loo),
        "SE": float(loo.se),
        "k > 0.5": int((k > 0.5).sum()),
        "k > 0.7": int((k > 0.7).sum()),
        "largest k": float(k.max()),
        "where": k.idxmax(),
    }


def group_log_likelihood(model: pm.Model, idata, group: str = "county"):
    """Each group's log-likelihood in each draw (chain, draw, group), for a hand-written model whose observed
    variables are statistics of each group with the group's effect integrated out (`models.three_levels`): each
    observed variable's dimension names the groups it covers, and its pointwise log-likelihoods are summed by group.
    """
    pointwise = pm.compute_log_likelihood(idata, model=model, extend_inferencedata=False, progressbar=False)
    names = list(model.coords[group])
    total = 0
    for values in pointwise.data_vars.values():
        (dimension,) = [name for name in values.dims if name not in ("chain", "draw")]
        total = total + values.rename({dimension: group}).reindex({group: names}, fill_value=0.0)
    return total


def group_loo(result: Fit, group: str = "county", step: int = 1, start: int = 0) -> az.ELPDData:
    """PSIS-LOO leaving out one whole group at a time (a new county rather than a new home), from every `step`-th
    draw beginning at `start`, with `group_log_likelihood` as the pointwise log-likelihood."""
    thinned = result.idata.isel(draw=slice(start, None, step))
    total = group_log_likelihood(result.model.backend_model, thinned, group)
    return _loo(az.InferenceData(posterior=thinned.posterior, log_likelihood=total.to_dataset(name=f"{group}s")))


def elpd_difference(first, second) -> tuple[float, float]:
    """elpd of `first` minus that of `second` and the standard error of the difference, from the pointwise
    differences [@vehtari2017practical]. Each is, for the same observations in the same order, an InferenceData with
    the pointwise log-likelihood (scored by PSIS-LOO), a `pointwise_loo` or `group_loo` result (to compare one model
    with several without computing its LOO again), or the pointwise elpd itself (an exact leave-one-out or
    leave-one-group-out, `shrinkage.held_out_elpd`)."""

    def pointwise(values):
        if isinstance(values, az.InferenceData):
            values = _loo(values)
        if isinstance(values, az.ELPDData):
            return values.loo_i.to_numpy()
        return np.asarray(values, dtype=float)

    difference = pointwise(first) - pointwise(second)
    return float(difference.sum()), float(np.sqrt(len(difference) * difference.var()))


# The EPA's action level for indoor radon, in pCi/L, and the floor of the book's log radon, log(0 + 0.1): a reading of
# 0 pCi/L, the lowest the survey records.
ACTION_LEVEL = 4.0
HIGH_LEVEL = 20.0  # pCi/L: five times the action level, in the survey's upper tail
LOG_RADON_FLOOR = float(np.log(0.1))


def check_statistics(log_radon, county, group=None, county_covariate=None) -> pd.DataFrame:
    """Statistics of data sets of log radon (one per row of `log_radon`, homes in columns, `county` naming each
    home's county) that the radon models do not fit directly, for predictive checks. With `group` (each home's
    state, say), each statistic is computed within each group, in columns (group, statistic):

    - "share above 4 pCi/L": homes whose reading, exp(log radon) - 0.1, exceeds the EPA's action level (in the
      survey, a level near the median: a check of the middle of the distribution, not of a tail);
    - "skewness": the standardised third moment of log radon, which a normal model puts near 0;
    - "95% quantile" and "highest log radon": the upper tail;
    - "lowest log radon": the lowest home, whose observed value is the floor log 0.1 of the zero readings;
    - "fourth-lowest log radon": in the survey, the lowest reading above 0 (three homes read 0);
    - "homes at or below the floor": homes at or below log 0.1, which data can reach only by reading 0;
    - "share above 20 pCi/L": homes far above the action level, a check of the upper tail;
    - "sd of county means": the spread of the counties' mean log radon, which partial pooling does not fit;
    - with `county_covariate` (a mapping from county to a value, such as log uranium), "county means vs covariate":
      the correlation of the counties' mean log radon with it, which a model without the covariate can reproduce
      only through the fitted county effects.
    """
    values = np.atleast_2d(np.asarray(log_radon, dtype=float))
    codes, counties = pd.factorize(np.asarray(county))
    if values.shape[1] != len(codes):
        raise ValueError(f"log_radon has {values.shape[1]} homes per data set but county names {len(codes)}")
    if group is not None:
        group = np.asarray(group)
        if len(group) != len(codes):
            raise ValueError(f"log_radon has {values.shape[1]} homes per data set but group names {len(group)}")
        county = np.asarray(county)
        return pd.concat(
            {
                name: check_statistics(
                    values[:, group == name], county[group == name], county_covariate=county_covariate
                )
                for name in np.unique(group)
            },
            axis=1,
        )
    membership = np.zeros((len(codes), len(counties)))
    membership[np.arange(len(codes)), codes] = 1.0
    county_means = values @ membership / membership.sum(0)
    standardised = (values - values.mean(1, keepdims=True)) / values.std(1, keepdims=True)
    statistics = pd.DataFrame(
        {
            "share above 4 pCi/L": (values > np.log(ACTION_LEVEL + 0.1)).mean(1),
            "share above 20 pCi/L": (values > np.log(HIGH_LEVEL + 0.1)).mean(1),
            "skewness": (standardised**3).mean(1),
            "95% quantile": np.quantile(values, 0.95, axis=1),
            "highest log radon": values.max(1),
            "lowest log radon": values.min(1),
            "fourth-lowest log radon": np.partition(values, 3, axis=1)[:, 3],
            "homes at or below the floor": (values <= LOG_RADON_FLOOR + 1e-9).sum(1),
            "sd of county means": county_means.std(1, ddof=1),
        }
    )
    if county_covariate is not None:
        covariate = pd.Series(county_covariate).reindex(counties).to_numpy(dtype=float)
        if np.isnan(covariate).any():
            missing = [str(name) for name in counties[np.isnan(covariate)][:3]]
            raise ValueError(f"county_covariate has no value for counties {missing}: give one for every county")
        centred = county_means - county_means.mean(1, keepdims=True)
        covariate = covariate - covariate.mean()
        statistics["county means vs covariate"] = (centred @ covariate) / (
            np.linalg.norm(centred, axis=1) * np.linalg.norm(covariate)
        )
    return statistics


def share_above_action_level(mean, sd) -> float:
    """The share of homes above the EPA's action level that a normal distribution of log radon predicts, each home
    with its own `mean` and the common `sd` (log pCi/L, the book's log(activity + 0.1))."""
    from scipy import stats

    return float(stats.norm.sf((np.log(ACTION_LEVEL + 0.1) - np.asarray(mean, float)) / sd).mean())


def chance_outside(homes, sigma, tau, probability: float = 0.94):
    """The probability that a county's observed mean falls outside the central interval of its replicated means
    when the varying-intercept model is true, given sigma and tau (arguments broadcast).

    With w = n tau^2 / (n tau^2 + sigma^2) the weight of the county's n homes, its replicated mean is its posterior
    level plus new noise, variance (1 + w) sigma^2 / n about the posterior mean, while the observed mean lies
    (1 - w)(ybar - mu) from it, variance (1 - w) sigma^2 / n: the observed mean leaves the interval with probability
    2 (1 - Phi(z sqrt((1 + w) / (1 - w)))), z the interval's normal quantile. The uncertainty of the common
    coefficients is left out (it is small beside a county's), and replicated means are taken as normal.
    """
    from scipy import stats

    from pooling.fitting import central_quantiles

    homes, sigma, tau = (np.asarray(value, dtype=float) for value in (homes, sigma, tau))
    weight = homes * tau**2 / (homes * tau**2 + sigma**2)
    z = stats.norm.ppf(central_quantiles(probability)[1])
    return 2 * stats.norm.sf(z * np.sqrt((1 + weight) / (1 - weight)))


def county_mean_intervals(log_radon, observed, county, probability: float = 0.94) -> pd.DataFrame:
    """Each county's observed mean log radon against the central interval of its mean in replicated data sets
    (`log_radon`: data sets in rows, homes in columns): one row per county, with its homes and whether the observed
    mean lies outside its interval."""
    from pooling.fitting import central_quantiles

    values = np.atleast_2d(np.asarray(log_radon, dtype=float))
    frame = pd.DataFrame(values.T).assign(county=np.asarray(county))
    replicated = frame.groupby("county", sort=False).mean().to_numpy()  # counties x data sets
    table = pd.DataFrame(
        {"observed": pd.Series(np.asarray(observed, float)).groupby(frame["county"].to_numpy(), sort=False).mean()}
    )
    table["homes"] = frame.groupby("county", sort=False).size()
    table["low"], table["high"] = np.quantile(replicated, central_quantiles(probability), axis=1)
    table["replicated mean"] = replicated.mean(1)
    table["outside"] = (table["observed"] < table["low"]) | (table["observed"] > table["high"])
    return table.rename_axis("county")
