"""Fitting: one `fit` entry point that samples, checks diagnostics and caches the result on disk."""

from __future__ import annotations

import fcntl
import hashlib
import html
import json
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, fields
from importlib.metadata import version
from pathlib import Path

import arviz as az
import bambi as bmb
import numpy as np
import pandas as pd
import xarray as xr

from pooling import checks
from pooling.data import PROJECT_ROOT
from pooling.files import (
    WriteError,
    atomic_write,
    atomic_write_text,
    describe_write_error,
    has_free_space,
    move_aside,
    notify,
    sweep_partials_once,
)
from pooling.models import ModelSpec, PymcModel

SEED = 20200624  # the day the original notebook was posted
R_HAT_MAX = 1.01
ESS_BULK_MIN = 400
ESS_TAIL_MIN = 400  # intervals are read off the tails: their ESS must pass the same line as the bulk's
# The book's one interval convention: central (equal-tailed) 94% intervals, for posteriors, exact posteriors,
# predictions and least squares alike; central intervals are what the exact engine and Student's t give.
INTERVAL_PROBABILITY = 0.94
INTERVAL_LABEL = "94% central interval"
DEFAULT_SAMPLER = "nutpie"
# nutpie's mass-matrix adaptation settles in a few hundred steps (its own default is 300). With 500 every model but
# the LKJ one passes the gate, at no loss in ESS per second against 1000 (benchmarks/results.md); a model that
# needs more passes `tune` to `fit`.
SAMPLER_SETTINGS = {"draws": 1000, "tune": 500, "chains": 4, "target_accept": 0.8}
CACHE_FORMAT = 3  # bump when the layout of cached files changes (3: lean entries, see `_lean`)
LIBRARIES = ("bambi", "pymc", "pytensor", "arviz", "numpy", "pandas", "nutpie")


class DiagnosticsError(RuntimeError):
    """A fit failed its convergence checks; the message names the model and the failing check."""


# E-BFMI (energy Bayesian fraction of missing information, Betancourt 2016) below this in a chain says that the
# momentum resampling explores the energy distribution poorly, the mark of a funnel. Reported beside the gate, not
# part of it: the gate's r_hat and ESS are what the book's numbers rest on.
BFMI_LOW = 0.3


@dataclass(frozen=True)
class Diagnostics:
    """The worst value of each check over every parameter of the posterior, and which parameter it was, and the
    lowest E-BFMI over the chains (NaN when the sampler records no energy)."""

    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    worst_r_hat: str
    worst_ess: str
    worst_tail_ess: str
    bfmi_min: float = float("nan")

    def problems(self, allow_divergences: bool = False) -> list[str]:
        """The gate's failing checks, each with its value, its line and the worst parameter when known."""

        def worst(name: str) -> str:
            return f" (worst: {name})" if name else ""

        found = []
        if not self.r_hat_max <= R_HAT_MAX:
            found.append(f"r_hat {self.r_hat_max:.3f} > {R_HAT_MAX}{worst(self.worst_r_hat)}")
        if not self.ess_bulk_min >= ESS_BULK_MIN:
            found.append(f"bulk ESS {self.ess_bulk_min:.0f} < {ESS_BULK_MIN}{worst(self.worst_ess)}")
        if not self.ess_tail_min >= ESS_TAIL_MIN:
            found.append(f"tail ESS {self.ess_tail_min:.0f} < {ESS_TAIL_MIN}{worst(self.worst_tail_ess)}")
        if self.divergences and not allow_divergences:
            found.append(f"{self.divergences} divergent transitions")
        return found

    def verdict(self) -> str:
        """The gate column of the diagnostics tables: "passes", or "fails: " and every failing check."""
        problems = self.problems()
        return "fails: " + "; ".join(problems) if problems else "passes"


# The column of the diagnostics tables and the appendix's ledger that applies the gate, named by its lines.
GATE_COLUMN = f"gate (r_hat ≤ {R_HAT_MAX}, bulk ESS ≥ {ESS_BULK_MIN}, tail ESS ≥ {ESS_TAIL_MIN}, no divergences)"


@dataclass
class Fit:
    """A fitted model: its spec, the Bambi model, the posterior and how the sampling went."""

    spec: ModelSpec
    model: bmb.Model
    idata: az.InferenceData
    diagnostics: Diagnostics
    sampler: str
    settings: dict
    seed: int
    fit_seconds: float
    from_cache: bool
    key: str

    def summary(self, var_names=None) -> pd.DataFrame:
        """Mean, sd and 94% central interval (columns "3%" and "97%") of each parameter, with MCSE and diagnostics."""
        low, high = central_quantiles()
        statistics = {
            "mean": np.mean,
            "sd": np.std,
            "3%": lambda values: np.quantile(values, low),
            "97%": lambda values: np.quantile(values, high),
        }
        # round_to="none": ArviZ reads round_to=None as "3 decimals", which would round MCSEs to 0.003.
        table = az.summary(
            self.idata, var_names=var_names, kind="diagnostics", stat_funcs=statistics, extend=True, round_to="none"
        )
        return table[[*statistics, "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]]

    def report(self) -> dict:
        """One row for the diagnostics tables and the reproducibility appendix, unrounded (`REPORT_DIGITS`)."""
        return {
            "model": self.spec.name,
            "formula": self.spec.formula + (f"; {self.spec.distributional}" if self.spec.distributional else ""),
            "sampler": self.sampler,
            "chains": self.settings["chains"],
            "tune": self.settings["tune"],
            "draws": self.settings["draws"],
            "target accept": self.settings["target_accept"],
            "r_hat max": self.diagnostics.r_hat_max,
            "bulk ESS min": self.diagnostics.ess_bulk_min,
            "tail ESS min": self.diagnostics.ess_tail_min,
            "E-BFMI min": self.diagnostics.bfmi_min,
            "divergences": self.diagnostics.divergences,
            GATE_COLUMN: self.diagnostics.verdict(),
            "fit seconds": self.fit_seconds,
        }


REPORT_COLUMNS = (
    "model",
    "formula",
    "sampler",
    "chains",
    "tune",
    "draws",
    "target accept",
    "r_hat max",
    "bulk ESS min",
    "tail ESS min",
    "E-BFMI min",
    "divergences",
    GATE_COLUMN,
    "fit seconds",
)  # the keys of `Fit.report`, in order
# The digits each measured column of a report is shown with, in tables and in prose alike (`chapter.number`).
REPORT_DIGITS = {"r_hat max": 3, "bulk ESS min": 0, "tail ESS min": 0, "E-BFMI min": 2, "fit seconds": 1}


def formatted_report(row: dict) -> dict:
    """A report row as the tables show it: each measured column formatted by `chapter.number` with its
    `REPORT_DIGITS`, so a table and the prose beside it round alike (an E-BFMI the sampler did not record is blank).
    """
    from pooling.chapter import number  # chapter imports this module

    formatted = row | {
        column: "" if value is None or np.isnan(value) else number(value, REPORT_DIGITS[column])
        for column, value in row.items()
        if column in REPORT_DIGITS
    }
    checked = ("r_hat max", "bulk ESS min", "tail ESS min", "divergences")
    if GATE_COLUMN not in row and all(column in row for column in checked):
        # a ledger entry recorded before the gate had its column: the gate applied to its numbers
        formatted[GATE_COLUMN] = Diagnostics(*(row[column] for column in checked), "", "", "").verdict()
    return formatted


def central_quantiles(probability: float = INTERVAL_PROBABILITY) -> tuple[float, float]:
    """The quantile levels that bound a central interval: (0.03, 0.97) for the book's 94%."""
    return (1 - probability) / 2, (1 + probability) / 2


def library_versions() -> dict[str, str]:
    return {name: version(name) for name in LIBRARIES} | {"python": platform.python_version()}


def data_fingerprint(data: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update(repr([(column, str(dtype)) for column, dtype in data.dtypes.items()]).encode())
    for column in data.columns:
        if isinstance(data[column].dtype, pd.CategoricalDtype):
            digest.update(repr(list(data[column].cat.categories)).encode())
    digest.update(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def cache_key(spec: ModelSpec, data: pd.DataFrame, sampler: str, settings: dict, seed: int) -> str:
    """The hash of everything that changes a fit's draws.

    The pointwise log-likelihood is not part of it: it is never cached, only derived from the draws on request.
    """
    identity = {
        "format": CACHE_FORMAT,
        "model": spec.identity(),
        "data": data_fingerprint(data),
        "sampler": sampler,
        "settings": settings,
        "seed": seed,
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("POOLING_CACHE", PROJECT_ROOT / "_cache" / "fits"))


def add_combined(spec: ModelSpec, idata: az.InferenceData) -> None:
    """Add each of the spec's identified sums of terms to the posterior."""
    for name, parts in spec.combined:
        idata.posterior[name] = sum(idata.posterior[part] for part in parts)


def diagnose(idata: az.InferenceData) -> Diagnostics:
    """Worst r_hat, bulk ESS and tail ESS over every parameter of the posterior, and the count of divergences.

    Every parameter counts, the poorly identified parts of a `combined` sum too: a chapter may report any of them.
    """
    # Names ending in "__" are the sampler's unconstrained copies (nutpie keeps them), not parameters.
    var_names = [name for name in idata.posterior.data_vars if not name.endswith("__")]
    with np.errstate(invalid="ignore", divide="ignore"):  # constant entries divide by zero variance
        r_hat = az.rhat(idata, var_names=var_names)
        bulk = az.ess(idata, var_names=var_names, method="bulk")
        tail = az.ess(idata, var_names=var_names, method="tail")

    def worst(values, pick):
        # Constant entries (the unit diagonal of a correlation matrix) have no r_hat or ESS: skip them.
        reduce = np.nanmax if pick is max else np.nanmin
        finite = [(name, float(reduce(values[name]))) for name in values.data_vars if np.isfinite(values[name]).any()]
        return pick(finite, key=lambda item: item[1])

    (worst_r_hat, r_hat_max), (worst_bulk, bulk_min), (worst_tail, tail_min) = (
        worst(r_hat, max),
        worst(bulk, min),
        worst(tail, min),
    )
    divergences = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    bfmi = float(np.min(az.bfmi(idata))) if "energy" in idata.sample_stats else float("nan")
    return Diagnostics(r_hat_max, bulk_min, tail_min, divergences, worst_r_hat, worst_bulk, worst_tail, bfmi)


def _lean(idata: az.InferenceData) -> az.InferenceData:
    """Keep only what the book reads back: the draws after warmup, their sample stats and the observed data.

    Dropped: the warmup groups, the sampler's unconstrained copies (names ending in "__", e.g. `sigma_log__`) and
    Bambi's per-observation mean `mu` (half of a radon fit), which any prediction recomputes from the parameters.
    """
    for group in [name for name in idata.groups() if name.startswith("warmup_")]:
        del idata[group]
    unconstrained = [name for name in idata.posterior.data_vars if name.endswith("__")]
    per_observation = [name for name, values in idata.posterior.items() if "__obs__" in values.dims]
    idata.posterior = idata.posterior.drop_vars(unconstrained + per_observation)
    return idata


def add_log_likelihood(model, idata: az.InferenceData) -> None:
    """Add the pointwise log-likelihood that LOO needs (never cached: it is as large as the data times the draws)."""
    model.compute_log_likelihood(idata)
    _lean(idata)  # Bambi adds its per-observation `mu` back on the way


def _sample(model: bmb.Model, sampler: str, settings: dict, seed: int) -> az.InferenceData:
    options = dict(settings, random_seed=seed, progressbar=False, inference_method=sampler)
    if sampler == "pymc":
        options["cores"] = min(settings["chains"], os.cpu_count() or 1)
    with warnings.catch_warnings():
        # PyMC's own convergence warnings repeat what the gate below reports by name.
        warnings.filterwarnings("ignore", message=".*(rhat|r_hat|effective sample size|divergen).*")
        idata = model.fit(**options)
    return _lean(idata)


KEY_ATTRIBUTE = "pooling_cache_key"  # the cache key, stored inside each cached .nc file as well as in its sidecar
SIDECAR_FIELDS = {"key", "fit_seconds"}


class LedgerError(RuntimeError):
    """The record of fits is missing or incomplete; the message names the file and what to run."""


def _discard(path: Path, meta_path: Path, reason: str) -> None:
    """Remove a cache entry that cannot be trusted, and say so on the build's console."""
    notify(f"Refitting {path.name}: the cached entry {reason}.")
    for file in (path, meta_path):
        try:
            file.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache keeps the entry; it is never served, since its key does not match


def _load(path: Path, meta_path: Path, key: str):
    """Return (idata, metadata) from the cache, or None if absent or not verifiably this fit.

    An entry is served only when both its sidecar and the key stored inside the .nc file match `key`: a file
    copied over from another fit, a truncated file or a sidecar without its fields is discarded and refitted.
    """
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as error:
        _discard(path, meta_path, f"has an unreadable sidecar {meta_path.name} ({error})")
        return None
    if not isinstance(meta, dict) or not SIDECAR_FIELDS <= set(meta):
        _discard(path, meta_path, f"has a sidecar {meta_path.name} without the fields {sorted(SIDECAR_FIELDS)}")
        return None
    if meta["key"] != key:
        _discard(path, meta_path, "was made under another key")
        return None
    try:
        idata = az.from_netcdf(path)
        idata.load()
    except Exception as error:  # a corrupt entry is refitted, never trusted; HDF5 raises several kinds
        _discard(path, meta_path, f"is unreadable ({type(error).__name__}: {error})")
        return None
    stored_key = idata.posterior.attrs.get(KEY_ATTRIBUTE) if "posterior" in idata.groups() else None
    if stored_key is None:
        _discard(path, meta_path, "has no key stored inside (an older cache format), so it cannot be verified")
        return None
    if stored_key != key:
        _discard(path, meta_path, "holds another fit than its name says (the key stored inside does not match)")
        return None
    return idata, meta


def _without_derived(model, idata: az.InferenceData) -> az.InferenceData:
    """The fit as cached: without a hand-written model's deterministic variables (recomputed on load)."""
    derived = model.derived_variables() if isinstance(model, PymcModel) else []
    return az.InferenceData(
        **{group: idata[group] for group in idata.groups()} | {"posterior": idata.posterior.drop_vars(derived)}
    )


def _stored_size(idata: az.InferenceData) -> int:
    """Bytes of all the arrays a fit holds: what its .nc file needs, uncompressed."""
    return sum(idata[group].nbytes for group in idata.groups())


def _store_fit(path: Path, idata: az.InferenceData, key: str) -> bool:
    """Write a fit to the cache; if it cannot be written, say why in one line and carry on without caching."""
    idata.posterior.attrs[KEY_ATTRIBUTE] = key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not has_free_space(path.parent, _stored_size(idata)):
            notify(f"Fit {path.name} was not cached: too little free space in {path.parent}. Free some space.")
            return False
        atomic_write(path, lambda target: idata.to_netcdf(target))
    except OSError as error:
        reason = str(error) if isinstance(error, WriteError) else describe_write_error(path, error)
        notify(f"Fit {path.name} was not cached: {reason}")
        return False
    return True


def fit(
    spec: ModelSpec,
    data: pd.DataFrame,
    *,
    sampler: str = DEFAULT_SAMPLER,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    target_accept: float | None = None,
    seed: int = SEED,
    log_likelihood: bool = False,
    demonstrates_failure: bool = False,
    allow_divergences: bool = False,
    use_cache: bool = True,
) -> Fit:
    """Fit `spec` to `data`, or load the identical fit from the cache, then check its diagnostics.

    Sampler settings not given here are the spec's own `sampler_settings`, then the book's `SAMPLER_SETTINGS`.

    Raises DiagnosticsError when, for any parameter, r_hat > 1.01, bulk or tail ESS < 400, or there are
    divergences, unless the caller is `demonstrates_failure` (a chapter showing a failing fit on purpose, which
    then reports the problems instead) or `allow_divergences` for divergences alone. `log_likelihood=True` adds the
    pointwise log-likelihood (for LOO) to the returned posterior; it is computed from the draws, never cached.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    # Everything is checked before the model is sampled: a bad argument costs no sampling and names itself.
    data = checks.model_data(data, spec)
    checks.priors(spec.priors, spec.family)
    if not isinstance(sampler, str) or not sampler:
        raise TypeError(f"sampler must be the name of a Bambi inference method, e.g. 'nutpie', got {sampler!r}")
    given = {"draws": draws, "tune": tune, "chains": chains, "target_accept": target_accept}
    chosen = (
        SAMPLER_SETTINGS | spec.sampler_settings | {name: value for name, value in given.items() if value is not None}
    )
    settings = {
        "draws": checks.whole_number("draws", chosen["draws"]),
        "tune": checks.whole_number("tune", chosen["tune"], minimum=0),
        "chains": checks.whole_number("chains", chosen["chains"]),
        "target_accept": checks.probability("target_accept", chosen["target_accept"], TARGET_ACCEPT_EXAMPLE),
    }
    seed = checks.whole_number("seed", seed, minimum=0)
    model = _build(spec, data)
    key = cache_key(spec, data, sampler, settings, seed)
    path = cache_dir() / f"{spec.name}-{key[:16]}.nc"
    meta_path = path.with_suffix(".json")

    if use_cache:
        sweep_partials_once(path.parent)  # what a process killed while writing a fit left there
    cached = _load(path, meta_path, key) if use_cache else None
    if cached is not None:
        idata, meta = cached
        fit_seconds, from_cache = meta["fit_seconds"], True
        if isinstance(model, bmb.Model):
            model.build()  # what sampling would have done: predictions and prior checks need the built model
        if isinstance(model, PymcModel):
            model.add_derived_variables(idata)
    else:
        start = time.perf_counter()
        idata = _sample(model, sampler, settings, seed)
        fit_seconds, from_cache = time.perf_counter() - start, False
    # The cache holds the draws alone: the combined sums (below) and the log-likelihood are derived on each load.
    stored_fit = use_cache and (from_cache or _store_fit(path, _without_derived(model, idata), key))

    add_combined(spec, idata)
    if log_likelihood:
        add_log_likelihood(model, idata)
    # Diagnostics are computed once, when sampled (slow for many groups), and again for an entry stored under an
    # older gate: the draws are still good, only the checks changed.
    stored = meta.get("diagnostics") if from_cache else None
    if stored is not None and set(stored) == {field.name for field in fields(Diagnostics)}:
        diagnostics = Diagnostics(**stored)
    else:
        diagnostics = diagnose(idata)
    result = Fit(spec, model, idata, diagnostics, sampler, settings, seed, fit_seconds, from_cache, key)
    notify(path.name, kind="loaded" if from_cache else "sampled")
    if stored_fit and stored != asdict(diagnostics):
        meta = {
            "key": key,
            "fit_seconds": fit_seconds,
            "identity": spec.identity(),
            "seed": seed,
            "libraries": library_versions(),
            "diagnostics": asdict(diagnostics),
            "report": result.report(),
        }
        try:
            atomic_write_text(meta_path, json.dumps(meta, indent=1))
        except WriteError as error:
            notify(f"Diagnostics of {path.name} were not cached: {error}")
    if use_cache:
        _record_in_ledger(result)

    problems = result.diagnostics.problems(allow_divergences)
    if problems and not demonstrates_failure:
        raise DiagnosticsError(
            f"Model {spec.name!r} ({spec.formula}) failed its diagnostics: " + "; ".join(problems) + "\n"
            "What to do: " + gate_advice(problems, settings, grouped=spec.builder is not None or "|" in spec.formula)
        )
    return result


TARGET_ACCEPT_EXAMPLE = "the sampler's target acceptance rate: 0.8 by default, 0.95 or 0.99 against divergences"


def _build(spec: ModelSpec, data: pd.DataFrame):
    """`spec.build(data)`, after `checks.model_data`: a hand-written model's missing column is named here (its
    columns are known only when it asks for them), and a Bambi model's priors must each name one of its terms."""
    if spec.builder is not None and spec.priors:
        raise ValueError(
            f"priors {list(spec.priors)} would be ignored: {checks.described(spec)} is written by hand in PyMC, and "
            "its builder sets its priors; change them there"
        )
    try:
        model = spec.build(data)
    except KeyError as error:
        column = error.args[0] if error.args else None
        if spec.builder is None or not isinstance(column, str) or column in data.columns:
            raise
        raise checks.missing_column(data, column, spec) from None
    if isinstance(model, bmb.Model):
        checks.prior_terms(spec.priors, model, checks.described(spec))
        checks.built_priors(model, spec.priors, checks.described(spec))
    return model


def gate_advice(problems: list[str], settings: dict, grouped: bool = True) -> str:
    """What to try for the failing checks of the gate (`Diagnostics.problems`), in one line; `grouped` says whether
    the model has group effects (whose parameterisation is the usual cause of divergences)."""
    advice = []
    if any("r_hat" in problem or "ESS" in problem for problem in problems):
        advice.append(
            f"r_hat/ESS: more draws and tuning, e.g. fit(..., draws={2 * settings['draws']}, "
            f"tune={2 * settings['tune']}); if they barely move, reparameterise or tighten the worst parameter's prior"
        )
    if any("divergent" in problem for problem in problems):
        form = "the other form of the group effects (ModelSpec(noncentered=...)) or a tighter prior on the group sd"
        advice.append(
            f"divergences: {form if grouped else 'a tighter prior'}, or, with care, target_accept=0.95 "
            "(it can hide a funnel rather than remove it)"
        )
    return "; ".join(advice) or "see the diagnostics above"


def _ledger_path() -> Path:
    return cache_dir().parent / "ledger.json"


def executed_dir() -> Path:
    """Where the offline build keeps executed chapters, beside the fit cache."""
    return cache_dir().parent / "executed"


def read_ledger(path: Path | None = None) -> dict:
    """The ledger of fits; an unreadable one is moved aside with a warning and counts as empty.

    An empty ledger makes the offline build run every chapter again (their fits are not recorded), so the
    appendix is never built from a partial record.
    """
    path = path or _ledger_path()
    try:
        ledger = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        ledger = error
    if isinstance(ledger, dict) and all(isinstance(entry, dict) and "chapter" in entry for entry in ledger.values()):
        return ledger
    try:
        where = f"moved to {move_aside(path, 'unreadable').name}"
    except OSError:
        where = "left in place"
    notify(f"Warning: the ledger of fits {path} is unreadable ({where}); its chapters will run again.")
    return {}


def _update_ledger(change) -> None:
    """Apply `change` to the ledger of fits under a lock: chapters may run in parallel.

    A read-only cache keeps its ledger as it is (a fully cached build changes nothing in it), with one notice.
    """
    path = _ledger_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a")  # "a": never truncates a lock another build holds
    except OSError as error:
        ledger = read_ledger(path)
        before = json.dumps(ledger, sort_keys=True)
        change(ledger)
        if json.dumps(ledger, sort_keys=True) != before:  # a fully cached build records what is already there
            notify(f"The ledger {path} was not updated: {describe_write_error(path.with_suffix('.lock'), error)}")
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ledger = read_ledger(path)
        before = json.dumps(ledger, sort_keys=True)
        change(ledger)
        if json.dumps(ledger, sort_keys=True) == before and path.exists():
            return
        try:
            atomic_write_text(path, json.dumps(ledger, indent=1, sort_keys=True))
        except WriteError as error:
            notify(f"The ledger was not updated: {error}")


def chapter_fits(chapter: str) -> list[str]:
    """The ledger entries of one chapter's fits (the offline build stores them with the executed chapter)."""
    return sorted(key for key, entry in read_ledger().items() if entry["chapter"] == chapter)


def _record_in_ledger(result: Fit) -> None:
    """Remember each fit a chapter makes, for the reproducibility appendix: one entry per cache key, so the same
    model fitted to two data sets (both transforms of log radon, say) is listed twice."""
    chapter = os.environ.get("POOLING_CHAPTER", "")
    entry = f"{chapter}/{result.spec.name}/{result.key[:16]}"
    row = {"chapter": chapter, **result.report(), DOWNLOAD_COLUMN: download_path(result).name}
    _update_ledger(lambda ledger: ledger.update({entry: row}))


def forget_chapter(chapter: str) -> None:
    """Drop a chapter's fits from the ledger before it runs again, so no stale fit is listed."""
    _update_ledger(lambda ledger: [ledger.pop(key) for key in list(ledger) if ledger[key]["chapter"] == chapter])


def group_draws(result: Fit, variable: str, groups=None) -> pd.DataFrame:
    """Posterior draws of a per-group parameter, one column per group (chains stacked).

    A parameter without a group dimension (a pooled slope) is repeated for each of `groups`.
    """
    values = result.idata.posterior[variable].stack(sample=("chain", "draw"))
    if values.ndim == 1:
        return pd.DataFrame({str(group): values.to_numpy() for group in groups})
    (dimension,) = [name for name in values.dims if name != "sample"]
    return pd.DataFrame(
        {str(group): values.sel({dimension: group}).to_numpy() for group in values[dimension].to_numpy()}
    )


def interval_rows(draws: pd.DataFrame, estimate: str, probability: float = INTERVAL_PROBABILITY) -> pd.DataFrame:
    """Mean and central interval of each column of draws, in the row format of `plots.interval_plot`."""
    tail, _ = central_quantiles(probability)
    return pd.DataFrame(
        {
            "estimate": estimate,
            "group": draws.columns.astype(str),
            "mean": draws.mean().to_numpy(),
            "low": draws.quantile(tail).to_numpy(),
            "high": draws.quantile(1 - tail).to_numpy(),
        }
    )


DOWNLOADS_DIR = PROJECT_ROOT / "posteriors"  # published with the site (`resources:` in _quarto.yml)
DOWNLOAD_GROUPS = ("posterior", "sample_stats", "observed_data")
SIGNIFICANT_DIGITS = 6  # a download stores a variable as float32 only if that keeps this many digits
MANTISSA_BITS = 21  # relative rounding error 2**-22 = 2.4e-7: still 6 significant digits (float32 keeps 23 bits)
# Draws per chain in a download, PyMC's default: a fit that needed longer chains to pass the gate is thinned evenly,
# which keeps every download within the size budget.
DOWNLOAD_DRAWS = 1000
DOWNLOAD_FORMAT = f"at most {DOWNLOAD_DRAWS} draws per chain; float32 where it keeps {SIGNIFICANT_DIGITS} digits"
FORMAT_ATTRIBUTE = "pooling_download_format"  # stored in each download, so a change of format rewrites it


def download_path(result: Fit) -> Path:
    """Where a fit's posterior is published for readers; the name carries the cache key, so it is never stale."""
    return DOWNLOADS_DIR / f"{result.spec.name}-{result.key[:12]}.nc"


def download_step(draws: int) -> int:
    """Every how many draws a download keeps, so that a chain of `draws` keeps at most DOWNLOAD_DRAWS."""
    return -(-draws // DOWNLOAD_DRAWS)


def _thinned(dataset, step: int):
    return dataset.isel(draw=slice(None, None, step)) if "draw" in dataset.dims else dataset


def _current_download(path: Path) -> bool:
    """Whether the download at `path` exists, is readable and is in today's format."""
    try:
        with xr.open_dataset(path, group="posterior", engine="h5netcdf") as posterior:
            return posterior.attrs.get(FORMAT_ATTRIBUTE) == DOWNLOAD_FORMAT
    except Exception:  # absent, cut short or unreadable: written again; HDF5 raises several kinds
        return False


def _compact(values):
    """float32 rounded to MANTISSA_BITS bits when that keeps SIGNIFICANT_DIGITS significant digits of every draw,
    else unchanged: the zeroed low bits let the file compress by a tenth more."""
    if values.dtype != np.float64:
        return values
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mantissa, exponent = np.frexp(values)
        rounded = np.ldexp(np.round(mantissa * 2.0**MANTISSA_BITS) / 2.0**MANTISSA_BITS, exponent)
        narrow = rounded.astype(np.float32)
        error = np.abs(narrow.astype(np.float64) - values) / np.abs(values)
    keeps = bool(
        np.all(np.isfinite(narrow) == np.isfinite(values))
        and np.nanmax(error, initial=0.0) < 0.5 * 10.0**-SIGNIFICANT_DIGITS
    )
    return narrow if keeps else values


def _write_compressed(groups: dict, target: Path) -> None:
    """One NetCDF group per InferenceData group, as ArviZ writes them, with zlib and byte shuffling."""
    mode = "w"
    for name, dataset in groups.items():
        encoding = {variable: {"zlib": True, "complevel": 9, "shuffle": True} for variable in dataset.data_vars}
        dataset.to_netcdf(target, mode=mode, group=name, engine="h5netcdf", encoding=encoding)
        mode = "a"


def export_posterior(result: Fit) -> Path:
    """Write the fit for readers to download: posterior, sample stats and observed data, compressed NetCDF, with at
    most DOWNLOAD_DRAWS draws per chain (longer chains thinned evenly, `download_step`).

    A hand-written model's non-centred auxiliary variables are left out (see `PymcModel.auxiliary_variables`).

    Written once per cache key and format; load it with `arviz.from_netcdf(path)`.
    """
    path = download_path(result)
    if not _current_download(path):
        step = download_step(result.idata.posterior.sizes["draw"])
        groups = {group: _thinned(result.idata[group], step).map(_compact) for group in DOWNLOAD_GROUPS}
        if isinstance(result.model, PymcModel):  # keep the size budget: readers use the effects, not their z-scores
            groups["posterior"] = groups["posterior"].drop_vars(result.model.auxiliary_variables())
        groups["posterior"].attrs.pop(KEY_ATTRIBUTE, None)
        groups["posterior"].attrs[FORMAT_ATTRIBUTE] = DOWNLOAD_FORMAT
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda target: _write_compressed(groups, target))
    return path


DOWNLOAD_COLUMN = "posterior (NetCDF)"
NOT_PUBLISHED = "not published (fails the diagnostics gate)"


def download_link(path: Path) -> str:
    """An HTML download link to a published posterior, relative to the page being executed."""
    address = html.escape(os.path.relpath(path, Path.cwd()))
    return f'<a href="{address}" download>{html.escape(path.name)}</a>'


class DiagnosticsTable(pd.DataFrame):
    """A table whose HTML shows its cells' download links (pandas escapes HTML in its notebook display), followed
    by the line of code that loads a downloaded posterior."""

    _metadata = ["example_file"]

    @property
    def _constructor(self):
        return DiagnosticsTable

    def _repr_html_(self) -> str:
        table = self.to_html(escape=False, border=0)
        if not getattr(self, "example_file", None):
            return table
        snippet = html.escape(f'idata = arviz.from_netcdf("{self.example_file}")')
        return table + f'<p class="load-posterior">Load a downloaded posterior with <code>{snippet}</code>.</p>'


def diagnostics_table(fits: list[Fit], publish: bool = True) -> pd.DataFrame:
    """The compact r_hat / ESS / divergences table every chapter shows for its models, with a link to download each
    posterior (see `export_posterior`) unless `publish` is False (an exercise's fit, which readers make themselves)."""
    if not publish:
        return DiagnosticsTable([formatted_report(fitted.report()) for fitted in fits]).set_index("model")
    # A fit shown failing on purpose is not published: its draws are not a posterior to reuse.
    rows = [
        formatted_report(fitted.report())
        | {DOWNLOAD_COLUMN: NOT_PUBLISHED if fitted.diagnostics.problems() else download_link(export_posterior(fitted))}
        for fitted in fits
    ]
    table = DiagnosticsTable(rows).set_index("model")
    published = [download_path(fitted).name for fitted in fits if not fitted.diagnostics.problems()]
    table.example_file = published[0] if published else None
    return table


def fit_ledger() -> pd.DataFrame:
    """Every fit the chapters made, as recorded by `fit`, for the reproducibility appendix.

    Raises LedgerError when the ledger has no fits from any chapter, or lacks fits that an executed chapter made
    (the offline build stores each chapter's fits with its executed notebook): the appendix never lists too few.
    """
    path = _ledger_path()
    ledger = read_ledger(path)
    rows = [formatted_report(entry) for entry in ledger.values() if entry["chapter"]]  # not fits made elsewhere
    fix = "Run `python -m pooling.build preview --execute-all` to execute every chapter again."
    if not rows:
        raise LedgerError(f"The ledger of fits {path} lists no fits from any chapter. {fix}")
    missing = {}
    running = os.environ.get("POOLING_CHAPTER", "")
    for notebook in sorted(executed_dir().glob("*.ipynb")):
        if notebook.stem.rsplit("-", 1)[0] == running:
            continue  # the appendix's own earlier execution: this one records its fits anew
        try:
            recorded = json.loads(notebook.read_text())["metadata"].get("pooling", {}).get("fits", [])
        except (OSError, ValueError, KeyError, AttributeError):
            continue  # an unreadable executed chapter is executed again by the build, never reused
        lacking = [key for key in recorded if key not in ledger]
        if lacking:
            missing[notebook.stem.rsplit("-", 1)[0]] = len(lacking)
    if missing:
        listed = ", ".join(f"{chapter} ({count})" for chapter, count in missing.items())
        raise LedgerError(f"The ledger of fits {path} lacks fits made by: {listed}. {fix}")
    # An entry recorded before E-BFMI was reported has none to show. Columns in the order of `Fit.report`.
    table = DiagnosticsTable(rows).fillna({"E-BFMI min": ""}).sort_values(["chapter", "model"], kind="stable")
    order = ["chapter", *REPORT_COLUMNS, DOWNLOAD_COLUMN]
    table = table[[column for column in order if column in table] + [column for column in table if column not in order]]
    # A posterior is published once a diagnostics table has shown it (see `diagnostics_table`).
    names = table[DOWNLOAD_COLUMN] if DOWNLOAD_COLUMN in table else pd.Series("", index=table.index)
    published = names.map(lambda name: isinstance(name, str) and (DOWNLOADS_DIR / name).exists())
    table[DOWNLOAD_COLUMN] = [
        download_link(DOWNLOADS_DIR / name) if shown else "" for name, shown in zip(names, published, strict=True)
    ]
    table.example_file = names[published].iloc[0] if published.any() else None
    return table
