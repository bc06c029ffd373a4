"""Models: the catalogue of Bambi formulas and priors used in the book."""

from __future__ import annotations

from dataclasses import dataclass, field

import bambi as bmb


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a model: a name, a Bambi formula, priors and build options.

    `priors` maps a term (or "sigma") to a `bambi.Prior`; an empty mapping keeps Bambi's defaults.
    `distributional` is an extra formula for an auxiliary parameter, such as `"sigma ~ 0 + site"`.
    `combined` names sums of terms that are identified only together, e.g.
    `(("site slope", ("x", "x|site")),)` for `y ~ 0 + x + (0 + x | site)`: the sum is added to the
    posterior and the diagnostics gate checks it instead of its poorly identified parts.
    """

    name: str
    formula: str
    priors: dict = field(default_factory=dict, hash=False)
    distributional: str | None = None
    noncentered: bool = True
    family: str = "gaussian"
    description: str = ""
    combined: tuple = ()

    def build(self, data) -> bmb.Model:
        formula = bmb.Formula(self.formula, self.distributional) if self.distributional else self.formula
        return bmb.Model(
            formula, data, family=self.family, priors=dict(self.priors) or None, noncentered=self.noncentered
        )

    def identity(self) -> dict:
        """A plain description of the spec, used in cache keys and reports."""
        return {
            "formula": self.formula,
            "distributional": self.distributional,
            "priors": {term: str(prior) for term, prior in sorted(self.priors.items())},
            "noncentered": self.noncentered,
            "family": self.family,
        }


# The original notebook's priors (PyMC3): slope Normal(0, 20), noise HalfCauchy(5).
ORIGINAL_SLOPE_PRIOR = bmb.Prior("Normal", mu=0, sigma=20)
ORIGINAL_NOISE_PRIOR = bmb.Prior("HalfCauchy", beta=5)

# Bambi insists on a hyperprior for a group term's sd, so "fixed at 0.5" is a Uniform(0.499, 0.501).
FIXED_GROUP_SD = bmb.Prior("Uniform", lower=0.499, upper=0.501)

# With a common slope `x` and site deviations `x|site`, only their sum is identified per site.
SITE_SLOPE = (("site_slope", ("x", "x|site")),)

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
