"""Models as the text writes them: formula, equations, and each name in the posterior mapped to its symbol and prior.

The book's one notation: $\\mathcal{N}(m, s)$ is a normal distribution with mean $m$ and **standard deviation** $s$
(as PyMC's `Normal(mu, sigma)`), never a variance. Each `ModelSpec` carries its equations and its `Symbol`s; the
priors in the table are read from the built PyMC model, never typed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
from IPython.display import Markdown, display
from pymc.printing import str_for_dist
from pytensor.graph.basic import Constant
from pytensor.graph.traversal import ancestors

from pooling.models import ModelSpec, PymcModel

NOTATION = (
    "$\\mathcal{N}(m, s)$ is a normal distribution with mean $m$ and standard deviation $s$ (PyMC's "
    "`Normal(mu, sigma)`); half-distributions such as HalfNormal$(s)$ are folded at 0 and take the scale $s$."
)


def pymc_model(model) -> pm.Model:
    """The PyMC model behind a built Bambi model or a hand-written `PymcModel`."""
    if isinstance(model, PymcModel):
        return model.backend_model
    if model.backend is None or getattr(model.backend, "model", None) is None:
        model.build()
    return model.backend.model


def _number(value: float) -> str:
    return f"{value:.3g}".replace("-", "−")


# A parameter with more distinct values than this (a prior scaled per column, as Bambi scales the 85 county
# intercepts of `0 + county`) is shown by its range, not value by value.
LISTED_VALUES = 3


def _parameter(value, symbols: dict[str, str], named: dict, by: str = "") -> str:
    """One parameter of a distribution: a number, the symbol of the model variable it is, or f(those it uses); a
    parameter that differs between the entries of a vector variable, its values or their range, followed by `by`
    (" by county")."""
    if isinstance(value, Constant) or not any(node in named for node in ancestors([value])):
        data = np.unique(np.asarray(value.eval(), dtype=float))
        if data.size == 1:
            return _number(float(data[0]))
        if data.size <= LISTED_VALUES:
            return "(" + ", ".join(map(_number, data)) + ")"
        return f"{_number(data[0])} to {_number(data[-1])}{by}"
    used = [named[node] for node in ancestors([value]) if node in named]
    shown = [f"${symbols[name]}$" if name in symbols else f"`{name}`" for name in dict.fromkeys(used)]
    return shown[0] if len(shown) == 1 else "f(" + ", ".join(shown) + ")"


def prior_of(variable, model: pm.Model, symbols: dict[str, str]) -> str:
    """A free variable's distribution as the model states it, in the book's notation, e.g. `Normal(0, $\\tau$)`."""
    op = variable.owner.op
    named = {model[name]: name for name in model.named_vars if name != variable.name}
    try:
        params = list(op.dist_params(variable.owner))
    except (AttributeError, NotImplementedError):
        return str_for_dist(variable, formatting="plain").split(" ~ ", 1)[1]
    name = op._print_name[0]
    if name == "_lkjcholeskycov":  # n, eta, the distribution of each sd
        _, eta, sd_dist = params
        sd_prior = prior_of(sd_dist, model, symbols) if sd_dist.owner else _parameter(sd_dist, symbols, named)
        return f"LKJ(η = {_parameter(eta, symbols, named)}) on the correlations, each sd {sd_prior}"
    if name == "Exponential":  # PyMC stores the scale; its users write the rate, `pm.Exponential("x", lam=2)`
        (scale,) = params
        (value,) = np.unique(np.asarray(scale.eval(), dtype=float))
        return f"Exponential(rate {_number(1 / value)})"
    if name == "Gamma":  # likewise (shape, scale) for `pm.Gamma("x", alpha=2, beta=0.1)`, beta the rate
        shape, scale = (float(np.unique(np.asarray(param.eval(), dtype=float))[0]) for param in params)
        return f"Gamma(shape {_number(shape)}, rate {_number(1 / scale)})"
    dims = model.named_vars_to_dims.get(variable.name) or ()
    by = f" by {dims[-1].split('_')[0]}" if dims else ""
    shown = [_parameter(param, symbols, named, by) for param in params]
    if name.startswith("Half") and name != "HalfStudentT" and shown[0] == "0":
        shown = shown[1:]  # PyMC's half-distributions carry a location, always 0 here
    return f"{name}({', '.join(shown)})"


@dataclass(frozen=True)
class CentredIntercept:
    """The intercept of a Bambi model that centres its predictors (`center_predictors=True`, its default).

    Bambi samples the intercept of the centred design, the expected response at the predictors' means, with the
    prior `sampled`, and reports the intercept at predictors 0: the sampled one minus sum(mean_k * coefficient_k).
    With Normal priors on the intercept and the coefficients that is Normal(`mean`, `sd`), the prior of the reported
    intercept; `mean` and `sd` are None when a coefficient's prior is not Normal. `centres` holds each common term's
    column means, by term.
    """

    sampled: str
    centres: dict
    mean: float | None
    sd: float | None

    @property
    def implied(self) -> str | None:
        """The prior of the reported intercept, as the symbol tables write a prior, e.g. "Normal(1.26, 2.42)"."""
        return None if self.mean is None else f"Normal({_number(self.mean)}, {_number(self.sd)})"

    def describe(self) -> str:
        """The table cell: the implied prior and what Bambi's own prior is on."""
        where = " and ".join(
            f"{name} ({', '.join(map(_number, np.atleast_1d(values)))})" for name, values in self.centres.items()
        )
        on = f"{self.sampled} on the intercept at the means of {where}"
        return f"{self.implied}: implied by {on}" if self.implied else f"{on}, not on the reported intercept"


def centred_intercept(model, name: str = "Intercept") -> CentredIntercept | None:
    """How a Bambi model's reported intercept `name` relates to the one it samples, with the implied prior read off
    the built model; None when the two are the same (no centring, no common term, or a hand-written PyMC model)."""
    if isinstance(model, PymcModel) or not model.center_predictors:
        return None
    backend = pymc_model(model)
    for component in model.components.values():
        intercept = getattr(component, "intercept_term", None)
        if intercept is None or not component.common_terms or (intercept.alias or intercept.name) != name:
            continue
        variable = backend[name]
        means, sds, centres = [], [], {}
        for term in component.common_terms.values():
            columns = np.asarray(term.data, dtype=float).reshape(len(term.data), -1)
            centres[term.alias or term.name] = columns.mean(0)
            coefficient = backend[term.alias or term.name]
            normal = coefficient.owner.op._print_name[0] == "Normal"
            if normal:
                mu, sigma = (
                    np.asarray(value.eval(), float) for value in coefficient.owner.op.dist_params(coefficient.owner)
                )
                means.append(np.broadcast_to(mu, columns.shape[1]))
                sds.append(np.broadcast_to(sigma, columns.shape[1]))
            else:
                means = sds = None
                break
        own_normal = variable.owner.op._print_name[0] == "Normal"
        sampled = prior_of(variable, backend, {})
        if means is None or not own_normal:
            return CentredIntercept(sampled, centres, None, None)
        own_mu, own_sigma = (float(value.eval()) for value in variable.owner.op.dist_params(variable.owner))
        centre = np.concatenate(list(centres.values()))
        mean = own_mu - float(centre @ np.concatenate(means))
        sd = float(np.sqrt(own_sigma**2 + (centre**2) @ np.concatenate(sds) ** 2))
        return CentredIntercept(sampled, {term: values.round(6) for term, values in centres.items()}, mean, sd)
    return None


def symbol_table(spec: ModelSpec, model, posterior=None) -> pd.DataFrame:
    """Each name of the spec's `symbols`: its symbol, what it is, and its prior as the built model states it.

    Raises ValueError if a name is neither a variable of the model nor one of the spec's `combined` sums, so a
    table can never map a name the posterior does not have. Given the fit's `posterior`, every name must be in it,
    except the standardised effects of Bambi's non-centred terms (`1|county_offset`), which Bambi samples and then
    drops from the posterior: their row says so.
    """
    backend = pymc_model(model)
    kept = set(posterior.data_vars) if posterior is not None else None
    symbols = {entry.name: entry.tex for entry in spec.symbols}
    free = {variable.name: variable for variable in backend.free_RVs}
    derived = {variable.name for variable in backend.deterministics} | {name for name, _ in spec.combined}
    rows = []
    for entry in spec.symbols:
        centred = centred_intercept(model, entry.name) if entry.name in free else None
        if centred is not None:
            prior = centred.describe()
        elif entry.name in free:
            prior = prior_of(free[entry.name], backend, symbols)
        elif entry.name in derived:
            prior = "derived from the others"
        else:
            raise ValueError(f"{spec.name}: the symbol table names {entry.name!r}, which is not in the model")
        # a pipe table's cell: Pandoc and the preview both unescape the pipe of `x|site`
        name = "`" + entry.name.replace("|", "\\|") + "`"
        if kept is not None and entry.name not in kept:
            if not (entry.name.endswith("_offset") and not isinstance(model, PymcModel)):
                raise ValueError(f"{spec.name}: the symbol table names {entry.name!r}, which is not in the posterior")
            name += " (sampled, not kept: Bambi drops it)"
        rows.append(
            {
                "name in the posterior": name,
                "symbol": f"${entry.tex}$",
                "what it is": entry.meaning,
                "prior in the model": prior,
            }
        )
    return pd.DataFrame(rows)


def model_markdown(spec: ModelSpec, model, posterior=None) -> str:
    """A model as the text introduces it: its formula, its equations (one display line each, so that a phone
    wraps between them) and its table of symbols."""
    equations = "\n\n".join(f"$$\n{line}\n$$" for line in spec.equations)
    table = symbol_table(spec, model, posterior).to_markdown(index=False)
    return f"`{spec.formula}`\n\n{equations}\n\n{table}\n"


def show_model(result=None, *, spec: ModelSpec | None = None, model=None) -> None:
    """Display a fit's model (a `fitting.Fit`) in a chapter, as `model_markdown` writes it, its names checked
    against the fit's posterior; or a model that is not sampled (its exact posterior is computed instead), from its
    `spec` and the built `model`."""
    if result is not None:
        spec, model, posterior = result.spec, result.model, result.idata.posterior
    else:
        posterior = None
    display(Markdown(model_markdown(spec, model, posterior)))


def priors(spec: ModelSpec, model) -> dict[str, str]:
    """Each symbol's prior as the built model states it, by its name in the posterior: for prose that quotes a
    prior, e.g. `priors(spec, model)["1|county_sigma"]` is "HalfNormal(2.24)". A centred Bambi intercept gets the
    prior implied for the intercept the model reports (`centred_intercept`)."""
    table = symbol_table(spec, model)
    read = dict(zip((entry.name for entry in spec.symbols), table["prior in the model"], strict=True))
    for name in read:
        centred = centred_intercept(model, name)
        if centred is not None and centred.implied:
            read[name] = centred.implied
    return read
