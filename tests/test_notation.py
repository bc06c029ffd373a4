"""Every model is written as equations whose symbols map onto the names of its posterior, priors read from the model."""

from __future__ import annotations

import dataclasses

import pytest

from pooling.models import RADON_MODELS, TOY_MODELS, Symbol
from pooling.notation import model_markdown, priors, pymc_model, symbol_table

SPECS = {**TOY_MODELS, **RADON_MODELS}


@pytest.mark.parametrize("name", SPECS)
def test_every_parameter_has_a_symbol_and_every_symbol_a_parameter(name, catalogue_data):
    spec = SPECS[name]
    model = spec.build(catalogue_data(name))
    backend = pymc_model(model)
    assert spec.equations, f"{name} has no equations"
    mapped = {entry.name for entry in spec.symbols}
    free = {variable.name for variable in backend.free_RVs}
    assert free <= mapped, f"{name}: parameters without a symbol: {sorted(free - mapped)}"
    table = symbol_table(spec, model)  # raises for a symbol the model does not have
    assert len(table) == len(spec.symbols)
    assert not table["prior in the model"].str.contains("Unknown|_lkj").any(), table


def test_priors_are_read_from_the_model(catalogue_data):
    """The table shows what the built model holds: the spec's own priors, and Bambi's data-scaled defaults."""
    fixed = symbol_table(
        TOY_MODELS["toy_hierarchical_fixed_sd"], TOY_MODELS["toy_hierarchical_fixed_sd"].build(catalogue_data("toy"))
    )
    priors = dict(zip(fixed["symbol"], fixed["prior in the model"], strict=True))
    assert priors["$\\tau$"] == "Uniform(0.499, 0.501)"
    assert priors["$\\mu$"] == "Normal(0, 1)"
    assert priors["$u_j$"] == "Normal(0, $\\tau$)"
    assert priors["$\\sigma$"] == "HalfCauchy(5)"
    lkj = RADON_MODELS["radon_correlated_slopes"]
    row = symbol_table(lkj, lkj.build(catalogue_data("radon"))).set_index("symbol").loc["$L$", "prior in the model"]
    assert row == "LKJ(η = 2) on the correlations, each sd Exponential(rate 2)"  # as varying_slopes writes it


def test_a_symbol_the_model_lacks_is_refused(catalogue_data):
    spec = TOY_MODELS["toy_pooled"]
    wrong = dataclasses.replace(spec, symbols=(*spec.symbols, Symbol("x|site_sigma", "\\tau", "not in this model")))
    with pytest.raises(ValueError, match="x\\|site_sigma"):
        symbol_table(wrong, wrong.build(catalogue_data("toy")))


def test_the_markdown_keeps_a_pipe_in_a_name_inside_its_cell(catalogue_data):
    spec = TOY_MODELS["toy_hierarchical"]
    text = model_markdown(spec, spec.build(catalogue_data("toy")))
    assert "`x\\|site_sigma`" in text and text.count("$$") == 2 * len(spec.equations)
    assert text.startswith(f"`{spec.formula}`")


# The Minnesota models the chapters 6 to 8 and appendix 92 fit by MCMC, with the data and options they fit them with.
CHAPTER_FITS = {
    "radon_pooled": {},
    "radon_county_intercepts": {},
    "radon_varying_intercepts": {},
    "radon_varying_intercepts_centred": {},
    "radon_floor_unpooled": {},
    "radon_floor_zero_mean": {},
    "radon_varying_slopes": {},
    "radon_varying_slopes_centred": {"demonstrates_failure": True},
    "radon_correlated_slopes": {},
    "radon_uncorrelated_slopes": {},
    "radon_uranium": {},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", CHAPTER_FITS)
def test_every_symbol_names_a_variable_of_the_fitted_posterior(name, catalogue_data):
    """What show_model prints for a chapter's fit: every name of its table is in the fit's posterior, except the
    standardised offsets that Bambi samples and drops, which the table marks."""
    from pooling.fitting import fit

    spec = RADON_MODELS[name]
    result = fit(spec, catalogue_data("radon"), **CHAPTER_FITS[name])
    posterior = result.idata.posterior
    table = symbol_table(spec, result.model, posterior)  # raises for a name the posterior lacks
    for entry, shown in zip(spec.symbols, table["name in the posterior"], strict=True):
        assert entry.name in posterior or (entry.name.endswith("_offset") and "not kept" in shown), entry.name


def test_a_name_missing_from_the_posterior_is_refused(catalogue_data):
    import xarray as xr

    spec = RADON_MODELS["radon_pooled"]
    model = spec.build(catalogue_data("radon"))
    posterior = xr.Dataset({"Intercept": ("draw", [0.0]), "sigma": ("draw", [1.0])})  # no floor
    with pytest.raises(ValueError, match="'floor', which is not in the posterior"):
        symbol_table(spec, model, posterior)


def test_priors_reads_each_prior_from_the_built_model(catalogue_data):
    spec = RADON_MODELS["radon_varying_intercepts_weakly_informative"]
    read = priors(spec, spec.build(catalogue_data("radon")))
    # Normal(1, 1) on the intercept at the mean floor, with Normal(0, 1) on the floor: Normal(1, 1.01) at floor 0
    assert read["Intercept"] == "Normal(1, 1.01)" and read["1|county_sigma"] == "HalfNormal(0.5)"
    assert read["sigma"] == "HalfNormal(1)"
    student_t = RADON_MODELS["radon_varying_intercepts_student_t"]
    assert priors(student_t, student_t.build(catalogue_data("radon")))["nu"] == "Gamma(shape 2, rate 0.1)"  # Bambi's


@pytest.mark.parametrize(
    "name, implied",
    [
        ("radon_pooled", "Normal(1.26, 2.42)"),  # the referee's implied prior of complete pooling's alpha
        ("radon_varying_intercepts", "Normal(1.26, 2.42)"),
        ("radon_uranium", "Normal(1.26, 2.64)"),
        ("radon_contextual", "Normal(1.26, 3.96)"),
    ],
)
def test_a_centred_intercept_shows_the_prior_of_the_intercept_it_reports(name, implied, catalogue_data):
    """Bambi samples the intercept at the predictors' means and reports the one at 0: the table gives the prior that
    implies for the reported one, and says which prior Bambi holds. Checked against draws of the built model's own
    prior, uncentred here from the data's means."""
    import numpy as np
    import pymc as pm

    from pooling.notation import centred_intercept

    spec = RADON_MODELS[name]
    data = catalogue_data(name)
    model = spec.build(data)
    assert priors(spec, model)["Intercept"] == implied
    cell = symbol_table(spec, model).set_index("name in the posterior").loc["`Intercept`", "prior in the model"]
    assert cell.startswith(f"{implied}: implied by Normal(1.26, ") and "at the means of floor (0.166)" in cell
    terms = [term for term in ("floor", "log_uranium", "first_floor_share") if term in spec.formula]
    with pymc_model(model):
        draws = pm.sample_prior_predictive(draws=20000, random_seed=1, var_names=["Intercept", *terms]).prior
    reported = draws["Intercept"] - sum(data[term].mean() * draws[term] for term in terms)
    centred = centred_intercept(model)
    assert abs(float(reported.std()) / centred.sd - 1) < 0.02 and abs(float(reported.mean()) - centred.mean) < 0.05
    assert np.isclose(centred.mean, 1.26, atol=0.005) and centred.sd > float(draws["Intercept"].std())


def test_a_prior_scaled_per_column_is_shown_by_its_range(catalogue_data):
    spec = RADON_MODELS["radon_county_intercepts"]
    assert priors(spec, spec.build(catalogue_data("radon")))["county"] == "Normal(0, 6.16 to 62.1 by county)"
    toy = TOY_MODELS["toy_pooled"]  # no intercept: nothing is centred, the prior is the model's own
    assert priors(toy, toy.build(catalogue_data("toy")))["x"] == "Normal(0, 20)"
