"""Exercises: chapters 1-9 each end with three to five, of all three kinds, each with a worked solution folded in a
collapsed callout; the build executes every solution, and the preview folds each one as Quarto does."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import nbformat
import pytest

from pooling.data import PROJECT_ROOT
from pooling.render.callouts import FenceError, callout_cells
from pooling.render.execute import chapter_sources, execute_chapter, read_chapter
from pooling.render.preview import PREVIEW_DIR, write_preview

CHAPTERS = [path for path in chapter_sources() if re.match(r"0[1-9]-", path.name)]
DIAGNOSIS = re.compile(r"\bdiagnostics_table\(|\baz\.summary\(")
# What a reader writes with plain Bambi, PyMC and ArviZ, without the package's helpers; or a question that asks for a
# derivation by hand. Every chapter has an exercise of one of the two kinds.
PLAIN_BAMBI_OR_ARVIZ = re.compile(r"\bbmb\.Model\(|\bpm\.Model\(|\.predict\(|\baz\.(summary|loo|compare)\(")
DERIVATION = re.compile(r"\b(Show\s+that|[Dd]erive)\b")
RADON_CHAPTERS = {"06", "07", "08", "09"}
KINDS = {"concept", "computation", "modelling"}
EXERCISE = re.compile(r"^### Exercise (?P<chapter>\d+)\.(?P<number>\d+) \((?P<kind>[a-z]+)\): (?P<title>\S.*)$", re.M)
# What "uses the exact engine or the explorer" means in a solution's code.
EXACT_OR_EXPLORER = re.compile(
    r"\b(partial_pooling_posterior|varying_intercept_posterior|gaussian_grid_posterior|shrinkage_factor|"
    r"conditional_slope_posterior|explorer_setting|explorer_grid)\("
)


@dataclass
class Exercise:
    chapter: int
    number: int
    kind: str
    title: str
    question: str = ""
    solutions: list = field(default_factory=list)  # the callouts after the question: (callout, its cells)


def exercises(notebook: nbformat.NotebookNode) -> list[Exercise]:
    """The exercises of a chapter's notebook (source or executed): each heading, its question, its callouts."""
    found, in_section, callouts = [], False, {}
    for cell in callout_cells(notebook).cells:
        callout = cell.metadata.get("callout")
        if callout is not None:
            assert in_section and found, f"callout {callout['title']!r} outside the exercises"
            if callout["number"] not in callouts:
                callouts[callout["number"]] = (callout, [])
                found[-1].solutions.append(callouts[callout["number"]])
            callouts[callout["number"]][1].append(cell)
            continue
        if cell.cell_type != "markdown":
            assert not in_section, "code between exercises must be inside a solution"
            continue
        for line in cell.source.splitlines():
            if line.startswith("## "):
                assert not in_section, f"a section after the exercises: {line}"
                in_section = line.strip() == "## Exercises"
            elif in_section and line.startswith("### "):
                heading = EXERCISE.match(line)
                assert heading, f"an exercise heading must read '### Exercise N.k (kind): Title', got {line!r}"
                found.append(
                    Exercise(int(heading["chapter"]), int(heading["number"]), heading["kind"], heading["title"])
                )
            elif in_section and found:
                found[-1].question += line + "\n"
    return found


def _code(solution) -> str:
    return "\n".join(cell.source for cell in solution[1] if cell.cell_type == "code")


@pytest.mark.parametrize("source", CHAPTERS, ids=[path.name for path in CHAPTERS])
def test_every_chapter_ends_with_exercises_of_three_kinds_each_with_a_folded_solution(source):
    chapter = int(source.name[:2])
    found = exercises(read_chapter(source)[0])
    assert 3 <= len(found) <= 5, f"{source.name}: {len(found)} exercises, not 3 to 5"
    assert [exercise.number for exercise in found] == list(range(1, len(found) + 1))
    assert {exercise.chapter for exercise in found} == {chapter}, f"{source.name}: exercises numbered for another"
    assert {exercise.kind for exercise in found} == KINDS, f"{source.name}: kinds {[e.kind for e in found]}"
    for exercise in found:
        name = f"{source.name}: exercise {chapter}.{exercise.number}"
        assert "$" not in exercise.title, f"{name}: math in a heading"
        assert len(exercise.question.split()) >= 8, f"{name} asks nothing"
        assert len(exercise.solutions) == 1, f"{name} has {len(exercise.solutions)} solutions"
        callout, cells = exercise.solutions[0]
        assert (callout["kind"], callout["collapse"], callout["title"]) == ("tip", "true", "Solution"), name
        code = _code(exercise.solutions[0])
        assert code, f"{name}: the solution computes nothing"
        assert "prose(" in code and "assert " in code, f"{name}: the solution must state its answer and assert it"
        # An exercise fit passes the gate, unless the exercise is about the failure, which its solution asserts.
        failing_on_purpose = "demonstrates_failure" in code
        assert not failing_on_purpose or "diagnostics.problems()" in code, f"{name}: an exercise fit passes the gate"
        # plotly sizes a figure from its container, which a folded callout hides: it would open at the wrong width.
        assert not re.search(r"\bplots\.|go\.Figure|label: fig-", code), f"{name}: a figure in a folded solution"
        assert "diagnostics_table(" not in code or "publish=False" in code, f"{name}: exercise fits are not published"
    solutions = [_code(exercise.solutions[0]) for exercise in found]
    assert any(
        PLAIN_BAMBI_OR_ARVIZ.search(code) or DERIVATION.search(exercise.question)
        for exercise, code in zip(found, solutions, strict=True)
    ), f"{source.name}: no exercise a reader solves with plain Bambi/ArviZ or by a derivation"
    assert any(EXACT_OR_EXPLORER.search(code) for code in solutions), f"{source.name}: no exact engine or explorer"
    if source.name[:2] in RADON_CHAPTERS:
        # Diagnosed with the book's table, or with ArviZ as a reader does with a plain Bambi fit
        fits = [code for code in solutions if re.search(r"\bfit\(", code) and DIAGNOSIS.search(code)]
        assert fits, f"{source.name}: no exercise fits and diagnoses a model"


@pytest.mark.slow
@pytest.mark.parametrize("source", CHAPTERS, ids=[path.name for path in CHAPTERS])
def test_every_solution_executes_and_states_its_answer(built_chapters, source):
    result = built_chapters[source]
    assert result.error is None, result.error
    for exercise in exercises(result.notebook):
        _, cells = exercise.solutions[0]
        code = [cell for cell in cells if cell.cell_type == "code"]
        assert all(cell.get("execution_count") for cell in code), f"exercise {exercise.number}: a cell did not run"
        outputs = [output for cell in code for output in cell.outputs]
        assert not [output for output in outputs if output.get("output_type") == "error"]
        answers = [output["data"]["text/markdown"] for output in outputs if "text/markdown" in output.get("data", {})]
        assert answers and len(" ".join(answers).split()) >= 20, f"exercise {exercise.number} states no answer"


def _details(page: str) -> list[str]:
    """The page's folded callouts (other <details>, such as the explorer's table, are not callouts)."""
    return re.findall(r'<details class="callout\b[^>]*>.*?</details>', page, re.DOTALL)


@pytest.mark.slow
@pytest.mark.parametrize("source", CHAPTERS, ids=[path.name for path in CHAPTERS])
def test_the_preview_folds_every_solution(built_chapters, source):
    """One closed <details> per solution, titled "Solution", holding every cell of it and nothing else's."""
    page = (PREVIEW_DIR / source.relative_to(PROJECT_ROOT).with_suffix(".html")).read_text()
    folded = _details(page)
    count = len(exercises(read_chapter(source)[0]))
    assert len(folded) == count
    for block in folded:
        assert block.startswith('<details class="callout callout-tip" data-callout="tip"><summary>Solution</summary>')
    outside = re.sub(r'<details class="callout\b[^>]*>.*?</details>', "", page, flags=re.DOTALL)
    assert "cell-id=callout-" not in outside, "a solution cell sits outside its fold"
    inside = " ".join(folded)
    assert [f"cell-id=callout-{number}-0" in inside for number in range(1, count + 1)] == [True] * count


TINY = """---
title: Tiny
---

Before.

## Exercises

### Exercise 1.1 (concept): A question

Why would it be so?

::: {.callout-tip collapse="true"}
## Solution

Some prose first.

```{python}
answer = 6 * 7
answer
```

```{python}
#| echo: false
#| label: tbl-answer
#| tbl-cap: "The answer, captioned."
from IPython.display import Markdown
Markdown(f"The answer is **{answer}**.")
```
:::

::: callout-note
A note with no title, and *emphasis*.
:::

::: {.callout-warning collapse="false" title="Open by default"}
Shown until folded.
:::

After.
"""


def test_callouts_are_split_out_titled_and_numbered(tmp_path):
    chapter = tmp_path / "01-tiny.qmd"
    chapter.write_text(TINY)
    cells = callout_cells(read_chapter(chapter)[0]).cells
    marks = [((cell.metadata.get("callout") or {}).get("number"), cell.cell_type) for cell in cells]
    assert marks == [
        (None, "markdown"),
        (1, "markdown"),
        (1, "code"),
        (1, "code"),
        (2, "markdown"),
        (3, "markdown"),
        (None, "markdown"),
    ]
    assert cells[1].metadata["callout"] == {"number": 1, "kind": "tip", "collapse": "true", "title": "Solution"}
    assert cells[4].metadata["callout"] == {"number": 2, "kind": "note", "collapse": None, "title": ""}
    assert cells[5].metadata["callout"]["title"] == "Open by default" and cells[5].source == "Shown until folded."
    assert cells[1].source == "Some prose first." and not any(":::" in cell.source for cell in cells)
    assert [exercise.title for exercise in exercises(read_chapter(chapter)[0])] == ["A question"]


@pytest.mark.parametrize(
    "markdown, message",
    [
        ("::: {.callout-tip}\nopen forever\n", "never closed"),
        ("text\n:::\n", "never opened"),
        ("::: {.callout-tip}\n::: {.callout-note}\ninner\n:::\n:::\n", "callout inside a callout"),
    ],
)
def test_fences_that_do_not_pair_up_are_named(markdown, message):
    with pytest.raises(FenceError, match=message):
        callout_cells(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)]))


def test_other_fenced_divs_keep_their_text():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("::: {#refs}\nreferences\n:::\n")])
    (cell,) = callout_cells(notebook).cells
    assert cell.source == "references" and "callout" not in cell.metadata


@pytest.mark.parametrize("source", chapter_sources(), ids=[path.name for path in chapter_sources()])
def test_every_page_pairs_its_fences(source):
    callout_cells(read_chapter(source)[0])


def test_preview_folds_a_collapsed_callout_keeps_an_open_one_open_and_boxes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLING_CACHE", str(tmp_path / "cache" / "fits"))
    chapter = tmp_path / "01-tiny.qmd"
    chapter.write_text(TINY)
    result = execute_chapter(chapter)
    assert result.error is None, result.error
    (page,) = write_preview([result], tmp_path / "preview", root=tmp_path)
    html = page.read_text()
    folded, opened = _details(html)
    assert folded.startswith('<details class="callout callout-tip" data-callout="tip"><summary>Solution</summary>')
    assert "Some prose first." in folded and folded.count("jp-CodeCell") == 2
    assert "The answer is <strong>42</strong>" in folded and "Table 1: The answer, captioned." in folded
    assert opened.startswith('<details class="callout callout-warning" data-callout="warning" open>')
    assert "<summary>Open by default</summary>" in opened and "Shown until folded." in opened
    box = re.search(r'<div class="callout callout-note" data-callout="note">.*?</div></div>', html, re.DOTALL)
    assert box and '<p class="callout-title">Note</p>' in box.group(0) and "<em>emphasis</em>" in box.group(0)
    before, after = html.index("Before."), html.index("After.")
    assert before < html.index("<details") and html.rindex("</details>") < after
