import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from hwlib.config import eval_config, train_config
from hwlib.pipeline import COMPARISON_PNG, SUMMARY, run


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, data_dir):
    output = tmp_path_factory.mktemp("pipeline") / "smoke"
    config = train_config("smoke", output_dir=str(output), data_dir=str(data_dir))
    run(config, eval_config("smoke", generate_limit=6), progress=False)
    return output


def test_card_numbers_are_the_metrics(pipeline_run):
    card = (pipeline_run / "README.md").read_text()
    summary = json.loads((pipeline_run / SUMMARY).read_text())
    for title, folder in summary["folders"].items():
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        row = next(line for line in card.splitlines() if line.startswith(f"| {title} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3:7] == [f"{metrics[k]:.4f}" for k in ("macro_f1", "macro_recall", "accuracy", "invalid_rate")]
        assert cells[2] == f"{metrics['split']} ({metrics['rows']:,})"
    headline = json.loads((Path(summary["folders"]["fine-tuned"]) / "metrics.json").read_text())
    assert f"**macro-F1 {headline['macro_f1']:.4f}**" in card
    record = json.loads((pipeline_run / "run_config.json").read_text())
    assert f"{record['steps']} steps" in card and f"{record['final_loss']:.4f}" in card
    assert "k_proj" in card and "def postprocess_sentiment" in card


def test_card_has_no_unsourced_metric(pipeline_run):
    """Every 4-decimal figure in the card comes from a metrics.json or run_config.json of the run."""
    card = (pipeline_run / "README.md").read_text()
    summary = json.loads((pipeline_run / SUMMARY).read_text())
    allowed = set()
    for folder in summary["folders"].values():
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        allowed |= {f"{metrics[k]:.4f}" for k in ("macro_f1", "macro_recall", "accuracy", "invalid_rate")}
        allowed |= {f"{c[k]:.4f}" for c in metrics["per_class"].values() for k in ("precision", "recall", "f1")}
    record = json.loads((pipeline_run / "run_config.json").read_text())
    allowed |= {f"{record['final_loss']:.4f}", f"{record['config']['learning_rate']:g}"}
    assert set(re.findall(r"\b\d\.\d{4}\b", card)) <= allowed


def test_run_outputs(pipeline_run):
    assert (pipeline_run / COMPARISON_PNG).stat().st_size > 10000
    summary = json.loads((pipeline_run / SUMMARY).read_text())
    assert set(summary["table"]) == {"fine-tuned", "base (zero-shot)", "fine-tuned, card's method",
                                     "base, card's method", "fine-tuned, validation (fits calibration)",
                                     "fine-tuned, calibrated"}
    assert summary["table"]["fine-tuned"]["rows"] == 24
    assert summary["table"]["fine-tuned, validation (fits calibration)"]["split"] == "validation"
    assert summary["table"]["fine-tuned, calibrated"]["method"] == "score+calibrated"
    weights = {json.loads((Path(f) / "metrics.json").read_text()).get("weights") for f in summary["folders"].values()}
    assert weights == {"dense", None}  # merged models predict; calibration writes no weights of its own


def test_studying_the_shipped_adapter_keeps_its_card_and_whole_split_figures(tmp_path, data_dir):
    """Lesson 04 evaluates a sample of the shipped run: its card and whole-split metrics must stay the shipped ones."""
    from hwlib.card import CARD
    from hwlib.pipeline import evaluate_run
    from hwlib.train import lesson_run

    run_dir = lesson_run(train_config("cpu", output_dir=str(tmp_path / "cpu"))).folder
    kept = [run_dir / CARD, run_dir / COMPARISON_PNG, *sorted(run_dir.glob("eval/*-all*/metrics.json"))]
    before = {path: path.read_bytes() for path in kept}
    sample = eval_config("cpu", limit=6, generate_limit=0, calibrate=False, baselines=False)
    folders = evaluate_run(run_dir, sample, str(data_dir), progress=False)
    assert folders["fine-tuned"].name.endswith("-6") and (folders["fine-tuned"] / "metrics.json").is_file()
    assert len(before) >= 6 and {path: path.read_bytes() for path in kept} == before


def test_a_base_evaluation_is_computed_once_then_reused_until_what_it_depends_on_changes(smoke_run, data_dir,
                                                                                         tmp_path, monkeypatch,
                                                                                         caplog):
    import logging
    import shutil

    import pandas as pd

    from hwlib import pipeline

    from .test_failures import copy_run

    stores = [tmp_path / "cache", tmp_path / "shipped"]
    monkeypatch.setattr(pipeline, "base_evaluation_stores", lambda: stores)
    config = eval_config("smoke")

    def evaluate_base(name: str, settings=config, data=data_dir) -> tuple[dict, str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="hwlib.pipeline"):
            folder = pipeline.evaluate_one(copy_run(smoke_run, tmp_path, name), "base", settings, str(data),
                                           progress=False)
        return json.loads((folder / "metrics.json").read_text()), caplog.text

    first, said = evaluate_base("first")
    assert "computed (none stored" in said and "reused_from" not in first
    again, said = evaluate_base("second")
    assert "reused from" in said and again["reused_from"].startswith(str(stores[0]))
    assert {k: v for k, v in again.items() if k not in ("reused_from", "base_evaluation_key")} == first

    shutil.move(str(stores[0]), str(stores[1]))  # a fresh clone: only the course's shipped copy
    assert "reused from" in evaluate_base("fresh-clone")[1]

    assert "computed (none stored" in evaluate_base("other-seed", dataclasses.replace(config, seed=7))[1]
    from hwlib.config import DTYPE_ENV, compute_dtype

    other = "float32" if compute_dtype() != torch.float32 else "bfloat16"
    monkeypatch.setenv(DTYPE_ENV, other)  # a half-precision evaluation is not an fp32 one, and the reverse
    compute_dtype.cache_clear()
    try:
        computed = evaluate_base("other-dtype")
    finally:
        monkeypatch.undo()
        compute_dtype.cache_clear()
    monkeypatch.setattr(pipeline, "base_evaluation_stores", lambda: stores)
    assert "computed (none stored" in computed[1] and computed[0]["compute_dtype"] == other
    changed_data = tmp_path / "data"
    shutil.copytree(data_dir, changed_data)
    test = pd.read_parquet(changed_data / "test.parquet")
    test.loc[0, "text"] = "an edited tweet"
    test.to_parquet(changed_data / "test.parquet")
    assert "computed (none stored" in evaluate_base("other-data", data=changed_data)[1]

    for record in stores[1].glob("*/metrics.json"):  # a record that does not hold what its name promises
        record.write_text(json.dumps({**json.loads(record.read_text()), "rows": 1}))
    assert "not reused" in evaluate_base("tampered")[1]
