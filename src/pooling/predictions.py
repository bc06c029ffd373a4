"""Predictions: for a group the model has not seen (Bambi's resampling and the textbook draw), and out of sample (LOO).

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
        "textbook": _stacked(common.posterior["mu"]) + rng.normal(0.0, tau)[:, None] * predictor,
    }
    sigma = _stacked(idata.posterior["sigma"])[:, None]
    return {
        name: {"mean": mean, "response": mean + sigma * rng.standard_normal(mean.shape)} for name, mean in means.items()
    }


def _loo(idata) -> az.ELPDData:
    with warnings.catch_warnings():
        # Pareto-k warnings are reported per model in the LOO table; here only the values are wanted.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        return az.loo(idata, pointwise=True)


def pointwise_loo(result: Fit, step: int = 1) -> az.ELPDData:
    """PSIS-LOO of a fit, pointwise, from every `step`-th draw of each chain [@vehtari2017practical].

    The pointwise log-likelihood is computed for those draws alone and not kept: for thousands of observations it is
    the largest array of a fit. Every draw of a thinned chain is still a draw from the posterior, so `step` trades
    Monte Carlo precision for time and memory, and a fit that needed long chains for the gate need not pay for them
    twice.
    """
    thinned = result.idata.isel(draw=slice(None, None, step))
    if "log_likelihood" not in thinned.groups():
        add_log_likelihood(result.model, thinned)
    return _loo(thinned)


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


def group_loo(result: Fit, group: str = "county", step: int = 1) -> az.ELPDData:
    """PSIS-LOO leaving out one whole group at a time (a new county rather than a new home), from every `step`-th
    draw, with `group_log_likelihood` as the pointwise log-likelihood."""
    thinned = result.idata.isel(draw=slice(None, None, step))
    total = group_log_likelihood(result.model.backend_model, thinned, group)
    return _loo(az.InferenceData(posterior=thinned.posterior, log_likelihood=total.to_dataset(name=f"{group}s")))


def elpd_difference(first, second) -> tuple[float, float]:
    """elpd_loo of `first` minus that of `second` and the standard error of the difference, from the pointwise
    differences [@vehtari2017practical]. Each is an InferenceData with the pointwise log-likelihood, or the result of
    `pointwise_loo` (to compare one model with several without computing its LOO again), of the same observations."""
    pointwise = [
        (value if isinstance(value, az.ELPDData) else _loo(value)).loo_i.to_numpy() for value in (first, second)
    ]
    difference = pointwise[0] - pointwise[1]
    return float(difference.sum()), float(np.sqrt(len(difference) * difference.var()))
