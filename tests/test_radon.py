"""Part II: the derived survey tables, the varying-intercept model against REML, and predictions for new counties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from pooling.data import radon_all_states, radon_minnesota
from pooling.fitting import fit
from pooling.models import RADON_MODELS


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
