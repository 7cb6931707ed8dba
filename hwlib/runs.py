"""The run folder's layout, in one place: its file names, its checkpoints, reading a finished run, the adapters
that ship with the course, and the names of the evaluation folders inside a run."""

from __future__ import annotations

import json
from pathlib import Path

from .config import PACKAGE_PARENT, ConfigError

CHECKPOINTS = "checkpoints"
RUN_CONFIG = "run_config.json"
LOSS_HISTORY = "loss_history.json"
LOSS_CURVE = "loss_curve.png"
TRAIN_REQUEST = "train_request.json"  # the settings a run was started with; --resume must ask for the same
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's files of a saved adapter
ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINT_FILES = (ADAPTER_WEIGHTS, "optimizer.pt", "scheduler.pt", "trainer_state.json")


def is_run_folder(folder: Path) -> bool:
    """Whether a folder holds a hwlib run (finished, interrupted, or started)."""
    return any((folder / name).exists() for name in (RUN_CONFIG, TRAIN_REQUEST, CHECKPOINTS))


def complete_checkpoints(output: Path) -> list[Path]:
    """Checkpoints with every file a resume needs and a readable trainer state, oldest first (a process killed while
    saving leaves an incomplete newest one, which is skipped)."""
    found = []
    for folder in sorted((output / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        if all((folder / name).is_file() for name in CHECKPOINT_FILES):
            try:
                json.loads((folder / "trainer_state.json").read_text())
            except ValueError:
                continue
            found.append(folder)
    return found



# Inside `<run>/eval/`: one folder per evaluation, each with these files.
EVAL = "eval"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
EXAMPLES = "examples.json"


def eval_folder_name(who: str, method: str, split: str, limit: int | None) -> str:
    """`adapter-score-test-all`, `base-generate-test-500`, ...: who was evaluated, how, on what."""
    return f"{who}-{method}-{split}-{'all' if limit is None else limit}"


SHIPPED_ADAPTERS = {"cpu": "smollm2-135m-cpu", "cpu-card": "smollm2-135m-card-recipe-cpu"}


def shipped_adapter(profile: str) -> Path | None:
    """The committed adapter of a profile, looked up in the clone this package runs from, in the installed package
    (`hwlib/shipped_adapters/`, from a wheel), or in the clone the current folder is in; None when it ships none."""
    name = SHIPPED_ADAPTERS.get(profile)
    if name is None:
        return None
    folders = [root / "data" / "adapters" / name for root in (PACKAGE_PARENT, Path.cwd(), Path.cwd().parent)]
    folders.insert(1, PACKAGE_PARENT / "hwlib" / "shipped_adapters" / name)
    for folder in folders:
        if (folder / RUN_CONFIG).is_file():
            return folder
    return None



def resolve_adapter(name_or_path: str | Path) -> Path:
    """An adapter folder given by path, or a shipped adapter by its name (`smollm2-135m-cpu`) or its profile (`cpu`),
    found from any working folder; a name that is neither says so, with the shipped names."""
    path = Path(name_or_path)
    if path.exists():
        missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (path / name).is_file()]
        if missing:
            raise ConfigError(f"{path} is not an adapter folder (no {' or '.join(missing)}): give a finished "
                              f"training run's folder, or a shipped adapter by name ({', '.join(SHIPPED_ADAPTERS.values())})")
        return path
    by_name = {name: profile for profile, name in SHIPPED_ADAPTERS.items()}
    profile = by_name.get(str(name_or_path), str(name_or_path))
    shipped = shipped_adapter(profile) if profile in SHIPPED_ADAPTERS else None
    if shipped is not None:
        return shipped
    raise ConfigError(f"{name_or_path} does not exist: give a trained run's folder, or a shipped adapter by name "
                      f"({', '.join(SHIPPED_ADAPTERS.values())})")


def read_run(output_dir: str | Path) -> dict:
    """A finished run's record (run_config.json)."""
    path = Path(output_dir) / RUN_CONFIG
    if not path.is_file():
        raise ConfigError(f"{path} not found: {output_dir} is not a finished training run")
    return json.loads(path.read_text())
