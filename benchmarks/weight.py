"""Page weight and Lighthouse: every page of a built site served gzip-compressed, as the publishing host serves it.

`python benchmarks/weight.py --before OLD_PREVIEW --after _preview` measures both folders in one run (each page:
bytes transferred in all and for plotly.js, bytes after decompression, Lighthouse's mobile performance and
accessibility scores and its largest contentful paint) and writes the table into benchmarks/results.md.
Lighthouse comes from npm (`make lighthouse`) and drives Debian's Chromium.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from run import replace_section  # benchmarks/run.py, beside this script

from pooling.data import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results.md"
LIGHTHOUSE = PROJECT_ROOT / ".lighthouse" / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = "/usr/lib/chromium/chromium"  # the binary itself: Debian's /usr/bin/chromium is a wrapper script
SECTION = "## Page weight and Lighthouse (issue 23)"
COMPRESSED = {".html", ".js", ".css", ".json", ".svg", ".ipynb", ".txt"}


class GzipHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, text compressed with gzip when the browser accepts it (as GitHub Pages and most hosts do)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        accepts = "gzip" in self.headers.get("Accept-Encoding", "")
        if path.suffix not in COMPRESSED or not accepts or not path.is_file():
            return super().send_head()
        body = gzip.compress(path.read_bytes(), compresslevel=6)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return _BytesFile(body)


class _BytesFile:
    """What `send_head` returns: something `copyfile` can read and the handler can close."""

    def __init__(self, data: bytes):
        self.data = data

    def read(self, size=-1):
        data, self.data = self.data, b""
        return data

    def close(self):
        pass


@contextmanager
def serve(folder: Path):
    """`folder` served on a free port of 127.0.0.1, compressing text; yields its address."""
    handler = functools.partial(GzipHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def lighthouse(url: str) -> dict:
    """Lighthouse's report of one page: default mobile profile (emulated phone, simulated slow 4G and CPU)."""
    if not LIGHTHOUSE.exists():
        raise SystemExit("Lighthouse is missing: `make lighthouse` installs it from npm into .lighthouse/")
    run = subprocess.run(
        [
            str(LIGHTHOUSE),
            url,
            "--output=json",
            "--output-path=stdout",
            "--quiet",
            "--only-categories=performance,accessibility",
            "--chrome-flags=--headless=new --no-sandbox --disable-gpu",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, CHROME_PATH=CHROMIUM),
        check=True,
    )
    return json.loads(run.stdout)


def page_row(report: dict) -> dict:
    """What the table shows of one Lighthouse report."""
    requests = report["audits"]["network-requests"]["details"]["items"]
    plotly = [request for request in requests if "plotly" in request["url"].rsplit("/", 1)[-1]]
    failed = [audit["id"] for audit in report["categories"]["accessibility"]["auditRefs"] if _failed(report, audit)]
    return {
        "transferred (kB)": sum(request.get("transferSize", 0) for request in requests) / 1000,
        "plotly.js transferred (kB)": sum(request.get("transferSize", 0) for request in plotly) / 1000,
        "uncompressed (kB)": sum(request.get("resourceSize", 0) for request in requests) / 1000,
        "performance": round(100 * report["categories"]["performance"]["score"]),
        "accessibility": round(100 * report["categories"]["accessibility"]["score"]),
        "largest paint (s)": report["audits"]["largest-contentful-paint"]["numericValue"] / 1000,
        "accessibility audits failed": ", ".join(failed) or "none",
    }


def _failed(report: dict, reference: dict) -> bool:
    audit = report["audits"][reference["id"]]
    return reference["weight"] > 0 and audit["score"] is not None and audit["score"] < 1


def measure(folder: Path, pages: list[str], runs: int) -> pd.DataFrame:
    """Each page's row from the median of `runs` Lighthouse runs (by performance score): on a shared machine one
    run can be slowed by other work, as Lighthouse's own advice on variability says."""
    rows = []
    with serve(folder) as address:
        for page in pages:
            reports = sorted(
                (page_row(lighthouse(address + page)) for _ in range(runs)), key=lambda row: row["performance"]
            )
            rows.append({"page": page, **reports[len(reports) // 2]})
            print(f"{folder}: {page} measured", file=sys.stderr, flush=True)
    return pd.DataFrame(rows).set_index("page")


def site_pages(folder: Path) -> list[str]:
    """The pages of a built site, the home page first."""
    pages = sorted(str(path.relative_to(folder)) for path in folder.rglob("*.html"))
    return sorted(pages, key=lambda page: page != "index.html")


def table(before: pd.DataFrame, after: pd.DataFrame) -> str:
    columns = ["transferred (kB)", "plotly.js transferred (kB)", "uncompressed (kB)", "performance", "accessibility"]
    joined = pd.DataFrame(index=after.index)
    for column in columns:
        joined[f"{column}: before"] = before[column]
        joined[f"{column}: after"] = after[column]
    joined["largest paint (s): before"] = before["largest paint (s)"].round(1)
    joined["largest paint (s): after"] = after["largest paint (s)"].round(1)
    for column in joined:
        if "kB" in column:
            joined[column] = joined[column].round(0).astype("Int64")
    return joined.reset_index().to_markdown(index=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the site before the change (a built preview)")
    parser.add_argument("--after", type=Path, default=PROJECT_ROOT / "_preview", help="the site after it")
    parser.add_argument("--runs", type=int, default=3, help="Lighthouse runs per page, the median reported")
    args = parser.parse_args(argv)
    pages = site_pages(args.after)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    before, after = measure(args.before, pages, args.runs), measure(args.after, pages, args.runs)
    failed = after[after["accessibility audits failed"] != "none"]["accessibility audits failed"]
    section = (
        f"{SECTION}\n\nMeasured on {started} (`python benchmarks/weight.py --before ... --after ...`): every page of "
        "the offline preview served from 127.0.0.1 with gzip compression (as the publishing host compresses), "
        "Lighthouse "
        + subprocess.run([str(LIGHTHOUSE), "--version"], capture_output=True, text=True).stdout.strip()
        + f" (the median of {args.runs} runs a page) with its default mobile profile (an emulated phone on a "
        'simulated slow 4G network and a slowed CPU) in Debian\'s Chromium; "before" is the preview of main before '
        'issue 23, "after" this branch\'s. '
        "Sizes in kB of 1000 bytes; transferred is what went over the wire, uncompressed what the browser "
        "unpacked.\n\n"
        + table(before, after)
        + "\n\nAccessibility audits still failing after: "
        + ("; ".join(f"{page}: {audits}" for page, audits in failed.items()) or "none")
        + ".\n"
    )
    RESULTS.write_text(replace_section(RESULTS.read_text(), SECTION, section))
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
