"""Files: atomic writes that never leave a half-written file, free-space checks, and notices for the console.

Every file the package writes (fits, ledgers, data, pages, notebooks) goes through `atomic_write`. Notices about
the cache and the data (an entry refitted, a bad copy moved aside) go to the build's console, not into a page.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

NOTICES_VARIABLE = "POOLING_NOTICES"  # set by the offline build: the file a chapter's kernel writes notices to
READABLE_BY_ALL = 0o644
READ_ONLY_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM}


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
    wins), the file is readable by all, and on any failure the temporary file is removed and a `WriteError`
    naming `path` is raised.
    """
    path = Path(path)
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
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
