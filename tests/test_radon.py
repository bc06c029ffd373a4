"""Part II: the derived survey tables, the varying-intercept model against REML, and predictions for new counties."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from pytensor.graph.traversal import ancestors
from scipy import stats

from pooling.data import radon_all_states, radon_minnesota
from pooling.fitting import fit
from pooling.models import RADON_MODELS
from pooling.predictions import elpd_difference, group_log_likelihood, new_group_predictions


@pytest.fixture(scope="module")
def minnesota():
    return radon_minnesota()


@pytest.fixture(scope="module")
def survey():
    return radon_all_states()


def test_all_states_table_has_the_documented_counts(survey):
    assert len(survey) == 11843
    assert survey["idnum"].is_unique
    assert sorted(survey["state"].unique()) == ["AZ", "IN", "MA", "MN", "MO", "ND", "PA"]
    assert survey["county"].nunique() == survey["fips"].nunique() == 439
    # Minnesota's own survey is the 919-home table; the tribal-lands sample adds 269 Minnesota homes.
    assert (survey["state"] == "MN").sum() == 919
    every_home = radon_all_states(tribal_lands=True)
    assert (every_home["state"] == "MN").sum() == 1188
    assert not survey["county"].str.contains("nan").any()


def test_one_state_holds_its_homes_and_only_its_counties(survey):
    pennsylvania = radon_all_states(states=["PA"])
    expected = survey[survey["state"] == "PA"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        pennsylvania.astype({"state": str, "county": str}), expected.astype({"state": str, "county": str})
    )
    assert list(pennsylvania["state"].cat.categories) == ["PA"]
    assert list(pennsylvania["county"].cat.categories) == sorted(expected["county"].astype(str).unique())


@pytest.mark.parametrize(
    "states, error, message",
    [
        ("PA", TypeError, "a list of state codes"),
        (["PA", "XX"], ValueError, r"\['XX'\] are not in the survey"),
        ([], ValueError, "not in the survey: choose from"),
    ],
)
def test_states_that_are_not_in_the_survey_are_named(states, error, message):
    with pytest.raises(error, match=message):
        radon_all_states(states=states)


def test_floor_codes_are_recoded_above_the_basement(survey, minnesota):
    assert survey["floor_code"].value_counts().to_dict() == {0: 7875, 1: 3648, 9: 280, 2: 21, 3: 19}
    assert survey["floor"].isna().sum() == 280
    assert (survey.loc[survey["floor_code"].between(1, 3), "floor"] == 1).all()
    assert set(minnesota["floor"]) == {0, 1}


def test_every_county_has_uranium_or_the_gap_is_named(survey):
    assert survey["uranium"].notna().all()  # every state-survey code is a county of cty.dat
    every_home = radon_all_states(tribal_lands=True)
    no_uranium = every_home.loc[every_home["uranium"].isna(), "county"].unique()
    assert sorted(map(str, no_uranium)) == [
        "MI:county unknown (FIPS 26999)",
        "MN:county unknown (FIPS 27999)",
        "MN:not a county (FIPS 27189)",
        "WI:county unknown (FIPS 55999)",
    ]
    zero_uranium = sorted(survey.loc[survey["uranium"] == 0, "county"].unique())
    assert zero_uranium == ["AZ:LAPAZ", "MA:BARNSTABLE", "MA:DUKES", "MA:SUFFOLK"]
    missing_log = survey["log_uranium"].isna()
    assert (missing_log == (survey["uranium"].isna() | (survey["uranium"] == 0))).all()


def test_minnesotas_87_codes_are_85_surveyed_counties_and_two_that_are_not_counties():
    """cty.dat lists all 87 Minnesota counties; the survey missed Grant and Red Lake, and the file's other two
    Minnesota codes are 189 (no county) and 999 (county unknown), both in the tribal-lands sample."""
    from pooling.data import county_uranium, radon_survey

    listed = county_uranium().query("state == 'MN'")
    records = radon_survey().query("state == 'MN'")
    surveyed = set(records.loc[records["component"] == "state survey", "fips"])
    assert len(listed) == listed["fips"].nunique() == 87 and records["fips"].nunique() == 87
    assert sorted(listed.loc[~listed["fips"].isin(surveyed), "county_name"]) == ["GRANT", "REDLAKE"]
    assert sorted(set(records["fips"]) - set(listed["fips"])) == [27189, 27999]
    assert set(records.loc[records["county_code"] == "county", "fips"]) == surveyed


def test_minnesota_is_a_subset_of_the_survey(minnesota, survey):
    ours = survey[survey["state"] == "MN"].set_index("idnum")
    np.testing.assert_allclose(ours.loc[minnesota["idnum"], "log_radon"], minnesota["log_radon"])


@pytest.mark.slow
def test_varying_intercepts_agree_with_mixedlm_reml(minnesota):
    """REML estimates and posterior means differ by prior and by mean-versus-mode; with 919 homes both effects are
    small against the posterior sd, so each REML estimate must lie within one posterior sd of the posterior mean
    (the county sd's posterior is skewed, so its mean sits above the REML mode; one sd still bounds it)."""
    result = fit(RADON_MODELS["radon_varying_intercepts"], minnesota)  # the chapter's fit, from the cache
    posterior = result.idata.posterior
    reml = smf.mixedlm("log_radon ~ floor", minnesota, groups=minnesota["county"].astype(str)).fit(reml=True)
    pairs = {
        "floor": (posterior["floor"], reml.fe_params["floor"]),
        "county sd": (posterior["1|county_sigma"], np.sqrt(reml.cov_re.iloc[0, 0])),
        "residual sd": (posterior["sigma"], np.sqrt(reml.scale)),
    }
    for name, (draws, estimate) in pairs.items():
        assert abs(float(draws.mean()) - estimate) < float(draws.std()), name


@pytest.mark.slow
def test_prediction_for_an_absent_county_is_wider_than_for_a_sampled_one(minnesota):
    result = fit(RADON_MODELS["radon_varying_intercepts"], minnesota)
    biggest = minnesota["county"].value_counts().idxmax()
    houses = pd.DataFrame({"floor": [0, 0], "county": [biggest, "A COUNTY WITH NO DATA"]})
    prediction = result.model.predict(
        result.idata, data=houses, kind="response_params", inplace=False, sample_new_groups=True, random_seed=3
    )
    means = prediction.posterior["mu"].stack(sample=("chain", "draw")).to_numpy()
    width = np.subtract(*np.quantile(means, [0.97, 0.03], axis=1))
    assert np.all(np.isfinite(means))
    assert width[1] > 2 * width[0]
    # The new county's mean is centred on the state-wide level, not on any one county.
    assert abs(means[1].mean() - float(result.idata.posterior["Intercept"].mean())) < 0.05


def test_every_county_is_one_fips_code(survey):
    """The county count the book states: a county is a FIPS code, and each county label has exactly one."""
    assert survey.groupby("county", observed=True)["fips"].nunique().eq(1).all()
    assert survey.groupby("fips")["county"].nunique().eq(1).all()
    assert survey["fips"].nunique() == 439
    measured = survey.dropna(subset=["floor"])
    assert measured["fips"].nunique() == measured["county"].nunique()


# Which terms vary by what in chapter 9's models: each free variable's dimension (None: one value for all states).
FIXED_STATES = {"state_level": "state", "floor": None, "county_sd": None, "sigma": None}
SIGMA_PER_STATE = FIXED_STATES | {"sigma": "state"}
POOLED_STATES = SIGMA_PER_STATE | {"mu": None, "state_sd": None}
FLOOR_PER_STATE = {term: dim for term, dim in POOLED_STATES.items() if term != "floor"} | {
    "floor_mean": None,
    "floor_sd": None,
    "floor_standard": "state",
}
THREE_LEVEL_TERMS = {
    "radon_all_states": FIXED_STATES,
    "radon_fixed_states": SIGMA_PER_STATE,
    "radon_three_levels": POOLED_STATES,
    "radon_three_levels_floor": FLOOR_PER_STATE,
    "radon_three_levels_county_sd": FLOOR_PER_STATE | {"county_sd": "state"},
}


@pytest.mark.parametrize("name", THREE_LEVEL_TERMS)
def test_three_level_models_vary_each_term_by_what_they_say(survey, name):
    """Chapter 9's chain of models, built without sampling: states, counties (by FIPS, each inside one state), and
    which terms are one per state; each model differs from the one before it in one term."""
    measured = survey.dropna(subset=["floor"])
    model = RADON_MODELS[name].build(measured).backend_model
    assert model.coords["state"] == tuple(sorted(measured["state"].astype(str).unique()))
    assert len(model.coords["county"]) == measured["fips"].nunique() == 439
    dims = {variable.name: (model.named_vars_to_dims.get(variable.name) or (None,))[0] for variable in model.free_RVs}
    assert dims == THREE_LEVEL_TERMS[name] | {"county_standard": "county"}
    derived = {variable.name: model.named_vars_to_dims[variable.name][0] for variable in model.deterministics}
    assert derived == {"county_effect": "county"} | ({"floor": "state"} if "floor_mean" in dims else {})
    # pooled state levels are drawn around mu with sd state_sd; fixed ones have their own prior
    parents = {node.name for node in ancestors([model["state_level"]]) if node.name in model.named_vars}
    assert ({"mu", "state_sd"} <= parents) == ("mu" in dims)
    assert measured.groupby("county", observed=True)["state"].nunique().eq(1).all()


def test_each_model_of_the_chain_changes_one_term():
    names = list(THREE_LEVEL_TERMS)
    for before, after in zip(names, names[1:], strict=False):
        old, new = THREE_LEVEL_TERMS[before], THREE_LEVEL_TERMS[after]
        changed = {term for term in old.keys() | new.keys() if old.get(term, "absent") != new.get(term, "absent")}
        # one change: a term gains a dimension, or a term is drawn from a population (its mean and sd appear)
        assert changed in (
            {"sigma"},
            {"mu", "state_sd"},
            {"floor", "floor_mean", "floor_sd", "floor_standard"},
            {"county_sd"},
        ), (before, after, changed)


@pytest.fixture(scope="module")
def two_states():
    """Two small states' homes, for checks against brute force."""
    return radon_all_states(states=["AZ", "MA"]).dropna(subset=["floor"])


def _random_point(model, seed):
    rng = np.random.default_rng(seed)
    return {name: value + rng.normal(0, 0.3, np.shape(value)) for name, value in model.initial_point().items()}


def _natural(model, point):
    """The model's free variables on their own scale at an unconstrained point, and its deterministics."""
    names = [variable.name for variable in model.free_RVs + model.deterministics]
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    values = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")(point)
    return dict(zip(names, values, strict=True))


def _per_state(values, states, name):
    value = np.asarray(values[name])
    return dict(zip(states, value, strict=True)) if value.ndim else dict.fromkeys(states, float(value))


def _brute_force(data, values, states):
    """Each county's log-likelihood with its effect integrated out, from the homes themselves: a multivariate
    normal with covariance sigma^2 I + county_sd^2 11'; and each county effect's conditional mean and sd."""
    level, floor, tau, sigma = (
        _per_state(values, states, name) for name in ("state_level", "floor", "county_sd", "sigma")
    )
    likelihood, conditional = {}, {}
    for county, homes in data.groupby("county", observed=True):
        state = str(homes["state"].iloc[0])
        y = homes["log_radon"].to_numpy()
        mean = level[state] + floor[state] * homes["floor"].to_numpy()
        covariance = sigma[state] ** 2 * np.eye(len(y)) + tau[state] ** 2
        likelihood[str(county)] = stats.multivariate_normal.logpdf(y, mean, covariance)
        precision = 1 / tau[state] ** 2 + len(y) / sigma[state] ** 2
        conditional[str(county)] = ((y - mean).sum() / sigma[state] ** 2 / precision, precision**-0.5)
    return pd.Series(likelihood), conditional


@pytest.mark.parametrize("name", ["radon_fixed_states", "radon_three_levels_county_sd"])
def test_integrated_county_effects_give_the_homes_likelihood(two_states, name):
    """The model samples the county statistics with each county effect integrated out: between two parameter
    points, each county's log-likelihood (as LOO by county sums it) and the model's log density change exactly as
    the homes' multivariate normal likelihood does; and each county effect is drawn from its exact conditional."""
    built = RADON_MODELS[name].build(two_states)
    model = built.backend_model
    states = list(model.coords["state"])
    points = [_random_point(model, seed) for seed in (1, 2)]
    values = [_natural(model, point) for point in points]
    brute = [_brute_force(two_states, value, states) for value in values]
    idata = az.from_dict(
        posterior={name: np.asarray(value)[None, None] for name, value in values[0].items()}
        | {
            variable.name: np.stack([np.asarray(value[variable.name]) for value in values])[None]
            for variable in model.free_RVs
        }
    )
    idata.posterior = idata.posterior.isel(draw=slice(0, 2))
    per_county = group_log_likelihood(model, idata)
    change = (per_county.isel(chain=0, draw=1) - per_county.isel(chain=0, draw=0)).to_series()
    np.testing.assert_allclose(change[brute[0][0].index], brute[1][0] - brute[0][0], rtol=0, atol=1e-8)
    log_likelihood = model.compile_fn(model.observedlogp, inputs=model.value_vars, on_unused_input="ignore")
    model_change = log_likelihood(points[1]) - log_likelihood(points[0])
    assert model_change == pytest.approx(brute[1][0].sum() - brute[0][0].sum(), abs=1e-7)
    # county_effect = conditional mean + conditional sd * county_standard
    effects = pd.Series(values[0]["county_effect"], index=model.coords["county"])
    standard = pd.Series(values[0]["county_standard"], index=model.coords["county"])
    for county, (mean, sd) in brute[0][1].items():
        assert effects[county] == pytest.approx(mean + sd * standard[county], abs=1e-9)


def test_uncorrelated_slopes_differ_from_correlated_only_in_the_correlation(minnesota):
    correlated = RADON_MODELS["radon_correlated_slopes"].build(minnesota).backend_model
    uncorrelated = RADON_MODELS["radon_uncorrelated_slopes"].build(minnesota).backend_model
    shared = {"Intercept", "floor", "county_standard", "sigma"}
    assert shared <= {variable.name for variable in correlated.free_RVs}
    assert {variable.name for variable in uncorrelated.free_RVs} == shared | {"county_sd"}
    assert "county_cov" in {variable.name for variable in correlated.free_RVs}
    assert RADON_MODELS["radon_correlated_slopes"].identity() != RADON_MODELS["radon_uncorrelated_slopes"].identity()


@pytest.mark.slow
def test_textbook_new_county_matches_its_analytic_moments(minnesota):
    """u ~ N(0, tau) per draw: the new county's mean has the Intercept's mean and variance Var(Intercept) + E[tau^2];
    a new home adds E[sigma^2]. Tolerances are several Monte Carlo standard errors of 4,000 draws."""
    result = fit(RADON_MODELS["radon_varying_intercepts"], minnesota)
    posterior = result.idata.posterior
    rows = pd.DataFrame({"floor": [0], "county": ["A COUNTY WITH NO DATA"]})
    textbook = new_group_predictions(result, rows, "1|county", seed=11)["textbook"]
    intercept, tau, sigma = (posterior[name].to_numpy().ravel() for name in ("Intercept", "1|county_sigma", "sigma"))
    expected_sd = np.sqrt(intercept.var() + (tau**2).mean())
    draws = len(intercept)
    assert abs(textbook["mean"].mean() - intercept.mean()) < 4 * expected_sd / np.sqrt(draws)
    assert abs(textbook["mean"].std() / expected_sd - 1) < 0.05
    assert abs(textbook["response"].std() / np.sqrt(expected_sd**2 + (sigma**2).mean()) - 1) < 0.05


@pytest.mark.slow
def test_bambi_new_groups_only_reuse_existing_group_effects(minnesota):
    """Bambi 0.17.2's sample_new_groups gives each draw the effect of one EXISTING county in that draw."""
    result = fit(RADON_MODELS["radon_varying_intercepts"], minnesota)
    posterior = result.idata.posterior.stack(sample=("chain", "draw"))
    rows = pd.DataFrame({"floor": [0], "county": ["A COUNTY WITH NO DATA"]})
    resampled = new_group_predictions(result, rows, "1|county", seed=12)["resampled"]["mean"][:, 0]
    effects = posterior["1|county"].transpose("sample", ...).to_numpy()  # draws x counties
    implied = resampled - posterior["Intercept"].to_numpy()
    matches = np.isclose(effects, implied[:, None], rtol=0, atol=1e-9)
    assert matches.any(axis=1).all()
    # and it is not a draw from a continuous N(0, tau): the textbook effect matches no existing county
    textbook = new_group_predictions(result, rows, "1|county", seed=12)["textbook"]["mean"][:, 0]
    assert not np.isclose(effects, (textbook - posterior["Intercept"].to_numpy())[:, None], atol=1e-9).any(axis=1).any()


@pytest.mark.slow
def test_elpd_difference_agrees_with_arviz_compare(minnesota):
    import arviz as az

    partial = fit(RADON_MODELS["radon_varying_intercepts"], minnesota, log_likelihood=True).idata
    pooled = fit(RADON_MODELS["radon_pooled"], minnesota, log_likelihood=True).idata
    difference, error = elpd_difference(partial, pooled)
    comparison = az.compare({"partial": partial, "pooled": pooled})
    assert comparison.index[0] == "partial"
    assert difference == pytest.approx(comparison.loc["pooled", "elpd_diff"], rel=1e-9)
    assert error == pytest.approx(comparison.loc["pooled", "dse"], rel=1e-6)


def test_county_panel_menu_updates_every_panel():
    """The eight-county panel is static HTML: each menu entry carries the data of every trace and every title."""
    from pooling import plots

    counties = [f"C{index}" for index in range(10)]
    points = pd.DataFrame({"county": np.repeat(counties, 3), "floor": np.tile([0, 0, 1], 10), "log_radon": 1.0})
    lines = pd.DataFrame(
        [
            {"county": county, "model": model, "intercept": 1.0, "slope": -0.5}
            for county in counties
            for model in ("complete pooling", "no pooling", "partial pooling")
        ]
    )
    choices = {"first eight": counties[:8], "last eight": counties[2:]}
    figure = plots.county_panels(points, lines, choices, "test")
    assert len(figure.data) == 8 * 4  # per panel: the homes and three lines
    (menu,) = figure.layout.updatemenus
    for button, (label, chosen) in zip(menu.buttons, choices.items(), strict=True):
        data, layout = button.args
        assert button.label == label and button.method == "update"
        assert all(len(data[key]) == len(figure.data) for key in ("x", "y", "text"))
        assert [annotation["text"] for annotation in layout["annotations"]] == [f"{c} (3 homes)" for c in chosen]
    # the last entry's first panel shows county C2's homes
    assert menu.buttons[1].args[0]["text"][0] == "C2: a home"


# ------------------------------------------------------------------------------------------------------------------
# Predictive-check statistics, the within/between split of the floor slope, and elpd differences


def test_check_statistics_match_a_direct_computation_on_known_data_sets():
    """Two hand-made data sets of five homes in two counties, each statistic computed here by hand."""
    from pooling.predictions import ACTION_LEVEL, LOG_RADON_FLOOR, check_statistics

    county = np.array(["a", "a", "b", "b", "b"])
    above = np.log(ACTION_LEVEL + 0.1) + 0.01
    data_sets = np.array(
        [
            [LOG_RADON_FLOOR, 0.0, above, above, 1.0],  # one home at the floor, two above the action level
            [-3.0, LOG_RADON_FLOOR, 0.5, 0.5, 0.5],  # one home below the floor, one at it, none above
        ]
    )
    statistics = check_statistics(data_sets, county)
    np.testing.assert_allclose(statistics["share above 4 pCi/L"], [2 / 5, 0.0])
    np.testing.assert_allclose(statistics["skewness"], stats.skew(data_sets, axis=1))
    np.testing.assert_allclose(statistics["95% quantile"], [np.quantile(row, 0.95) for row in data_sets])
    np.testing.assert_allclose(statistics["highest log radon"], data_sets.max(1))
    np.testing.assert_allclose(statistics["fourth-lowest log radon"], [sorted(row)[3] for row in data_sets])
    np.testing.assert_allclose(statistics["lowest log radon"], [LOG_RADON_FLOOR, -3.0])
    np.testing.assert_array_equal(statistics["homes at or below the floor"], [1, 2])
    means = [[np.mean(row[:2]), np.mean(row[2:])] for row in data_sets]
    np.testing.assert_allclose(statistics["sd of county means"], [np.std(pair, ddof=1) for pair in means])
    np.testing.assert_allclose(statistics["share above 20 pCi/L"], [0.0, 0.0])
    with pytest.raises(ValueError, match="county names"):
        check_statistics(data_sets, county[:4])
    # The correlation of county means with a county covariate, against numpy's; a missing county is named
    uranium = {"a": -1.0, "b": 0.5}
    correlated = check_statistics(data_sets, county, county_covariate=uranium)["county means vs covariate"]
    np.testing.assert_allclose(correlated, [np.corrcoef([pair, [-1.0, 0.5]])[0, 1] for pair in means])
    with pytest.raises(ValueError, match=r"no value for counties \['b'\]"):
        check_statistics(data_sets, county, county_covariate={"a": 1.0})


def test_new_group_effects_are_shared_within_a_group_and_drawn_with_sd_tau():
    """The textbook draw for groups the model has not seen: one effect per draw and group, N(0, tau), times the
    predictor; homes of one group share it, homes of different groups do not."""
    from pooling.predictions import _with_new_effects

    draws = 40_000
    tau = np.full(draws, 0.5)
    common = np.ones((draws, 3))
    values = _with_new_effects(common, tau, np.array([1.0, 1.0, 2.0]), np.array([0, 0, 1]), np.random.default_rng(1))
    np.testing.assert_array_equal(values[:, 0], values[:, 1])
    assert abs(values[:, 0].std() - 0.5) < 0.01 and abs(values[:, 2].std() - 1.0) < 0.02
    assert abs(values.mean(0) - 1).max() < 0.02 and abs(np.corrcoef(values[:, 0], values[:, 2])[0, 1]) < 0.02


def test_varying_slope_test_matches_an_independent_reml_and_its_boundary_p_value(minnesota):
    """The referee's independent REML (sigma_beta 0.28; sigma_beta = 0 is 0.90 log-likelihood units below the
    maximum, boundary p about 0.09), and the p-value as half the chi-squared(1) tail of twice the drop."""
    from pooling.heterogeneity import varying_slope_test

    result = varying_slope_test(minnesota)
    assert abs(result["sd"] - 0.28) < 0.005 and abs(result["drop"] - 0.90) < 0.01
    assert abs(result["intercept_sd"] - 0.32) < 0.01
    assert result["p"] == pytest.approx(0.5 * stats.chi2.sf(2 * result["drop"], 1)) and 0.08 < result["p"] < 0.1


def test_chance_outside_matches_a_simulation_of_the_true_model():
    """Counties simulated from the varying-intercept model with known sigma and tau: the share of observed county
    means outside the 94% interval of their replicated means, against `chance_outside`."""
    from pooling.predictions import chance_outside

    rng = np.random.default_rng(8)
    sigma, tau, homes = 0.73, 0.32, np.array([1, 2, 5, 20, 100])
    weight = homes * tau**2 / (homes * tau**2 + sigma**2)
    county_means = rng.normal(0, tau, (200000, len(homes))) + rng.normal(
        0, sigma / np.sqrt(homes), (200000, len(homes))
    )
    centre, spread = weight * county_means, np.sqrt((1 + weight) * sigma**2 / homes)  # replicated means
    outside = (np.abs(county_means - centre) > stats.norm.ppf(0.97) * spread).mean(0)
    expected = chance_outside(homes, sigma, tau)
    assert (np.abs(outside - expected) < 4 * np.sqrt(expected / 200000) + 1e-5).all(), (outside, expected)
    assert expected[0] > expected[-1] and expected.max() < 0.06  # never more than chance, least for small counties


def test_county_mean_intervals_match_a_direct_computation():
    from pooling.predictions import county_mean_intervals

    rng = np.random.default_rng(5)
    county = np.array(["x"] * 3 + ["y"] * 2)
    replicated = rng.normal(size=(400, 5))
    observed = np.array([0.0, 0.1, -0.1, 3.0, 3.0])  # county y far outside its replicates
    table = county_mean_intervals(replicated, observed, county)
    x_means = replicated[:, :3].mean(1)
    assert table.loc["x", "low"] == pytest.approx(np.quantile(x_means, 0.03))
    assert table.loc["x", "high"] == pytest.approx(np.quantile(x_means, 0.97))
    assert table.loc["y", "observed"] == 3.0 and list(table["homes"]) == [3, 2]
    assert list(table["outside"]) == [False, True]


def test_within_between_reproduces_least_squares_and_generalised_least_squares(minnesota):
    """Complete pooling's slope is ordinary least squares, the within slope that with county dummies, and the partial
    pooling slope generalised least squares with the random-intercept covariance, all computed independently."""
    from pooling.shrinkage import within_between

    complete = within_between(minnesota, "floor", "log_radon", "county")
    ols = smf.ols("log_radon ~ floor", minnesota).fit().params["floor"]
    dummies = smf.ols("log_radon ~ 0 + C(county) + floor", minnesota).fit().params["floor"]
    assert complete["slope"] == pytest.approx(ols, abs=1e-10)
    assert complete["within"] == pytest.approx(dummies, abs=1e-10)
    sigma, tau = 0.73, 0.32
    partial = within_between(minnesota, "floor", "log_radon", "county", sigma, tau)
    design = np.column_stack([np.ones(len(minnesota)), minnesota["floor"]])
    membership = pd.get_dummies(minnesota["county"]).to_numpy(float)
    covariance = sigma**2 * np.eye(len(minnesota)) + tau**2 * membership @ membership.T
    weighted = np.linalg.solve(covariance, design)
    gls = np.linalg.solve(design.T @ weighted, weighted.T @ minnesota["log_radon"].to_numpy())
    assert partial["slope"] == pytest.approx(gls[1], abs=1e-8)
    assert partial["within"] == complete["within"] and partial["within weight"] > complete["within weight"]


def test_elpd_difference_of_pointwise_values_is_their_sum_and_its_standard_error():
    first, second = np.array([-1.0, -2.0, -0.5, -1.5]), np.array([-1.2, -1.9, -0.9, -1.5])
    difference, error = elpd_difference(first, second)
    gaps = first - second
    assert difference == pytest.approx(gaps.sum())
    assert error == pytest.approx(np.sqrt(len(gaps)) * gaps.std())
