"""Print the results tables of the README and docs/ from the committed result files: `python tools/results_tables.py`.

It formats what `python -m hwlib run`, `python -m hwlib search`, `python -m hwlib curve`, `tools/seed_spread.py` and
`python -m bench` wrote (summary.json, search.json, curve.json, seeds.json, bench/results/*.json), so the README cannot
drift from them by hand. The one figure computed here is the bootstrap 95% interval, for results recorded before
metrics.json carried it: it is resampled (seed 42, 1,000 draws) from the recorded confusion matrix, which holds every
(gold, predicted) pair.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

from hwlib.metrics import recorded_interval
from hwlib.search import curve_findings, curve_table, search_table

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ROOT / "data" / "adapters"
RUNS = {"card recipe (cpu-card)": ADAPTERS / "smollm2-135m-card-recipe-cpu",
        "improved (cpu)": ADAPTERS / "smollm2-135m-cpu"}


def interval(run_folder: Path, recorded: str) -> str:
    """The result's bootstrap 95% interval for macro-F1, as recorded or from its confusion matrix ("" if neither)."""
    parts = Path(recorded).parts
    path = run_folder.joinpath(*parts[parts.index("eval"):]) / "metrics.json" if "eval" in parts else None
    if path is None or not path.is_file():
        return ""
    found = recorded_interval(json.loads(path.read_text()))
    if found is None:
        return ""
    low, high = found
    return f"{low:.3f}–{high:.3f}"


def quality() -> str:
    lines = ["| run | model | method | split (rows) | macro-F1 | 95% interval | macro-recall | accuracy | invalid |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run, folder in RUNS.items():
        summary = json.loads((folder / "summary.json").read_text())
        for title, m in summary["table"].items():
            split = m.get("split") or "test"
            lines.append(f"| {run} | {title} | {m['method']} | {split} ({m['rows']:,}) | {m['macro_f1']:.4f} | "
                         f"{interval(folder, summary['folders'].get(title, ''))} | {m['macro_recall']:.4f} | "
                         f"{m['accuracy']:.4f} | {m['invalid_rate']:.4f} |")
    return "\n".join(lines)


HEADLINE_ROWS = (("card recipe (cpu-card)", "fine-tuned", "the card's recipe, SmolLM2-135M, 1,800 tweets"),
                 ("improved (cpu)", "fine-tuned", "improved recipe (`cpu`), 3,000 tweets"),
                 ("improved (cpu)", "fine-tuned, calibrated", "improved, calibrated on validation"),
                 ("improved (cpu)", "base (zero-shot)", "the base model, zero-shot"),
                 ("improved (cpu)", "TF-IDF + logistic regression", "TF-IDF + logistic regression"))


def headline() -> str:
    """The README's one results table: whole test split, `score` method, with macro-F1's bootstrap interval."""
    lines = ["| model (all on the 12,284 test tweets) | macro-F1 | 95% interval | macro-recall | accuracy |",
             "|---|---|---|---|---|"]
    for run, title, name in HEADLINE_ROWS:
        summary = json.loads((RUNS[run] / "summary.json").read_text())
        m = summary["table"][title]
        lines.append(f"| {name} | {m['macro_f1']:.4f} | {interval(RUNS[run], summary['folders'][title])} | "
                     f"{m['macro_recall']:.4f} | {m['accuracy']:.4f} |")
    return "\n".join(lines)


def script_names(path: Path) -> dict:
    """The names a script of this repository (not an installed package) defines, run without its `__main__` block."""
    return runpy.run_path(str(path))


def bench_record(name: str) -> dict:
    return json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())


def bench(name: str, columns: list[str], rows: list[dict] | None = None) -> str:
    """The bench command, then its result rows (default: all of them) as a table of `columns`."""
    record = bench_record(name)
    lines = [f"`{record['command']}`", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in (record["results"] if rows is None else rows)]
    return "\n".join(lines)


def peak_share() -> str:
    """The repeated share-of-limit table, then where one scoring run spent its time, by torch operator."""
    record = bench_record("peak-share-cpu")
    rows = [r for r in record["results"] if "time_shares" not in r]
    lines = [bench("peak-share-cpu", script_names(ROOT / "bench" / "__main__.py")["PEAK_SHARE_COLUMNS"], rows)]
    lines += ["", f"Each of the {rows[0]['repeats']} timings (tweets/s, then the limit in GFLOP/s): " + "; ".join(
        f"batch {r['batch_size']}: {r['tweets_per_s_all']}, {r['limit_gflops_all']}" for r in rows) + "."]
    for r in record["results"]:
        if "time_shares" in r:
            shares = ", ".join(f"`{name.removeprefix('aten::')}` {share:.1%}" for name, share in r["time_shares"].items())
            lines.append(f"Time by operator, one scoring run at batch {r['batch_size']} under the profiler: {shares}.")
    return "\n".join(lines)


def training_losses() -> str:
    losses = "; ".join(f"`{r['variant']}` {r['losses']}" for r in bench_record("training-cpu")["results"])
    return f"Loss per step (different orders of the same examples: `hwlib` groups batches by length): {losses}."


def variants() -> str:
    """The one-change variants of the cpu recipe on validation, beside its seeds (`python -m hwlib variants`)."""
    from hwlib.search import card_recipe_point, variant_findings, variants_table

    record = json.loads((RUNS["improved (cpu)"] / "variants.json").read_text())
    recipe = json.loads((RUNS["improved (cpu)"] / "seeds.json").read_text())
    return "\n".join([" and ".join(f"`{command}`" for command in record["commands"]), "",
                      variants_table(record, recipe, card_recipe_point()), ""] +
                     [f"- {finding}" for finding in variant_findings(record, recipe)])


def seed_variation() -> str:
    """The cpu recipe's three seeds on test and validation (written by tools/seed_spread.py)."""
    spread = script_names(ROOT / "tools" / "seed_spread.py")
    return spread["seed_table"](json.loads(spread["SEEDS_JSON"].read_text()))


# Where each printed block lives (tests/test_bench.py checks that it is there, as printed).
HOMES = {"headline": "README.md", "quality": "docs/results.md", "search": "docs/results.md",
         "learning curve": "docs/results.md", "seed variation": "docs/results.md", "inference speed": "docs/speed.md",
         "share of the compute limit": "docs/speed.md", "training speed": "docs/speed.md",
         "training losses": "docs/speed.md", "variants": "docs/results.md",
         "training speed, LM head positions": "docs/speed.md", "predict at scale": "docs/predict.md",
         "llama.cpp": "docs/predict.md"}


def sections() -> dict[str, str]:
    """Each block of the README and the docs, by name, exactly as its home file (HOMES) holds it."""
    curve = json.loads((RUNS["improved (cpu)"] / "curve.json").read_text())
    return {
        "headline": headline(),
        "quality": quality(),
        "search": search_table(json.loads((RUNS["improved (cpu)"] / "search.json").read_text())["rows"]),
        "learning curve": curve_table(curve["rows"]) + "\n\n" + "\n".join(
            f"- {finding}" for finding in curve_findings(curve["rows"])),
        "seed variation": seed_variation(),
        "inference speed": bench("inference-cpu", ["method", "tweets_per_s", "ratio_to_a", "share_of_peak",
                                                   "macro_f1", "agreement_with_a", "peak_rss_mb", "gflops",
                                                   "gflop_per_tweet"]),
        "share of the compute limit": peak_share(),
        "training speed": bench("training-cpu", ["variant", "examples_per_s", "ratio", "s_per_step",
                                                 "minor_faults_per_s", "peak_rss_mb", "final_loss", "shared_prefix",
                                                 "activation_checkpointing", "compute_dtype", "adapter_dtype"]),
        "training losses": training_losses(),
        "variants": variants(),
        "training speed, LM head positions": bench("training-loss-positions-cpu", [
            "variant", "examples_per_s", "ratio", "s_per_step", "peak_rss_mb", "final_loss", "shared_prefix",
            "loss_positions_only"]),
        "predict at scale": bench("predict-smoke", ["mode", "rows", "tweets_per_s", "rate_to_in_memory",
                                                    "peak_rss_mb", "rss_to_smallest_streamed", "seconds"]),
        "llama.cpp": bench("peers-cpu", ["engine", "tweets_per_s", "ratio_to_llama_cpp", "agreement"]),
    }


def main() -> None:
    for name, block in sections().items():
        print(f"## {name}\n\n{block}\n")


if __name__ == "__main__":
    main()
