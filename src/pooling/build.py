"""Build without Quarto: execute each chapter in a Jupyter kernel and write the offline HTML preview.

The command line (`python -m pooling.build preview|asset|post-render`): the preview built under its folder's lock,
with a line per chapter as it finishes, and the Quarto site's pre- and post-render steps. The work is
`pooling.render`'s: `execute` runs the chapters, `preview` writes the pages, `site` is the Quarto site's steps.
A failure is one or two lines naming the file and the fix, with exit status 1; `--debug` (or POOLING_DEBUG=1)
shows its traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import itertools
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from pooling.data import PROJECT_ROOT, RADON_FILES, RAW_DIR, sha256
from pooling.files import DEBUG_VARIABLE, READ_ONLY_ERRORS, WriteError, debugging
from pooling.render.callouts import DIV_CLOSE, DIV_OPEN
from pooling.render.execute import (
    CODE_FENCE,
    ChapterResult,
    SourceError,
    cell_options,
    chapter_sources,
    console_path,
    execute_chapter,
    forget_executed,
    front_matter,
    quarto_config,
    read_source,
    stop_running_kernels,
)
from pooling.render.preview import PREVIEW_DIR, write_preview
from pooling.render.site import post_render, pre_render


class BuildLocked(RuntimeError):
    """Another build is writing the same preview folder."""


class PreviewFolderError(OSError):
    """The preview folder cannot be used at all (full disk, read-only); the message names it and the fix."""


def folder_problem(folder: Path, error: OSError) -> str:
    """Why nothing can be written in `folder`, and what to do, in one line."""
    if error.errno == errno.ENOSPC:
        return f"Cannot build the preview in {folder}: the disk is full. Free some space and run again."
    if error.errno in READ_ONLY_ERRORS:
        return (
            f"Cannot build the preview in {folder}: the folder is read-only. Make it writable, or build elsewhere "
            "with --out-dir."
        )
    return f"Cannot build the preview in {folder}: {error.strerror or error}. Choose another folder with --out-dir."


@contextlib.contextmanager
def build_lock(out_dir: Path):
    """Hold the preview folder's lock for the whole build; a second build in the same folder stops at once.

    Raises PreviewFolderError, naming the folder and the fix, when the lock cannot be written (a full disk, a
    read-only folder).
    """
    path = out_dir / ".build.lock"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a+b", buffering=0)  # unbuffered: a full disk fails the write here, not at close
    except OSError as error:
        raise PreviewFolderError(folder_problem(out_dir, error)) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().decode(errors="replace").strip() or "another process"
            raise BuildLocked(
                f"Another build (process {holder}) is writing {out_dir}: wait for it to finish, then run again."
            ) from None
        try:
            lock.truncate(0)
            lock.write(str(os.getpid()).encode())
        except OSError as error:
            raise PreviewFolderError(folder_problem(out_dir, error)) from None
        for leftover in out_dir.rglob(".*.partial"):  # from a build that was killed mid-write
            with contextlib.suppress(OSError):
                leftover.unlink()
        try:
            yield
        finally:
            lock.truncate(0)


# A code cell's closing fence, in the `.qmd` as jupytext reads it.
CODE_END = re.compile(r"^```+\s*$")


def check_markup(source: Path) -> None:
    """Read a chapter's markup as the preview will, before it runs, and raise a SourceError naming the `.qmd` line
    of the first thing it cannot read: fenced divs (`:::`) that do not pair up or a callout inside a callout
    (`render.callouts` cannot fold those), and `#|` cell options that are not YAML."""
    lines = read_source(source).splitlines()
    open_divs, in_code = [], False  # open_divs: the line of each open fenced div, and whether it is a callout
    for number, line in enumerate(lines, 1):
        if in_code:
            in_code = not CODE_END.match(line)
        elif CODE_FENCE.match(line):
            in_code = True
            options = itertools.takewhile(lambda text: text.startswith("#|"), lines[number:])
            cell_options("\n".join(options), source, first_line=number + 1)
        elif opening := DIV_OPEN.match(line):
            callout = re.search(r"(?:^|[\s.])callout-", opening["attributes"] or opening["bare"]) is not None
            outer = [at for at, is_callout in open_divs if is_callout]
            if callout and outer:
                raise SourceError(
                    f"{console_path(source)}:{number}: a callout inside the callout opened at line {outer[-1]}, "
                    "which the preview cannot fold: if that one ends before, close it with a line of ':::'."
                )
            open_divs.append((number, callout))
        elif DIV_CLOSE.match(line):
            if not open_divs:
                raise SourceError(
                    f"{console_path(source)}:{number}: this ':::' closes a div that was never opened: remove it, or "
                    "open the div it should close."
                )
            open_divs.pop()
    if open_divs:
        raise SourceError(
            f"{console_path(source)}:{open_divs[-1][0]}: this div is never closed: add a line of ':::' where it ends."
        )


def run_chapter(source: Path, reuse_executed: bool) -> ChapterResult:
    """Execute a chapter (`execute_chapter`), unless the preview could not read its markup: then it fails at
    once, without running, and no executed notebook of it is kept."""
    title = source.stem
    try:
        title = str(front_matter(source).get("title", title))
        check_markup(source)
    except SourceError as error:
        forget_executed(source)
        return ChapterResult(source, title, error=str(error))
    return execute_chapter(source, reuse_executed)


def progress_line(result: ChapterResult) -> str:
    """One line for the console as a chapter finishes: status, seconds, name, fits sampled and loaded."""
    status = "FAILED" if result.error else "reused" if result.frozen else "ok"
    ran = not result.frozen and result.notebook is not None  # not a chapter that failed before it ran
    fits = f"  fits: {result.fits_sampled} sampled, {result.fits_loaded} from cache" if ran else ""
    return f"{status:6} {result.seconds:7.1f} s  {console_path(result.source)}{fits}"


def _reads_other_pages(source: Path) -> bool:
    try:
        return bool(front_matter(source).get("reads-other-pages", False))
    except SourceError:
        return False  # it fails when it runs, with the line


def survey_notice(raw_dir: Path = RAW_DIR) -> str | None:
    """A one-line notice when the survey files fetched into `raw_dir` are now missing or corrupt: pages reused from
    earlier runs do not read them, so nothing else says so until a chapter that reads them runs again."""
    if not raw_dir.is_dir():
        return None  # never fetched here: the first chapter that needs them fetches them
    problems = []
    for name, checksum in RADON_FILES.items():
        try:
            if sha256(raw_dir / name) != checksum:
                problems.append(f"{name} is corrupt")
        except FileNotFoundError:
            problems.append(f"{name} is missing")
        except OSError as error:
            problems.append(f"{name} is unreadable ({error.strerror})")
    if not problems:
        return None
    return (
        f"Notice: in {console_path(raw_dir)}, {' and '.join(problems)}: the pages reused here were made before; the "
        "next chapter that reads the survey fetches a verified copy (`python -m pooling.data` does it now)."
    )


def build_preview(
    sources: list[Path] | None = None,
    jobs: int = 1,
    out_dir: Path = PREVIEW_DIR,
    reuse_executed: bool = False,
    report=None,
) -> list[ChapterResult]:
    """Execute the chapters (in `jobs` parallel kernels) and write the preview: pages for those that ran, error
    pages for those that failed.

    A chapter fails at whatever stage stops it: its markup (checked before it runs), its execution, or the making
    of its page; then it gets an error page and no executed notebook of it is kept. Pages marked
    `reads-other-pages` (the appendix that lists every fit) run after all the others have finished.
    `report(result)` is called as each chapter finishes, and again for a chapter whose page could not be made. On
    Ctrl-C the running kernels are stopped, queued chapters are dropped, nothing is written and KeyboardInterrupt
    is raised again. Raises BuildLocked when another build holds the preview folder, PreviewFolderError when the
    folder cannot be written at all.
    """
    sources = list(dict.fromkeys(sources or chapter_sources()))  # a chapter named twice runs once
    summaries = [source for source in sources if _reads_other_pages(source)]
    regular = [source for source in sources if source not in summaries]
    executed = {}

    def finished(result: ChapterResult) -> None:
        executed[result.source] = result
        if report is not None:
            report(result)

    with build_lock(out_dir):
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [pool.submit(run_chapter, source, reuse_executed) for source in regular]
            for future in as_completed(futures):
                finished(future.result())
            pool.shutdown()
            for source in summaries:
                finished(run_chapter(source, reuse_executed))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_running_kernels()
            pool.shutdown(wait=True)
            raise
        results = [executed[source] for source in sources]
        pages_to_make = [result for result in results if result.error is None]
        try:
            write_preview(results, out_dir)
        finally:
            for result in results:
                if result.error is not None:
                    forget_executed(result.source)
        for result in pages_to_make:
            if result.error is not None and report is not None:
                report(result)  # its page could not be made
    return results


def _failure(error: Exception, command: str) -> str:
    """A failed command's message: one or two lines naming the file and the fix, never a traceback."""
    if isinstance(error, (SourceError, PreviewFolderError)):
        return str(error)
    if isinstance(error, WriteError):
        text = ("The preview is incomplete: " if command == "preview" else "") + str(error)
    elif isinstance(error, OSError) and error.filename:
        full = " Free some space and run again." if error.errno == errno.ENOSPC else ""
        text = f"The build stopped: {error.filename}: {error.strerror or error}.{full}"
    else:
        return (
            f"The build stopped: {type(error).__name__}: {error}\n"
            f"Run again with --debug (or {DEBUG_VARIABLE}=1) to see where."
        )
    return text + (" Make it writable and run again." if error.errno in READ_ONLY_ERRORS else "")


def _post_render(out_dir: Path) -> int:
    """Quarto's post-render step on the rendered site in `out_dir`."""
    if not out_dir.is_dir():
        print(f"post-render: there is no rendered site in {out_dir}: run `quarto render` first.", file=sys.stderr)
        return 1
    try:
        changed = post_render(out_dir)
    except (RuntimeError, ValueError) as problem:
        print(f"post-render: {problem}", file=sys.stderr)
        return 1
    print(f"post-render: third-party scripts removed from {len(changed)} pages; nothing loads from other hosts")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["preview", "asset", "post-render"])
    parser.add_argument("chapters", nargs="*", type=Path, help="only these .qmd files (default: the whole site)")
    parser.add_argument("--out-dir", type=Path, default=PREVIEW_DIR, help="where the preview is written")
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed at once")
    parser.add_argument(
        "--execute-all", action="store_true", help="run every chapter, even those whose inputs have not changed"
    )
    parser.add_argument(
        "--debug", action="store_true", help=f"show the traceback of a failure (or set {DEBUG_VARIABLE}=1)"
    )
    args = parser.parse_intermixed_args(argv)  # options may come before or after the chapters
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    missing = [str(chapter) for chapter in args.chapters if not chapter.is_file()]
    if missing:
        parser.error(f"no such chapter: {', '.join(missing)}")
    try:
        config = quarto_config()  # every step reads the project's settings: a YAML error is named first
        if args.command == "asset":
            print(pre_render())
            return 0
        if args.command == "post-render":
            # Quarto passes the output folder, relative to the project (quarto.org/docs/projects/scripts.html).
            output = os.environ.get("QUARTO_PROJECT_OUTPUT_DIR") or (config.get("project") or {}).get("output-dir")
            return _post_render(PROJECT_ROOT / (output or "_site"))
        return _preview(args)
    except BuildLocked as error:
        print(error, file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except KeyboardInterrupt:
        print("Interrupted: running chapters stopped, the preview left as it was.", file=sys.stderr)
        return 130
    except Exception as error:
        if debugging(args.debug):
            raise
        prefix = "" if args.command == "preview" else f"{args.command}: "
        print(prefix + _failure(error, args.command), file=sys.stderr)
        return 1


def _preview(args: argparse.Namespace) -> int:
    """The `preview` command: build, print a line per chapter, then what failed; the exit status."""
    shown = set()

    def report(result: ChapterResult) -> None:
        print(progress_line(result), flush=True)
        for notice in result.notices:
            if notice not in shown:  # a read-only cache says so once, not once per chapter
                shown.add(notice)
                print(f"       {notice}", flush=True)

    results = build_preview(
        [chapter.resolve() for chapter in args.chapters] or None,
        jobs=args.jobs,
        out_dir=args.out_dir.resolve(),
        reuse_executed=not args.execute_all,
        report=report,
    )
    notice = survey_notice(RAW_DIR) if any(result.frozen for result in results) else None
    if notice:
        print(notice)
    failures = [result for result in results if result.error]
    for failure in failures:
        print(f"\n{failure.error}", file=sys.stderr)
    if failures:
        print(
            f"Preview incomplete: {len(failures)} chapter{'s' if len(failures) > 1 else ''} failed "
            f"(their pages in {args.out_dir} show the error).",
            file=sys.stderr,
        )
        return 1
    print(f"Offline preview (not a Quarto render) written to {args.out_dir}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
