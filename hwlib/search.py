"""The validation search behind the `cpu` profile: short trainings, each scored on validation, and the learning curve.

Test is never read here. Every trial trains on the same seeded, class-balanced slice of train and is scored on the
whole validation split; finished trials are reused, so an interrupted search continues where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .config import eval_config, train_config
from .evaluate import METRICS, evaluate, read_metrics
from .files import write_json
from .models import load_adapter
from .runs import EVAL, RUN_CONFIG, eval_folder_name, read_run
from .train import train, train_or_load

if TYPE_CHECKING:
    import pandas as pd

SEARCH_ROWS = 600  # per trial: ~50 steps, a few minutes on a 2-core CPU
TRIALS: dict[str, dict] = {
    "card recipe (lr 5e-4, linear)": dict(learning_rate=5e-4, lr_scheduler="linear", warmup_ratio=0.0),
    "lr 2e-3, cosine, 10% warmup": dict(learning_rate=2e-3, lr_scheduler="cosine", warmup_ratio=0.1),
    "lr 2e-3, cosine, 10% warmup, r 16": dict(learning_rate=2e-3, lr_scheduler="cosine", warmup_ratio=0.1,
                                              lora_r=16, lora_alpha=32),
}


def trial_dir(root: Path, index: int) -> Path:
    return root / f"trial-{index}"


def validation_scores(folder: Path, config, data_dir: str | None = None, progress: bool = True) -> dict:
    """A finished run's training size and time and its validation scores; validation is scored once, on first call."""
    scored = folder / EVAL / eval_folder_name("adapter", "score", "validation", None)
    if not (scored / METRICS).is_file():
        model, tokenizer = load_adapter(folder, merged=True)
        evaluate(model, tokenizer, eval_config(config.profile, split="validation", limit=None), scored, config.model,
                 str(folder), data_dir, progress)
        del model
    metrics, record = read_metrics(scored), read_run(folder)
    return {"train_rows": record["examples"], "steps": record.get("steps"),
            "train_min": round(record["wall_time_s"] / 60, 1),
            "validation_macro_f1": round(metrics["macro_f1"], 4),
            "validation_macro_recall": round(metrics["macro_recall"], 4),
            "validation_accuracy": round(metrics["accuracy"], 4)}


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
        results.append({"trial": name, **overrides, **validation_scores(folder, config, data_dir, progress)})
    write_json(root / "search.json", {"command": f"python -m hwlib search --output {root}", "rows": results})
    return results


def search_table(results: list[dict]) -> str:
    """The search as a Markdown table."""
    lines = ["| trial | train rows | validation macro-F1 | macro-recall | accuracy |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['trial']} | {r['train_rows']} | {r['validation_macro_f1']:.4f} | "
              f"{r['validation_macro_recall']:.4f} | {r['validation_accuracy']:.4f} |" for r in results]
    return "\n".join(lines)


# ---------------------------------------------------------------- learning curve

CURVE_SIZES = (600, 1500, 3000, 6000, 12000)
SAMPLINGS = ("balanced", "stratified")
# The optional wider adapter: LoRA on every projection of attention and MLP, not only k_proj/v_proj.
WIDE_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def point_name(rows: int, sampling: str, seed: int, wide: bool = False) -> str:
    return f"{sampling}-{rows}-seed{seed}" + ("-wide" if wide else "")


def validation_point(config, data_dir: str | None = None, progress: bool = True) -> dict:
    """Train (or reuse, or resume) the run `config` describes, score all of validation once, return its row."""
    folder = train_or_load(config)
    scores = validation_scores(folder, config, data_dir, progress)
    return {"train_rows": scores.pop("train_rows"), "sampling": config.sampling, "seed": config.seed,
            "adapter": "wide" if tuple(config.target_modules) == WIDE_MODULES else ",".join(config.target_modules),
            **scores}


def run_curve(root: str | Path = "runs/curve", sizes=CURVE_SIZES[:3], samplings=SAMPLINGS, seeds=(42,),
              wide: bool = False, data_dir: str | None = None, progress: bool = True, profile: str = "cpu") -> list[dict]:
    """The profile's recipe (`cpu`) trained on `sizes` rows of train, per sampling and seed, each scored on validation.

    Points are trained in order (smallest first) and written to curve.json as each finishes, so an interrupted
    curve keeps its finished points and continues with `python -m hwlib curve` again. Test is never read.
    """
    root = Path(root)
    rows = []
    for size in sizes:
        for sampling in samplings:
            for seed in seeds:
                config = train_config(profile, output_dir=str(root / point_name(size, sampling, seed, wide)),
                                      data_dir=data_dir, train_size=size, sampling=sampling, seed=seed,
                                      **(dict(target_modules=WIDE_MODULES) if wide else {}))
                rows.append(validation_point(config, data_dir, progress))
                write_curve(root, rows)
    return rows


def write_curve(root: Path, rows: list[dict]) -> None:
    """Merge `rows` into root/curve.json (points from earlier calls with other sizes or seeds are kept)."""
    path = root / "curve.json"
    known = json.loads(path.read_text())["rows"] if path.is_file() else []
    key = lambda r: (r["train_rows"], r["sampling"], r["seed"], r["adapter"])  # noqa: E731
    merged = {key(r): r for r in known} | {key(r): r for r in rows}
    write_json(path, {"command": f"python -m hwlib curve --output {root}",
                      "rows": sorted(merged.values(), key=key)})


def curve_summary(rows: list[dict]) -> "pd.DataFrame":
    """Mean and standard deviation over seeds per (adapter, sampling, train rows)."""
    import pandas as pd

    table = pd.DataFrame(rows)
    grouped = table.groupby(["adapter", "sampling", "train_rows"])
    summary = grouped[["validation_macro_f1", "validation_macro_recall"]].agg(["mean", "std"])
    summary.columns = [f"{metric.removeprefix('validation_')}_{stat}" for metric, stat in summary.columns]
    summary["seeds"] = grouped["seed"].count()
    summary["train_min"] = grouped["train_min"].mean().round(1)
    return summary.reset_index()


def curve_table(rows: list[dict]) -> str:
    """The curve as a Markdown table: validation macro-F1 / macro-recall, mean ± sd where there are several seeds."""
    def cell(mean, std, seeds):
        return f"{mean:.4f}" if seeds < 2 else f"{mean:.4f} ± {std:.4f}"

    lines = ["| adapter | sampling | train rows | seeds | validation macro-F1 | macro-recall | train min |",
             "|---|---|---|---|---|---|---|"]
    for r in curve_summary(rows).itertuples():
        lines.append(f"| {r.adapter} | {r.sampling} | {r.train_rows:,} | {r.seeds} | "
                     f"{cell(r.macro_f1_mean, r.macro_f1_std, r.seeds)} | "
                     f"{cell(r.macro_recall_mean, r.macro_recall_std, r.seeds)} | {r.train_min} |")
    return "\n".join(lines)


def plot_curve(rows: list[dict], ax=None):
    """Validation macro-F1 against training rows (log scale), one line per adapter and sampling, seeds as error bars."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for (adapter, sampling), group in curve_summary(rows).groupby(["adapter", "sampling"]):
        ax.errorbar(group["train_rows"], group["macro_f1_mean"], yerr=group["macro_f1_std"].fillna(0), marker="o",
                    capsize=3, label=f"{sampling}, {adapter}")
    ax.set_xscale("log")
    ax.set_xlabel("training rows (log scale)")
    ax.set_ylabel("validation macro-F1")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def curve_findings(rows: list[dict]) -> list[str]:
    """What the curve says, one sentence per comparison it can make: growth with data per sampling, balanced against
    stratified at equal size, the seed-to-seed spread, and the wider adapter against k_proj/v_proj."""
    summary = curve_summary(rows)
    point = {(r.adapter, r.sampling, r.train_rows): r for r in summary.itertuples()}
    narrow = summary[summary["adapter"] == "k_proj,v_proj"]
    found = []
    for sampling, group in narrow.groupby("sampling"):
        group = group.sort_values("train_rows")
        if len(group) > 1:
            steps = ", ".join(f"{f:.3f} at {n:,}" for f, n in zip(group["macro_f1_mean"], group["train_rows"]))
            found.append(f"{sampling} sampling: validation macro-F1 {steps} training rows")
    for size in sorted(set(narrow["train_rows"])):
        balanced, stratified = point.get(("k_proj,v_proj", "balanced", size)), point.get(
            ("k_proj,v_proj", "stratified", size))
        if balanced and stratified:
            found.append(f"{size:,} rows, balanced minus stratified: macro-F1 "
                         f"{balanced.macro_f1_mean - stratified.macro_f1_mean:+.3f}, macro-recall "
                         f"{balanced.macro_recall_mean - stratified.macro_recall_mean:+.3f}")
    for r in summary[summary["seeds"] > 1].itertuples():
        found.append(f"{r.train_rows:,} {r.sampling} rows ({r.adapter}), {r.seeds} seeds: macro-F1 standard "
                     f"deviation {r.macro_f1_std:.3f}, macro-recall {r.macro_recall_std:.3f}")
    for r in summary[summary["adapter"] == "wide"].itertuples():
        narrow_point = point.get(("k_proj,v_proj", r.sampling, r.train_rows))
        if narrow_point:
            found.append(f"wider adapter (every attention and MLP projection), {r.train_rows:,} {r.sampling} rows: "
                         f"macro-F1 {r.macro_f1_mean - narrow_point.macro_f1_mean:+.3f} against k_proj/v_proj, "
                         f"{r.train_min} against {narrow_point.train_min} min of training")
    return found


# ---------------------------------------------------------------- variants of the cpu recipe

# Each changes one thing of the `cpu` profile, is trained on its 3,000 rows and scored on validation only.
VARIANTS: dict[str, dict] = {
    "two-epochs": dict(epochs=2.0),
    "prompt-loss": dict(completion_only_loss=False),
    "head": dict(head="classify"),
    "forged-answers": dict(forged_share=0.25),  # a defence against answers written into a message (hwlib.forged)
    # A second base: Gemma 3 270M at half the recipe's learning rate (a larger model); its two rate trials below, a
    # quarter and the recipe's own, chose that rate on validation.
    "gemma": dict(model="gemma3-270m", learning_rate=1e-3),
    "gemma-lr2e-3": dict(model="gemma3-270m", learning_rate=2e-3),
    "gemma-lr5e-4": dict(model="gemma3-270m", learning_rate=5e-4),
}
# Variants that only try another learning rate for another variant: seed 42 of each picks the rate that gets seeds.
RATE_TRIALS = {"gemma-lr2e-3": "gemma", "gemma-lr5e-4": "gemma"}
# On the tiny `smoke` profile a variant that swaps the base trains the base's tiny stand-in (plumbing only).
SMOKE_STAND_INS = {"gemma3-270m": "tiny-random-gemma3"}


def variant_settings(name: str, profile: str) -> dict:
    """The settings variant `name` changes on `profile`: its base swapped for a tiny stand-in on `smoke`."""
    settings = dict(VARIANTS[name])
    if profile == "smoke" and "model" in settings:
        settings["model"] = SMOKE_STAND_INS[settings["model"]]
    return settings


def run_variants(root: str | Path = "runs/variants", names=tuple(VARIANTS), seeds=(42,), data_dir: str | None = None,
                 progress: bool = True, profile: str = "cpu") -> dict:
    """Train (or reuse, or resume) each variant per seed, score it on validation, and write root/variants.json with
    the recipe's own seeds (the shipped seeds.json) as the yardstick. Test is never read."""
    root = Path(root)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        from .config import ConfigError

        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    path = root / "variants.json"
    known = json.loads(path.read_text())["rows"] if path.is_file() else []
    rows = {(r["variant"], r["seed"]): r for r in known}
    for name in names:
        for seed in seeds:
            changes = variant_settings(name, profile)
            config = train_config(profile, output_dir=str(root / f"{name}-seed{seed}"), data_dir=data_dir, seed=seed,
                                  **changes)
            point = validation_point(config, data_dir, progress)
            rows[(name, seed)] = {"variant": name, "changes": changes, **point}
            ordered = sorted(rows.values(), key=lambda r: (r["variant"], r["seed"]))
            commands = [f"python -m hwlib variants --profile {profile} --names {variant} --seeds "
                        f"{','.join(str(r['seed']) for r in ordered if r['variant'] == variant)} --output {root}"
                        for variant in dict.fromkeys(r["variant"] for r in ordered)]
            write_json(path, {"commands": commands, "rows": ordered})
    return json.loads(path.read_text())


def card_recipe_point() -> dict | None:
    """The shipped card-recipe adapter (`cpu-card`) on the whole validation split, as a variants row; None where
    its validation evaluation is not shipped (`python -m hwlib evaluate --adapter
    data/adapters/smollm2-135m-card-recipe-cpu --split validation --output .../eval/adapter-score-validation-all`)."""
    from .runs import shipped_adapter

    folder = shipped_adapter("cpu-card")
    metrics = folder / EVAL / "adapter-score-validation-all" / METRICS if folder else None
    if metrics is None or not metrics.is_file():
        return None
    scores = read_metrics(metrics.parent)
    run = read_run(folder)
    point = {"variant": "the card's recipe (`cpu-card`)", "seed": run["config"]["seed"],
             "validation_macro_f1": round(scores["macro_f1"], 4),
             "validation_macro_recall": round(scores["macro_recall"], 4), "train_min": round(run["wall_time_s"] / 60, 1)}
    test = folder / EVAL / "adapter-score-test-all" / METRICS  # the card's configuration, read once on test
    if test.is_file():
        point["test_macro_f1"] = round(read_metrics(test.parent)["macro_f1"], 4)
    return point


def variants_table(record: dict, recipe: dict, card: dict | None = None) -> str:
    """Validation macro-F1 / macro-recall per variant (mean ± sd over its seeds) beside the `cpu` recipe's seeds, with
    each difference in units of the recipe's seed-to-seed standard deviation (the yardstick: within 2, not proven);
    `card` (`card_recipe_point()`) adds the card's own recipe as the first row. Test macro-F1 is shown only where test
    was read: the chosen recipe's seeds and the card's configuration; a variant's test stays unread."""
    import statistics

    def spread(values):
        return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)

    def cell(values):
        mean, std = spread(values)
        return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"

    base_f1 = [s["validation_macro_f1"] for s in recipe["seeds"]]
    base_recall = [s["validation_macro_recall"] for s in recipe["seeds"]]
    (f1_mean, f1_sd), (recall_mean, recall_sd) = spread(base_f1), spread(base_recall)
    lines = ["| configuration | seeds | validation macro-F1 | macro-recall | macro-F1 vs recipe (recipe sds) | "
             "train min | test macro-F1 |", "|---|---|---|---|---|---|---|"]
    base_test = [s["test_macro_f1"] for s in recipe["seeds"] if "test_macro_f1" in s]
    lines.append(f"| `cpu` recipe | {len(base_f1)} | {cell(base_f1)} | {cell(base_recall)} | — | — | "
                 f"{cell(base_test) if base_test else 'not read'} |")
    by_variant: dict[str, list[dict]] = {}
    for row in ([card] if card else []) + record["rows"]:
        by_variant.setdefault(row["variant"], []).append(row)
    for name, rows in by_variant.items():
        f1 = [r["validation_macro_f1"] for r in rows]
        recall = [r["validation_macro_recall"] for r in rows]
        delta = statistics.mean(f1) - f1_mean
        train_min = statistics.mean(r["train_min"] for r in rows)
        test = [r["test_macro_f1"] for r in rows if "test_macro_f1" in r]
        lines.append(f"| {name} | {len(rows)} | {cell(f1)} | {cell(recall)} | {delta:+.4f} ({delta / f1_sd:+.2f}) | "
                     f"{train_min:.1f} | {cell(test) if test else 'not read'} |")
    return "\n".join(lines)


def variant_findings(record: dict, recipe: dict) -> list[str]:
    """One sentence per variant: its macro-F1 difference from the recipe's seed mean, in recipe seed deviations, and
    what that allows (item 5's rule: within two deviations is not a proven gain)."""
    import statistics

    base = [s["validation_macro_f1"] for s in recipe["seeds"]]
    mean, sd = statistics.mean(base), statistics.stdev(base)
    findings = []
    first = {r["variant"]: r["validation_macro_f1"] for r in record["rows"] if r["seed"] == 42}  # the rate trials' seed
    for name in dict.fromkeys(r["variant"] for r in record["rows"]):
        rows = [r for r in record["rows"] if r["variant"] == name]
        delta = statistics.mean(r["validation_macro_f1"] for r in rows) - mean
        seeds = f"{len(rows)} seed{'s' if len(rows) > 1 else ''}"
        base = RATE_TRIALS.get(name, name)
        group = [v for v in [base, *(t for t, of in RATE_TRIALS.items() if of == base)] if v in first]
        if len(group) > 1 and name in first and len(rows) == 1:
            kept = max(group, key=first.get)
            scores = ", ".join(f"{v} {first[v]:.4f}" for v in group)
            verdict = f"a learning-rate trial (seed 42: {scores}): {kept}'s rate is the one given more seeds"
        elif abs(delta) < 2 * sd:
            verdict = "inside two deviations: not a proven difference" + (
                "; more seeds would decide it" if len(rows) < 3 else "")
        else:
            verdict = "beyond two deviations: " + ("better" if delta > 0 else "worse") + " than the recipe"
        findings.append(f"{name} ({seeds}): {delta:+.4f} validation macro-F1 against the recipe's mean, "
                        f"{delta / sd:+.2f} of its seed deviations ({sd:.4f}), {verdict}.")
    return findings
