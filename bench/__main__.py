"""Speed benchmark: `python -m bench {inference,peak-share,training} --profile {smoke,cpu}` prints ratios measured in
one run.

matmul: bf16 against fp32 matrix products at the model's shapes, the measurement behind the CPU's compute dtype.
inference: the card's method (`generate` + regex on the 4-bit model + adapter) against label scoring, without and
with each speed-up, on the same seeded sample of test tweets in one process.
peak-share: `score` on the merged model against the fp32 matmul limit at its shapes, both timed in turn, repeatedly.
training: TRL's `SFTTrainer` with its default `SFTConfig` (apart from the card's lr/batch/epoch) against hwlib's
configured trainer, same examples and steps, each in a fresh process (malloc settings are per process).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hwlib  # noqa: F401  (tunes malloc for this process unless HWLIB_NO_MALLOC_TUNING=1)
from hwlib.config import EvalConfig, machine, train_config
from hwlib.files import write_json

SHIPPED_ADAPTER = Path(__file__).resolve().parent.parent / "data" / "adapters" / "smollm2-135m-cpu"
DEFAULTS = {"smoke": dict(sample=24, steps=2, share_sample=24, repeats=1),
            "cpu": dict(sample=256, steps=8, share_sample=1024, repeats=3)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def smoke_adapter(data_dir: str | None) -> Path:
    """A freshly trained tiny-random adapter (plumbing only) for the smoke benchmark."""
    from hwlib.train import train

    folder = Path(tempfile.mkdtemp(prefix="bench-smoke-")) / "run"
    return train(train_config("smoke", output_dir=str(folder), data_dir=data_dir))


# ---------------------------------------------------------------- inference

def non_embedding_parameters(model) -> int:
    """Parameters the transformer layers multiply every token by (embeddings and the LM head excluded)."""
    return sum(p.numel() for layer in model.get_decoder().layers for p in layer.parameters())


def projection_peak(model, tokens: int, repeats: int = 20) -> float:
    """The fp32 matmul limit, GFLOP/s, for one token's trip through every projection of one layer, each at its own
    measured speed with `tokens` rows (the batch a score call multiplies): the compute limit score can approach."""
    import torch

    layer = model.get_decoder().layers[0]
    shapes = [(m.in_features, m.out_features) for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    seconds = sum(matmul_seconds(tokens, k, n, torch.float32, repeats) for k, n in shapes)
    return 2 * tokens * sum(k * n for k, n in shapes) / seconds / 1e9


def inference(profile: str, sample: int, adapter: Path | None, data_dir: str | None, seed: int) -> list[dict]:
    """Each method on the same tweets: tweets/s, ratio to the card's method, macro-F1, agreement, peak RSS, and for
    the merged model's scoring the share of the machine's fp32 matmul limit it reaches."""
    import statistics

    from hwlib.evaluate import encode_for_scoring, evaluation_rows, generate, score, shared_prefix_length
    from hwlib.metrics import compute_metrics
    from hwlib.models import load_adapter

    adapter = adapter or (smoke_adapter(data_dir) if profile == "smoke" else SHIPPED_ADAPTER)
    rows = evaluation_rows(EvalConfig(split="test", limit=sample, seed=seed), data_dir)
    texts, y_true = rows["text"].tolist(), rows["gold"].tolist()
    quantized, tokenizer = load_adapter(adapter)
    merged, _ = load_adapter(adapter, merged=True)
    warm = texts[: min(8, len(texts))]
    methods = {
        "(a) card: generate + regex, 4-bit": (quantized, lambda m, t: generate(m, tokenizer, t, 16, progress=False)[0]),
        "(a) generate + regex, merged": (merged, lambda m, t: generate(m, tokenizer, t, 16, progress=False)[0]),
        "(b) score, no speed-ups, 4-bit": (quantized, lambda m, t: score(
            m, tokenizer, t, prefix_cache=False, sort_by_length=False, label_head=False, progress=False)[0]),
        "score + label head, 4-bit": (quantized, lambda m, t: score(
            m, tokenizer, t, prefix_cache=False, sort_by_length=False, progress=False)[0]),
        "score + label head + prefix cache + sort, 4-bit": (quantized, lambda m, t: score(
            m, tokenizer, t, progress=False)[0]),
        "(c) score, all speed-ups, merged": (merged, lambda m, t: score(m, tokenizer, t, progress=False)[0]),
        "(c) without prefix cache": (merged, lambda m, t: score(m, tokenizer, t, prefix_cache=False,
                                                                progress=False)[0]),
        "(c) without length sort": (merged, lambda m, t: score(m, tokenizer, t, sort_by_length=False,
                                                               progress=False)[0]),
        "(c) with batch 16": (merged, lambda m, t: score(m, tokenizer, t, batch_size=16, progress=False)[0]),
        "(c) with batch 64": (merged, lambda m, t: score(m, tokenizer, t, batch_size=64, progress=False)[0]),
    }
    # The work score must do: every token past the shared prefix through every layer (2 FLOP per weight).
    encoded = encode_for_scoring(tokenizer, texts)
    own_tokens = statistics.mean(len(e.context) for e in encoded) - shared_prefix_length(encoded)
    gflop_per_tweet = 2 * non_embedding_parameters(merged) * own_tokens / 1e9
    peak = projection_peak(merged, tokens=round(EvalConfig().batch_size * own_tokens))
    results, reference = [], None
    for name, (model, method) in methods.items():
        method(model, warm)  # first-call costs (kernels, caches) are not the method's speed
        start = time.perf_counter()
        y_pred = method(model, texts)
        seconds = time.perf_counter() - start
        reference = reference or y_pred
        result = {
            "method": name, "tweets_per_s": round(len(texts) / seconds, 2),
            "macro_f1": round(compute_metrics(y_true, y_pred)["macro_f1"], 4),
            "agreement_with_a": round(sum(p == r for p, r in zip(y_pred, reference)) / len(texts), 4),
            "peak_rss_mb": round(peak_rss_mb()),
        }
        if model is merged and not name.startswith("(a)"):  # score on the merged model
            result["share_of_peak"] = round(len(texts) / seconds * gflop_per_tweet / peak, 3)
        results.append(result)
    base = results[0]["tweets_per_s"]
    for result in results:
        result["ratio_to_a"] = round(result["tweets_per_s"] / base, 2)
    results.append({"method": "(limit) fp32 matmul peak at the model's projection shapes", "gflops": round(peak, 1),
                    "gflop_per_tweet": round(gflop_per_tweet, 3), "own_tokens_per_tweet": round(own_tokens, 1),
                    "tweets_per_s": round(peak / gflop_per_tweet, 2)})
    return results


PEAK_SHARE_COLUMNS = ["batch_size", "tweets_per_s_best", "limit_tweets_per_s_best", "share_of_peak_best",
                      "tweets_per_s_median", "limit_tweets_per_s_median", "share_of_peak_median", "padding_share"]


def padding_share(context_lengths: list[int], prefix: int, batch_size: int) -> float:
    """The share of the token positions `score` computes that are left padding (its length-sorted batches)."""
    lengths = sorted(n - prefix for n in context_lengths)
    batches = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    return 1 - sum(lengths) / sum(max(b) * len(b) for b in batches)


def peak_share(profile: str, sample: int, adapter: Path | None, data_dir: str | None, seed: int, repeats: int,
               batch_sizes: tuple[int, ...] = (16, 32), limit_repeats: int = 100) -> list[dict]:
    """`score` on the merged model as a share of the fp32 matmul limit, per batch size, the two measured in turn
    `repeats` times: on a shared machine a single timing of either can be off by a fifth, so the fastest of each
    (noise only ever slows a run) and the medians are reported side by side. Each limit timing multiplies every
    shape `limit_repeats` times (some seconds), so that a short burst of the host's speed weighs less. A last row
    says where one scoring run at the default batch size spends its time, by torch operator (profiled, not timed)."""
    import statistics

    from hwlib.evaluate import encode_for_scoring, evaluation_rows, score, shared_prefix_length
    from hwlib.models import load_adapter

    adapter = adapter or (smoke_adapter(data_dir) if profile == "smoke" else SHIPPED_ADAPTER)
    texts = evaluation_rows(EvalConfig(split="test", limit=sample, seed=seed), data_dir)["text"].tolist()
    merged, tokenizer = load_adapter(adapter, merged=True)
    encoded = encode_for_scoring(tokenizer, texts)
    prefix = shared_prefix_length(encoded)
    own_tokens = statistics.mean(len(e.context) for e in encoded) - prefix
    gflop_per_tweet = 2 * non_embedding_parameters(merged) * own_tokens / 1e9
    score(merged, tokenizer, texts[: min(8, len(texts))], progress=False)  # first-call costs
    speed = {size: [] for size in batch_sizes}
    peak = {size: [] for size in batch_sizes}
    for _ in range(repeats):
        for size in batch_sizes:
            peak[size].append(projection_peak(merged, tokens=round(size * own_tokens), repeats=limit_repeats))
            start = time.perf_counter()
            score(merged, tokenizer, texts, batch_size=size, progress=False)
            speed[size].append(len(texts) / (time.perf_counter() - start))
    results = []
    for size in batch_sizes:
        limit_best, limit_median = max(peak[size]) / gflop_per_tweet, statistics.median(peak[size]) / gflop_per_tweet
        results.append({
            "batch_size": size, "tweets_per_s_best": round(max(speed[size]), 2),
            "tweets_per_s_median": round(statistics.median(speed[size]), 2),
            "limit_tweets_per_s_best": round(limit_best, 2), "limit_tweets_per_s_median": round(limit_median, 2),
            "share_of_peak_best": round(max(speed[size]) / limit_best, 3),
            "share_of_peak_median": round(statistics.median(speed[size]) / limit_median, 3),
            "padding_share": round(padding_share([len(e.context) for e in encoded], prefix, size), 3),
            "gflop_per_tweet": round(gflop_per_tweet, 3), "own_tokens_per_tweet": round(own_tokens, 1),
            "tweets": len(texts), "repeats": repeats,
            "tweets_per_s_all": [round(v, 2) for v in speed[size]],
            "limit_gflops_all": [round(v, 1) for v in peak[size]],
        })
    results.append({"batch_size": EvalConfig().batch_size, "time_shares": operator_shares(
        lambda: score(merged, tokenizer, texts, progress=False))})
    return results


def operator_shares(work, top: int = 8) -> dict[str, float]:
    """Where `work()` spends its time: the share of CPU time in each of the `top` costliest torch operators
    (self time, so a matmul is counted once, not again in the linear layer around it), the rest as "other"."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        work()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    shares = {e.key: round(e.self_cpu_time_total / total, 3) for e in events[:top]}
    shares["other"] = round(1 - sum(shares.values()), 3)
    return shares


# ---------------------------------------------------------------- training

VARIANTS = ("trl-defaults", "hwlib", "hwlib-shared-prefix", "hwlib-loss-positions", "hwlib-both", "hwlib-bf16",
            "hwlib-bf16-adapter")
VARIANT_ENV = {  # per-process settings: malloc tuning is process-wide, the compute dtype is read once
    "trl-defaults": {"HWLIB_NO_MALLOC_TUNING": "1"},
    "hwlib": {"HWLIB_NO_MALLOC_TUNING": "0"},
    "hwlib-shared-prefix": {"HWLIB_NO_MALLOC_TUNING": "0"},
    "hwlib-loss-positions": {"HWLIB_NO_MALLOC_TUNING": "0"},
    "hwlib-both": {"HWLIB_NO_MALLOC_TUNING": "0"},
    "hwlib-bf16": {"HWLIB_NO_MALLOC_TUNING": "0", "HWLIB_COMPUTE_DTYPE": "bfloat16"},
    "hwlib-bf16-adapter": {"HWLIB_NO_MALLOC_TUNING": "0"},
}


def training_worker(variant: str, profile: str, steps: int, data_dir: str | None, output: Path) -> dict:
    """One training variant in this process: examples/s over the steps after the first, loss per step."""
    import torch
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from hwlib.config import compute_dtype, device, dtype_name
    from hwlib.models import load_model
    from hwlib.train import (build_trainer, cast_adapter, lora_config, trainable_parameters, training_data,
                             training_examples)

    config = train_config(profile, data_dir=data_dir, max_steps=steps, save_steps=10**6, logging_steps=1,
                          output_dir=str(output / variant))
    # `hwlib` trains the plain way; each other row changes one thing against it (`hwlib-both`: the two speed-ups the
    # profiles train with).
    config = dataclasses.replace(config, train_size=steps * config.batch_size,
                                 shared_prefix=variant in ("hwlib-shared-prefix", "hwlib-both"),
                                 loss_positions_only=variant in ("hwlib-loss-positions", "hwlib-both"))
    dataset = training_data(config)
    model, tokenizer = load_model(config.model, config.quantize, trainable=True)
    if variant.startswith("hwlib"):
        trainer = build_trainer(config, model, tokenizer, dataset)
        if variant == "hwlib-bf16-adapter":  # the adapter as TRL stores it for a 4-bit model, before hwlib's fp32
            cast_adapter(trainer.model, torch.bfloat16)
    else:  # TRL's defaults, apart from the card's learning rate, batch size and epochs (and the step cap)
        args = SFTConfig(output_dir=config.output_dir, learning_rate=config.learning_rate,
                         per_device_train_batch_size=config.batch_size, num_train_epochs=config.epochs,
                         max_steps=steps, seed=config.seed, logging_steps=1, save_strategy="no", report_to="none",
                         use_cpu=device() == "cpu", disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=training_examples(dataset, tokenizer),
                             processing_class=tokenizer, peft_config=lora_config(config))

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, *args, **kwargs):
            self.times.append(time.perf_counter())

    clock = StepClock()
    trainer.add_callback(clock)
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    timed = clock.times[-1] - clock.times[0] if len(clock.times) > 1 else seconds
    timed_steps = max(len(clock.times) - 1, 1)
    losses = [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e]
    return {
        "variant": variant, "steps": len(clock.times),
        "examples_per_s": round(timed_steps * config.batch_size / timed, 3),
        "s_per_step": round(timed / timed_steps, 2),
        "minor_faults_per_s": round((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / seconds),
        "peak_rss_mb": round(peak_rss_mb()), "losses": losses, "final_loss": losses[-1] if losses else None,
        "activation_checkpointing": bool(trainer.args.gradient_checkpointing),
        "adapter_dtype": trainable_parameters(trainer.model)["trainable_dtype"],
        "compute_dtype": dtype_name(compute_dtype()),
        "shared_prefix": config.shared_prefix if variant.startswith("hwlib") else False,
        "loss_positions_only": config.loss_positions_only if variant.startswith("hwlib") else False,
    }


def training(profile: str, steps: int, data_dir: str | None, variants: tuple[str, ...] = VARIANTS) -> list[dict]:
    """Each variant in a fresh process; TRL's defaults run with glibc's default malloc, as a plain script would.
    Ratios are to the first variant run."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        for variant in variants:
            out = Path(scratch) / f"{variant}.json"
            env = {**os.environ, **VARIANT_ENV[variant]}
            command = [sys.executable, "-m", "bench", "training-worker", "--variant", variant, "--profile", profile,
                       "--steps", str(steps), "--json", str(out)] + (["--data-dir", data_dir] if data_dir else [])
            subprocess.run(command, check=True, env=env, cwd=Path(__file__).resolve().parent.parent)
            results.append(json.loads(out.read_text()))
    base = results[0]["examples_per_s"]
    for result in results:
        result["ratio"] = round(result["examples_per_s"] / base, 2)
    return results


# ---------------------------------------------------------------- predict at scale

def corpus(rows: int, data_dir: str | None, path: Path) -> Path:
    """A CSV of `rows` test tweets (the split repeated), with an id column, as a user's corpus would be."""
    import pandas as pd

    from hwlib.data import load_split

    texts = load_split("test", data_dir)["text"]
    pd.DataFrame({"id": range(rows), "text": [texts[i % len(texts)] for i in range(rows)]}).to_csv(path, index=False)
    return path


def predict_worker(adapter: Path, source: Path, mode: str) -> dict:
    """One measurement in this process: `streamed` runs `python -m hwlib predict --file --output` as the CLI does;
    `in-memory` reads every row first and calls `score` once, the way `predict` worked before it streamed."""
    import pandas as pd

    from hwlib.evaluate import score
    from hwlib.predict import Classifier, plan_file, prediction_settings, run_file

    rows = sum(1 for _ in open(source, encoding="utf-8")) - 1
    if mode == "streamed":
        output = source.with_suffix(".out.csv")
        start = time.perf_counter()
        job = plan_file(source, output, overwrite=True, settings=prediction_settings(adapter))
        classifier = Classifier(adapter)
        loaded = time.perf_counter()
        for _ in run_file(job, classifier, progress=False):
            pass
    else:
        start = time.perf_counter()
        texts = pd.read_csv(source, keep_default_na=False, dtype={"text": str})["text"].tolist()
        classifier = Classifier(adapter)
        loaded = time.perf_counter()
        score(classifier.model, classifier.tokenizer, texts, progress=False)
    seconds = time.perf_counter() - loaded
    return {"mode": mode, "rows": rows, "tweets_per_s": round(rows / seconds, 2), "seconds": round(seconds, 1),
            "seconds_with_loading": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak_rss_mb())}


def predict_at_scale(profile: str, sizes: tuple[int, ...], data_dir: str | None) -> list[dict]:
    """Streamed `predict` against in-memory `score` on the first size's rows, then streamed `predict`'s peak memory on
    every size; each measurement in a fresh process (peak RSS is per process)."""
    adapter = smoke_adapter(data_dir) if profile == "smoke" else SHIPPED_ADAPTER
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as scratch:
        plans = [("in-memory", sizes[0]), ("streamed", sizes[0])] + [("streamed", n) for n in sizes[1:]]
        for mode, rows in plans:
            source = Path(scratch) / f"corpus-{rows}.csv"
            if not source.exists():
                corpus(rows, data_dir, source)
            out = Path(scratch) / f"{mode}-{rows}.json"
            command = [sys.executable, "-m", "bench", "predict-worker", "--adapter", str(adapter), "--source",
                       str(source), "--mode", mode, "--json", str(out)]
            subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)
            results.append(json.loads(out.read_text()))
    base, smallest = results[0], results[1]
    for result in results:
        result["rate_to_in_memory"] = round(result["tweets_per_s"] / base["tweets_per_s"], 3)
        result["rss_to_smallest_streamed"] = round(result["peak_rss_mb"] / smallest["peak_rss_mb"], 3)
    return results


def peers(sample: int, data_dir: str | None, seed: int, threads: int | None) -> list[dict]:
    """hwlib's `score` against llama.cpp on the same seeded test tweets and the same Q4_1 GGUF weights of SmolLM2:
    llama.cpp keeps the shared system prompt in its KV cache and evaluates each tweet's own tokens, then reads the
    three labels' logits after `... message as` (the base model: no adapter on either side)."""
    try:
        import llama_cpp
    except ImportError:
        raise SystemExit("llama.cpp is not installed: `pip install llama-cpp-python diskcache` compiles it from source "
                         "(about 6 minutes on 2 cores; not a requirement of the course), then run this again")
    import numpy as np

    from hwlib.config import EvalConfig
    from hwlib.evaluate import encode_for_scoring, evaluation_rows, score, shared_prefix_length
    from hwlib.models import _fetch_smollm2_gguf, load_model

    rows = evaluation_rows(EvalConfig(split="test", limit=sample, seed=seed), data_dir)
    texts = rows["text"].tolist()
    model, tokenizer = load_model("smollm2-135m", quantize=None)
    start = time.perf_counter()
    ours, _ = score(model, tokenizer, texts, progress=False)
    hwlib_rate = len(texts) / (time.perf_counter() - start)

    encoded = encode_for_scoring(tokenizer, texts)
    prefix = shared_prefix_length(encoded)
    llm = llama_cpp.Llama(model_path=str(_fetch_smollm2_gguf()), n_ctx=512, n_batch=512, logits_all=False,
                          n_threads=threads or os.cpu_count(), verbose=False)
    llm.eval(encoded[0].context[:prefix])
    cached = llm.n_tokens
    labels = [[c[0] for c in e.candidates] for e in encoded]
    theirs = []
    start = time.perf_counter()
    vocabulary = llm.n_vocab()
    for item, candidates in zip(encoded, labels):
        llm.n_tokens = cached  # keep the shared prefix; `eval` drops the previous tweet's tokens from the cache
        llm.eval(item.context[prefix:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocabulary,))  # the last position's
        theirs.append(int(np.argmax([logits[t] for t in candidates])))
    llama_rate = len(texts) / (time.perf_counter() - start)
    from hwlib.data import LABELS

    agreement = float(np.mean([LABELS[i] == label for i, label in zip(theirs, ours)]))
    return [{"engine": "hwlib score (torch, dequantized Q4_1, shared prefix)", "tweets_per_s": round(hwlib_rate, 2),
             "ratio_to_llama_cpp": round(hwlib_rate / llama_rate, 2), "agreement": 1.0},
            {"engine": f"llama.cpp {llama_cpp.__version__} (same GGUF, prefix in its KV cache)",
             "tweets_per_s": round(llama_rate, 2), "ratio_to_llama_cpp": 1.0, "agreement": round(agreement, 4)}]


# ---------------------------------------------------------------- matmul

def matmul_seconds(tokens: int, k: int, n: int, dtype, repeats: int, warm_up: int = 10) -> float:
    """Seconds for one (tokens x k) @ (k x n) product in `dtype`, averaged over `repeats` after a warm-up (the first
    calls pick kernels and fault in memory)."""
    import torch

    a, b = torch.randn(tokens, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    for _ in range(warm_up):
        a @ b.T
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b.T
    return (time.perf_counter() - start) / repeats


def matmul(tokens: int = 1080, repeats: int = 50) -> list[dict]:
    """GFLOP/s of bf16 and fp32 matmuls at the model's projection shapes (a training batch: 12 x ~90 tokens)."""
    import torch

    from hwlib.models import load_model

    shapes = sorted({(m.in_features, m.out_features) for m in load_model("smollm2-135m", None)[0].modules()
                     if isinstance(m, torch.nn.Linear) and m.out_features < 10_000})
    results = []
    for k, n in shapes:
        row = {"shape": f"{tokens}x{k} @ {k}x{n}"}
        for dtype in (torch.bfloat16, torch.float32):
            seconds = matmul_seconds(tokens, k, n, dtype, repeats)
            row[f"{str(dtype).removeprefix('torch.')}_gflops"] = round(2 * tokens * k * n / seconds / 1e9)
        results.append(row)
    return results


# ---------------------------------------------------------------- command line

def print_table(results: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in results)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for result in results:
        print("  ".join(str(result.get(c, "")).ljust(widths[c]) for c in columns))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {"inference": "inference speed, side by side", "training": "training speed, side by side",
             "peak-share": "score's speed as a share of the fp32 matmul limit, repeated",
             "predict": "streamed predict on a file against in-memory score, and its peak memory on two sizes",
             "peers": "hwlib's score against llama.cpp on the same tweets and GGUF weights"}
    for name, text in helps.items():
        command = commands.add_parser(name, help=text)
        command.add_argument("--profile", choices=sorted(DEFAULTS), default="smoke",
                             help="smoke: tiny-random, proves the harness works; cpu: SmolLM2-135M, the figures")
        command.add_argument("--data-dir", default=os.environ.get("HWLIB_DATA_DIR"))
        command.add_argument("--seed", type=int, default=42)
        command.add_argument("--output", type=Path, help="also write the results as JSON here")
    commands.choices["inference"].add_argument("--sample", type=int, help="test tweets (default: 24 smoke, 256 cpu)")
    commands.choices["peak-share"].add_argument("--sample", type=int, help="test tweets (default: 24 smoke, 1024 cpu)")
    commands.choices["peak-share"].add_argument("--repeats", type=int, help="timings of each (default: 1 smoke, 3 cpu)")
    for name in ("inference", "peak-share"):
        commands.choices[name].add_argument("--adapter", type=Path,
                                            help="adapter folder (default: the shipped cpu adapter on cpu)")
    commands.choices["training"].add_argument("--steps", type=int, help="steps per variant (default: 2 smoke, 8 cpu)")
    commands.choices["training"].add_argument("--variants", default=",".join(VARIANTS),
                                              help=f"comma-separated, ratios to the first (default {','.join(VARIANTS)})")
    commands.choices["predict"].add_argument("--sizes", default="20000,200000",
                                             help="corpus rows, comma-separated (default 20000,200000)")
    commands.choices["peers"].add_argument("--sample", type=int, default=512, help="test tweets (default 512)")
    commands.choices["peers"].add_argument("--threads", type=int, help="llama.cpp threads (default: every core)")
    commands.add_parser("matmul", help="bf16 vs fp32 matmul speed at SmolLM2-135M's shapes (chooses the CPU dtype)")
    predict_worker_command = commands.add_parser("predict-worker", help=argparse.SUPPRESS)
    predict_worker_command.add_argument("--adapter", type=Path, required=True)
    predict_worker_command.add_argument("--source", type=Path, required=True)
    predict_worker_command.add_argument("--mode", choices=("streamed", "in-memory"), required=True)
    predict_worker_command.add_argument("--json", type=Path, required=True)
    worker = commands.add_parser("training-worker", help=argparse.SUPPRESS)
    worker.add_argument("--variant", choices=VARIANTS, required=True)
    worker.add_argument("--profile", required=True)
    worker.add_argument("--steps", type=int, required=True)
    worker.add_argument("--data-dir")
    worker.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "training-worker":
        write_json(args.json, training_worker(args.variant, args.profile, args.steps, args.data_dir, args.json.parent))
        return
    if args.command == "predict-worker":
        write_json(args.json, predict_worker(args.adapter, args.source, args.mode))
        return
    if args.command == "matmul":
        results = matmul()
        print_table(results, ["shape", "bfloat16_gflops", "float32_gflops"])
        return
    defaults = DEFAULTS[args.profile]
    if args.command == "predict":
        sizes = tuple(int(v) for v in args.sizes.split(",") if v.strip())
        results = predict_at_scale(args.profile, sizes, args.data_dir)
        print_table(results, ["mode", "rows", "tweets_per_s", "rate_to_in_memory", "peak_rss_mb",
                              "rss_to_smallest_streamed", "seconds"])
    elif args.command == "peers":
        results = peers(args.sample, args.data_dir, args.seed, args.threads)
        print_table(results, ["engine", "tweets_per_s", "ratio_to_llama_cpp", "agreement"])
    elif args.command == "inference":
        results = inference(args.profile, args.sample or defaults["sample"], args.adapter, args.data_dir, args.seed)
        print_table(results, ["method", "tweets_per_s", "ratio_to_a", "share_of_peak", "macro_f1", "agreement_with_a",
                              "peak_rss_mb"])
    elif args.command == "peak-share":
        results = peak_share(args.profile, args.sample or defaults["share_sample"], args.adapter, args.data_dir,
                             args.seed, args.repeats or defaults["repeats"])
        print_table(results[:-1], PEAK_SHARE_COLUMNS)
        print("time shares by operator:", results[-1]["time_shares"])
    else:
        variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown or not variants:
            parser.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}")
        results = training(args.profile, args.steps or defaults["steps"], args.data_dir, variants)
        print_table(results, ["variant", "examples_per_s", "ratio", "s_per_step", "minor_faults_per_s",
                              "peak_rss_mb", "final_loss", "activation_checkpointing", "compute_dtype"])
        print("losses per step:", {r["variant"]: r["losses"] for r in results})
    if args.profile == "smoke":
        print("(smoke: a tiny random model; these figures prove the harness runs, not speed or quality)")
    if args.output:
        write_json(args.output, {"command": " ".join(["python -m bench", *sys.argv[1:]]), "machine": machine(),
                                 "results": results})


if __name__ == "__main__":
    main()
