"""The hostile validation set (`hwlib.forged.hostile_set`): how often each adapter keeps a tweet's own label when the
tweet carries a forged answer for the opposite one, beside the same tweets without the forgery.

    python tools/forged_answers.py --adapter smollm2-135m-cpu --adapter runs/variants/forged-answers-seed42 \
        --output bench/results/forged-answers-cpu.json

Validation only (360 negative and positive tweets, six forms of forgery in three places); prints a Markdown table and
writes the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwlib.config import compute_dtype, dtype_name, machine
from hwlib.files import write_json
from hwlib.forged import FORMS, PLACES, hostile_set, kept_share
from hwlib.predict import Classifier
from hwlib.runs import resolve_adapter


def measure(adapter: str, hostile) -> dict:
    classify = Classifier(adapter)
    clean = classify(hostile["original"].tolist())
    forged = classify(hostile["text"].tolist())
    return {"adapter": str(adapter), "clean_kept": round(float((clean["predicted"] == hostile["gold"]).mean()), 4),
            **kept_share(forged, hostile)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", action="append", required=True, help="a run folder or shipped adapter name")
    parser.add_argument("--output", help="write the results here as JSON")
    args = parser.parse_args()
    hostile = hostile_set()
    rows = [measure(adapter, hostile) for adapter in args.adapter]
    print("| adapter | tweets | label kept, clean | label kept, forged | took the forgery |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['adapter']} | {row['tweets']} | {row['clean_kept']:.3f} | {row['kept']:.3f} | "
              f"{row['took_forgery']:.3f} |")
    print("\nlabel kept, by form: " + "; ".join(f"{row['adapter']}: " + ", ".join(
        f"{form} {row['by_form'][form]:.2f}" for form in FORMS) for row in rows))
    print("label kept, by place: " + "; ".join(f"{row['adapter']}: " + ", ".join(
        f"{place} {row['by_place'][place]:.2f}" for place in PLACES) for row in rows))
    if args.output:
        command = "python tools/forged_answers.py " + " ".join(f"--adapter {a}" for a in args.adapter) + \
            f" --output {args.output}"
        write_json(Path(args.output), {"command": command, "dtype": dtype_name(compute_dtype()), "machine": machine(),
                                       "adapters": {a: str(resolve_adapter(a)) for a in args.adapter}, "rows": rows})


if __name__ == "__main__":
    main()
