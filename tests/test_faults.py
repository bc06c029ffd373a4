"""Faults and bad input (issue 16): every scenario gives a clear message, the right exit code and nothing
half-written. Chapters here are tiny `.qmd` files in tmp_path; no radon model is sampled."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import arviz as az
import numpy as np
import pytest

from pooling import files, fitting
from pooling.build import BuildLocked, build_lock, build_preview, main, progress_line
from pooling.files import WriteError, atomic_write_text, notify
from pooling.fitting import KEY_ATTRIBUTE, LedgerError, fit_ledger, read_ledger
from pooling.render import execute
from pooling.render.execute import execute_chapter
from pooling.render.preview import write_preview
from pooling.render.theme import write_stylesheet

SRC = Path(files.__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private fit cache, ledger and executed-chapter store."""
    monkeypatch.setenv("POOLING_CACHE", str(tmp_path / "cache" / "fits"))
    monkeypatch.delenv("POOLING_CHAPTER", raising=False)
    monkeypatch.delenv(files.NOTICES_VARIABLE, raising=False)
    return tmp_path / "cache"


def chapter(path: Path, *cells: str, title: str = "Tiny") -> Path:
    """A `.qmd` with a paragraph before each code cell (so code cells and all cells are numbered differently)."""
    body = "".join(f"Some prose.\n\n```{{python}}\n{cell}\n```\n\n" for cell in cells)
    path.write_text(f"---\ntitle: {title}\n---\n\n{body}")
    return path


# ---------------------------------------------------------------- a failed chapter never looks like a good one


def test_failed_chapter_is_replaced_by_an_error_page_and_the_build_says_incomplete(tmp_path, cache, capsys):
    out = tmp_path / "out"
    good = chapter(tmp_path / "01-tiny.qmd", "print('fine')")
    assert main(["preview", str(good), "--out-dir", str(out)]) == 0
    assert "fine" in (out / "01-tiny.html").read_text()
    assert "Offline preview" in capsys.readouterr().out

    chapter(
        good,
        "#| label: setup\nx = 1",
        "def helper(value):\n    return 1 / value\n",
        "#| label: the-division\nimport numpy\nhelper(0)",
    )
    assert main(["preview", str(good), "--out-dir", str(out)]) == 1
    captured = capsys.readouterr()
    page = (out / "01-tiny.html").read_text()
    assert 'data-build-failed="true"' in page and "fine" not in page  # the old page is gone
    assert not (out / "01-tiny.ipynb").exists() and "01-tiny.ipynb" not in page  # no link to a missing notebook
    assert "Preview incomplete: 1 chapter failed" in captured.err
    assert "Offline preview" not in captured.out
    # Code cell 3 is the notebook's 6th cell (prose between); the lines are those of the .qmd file.
    lines = good.read_text().splitlines()
    call, division = lines.index("helper(0)") + 1, lines.index("    return 1 / value") + 1
    assert f"{good}:{call}: code cell 3 (the-division) failed" in captured.err
    assert f"{good}:{division}, in code cell 2, in helper(value)" in captured.err
    assert f"----> {call} helper(0)" in captured.err
    assert "ZeroDivisionError: division by zero" in captured.err
    assert "\x1b[" not in captured.err  # no colour codes when not a terminal
    assert "site-packages" not in captured.err  # only the chapter's own frames
    assert captured.out.startswith("FAILED")  # the progress line; the account of the failure is on stderr


def test_package_frames_are_shown_library_frames_are_counted(tmp_path, cache):
    bad = chapter(tmp_path / "01-tiny.qmd", "from pooling.data import simulate_sites\nsimulate_sites(x_sd=-1)")
    error = execute_chapter(bad).error
    call = bad.read_text().splitlines().index("simulate_sites(x_sd=-1)") + 1
    assert f"{bad}:{call}: code cell 1 failed" in error
    assert "src/pooling/data.py" in error and str(SRC) not in error  # the package's frame, shown by project path
    assert "ValueError: x_sd must be a positive number, got -1" in error


def test_progress_is_printed_as_each_chapter_finishes_without_kernel_warnings(tmp_path, cache, capfd):
    first = chapter(tmp_path / "01-first.qmd", "print(1)")
    second = chapter(tmp_path / "02-second.qmd", "print(2)")
    seen = []
    results = build_preview([first, second], out_dir=tmp_path / "out", report=lambda result: seen.append(result))
    assert [result.source for result in seen] == [first, second]  # one report per chapter, as it finished
    assert progress_line(results[0]).startswith("ok ")
    assert "fits: 0 sampled, 0 from cache" in progress_line(results[0])
    assert "without encryption" not in capfd.readouterr().err  # kernels use IPC, so ipykernel has no warning


def test_standard_error_is_dropped_where_warning_is_false(tmp_path, cache):
    noisy = chapter(tmp_path / "01-noisy.qmd", "import sys\nprint('chatter', file=sys.stderr)\nprint('kept')")
    (result,) = build_preview([noisy], out_dir=tmp_path / "out")
    page = (tmp_path / "out" / "01-noisy.html").read_text()
    assert "kept" in page and "chatter</pre>" not in page and "chatter\n</pre>" not in page
    (code,) = [cell for cell in result.notebook.cells if cell.cell_type == "code"]
    assert any(output.get("name") == "stderr" for output in code.outputs)  # the notebook keeps it


# ---------------------------------------------------------------- notices go to the console, not into pages


def test_kernel_notices_reach_the_console_not_the_page(tmp_path, cache, capsys):
    noisy = chapter(
        tmp_path / "01-notice.qmd",
        "from pooling.files import notify\nnotify('Refitting x.nc: a test ' + 'notice')\nnotify('m', kind='sampled')",
    )
    assert main(["preview", str(noisy), "--out-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "fits: 1 sampled, 0 from cache" in out
    assert "       Refitting x.nc: a test notice" in out
    assert "a test notice" not in (tmp_path / "out" / "01-notice.html").read_text()


# ---------------------------------------------------------------- Ctrl-C, two builds, atomic writes


def test_ctrl_c_stops_the_kernels_and_prints_one_line(tmp_path, cache):
    started = tmp_path / "started"
    slow = chapter(
        tmp_path / "01-slow.qmd", f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(600)"
    )
    queued = chapter(tmp_path / "02-queued.qmd", f"import pathlib\npathlib.Path({str(tmp_path / 'ran')!r}).touch()")
    command = [sys.executable, "-m", "pooling.build", "preview", str(slow), str(queued), "--out-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    for _ in range(600):
        if started.exists() or process.poll() is not None:
            break
        threading.Event().wait(0.2)
    assert started.exists(), process.communicate()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)  # a hang here is the bug: the 600 s cell would still be running
    assert process.returncode == 130
    assert err.strip() == "Interrupted: running chapters stopped, the preview left as it was."
    assert not (tmp_path / "ran").exists()  # the queued chapter never started
    assert not (tmp_path / "01-slow.html").exists()


def test_a_second_build_in_the_same_folder_says_one_is_running(tmp_path, cache, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".build.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BuildLocked, match=f"Another build .* is writing {out}"):
            build_preview([chapter(tmp_path / "01-tiny.qmd", "1")], out_dir=out)
        assert main(["preview", str(tmp_path / "01-tiny.qmd"), "--out-dir", str(out)]) == 75
    assert "wait for it to finish" in capsys.readouterr().err


def test_concurrent_writes_of_one_file_never_fail_or_mix(tmp_path):
    """The old `.partial` name was shared: two writers raised FileNotFoundError 27 times in 600."""
    target = tmp_path / "page.html"
    errors = []

    def writer(number):
        for _ in range(100):
            try:
                atomic_write_text(target, str(number) * 10_000)
            except Exception as error:  # noqa: BLE001 (the test counts every failure)
                errors.append(error)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    text = target.read_text()
    assert len(set(text)) == 1 and len(text) == 10_000  # one writer's whole file, never a mixture
    assert [path.name for path in tmp_path.iterdir()] == ["page.html"]
    assert target.stat().st_mode & 0o777 == 0o644  # world-readable


def test_a_killed_writer_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "04-partial-pooling.html"
    target.write_text("the old page")
    script = (
        "import os, signal; from pathlib import Path; from pooling.files import atomic_write\n"
        "def write(path):\n    path.write_text('half a pa')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write(Path({str(target)!r}), write)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], env=os.environ).returncode == -signal.SIGKILL
    assert target.read_text() == "the old page"
    assert len(list(tmp_path.glob(".04-partial-pooling.html.*.partial"))) == 1  # the killed writer's temporary
    with build_lock(tmp_path):  # the next build clears what a killed one left
        assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.partial"))


# ---------------------------------------------------------------- full disk


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_writing_the_preview_names_the_file_and_keeps_the_old_page(tmp_path, cache, monkeypatch):
    tiny = chapter(tmp_path / "01-tiny.qmd", "print('new')")
    out = tmp_path / "out"
    (out / "01-tiny.html").parent.mkdir(parents=True)
    (out / "01-tiny.html").write_text("old page")
    (result,) = [execute_chapter(tiny)]
    write_stylesheet(out)  # in place from an earlier build: the disk fills up at the page
    monkeypatch.setattr(Path, "write_text", _full_disk)
    with pytest.raises(WriteError, match=rf"could not write {out}/01-tiny.html: the disk is full"):
        write_preview([result], out)
    monkeypatch.undo()
    assert (out / "01-tiny.html").read_text() == "old page"
    assert not [path for path in out.rglob("*.partial")]


def test_full_disk_on_a_real_tiny_filesystem(tmp_path, cache):
    """A 1 MB tmpfs cannot hold plotly.js (1.2 MB): the error names the file; nothing partial is left."""
    out = tmp_path / "small"
    out.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(out)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        result = execute_chapter(chapter(tmp_path / "01-tiny.qmd", "1"))
        with pytest.raises(WriteError, match=rf"could not write {out}/assets/plotly.min.js: the disk is full"):
            write_preview([result], out)
        assert not [path for path in out.rglob("*") if path.is_file()]
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_full_disk_while_keeping_an_executed_chapter_is_a_notice(tmp_path, cache, monkeypatch, capsys):
    tiny = chapter(tmp_path / "01-tiny.qmd", "print(1)")
    monkeypatch.setattr(execute, "atomic_write_text", lambda path, text: _full_disk())
    result = execute_chapter(tiny, reuse_executed=True)
    assert result.error is None
    assert "01-tiny.qmd will run again next time: its executed notebook was not saved" in capsys.readouterr().err
    assert not list((cache / "executed").glob("*.ipynb"))


# ---------------------------------------------------------------- the fit cache


def _toy_idata(key: str, seed: int = 0) -> az.InferenceData:
    draws = np.random.default_rng(seed).normal(size=(2, 50))
    idata = az.from_dict(posterior={"x": draws})
    idata.posterior.attrs[KEY_ATTRIBUTE] = key
    return idata


def _entry(folder: Path, name: str, key: str, idata: az.InferenceData, **meta) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.nc"
    idata.to_netcdf(path)
    path.with_suffix(".json").write_text(json.dumps({"key": key, "fit_seconds": 1.0} | meta))
    return path, path.with_suffix(".json")


def test_a_fit_copied_over_from_another_model_is_refitted(tmp_path, capsys):
    path, meta = _entry(tmp_path, "model_b-0000", "key-b", _toy_idata("key-a"))  # model A's file under B's name
    assert fitting._load(path, meta, "key-b") is None
    assert "holds another fit than its name says" in capsys.readouterr().err
    assert not path.exists() and not meta.exists()
    path, meta = _entry(tmp_path, "model_b-0000", "key-b", _toy_idata("key-b"))
    idata, _ = fitting._load(path, meta, "key-b")
    np.testing.assert_array_equal(idata.posterior["x"], _toy_idata("key-b").posterior["x"])


@pytest.mark.parametrize("sidecar", ["{}", '{"key": "k"}', "[1, 2]", "{not json"])
def test_a_sidecar_without_its_fields_is_refitted_not_a_key_error(tmp_path, capsys, sidecar):
    path, meta = _entry(tmp_path, "m-0", "k", _toy_idata("k"))
    meta.write_text(sidecar)
    assert fitting._load(path, meta, "k") is None
    assert "Refitting m-0.nc" in capsys.readouterr().err


def test_a_fit_is_not_cached_when_the_disk_is_nearly_full(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files.shutil, "disk_usage", lambda folder: type("Usage", (), {"free": 1000})())
    written = fitting._store_fit(tmp_path / "m-0.nc", _toy_idata("k"), "k")
    assert not written and not list(tmp_path.iterdir())  # HDF5 never starts on a full disk
    assert "Fit m-0.nc was not cached: too little free space" in capsys.readouterr().err


def test_a_fit_that_cannot_be_written_is_returned_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files.tempfile, "mkstemp", lambda **kwargs: _raise(errno.EROFS, "Read-only file system"))
    assert not fitting._store_fit(tmp_path / "m-0.nc", _toy_idata("k"), "k")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Fit m-0.nc was not cached: could not write" in err and "read-only" in err


def _raise(code, text):
    raise OSError(code, text)


# ---------------------------------------------------------------- the ledger


def test_an_unreadable_ledger_is_a_warning_and_its_chapters_run_again(tmp_path, cache, capsys):
    record = (
        "import os\nfrom pooling.fitting import _update_ledger\nos.environ['POOLING_CHAPTER'] = '01-fits'\n"
        "_update_ledger(lambda ledger: ledger.update({'01-fits/m': {'chapter': '01-fits', 'model': 'm'}}))"
    )
    fits = chapter(tmp_path / "01-fits.qmd", record)
    assert not execute_chapter(fits, reuse_executed=True).frozen
    assert execute_chapter(fits, reuse_executed=True).frozen
    assert list(fit_ledger()["model"]) == ["m"]

    ledger = cache / "ledger.json"
    ledger.write_text('{"01-fits/m": {"chapt')  # cut short
    assert read_ledger() == {}
    assert f"Warning: the ledger of fits {ledger} is unreadable (moved to ledger.json.unreadable)" in (
        capsys.readouterr().err
    )
    with pytest.raises(LedgerError, match=r"lists no fits .*--execute-all"):
        fit_ledger()  # the appendix fails rather than list too few
    rerun = execute_chapter(fits, reuse_executed=True)
    assert not rerun.frozen and rerun.error is None  # its fits were lost from the ledger: it ran again
    assert list(fit_ledger()["model"]) == ["m"]


def test_the_appendix_fails_if_an_executed_chapter_s_fits_are_missing(tmp_path, cache):
    fitting._update_ledger(lambda ledger: ledger.update({"02/m": {"chapter": "02-other", "model": "m"}}))
    executed = cache / "executed"
    executed.mkdir(parents=True)
    (executed / "01-fits-0123456789abcdef.ipynb").write_text(
        json.dumps({"metadata": {"pooling": {"fits": ["01-fits/m", "01-fits/n"]}}, "cells": []})
    )
    with pytest.raises(LedgerError, match=r"lacks fits made by: 01-fits \(2\)"):
        fit_ledger()


def test_the_appendix_does_not_hold_its_own_earlier_record_against_itself(tmp_path, cache, monkeypatch):
    """The appendix's last executed notebook names the fits it made then; running again, it makes them anew."""
    fitting._update_ledger(lambda ledger: ledger.update({"02/m": {"chapter": "02-other", "model": "m"}}))
    executed = cache / "executed"
    executed.mkdir(parents=True)
    (executed / "90-appendix-0123456789abcdef.ipynb").write_text(
        json.dumps({"metadata": {"pooling": {"fits": ["90-appendix/an-older-key"]}}, "cells": []})
    )
    monkeypatch.setenv("POOLING_CHAPTER", "90-appendix")
    assert list(fit_ledger()["model"]) == ["m"]
    monkeypatch.setenv("POOLING_CHAPTER", "91-another")
    with pytest.raises(LedgerError, match=r"lacks fits made by: 90-appendix \(1\)"):
        fit_ledger()


def test_a_read_only_cache_keeps_its_ledger_and_says_so(tmp_path, cache, monkeypatch, capsys):
    fitting._update_ledger(lambda ledger: ledger.update({"01/m": {"chapter": "01", "model": "m"}}))
    before = (cache / "ledger.json").read_text()
    original_open = open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wa+"):
            raise OSError(errno.EROFS, "Read-only file system")
        return original_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only_open)
    fitting.forget_chapter("01")  # what every chapter does first: must not fail on a read-only cache
    assert fitting.chapter_fits("01") == ["01/m"]
    monkeypatch.undo()
    assert (cache / "ledger.json").read_text() == before
    err = capsys.readouterr().err
    assert "The ledger" in err and "read-only" in err


def test_notices_fall_back_to_standard_error(capsys, monkeypatch):
    monkeypatch.delenv(files.NOTICES_VARIABLE, raising=False)
    notify("plain notice")
    notify("fit.nc", kind="loaded")  # counts only; prints nothing
    assert capsys.readouterr().err == "plain notice\n"


# ---------------------------------------------------------------- data files


@pytest.fixture
def good_files(tmp_path):
    """A folder with the verified survey files (a mirror, or the target of a file:// download)."""
    from pooling.data import fetch_radon_files

    folder = tmp_path / "good"
    folder.mkdir()
    for name, path in fetch_radon_files().items():
        (folder / name).write_bytes(path.read_bytes())
    return folder


def test_a_file_missing_from_the_mirror_is_downloaded_instead(tmp_path, good_files, capsys):
    from pooling.data import RADON_FILES, fetch_radon_files, sha256

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "cty.dat").write_bytes((good_files / "cty.dat").read_bytes())
    raw = tmp_path / "raw"
    paths = fetch_radon_files(raw, mirror=str(mirror), url=good_files.as_uri() + "/")
    assert {name: sha256(path) for name, path in paths.items()} == RADON_FILES
    assert f"srrs2.dat is missing from the mirror folder {mirror}" in capsys.readouterr().err
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in paths.values())  # readable by all


def test_a_folder_in_place_of_a_data_file_is_moved_aside(tmp_path, good_files, capsys):
    from pooling.data import RADON_FILES, fetch_radon_files, sha256

    raw = tmp_path / "raw"
    (raw / "srrs2.dat").mkdir(parents=True)
    fetch_radon_files(raw, mirror=str(good_files), url=None)
    assert sha256(raw / "srrs2.dat") == RADON_FILES["srrs2.dat"]
    assert [path.is_dir() for path in raw.glob("srrs2.dat.bad-*")] == [True]
    assert "srrs2.dat was a folder, not a file: moved it to srrs2.dat.bad-" in capsys.readouterr().err


def test_when_no_source_works_the_error_names_the_file_and_the_command(tmp_path, good_files):
    from pooling.data import DataError, fetch_radon_files

    (good_files / "srrs2.dat").unlink()
    (good_files / "srrs2.dat").mkdir()  # a folder in the mirror where the file belongs
    with pytest.raises(DataError) as raised:
        fetch_radon_files(tmp_path / "raw", mirror=str(good_files), url=(tmp_path / "nowhere").as_uri() + "/")
    message = str(raised.value)
    assert message.startswith(f"srrs2.dat is not in {tmp_path / 'raw'} and could not be fetched.")
    assert "(1) srrs2.dat is missing from the mirror folder" in message
    assert "(2) srrs2.dat could not be downloaded from file://" in message
    assert "RADON_MIRROR=/that/folder python -m pooling.data" in message
    assert not (tmp_path / "raw" / "srrs2.dat").exists()


# ---------------------------------------------------------------- bad arguments name themselves


def _sites(**changes):
    from pooling.data import simulate_sites

    return simulate_sites(**changes)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"points_per_site": None}, TypeError, "points_per_site must be a whole number, got None"),
        ({"points_per_site": float("nan")}, ValueError, "points_per_site must be a whole number"),
        ({"points_per_site": float("inf")}, ValueError, "points_per_site must be a whole number"),
        ({"points_per_site": 10**12}, ValueError, "points_per_site=1,000,000,000,000 points exceed"),
        ({"x_sd": "0.5"}, TypeError, "x_sd must be a number, got '0.5'"),
        ({"noise_sd": None}, TypeError, "noise_sd must be a number, got None"),
        ({"site_names": ["a", "a"]}, ValueError, "site_names must be distinct"),
        ({"site_names": ["a", None]}, TypeError, "site_names must be non-empty strings"),
        ({"site_names": "ab"}, TypeError, "site_names must be a list of names"),
        ({"seed": -1}, ValueError, "seed must be a whole number >= 0"),
        ({"slopes": (1e308, 1e308), "x_sd": 1e10}, ValueError, "too large: y overflows"),
    ],
)
def test_simulator_names_each_bad_argument(arguments, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _sites(**arguments)


def _shrinkage_calls():
    import pandas as pd

    from pooling import shrinkage
    from pooling.shrinkage import ScalePrior

    sites = _sites()
    prior = ScalePrior("halfnormal", 1.0)
    exact = shrinkage.partial_pooling_posterior
    return [
        (lambda: shrinkage.least_squares_slopes(sites.assign(x=0.0)), ValueError, "x is all zero"),
        (lambda: shrinkage.least_squares_slopes(sites.iloc[:0]), ValueError, "data has no rows"),
        (lambda: shrinkage.least_squares_slopes(sites, probability=1.5), ValueError, "probability must be strictly"),
        (
            lambda: shrinkage.least_squares_slopes(sites.groupby("site").head(1)),
            ValueError,
            "has 1 point; each group needs 2",
        ),
        (lambda: shrinkage.least_squares_slopes(pd.DataFrame({"x": [1]})), ValueError, "data lacks the columns"),
        (lambda: shrinkage.least_squares_slopes(sites.assign(y=np.nan)), ValueError, "data['y'] has a missing"),
        (lambda: shrinkage.shrinkage_factor(10.0, -1.0, 1.0), ValueError, "sigma must be positive"),
        (lambda: shrinkage.conditional_slope_posterior(1.0, 10.0, 1.0, 1.0, "0"), TypeError, "mu must be numbers"),
        (
            lambda: exact(sites, prior, prior, 0),
            ValueError,
            "mu_prior_sd must be a positive",
        ),
        (
            lambda: exact(sites, prior, prior, None, grid_points=1),
            ValueError,
            "grid_points",
        ),
        (
            lambda: exact(sites, prior, prior, None, probability=1.5),
            ValueError,
            "probability",
        ),
        (
            lambda: exact(sites, "halfnormal", prior, None),
            TypeError,
            "tau_prior must be a",
        ),
        (lambda: ScalePrior("halfstudentt", 1.0), ValueError, "needs its degrees of freedom"),
        (lambda: ScalePrior("halfnormal", None), TypeError, "scale of a scale prior must be a number"),
        (lambda: shrinkage.explorer_setting(3, 1.0, 2, 2.0, ["a"]), ValueError, "prior on tau must be one of"),
        (lambda: shrinkage.explorer_data(3, 1.0, 0, 2.0), ValueError, "number_of_sites must be a whole number >= 1"),
    ]


@pytest.mark.parametrize("case", range(16))
def test_shrinkage_functions_name_each_bad_argument(case):
    call, error, message = _shrinkage_calls()[case]
    with pytest.raises(error, match=re.escape(message)):
        call()


@pytest.mark.slow
def test_a_read_only_cache_serves_its_fits_and_a_new_fit_is_returned_uncached(tmp_path, cache, capsys):
    """Read-only for real (a read-only bind mount; chmod does not stop root), so it needs root to mount."""
    from pooling.models import TOY_MODELS

    small = {"draws": 300, "tune": 300, "chains": 2, "demonstrates_failure": True}
    sites = _sites()
    os.environ["POOLING_CHAPTER"] = "01-tiny"
    first = fitting.fit(TOY_MODELS["toy_pooled"], sites, **small)
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", "-o", "ro", str(cache), str(cache)]).returncode:
        pytest.skip("a read-only bind mount needs root")
    try:
        capsys.readouterr()
        again = fitting.fit(TOY_MODELS["toy_pooled"], sites, **small)
        assert again.from_cache and capsys.readouterr().err == ""  # nothing to write, nothing to say
        np.testing.assert_array_equal(first.idata.posterior["x"], again.idata.posterior["x"])
        new = fitting.fit(TOY_MODELS["toy_pooled"], sites, **small, target_accept=0.9)
        assert not new.from_cache
        lines = capsys.readouterr().err.splitlines()
        assert any(line.startswith(f"Fit {TOY_MODELS['toy_pooled'].name}-") and "not cached" in line for line in lines)
        assert any("read-only" in line for line in lines) and not any("Traceback" in line for line in lines)
    finally:
        subprocess.run(["umount", "--lazy", str(cache)], check=True)  # lazy: xarray may still hold a file open
        del os.environ["POOLING_CHAPTER"]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"draws": 0}, ValueError, "draws must be a whole number >= 1"),
        ({"chains": "4"}, TypeError, "chains must be a whole number, got '4'"),
        ({"target_accept": 1.0}, ValueError, "target_accept must be strictly between 0 and 1"),
        ({"seed": 1.5}, ValueError, "seed must be a whole number"),
        ({"sampler": None}, TypeError, "sampler must be the name of a Bambi inference method"),
    ],
)
def test_fit_names_each_bad_setting_before_sampling(arguments, error, message, cache):
    from pooling.models import TOY_MODELS

    with pytest.raises(error, match=re.escape(message)):
        fitting.fit(TOY_MODELS["toy_pooled"], _sites(), **arguments)


# ---------------------------------------------------------------- issue 24: every stage of the build, every folder

SOLVED = '::: {.callout-tip collapse="true"}\n## Solution\n\n'


def _callout_chapter(path: Path, closed: bool = True, ran: Path | None = None) -> Path:
    """A chapter with two solutions, as the exercises are written; the first one's closing fence is optional."""
    touch = f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n" if ran else ""
    path.write_text(
        "---\ntitle: Fenced\n---\n\nProse.\n\n"
        f"{SOLVED}```{{python}}\n{touch}print('first')\n```\n\n"
        + (":::\n\n" if closed else "\n")
        + f"{SOLVED}Second.\n\n:::\n"
    )
    return path


def test_a_malformed_chapter_fails_before_it_runs_with_its_line_and_keeps_no_executed_notebook(tmp_path, cache, capsys):
    """Issue 24: an unclosed `:::` printed `ok`, then FenceError without file or line crashed the build; the old
    page stayed, and the executed notebook, already kept, made the next build crash again."""
    out, ran = tmp_path / "out", tmp_path / "ran"
    source = _callout_chapter(tmp_path / "01-fenced.qmd", ran=ran)
    assert main(["preview", str(source), "--out-dir", str(out)]) == 0
    assert "first" in (out / "01-fenced.html").read_text() and len(list((cache / "executed").iterdir())) == 1

    _callout_chapter(source, closed=False, ran=ran)
    execute_chapter(source, reuse_executed=True)  # what the old build kept for the malformed chapter
    ran.unlink()
    capsys.readouterr()
    assert main(["preview", str(source), "--out-dir", str(out)]) == 1
    captured = capsys.readouterr()
    lines = source.read_text().splitlines()
    first, second = [number for number, line in enumerate(lines, 1) if line.startswith("::: {.callout")]
    assert captured.out.startswith("FAILED")
    assert (
        f"{source}:{second}: a callout inside the callout opened at line {first}, which the preview cannot fold: "
        "if that one ends before, close it with a line of ':::'." in captured.err
    )
    assert "Preview incomplete: 1 chapter failed" in captured.err and "Traceback" not in captured.err
    page = (out / "01-fenced.html").read_text()
    assert 'data-build-failed="true"' in page and "first</pre>" not in page and f":{second}: a callout" in page
    assert not ran.exists()  # checked before it ran: no kernel time spent on a page that cannot be made
    assert not list((cache / "executed").iterdir())  # nothing kept: the next build checks it again
    assert main(["preview", str(source), "--out-dir", str(out)]) == 1  # and fails the same way, not reused


@pytest.mark.parametrize(
    ("markdown", "line", "message"),
    [
        (":::\n", 5, "this ':::' closes a div that was never opened: remove it, or open the div it should close."),
        ("::: {.callout-note}\nNever closed.\n", 5, "this div is never closed: add a line of ':::' where it ends."),
        (
            '```{python}\n#| label: fig-x\n#| fig-cap: "unclosed\n1\n```\n',
            7,
            "not valid YAML (found unexpected end of stream). Correct it there and run again.",
        ),
        ("Fine.\n\n::: {#refs}\n:::\n\n```{python}\n::: not a fence in code\n```\n", None, None),
    ],
)
def test_the_markup_check_names_the_line(tmp_path, markdown, line, message):
    from pooling.build import check_markup
    from pooling.render.execute import SourceError

    source = tmp_path / "01-markup.qmd"
    source.write_text(f"---\ntitle: Markup\n---\n\n{markdown}")
    if message is None:
        check_markup(source)
        return
    with pytest.raises(SourceError) as raised:
        check_markup(source)
    assert str(raised.value).startswith(f"{source}:{line}") and str(raised.value).endswith(message)


def test_a_chapter_whose_page_cannot_be_made_fails_alone_with_an_error_page(tmp_path, cache, capsys):
    """Whatever the page stage raises fails that chapter, not the build: the others' pages are written."""
    out = tmp_path / "out"
    widget = chapter(tmp_path / "01-widget.qmd", "print('embed-amd.js')")  # a Jupyter widget's script, which the
    good = chapter(tmp_path / "02-good.qmd", "print('fine')")  # preview refuses (it would need require.js)
    (out / "01-widget.html").parent.mkdir(parents=True)
    (out / "01-widget.html").write_text("the old page")
    assert main(["preview", str(widget), str(good), "--out-dir", str(out)]) == 1
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()] == ["ok", "ok", "FAILED"]  # ran, then its page
    assert f"{widget}: its page could not be made (ValueError: 01-widget.html has Jupyter widgets" in captured.err
    assert "Preview incomplete: 1 chapter failed" in captured.err and "Traceback" not in captured.err
    assert 'data-build-failed="true"' in (out / "01-widget.html").read_text()
    assert "fine" in (out / "02-good.html").read_text()
    assert [path.name.split("-")[1] for path in (cache / "executed").iterdir()] == ["good"]


def test_a_failed_chapter_s_old_page_is_removed_when_its_error_page_cannot_be_written(tmp_path, cache, monkeypatch):
    out = tmp_path / "out"
    failed = execute_chapter(chapter(tmp_path / "01-tiny.qmd", "1 / 0"))
    out.mkdir()
    (out / "01-tiny.html").write_text("the old page, looking good")
    (out / "01-tiny.ipynb").write_text("{}")
    monkeypatch.setattr(Path, "write_text", _full_disk)
    with pytest.raises(WriteError, match="the disk is full"):
        write_preview([failed], out)
    monkeypatch.undo()
    assert not (out / "01-tiny.html").exists() and not (out / "01-tiny.ipynb").exists()


def _refusing_the_lock(code: int, monkeypatch) -> None:
    """Opening the preview folder's lock fails as on a full disk or a read-only folder."""
    import builtins

    original_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".build.lock"):
            raise OSError(code, os.strerror(code), str(file))
        return original_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.ENOSPC, "the disk is full. Free some space and run again."),
        (errno.EROFS, "the folder is read-only. Make it writable, or build elsewhere with --out-dir."),
    ],
)
def test_a_full_or_read_only_preview_folder_is_one_line(tmp_path, cache, monkeypatch, capsys, code, message):
    """Issue 24: `OSError: [Errno 28]` from build_lock, `[Errno 30]` on `.build.lock`, each as a raw traceback."""
    tiny = chapter(tmp_path / "01-tiny.qmd", "1")
    _refusing_the_lock(code, monkeypatch)
    assert main(["preview", str(tiny), "--out-dir", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"Cannot build the preview in {tmp_path / 'out'}: {message}\n" and captured.out == ""


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_real_full_or_read_only_preview_folder_is_one_line(tmp_path, cache, fault):
    """The same on real file systems: a full 64 kB tmpfs, a read-only one (mounting needs root)."""
    out = tmp_path / "out"
    out.mkdir()
    options = "size=64k" if fault == "full" else "ro,size=64k"
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(out)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        if fault == "full":
            with contextlib.suppress(OSError), open(out / "filler", "wb") as filler:
                filler.write(b"\0" * 2**20)
        command = [sys.executable, "-m", "pooling.build", "preview", str(chapter(tmp_path / "01-tiny.qmd", "1"))]
        done = subprocess.run([*command, "--out-dir", str(out)], capture_output=True, text=True, env=os.environ)
    finally:
        subprocess.run(["umount", str(out)], check=True)
    assert done.returncode == 1 and done.stdout == ""
    reason = "the disk is full" if fault == "full" else "the folder is read-only"
    assert done.stderr.startswith(f"Cannot build the preview in {out}: {reason}") and done.stderr.count("\n") == 1


def test_a_malformed_quarto_yml_names_its_line_and_column_in_every_step(tmp_path):
    """Issue 24: an 18-frame traceback ending in a YAML error that did not name the file. Run in a copy of the
    project (the package and its `_quarto.yml`, one line broken), as a reader's clone would be."""
    import shutil

    shutil.copytree(SRC / "pooling", tmp_path / "src" / "pooling", ignore=shutil.ignore_patterns("__pycache__"))
    lines = (SRC.parent / "_quarto.yml").read_text().splitlines()
    broken = next(number for number, line in enumerate(lines) if line.startswith("  output-dir:"))
    lines[broken] = "  output-dir: _site: here"  # a second colon on one line
    (tmp_path / "_quarto.yml").write_text("\n".join(lines) + "\n")
    script = (
        "import sys\nfrom pooling.build import main\n"
        "for command in ('preview', 'asset', 'post-render'):\n    print(command, main([command]), file=sys.stderr)\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "POOLING_DEBUG"}
    environment["PYTHONPATH"] = str(tmp_path / "src")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment)
    assert "Traceback" not in done.stderr, done.stderr
    column = lines[broken].index(": here") + 1
    problem = f"_quarto.yml:{broken + 1}:{column}: not valid YAML (mapping values are not allowed here)."
    assert done.stderr.splitlines() == [
        f"{problem} Correct it there and run again.",
        "preview 1",
        f"asset: {problem} Correct it there and run again.",
        "asset 1",
        f"post-render: {problem} Correct it there and run again.",
        "post-render 1",
    ]
    debug = subprocess.run(
        [sys.executable, "-m", "pooling.build", "preview", "--debug"], capture_output=True, text=True, env=environment
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and debug.stderr.rstrip().endswith("run again.")


def test_the_navigation_lists_every_page_of_the_sidebar_when_one_chapter_is_built(tmp_path, cache):
    """Issue 24: building one chapter rewrote its navigation with the pages of that build alone (14 links, then 1)."""
    from pooling.render.execute import chapter_sources, front_matter

    tiny = chapter(tmp_path / "01-tiny.qmd", "1", title="Tiny")
    (result,) = build_preview([tiny, tiny], out_dir=tmp_path / "out")  # named twice, run once
    nav = re.search(r'<nav class="book-navigation".*?</nav>', (tmp_path / "out" / "01-tiny.html").read_text())
    links = re.findall(r'<a href="([^"]*)"[^>]*>([^<]*)</a>', nav.group(0))
    sidebar = chapter_sources()
    expected = [(str(page.relative_to(SRC.parent).with_suffix(".html")), page) for page in sidebar]
    assert links[: len(sidebar)] == [(href, front_matter(page)["title"]) for href, page in expected]
    assert links[len(sidebar) :] == [("01-tiny.html", "Tiny")]  # its notebook is under "Other Formats"


def _fit_in_cache(cache_folder: Path, name: str, key: str) -> Path:
    """A cache entry as `fit` writes it: the draws with the key inside, and the sidecar."""
    idata = _toy_idata(key)
    cache_folder.mkdir(parents=True, exist_ok=True)
    idata.to_netcdf(cache_folder / f"{name}-{key[:16]}.nc")
    (cache_folder / f"{name}-{key[:16]}.json").write_text(json.dumps({"key": key, "fit_seconds": 1.0}))
    return cache_folder / f"{name}-{key[:16]}.nc"


def test_a_reused_page_whose_fit_is_gone_from_the_cache_says_so(tmp_path, cache, capsys):
    """Issue 24: while pages were reused, a corrupt or missing fit was not reported at all (exit 0)."""
    key = "0123456789abcdef" * 4
    entry = _fit_in_cache(cache / "fits", "m", key)
    record = (
        "from pooling.fitting import _update_ledger\n"
        f"_update_ledger(lambda ledger: ledger.update({{'01-fits/m/{key[:16]}': {{'chapter': '01-fits'}}}}))"
    )
    source = chapter(tmp_path / "01-fits.qmd", record)
    arguments = ["preview", str(source), "--out-dir", str(tmp_path / "out")]
    assert main(arguments) == 0 and main(arguments) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("reused") and "not in the cache" not in out
    for damage, state in [
        (lambda: entry.write_bytes(entry.read_bytes()[:500]), "unreadable"),
        (entry.unlink, "missing"),
    ]:
        damage()
        assert main(arguments) == 0
        reused, notice = capsys.readouterr().out.splitlines()[:2]
        assert reused.startswith("reused") and notice == (
            f"       {source} was reused, but 1 of the fits it was made with are not in the cache {cache / 'fits'}: "
            f"m-{key[:16]}.nc ({state}). Its next run fits them again."
        )


def test_a_reused_page_with_a_corrupt_or_missing_survey_file_says_so(tmp_path, cache, monkeypatch, capsys):
    """Issue 24: the same for the survey files: reused pages do not read them, so the build said nothing."""
    from pooling import build

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "srrs2.dat").write_text("not the survey")
    monkeypatch.setattr(build, "RAW_DIR", raw)
    source = chapter(tmp_path / "01-tiny.qmd", "1")
    arguments = ["preview", str(source), "--out-dir", str(tmp_path / "out")]
    assert main(arguments) == 0
    assert "Notice" not in capsys.readouterr().out  # the chapter ran: a chapter that reads them fetches them
    assert main(arguments) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"Notice: in {raw}, srrs2.dat is corrupt and cty.dat is missing: the pages reused here were made before; "
        "the next chapter that reads the survey fetches a verified copy (`python -m pooling.data` does it now)."
    )


def test_a_chapter_with_malformed_front_matter_fails_with_its_line(tmp_path, cache, capsys):
    source = tmp_path / "01-front.qmd"
    source.write_text("---\ntitle: Front\nabstract: [unclosed\n---\n\n```{python}\n1\n```\n")
    assert main(["preview", str(source), "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{source}:4:1: not valid YAML" in err and "Traceback" not in err
    assert 'data-build-failed="true"' in (tmp_path / "out" / "01-front.html").read_text()


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            RuntimeError("a bug in the build"),
            "The build stopped: RuntimeError: a bug in the build\n"
            "Run again with --debug (or POOLING_DEBUG=1) to see where.\n",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/tmp/pooling-kernel"),
            "The build stopped: /tmp/pooling-kernel: No space left on device. Free some space and run again.\n",
        ),
    ],
)
def test_an_unexpected_failure_is_a_message_unless_debugging(tmp_path, cache, monkeypatch, capsys, error, message):
    from pooling import build

    def broken(source, reuse_executed):
        raise error

    monkeypatch.setattr(build, "execute_chapter", broken)
    monkeypatch.delenv("POOLING_DEBUG", raising=False)
    arguments = ["preview", str(chapter(tmp_path / "01-tiny.qmd", "1")), "--out-dir", str(tmp_path / "out")]
    assert main(arguments) == 1
    assert capsys.readouterr().err == message
    with pytest.raises(type(error)):
        main([*arguments, "--debug"])
    monkeypatch.setenv("POOLING_DEBUG", "1")
    with pytest.raises(type(error)):
        main(arguments)


def test_post_render_without_a_site_or_with_a_read_only_one_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QUARTO_PROJECT_OUTPUT_DIR", str(tmp_path / "_site"))
    assert main(["post-render"]) == 1
    assert (
        capsys.readouterr().err
        == f"post-render: there is no rendered site in {tmp_path / '_site'}: run `quarto render` first.\n"
    )
    (tmp_path / "_site").mkdir()
    (tmp_path / "_site" / "index.html").write_text('<script src="https://other.example/require.min.js"></script>')
    monkeypatch.setattr(files.tempfile, "mkstemp", lambda **kwargs: _raise(errno.EROFS, "Read-only file system"))
    assert main(["post-render"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"post-render: could not write {tmp_path / '_site' / 'index.html'}: Read-only file system")
    assert err.count("\n") == 1
