"""Build without Quarto: execute each chapter in a Jupyter kernel and write the offline HTML preview.

The command line (`python -m pooling.build preview|asset|post-render`): the preview built under its folder's lock,
with a line per chapter as it finishes, and the Quarto site's pre- and post-render steps. The work is
`pooling.render`'s: `execute` runs the chapters, `preview` writes the pages, `site` is the Quarto site's steps.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from pooling.data import PROJECT_ROOT
from pooling.files import WriteError
from pooling.render.execute import (
    ChapterResult,
    chapter_sources,
    console_path,
    execute_chapter,
    read_chapter,
    stop_running_kernels,
)
from pooling.render.preview import PREVIEW_DIR, write_preview
from pooling.render.site import post_render, pre_render


class BuildLocked(RuntimeError):
    """Another build is writing the same preview folder."""


@contextlib.contextmanager
def build_lock(out_dir: Path):
    """Hold the preview folder's lock for the whole build; a second build in the same folder stops at once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".build.lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise BuildLocked(
                f"Another build (process {holder}) is writing {out_dir}: wait for it to finish, then run again."
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        for leftover in out_dir.rglob(".*.partial"):  # from a build that was killed mid-write
            leftover.unlink(missing_ok=True)
        try:
            yield
        finally:
            lock.truncate(0)


def progress_line(result: ChapterResult) -> str:
    """One line for the console as a chapter finishes: status, seconds, name, fits sampled and loaded."""
    status = "FAILED" if result.error else "reused" if result.frozen else "ok"
    fits = "" if result.frozen else f"  fits: {result.fits_sampled} sampled, {result.fits_loaded} from cache"
    return f"{status:6} {result.seconds:7.1f} s  {console_path(result.source)}{fits}"


def build_preview(
    sources: list[Path] | None = None,
    jobs: int = 1,
    out_dir: Path = PREVIEW_DIR,
    reuse_executed: bool = False,
    report=None,
) -> list[ChapterResult]:
    """Execute the chapters (in `jobs` parallel kernels) and write the preview: pages for those that ran, error
    pages for those that failed.

    Pages marked `reads-other-pages` (the appendix that lists every fit) run after all the others have finished.
    `report(result)` is called as each chapter finishes. On Ctrl-C the running kernels are stopped, queued
    chapters are dropped, nothing is written and KeyboardInterrupt is raised again. Raises BuildLocked when
    another build holds the preview folder.
    """
    sources = sources or chapter_sources()
    summaries = [source for source in sources if read_chapter(source)[1].get("reads-other-pages", False)]
    regular = [source for source in sources if source not in summaries]
    executed = {}

    def finished(result: ChapterResult) -> None:
        executed[result.source] = result
        if report is not None:
            report(result)

    with build_lock(out_dir):
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [pool.submit(execute_chapter, source, reuse_executed) for source in regular]
            for future in as_completed(futures):
                finished(future.result())
            pool.shutdown()
            for source in summaries:
                finished(execute_chapter(source, reuse_executed))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_running_kernels()
            pool.shutdown(wait=True)
            raise
        results = [executed[source] for source in sources]
        write_preview(results, out_dir)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["preview", "asset", "post-render"])
    parser.add_argument("chapters", nargs="*", type=Path, help="only these .qmd files (default: the whole site)")
    parser.add_argument("--out-dir", type=Path, default=PREVIEW_DIR, help="where the preview is written")
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed at once")
    parser.add_argument(
        "--execute-all", action="store_true", help="run every chapter, even those whose inputs have not changed"
    )
    args = parser.parse_intermixed_args(argv)  # options may come before or after the chapters
    if args.command == "asset":
        print(pre_render())
        return 0
    if args.command == "post-render":
        # Quarto passes the output folder, relative to the project (quarto.org/docs/projects/scripts.html).
        out_dir = PROJECT_ROOT / os.environ.get("QUARTO_PROJECT_OUTPUT_DIR", "_site")
        try:
            changed = post_render(out_dir)
        except (RuntimeError, ValueError) as problem:
            print(f"post-render: {problem}", file=sys.stderr)
            return 1
        print(f"post-render: third-party scripts removed from {len(changed)} pages; nothing loads from other hosts")
        return 0
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    missing = [str(chapter) for chapter in args.chapters if not chapter.is_file()]
    if missing:
        parser.error(f"no such chapter: {', '.join(missing)}")
    shown = set()

    def report(result: ChapterResult) -> None:
        print(progress_line(result), flush=True)
        for notice in result.notices:
            if notice not in shown:  # a read-only cache says so once, not once per chapter
                shown.add(notice)
                print(f"       {notice}", flush=True)

    try:
        results = build_preview(
            [chapter.resolve() for chapter in args.chapters] or None,
            jobs=args.jobs,
            out_dir=args.out_dir.resolve(),
            reuse_executed=not args.execute_all,
            report=report,
        )
    except BuildLocked as error:
        print(error, file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except KeyboardInterrupt:
        print("Interrupted: running chapters stopped, the preview left as it was.", file=sys.stderr)
        return 130
    except WriteError as error:
        print(f"The preview is incomplete: {error}", file=sys.stderr)
        return 1
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
