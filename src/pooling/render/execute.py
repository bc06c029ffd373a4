"""Running chapters: each page executed in a Jupyter kernel as Quarto does, its offline freeze, its failure report."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import jupytext
import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from traitlets.config import Config

from pooling.data import PROJECT_ROOT
from pooling.files import NOTICES_VARIABLE, atomic_write_text, notify, read_notices
from pooling.fitting import KEY_ATTRIBUTE, cache_dir, chapter_fits, executed_dir, read_ledger

CELL_TIMEOUT = 1800  # seconds; the all-states fits are the slowest cells


@dataclass
class ChapterResult:
    source: Path
    title: str
    abstract: str = ""
    seconds: float = 0.0
    error: str | None = None
    frozen: bool = False  # outputs reused from an earlier execution of the same inputs
    notebook: nbformat.NotebookNode | None = field(default=None, repr=False)
    fits_sampled: int = 0
    fits_loaded: int = 0
    notices: list[str] = field(default_factory=list)  # from the kernel (cache, data), for the console


class SourceError(ValueError):
    """A file the build reads (`_quarto.yml`, a chapter) cannot be read; the message names its file and line."""


def console_path(path: Path) -> Path:
    """A path as the console shows it: relative to the project when inside it."""
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def load_yaml(text: str, path: Path, first_line: int = 1):
    """`text`, the YAML found at line `first_line` of `path`; a SourceError names the file, line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{console_path(path)}:{mark.line + first_line}:{mark.column + 1}" if mark else console_path(path)
        problem = getattr(error, "problem", None) or str(error).replace("\n", " ")
        raise SourceError(f"{where}: not valid YAML ({problem}). Correct it there and run again.") from None


def read_source(path: Path) -> str:
    """The text of a file the build reads; a SourceError names the file and why it cannot be read."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise SourceError(f"{console_path(path)}: cannot be read ({reason}).") from None


def quarto_config(root: Path = PROJECT_ROOT) -> dict:
    """The project's `_quarto.yml`; a SourceError names the line and column of a YAML error."""
    path = root / "_quarto.yml"
    config = load_yaml(read_source(path), path)
    if not isinstance(config, dict):
        raise SourceError(f"{console_path(path)}: holds no options (Quarto expects a mapping such as `project:`).")
    return config


def chapter_sources(root: Path = PROJECT_ROOT) -> list[Path]:
    """Every page in the order of the site's sidebar, parts included."""
    sources = []

    def walk(entries):
        for entry in entries:
            if isinstance(entry, str):
                sources.append(root / entry)
            elif isinstance(entry, dict):
                if "href" in entry:
                    sources.append(root / entry["href"])
                walk(entry.get("contents", []))

    try:
        contents = quarto_config(root)["website"]["sidebar"]["contents"]
    except (KeyError, TypeError):
        contents = None
    if not isinstance(contents, list):
        raise SourceError(
            f"{console_path(root / '_quarto.yml')}: no list of pages under `website: sidebar: contents:` "
            "(the build reads the pages from there)."
        )
    walk(contents)
    return sources


def cell_options(source: str, path: Path = Path("a code cell"), first_line: int = 1) -> dict:
    """Quarto's `#|` cell options at the top of a code cell (whose first line is `first_line` of `path`)."""
    lines = []
    for line in source.splitlines():
        if not line.startswith("#|"):
            break
        lines.append(line[2:].strip())
    options = load_yaml("\n".join(lines), path, first_line) if lines else {}
    return options if isinstance(options, dict) else {}


FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*$", re.DOTALL | re.MULTILINE)


def front_matter(path: Path, text: str | None = None) -> dict:
    """A page's YAML front matter (`text` is its source, if already read); a SourceError names a YAML error's line."""
    match = FRONT_MATTER.match(read_source(path) if text is None else text)
    options = load_yaml(match.group(1), path, first_line=2) if match else {}
    if options is not None and not isinstance(options, dict):
        raise SourceError(f"{console_path(path)}:2: the front matter is not a list of `name: value` options.")
    return options or {}


def read_chapter(path: Path) -> tuple[nbformat.NotebookNode, dict]:
    """A `.qmd` as a notebook (the Jupyter engine's view of it) and its front matter; SourceError if unreadable."""
    text = read_source(path)
    options = front_matter(path, text)
    notebook = jupytext.reads(text, fmt="Rmd")
    if notebook.cells and notebook.cells[0].cell_type == "raw" and notebook.cells[0].source.startswith("---"):
        notebook.cells = notebook.cells[1:]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook, options


def execution_key(path: Path, root: Path = PROJECT_ROOT) -> str:
    """Everything that decides a chapter's outputs: its source, the package's code (every module, in subpackages
    too, by its path in the package) and the locked environment.

    The data are covered too: simulations are code, and the radon files are pinned by checksums in the package.
    """
    package = root / "src" / "pooling"
    digest = hashlib.sha256()
    for file in [path, root / "requirements.lock", *sorted(package.rglob("*.py"))]:
        name = file.relative_to(package).as_posix() if file.is_relative_to(package) else file.name
        digest.update(name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def frozen_path(path: Path, root: Path = PROJECT_ROOT) -> Path:
    """Where the executed notebook of these exact inputs is kept (beside the fit cache)."""
    return executed_dir() / f"{path.stem}-{execution_key(path, root)}.ipynb"


_RUNNING_CLIENTS: set[NotebookClient] = set()  # the kernels to stop on Ctrl-C
_RUNNING_LOCK = threading.Lock()
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")


def _reusable(frozen: Path) -> nbformat.NotebookNode | None:
    """The executed notebook at `frozen`, if it is readable and every fit it made is still in the ledger."""
    try:
        notebook = nbformat.read(frozen, as_version=4)
    except (OSError, ValueError, nbformat.ValidationError):
        return None
    ledger = read_ledger()
    if any(key not in ledger for key in notebook.metadata.get("pooling", {}).get("fits", [])):
        return None  # the record of its fits was lost: run it again so the appendix lists them
    return notebook


def _cached_fit_problem(entry: str) -> str | None:
    """The cached fit of a ledger entry ("chapter/model/key") and what is wrong with it, found without loading its
    draws: missing, unreadable (truncated, say), or holding another fit; None when it is there. A flipped bit inside
    the compressed draws is found only when the fit is loaded (which refits it)."""
    parts = entry.split("/")
    if len(parts) != 3:
        return None  # not recorded by `fit`, which names its entries so
    _, name, key = parts
    path = cache_dir() / f"{name}-{key}.nc"
    try:
        stored = json.loads(path.with_suffix(".json").read_text())["key"]
        with h5py.File(path, "r") as netcdf:
            inside = netcdf["posterior"].attrs.get(KEY_ATTRIBUTE)
    except FileNotFoundError:
        return f"{path.name} (missing)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path.name} (unreadable)"
    return None if stored == inside and str(stored).startswith(key) else f"{path.name} (another fit's)"


def _lost_fits(path: Path, notebook: nbformat.NotebookNode) -> list[str]:
    """A one-line notice when fits that a reused chapter was made with are gone from the cache."""
    entries = notebook.metadata.get("pooling", {}).get("fits", [])
    lost = [problem for problem in map(_cached_fit_problem, entries) if problem]
    if not lost:
        return []
    shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
    return [
        f"{console_path(path)} was reused, but {len(lost)} of the fits it was made with are not in the cache "
        f"{cache_dir()}: {shown}. Its next run fits them again."
    ]


def _save_executed(path: Path, notebook: nbformat.NotebookNode, frozen: Path) -> None:
    """Keep the executed notebook for reuse, with its fits; drop older ones of the same chapter."""
    notebook.metadata["pooling"] = {"fits": chapter_fits(path.stem)}
    try:
        frozen.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(frozen, nbformat.writes(notebook))
    except OSError as error:
        notify(f"{path.name} will run again next time: its executed notebook was not saved ({error})")
        return
    forget_executed(path, keep=frozen)


def forget_executed(path: Path, keep: Path | None = None) -> None:
    """Delete the chapter's kept executed notebooks (all, or all but `keep`): a chapter that failed at any stage
    of the build is never reused."""
    pattern = re.compile(re.escape(path.stem) + r"-[0-9a-f]{16}\.ipynb")
    for stale in executed_dir().glob(f"{path.stem}-*.ipynb"):
        if stale != keep and pattern.fullmatch(stale.name):
            try:
                stale.unlink()
            except OSError:
                pass  # a read-only cache: the stale notebook's key never matches, so it is never reused


def _code_cell_lines(path: Path) -> list[int]:
    """The `.qmd` line number of each code cell's opening fence, in order."""
    return [number for number, line in enumerate(path.read_text().splitlines(), 1) if CODE_FENCE.match(line)]


CODE_FENCE = re.compile(r"^```+\s*\{python")


def describe_failure(path: Path, notebook: nbformat.NotebookNode, error: CellExecutionError) -> str:
    """Where a chapter failed (the `.qmd` line, the code cell's number and label), the chapter's own frames
    (its cells and this package's code, not the libraries') and the exception."""
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    fences = _code_cell_lines(path)
    by_count = {cell.get("execution_count"): number for number, cell in enumerate(code_cells)}
    failing = next(
        (
            number
            for number, cell in enumerate(code_cells)
            if any(output.get("output_type") == "error" for output in cell.get("outputs", []))
        ),
        None,
    )
    source = console_path(path)

    def cell_name(number: int) -> str:
        label = cell_options(code_cells[number].source).get("label")
        return f"code cell {number + 1}" + (f" ({label})" if label else "")

    frames, hidden, first_line = [], 0, None
    entries = []
    if failing is not None:
        entries = next(
            output["traceback"] for output in code_cells[failing].outputs if output.get("output_type") == "error"
        )
    for entry in entries:
        plain = ANSI_CODES.sub("", entry)
        cell = re.match(r"Cell In\[(\d+)\], line (\d+)", plain)
        if cell and by_count.get(int(cell.group(1)), len(fences)) < len(fences):
            number = by_count[int(cell.group(1))]
            line = fences[number] + int(cell.group(2))
            first_line = first_line or line
            header, _, body = plain[cell.end() :].partition("\n")
            # The code lines are numbered as in the .qmd, not within the cell.
            body = re.sub(
                r"^(-*> ?|\s*)(\d+)",
                lambda m, at=fences[number]: m.group(1) + str(int(m.group(2)) + at),
                body,
                flags=re.M,
            )
            frames.append(f"{source}:{line}, in {cell_name(number)}{header}\n{body}")
        elif plain.startswith("File ") and str(PROJECT_ROOT / "src") in plain.split("\n", 1)[0]:
            frames.append(plain.replace(str(PROJECT_ROOT) + "/", ""))
        elif plain.startswith("File "):
            hidden += 1
    if hidden:
        frames.append(f"({hidden} library frame{'s' if hidden > 1 else ''} not shown)")
    where = f"{source}:{first_line or (fences[failing] if failing is not None and failing < len(fences) else 1)}"
    what = f"{cell_name(failing)} failed" if failing is not None else "failed"
    message = f"{where}: {what}\n" + "\n".join(frame.rstrip() for frame in frames) + f"\n{error.ename}: {error.evalue}"
    return ANSI_CODES.sub("", message)  # plain text: it goes to logs and the error page too


def execute_chapter(path: Path, reuse_executed: bool = False) -> ChapterResult:
    """Run every cell in a fresh kernel from the chapter's folder, as Quarto does.

    With `reuse_executed`, a chapter whose inputs are unchanged since it last ran is not executed again: the
    offline counterpart of Quarto's `freeze`, but keyed on the package and environment too, not only the `.qmd`.
    A page marked `reads-other-pages` in its front matter always runs, and so does a chapter whose fits are
    missing from the ledger. Notices from the kernel (cache, data) and the fits it sampled or loaded are
    collected for the console, never left in the page; a reused chapter has a notice if its fits are no longer
    in the cache. A chapter that cannot be read (its front matter, say) fails without running.
    """
    try:
        notebook, options = read_chapter(path)
    except SourceError as error:
        forget_executed(path)
        return ChapterResult(path, path.stem, error=str(error))
    result = ChapterResult(path, options.get("title", path.stem), str(options.get("abstract", "")).strip())
    start = time.perf_counter()
    frozen = frozen_path(path)
    if reuse_executed and not options.get("reads-other-pages", False):
        reused = _reusable(frozen) if frozen.exists() else None
        if reused is not None:
            result.notebook, result.frozen = reused, True
            result.notices = _lost_fits(path, reused)
            result.seconds = time.perf_counter() - start
            return result
    scratch = Path(tempfile.mkdtemp(prefix="pooling-"))  # this kernel's sockets and notices
    notices_file = scratch / "notices.jsonl"
    # The kernel talks to the build over local IPC sockets, not TCP: nothing is sent over the network, so ipykernel
    # has nothing to warn about (its "running over TCP without encryption" warning names IPC as the remedy).
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        config=Config({"KernelManager": {"transport": "ipc", "ip": str(scratch / "kernel")}}),
    )
    with _RUNNING_LOCK:
        _RUNNING_CLIENTS.add(client)
    try:
        client.execute(env=os.environ | {NOTICES_VARIABLE: str(notices_file)})
    except CellExecutionError as error:
        result.error = describe_failure(path, notebook, error)
    except Exception as error:  # the kernel died or was stopped: say so, never leave a good-looking page
        result.error = f"{console_path(path)}: the kernel stopped ({type(error).__name__}: {error})"
    finally:
        with _RUNNING_LOCK:
            _RUNNING_CLIENTS.discard(client)
        for notice in read_notices(notices_file):
            kind = notice.get("kind")
            if kind == "sampled":
                result.fits_sampled += 1
            elif kind == "loaded":
                result.fits_loaded += 1
            else:
                result.notices.append(notice.get("message", ""))
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    result.notebook = notebook
    if result.error is None:
        _save_executed(path, notebook, frozen)
    else:
        forget_executed(path)  # its fits are no longer in the ledger: the appendix must not expect them
    return result


def stop_running_kernels() -> int:
    """Kill every chapter kernel still running (with its child processes); return how many there were."""
    with _RUNNING_LOCK:
        clients = list(_RUNNING_CLIENTS)
    for client in clients:
        provisioner = getattr(client.km, "provisioner", None) if client.km is not None else None
        try:
            if getattr(provisioner, "pgid", None) and provisioner.pgid != os.getpgrp():
                os.killpg(provisioner.pgid, signal.SIGKILL)
            elif getattr(provisioner, "pid", None):
                os.kill(provisioner.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(clients)
