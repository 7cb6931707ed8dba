"""How much the compute dtype moves a label probability, on the real model (the shipped `cpu` adapter, merged).

    HWLIB_COMPUTE_DTYPE=bfloat16 python tools/half_precision.py --tweets 30 --neighbours 300

Two measurements, each on the first test tweets, in the dtype `hwlib.config.compute_dtype` gives (force it with
`HWLIB_COMPUTE_DTYPE`):

- `by_hand`: lesson 04's check. Each label's log-probability from three whole transcripts (one forward pass each)
  against `hwlib.evaluate.score` (the prompt's keys and values computed once, the rest after them): the largest gap
  in a probability, in the dtype's units in the last place of 1. `hwlib.config.agreement_tolerance` is set from it.
- `neighbours`: each tweet scored alone against the same tweets scored together (blocks sorted by length, batches of
  32): the largest gap in a probability and the labels that change, per 10,000 tweets. `predict` fixes the batches by
  the rows' positions in the file, so this never changes its output; it is what a different batching would do.

Prints one JSON object with the machine and the dtype.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hwlib.config import compute_dtype, dtype_name, machine
from hwlib.data import LABELS, load_split
from hwlib.evaluate import score
from hwlib.models import load_adapter
from hwlib.prompts import build_example
from hwlib.runs import shipped_adapter


def common_length(sequences: list[list[int]]) -> int:
    n = 0
    while all(len(s) > n for s in sequences) and len({s[n] for s in sequences}) == 1:
        n += 1
    return n


def by_hand(model, tokenizer, tweet: str) -> np.ndarray:
    """Lesson 04's computation: the three label probabilities from three whole transcripts."""
    transcripts = []
    for label in LABELS:
        example = build_example(tweet, label)
        rendered = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        transcripts.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    start, end = common_length(transcripts), common_length([t[::-1] for t in transcripts])
    scores = []
    with torch.no_grad():
        for ids in transcripts:
            log_probs = model(torch.tensor([ids], device=model.device)).logits[0].float().log_softmax(-1)
            scores.append(sum(log_probs[p - 1, ids[p]].item() for p in range(start, len(ids) - end)))
    return torch.tensor(scores).softmax(0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tweets", type=int, default=30, help="test tweets for the by-hand check")
    parser.add_argument("--neighbours", type=int, default=300, help="test tweets scored alone and together (0: skip)")
    args = parser.parse_args()
    model, tokenizer = load_adapter(shipped_adapter("cpu"), merged=True)
    eps = torch.finfo(compute_dtype()).eps
    texts = load_split("test")["text"]
    report = {"dtype": dtype_name(compute_dtype()), "eps": eps, "machine": machine()}

    started = time.perf_counter()
    gaps = [np.abs(score(model, tokenizer, [t], progress=False)[1][0] - by_hand(model, tokenizer, t)).max()
            for t in texts[: args.tweets]]
    report["by_hand"] = {"tweets": args.tweets, "largest_gap": float(max(gaps)), "mean_gap": float(np.mean(gaps)),
                         "largest_gap_in_eps": round(float(max(gaps)) / eps, 2),
                         "seconds": round(time.perf_counter() - started, 1)}

    if not args.neighbours:
        print(json.dumps(report, indent=2))
        return
    started = time.perf_counter()
    sample = texts[: args.neighbours]
    together_labels, together = score(model, tokenizer, sample, progress=False)
    alone = [score(model, tokenizer, [t], progress=False) for t in sample]
    alone_probs = np.stack([probs[0] for _, probs in alone])
    flips = sum(a[0][0] != b for a, b in zip(alone, together_labels))
    report["neighbours"] = {"tweets": len(sample), "largest_gap": float(np.abs(alone_probs - together).max()),
                            "rows_that_differ": int((np.abs(alone_probs - together).max(axis=1) > 0).sum()),
                            "label_flips": flips, "flips_per_10000": round(10000 * flips / len(sample), 1),
                            "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
