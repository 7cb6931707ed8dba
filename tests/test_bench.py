"""The benchmark harness runs end to end on the smoke profile (no timing asserts: figures come from `--profile cpu`)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", ["inference", "peak-share", "training"])
def test_bench_smoke(command, tmp_path, data_dir):
    output = tmp_path / f"{command}.json"
    result = subprocess.run([sys.executable, "-m", "bench", command, "--profile", "smoke", "--data-dir", str(data_dir),
                             "--output", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(output.read_text())
    rows = record["results"]
    assert record["machine"]["processor"] and "instruction_sets" in record["machine"]  # which machine class it was
    if command == "inference":
        assert rows[0]["method"].startswith("(a)") and rows[0]["ratio_to_a"] == 1.0
        *methods, limit = rows
        assert {"tweets_per_s", "macro_f1", "agreement_with_a", "peak_rss_mb"} <= methods[-1].keys()
        assert methods[1]["method"] == "(a) generate + regex, merged"
        shares = {r["method"]: r["share_of_peak"] for r in methods if "share_of_peak" in r}
        assert len(shares) == 5 and all(s > 0 for s in shares.values())  # the merged model's score rows
        assert limit["gflops"] > 0 and limit["own_tokens_per_tweet"] > 0
    elif command == "peak-share":
        *rows, operators = rows
        assert [r["batch_size"] for r in rows] == [16, 32]
        shares = operators["time_shares"]
        assert "aten::mm" in shares and sum(shares.values()) == pytest.approx(1, abs=0.01)
        for row in rows:
            assert row["repeats"] == 1 and len(row["tweets_per_s_all"]) == len(row["limit_gflops_all"]) == 1
            assert row["tweets_per_s_best"] == row["tweets_per_s_median"] > 0
            assert row["share_of_peak_best"] == round(row["tweets_per_s_best"] / row["limit_tweets_per_s_best"], 3)
            assert 0 <= row["padding_share"] < 1
    else:
        assert [r["variant"] for r in rows] == ["trl-defaults", "hwlib", "hwlib-shared-prefix", "hwlib-loss-positions",
                                                "hwlib-both", "hwlib-bf16", "hwlib-bf16-adapter"]
        assert rows[0]["activation_checkpointing"] and not rows[1]["activation_checkpointing"]
        assert [r["shared_prefix"] for r in rows] == [False, False, True, False, True, False, False]
        assert [r["loss_positions_only"] for r in rows] == [False, False, False, True, True, False, False]
        assert rows[5]["compute_dtype"] == "bfloat16"
        assert [r["adapter_dtype"] for r in rows] == ["bfloat16"] + ["float32"] * 5 + ["bfloat16"]
        assert all(r["steps"] == 2 and len(r["losses"]) == 2 for r in rows)
    assert "smoke" in result.stdout


def test_padding_share_counts_the_left_padding_of_sorted_batches():
    from bench.__main__ import padding_share

    # prefix 2; own lengths 1, 3 | 4, 4 in batches of two: 1 + 3 + 4 + 4 = 12 useful of 3 * 2 + 4 * 2 = 14
    assert padding_share([3, 5, 6, 6], prefix=2, batch_size=2) == pytest.approx(1 - 12 / 14)
    assert padding_share([3, 5, 6, 6], prefix=2, batch_size=1) == 0


def test_bench_help():
    result = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and all(
        name in result.stdout for name in ("inference", "peak-share", "training"))


def test_readme_and_docs_hold_the_printed_tables():
    """Every block `python tools/results_tables.py` prints from the committed result files is in its home file."""
    spec = importlib.util.spec_from_file_location("results_tables", ROOT / "tools" / "results_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    stale = [f"{name} ({tables.HOMES[name]})" for name, block in tables.sections().items()
             if block not in (ROOT / tables.HOMES[name]).read_text()]
    assert not stale, f"these differ from `python tools/results_tables.py`: {', '.join(stale)}"


def test_shipped_seed_spread_matches_its_rows_and_the_shipped_adapter():
    """seeds.json (written by tools/seed_spread.py) holds the shipped adapter's own test result as its seed-42 row,
    and its mean and standard deviation are those of its rows."""
    import statistics

    spec = importlib.util.spec_from_file_location("seed_spread", ROOT / "tools" / "seed_spread.py")
    spread = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(spread)
    record = json.loads(spread.SEEDS_JSON.read_text())
    assert len(record["seeds"]) >= 3 and len({row["seed"] for row in record["seeds"]}) == len(record["seeds"])
    shipped = json.loads((spread.SHIPPED / "eval" / "adapter-score-test-all" / "metrics.json").read_text())
    (row_42,) = [row for row in record["seeds"] if row["seed"] == 42]
    assert row_42["test_macro_f1"] == shipped["macro_f1"] and row_42["test_macro_recall"] == shipped["macro_recall"]
    for column, summary in record["summary"].items():
        values = [row[column] for row in record["seeds"]]
        assert summary["mean"] == pytest.approx(statistics.mean(values))
        assert summary["std"] == pytest.approx(statistics.stdev(values))
