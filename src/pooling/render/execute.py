"""Running chapters: each page executed in a Jupyter kernel as Quarto does, its offline freeze, its failure report."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from traitlets.config import Config

from pooling.data import PROJECT_ROOT
from pooling.files import NOTICES_VARIABLE, atomic_write_text, notify, read_notices
from pooling.fitting import chapter_fits, executed_dir, read_ledger

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


def quarto_config(root: Path = PROJECT_ROOT) -> dict:
    return yaml.safe_load((root / "_quarto.yml").read_text())


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

    walk(quarto_config(root)["website"]["sidebar"]["contents"])
    return sources


def cell_options(source: str) -> dict:
    """Quarto's `#|` cell options at the top of a code cell."""
    lines = []
    for line in source.splitlines():
        if not line.startswith("#|"):
            break
        lines.append(line[2:].strip())
    return yaml.safe_load("\n".join(lines)) or {} if lines else {}


def read_chapter(path: Path) -> tuple[nbformat.NotebookNode, dict]:
    """A `.qmd` as a notebook (the Jupyter engine's view of it) and its front matter."""
    notebook = jupytext.reads(path.read_text(), fmt="Rmd")
    front_matter = {}
    if notebook.cells and notebook.cells[0].cell_type == "raw" and notebook.cells[0].source.startswith("---"):
        front_matter = yaml.safe_load(notebook.cells[0].source.strip("-\n")) or {}
        notebook.cells = notebook.cells[1:]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook, front_matter


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


def _save_executed(path: Path, notebook: nbformat.NotebookNode, frozen: Path) -> None:
    """Keep the executed notebook for reuse, with its fits; drop older ones of the same chapter."""
    notebook.metadata["pooling"] = {"fits": chapter_fits(path.stem)}
    try:
        frozen.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(frozen, nbformat.writes(notebook))
    except OSError as error:
        notify(f"{path.name} will run again next time: its executed notebook was not saved ({error})")
        return
    _remove_executed(path, keep=frozen)


def _remove_executed(path: Path, keep: Path | None = None) -> None:
    """Delete the chapter's kept executed notebooks (all, or all but `keep`)."""
    pattern = re.compile(re.escape(path.stem) + r"-[0-9a-f]{16}\.ipynb")
    for stale in executed_dir().glob(f"{path.stem}-*.ipynb"):
        if stale != keep and pattern.fullmatch(stale.name):
            try:
                stale.unlink()
            except OSError:
                pass  # a read-only cache: the stale notebook's key never matches, so it is never reused


def console_path(path: Path) -> Path:
    """A path as the console shows it: relative to the project when inside it."""
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


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
    collected for the console, never left in the page.
    """
    notebook, front_matter = read_chapter(path)
    result = ChapterResult(path, front_matter.get("title", path.stem), front_matter.get("abstract", "").strip())
    start = time.perf_counter()
    frozen = frozen_path(path)
    if reuse_executed and not front_matter.get("reads-other-pages", False):
        reused = _reusable(frozen) if frozen.exists() else None
        if reused is not None:
            result.notebook, result.frozen = reused, True
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
        _remove_executed(path)  # its fits are no longer in the ledger: the appendix must not expect them
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
