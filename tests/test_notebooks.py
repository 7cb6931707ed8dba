"""The lessons: one source per notebook (jupytext), identical set-up cells, and the sections a lesson needs."""

import json
import re
import runpy
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
tool = runpy.run_path(str(ROOT / "tools" / "notebooks.py"))
SOURCES = tool["sources"]()
ALL_SOURCES = tool["all_sources"]()


def test_four_lessons_with_sources():
    assert [s.stem for s in SOURCES] == ["01_data_inspection", "02_prompt_construction", "03_qlora_sft",
                                         "04_evaluation"]


@pytest.mark.parametrize("source", ALL_SOURCES, ids=lambda p: p.stem)
def test_notebook_agrees_with_its_source(source):
    assert tool["differences"](source) == []


def test_an_edit_to_the_source_reaches_the_notebook_and_a_stale_notebook_is_caught(tmp_path):
    source = tmp_path / SOURCES[0].name
    shutil.copy(SOURCES[0], source)
    shutil.copy(SOURCES[0].with_suffix(".ipynb"), source.with_suffix(".ipynb"))
    source.write_text(source.read_text().replace("# ## Duplicates", "# ## Duplicates, edited in the source"))
    assert any("differs" in line for line in tool["differences"](source))  # what CI catches
    tool["sync"](source)  # the documented regeneration step
    assert tool["differences"](source) == []
    notebook = json.loads(source.with_suffix(".ipynb").read_text())
    assert any("Duplicates, edited in the source" in "".join(c["source"]) for c in notebook["cells"])
    kept = [c for c in notebook["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    assert kept, "outputs of unchanged cells are kept"


def cell_blocks(source: Path) -> list[str]:
    return re.split(r"^# %%.*$", source.read_text(), flags=re.M)


def test_setup_cells_are_identical_in_every_lesson():
    """The Colab and profile cells are copies by design (each notebook runs alone); they must not drift apart."""
    first = cell_blocks(SOURCES[0])[2:4]
    for source in SOURCES[1:]:
        assert cell_blocks(source)[2:4] == first, source.name


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_each_lesson_has_its_sections_and_enough_prose(source):
    notebook = json.loads(source.with_suffix(".ipynb").read_text())
    prose = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    headings = [line.lower() for line in prose.splitlines() if line.startswith("#")]
    for section in ("learning objectives", "recap", "exercises", "references"):
        assert any(section in heading for heading in headings), f"{source.stem} has no {section!r} section"
    words = re.findall(r"[A-Za-z][A-Za-z'-]+", re.sub(r"`[^`]*`", " ", prose))
    assert len(words) >= 600, f"{source.stem}: {len(words)} words of prose"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_exercise_has_a_difficulty_and_a_worked_solution(source):
    """Each numbered exercise of a lesson is marked ★ to ★★★ and has a section of the same number and title in the
    lesson's solutions notebook, which CI executes like the lessons."""
    text = source.read_text()
    exercises = re.findall(r"^# (\d)\. \*\*(.+?)\*\* \((★+)\)", text.split("# ## Exercises")[1], flags=re.M)
    listed = re.findall(r"^# (\d)\. \*\*", text.split("# ## Exercises")[1].split("# ## References")[0], flags=re.M)
    assert exercises and len(exercises) == len(listed), f"{source.stem}: every exercise needs (★), (★★) or (★★★)"
    solutions = (tool["SOLUTIONS"] / f"{source.stem}_solutions.py").read_text()
    headings = re.findall(r"^# ## (\d)\. (.+?) \((★+)\)$", solutions, flags=re.M)
    assert headings == [(n, title.rstrip("."), stars) for n, title, stars in exercises], \
        f"{source.stem}: the solutions' headings differ from the exercises"
    assert f"solutions/{source.stem}_solutions.ipynb" in text, f"{source.stem} does not link its solutions"


def test_setup_cells_are_identical_in_every_solutions_notebook():
    """Each solutions notebook sets itself up (Colab runs it alone); the copies must not drift apart."""
    solutions = tool["sources"](tool["SOLUTIONS"])
    first = cell_blocks(solutions[0])[2:4]
    for source in solutions[1:]:
        assert cell_blocks(source)[2:4] == first, source.name
