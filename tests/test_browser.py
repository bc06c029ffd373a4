"""The offline preview opened in headless Chromium: every page loads, draws its figures and its math, and asks
nothing of any host but 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
from quarto_pages import BOOTSTRAP, COSMO, quarto_page

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
        loaders = page.eval_on_selector_all("script[src*='plotly']", "tags => tags.map(tag => tag.defer)")
        if figures.count():
            assert loaders == [True], f"{page_path}: plotly.js must be loaded once, deferred, got {loaders}"
        else:
            assert loaders == [], f"{page_path}: a page without figures must not load plotly.js"
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


# At a phone's width: how far the page scrolls sideways, every element that reaches past the screen's edge without a
# box that scrolls sideways to hold it (so it would be cut off or widen the page), and each figure's share of its
# area that the plot itself gets (the sum of its subplots' areas over the figure's), and whether plotly's toolbar
# covers its title.
PHONE_PROBE = r"""() => {
  const width = document.documentElement.clientWidth;
  const scroller = node => ["auto", "scroll"].includes(getComputedStyle(node).overflowX);
  const beyond = [];
  for (const element of document.querySelectorAll("body *")) {
    if (element.closest("svg, script, style")) continue;
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= width + 1) continue;
    let node = element.parentElement;
    while (node && node !== document.body && !(scroller(node) && node.getBoundingClientRect().right <= width + 1)) {
      node = node.parentElement;
    }
    if (!node || node === document.body) {
      beyond.push(`<${element.tagName.toLowerCase()} class="${element.getAttribute("class") || ""}"> ends at ` +
        `${Math.round(box.right)} px: ${(element.textContent || "").trim().slice(0, 40)}`);
    }
  }
  const shares = Array.from(document.querySelectorAll(".plotly-graph-div")).map(figure => {
    const layout = figure._fullLayout;
    let area = 0;
    Object.values(layout._plots).forEach(plot => { area += plot.xaxis._length * plot.yaxis._length; });
    const box = selector => figure.querySelector(selector)?.getBoundingClientRect();
    const title = box(".gtitle"), toolbar = box(".modebar");
    const overlap = Boolean(title && toolbar && title.right > toolbar.left && toolbar.right > title.left &&
      title.bottom > toolbar.top && toolbar.bottom > title.top);
    return {id: figure.id, share: area / (layout.width * layout.height), toolbarOnTitle: overlap};
  });
  return {sideways: document.scrollingElement.scrollWidth - width, beyond: beyond, shares: shares};
}"""
PHONE = {"width": 390, "height": 844}


@pytest.mark.parametrize("page_path", PAGES)
def test_page_fits_a_phone(browser, site, page_path):
    """At 390 px nothing scrolls the page sideways or is cut off at its edge (a long equation, table or code line
    scrolls inside its own box), and every figure keeps at least a third of its area for the plot."""
    context, page, _, _ = open_page(browser, urljoin(site, page_path), PHONE)
    try:
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.plotly-graph-div')).every(d => d.querySelector('svg.main-svg'))",
            timeout=20_000,
        )
        page.wait_for_timeout(1500)  # each figure fits itself to the screen after it is drawn (plots.FIT_SCRIPT)
        found = page.evaluate(PHONE_PROBE)
        assert found["sideways"] <= 0, f"{page_path}: the page scrolls {found['sideways']} px sideways"
        assert found["beyond"] == [], f"{page_path}: cut off at the screen's edge: " + "; ".join(found["beyond"][:5])
        for figure in found["shares"]:
            assert figure["share"] >= 1 / 3, f"{page_path}: {figure['id']} gives the plot {figure['share']:.0%}"
            assert not figure["toolbarOnTitle"], f"{page_path}: plotly's toolbar covers {figure['id']}'s title"
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / ("phone_" + page_path.replace("/", "_") + ".png")), full_page=True)
    finally:
        context.close()


EXPLORER = "chapters/05-how-much-pooling.html"


def test_explorer_dials_move_by_keyboard_and_change_figure_sentence_and_table(browser, site):
    context, page, _, record = open_page(browser, urljoin(site, EXPLORER))
    try:
        page.wait_for_selector("#pooling-explorer svg.main-svg")
        dial = page.locator("#pooling-explorer-dial-0")  # points per site: 3, 10, 20, 80; the middle one first
        status, table = page.locator(".explorer-status"), page.locator(".explorer-table tbody")
        before = [page.evaluate("document.getElementById('pooling-explorer').data[3].x"), status.text_content()]
        rows = table.locator("tr")
        first_row = rows.first.text_content()
        dial.focus()
        page.keyboard.press("Home")
        page.wait_for_function("document.getElementById('pooling-explorer-dial-0').value === '0'", timeout=5_000)
        page.wait_for_timeout(300)
        assert page.locator("output[for='pooling-explorer-dial-0']").text_content() == "3"
        assert dial.get_attribute("aria-valuetext") == "3"
        after = [page.evaluate("document.getElementById('pooling-explorer').data[3].x"), status.text_content()]
        assert after[0] != before[0] and after[1] != before[1], "the figure and the sentence follow the dial"
        assert rows.first.text_content() != first_row and rows.first.text_content().startswith("site 1")
        assert "site site" not in table.text_content() and len(status.text_content()) < 300
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.getElementById('pooling-explorer-dial-0').value === '1'", timeout=5_000)
        assert page.locator("output[for='pooling-explorer-dial-0']").text_content() == "10"
        assert record["errors"] == []
    finally:
        context.close()


def test_explorer_dials_and_plot_fit_a_laptop_screen_together(browser, site):
    context, page, _, _ = open_page(browser, urljoin(site, EXPLORER), {"width": 1280, "height": 800})
    try:
        page.wait_for_selector("#pooling-explorer svg.main-svg")
        page.wait_for_timeout(1000)
        page.locator(".pooling-explorer .explorer-dials").evaluate("dials => dials.scrollIntoView()")
        dials = page.locator(".pooling-explorer .explorer-dials").bounding_box()
        plot = page.locator("#pooling-explorer .nsewdrag").first.bounding_box()  # the plotting area
        assert dials["y"] >= 0 and plot["y"] + plot["height"] <= 800, (dials, plot)
        title = page.locator("#pooling-explorer .gtitle").bounding_box()
        legend = page.locator("#pooling-explorer .legend").bounding_box()
        assert title["y"] + title["height"] <= legend["y"] or legend["y"] + legend["height"] <= title["y"]
    finally:
        context.close()


@pytest.mark.parametrize("key", ["click", "Enter", " "])
def test_solutions_start_folded_and_open_and_close_by_a_click_enter_or_space(browser, site, key):
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

        def press():
            if key == "click":
                summary.click()
            else:
                summary.focus()
                page.keyboard.press(key)

        press()
        page.wait_for_function("() => document.querySelector('details.callout-tip').open", timeout=5_000)
        assert answer.is_visible() and len(answer.text_content().split()) >= 20
        assert not solutions.nth(1).locator(".jp-RenderedMarkdown").last.is_visible(), "one press opened two"
        press()
        page.wait_for_function("() => !document.querySelector('details.callout-tip').open", timeout=5_000)
    finally:
        context.close()


def test_every_tab_stop_before_the_first_solution_does_something(browser, site):
    """From the top of chapter 4's text, Tab reaches the first solution in a few presses, stopping only at things
    that act (links, buttons, summaries, inputs) or scroll; nbconvert had made every cell a stop (63 presses)."""
    context, page, _, _ = open_page(browser, urljoin(site, "chapters/04-partial-pooling.html"))
    try:
        page.wait_for_selector(".plotly-graph-div svg.main-svg")
        page.evaluate("() => { const main = document.querySelector('main'); main.tabIndex = -1; main.focus(); }")
        stops = []
        while len(stops) < 40:
            page.keyboard.press("Tab")
            stop = page.evaluate(
                """() => { const e = document.activeElement;
                  return {tag: e.tagName.toLowerCase(), scrolls: e.hasAttribute('data-scrollable'),
                          solution: e.matches('details.callout-tip > summary'), text: e.textContent.slice(0, 30)}; }"""
            )
            stops.append(stop)
            if stop["solution"]:
                break
        assert stops[-1]["solution"] and len(stops) <= 25, [stop["text"] for stop in stops]
        dead = [
            stop for stop in stops if stop["tag"] not in ("a", "button", "summary", "input") and not stop["scrolls"]
        ]
        assert dead == [], dead
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


def _axe(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("standards => axe.run(document, {runOnly: {type: 'tag', values: standards}})", AXE_STANDARDS)
    return sorted({violation["id"] for violation in result["violations"]})


@pytest.fixture
def quarto_site(tmp_path):
    """Quarto's markup (tests/quarto_pages.py) under cosmo and Bootstrap's scripts, before and after the project's
    post-render step and theme rules, served from 127.0.0.1."""
    if not (AXE.exists() and BOOTSTRAP.exists() and COSMO.exists()):
        pytest.fail("axe-core or Bootstrap is missing: `make browser` installs them from npm into .axe/")
    from pooling.render.site import accessible_markup

    # The theme without its Google Fonts import, as offline-fonts.scss has Quarto compile it.
    (tmp_path / "cosmo.css").write_text(re.sub(r"@import url\([^)]*\);", "", COSMO.read_text()))
    (tmp_path / "bootstrap.bundle.min.js").write_bytes(BOOTSTRAP.read_bytes())
    (tmp_path / "other.html").write_text("<!DOCTYPE html><title>other</title>")
    (tmp_path / "as-quarto-writes-it.html").write_text(quarto_page(with_book_rules=False))
    (tmp_path / "after-post-render.html").write_text(accessible_markup(quarto_page(with_book_rules=True)))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_quarto_markup_has_the_faults_measured_on_the_site_and_the_fixes_remove_them(browser, quarto_site):
    """Quarto's callout and citation markup under its rules fails axe as the real site failed Lighthouse: aria-expanded
    on a div, a list item without a list, grey captions, links told by colour alone. After the post-render step and
    book.scss: none of these."""
    context, page, _, _ = open_page(browser, quarto_site + "as-quarto-writes-it.html")
    try:
        found = _axe(page)
        for fault in ("aria-allowed-attr", "aria-required-parent", "color-contrast", "link-in-text-block"):
            assert fault in found, f"the rebuilt Quarto page should show {fault}, found {found}"
    finally:
        context.close()
    context, page, _, record = open_page(browser, quarto_site + "after-post-render.html")
    try:
        assert _axe(page) == [] and record["errors"] == []
    finally:
        context.close()


@pytest.mark.parametrize("key", ["Enter", " "])
def test_quarto_folded_callout_opens_and_closes_from_the_keyboard_after_post_render(browser, quarto_site, key):
    """With Bootstrap's own collapse plugin, as on the site: Tab reaches the callout's button, Enter or Space opens
    it and closes it again, and aria-expanded follows."""
    context, page, _, record = open_page(browser, quarto_site + "after-post-render.html")
    try:
        body = page.locator("#callout-1")
        button = page.locator("button.callout-disclosure")
        assert not body.is_visible() and button.get_attribute("aria-expanded") == "false"
        for _ in range(5):  # past the two links in the text
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('callout-disclosure')"):
                break
        assert page.evaluate("document.activeElement.textContent") == "Solution to Exercise 4.1"
        page.keyboard.press(key)
        page.wait_for_function("document.getElementById('callout-1').classList.contains('show')", timeout=5_000)
        assert body.is_visible() and button.get_attribute("aria-expanded") == "true"
        page.keyboard.press(key)
        page.wait_for_function("!document.getElementById('callout-1').classList.contains('show')", timeout=5_000)
        page.wait_for_timeout(400)  # the collapse animation
        assert not body.is_visible() and button.get_attribute("aria-expanded") == "false"
        header = page.locator(".callout-header")
        assert header.get_attribute("aria-expanded") is None, "Bootstrap put aria-expanded back on the div"
        header.click(position={"x": 5, "y": 5})  # the pointer still opens it from anywhere on the header
        page.wait_for_function("document.getElementById('callout-1').classList.contains('show')", timeout=5_000)
        assert record["errors"] == []
    finally:
        context.close()
