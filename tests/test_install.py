"""Installation: the requirements list matches the package's, and the Colab set-up works from anywhere."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(text: str) -> list[str]:
    return sorted(line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip())


def test_requirements_txt_is_the_package_list_and_its_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | {r for extra in project["optional-dependencies"].values() for r in extra}
    listed = requirement_lines((ROOT / "requirements.txt").read_text())
    assert sorted(declared) == listed
    assert not any(line.startswith(("-e", ".")) for line in listed)  # pip would read "." against the cwd (Colab)


def colab_record() -> tuple[dict[str, str], str]:
    """Colab's recorded package versions (tests/data/colab-packages.txt) and its Python version."""
    lines = [line.split("==") for line in (ROOT / "tests" / "data" / "colab-packages.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    record = dict(lines)
    return record, record.pop("python_version")


def test_the_colab_install_keeps_only_torch_and_resolves_against_colabs_packages():
    """The set-up cell pins what Colab has of KEEP; those pins must not break a requirement of the course's packages
    (trl 1.16 needs pyarrow >= 21, Colab brings 18.1.0: pinning all of Colab's stack made pip fail)."""
    import runpy

    namespace = runpy.run_path(str(ROOT / "tools" / "colab_install.py"))
    colab, python = colab_record()
    pins = {name: colab[name] for name in namespace["KEEP"] if name in colab}
    assert set(pins) == {"torch", "torchvision", "torchaudio"}
    assert namespace["conflicts"](pins, python) == []
    every = dict(colab)  # Colab's whole recorded stack pinned
    broken = namespace["conflicts"](every, python)
    assert any("needs pyarrow>=21" in line and "pinned at 18.1.0" in line for line in broken), broken


def test_one_repo_setting():
    """Every Colab badge and set-up cell names the repository that tools/colab_install.py sets."""
    import runpy

    namespace = runpy.run_path(str(ROOT / "tools" / "colab_install.py"))
    named = set()
    for path in namespace["repo_mentions"]():
        named |= set(re.findall(r"github(?:\.com)?/([\w.-]+/[\w.-]+?)(?:\.git|/blob)", path.read_text()))
    assert named == {namespace["REPO"]}


@pytest.mark.slow
def test_colab_install_in_a_fresh_environment(tmp_path):
    """The notebooks' Colab step, run against this clone in a new venv from another folder: afterwards `hwlib` imports
    in the same process and reads the bundled data. The venv sees this environment's packages through a .pth file, as
    Colab's preinstalled torch/numpy; the constraints must keep them."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")][0]
    (Path(site) / "preinstalled_stack.pth").write_text(ours + "\n")
    elsewhere = tmp_path / "content"
    elsewhere.mkdir()
    code = (
        "import runpy, torch\n"
        f"runpy.run_path({str(ROOT / 'tools' / 'colab_install.py')!r})['install']({str(ROOT)!r})\n"
        "import hwlib, hwlib.data as d\n"
        "print(hwlib.__file__)\n"
        "print(d.load_splits()['test'].num_rows, d.data_source())\n"
        "from hwlib.runs import resolve_adapter; print(resolve_adapter('smollm2-135m-cpu'))\n"
        "import torch as again; print(again.__version__ == torch.__version__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HWLIB_DATA_DIR", "PYTHONPATH")}
    result = subprocess.run([str(python), "-c", code], cwd=elsewhere, capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-4].startswith(site), lines  # the fresh, non-editable copy, not this clone
    assert lines[-3] == "12284 bundled copy (sha256 verified)"
    assert lines[-2].startswith(site) and lines[-2].endswith("shipped_adapters/smollm2-135m-cpu")  # from the wheel
    assert lines[-1] == "True"


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "notebooks").glob("0*_*.py"))]


def test_every_relative_link_in_the_readme_docs_and_lessons_resolves():
    broken = []
    for document in DOCUMENTS:
        text = document.read_text()
        if document.suffix == ".py":  # a lesson's source: its Markdown cells are the comment lines
            text = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+://", target) and not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_readme_is_a_front_page():
    """Short, with the set-up and test command on the first screen and the README's test command the one CI runs."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    command = next(i for i, line in enumerate(lines) if "pip install -e" in line and "pytest --nbval-lax" in line)
    assert command < 60 and "python -m pytest --nbval-lax" in (ROOT / ".ci" / "run").read_text()
