"""The offline preview opened in headless Chromium: every page loads, draws its figures and its math, and asks
nothing of any host but 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from pooling.data import PROJECT_ROOT
from pooling.render.execute import chapter_sources
from pooling.render.markup import CODE, TEX_MATH
from pooling.render.preview import PREVIEW_DIR

pytestmark = [pytest.mark.browser, pytest.mark.slow]
playwright = pytest.importorskip("playwright.sync_api")

PAGES = [str(path.relative_to(PROJECT_ROOT).with_suffix(".html")) for path in chapter_sources()]
# Pages whose prose has TeX math ($…$ or $$…$$ outside code) in their source.
PAGES_WITH_MATH = {
    str(path.relative_to(PROJECT_ROOT).with_suffix(".html"))
    for path in chapter_sources()
    if any(TEX_MATH.search(piece) for piece in CODE.split(path.read_text())[::2])
}
# Every <math> element laid out by the browser's MathML engine, and what TeX is left as plain text outside code.
MATH_PROBE = r"""() => {
  const maths = Array.from(document.querySelectorAll("math"));
  const laidOut = m => getComputedStyle(m).display.includes("math") && m.getBoundingClientRect().width > 0;
  const rendered = maths.filter(laidOut);
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll("pre, code, script, style, math").forEach(element => element.remove());
  const tex = prose.textContent.match(/\\[()\[\]]|\$\$|\$\\[A-Za-z]|\\(?:beta|mu|tau|sigma|sim|mathcal|frac)\b/g) || [];
  return {count: maths.length, rendered: rendered.length, tex: tex};
}"""


SCREENSHOTS = PROJECT_ROOT / "_screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def site(built_chapters):
    """The preview, served on a free port of 127.0.0.1 for the duration of the module."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(PREVIEW_DIR))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium chromium-driver)")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url, viewport=None):
    """Open `url` with every request outside 127.0.0.1 blocked and recorded, and every console error kept."""
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
    page = context.new_page()
    record = {"errors": [], "outside": []}

    def route(request_route):
        if urlparse(request_route.request.url).hostname == "127.0.0.1":
            return request_route.continue_()
        record["outside"].append(request_route.request.url)  # no exceptions: the page must not ask
        return request_route.abort()

    def console(message):
        if message.type == "error" and not message.location.get("url", "").endswith("favicon.ico"):
            record["errors"].append(message.text)

    page.route("**/*", route)
    page.on("console", console)
    page.on("pageerror", lambda error: record["errors"].append(str(error)))
    response = page.goto(url, wait_until="load")
    return context, page, response, record


@pytest.mark.parametrize("page_path", PAGES)
def test_page_loads_draws_its_figures_and_stays_offline(browser, site, page_path):
    context, page, response, record = open_page(browser, urljoin(site, page_path))
    try:
        assert response.status == 200
        figures = page.locator(".plotly-graph-div")
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.plotly-graph-div')).every(d => d.querySelector('svg.main-svg'))",
            timeout=20_000,
        )
        for index in range(figures.count()):
            drawn = figures.nth(index).evaluate(
                "d => d.data.length > 0 && d.querySelectorAll('svg.main-svg path, svg.main-svg text').length > 0"
            )
            assert drawn, f"{page_path}: figure {index + 1} has no drawn content"
            alt = figures.nth(index).get_attribute("aria-label") or ""
            assert len(alt) > 20, f"{page_path}: figure {index + 1} has no alt text (its cell's fig-alt)"
        assert record["errors"] == [], f"{page_path}: console errors {record['errors']}"
        assert record["outside"] == [], f"{page_path}: requests left 127.0.0.1: {record['outside']}"
        math = page.evaluate(MATH_PROBE)
        assert math["tex"] == [], f"{page_path}: TeX shown as text: {math['tex']}"
        assert math["rendered"] == math["count"], f"{page_path}: {math['count'] - math['rendered']} equations not drawn"
        if page_path in PAGES_WITH_MATH:
            assert math["count"] >= 1, f"{page_path}: its source has math, the page has no <math> element"
        html = page.content()
        loads = html.count("plotly.min.js")
        assert loads == 1 if figures.count() else loads <= 1, f"{page_path}: plotly.js must be loaded once, by the page"
        assert "cdn.plot.ly" not in html and "require.min.js" not in html and "jquery" not in html.lower()
        links = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
        for link in links:
            target = urljoin(urljoin(site, page_path), link)
            if urlparse(target).hostname != "127.0.0.1":
                continue
            fragment = urlparse(target).fragment
            if target.split("#")[0] == urljoin(site, page_path) and fragment:
                found = page.evaluate("id => document.getElementById(decodeURIComponent(id)) !== null", fragment)
                assert found, f"{page_path}: no anchor #{fragment}"
            else:
                assert page.request.get(target.split("#")[0]).status == 200, f"{page_path}: broken link {link}"
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / (page_path.replace("/", "_") + ".png")), full_page=True)
    finally:
        context.close()


def test_figures_fit_a_phone_screen(browser, site):
    context, page, _, _ = open_page(
        browser, urljoin(site, "chapters/01-two-site-data.html"), {"width": 390, "height": 844}
    )
    try:
        page.wait_for_selector(".plotly-graph-div svg.main-svg")
        widths = page.eval_on_selector_all(
            ".plotly-graph-div", "divs => divs.map(d => d.getBoundingClientRect().right)"
        )
        assert widths and max(widths) <= 390
        page.screenshot(path=str(SCREENSHOTS / "phone_01-two-site-data.png"), full_page=False)
    finally:
        context.close()


def test_explorer_sliders_change_the_estimates(browser, site):
    context, page, _, _ = open_page(browser, urljoin(site, "chapters/05-how-much-pooling.html"))
    try:
        page.wait_for_selector("#pooling-explorer svg.main-svg")
        before = page.evaluate("document.getElementById('pooling-explorer').data[3].x")
        title_before = page.evaluate("document.getElementById('pooling-explorer').layout.title.text")
        summary = page.locator("#pooling-explorer-summary")
        summary_before = summary.text_content()
        label = page.locator("#pooling-explorer .slider-label-group text").first  # points per site: 3
        label.scroll_into_view_if_needed()
        box = label.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function(
            "document.getElementById('pooling-explorer').layout.sliders[0].active === 0", timeout=5_000
        )
        page.wait_for_timeout(300)
        after = page.evaluate("document.getElementById('pooling-explorer').data[3].x")
        assert after != before
        assert page.evaluate("document.getElementById('pooling-explorer').layout.title.text") != title_before
        assert summary.text_content().startswith("points per site: 3,") and summary_before.startswith(
            "points per site: 20,"
        )
    finally:
        context.close()


@pytest.mark.parametrize("opener", ["click", "keyboard"])
def test_solutions_start_folded_and_open_on_a_click_or_the_keyboard(browser, site, opener):
    context, page, _, _ = open_page(browser, urljoin(site, "chapters/04-partial-pooling.html"))
    try:
        solutions = page.locator("details.callout-tip")
        assert solutions.count() >= 3
        assert page.eval_on_selector_all("details.callout-tip", "all => all.filter(d => d.open).length") == 0
        solution = solutions.first
        answer = solution.locator(".jp-RenderedMarkdown").last  # the solution's computed answer
        assert answer.count() and not answer.is_visible(), "an answer shows before it is asked for"
        summary = solution.locator("summary")
        assert summary.text_content() == "Solution"
        if opener == "click":
            summary.click()
        else:
            summary.focus()
            page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('details.callout-tip').open", timeout=5_000)
        assert answer.is_visible() and len(answer.text_content().split()) >= 20
        assert not solutions.nth(1).locator(".jp-RenderedMarkdown").last.is_visible(), "one click opened two"
    finally:
        context.close()


AXE = PROJECT_ROOT / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
AXE_STANDARDS = ["wcag2a", "wcag2aa"]


@pytest.mark.parametrize("page_path", PAGES)
def test_page_passes_the_axe_accessibility_check(browser, site, page_path):
    """axe-core's WCAG 2 A and AA rules find nothing on the page (figures, tables, links, contrast, headings)."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: `make browser` installs it from npm into .axe/")
    context, page, response, _ = open_page(browser, urljoin(site, page_path))
    try:
        assert response.status == 200
        page.add_script_tag(path=str(AXE))
        result = page.evaluate(
            "standards => axe.run(document, {runOnly: {type: 'tag', values: standards}})", AXE_STANDARDS
        )
        found = [
            f"{violation['id']} ({violation['impact']}): {violation['help']} at {violation['nodes'][0]['html'][:100]}"
            for violation in result["violations"]
        ]
        assert found == [], f"{page_path}: " + "; ".join(found)
    finally:
        context.close()
