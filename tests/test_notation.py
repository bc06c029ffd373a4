"""Every model is written as equations whose symbols map onto the names of its posterior, priors read from the model."""

from __future__ import annotations

import dataclasses

import pytest

from pooling.data import radon_all_states, radon_minnesota, two_sites
from pooling.models import RADON_MODELS, TOY_MODELS, Symbol, with_first_floor_share
from pooling.notation import model_markdown, pymc_model, symbol_table

SPECS = {**TOY_MODELS, **RADON_MODELS}


@pytest.fixture(scope="module")
def data_sets():
    return {
        "toy": two_sites(),
        "minnesota": radon_minnesota(),
        "states": radon_all_states().dropna(subset=["floor"]),
    }


def _data_for(name, data_sets):
    if name.startswith("toy"):
        return data_sets["toy"]
    if "states" in name or "three_levels" in name:
        return data_sets["states"]
    return with_first_floor_share(data_sets["minnesota"]) if name == "radon_contextual" else data_sets["minnesota"]


@pytest.mark.parametrize("name", SPECS)
def test_every_parameter_has_a_symbol_and_every_symbol_a_parameter(name, data_sets):
    spec = SPECS[name]
    model = spec.build(_data_for(name, data_sets))
    backend = pymc_model(model)
    assert spec.equations, f"{name} has no equations"
    mapped = {entry.name for entry in spec.symbols}
    free = {variable.name for variable in backend.free_RVs}
    assert free <= mapped, f"{name}: parameters without a symbol: {sorted(free - mapped)}"
    table = symbol_table(spec, model)  # raises for a symbol the model does not have
    assert len(table) == len(spec.symbols)
    assert not table["prior in the model"].str.contains("Unknown|_lkj").any(), table


def test_priors_are_read_from_the_model(data_sets):
    """The table shows what the built model holds: the spec's own priors, and Bambi's data-scaled defaults."""
    fixed = symbol_table(
        TOY_MODELS["toy_hierarchical_fixed_sd"], TOY_MODELS["toy_hierarchical_fixed_sd"].build(data_sets["toy"])
    )
    priors = dict(zip(fixed["symbol"], fixed["prior in the model"], strict=True))
    assert priors["$\\tau$"] == "Uniform(0.499, 0.501)"
    assert priors["$\\mu$"] == "Normal(0, 1)"
    assert priors["$u_j$"] == "Normal(0, $\\tau$)"
    assert priors["$\\sigma$"] == "HalfCauchy(5)"
    lkj = RADON_MODELS["radon_correlated_slopes"]
    row = symbol_table(lkj, lkj.build(data_sets["minnesota"])).set_index("symbol").loc["$L$", "prior in the model"]
    assert row == "LKJ(η = 2) on the correlations, each sd Exponential(rate 2)"  # as varying_slopes writes it


def test_a_symbol_the_model_lacks_is_refused(data_sets):
    spec = TOY_MODELS["toy_pooled"]
    wrong = dataclasses.replace(spec, symbols=(*spec.symbols, Symbol("x|site_sigma", "\\tau", "not in this model")))
    with pytest.raises(ValueError, match="x\\|site_sigma"):
        symbol_table(wrong, wrong.build(data_sets["toy"]))


def test_the_markdown_keeps_a_pipe_in_a_name_inside_its_cell(data_sets):
    spec = TOY_MODELS["toy_hierarchical"]
    text = model_markdown(spec, spec.build(data_sets["toy"]))
    assert "`x\\|site_sigma`" in text and text.count("$$") == 2 * len(spec.equations)
    assert text.startswith(f"`{spec.formula}`")
