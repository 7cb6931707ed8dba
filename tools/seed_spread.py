"""The shipped `cpu` recipe's seed-to-seed spread on test: `python tools/seed_spread.py [CURVE_FOLDER]`.

Reads the 3,000-row balanced points that `python -m hwlib curve --sizes 3000 --sampling balanced --seeds 42,43,44`
trained (default folder runs/curve) and the test evaluations made of them with
`python -m hwlib evaluate --adapter runs/curve/balanced-3000-seedN --split test
--output runs/curve/balanced-3000-seedN/eval/adapter-score-test-all`, and writes their metrics, mean and standard
deviation to the shipped adapter's `seeds.json` (printed in the README by `python tools/results_tables.py`).
Test is read only to report: every choice behind the recipe was made on validation.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from hwlib.files import write_json
from hwlib.runs import EVAL, eval_folder_name, read_run
from hwlib.runs import METRICS as METRICS_FILE

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "adapters" / "smollm2-135m-cpu"
SEEDS_JSON = SHIPPED / "seeds.json"
METRICS = ("macro_f1", "macro_recall", "accuracy")


def seed_rows(curve_folder: Path, train_rows: int = 3000) -> list[dict]:
    """One row per seed: its validation and test metrics, from each point's evaluations."""
    rows = []
    for folder in sorted(curve_folder.glob(f"balanced-{train_rows}-seed*")):
        if folder.name.endswith("-wide"):
            continue
        evaluations = {split: folder / EVAL / eval_folder_name("adapter", "score", split, None) / METRICS_FILE
                       for split in ("validation", "test")}
        missing = [str(path) for path in evaluations.values() if not path.is_file()]
        if missing:
            raise SystemExit(f"{folder.name} has no {' or '.join(missing)}: evaluate it first (see this script's help)")
        row = {"seed": read_run(folder)["config"]["seed"], "train_rows": train_rows}
        for split, path in evaluations.items():
            metrics = json.loads(path.read_text())
            if metrics["rows"] != {"validation": 2000, "test": 12284}[split]:
                raise SystemExit(f"{path} scored {metrics['rows']} rows, not the whole {split} split")
            row.update({f"{split}_{name}": metrics[name] for name in METRICS})
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean and sample standard deviation of every metric over the seeds."""
    columns = [k for k in rows[0] if k.startswith(("validation_", "test_"))]
    return {column: {"mean": statistics.mean(r[column] for r in rows),
                     "std": statistics.stdev(r[column] for r in rows)} for column in columns}


def seed_table(record: dict) -> str:
    """The README's table: each seed's test and validation macro-F1 / macro-recall, then mean ± sd."""
    lines = ["| seed | test macro-F1 | test macro-recall | test accuracy | validation macro-F1 | validation macro-recall |",
             "|---|---|---|---|---|---|"]
    columns = ("test_macro_f1", "test_macro_recall", "test_accuracy", "validation_macro_f1", "validation_macro_recall")
    for row in record["seeds"]:
        lines.append(f"| {row['seed']} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")
    summary = record["summary"]
    lines.append(f"| mean ± sd ({len(record['seeds'])} seeds) | " + " | ".join(
        f"{summary[c]['mean']:.4f} ± {summary[c]['std']:.4f}" for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    rows = seed_rows(Path(argv[0]) if argv else ROOT / "runs" / "curve")
    if len(rows) < 2:
        raise SystemExit(f"{len(rows)} seed(s) found: a spread needs at least two")
    record = {"recipe": "cpu profile (3,000 balanced rows, k_proj/v_proj, r=16, lr 2e-3 cosine)",
              "seeds": rows, "summary": summarise(rows)}
    write_json(SEEDS_JSON, record)
    print(seed_table(record))
    print(f"\nwritten to {SEEDS_JSON.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
