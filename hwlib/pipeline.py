"""The main job: train, evaluate before and after, write the model card, print a summary."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from .baselines import evaluate_tfidf
from .calibration import calibrate
from .card import metrics_table, write_card
from .config import EvalConfig, TrainConfig
from .evaluate import METRICS, compare_png, evaluate, read_metrics
from .data import data_source
from .files import write_json
from .models import load_adapter, load_model
from .runs import EVAL, RUN_CONFIG, eval_folder_name, read_run
from .train import train

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
COMPARISON_PNG = "confusion_before_after.png"


def eval_folder(run_dir: Path, who: str, config: EvalConfig) -> Path:
    return Path(run_dir) / EVAL / eval_folder_name(who, config.method, config.split, config.limit)


def evaluate_one(run_dir: str | Path, who: str, config: EvalConfig, data_dir: str | None = None,
                 progress: bool = True, models: dict | None = None) -> Path:
    """One evaluation of the run's base model (`who="base"`) or its adapter (`"adapter"`), saved in its own folder
    under `run_dir/eval/` and returned; one already there with the same settings is reused, not recomputed. A base
    model's evaluation with the same base weights, settings and data, made by any earlier run (or shipped with the
    course), is copied instead of computed, with a log line (`stored_base_evaluation`).

    `models` keeps the last loaded model between calls (one in memory at a time), so a sequence of evaluations of
    the same model loads it once."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)["config"]
    folder = eval_folder(run_dir, who, config)
    if _reusable(folder, config, data_dir, record["quantize"] is not None):
        return folder
    key = base_evaluation_key(record["model"], record["quantize"], config, data_dir) if who == "base" else None
    stored = stored_base_evaluation(key) if key else None
    if stored is not None:
        copy_base_evaluation(stored, folder)
        log.info("%s: the base model's evaluation reused from %s (same base weights, evaluation settings and data; "
                 "key %s)", folder.name, stored, key_id(key))
        return folder
    models = {} if models is None else models
    if (who, config.merged) not in models:
        models.clear()
        models[(who, config.merged)] = (load_adapter(run_dir, merged=config.merged) if who == "adapter" else
                       load_model(record["model"], record["quantize"], merged=config.merged))
    model, tokenizer = models[(who, config.merged)]
    evaluate(model, tokenizer, config, folder, record["model"], str(run_dir) if who == "adapter" else None, data_dir,
             progress)
    if key:
        kept = keep_base_evaluation(folder, key)
        log.info("%s: the base model's evaluation computed (none stored for key %s) and kept in %s for later runs",
                 folder.name, key_id(key), kept)
    return folder


# ---------------------------------------------------------------- base evaluations, computed once

BASE_EVALUATIONS = "base-evaluations"  # a folder per key, in the user's cache and in data/ (shipped)
BASE_EVALUATION_FILES = (METRICS, "examples.json", "predictions.csv")  # the shipped copies hold the first two
EVALUATION_VERSION = 1  # raise it when what an evaluation computes changes (scoring, metrics): old keys stop matching
KEY_SETTINGS = ("method", "split", "limit", "seed", "batch_size", "max_length", "max_new_tokens", "merged",
                "examples_per_class")


def base_evaluation_stores() -> list[Path]:
    """Where base evaluations are looked up, in order: the user's cache (written), the course's shipped copies (in a
    clone, or inside the installed package)."""
    from .config import PACKAGE_PARENT, cache_dir

    return [cache_dir() / BASE_EVALUATIONS, PACKAGE_PARENT / "data" / BASE_EVALUATIONS,
            PACKAGE_PARENT / "hwlib" / "shipped_base_evaluations"]


def base_evaluation_key(model: str, quantize: str | None, config: EvalConfig, data_dir: str | None = None) -> dict | None:
    """Everything a base model's evaluation depends on: its weights' fingerprint and quantization, the dtype it
    computes in (`hwlib.config.compute_dtype`: a bf16 evaluation is not an fp32 one), the evaluation settings, the
    rendered prompt and the split's content; None for a base without local weights (a Hub id)."""
    import hashlib
    import json

    from .config import compute_dtype, dtype_name
    from .data import LABELS, load_split
    from .models import load_tokenizer, resolve_model, weights_fingerprint
    from .prompts import render_transcript

    folder = resolve_model(model)
    fingerprint = weights_fingerprint(folder)
    if fingerprint is None:
        return None
    split = load_split(config.split, data_dir)
    content = json.dumps([list(split["text"]), list(split["label"])], ensure_ascii=False).encode()
    prompt = render_transcript(load_tokenizer(folder), "a message", LABELS[-1]).encode()
    settings = dataclasses.asdict(config)
    return {"version": EVALUATION_VERSION, "base_weights": fingerprint, "quantize": quantize,
            "compute_dtype": dtype_name(compute_dtype()),
            "prompt_sha256": hashlib.sha256(prompt).hexdigest(), "data_sha256": hashlib.sha256(content).hexdigest(),
            **{name: settings[name] for name in KEY_SETTINGS}}


def key_id(key: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def stored_base_evaluation(key: dict) -> Path | None:
    """The first stored evaluation whose recorded key equals `key` and whose record is complete, else None."""
    for store in base_evaluation_stores():
        folder = store / key_id(key)
        if not (folder / METRICS).is_file():
            continue
        metrics = read_metrics(folder)
        if metrics.get("base_evaluation_key") != key or not _complete(metrics):
            log.warning("%s does not hold the evaluation its name promises (another key or an incomplete record): "
                        "not reused", folder)
            continue
        return folder
    return None


def _complete(metrics: dict) -> bool:
    """A record with the figures a card reads, its confusion counts adding up to its rows."""
    try:
        return (isinstance(metrics["macro_f1"], float) and
                sum(map(sum, metrics["confusion"]["counts"])) == metrics["rows"] > 0)
    except (KeyError, TypeError):
        return False


def keep_base_evaluation(folder: Path, key: dict) -> Path:
    """A copy of a finished base evaluation in the user's cache, its metrics recording the key."""
    import shutil

    kept = base_evaluation_stores()[0] / key_id(key)
    kept.mkdir(parents=True, exist_ok=True)
    for name in BASE_EVALUATION_FILES[1:]:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, kept / name)
    write_json(kept / METRICS, {**read_metrics(folder), "base_evaluation_key": key})
    return kept


def copy_base_evaluation(stored: Path, folder: Path) -> None:
    """A stored base evaluation as the run's own: its files, its confusion figures redrawn, and where it came from."""
    import shutil

    from .evaluate import CONFUSION, _title
    from .metrics import save_confusion_png

    folder.mkdir(parents=True, exist_ok=True)
    for name in BASE_EVALUATION_FILES[1:]:
        if (stored / name).is_file():
            shutil.copyfile(stored / name, folder / name)
    metrics = {**read_metrics(stored), "reused_from": str(stored)}
    for normalised in (False, True):
        save_confusion_png({_title(metrics): metrics}, folder / CONFUSION[normalised], normalised)
    write_json(folder / METRICS, metrics)


def evaluate_run(run_dir: str | Path, eval_config: EvalConfig, data_dir: str | None = None,
                 progress: bool = True) -> dict[str, Path]:
    """Evaluate a trained run before and after fine-tuning; evaluations already in the folder are kept.

    Returns the evaluation folders by title: `score` on the configured split for the base model and the
    adapter; with `eval_config.calibrate`, the adapter's `score` on validation and the test scores after
    per-class offsets fitted there; with `generate_limit`, the card's `generate` method on a seeded sample;
    with `baselines`, TF-IDF + logistic regression on the same split. Lesson 04 makes the same calls one by one.
    """
    run_dir = Path(run_dir)
    score_config = dataclasses.replace(eval_config, method="score")
    plans = evaluation_plans(eval_config, read_run(run_dir)["config"].get("head", "generate"))
    models: dict = {}
    folders = {title: evaluate_one(run_dir, who, config, data_dir, progress, models)
               for title, (who, config) in plans.items()}
    models.clear()
    if eval_config.calibrate:
        folders["fine-tuned, calibrated"] = calibrated(folders["fine-tuned, validation (fits calibration)"],
                                                       folders["fine-tuned"])
    if eval_config.baselines:
        folders["TF-IDF + logistic regression"] = tfidf_baseline(run_dir, score_config, data_dir)
    write_run_card(run_dir, folders, eval_config)
    return folders


def evaluation_plans(eval_config: EvalConfig, head: str = "generate") -> dict[str, tuple[str, EvalConfig]]:
    """The evaluations `evaluate_run` makes, by title: who is evaluated ("adapter" or "base") and how. A run with a
    classification head (`head="classify"`) writes no text, so the card's generate method is left out."""
    score_config = dataclasses.replace(eval_config, method="score")
    plans = {"fine-tuned": ("adapter", score_config)}
    if eval_config.calibrate:
        plans["fine-tuned, validation (fits calibration)"] = (
            "adapter", dataclasses.replace(score_config, split="validation"))
    if eval_config.generate_limit and head == "generate":
        card_method = dataclasses.replace(eval_config, method="generate", limit=eval_config.generate_limit)
        plans["fine-tuned, card's method"] = ("adapter", card_method)
        plans["base, card's method"] = ("base", card_method)
    plans["base (zero-shot)"] = ("base", score_config)
    return plans


def write_run_card(run_dir: str | Path, folders: dict[str, Path], eval_config: EvalConfig) -> Path | None:
    """The run's model card and before/after figure from these evaluations; a sample never replaces a card that
    already reports the whole split (returns None then, with a log line)."""
    run_dir = Path(run_dir)
    whole_split = eval_folder(run_dir, "adapter", dataclasses.replace(eval_config, method="score", limit=None))
    if eval_config.limit is not None and (whole_split / METRICS).is_file():
        log.info("%s keeps its model card: it reports the whole split (%s), this evaluation a sample of %d tweets",
                 run_dir, whole_split.name, eval_config.limit)
        return None
    compare_png({"base (zero-shot)": folders["base (zero-shot)"], "fine-tuned": folders["fine-tuned"]},
                run_dir / COMPARISON_PNG)
    examples_from = folders.get("fine-tuned, card's method", folders["fine-tuned"])
    return write_card(run_dir, folders, "fine-tuned", examples_from, COMPARISON_PNG)


def _reusable(folder: Path, config: EvalConfig, data_dir: str | None, quantized: bool) -> bool:
    """Whether an evaluation already in `folder` was made with these settings (data source, seed, merged or 4-bit
    weights); settings it did not record are taken as equal. One made otherwise is computed again, with a log line."""
    if not (folder / METRICS).is_file():
        return False
    recorded = read_metrics(folder)
    wanted = {"data_source": data_source(data_dir), "seed": config.seed,
              "weights": "4-bit" if quantized and not config.merged else "dense"}
    differ = [k for k, v in wanted.items() if k in recorded and recorded[k] != v]
    if differ:
        log.info("%s was evaluated with other %s: evaluating again", folder, ", ".join(differ))
        return False
    return True


def calibrated(validation_folder: Path, test_folder: Path) -> Path:
    """Per-class offsets fitted on `validation_folder`'s predictions, applied to `test_folder`'s (kept once made)."""
    folder = test_folder.with_name(test_folder.name + "-calibrated")
    if not (folder / METRICS).is_file():
        calibrate(validation_folder, test_folder, folder)
    return folder


def tfidf_baseline(run_dir: str | Path, config: EvalConfig, data_dir: str | None = None) -> Path:
    """TF-IDF + logistic regression trained on the whole train split, scored on `config.split` (kept once made)."""
    folder = Path(run_dir) / EVAL / eval_folder_name("tfidf", "logreg", config.split, None)
    if not (folder / METRICS).is_file():
        evaluate_tfidf(folder, config.split, data_dir, seed=config.seed)
    return folder


def run(train_config: TrainConfig, eval_config: EvalConfig, resume: bool = False, overwrite: bool = False,
        progress: bool = True) -> dict:
    """Train (or reuse a finished training in the output folder), evaluate, write the card; returns the summary."""
    start = time.perf_counter()
    run_dir = Path(train_config.output_dir)
    if not (resume and (run_dir / RUN_CONFIG).is_file()):
        train(train_config, resume=resume, overwrite=overwrite)
    folders = evaluate_run(run_dir, eval_config, train_config.data_dir, progress)
    summary = {
        "run_dir": str(run_dir),
        "table": {title: {k: read_metrics(f).get(k) for k in ("macro_f1", "macro_recall", "accuracy", "invalid_rate",
                                                              "rows", "method", "split", "tweets_per_s")}
                  for title, f in folders.items()},
        "folders": {title: str(f) for title, f in folders.items()},
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_json(run_dir / SUMMARY, summary)
    print(metrics_table(folders))
    print(f"\nrun folder: {run_dir}  (model card: {run_dir / 'README.md'}); wall time {summary['wall_time_s'] / 60:.1f} min")
    return summary
