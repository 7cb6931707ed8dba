"""Colab set-up: install what Colab lacks, never its own torch, and make `hwlib` importable at once.

Each notebook's first cell clones the repository and calls `install(clone)` from this file, in Colab only.
`tests/test_install.py` runs the same function against the local clone in a fresh virtual environment.

- Colab's torch, and what is built against it, is pinned with a pip constraints file made from the installed
  versions: replacing it would download a multi-GB build and break its CUDA. Everything else may move to what the
  course needs (trl needs a newer pyarrow than Colab brings, for one); nothing is force-reinstalled.
- The repository is installed non-editably: an editable install's `.pth` file is only read when Python starts, so
  `import hwlib` would need a runtime restart. The bundled TweetEval copy travels inside the wheel.

`python tools/colab_install.py --set-repo OWNER/NAME` writes the GitHub repository into every place that names it
(the Colab cells and badges of the notebooks and their sources, and the README); `REPO` below is the one setting.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO = "your-org/tweet-sentiment-qlora"
# Packages Colab brings that must stay as they are: torch and the packages compiled against its exact build.
KEEP = ("torch", "torchvision", "torchaudio")
ROOT = Path(__file__).resolve().parent.parent


def constraints() -> list[str]:
    """`name==version` for each package in KEEP that is installed here."""
    pinned = []
    for name in KEEP:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return pinned


def install(clone: str | Path, quiet: bool = True) -> None:
    """pip-install the clone (non-editable) and what it needs, keeping the installed torch/numpy; then make the fresh
    package importable in this process."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as file:
        file.write("\n".join(constraints()) + "\n")
    command = [sys.executable, "-m", "pip", "install", "-c", file.name, str(clone)]
    if quiet:
        command.insert(4, "-q")
    print("pinned:", ", ".join(constraints()) or "nothing")
    subprocess.run(command, check=True)
    importlib.invalidate_caches()  # the new package's folder appeared after this process started


def conflicts(pins: dict[str, str], python_version: str, root: str = "hwlib") -> list[str]:
    """Where the pinned versions break a requirement of `root` or of the packages it needs, as this environment
    resolved them (each package's installed release, whose requirements are what pip would meet at the course's
    floors); one line per broken requirement. Empty: pip can keep the pins."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment = {**default_environment(), "python_version": python_version, "python_full_version": python_version,
                   "extra": ""}
    pinned = {canonicalize_name(name): version for name, version in pins.items()}
    found, seen, waiting = [], set(), [canonicalize_name(root)]
    while waiting:
        name = waiting.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            wanted = canonicalize_name(requirement.name)
            version = pinned.get(wanted)
            if version is not None and not requirement.specifier.contains(version.split("+")[0], prereleases=True):
                found.append(f"{name} {metadata.version(name)} needs {requirement.name}{requirement.specifier}, "
                             f"pinned at {version}")
            waiting.append(wanted)
    return found


def repo_mentions() -> list[Path]:
    """The files that name the GitHub repository: notebooks, their sources, the README."""
    notebooks = sorted((ROOT / "notebooks").glob("0*.ipynb")) + sorted((ROOT / "notebooks").glob("0*.py"))
    return [ROOT / "README.md", *notebooks]


def set_repo(new: str) -> None:
    """Replace the repository's name everywhere it is written, this file included."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", new):
        raise SystemExit(f"--set-repo takes OWNER/NAME, got {new!r}")
    for path in [*repo_mentions(), Path(__file__).resolve()]:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(REPO, new), encoding="utf-8")
        print("updated", path.relative_to(ROOT))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--set-repo":
        set_repo(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--install":
        install(sys.argv[2])
    else:
        raise SystemExit("usage: python tools/colab_install.py --set-repo OWNER/NAME | --install CLONE")
