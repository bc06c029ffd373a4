"""Argument checks shared by the public functions: each names the argument, the bad value and what it must be.

A value of the wrong kind (a string, None, a bool for a number) raises TypeError; a value of the right kind
outside its range (NaN, infinite, negative, too large) raises ValueError.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

MAX_ROWS = 10_000_000  # simulated points: far beyond any chapter, and well inside the memory of a laptop


def number(name: str, value, *, positive: bool = False, at_least: float | None = None) -> float:
    """`value` as a finite float; with `positive` it must be > 0, with `at_least` >= that bound."""
    if isinstance(value, np.ndarray) and value.ndim == 0:  # how Bambi stores a prior's arguments
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if at_least is not None and not value >= at_least:
        raise ValueError(f"{name} must be >= {at_least}, got {value!r}")
    return value


def whole_number(name: str, value, *, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum]: 3 and 3.0 pass, 2.5, "3", None and True do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or int(value) != value:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum:,}" if maximum is not None else ""
        raise ValueError(f"{name} must be a whole number >= {minimum}{upper}, got {value!r}")
    return int(value)


def probability(name: str, value, example: str = "0.94 for a 94% interval") -> float:
    """A probability strictly between 0 and 1: the coverage of an interval, unless `example` says what else."""
    value = number(name, value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1 ({example}), got {value!r}")
    return value


def coverage(name: str, value) -> float:
    """An interval's probability, from 0.01 to 0.9999: below, the interval is a point in floating point; above, its
    ends lie where no grid or sample reaches."""
    value = probability(name, value)
    if not 0.01 <= value <= 0.9999:
        raise ValueError(f"{name} must be from 0.01 to 0.9999 (0.94 for a 94% interval), got {value!r}")
    return value


def frame(name: str, data, columns: list[str]) -> pd.DataFrame:
    """A non-empty DataFrame holding `columns`, the numeric ones finite."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(data).__name__}")
    missing = [column for column in columns if column not in data.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing} (it has {list(data.columns)})")
    if data.empty:
        raise ValueError(f"{name} has no rows")
    return data


def finite_column(name: str, data: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column with no missing or infinite values, as floats."""
    values = data[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise TypeError(f"{name}[{column!r}] must be numeric, got dtype {values.dtype}")
    values = values.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        first = int(np.argmin(np.isfinite(values)))
        raise ValueError(f"{name}[{column!r}] has a missing or infinite value (position {first}): {values[first]}")
    return values


def array(name: str, values, *, positive: bool = False) -> np.ndarray:
    """A number or array of numbers (not strings or bools), all finite, and with `positive` all > 0."""
    try:
        kind = np.asarray(values).dtype.kind
    except ValueError:  # lists of different lengths
        kind = "ragged"
    if kind not in "iuf":
        raise TypeError(f"{name} must be numbers, got {_shown(values)}")
    values = np.asarray(values, dtype=float)
    violation = _first_violation(values, positive)
    if violation:
        requirement, index, value = violation
        where = f" (entry {index[0] if len(index) == 1 else tuple(index)})" if index else ""
        raise ValueError(f"{name} must be {requirement}, got {value!r}{where}")
    return values


SMALLEST_SCALE = 1e-150


def _first_violation(values: np.ndarray, positive: bool, scale: bool = False) -> tuple[str, list, float] | None:
    """The first requirement ("finite", then with `positive` "positive", then with `scale` "from 1e-150 to 1e150")
    an entry of `values` breaks, that entry's index (empty for a number) and its value; None if all entries meet
    them. A prior's scale outside 1e-150..1e150 has a square (a variance) that float64 rounds to 0 or infinity, so
    the model's log density is -inf."""
    requirements = (
        (~np.isfinite(values), "finite"),
        (positive & ~(values > 0), "positive"),
        (scale & ~((values >= SMALLEST_SCALE) & (values <= 1 / SMALLEST_SCALE)), "from 1e-150 to 1e150"),
    )
    for wrong, requirement in requirements:
        if np.any(wrong):
            index = np.argwhere(wrong)[0].tolist()
            return requirement, index, float(values[tuple(index)])
    return None


def instance(name: str, value, kind: type):
    """`value`, if it is a `kind`."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {_shown(value)}")
    return value


def _shown(value) -> str:
    """A value for an error message: its repr, cut short, so a message stays a line or two."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}… ({type(value).__name__})"


def folder(name: str, path, fix: str) -> Path:
    """`path` as a Path to an existing folder; `fix` says what to do instead (a typo must not create a new folder)."""
    if not isinstance(path, str | Path):
        raise TypeError(f"{name} must be a path to a folder, got {_shown(path)}")
    path = Path(path)
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "does not exist"
        raise ValueError(f"{name} {path} {problem}: {fix}")
    return path


def slope_groups(statistics: pd.DataFrame, minimum_points: int) -> None:
    """Each group of `shrinkage.sufficient_statistics` has an identified slope (x not all zero), at least
    `minimum_points` points, and values small enough to compute with."""
    values = statistics[["sum_x_squared", "slope", "rss"]].to_numpy(float)
    unidentified = ~(np.isfinite(values[:, 0]) & (values[:, 0] > 0))
    too_few = statistics["n"].to_numpy() < minimum_points
    too_large = ~np.isfinite(values[:, 1:]).all(axis=1)
    bad = np.flatnonzero(unidentified | too_few | too_large)
    if not bad.size:
        return
    first, name = bad[0], statistics.index[bad[0]]
    if unidentified[first]:
        raise ValueError(f"data: x is all zero (or overflows) in group {name!r}, so its slope is not identified")
    if too_few[first]:
        count = int(statistics["n"].iloc[first])
        raise ValueError(f"data: group {name!r} has {count} point; each group needs {minimum_points} or more")
    raise ValueError(f"data: the values in group {name!r} are too large to compute with; rescale them")


# ---------------------------------------------------------------------------------------------------------------
# What `fitting.fit` accepts: the data a model spec uses, and its priors.


def formula_columns(spec) -> list[str]:
    """The columns of the data a model spec uses, in the order its formula names them.

    A Bambi formula (and a distributional one, such as `sigma ~ 0 + site`, whose left side is a parameter) is read
    by formulae. A hand-written model's `formula` only describes it: its columns are not known before its builder
    runs, so this returns the words of that description, which `model_data` keeps where they name columns.
    """
    import formulae

    if spec.builder is not None:
        return list(dict.fromkeys(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", spec.formula)))
    names = set(formulae.model_description(spec.formula).var_names)
    if spec.distributional:
        parameter = spec.distributional.split("~")[0].strip()
        names |= set(formulae.model_description(spec.distributional).var_names) - {parameter}
    text = f"{spec.formula} {spec.distributional or ''}"
    return sorted(names, key=lambda name: (text.find(name), name))


# Bambi families whose response is a category, not a number.
CATEGORY_FAMILIES = {"bernoulli", "categorical", "cumulative", "sratio"}


def described(spec) -> str:
    """A model spec for an error message: its name and formula."""
    return f"model {spec.name!r} ({spec.formula}{'; ' + spec.distributional if spec.distributional else ''})"


def missing_column(data: pd.DataFrame, column: str, spec) -> ValueError:
    """The error for a column that `spec` uses and `data` lacks."""
    return ValueError(f"data has no column {column!r}, which {described(spec)} uses; its columns: {list(data.columns)}")


def model_data(data, spec) -> pd.DataFrame:
    """`data` as `spec` can be fitted to it: a DataFrame with rows and every column the formula uses, none of them
    missing or infinite, and no numbers stored as text (which a formula reads as a categorical of as many levels
    as distinct values). Each error names the column, the model's formula and the fix."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    model = described(spec)
    needed = 1 if spec.builder else 2  # Bambi fails on a single row
    if len(data) < needed:
        raise ValueError(f"data has {len(data)} row{'s' * (len(data) != 1)}: {model} needs at least {needed}")
    columns = formula_columns(spec)
    if spec.builder is None:
        missing = [column for column in columns if column not in data.columns]
        if missing:
            raise missing_column(data, missing[0], spec)
    else:  # a hand-written model: the words of its description that are columns (`fit` names a missing one)
        columns = [column for column in columns if column in data.columns]
    response = spec.formula.split("~")[0].strip()
    for column in columns:
        values = data[column]
        role = f"the response of {model}" if column == response else f"used by {model}"
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            present = values.dropna()
            if len(present) and pd.to_numeric(present, errors="coerce").notna().all():
                raise TypeError(
                    f"data[{column!r}] ({role}) holds numbers stored as text (dtype {values.dtype}, e.g. "
                    f"{present.iloc[0]!r}), which the formula would read as a categorical with {present.nunique()} "
                    f"levels. Convert it: data[{column!r}] = pd.to_numeric(data[{column!r}]) "
                    "(or make it a pd.Categorical if you mean categories)."
                )
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if column == response and not numeric and spec.family not in CATEGORY_FAMILIES:
            raise TypeError(
                f"data[{column!r}] ({role}) holds categories (dtype {values.dtype}, e.g. {values.iloc[0]!r}), but a "
                f"{spec.family!r} family models numbers: convert it, or use a family for categories, such as "
                "'bernoulli' or 'categorical'"
            )
        absent = values.isna().to_numpy()
        if numeric:
            absent = absent | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if absent.any():
            first, count = int(np.argmax(absent)), int(absent.sum())
            missing = pd.isna(values.iloc[first])
            value = "missing (NaN)" if missing else f"{values.iloc[first]}"
            others = f" and {count - 1} other rows" if count > 1 else ""
            fix = f"drop or fill such rows first, e.g. data.dropna(subset=[{column!r}])" if missing else "fix it"
            raise ValueError(f"data[{column!r}] ({role}) is {value} in row {data.index[first]!r}{others}: {fix}")
    return data


# Arguments of a prior that must be positive wherever a distribution has them: scales, rates, degrees of freedom
# and shapes (sigma, HalfCauchy's and Gamma's beta, Exponential's lam, StudentT's nu, Laplace's b, ...), except
# where the same name is a location or a skewness.
POSITIVE_PRIOR_ARGUMENTS = {"sigma", "tau", "beta", "lam", "nu", "b", "s", "eta", "kappa", "alpha"}
REAL_PRIOR_ARGUMENTS = {("Cauchy", "alpha"), ("SkewNormal", "alpha"), ("Wald", "alpha")}


def priors(priors, family: str = "gaussian") -> None:
    """Every prior of a model spec is one a sampler can draw from: its numbers finite, positive where the
    distribution needs it (POSITIVE_PRIOR_ARGUMENTS) and lower below upper, down to its hyperpriors; a group term's
    sd has a prior of its own; only a parameter of the Bambi `family` (sigma) is given as a constant.

    `priors` maps a term (or a family parameter such as "sigma") to a `bambi.Prior`, a constant (a fixed sigma)
    or, for a parameter with its own formula, a mapping of that formula's terms to priors.
    """
    if not isinstance(priors, Mapping):
        raise TypeError(f"priors must map terms to bambi.Prior, got {_shown(priors)}")
    parameters = _family_parameters(family)
    for term, prior in priors.items():
        if isinstance(prior, Mapping):
            for inner, inner_prior in prior.items():
                _prior(f"{term}: {inner}", inner_prior, inner_prior, "")
            continue
        is_prior = hasattr(prior, "args")
        if not is_prior and parameters is not None and term not in parameters:
            raise TypeError(
                f"the prior on {term!r} is {_shown(prior)}: only a parameter of the {family} family "
                f"({', '.join(sorted(parameters))}) takes a constant; give {term!r} a bambi.Prior"
            )
        if is_prior and "|" in str(term) and not any(hasattr(value, "args") for value in prior.args.values()):
            raise ValueError(
                f"the prior on {term!r}, {prior}, needs a prior on its sigma (the sd of a group term is a parameter), "
                "e.g. bmb.Prior('Normal', mu=0, sigma=bmb.Prior('HalfNormal', sigma=1))"
            )
        _prior(term, prior, prior, "")


def _family_parameters(family) -> set[str] | None:
    """The parameters of a built-in Bambi family besides its mean (sigma, nu, ...); None for any other family."""
    from bambi.defaults import get_builtin_family

    try:
        return set(get_builtin_family(family).auxiliary_parameters)
    except Exception:  # noqa: BLE001 (a custom family object, or a name Bambi will refuse itself)
        return None


def _prior(term: str, whole, prior, path: str) -> None:
    """Check one prior (or constant) of `term`, `path` naming where it sits inside the term's prior `whole`."""
    if hasattr(prior, "name") and hasattr(prior, "args"):  # a bambi.Prior
        arguments = dict(prior.args)
        for argument, value in arguments.items():
            _prior(term, whole, value, f"{path}.{argument}" if path else argument)
        if "lower" in arguments and "upper" in arguments and not hasattr(arguments["upper"], "args"):
            if not np.all(np.asarray(arguments["lower"], float) < np.asarray(arguments["upper"], float)):
                raise ValueError(f"the prior on {term!r}, {whole}, needs lower < upper")
        return
    if hasattr(prior, "owner"):  # a PyTensor variable
        return
    if np.asarray(prior).dtype.kind not in "iuf":
        label = f"the prior on {term!r}, {whole}, has {path}=" if path else f"the prior on {term!r} is "
        raise TypeError(f"{label}{_shown(prior)}, not a number")
    argument = path.rsplit(".", 1)[-1] if path else term
    distribution = getattr(_owner(whole, path), "name", None)
    positive = argument in POSITIVE_PRIOR_ARGUMENTS and (distribution, argument) not in REAL_PRIOR_ARGUMENTS
    violation = _first_violation(np.asarray(prior, float), positive, scale=positive)
    if violation:
        requirement, index, value = violation
        entry = f"[{', '.join(map(str, index))}]" if index else ""
        label = f"the prior on {term!r}, {whole}, has {path}{entry}" if path else f"the prior on {term!r}{entry} is"
        kind = f"a {distribution}'s {argument}" if distribution else argument
        fix = " (a scale, a rate or a shape); give a positive value" if requirement == "positive" else ""
        raise ValueError(f"{label}{'=' if path else ' '}{value!r}: {kind} must be {requirement}{fix}")


def _owner(whole, path: str):
    """The prior inside `whole` that holds the argument at `path` ("sigma.sigma": the hyperprior on sigma)."""
    owner = whole
    for step in path.split(".")[:-1] if path else []:
        owner = owner.args[step]
    return owner if path else None


def prior_terms(priors: Mapping, model, model_text: str) -> None:
    """Every prior names a term of the built Bambi `model` or a parameter of its family: Bambi ignores any other
    name without a word and uses its default prior instead. `model_text` names the model in the message."""
    parent = model.family.likelihood.parent
    terms = {name: list(getattr(component, "terms", {})) for name, component in model.components.items()}
    shared = ["common", "group_specific"]  # Bambi's names for all common and all group-specific terms at once
    known = terms[parent] + list(model.components) + shared
    for name, prior in priors.items():
        if name not in known:
            raise ValueError(
                f"priors[{name!r}] names no term of {model_text}, so Bambi would ignore it and use its default prior. "
                f"The model's terms: {terms[parent]}; its family's parameters: {list(model.components)}"
            )
        if isinstance(prior, Mapping):  # the terms of a parameter's own formula
            component = parent if name == parent else name
            unknown = [inner for inner in prior if inner not in terms[component] + shared]
            if unknown:
                raise ValueError(
                    f"priors[{name!r}][{unknown[0]!r}] names no term of {name}'s formula, so Bambi would ignore it: "
                    f"its terms are {terms[component]}"
                )


def built_priors(model, given: Mapping, model_text: str) -> None:
    """The priors of a built Bambi `model`, Bambi's own defaults included, pass `priors`: Bambi scales its
    defaults by the data's sd, so a constant response gives them a scale of 0, which the sampler cannot use."""
    for name, component in model.components.items():
        terms = getattr(component, "terms", None)
        built = {name: component.prior} if terms is None else {term: value.prior for term, value in terms.items()}
        for term, prior in built.items():
            try:
                _prior(term, prior, prior, "")
            except ValueError as error:
                if term in given or name in given:
                    raise
                raise ValueError(
                    f"{error}. It is Bambi's default prior for {model_text}, scaled by the data's sd: is the "
                    "response, or a predictor within some group, constant?"
                ) from None


# ---------------------------------------------------------------------------------------------------------------
# What the exact engines (`shrinkage`) accept.

EXACT_FIX = "sample it with pooling.fitting.fit instead"


def gaussian_model(model, engine: str, sigma_formula: bool = False) -> None:
    """A Bambi model of the kind `engine` solves exactly: a Gaussian family with the identity link and one sigma
    (a prior or a constant, not a formula of its own, unless `sigma_formula`: the engine reads it itself)."""
    import bambi

    if not isinstance(model, bambi.Model):
        hint = ": pass its .model" if isinstance(getattr(model, "model", None), bambi.Model) else ""
        raise TypeError(f"model must be a bambi.Model (a spec's .build(data)), got {type(model).__name__}{hint}")
    family, parent = model.family.name, model.family.likelihood.parent
    link = model.family.link[parent].name
    if family != "gaussian" or link != "identity":
        raise ValueError(
            f"{engine} solves Gaussian models with the identity link; {model.formula.main} has family {family!r} "
            f"(link {link!r}), whose exact posterior it cannot compute: {EXACT_FIX}"
        )
    modelled = [name for name, component in model.components.items() if name != parent and hasattr(component, "terms")]
    if modelled and not (sigma_formula and modelled == ["sigma"]):
        raise ValueError(
            f"{engine} needs one {modelled[0]} for every observation; {model.formula.main} gives {modelled[0]} a "
            f"formula of its own ({'; '.join(model.formula.additionals)}): {EXACT_FIX}"
        )


def varying_intercept_model(model) -> None:
    """A Bambi model `y ~ [1 +] terms [+ (1 | group)]` that `shrinkage.varying_intercept_posterior` solves:
    Gaussian, numeric or categorical common terms with Normal priors, and at most one varying intercept, beside an
    intercept, with a Normal(0, tau) prior."""
    engine = "varying_intercept_posterior"
    gaussian_model(model, engine)
    shape = "y ~ [1 +] terms [+ (1 | group)] with at most one group term"
    formula = model.formula.main
    component = model.components[model.family.likelihood.parent]
    groups, common = component.group_specific_terms, component.common_terms
    if len(groups) > 1:
        raise ValueError(f"the exact engine handles {shape}; {formula} has group terms {list(groups)}")
    if groups and component.intercept_term is None:
        raise ValueError(f"the exact engine handles {shape}; {formula} has no intercept beside its group term")
    for group_name, group_term in groups.items():
        if group_term.kind != "intercept":
            raise ValueError(
                f"the exact engine handles {shape}; {formula}'s group term {group_name} is a varying slope, not "
                "(1 | group)"
            )
        deviation = group_term.prior
        if deviation.name != "Normal" or float(deviation.args["mu"]) != 0:
            raise ValueError(f"the exact engine needs a Normal(0, tau) prior on {group_name}, which has {deviation}")
    unhandled = [name for name in component.terms if name not in common and name not in groups]
    unhandled = [name for name in unhandled if name != "Intercept"]
    unhandled += [name for name, term in common.items() if term.kind not in ("numeric", "categoric")]
    if unhandled:
        raise ValueError(
            f"the exact engine handles numeric and categorical terms; {formula} has {unhandled} (an interaction, a "
            f"spline or an offset): code it as numeric columns, or {EXACT_FIX}"
        )
    intercept = {"Intercept": component.intercept_term.prior} if component.intercept_term is not None else {}
    for name, prior in (intercept | {name: term.prior for name, term in common.items()}).items():
        if prior.name != "Normal":
            raise ValueError(f"the exact engine needs Normal priors on common terms; {name} has {prior}")


def grid_settings(probability_value, grid_points, passes) -> tuple[float, int, int]:
    """The interval probability, the grid points per scale and the passes of a grid engine, checked."""
    # The grid holds grid_points^2 x groups values: 2000 per scale is far past any accuracy the book needs.
    return (
        coverage("probability", probability_value),
        whole_number("grid_points", grid_points, minimum=2, maximum=2000),
        whole_number("passes", passes, maximum=10),
    )


def gaussian_design(y, fixed_design, prior_mean, prior_sd, group_design, combinations, names) -> None:
    """The arrays of `shrinkage.gaussian_grid_posterior` fit together: y finite with at least one value, a row of
    X and of Z per value, a prior mean and a positive prior sd per column of X, a column of `combinations` per
    coefficient (X's, then Z's) and a name per combination."""
    y = array("y", y)
    if y.ndim != 1 or not y.size:
        raise ValueError(f"y must be a non-empty list of numbers, got an array of shape {y.shape}")
    fixed, group = array("fixed_design", fixed_design), array("group_design", group_design)
    for name, design, dimensions in (("fixed_design", fixed, (1, 2)), ("group_design", group, (2,))):
        if design.ndim not in dimensions or design.shape[0] != len(y):
            raise ValueError(f"{name} must have a row per value of y ({len(y)}), got an array of shape {design.shape}")
    columns = 1 if fixed.ndim == 1 else fixed.shape[1]
    for name, values in (("fixed_prior_mean", prior_mean), ("fixed_prior_sd", prior_sd)):
        values = array(name, values, positive=name.endswith("sd")).reshape(-1)
        if len(values) != columns:
            raise ValueError(f"{name} must have one value per column of fixed_design ({columns}), got {len(values)}")
    combinations = array("combinations", combinations)
    coefficients = columns + group.shape[1]
    if combinations.ndim != 2 or combinations.shape[1] != coefficients:
        raise ValueError(
            f"combinations must have a column per coefficient ({columns} fixed + {group.shape[1]} group = "
            f"{coefficients}), got an array of shape {combinations.shape}"
        )
    if (
        not isinstance(names, list | tuple | np.ndarray | pd.Index)
        or len(names) != len(combinations)
        or not all(isinstance(name, str) for name in names)
    ):
        raise ValueError(f"names must be a list of one name per combination ({len(combinations)}), got {_shown(names)}")
