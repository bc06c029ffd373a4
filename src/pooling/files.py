"""Files: atomic writes that never leave a half-written file, free-space checks, and notices for the console.

Every file the package writes (fits, ledgers, data, pages, notebooks) goes through `atomic_write`, and what a killed
writer leaves behind is swept (`sweep_partials`). Notices about the cache and the data (an entry refitted, a bad copy
moved aside) go to the build's console, not into a page.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

NOTICES_VARIABLE = "POOLING_NOTICES"  # set by the offline build: the file a chapter's kernel writes notices to
READABLE_BY_ALL = 0o644
READ_ONLY_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM}
PARTIAL_SUFFIX = ".partial"
# A temporary file left this long unchanged by a writer that is no longer running was left by a killed process. The
# writer's pid is in the name; the age guards against a writer in another pid namespace sharing the folder (and
# against a reused pid that is running again the guard is the pid: such a file waits for the next sweep).
STALE_PARTIAL_SECONDS = 3600
DEBUG_VARIABLE = "POOLING_DEBUG"  # set to 1: a command that fails shows its traceback, not only its message


class WriteError(OSError):
    """A file could not be written; the message names the file, the reason and what to do."""

    @classmethod
    def from_error(cls, path: Path, error: OSError) -> WriteError:
        failure = cls(describe_write_error(path, error))
        failure.errno = error.errno
        return failure


def describe_write_error(path: Path, error: OSError) -> str:
    """A one-line account of why `path` could not be written, with the remedy."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        return f"could not write {path}: the disk is full. Free some space and run again."
    if error.errno in READ_ONLY_ERRORS:
        return f"could not write {path}: {reason} (the folder is read-only)."
    return f"could not write {path}: {reason}."


def atomic_write(path: Path, write, mode: int = READABLE_BY_ALL) -> None:
    """Call `write(temporary_path)` and rename the result to `path`, so readers see the old file or the new one.

    The temporary name is unique to this call (two processes can write the same file at once; the last rename
    wins) and holds the writer's pid, the file is readable by all, and on any failure the temporary file is removed
    and a `WriteError` naming `path` is raised. A process killed while writing leaves its temporary file: the
    first write into the folder by a later process sweeps it (`sweep_partials`).
    """
    path = Path(path)
    sweep_partials_once(path.parent)
    try:
        prefix = f".{path.name}.{os.getpid()}."
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=PARTIAL_SUFFIX)
    except OSError as error:
        raise WriteError.from_error(path, error) from error
    os.close(handle)
    partial = Path(name)
    try:
        write(partial)
        os.chmod(partial, mode)
        partial.replace(path)
    except OSError as error:
        raise WriteError.from_error(path, error) from error
    finally:
        partial.unlink(missing_ok=True)


def _writer_is_running(partial: Path) -> bool:
    """Whether the process whose pid `atomic_write` put in the temporary file's name is still running."""
    pid = partial.name.removesuffix(PARTIAL_SUFFIX).rsplit(".", 2)[-2]
    if not pid.isdigit():
        return False  # a name from before the pid was recorded
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running, as another user
    return True


def sweep_partials(folder: Path, older_than: float = STALE_PARTIAL_SECONDS) -> list[Path]:
    """Remove the temporary files of `atomic_write` that killed writers left in `folder`: those unchanged for
    `older_than` seconds whose writer is no longer running, so a write in progress is never touched. Returns the
    files removed; a folder that cannot be read or changed is left as it is."""
    removed = []
    try:
        candidates = list(Path(folder).glob(f".*{PARTIAL_SUFFIX}"))
    except OSError:
        return removed
    now = time.time()
    for partial in candidates:
        try:
            if now - partial.lstat().st_mtime < older_than or _writer_is_running(partial):
                continue
            partial.unlink()
        except OSError:
            continue  # removed by another sweep, or a read-only folder
        removed.append(partial)
    return removed


_SWEPT: set[Path] = set()


def sweep_partials_once(folder: Path) -> None:
    """`sweep_partials(folder)` the first time this process uses `folder`, with a notice if anything was removed."""
    folder = Path(folder).absolute()
    if folder in _SWEPT:
        return
    _SWEPT.add(folder)
    removed = sweep_partials(folder)
    if removed:
        notify(f"Removed {len(removed)} temporary file(s) left in {folder} by a killed process.")


def move_aside(path: Path, suffix: str) -> Path:
    """Rename `path` (a file or a folder) to `NAME.suffix` to keep it out of the way for inspection, or to
    `NAME.suffix-2`, `-3`, ... when an earlier one moved aside has that name: nothing moved aside is overwritten."""
    path = Path(path)
    number = 1
    while True:
        aside = path.with_name(f"{path.name}.{suffix}" + (f"-{number}" if number > 1 else ""))
        if not (aside.exists() or aside.is_symlink()):
            path.replace(aside)
            return aside
        number += 1


def debugging(flag: bool = False) -> bool:
    """Whether a command should show a failure's traceback: its `--debug` flag, or POOLING_DEBUG=1 in the
    environment."""
    return flag or os.environ.get(DEBUG_VARIABLE, "").strip() not in ("", "0")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda target: target.write_text(text))


def has_free_space(folder: Path, needed_bytes: int) -> bool:
    """Whether `folder` has room for `needed_bytes` plus a margin (HDF5 crashes the process on a full disk)."""
    margin = 16 * 2**20 + needed_bytes // 2  # HDF5 writes metadata and chunk indexes besides the raw values
    return shutil.disk_usage(folder).free >= needed_bytes + margin


def notify(message: str, kind: str = "notice") -> None:
    """Report `message` to the build's console: the notices file the build named, else standard error.

    Inside a chapter run by the offline build, standard error would end up in the chapter's page; the build
    reads the notices file instead and prints each line under the chapter's name. `kind` "sampled" or "loaded"
    counts a fit for the build's progress line and prints nothing.
    """
    target = os.environ.get(NOTICES_VARIABLE)
    if target:
        try:
            with open(target, "a") as handle:  # one short line per write: appends do not interleave
                handle.write(json.dumps({"kind": kind, "message": message}) + "\n")
            return
        except OSError:
            pass  # a notice is never worth failing a chapter: fall back to standard error
    if kind == "notice":
        print(message, file=sys.stderr)


def read_notices(path: Path) -> list[dict]:
    """The notices a chapter wrote to `path` (see `notify`), oldest first; an absent file has none."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    notices = []
    for line in lines:
        try:
            notices.append(json.loads(line))
        except json.JSONDecodeError:
            notices.append({"kind": "notice", "message": line})
    return notices
