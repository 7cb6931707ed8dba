"""Scores data/probes/messages.csv (non-English and sarcastic messages) with the shipped `cpu` adapter.

    python tools/probe_messages.py

Prints, per group (each language, sarcasm): messages, how many got the reader's label, and the predicted labels'
counts; how many of the group py3langid calls non-English; and the share of TweetEval's (English) test tweets it calls
non-English, which sets `hwlib.predict.NOT_ENGLISH_SHARE`. docs/predict.md quotes it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hwlib.config import compute_dtype, dtype_name, machine
from hwlib.data import load_split
from hwlib.predict import Classifier, count_languages

PROBES = Path(__file__).resolve().parent.parent / "data" / "probes" / "messages.csv"


def main() -> None:
    messages = pd.read_csv(PROBES)
    labelled = Classifier("smollm2-135m-cpu")(messages.drop(columns="label"))
    messages["predicted"] = labelled["predicted"].to_numpy()
    rows = []
    for (kind, language), group in messages.groupby(["kind", "language"], sort=False):
        counts = group["predicted"].value_counts()
        found = count_languages(group["text"].tolist())
        rows.append({"group": kind if kind == "sarcasm" else language, "messages": len(group),
                     "right": int((group["predicted"] == group["label"]).sum()),
                     **{label: int(counts.get(label, 0)) for label in ("negative", "neutral", "positive")},
                     "called_non_english": sum(found.values()) - found.get("en", 0)})
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    print("\n".join("| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows))
    english = count_languages(load_split("test")["text"])
    print(f"\nTweetEval test tweets py3langid calls non-English: {1 - english['en'] / sum(english.values()):.1%} "
          f"(most: {', '.join(f'{k} {v}' for k, v in english.most_common(3) if k != 'en')})")
    print(f"{dtype_name(compute_dtype())}, {machine()['processor']}")


if __name__ == "__main__":
    main()
