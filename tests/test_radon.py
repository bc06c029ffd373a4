"""Part II: the derived survey tables, the varying-intercept model against REML, and predictions for new counties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from pooling.data import radon_all_states, radon_minnesota
from pooling.fitting import fit
from pooling.models import RADON_MODELS
from pooling.predictions import elpd_difference, new_group_predictions


@pytest.fixture(scope="module")
def minnesota():
    return radon_minnesota()


@pytest.fixture(scope="module")
def survey():
    return radon_all_states()


def test_all_states_table_has_the_documented_counts(survey):
    assert len(survey) == 12777
    assert survey["idnum"].is_unique
    assert sorted(survey["state"].unique()) == ["AZ", "IN", "MA", "MI", "MN", "MO", "ND", "PA", "WI"]
    assert survey["county"].nunique() == survey["fips"].nunique() == 472
    # Region 5 homes carry their real state; Minnesota's own survey is the 919-home table.
    assert (survey["state"] == "MN").sum() == 1188
    assert (survey["survey"] == "MN").sum() == 919
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
    assert survey["floor_code"].value_counts().to_dict() == {0: 8465, 1: 3983, 9: 287, 2: 23, 3: 19}
    assert survey["floor"].isna().sum() == 287
    assert (survey.loc[survey["floor_code"].between(1, 3), "floor"] == 1).all()
    assert set(minnesota["floor"]) == {0, 1}


def test_every_county_has_uranium_or_the_gap_is_named(survey):
    no_uranium = survey.loc[survey["uranium"].isna(), "county"].unique()
    assert sorted(map(str, no_uranium)) == [
        "MI:not in cty.dat (FIPS 26999)",
        "MN:not in cty.dat (FIPS 27189)",
        "MN:not in cty.dat (FIPS 27999)",
        "WI:not in cty.dat (FIPS 55999)",
    ]
    zero_uranium = sorted(survey.loc[survey["uranium"] == 0, "county"].unique())
    assert zero_uranium == ["AZ:LAPAZ", "MA:BARNSTABLE", "MA:DUKES", "MA:SUFFOLK"]
    missing_log = survey["log_uranium"].isna()
    assert (missing_log == (survey["uranium"].isna() | (survey["uranium"] == 0))).all()


def test_minnesota_is_a_subset_of_the_survey(minnesota, survey):
    ours = survey[survey["survey"] == "MN"].set_index("idnum")
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
    assert survey["fips"].nunique() == 472
    measured = survey.dropna(subset=["floor"])
    assert measured["fips"].nunique() == measured["county"].nunique()


def test_three_level_model_structure(survey):
    """States, counties (by FIPS, each inside one state) and a residual sd per state, built without sampling."""
    measured = survey.dropna(subset=["floor"])
    model = RADON_MODELS["radon_three_levels"].build(measured).backend_model
    assert model.coords["state"] == tuple(sorted(measured["state"].astype(str).unique()))
    assert len(model.coords["county"]) == measured["fips"].nunique()
    free = {variable.name: variable for variable in model.free_RVs}
    assert set(free) == {"mu", "state_sd", "state_level", "county_sd", "county_standard", "floor", "sigma"}
    start = model.initial_point()
    shapes = {name: start[model.rvs_to_values[variable].name].shape for name, variable in free.items()}
    assert shapes["state_level"] == shapes["sigma"] == (9,)
    assert shapes["county_standard"] == (measured["fips"].nunique(),)
    # Every county sits in one state, so "county within state" is a partition of the homes.
    assert measured.groupby("county", observed=True)["state"].nunique().eq(1).all()
    noncentred = RADON_MODELS["radon_three_levels_noncentred_states"].build(measured).backend_model
    assert "state_standard" in {variable.name for variable in noncentred.free_RVs}
    assert "state_level" in {variable.name for variable in noncentred.deterministics}


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
    np.testing.assert_allclose(statistics["lowest log radon"], [LOG_RADON_FLOOR, -3.0])
    np.testing.assert_array_equal(statistics["homes at or below the floor"], [1, 2])
    means = [[np.mean(row[:2]), np.mean(row[2:])] for row in data_sets]
    np.testing.assert_allclose(statistics["sd of county means"], [np.std(pair, ddof=1) for pair in means])
    with pytest.raises(ValueError, match="county names"):
        check_statistics(data_sets, county[:4])


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
