"""The lessons' one source: `notebooks/0*_*.py` (jupytext's py:percent format); the `.ipynb` files are built from them.

    python tools/notebooks.py sync            # rebuild each .ipynb's cells from its .py (unchanged cells keep outputs)
    python tools/notebooks.py check           # exit 1 when a notebook's cells differ from its source (tests run it)
    python tools/notebooks.py execute cpu     # run every notebook top to bottom on a profile, outputs saved in place
    python tools/notebooks.py execute cpu 03  # only the notebooks whose names start with 03 (lesson and solutions)
    python tools/notebooks.py strip NB...     # drop stderr streams (progress bars, library notices) from outputs

To edit a lesson: change its .py source, run `sync`, then `execute cpu` so the committed notebook shows real outputs.
An edit made in Jupyter to the .ipynb is overwritten by the next `sync`: make it in the .py file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"  # one solutions notebook per lesson, same format, executed by CI like the lessons


def sources(folder: Path = NOTEBOOKS) -> list[Path]:
    return sorted(folder.glob("0*_*.py"))


def all_sources() -> list[Path]:
    """The lessons, then their solutions notebooks."""
    return sources() + sources(SOLUTIONS)


def cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def sync(source: Path) -> Path:
    """Write `source`'s cells into the paired notebook, keeping the outputs of cells whose source is unchanged."""
    target = source.with_suffix(".ipynb")
    notebook = jupytext.read(source)
    if target.is_file():
        notebook = combine_inputs_with_outputs(notebook, nbformat.read(target, as_version=4))
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, target)
    return target


def differences(source: Path) -> list[str]:
    """Where the paired notebook's cells differ from the source's (empty when they agree)."""
    target = source.with_suffix(".ipynb")
    if not target.is_file():
        return [f"{target.name} is missing: run `python tools/notebooks.py sync`"]
    want, have = cells(jupytext.read(source)), cells(nbformat.read(target, as_version=4))
    found = [f"{target.name}: {len(have)} cells, {source.name}: {len(want)}"] if len(want) != len(have) else []
    for i, (a, b) in enumerate(zip(want, have)):
        if a != b:
            found.append(f"{target.name} cell {i} differs from {source.name}: {b[1][:60]!r} vs {a[1][:60]!r}")
    return found


def strip_stderr(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nbformat.write(notebook, path)


def execute(profile: str, only: tuple[str, ...] = ()) -> None:
    env = {**os.environ, "HWLIB_PROFILE": profile}
    for source in all_sources():
        if only and not source.name.startswith(only):
            continue
        target = source.with_suffix(".ipynb")
        print("executing", target.name, "on", profile, flush=True)
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                        "--ExecutePreprocessor.timeout=3600", target.name], cwd=source.parent, env=env, check=True)
        strip_stderr(target)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "sync":
        for source in all_sources():
            print("wrote", sync(source).relative_to(NOTEBOOKS.parent))
        return 0
    if command == "check":
        found = [line for source in all_sources() for line in differences(source)]
        print("\n".join(found) or "notebooks agree with their sources")
        return 1 if found else 0
    if command == "execute" and len(argv) >= 2:
        execute(argv[1], tuple(argv[2:]))
        return 0
    if command == "strip":
        for name in argv[1:]:
            strip_stderr(Path(name))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
