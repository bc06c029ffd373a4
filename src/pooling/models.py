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
            "toy_unpooled_site_sigma",
            "y ~ 0 + x:site",
            {"x:site": ORIGINAL_SLOPE_PRIOR},
            distributional="sigma ~ 0 + site",
            description="no pooling: a slope and a noise sd per site, as in the original",
        ),
    ]
}
