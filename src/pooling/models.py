"""Models: the catalogue of Bambi formulas and priors used in the book."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import bambi as bmb
import pandas as pd
import pymc as pm
from pytensor.graph.traversal import ancestors


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a model: a name, a Bambi formula, priors and build options.

    `priors` maps a term (or "sigma") to a `bambi.Prior`; an empty mapping keeps Bambi's defaults.
    `distributional` is an extra formula for an auxiliary parameter, such as `"sigma ~ 0 + site"`.
    `builder`, for models Bambi cannot express, writes the PyMC model by hand from the data; `formula`
    then only describes it.
    `combined` names sums of terms that are identified only together, e.g.
    `(("site slope", ("x", "x|site")),)` for `y ~ 0 + x + (0 + x | site)`: the sum is added to the
    posterior, where the gate checks it as it checks its poorly identified parts.
    `sampler_settings` are what this model needs beyond the book's defaults (`fitting.SAMPLER_SETTINGS`), e.g.
    more draws for a heavy-tailed tau; `fit` applies them, so every chapter fits the model the same way.
    """

    name: str
    formula: str
    priors: dict = field(default_factory=dict, hash=False)
    distributional: str | None = None
    noncentered: bool = True
    family: str = "gaussian"
    description: str = ""
    combined: tuple = ()
    sampler_settings: dict = field(default_factory=dict, hash=False)
    builder: Callable | None = None

    def build(self, data):
        if self.builder is not None:
            return PymcModel(self.builder(data))
        formula = bmb.Formula(self.formula, self.distributional) if self.distributional else self.formula
        return bmb.Model(
            formula, data, family=self.family, priors=dict(self.priors) or None, noncentered=self.noncentered
        )

    def identity(self) -> dict:
        """A plain description of the spec, used in cache keys and reports."""
        return {
            # A hand-written model is identified by its code, so editing it invalidates cached fits.
            "builder": builder_source(self.builder) if self.builder else None,
            "formula": self.formula,
            "distributional": self.distributional,
            "priors": {term: str(prior) for term, prior in sorted(self.priors.items())},
            "noncentered": self.noncentered,
            "family": self.family,
            "combined": [[name, list(parts)] for name, parts in self.combined],
        }


def builder_source(builder: Callable) -> str:
    """The code of a hand-written model, and the arguments a `functools.partial` fixes, for cache keys."""
    if isinstance(builder, functools.partial):
        return inspect.getsource(builder.func) + repr(builder.args) + repr(sorted(builder.keywords.items()))
    return inspect.getsource(builder)


class PymcModel:
    """A hand-written PyMC model with the two methods `fit` uses from a Bambi model."""

    def __init__(self, model: pm.Model):
        self.backend_model = model

    def fit(self, inference_method, cores=None, **options):
        with self.backend_model:
            return pm.sample(nuts_sampler=inference_method, cores=cores, **options)

    def compute_log_likelihood(self, idata):
        with self.backend_model:
            pm.compute_log_likelihood(idata, extend_inferencedata=True, progressbar=False)

    def derived_variables(self) -> list[str]:
        """The deterministic variables: functions of the others, so the fit cache stores them not."""
        return [variable.name for variable in self.backend_model.deterministics]

    def auxiliary_variables(self) -> list[str]:
        """Free variables of a non-centred parametrisation: each has a deterministic variable with the same dims
        computed from it (`county_standard` -> `county_effect`), which is the one readers use."""
        dims = self.backend_model.named_vars_to_dims
        return [
            free.name
            for free in self.backend_model.free_RVs
            if any(
                dims.get(free.name) is not None
                and dims.get(free.name) == dims.get(derived.name)
                and free in ancestors([derived])
                for derived in self.backend_model.deterministics
            )
        ]

    def add_derived_variables(self, idata) -> None:
        """Recompute the deterministic variables from the other draws (after loading a cached fit)."""
        idata.posterior = pm.compute_deterministics(
            idata.posterior, model=self.backend_model, merge_dataset=True, progressbar=False
        )


# The original notebook's priors (PyMC3): slope Normal(0, 20), noise HalfCauchy(5).
ORIGINAL_SLOPE_PRIOR = bmb.Prior("Normal", mu=0, sigma=20)
ORIGINAL_NOISE_PRIOR = bmb.Prior("HalfCauchy", beta=5)

# Bambi insists on a hyperprior for a group term's sd, so "fixed at 0.5" is a Uniform(0.499, 0.501).
FIXED_GROUP_SD = bmb.Prior("Uniform", lower=0.499, upper=0.501)

# With a common slope `x` and site deviations `x|site`, only their sum is identified per site.
SITE_SLOPE = (("site_slope", ("x", "x|site")),)

# The hierarchical toy fits take 4 chains x 4000 draws: tau's heavy right tail needs them for the tail ESS of the
# gate and for MCMC means close enough to the exact ones to compare; each fit still takes seconds.
TOY_HIERARCHICAL_SETTINGS = {"draws": 4000}

TOY_MODELS = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "toy_pooled",
            "y ~ 0 + x",
            {"x": ORIGINAL_SLOPE_PRIOR, "sigma": ORIGINAL_NOISE_PRIOR},
            description="complete pooling: one slope for every site",
        ),
        ModelSpec(
            "toy_unpooled",
            "y ~ 0 + x:site",
            {"x:site": ORIGINAL_SLOPE_PRIOR, "sigma": ORIGINAL_NOISE_PRIOR},
            description="no pooling: a slope per site, one noise sd",
        ),
        ModelSpec(
            "toy_hierarchical_zero_mean",
            "y ~ 0 + (0 + x | site)",
            noncentered=False,
            description="the design's formula: site slopes drawn around a mean fixed at 0",
            sampler_settings=TOY_HIERARCHICAL_SETTINGS,
        ),
        ModelSpec(
            "toy_hierarchical_noncentered",
            "y ~ 0 + x + (0 + x | site)",
            combined=SITE_SLOPE,
            description="partial pooling toward the common slope, Bambi's default non-centred form",
        ),
        ModelSpec(
            "toy_hierarchical",
            "y ~ 0 + x + (0 + x | site)",
            noncentered=False,
            combined=SITE_SLOPE,
            description="partial pooling toward the common slope, centred form, Bambi's default priors",
            sampler_settings=TOY_HIERARCHICAL_SETTINGS,
        ),
        ModelSpec(
            "toy_hierarchical_fixed_sd",
            "y ~ 0 + x + (0 + x | site)",
            {
                "x": bmb.Prior("Normal", mu=0, sigma=1),
                "x|site": bmb.Prior("Normal", mu=0, sigma=FIXED_GROUP_SD),
                "sigma": ORIGINAL_NOISE_PRIOR,
            },
            noncentered=False,
            combined=SITE_SLOPE,
            description="the original's first hyperpriors: mean Normal(0, 1), group sd fixed at 0.5",
            sampler_settings=TOY_HIERARCHICAL_SETTINGS,
        ),
        ModelSpec(
            "toy_hierarchical_tight",
            "y ~ 0 + x + (0 + x | site)",
            {
                "x": bmb.Prior("Normal", mu=0, sigma=0.1),
                "x|site": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfCauchy", beta=0.1)),
                "sigma": ORIGINAL_NOISE_PRIOR,
            },
            noncentered=False,
            combined=SITE_SLOPE,
            description="the original's second hyperpriors: mean Normal(0, 0.1), group sd HalfCauchy(0.1)",
            sampler_settings=TOY_HIERARCHICAL_SETTINGS,
        ),
        ModelSpec(
            "toy_unpooled_site_sigma",
            "y ~ 0 + x:site",
            {"x:site": ORIGINAL_SLOPE_PRIOR},
            distributional="sigma ~ 0 + site",
            description="no pooling: a slope and a noise sd per site, as in the original",
        ),
    ]
}


# At target_accept 0.8 the tail ESS of the LKJ factor stayed near 200 even with 2,000 draws per chain. With 1,000
# draws the LKJ model passed the gate on one CPU and failed it on another (r_hat 1.011, bulk ESS 348): the same seed
# gives different draws on different processors, so a fit must pass with a margin, not by luck.
PYMC_SLOPES_SETTINGS = {"tune": 1000, "target_accept": 0.95, "draws": 2000}


def varying_slopes(data, correlated: bool) -> pm.Model:
    """log_radon ~ 1 + floor + (1 + floor | county) in PyMC, with or without an intercept-slope correlation.

    Bambi's `(1 + floor | county)` keeps the two county effects independent; here their 2 x 2 covariance has
    Exponential(2) priors on the two sds (non-centred) and, when `correlated`, an LKJ(2) prior on the correlation;
    otherwise the correlation is 0. Both versions share every other prior, so they differ only in the
    correlation. The floor slopes barely vary between counties, and a prior that keeps their sd near its scale
    (mean 0.5) samples cleanly where a HalfNormal(1) left the sampler stuck (bulk ESS below 100).
    """
    county = data["county"].cat.codes.to_numpy()
    coords = {"county": list(data["county"].cat.categories), "effect": ["intercept", "floor"]}
    with pm.Model(coords=coords) as model:
        intercept = pm.Normal("Intercept", 1.5, 2.5)
        floor_slope = pm.Normal("floor", 0.0, 2.5)
        standard = pm.Normal("county_standard", 0.0, 1.0, dims=("county", "effect"))
        if correlated:
            chol, correlation, sds = pm.LKJCholeskyCov(
                "county_cov", n=2, eta=2.0, sd_dist=pm.Exponential.dist(2.0, shape=2), compute_corr=True
            )
            pm.Deterministic("county_correlation", correlation[0, 1])
            pm.Deterministic("county_sd", sds, dims="effect")
            effects = pm.Deterministic("county_effects", standard @ chol.T, dims=("county", "effect"))
        else:
            sds = pm.Exponential("county_sd", 2.0, dims="effect")
            effects = pm.Deterministic("county_effects", standard * sds, dims=("county", "effect"))
        sigma = pm.HalfStudentT("sigma", nu=4, sigma=1.0)
        floor = data["floor"].to_numpy()
        mean = intercept + effects[county, 0] + (floor_slope + effects[county, 1]) * floor
        pm.Normal("log_radon", mean, sigma, observed=data["log_radon"].to_numpy())
    return model


def three_levels(data, states: str = "centred", sigma_per_state: bool = True) -> pm.Model:
    """Homes in counties in states: a floor effect, counties partially pooled within their state, and states
    partially pooled ("centred" or "non-centred") or each given a fixed level ("fixed").

    log_radon_i ~ N(state_level[s] + county_effect[c] + floor * floor_i, sigma[s]), with county effects from
    N(0, county_sd) and, when pooled, state levels from N(mu, state_sd). Bambi could state the formula
    (`1 + floor + (1 | state) + (1 | state:county)`, `sigma ~ 0 + state`) but applies one parameterisation to
    every group term; here each level gets its own. The nine states each have hundreds of homes, so "centred"
    draws their levels around mu directly (which also makes mu the mean of the state population, not a separate
    intercept that the state effects could trade against); most counties have a few homes, so their effects are
    non-centred. "fixed" gives each state an independent N(1, 1) level, as `0 + state` does. Priors are weakly
    informative on the log scale of pCi/L; with nine states the HalfNormal(0.5) on state_sd still matters, and
    the chapter says so. `sigma_per_state=False` keeps one residual sd. Counties are the data's own (FIPS).
    """
    if states not in ("centred", "non-centred", "fixed"):
        raise ValueError(f"states must be 'centred', 'non-centred' or 'fixed', not {states!r}")
    state_labels = data["state"].astype(str)
    county_labels = data["county"].astype(str)
    state_names = sorted(state_labels.unique())
    county_names = sorted(county_labels.unique())
    state = pd.Categorical(state_labels, categories=state_names).codes
    county = pd.Categorical(county_labels, categories=county_names).codes
    coords = {"state": state_names, "county": county_names}
    with pm.Model(coords=coords) as model:
        if states == "fixed":
            state_level = pm.Normal("state_level", 1.0, 1.0, dims="state")
        else:
            mu = pm.Normal("mu", 1.0, 1.0)
            state_sd = pm.HalfNormal("state_sd", 0.5)
            if states == "centred":
                state_level = pm.Normal("state_level", mu, state_sd, dims="state")
            else:
                state_standard = pm.Normal("state_standard", 0.0, 1.0, dims="state")
                state_level = pm.Deterministic("state_level", mu + state_standard * state_sd, dims="state")
        county_sd = pm.HalfNormal("county_sd", 0.5)
        county_standard = pm.Normal("county_standard", 0.0, 1.0, dims="county")
        county_effect = pm.Deterministic("county_effect", county_standard * county_sd, dims="county")
        floor_effect = pm.Normal("floor", 0.0, 1.0)
        if sigma_per_state:
            sigma = pm.HalfNormal("sigma", 1.0, dims="state")[state]
        else:
            sigma = pm.HalfNormal("sigma", 1.0)
        mean = state_level[state] + county_effect[county] + floor_effect * data["floor"].to_numpy()
        pm.Normal("log_radon", mean, sigma, observed=data["log_radon"].to_numpy())
    return model


# Weakly informative priors on the log scale of pCi/L: a county's basement level within a factor of about e^2 of
# e^1 = 2.7 pCi/L, a floor effect within a factor of about e^2, county and home variation of the same order.
WEAKLY_INFORMATIVE = {
    "Intercept": bmb.Prior("Normal", mu=1, sigma=1),
    "floor": bmb.Prior("Normal", mu=0, sigma=1),
    "1|county": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=0.5)),
    "sigma": bmb.Prior("HalfNormal", sigma=1),
}

COUNTY_FLOOR_SLOPE = (("county_floor_slope", ("floor", "floor|county")),)

RADON_MODELS = {
    spec.name: spec
    for spec in [
        ModelSpec("radon_pooled", "log_radon ~ 1 + floor", description="complete pooling"),
        ModelSpec(
            "radon_county_intercepts",
            "log_radon ~ 0 + county + floor",
            description="no pooling of intercepts, one floor slope",
        ),
        ModelSpec(
            "radon_varying_intercepts",
            "log_radon ~ 1 + floor + (1 | county)",
            description="partially pooled intercepts, one floor slope",
        ),
        ModelSpec(
            "radon_varying_intercepts_centred",
            "log_radon ~ 1 + floor + (1 | county)",
            noncentered=False,
            description="the same, centred",
        ),
        ModelSpec(
            "radon_floor_unpooled",
            "log_radon ~ 0 + county + floor:county",
            # Bambi scales default priors by each column's sd, which is 0 in counties with no first floor.
            {"floor:county": bmb.Prior("Normal", mu=0, sigma=2.5)},
            description="a floor slope per county, no pooling (toy: y ~ 0 + x:site)",
        ),
        ModelSpec(
            "radon_floor_zero_mean",
            "log_radon ~ 1 + (1 | county) + (0 + floor | county)",
            description="county floor slopes pulled toward 0 (toy: y ~ 0 + (0 + x | site))",
        ),
        ModelSpec(
            "radon_varying_slopes",
            "log_radon ~ 1 + floor + (1 | county) + (0 + floor | county)",
            combined=COUNTY_FLOOR_SLOPE,
            description="county floor slopes pulled toward the state slope (toy: y ~ 0 + x + (0 + x | site))",
            sampler_settings={"draws": 2000},  # at 1,000 draws its worst r_hat was 1.009: too close to the line
        ),
        ModelSpec(
            "radon_varying_slopes_centred",
            "log_radon ~ 1 + floor + (1 | county) + (0 + floor | county)",
            combined=COUNTY_FLOOR_SLOPE,
            noncentered=False,
            description="the same, centred",
        ),
        ModelSpec(
            "radon_correlated_slopes",
            "log_radon ~ 1 + floor + (1 + floor | county), correlated (PyMC, LKJ)",
            builder=functools.partial(varying_slopes, correlated=True),
            description="varying intercepts and slopes with correlation",
            sampler_settings=PYMC_SLOPES_SETTINGS,
        ),
        ModelSpec(
            "radon_uncorrelated_slopes",
            "log_radon ~ 1 + floor + (1 + floor | county), uncorrelated (PyMC, same priors)",
            builder=functools.partial(varying_slopes, correlated=False),
            description="varying intercepts and slopes, no correlation, otherwise the correlated model's priors",
            sampler_settings=PYMC_SLOPES_SETTINGS,
        ),
        ModelSpec(
            "radon_varying_intercepts_weakly_informative",
            "log_radon ~ 1 + floor + (1 | county)",
            WEAKLY_INFORMATIVE,
            description="partially pooled intercepts with weakly informative priors",
            sampler_settings={"draws": 2000},  # at 1,000 draws its worst r_hat was 1.008: too close to the line
        ),
        ModelSpec(
            "radon_uranium",
            "log_radon ~ 1 + floor + log_uranium + (1 | county)",
            description="county log-uranium as a group-level predictor",
        ),
        ModelSpec(
            "radon_three_levels",
            "log_radon ~ 1 + floor + (1 | state) + (1 | state:county); sigma ~ 0 + state (PyMC)",
            builder=three_levels,
            description="homes in counties in states: states and counties partially pooled, a residual sd per state",
            sampler_settings={"draws": 2000},  # at 1,000 draws: r_hat 1.011, bulk ESS 392
        ),
        ModelSpec(
            "radon_three_levels_noncentred_states",
            "log_radon ~ 1 + floor + (1 | state) + (1 | state:county); sigma ~ 0 + state (PyMC, states non-centred)",
            builder=functools.partial(three_levels, states="non-centred"),
            description="the same, with the state levels non-centred like the counties",
        ),
        ModelSpec(
            "radon_all_states",
            "log_radon ~ 0 + state + floor + (1 | state:county) (PyMC)",
            # Written in PyMC, not Bambi: Bambi's log-likelihood of these 12,490 homes needed about 8 GB of memory.
            builder=functools.partial(three_levels, states="fixed", sigma_per_state=False),
            description="all nine states: a fixed level per state, counties partially pooled within their state",
            sampler_settings={"draws": 2000},
        ),
    ]
}
