# %% [markdown]
# # 01 · Solutions to the exercises
#
# Worked solutions for lesson 01's exercises, in order. Try each exercise before opening its solution; each starts
# with a hint. They run on any profile (`smoke` in CI); the sentences that depend on the data are printed by code.
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

# %% [markdown]
# ## 1. Class balance of a sample (★)
#
# *Hint:* `subsample` returns a `datasets.Dataset`; `hwlib.data.class_counts` counts its labels.

# %%
from hwlib.data import class_counts, load_splits, subsample

splits = load_splits()
train = splits["train"]
counts = {sampling: class_counts(subsample(train, 3000, sampling)) for sampling in ("balanced", "stratified")}
counts["whole train split, scaled to 3,000"] = {k: round(v * 3000 / train.num_rows)
                                                for k, v in class_counts(train).items()}
pd.DataFrame(counts).T

# %% [markdown]
# Balanced gives 1,000 per class; stratified keeps train's shares, which the last row shows for comparison.
#
# ## 2. The prior experiment (★)
#
# *Hint:* the lesson's classifier is a confusion matrix whose rows are fixed by `recall`; only the class shares
# change between the two rows of its table.

# %%
import numpy as np

from hwlib.data import LABELS, split_summary

summary = split_summary(splits)


def under_prior(recall: np.ndarray, shares: np.ndarray) -> dict:
    errors = (1 - recall)[:, None] / 2 * (1 - np.eye(3))
    joint = (np.diag(recall) + errors) * shares[:, None]  # P(true = i, predicted = j)
    precision = joint.diagonal() / joint.sum(axis=0)
    return {"accuracy": joint.trace(), "macro-recall": recall.mean(),
            "macro-F1": (2 * precision * recall / (precision + recall)).mean()}


recall = np.array([0.9, 0.5, 0.7])
table = pd.DataFrame({split: under_prior(recall, summary.loc[split, list(LABELS)].to_numpy(float))
                      for split in ("train", "test")}).T.round(3)
table

# %%
display(Markdown(f"Accuracy goes from {table.loc['train', 'accuracy']:.3f} (train's prior) to "
                 f"{table.loc['test', 'accuracy']:.3f} (test's); macro-recall stays "
                 f"{table.loc['test', 'macro-recall']:.3f}: the classifier is good at the class test has more of."))

# %% [markdown]
# ## 3. Mislabelled tweets (★★)
#
# *Hint:* there is no code answer: read each tweet before its label, decide, then compare.

# %%
pd.set_option("display.max_colwidth", 160)
sample = splits["test"].shuffle(seed=1).select(range(20))
pd.DataFrame({"text": sample["text"], "label": [LABELS[y] for y in sample["label"]]})

# %% [markdown]
# Most disagreements fall between neutral and one of the others: a tweet that mentions an event with a mild
# colour can be read either way. Count yours: a few in twenty is the noise ceiling lesson 01 talks about.
#
# ## 4. Longest tweets (★)
#
# *Hint:* the prompt adds the same tokens to every tweet, so the longest tweets in tokens make the longest
# conversations; tokenize all tweets in one batched call, then render the top five as the model sees them.

# %%
from hwlib.models import load_tokenizer
from hwlib.prompts import render_transcript

tokenizer = load_tokenizer(config.model)
tweet_tokens = [len(ids) for ids in tokenizer(list(train["text"]), add_special_tokens=False)["input_ids"]]
longest = [int(i) for i in np.argsort(tweet_tokens)[::-1][:5]]
conversation = [len(tokenizer(render_transcript(tokenizer, train[i]["text"], LABELS[train[i]["label"]]))["input_ids"])
                for i in longest]
pd.DataFrame({"tweet tokens": [tweet_tokens[i] for i in longest], "conversation tokens": conversation,
              "text": [train[i]["text"] for i in longest]})

# %%
import re

escapes = [len(re.findall(r"\\u[0-9a-fA-F]{4}", train[i]["text"])) for i in longest]
escape_tokens = len(tokenizer("\\u002c", add_special_tokens=False)["input_ids"])
display(Markdown(f"The longest training conversation has {max(conversation)} tokens, against `max_length` "
                 f"{config.max_length}. {sum(n > 0 for n in escapes)} of the five tweets hold escape sequences "
                 f"such as `\\u002c` ({sum(escapes)} in all), left in the stored text where the writer typed a comma "
                 f"or an apostrophe; the tokenizer cuts `\\u002c` into {escape_tokens} tokens where a typed comma "
                 "would be one, so part of their length in tokens comes from how they were stored."))

# %% [markdown]
# ## 5. Near-duplicates (★★)
#
# *Hint:* normalise before comparing: lower case, no links, no @-mentions, single spaces.

# %%
import re


def normalised(text: str) -> str:
    return " ".join(re.sub(r"https?://\S+|@\w+", " ", text.lower()).split())


exact = set(t.strip() for t in train["text"]) & set(t.strip() for t in splits["test"]["text"])
train_keys = {normalised(t) for t in train["text"]}
near = [t for t in splits["test"]["text"] if normalised(t) and normalised(t) in train_keys]
display(Markdown(f"Test tweets found in train: {len(exact)} exactly, {len(near)} after normalising "
                 f"({len(near) / splits['test'].num_rows:.2%} of test)."))
