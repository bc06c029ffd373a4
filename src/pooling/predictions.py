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

from pooling.fitting import Fit


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


def elpd_difference(first, second) -> tuple[float, float]:
    """elpd_loo of `first` minus that of `second` (two InferenceData with pointwise log-likelihoods of the same
    observations) and the standard error of the difference, from the pointwise differences [@vehtari2017practical]."""
    with warnings.catch_warnings():
        # Pareto-k warnings are reported per model in the LOO table; here only the difference is wanted.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        pointwise = [az.loo(idata, pointwise=True).loo_i.to_numpy() for idata in (first, second)]
    difference = pointwise[0] - pointwise[1]
    return float(difference.sum()), float(np.sqrt(len(difference) * difference.var()))
