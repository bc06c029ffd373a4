"""Benchmarks: build times, sampler comparison and scaling, written to benchmarks/results.md.

Run with `make bench`. Every number in the results file is measured by this script in one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pooling.data import PROJECT_ROOT, radon_minnesota, simulate_sites, two_sites
from pooling.fitting import SAMPLER_SETTINGS, fit, library_versions
from pooling.models import RADON_MODELS, TOY_MODELS, ModelSpec
from pooling.shrinkage import varying_intercept_posterior

RESULTS = PROJECT_ROOT / "benchmarks" / "results.md"
# (label, sampler, settings): the book's default against PyMC's own defaults (pm.sample: 1000 tuning steps), and
# nutpie with PyMC's tuning length, to separate what the sampler gains from what the shorter tuning gains.
PYMC_DEFAULTS = {"draws": 1000, "tune": 1000, "chains": 4, "target_accept": 0.8}
SAMPLERS = [
    ("book default: nutpie", "nutpie", SAMPLER_SETTINGS),
    ("PyMC default NUTS", "pymc", PYMC_DEFAULTS),
    ("nutpie, PyMC's tuning", "nutpie", PYMC_DEFAULTS),
]

# The book's models timed under both samplers: (label, spec, data loader).
COMPARED = [
    ("toy pooled", TOY_MODELS["toy_pooled"], two_sites),
    ("toy hierarchical (centred)", TOY_MODELS["toy_hierarchical"], two_sites),
    ("radon varying intercepts", RADON_MODELS["radon_varying_intercepts"], radon_minnesota),
    ("radon varying slopes", RADON_MODELS["radon_varying_slopes"], radon_minnesota),
]
# The models with an exact posterior (issue 11): exact against MCMC with the book's settings, from the same spec.
EXACT_MODELS = ["radon_varying_intercepts", "radon_uranium"]
EXACT_SECTION = "## Exact posterior against MCMC"
SCALING_GROUPS = (10, 100, 1000, 5000)
SCALING_ROWS = (1_000, 10_000, 100_000, 1_000_000)
SCALING_SETTINGS = {"draws": 300, "tune": 300, "chains": 2}  # enough to time, not to report


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    versions = ", ".join(f"{name} {value}" for name, value in library_versions().items())
    return f"{cpu}; {os.cpu_count()} cores; {memory_gib:.0f} GiB; {platform.platform()}; {versions}"


def timed_build(cache: Path, jobs: int, reuse_executed: bool, sources: list[Path] | None = None) -> float:
    """Seconds for a full offline build (every page written) with the given caches, of the book's pages or of
    `sources` in their place."""
    environment = dict(os.environ, POOLING_CACHE=str(cache))
    pages = [str(source) for source in sources] if sources else None
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from pooling.build import build_preview; from pathlib import Path; "
                f"sources = [Path(page) for page in {pages!r}] if {pages!r} else None; "
                f"r = build_preview(sources, jobs={jobs}, out_dir=Path({out!r}), reuse_executed={reuse_executed}); "
                "import sys; sys.exit(any(x.error for x in r))",
            ],
            check=True,
            env=environment,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


BUILDS = [
    "cold (empty caches)",
    "warm: every page executed, fits from the cache (`make test`)",
    "warm: unchanged pages reused, fits from the cache (`make site`)",
]


def build_seconds(jobs: int, sources: list[Path] | None = None) -> list[float]:
    """Cold build, then two warm ones: every page re-executed with fits from the cache, and pages reused."""
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-")) / "fits"
    try:
        cold = timed_build(cache, jobs, reuse_executed=True, sources=sources)  # empty caches: everything runs
        warm_fits = timed_build(cache, jobs, reuse_executed=False, sources=sources)
        warm_pages = timed_build(cache, jobs, reuse_executed=True, sources=sources)
    finally:
        shutil.rmtree(cache.parent)
    return [cold, warm_fits, warm_pages]


def build_times(jobs: int) -> pd.DataFrame:
    seconds = build_seconds(jobs)
    return pd.DataFrame(
        [
            {"build": build, "jobs": jobs, "seconds": round(value, 1), "cold / this": round(seconds[0] / value, 1)}
            for build, value in zip(BUILDS, seconds, strict=True)
        ]
    )


EXERCISES_SECTION = "## What the exercises cost"
EXERCISES_HEADING = "\n## Exercises\n"
COLD_BUDGET, WARM_BUDGET = 1.2, 1.1  # issue 14: at most 20% on the cold build, nothing noticeable on a warm one


def without_exercises(folder: Path) -> list[Path]:
    """Copies of every page in `folder`, each cut before its exercises (a chapter's last section)."""
    from pooling.render.execute import chapter_sources

    copies = []
    for source in chapter_sources():
        copy = folder / source.relative_to(PROJECT_ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(source.read_text().split(EXERCISES_HEADING)[0])
        copies.append(copy)
    return copies


def exercises_section(jobs: int = 2) -> str:
    """Cold and warm builds of the book without and with its exercises, on the same machine in one run."""
    with tempfile.TemporaryDirectory() as folder:
        before = build_seconds(jobs, without_exercises(Path(folder)))
    after = build_seconds(jobs)
    table = pd.DataFrame(
        {
            "build": BUILDS,
            "without exercises (s)": [round(value, 1) for value in before],
            "with exercises (s)": [round(value, 1) for value in after],
            "with / without": [round(late / early, 2) for early, late in zip(before, after, strict=True)],
        }
    )
    ratios = table["with / without"].tolist()
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"{EXERCISES_SECTION}\n\nMeasured on {measured} (`python benchmarks/run.py --exercises-only`, {jobs} "
        "chapters at a time): the whole book built from an empty fit cache, then twice warm, first with every "
        "chapter cut before its exercises, then as published. Budget: at most "
        f"{COLD_BUDGET - 1:.0%} more on the cold build (met: {ratios[0] <= COLD_BUDGET}), and at most "
        f"{WARM_BUDGET - 1:.0%} on either warm build (met: {max(ratios[1:]) <= WARM_BUDGET}).\n\n"
        + table.to_markdown(index=False)
    )


def sampler_comparison() -> tuple[pd.DataFrame, pd.Series]:
    # One untimed fit per sampler first: the process's one-off start-up costs would otherwise land on the first row.
    for _, sampler, settings in SAMPLERS:
        fit(TOY_MODELS["toy_pooled"], two_sites(), sampler=sampler, **settings, use_cache=False, log_likelihood=False)
    rows = []
    for model, spec, load in COMPARED:
        data = load()
        posteriors = {}
        for label, sampler, settings in SAMPLERS:
            result = fit(spec, data, sampler=sampler, **settings, use_cache=False, demonstrates_failure=True)
            posteriors[label] = result.idata.posterior
            rows.append(
                {
                    "model": model,
                    "sampler": label,
                    "tune": settings["tune"],
                    "fit seconds": round(result.fit_seconds, 1),
                    "bulk ESS min": int(result.diagnostics.ess_bulk_min),
                    "min bulk ESS / s": round(result.diagnostics.ess_bulk_min / result.fit_seconds, 1),
                    "r_hat max": round(result.diagnostics.r_hat_max, 3),
                    "divergences": result.diagnostics.divergences,
                }
            )
        # Same posterior: largest gap between each run's means and PyMC's, in PyMC's posterior sds.
        reference = posteriors["PyMC default NUTS"]
        for row, posterior in zip(rows[-len(SAMPLERS) :], posteriors.values(), strict=True):
            row["largest mean gap to PyMC (posterior sd)"] = round(
                max(
                    float(
                        np.max(
                            np.abs(posterior[name].mean(("chain", "draw")) - reference[name].mean(("chain", "draw")))
                            / reference[name].std(("chain", "draw"))
                        )
                    )
                    for name in reference.data_vars
                    if not name.endswith("__")
                ),
                3,
            )
    table = pd.DataFrame(rows)
    speed = table.pivot(index="model", columns="sampler", values="min bulk ESS / s")
    return table, (speed["book default: nutpie"] / speed["PyMC default NUTS"]).round(1)


def scaling(spec: ModelSpec) -> pd.DataFrame:
    """Fit time of the hierarchical slope model as the number of groups and of rows grows."""
    rows = []
    settings = [(groups, 20 * groups) for groups in SCALING_GROUPS] + [(100, n) for n in SCALING_ROWS]
    for groups, n_rows in settings:
        slopes = np.random.default_rng(groups).normal(0.0, 2.0, groups)
        data = simulate_sites(slopes=slopes, points_per_site=n_rows // groups, seed=groups + n_rows)
        start = time.perf_counter()
        result = fit(spec, data, **SCALING_SETTINGS, use_cache=False, log_likelihood=False, demonstrates_failure=True)
        rows.append(
            {
                "groups": groups,
                "rows": len(data),
                "seconds (build, sample, diagnose)": round(time.perf_counter() - start, 1),
                "bulk ESS min": int(result.diagnostics.ess_bulk_min),
                "divergences": result.diagnostics.divergences,
            }
        )
    return pd.DataFrame(rows)


def exact_against_mcmc_times(repeats: int = 3) -> pd.DataFrame:
    """Seconds for the exact posterior (build the Bambi model, integrate; best of `repeats`) and for the MCMC fit
    (the book's `fit`: nutpie, book settings, log likelihood, diagnostics; no cache), each from the spec and data."""
    data = radon_minnesota()
    fit(TOY_MODELS["toy_pooled"], two_sites(), use_cache=False)  # one-off start-up costs, untimed
    rows = []
    for name in EXACT_MODELS:
        spec = RADON_MODELS[name]
        exact_seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            model = spec.build(data)
            model.build()
            varying_intercept_posterior(model)
            exact_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = fit(spec, data, use_cache=False)
        mcmc = time.perf_counter() - start
        rows.append(
            {
                "model": name,
                "exact seconds": round(min(exact_seconds), 2),
                "MCMC seconds": round(mcmc, 1),
                "MCMC / exact": round(mcmc / min(exact_seconds), 1),
                "MCMC bulk ESS min": int(result.diagnostics.ess_bulk_min),
            }
        )
    return pd.DataFrame(rows)


def exact_section() -> str:
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"{EXACT_SECTION}\n\nMeasured on {measured} (`python benchmarks/run.py --exact-only`). The exact posterior "
        "(`pooling.shrinkage.varying_intercept_posterior`: every county level, the coefficients, sigma and tau, no "
        "sampling error) against the book's MCMC fit of the same model (nutpie, "
        f"{SAMPLER_SETTINGS['chains']} chains x {SAMPLER_SETTINGS['draws']} draws after {SAMPLER_SETTINGS['tune']} "
        "tuning steps, with compilation, log likelihood and diagnostics), both from the model spec and the data.\n\n"
        + exact_against_mcmc_times().to_markdown(index=False)
    )


BUILDS_SECTION = "## Full builds (offline executor, every page)"


def builds_section(jobs: int) -> tuple[str, list[tuple[str, str, bool]]]:
    """The full builds, serial and with `jobs` chapters at once, and the build-time targets they meet or miss."""
    builds = pd.concat([build_times(count) for count in sorted({1, jobs})])
    serial = builds[builds.jobs == 1].set_index("build")["seconds"]
    cold, warm = serial.iloc[0], serial.iloc[2]
    targets = [
        ("cold full build under 10 minutes", f"{cold:.0f} s", cold < 600),
        ("warm full build at least 10x faster than cold", f"{cold / warm:.1f}x", cold / warm >= 10),
    ]
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{BUILDS_SECTION}\n\nMeasured on {measured}.\n\n" + builds.to_markdown(index=False), targets


def replace_target_rows(text: str, targets: list[tuple[str, str, bool]]) -> str:
    """`text` with each target's row of the targets table rewritten with its new measurement."""
    lines = text.splitlines()
    for label, measured, met in targets:
        lines = [f"| {label} | {measured} | {met} |" if line.startswith(f"| {label} ") else line for line in lines]
    return "\n".join(lines) + "\n"


def replace_section(text: str, heading: str, section: str) -> str:
    """`text` with the section under `heading` (up to the next "## ") replaced by `section`, or it appended."""
    start = text.find(heading)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section + "\n"
    end = text.find("\n## ", start + len(heading))
    return text[:start] + section + ("\n" + text[end:] if end >= 0 else "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-builds", action="store_true", help="skip the cold and warm full builds")
    parser.add_argument("--jobs", type=int, default=2, help="also time the builds with this many chapters at once")
    parser.add_argument(
        "--exact-only", action="store_true", help="only time the exact posterior against MCMC, updating its section"
    )
    parser.add_argument(
        "--builds-only", action="store_true", help="only time the full builds, updating their section and targets"
    )
    parser.add_argument(
        "--exercises-only", action="store_true", help="only time the builds without and with the exercises"
    )
    args = parser.parse_args(argv)
    if args.exact_only or args.exercises_only:
        heading, section = (EXACT_SECTION, exact_section) if args.exact_only else (EXERCISES_SECTION, exercises_section)
        RESULTS.write_text(replace_section(RESULTS.read_text(), heading, section()))
        print(RESULTS.read_text())
        return 0
    if args.builds_only:
        section, targets = builds_section(args.jobs)
        text = replace_section(RESULTS.read_text(), BUILDS_SECTION, section)
        RESULTS.write_text(replace_target_rows(text, targets))
        print(RESULTS.read_text())
        return 0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sections = [f"# Benchmarks\n\nMeasured by `make bench` on {started}.\n\nMachine: {machine()}.\n"]
    targets = []
    if not args.skip_builds:
        section, targets = builds_section(args.jobs)
        sections.append(section)
    comparison, ratio = sampler_comparison()
    targets.append(
        (
            "book default sampler at least 3x PyMC default NUTS in min bulk ESS/s, radon varying slopes",
            f"{ratio['radon varying slopes']:.1f}x",
            ratio["radon varying slopes"] >= 3,
        )
    )
    sections.append(
        "## Samplers on the book's models (4 chains x 1000 draws, wall time including compilation and tuning)\n\n"
        + comparison.to_markdown(index=False)
        + "\n\nBook default / PyMC default in min bulk ESS per second:\n\n"
        + ratio.to_frame("ratio").to_markdown()
    )
    scaled = scaling(TOY_MODELS["toy_hierarchical"])
    sections.append(
        f"## Scaling of `{TOY_MODELS['toy_hierarchical'].formula}` (nutpie, {SCALING_SETTINGS['chains']} chains x "
        f"{SCALING_SETTINGS['draws']} draws)\n\n" + scaled.to_markdown(index=False)
    )
    sections.append(exact_section())
    if not args.skip_builds:
        sections.append(exercises_section(args.jobs))
    target_table = pd.DataFrame(targets, columns=["target", "measured", "met"])
    sections.insert(1, "## Targets (issue 6)\n\n" + target_table.to_markdown(index=False))
    RESULTS.write_text("\n\n".join(sections) + "\n")
    print(RESULTS.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
