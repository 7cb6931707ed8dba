"""Print the README's results tables from the committed result files: `python tools/results_tables.py`.

Nothing here computes a metric: it formats what `python -m hwlib run`, `python -m hwlib search` and `python -m bench`
wrote (summary.json, search.json, bench/results/*.json), so the README cannot drift from them by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from hwlib.search import search_table

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ROOT / "data" / "adapters"
RUNS = {"card recipe (cpu-card)": ADAPTERS / "smollm2-135m-card-recipe-cpu",
        "improved (cpu)": ADAPTERS / "smollm2-135m-cpu"}


def quality() -> str:
    lines = ["| run | model | method | split (rows) | macro-F1 | macro-recall | accuracy | invalid |",
             "|---|---|---|---|---|---|---|---|"]
    for run, folder in RUNS.items():
        summary = json.loads((folder / "summary.json").read_text())
        for title, m in summary["table"].items():
            split = m.get("split") or "test"
            lines.append(f"| {run} | {title} | {m['method']} | {split} ({m['rows']:,}) | {m['macro_f1']:.4f} | "
                         f"{m['macro_recall']:.4f} | {m['accuracy']:.4f} | {m['invalid_rate']:.4f} |")
    return "\n".join(lines)


def bench_record(name: str) -> dict:
    return json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())


def bench(name: str, columns: list[str]) -> str:
    record = bench_record(name)
    lines = [f"`{record['command']}`", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in record["results"]]
    return "\n".join(lines)


def training_losses() -> str:
    losses = "; ".join(f"`{r['variant']}` {r['losses']}" for r in bench_record("training-cpu")["results"])
    return f"Loss per step (different orders of the same examples: `hwlib` groups batches by length): {losses}."


def main() -> None:
    print("## quality\n")
    print(quality())
    print("\n## search\n")
    print(search_table(json.loads((RUNS["improved (cpu)"] / "search.json").read_text())["rows"]))
    print("\n## inference speed\n")
    print(bench("inference-cpu", ["method", "tweets_per_s", "ratio_to_a", "macro_f1", "agreement_with_a",
                                  "peak_rss_mb"]))
    print("\n## training speed\n")
    print(bench("training-cpu", ["variant", "examples_per_s", "ratio", "s_per_step", "minor_faults_per_s",
                                 "peak_rss_mb", "final_loss", "shared_prefix", "activation_checkpointing",
                                 "compute_dtype", "adapter_dtype"]))
    print("\n" + training_losses())


if __name__ == "__main__":
    main()
