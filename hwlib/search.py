"""The validation search behind the improved `cpu` profile: a few short trainings, each scored on validation.

Test is never read here. Every trial trains on the same seeded, class-balanced slice of train and is scored on the
whole validation split; finished trials are reused, so an interrupted search continues where it stopped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import eval_config, train_config
from .evaluate import METRICS, evaluate, read_metrics
from .files import write_json
from .models import load_adapter
from .train import RUN_CONFIG, read_run, train

SEARCH_ROWS = 600  # per trial: ~50 steps, a few minutes on a 2-core CPU
TRIALS: dict[str, dict] = {
    "card recipe (lr 5e-4, linear)": dict(learning_rate=5e-4, lr_scheduler="linear", warmup_ratio=0.0),
    "lr 2e-3, cosine, 10% warmup": dict(learning_rate=2e-3, lr_scheduler="cosine", warmup_ratio=0.1),
    "lr 2e-3, cosine, 10% warmup, r 16": dict(learning_rate=2e-3, lr_scheduler="cosine", warmup_ratio=0.1,
                                              lora_r=16, lora_alpha=32),
}


def trial_dir(root: Path, index: int) -> Path:
    return root / f"trial-{index}"


def run_search(root: str | Path = "runs/search", data_dir: str | None = None, rows: int = SEARCH_ROWS,
               progress: bool = True) -> list[dict]:
    """Train and score each trial on validation; returns (and writes to search.json) one row per trial."""
    root = Path(root)
    results = []
    for index, (name, overrides) in enumerate(TRIALS.items()):
        folder = trial_dir(root, index)
        config = train_config("cpu-card", output_dir=str(folder), data_dir=data_dir, train_size=rows,
                              save_steps=10**6, **overrides)
        if not (folder / RUN_CONFIG).is_file():
            train(config, overwrite=True)
        scored = folder / "eval" / "adapter-score-validation-all"
        if not (scored / METRICS).is_file():
            model, tokenizer = load_adapter(folder, merged=True)
            evaluate(model, tokenizer, dataclasses.replace(eval_config("cpu"), split="validation", limit=None),
                     scored, config.model, str(folder), data_dir, progress)
            del model
        metrics, record = read_metrics(scored), read_run(folder)
        results.append({"trial": name, **overrides, "train_rows": record["examples"],
                        "train_min": round(record["wall_time_s"] / 60, 1),
                        "validation_macro_f1": round(metrics["macro_f1"], 4),
                        "validation_macro_recall": round(metrics["macro_recall"], 4),
                        "validation_accuracy": round(metrics["accuracy"], 4)})
    write_json(root / "search.json", {"command": f"python -m hwlib search --output {root}", "rows": results})
    return results


def search_table(results: list[dict]) -> str:
    """The search as a Markdown table."""
    lines = ["| trial | train rows | validation macro-F1 | macro-recall | accuracy |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['trial']} | {r['train_rows']} | {r['validation_macro_f1']:.4f} | "
              f"{r['validation_macro_recall']:.4f} | {r['validation_accuracy']:.4f} |" for r in results]
    return "\n".join(lines)
