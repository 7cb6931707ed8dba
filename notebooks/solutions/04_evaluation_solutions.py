# %% [markdown]
# # 04 · Solutions to the exercises
#
# Worked solutions for lesson 04's exercises, in order. Try each exercise before opening its solution; each starts
# with a hint. With the shipped adapter the whole-split figures are read back from its folder; exercise 5 compares
# the two 600-tweet runs that exercise 1 of lesson 03's solutions trains. Every figure is printed by code.
# %%
# NBVAL_SKIP
# Colab only: each notebook is its own runtime, so this one sets itself up as the lessons do. Elsewhere: nothing.
import os
import sys

if "google.colab" in sys.modules:
    import runpy

    if not os.path.isdir("/content/course"):
        raise SystemExit("Open the lesson first and run its set-up cell in this runtime (it clones the course to "
                         "/content/course), then run this cell again.")
    runpy.run_path("/content/course/tools/colab_install.py")["install"]("/content/course")
    os.chdir("/content/course/notebooks/solutions")

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from hwlib.config import default_profile, train_config

PROFILE = os.environ.get("HWLIB_PROFILE") or default_profile()
RUNS = Path("..") / ".." / "runs"  # the lessons' runs folder (on Google Drive, use the lessons' RUNS here too)
config = train_config(PROFILE, output_dir=str(RUNS / PROFILE))
print(f"profile {PROFILE!r}, model {config.model!r}")

# %%
import numpy as np

from hwlib.card import metrics_table
from hwlib.config import eval_config
from hwlib.data import LABELS
from hwlib.evaluate import PREDICTIONS, read_metrics
from hwlib.pipeline import evaluate_one
from hwlib.train import lesson_run

run = lesson_run(config)
run_dir, config = run.folder, run.config
print(run.how)

# %% [markdown]
# ## 1. The whole split (★)
#
# *Hint:* the whole split is `limit=None`, which is what the profile's own evaluation settings say on `cpu` and the
# GPU profiles (`eval_config(PROFILE)`; on `smoke`, 24 tweets stand in); `evaluate_one` reads back an evaluation
# already in the run folder.

# %%
import time

whole = eval_config(PROFILE)
started = time.perf_counter()
folder = evaluate_one(run_dir, "adapter", whole)
seconds = time.perf_counter() - started
display(Markdown(metrics_table({"fine-tuned, whole test split": folder})))
display(Markdown(f"Obtained in {seconds:.0f} s: " + ("read back from the run folder." if seconds < 5 else
                                                    f"scored now, {read_metrics(folder)['tweets_per_s']:.0f} tweets/s.")))

# %% [markdown]
# ## 2. Mislabelled test tweets (★★)
#
# *Hint:* sort the wrong predictions by the probability of the predicted label; read before you look at the labels.
# The shipped run keeps only the metrics of its whole-split evaluations, so the predictions come from the lesson's
# seeded 200-tweet sample (read back if lesson 04 ran in this folder, else scored now: seconds on a CPU).

# %%
sample = eval_config(PROFILE, limit=200, generate_limit=200)  # lesson 04's sample
predictions = pd.read_csv(evaluate_one(run_dir, "adapter", sample) / PREDICTIONS, keep_default_na=False)
predictions["confidence"] = predictions[[f"p_{name}" for name in LABELS]].max(axis=1)
wrong = predictions[predictions["predicted"] != predictions["gold"]].sort_values("confidence", ascending=False)
pd.set_option("display.max_colwidth", 140)
wrong[["text", "gold", "predicted", "confidence"]].head(30)

# %% [markdown]
# Mark each row where you side with the model. If you side with it on *k* of 30, then about k/30 of the confident
# mistakes are label noise; the error rate of the least confident mistakes is a different mix (try the tail too).
#
# ## 3. Calibrate on test (and see why not) (★★)
#
# *Hint:* `hwlib.calibration.log_probs` turns a predictions table into scores; `fit_offsets` searches the offsets.

# %%
from dataclasses import replace

from hwlib.calibration import apply_offsets, fit_offsets, log_probs
from hwlib.metrics import compute_metrics

test_scores, gold = log_probs(predictions), predictions["gold"].tolist()
on_test = fit_offsets(test_scores, gold)
validation = pd.read_csv(evaluate_one(run_dir, "adapter", replace(sample, split="validation")) / PREDICTIONS,
                         keep_default_na=False)  # lesson 04's step 3
on_validation = fit_offsets(log_probs(validation), validation["gold"].tolist())
scores = {name: compute_metrics(gold, apply_offsets(test_scores, offsets))["macro_f1"]
          for name, offsets in (("none", (0, 0, 0)), ("fitted on validation", on_validation),
                                ("fitted on test", on_test))}
display(Markdown(f"Test macro-F1 on the {len(gold)} sample tweets with offsets "
                 + "; ".join(f"{k}: {v:.4f}" for k, v in scores.items())
                 + f". Offsets fitted on test: {on_test}; on validation: {on_validation}."))

# %% [markdown]
# Offsets fitted on test score higher on test by construction: they were chosen by looking at the answers. That
# figure is an upper bound on what calibration could do, not a result; reporting it would be tuning on the test split.
#
# ## 4. Your own prompt at inference (★★)
#
# *Hint:* `hwlib.prompts.SYSTEM_PROMPT` is read each time a prompt is built; replace it for one call with
# `unittest.mock.patch.object`.

# %%
from unittest import mock

import hwlib.prompts
from hwlib.data import load_split
from hwlib.evaluate import score
from hwlib.models import load_adapter

model, tokenizer = load_adapter(run_dir, merged=True)
sample = load_split("test").shuffle(seed=0).select(range(100))
results = {}
for name, prompt in (("the card's prompt", hwlib.prompts.SYSTEM_PROMPT), ("a short prompt", "Classify the sentiment.")):
    with mock.patch.object(hwlib.prompts, "SYSTEM_PROMPT", prompt):
        predicted, _ = score(model, tokenizer, sample["text"], progress=False)
    results[name] = compute_metrics(sample["label"], predicted)["macro_f1"]
display(Markdown("Macro-F1 on 100 test tweets: " + "; ".join(f"{k} {v:.3f}" for k, v in results.items()) + "."))

# %% [markdown]
# The adapter was trained with one exact prompt; another one moves the inputs away from everything it saw. On 100
# tweets a difference of a few points is within noise: widen the sample before concluding.
#
# ## 5. Your adapter (★★)
#
# *Hint:* compare on the whole validation split, runs trained on as many tweets, and against the seed spread at that
# size: only a gap beyond two deviations is a difference.

# %%
import json

from hwlib.evaluate import read_metrics
from hwlib.runs import shipped_adapter

mine = {"r=4, 600 tweets": RUNS / "r4", f"the profile's r={config.lora_r}, 600 tweets": RUNS / "lr-profile-600"}
missing = [name for name, folder in mine.items() if not (folder / "run_config.json").is_file()]
if missing:
    display(Markdown(f"Not trained yet: {', '.join(missing)}. Lesson 03's solutions (exercise 1) train both on the "
                     "same 600 tweets; run them first."))
else:
    on_validation_split = {name: evaluate_one(folder, "adapter", eval_config(PROFILE, split="validation"))
                           for name, folder in mine.items()}
    display(Markdown(metrics_table(on_validation_split)))
    rows = [r for r in json.loads((shipped_adapter("cpu") / "curve.json").read_text())["rows"]
            if r["train_rows"] == 600 and r["sampling"] == "balanced" and r["adapter"] == "k_proj,v_proj"]
    spread = np.std([r["validation_macro_f1"] for r in rows], ddof=1)
    scores = [read_metrics(folder)["macro_f1"] for folder in on_validation_split.values()]
    gap = scores[1] - scores[0]
    display(Markdown(
        f"Both runs saw the same 600 tweets; only the rank differs. The learning curve's seed spread at 600 tweets is "
        f"{spread:.4f} macro-F1 ({len(rows)} seeds, SmolLM2, whole validation split). The gap, {gap:+.4f}, is "
        f"{abs(gap) / spread:.1f} deviations: "
        + ("within two, so not evidence either way." if abs(gap) <= 2 * spread else "beyond two: a difference.")))
