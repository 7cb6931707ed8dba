"""Writes the four notebooks' cells (without outputs): `python tools/make_notebooks.py`.

`python tools/make_notebooks.py --strip notebooks/*.ipynb` removes progress bars from executed notebooks.

Edit the lessons here, regenerate, then execute them (`jupyter nbconvert --execute --inplace`) so the committed
files carry the outputs of a real run. Keeping the cells in one script keeps the four parameter cells identical.
"""
import sys
from pathlib import Path

import nbformat as nbf
from nbformat.v4 import new_notebook, new_markdown_cell as md, new_code_cell as code

REPO = "your-org/tweet-sentiment-qlora"

def badge(name):
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name})")

COLAB = code('''# NBVAL_SKIP
import sys

if "google.colab" in sys.modules:  # Colab only: install this repository and its requirements
    !git clone -q https://github.com/''' + REPO + '''.git /content/repo
    !pip install -q -r /content/repo/requirements.txt -e /content/repo
    %cd /content/repo/notebooks''')

PARAMS = code('''import os
from pathlib import Path

from hwlib.config import default_profile, eval_config, train_config

PROFILE = os.environ.get("HWLIB_PROFILE") or default_profile()  # smoke | cpu | cpu-card | gpu
RUN_DIR = Path("..") / "runs" / PROFILE  # shared by notebooks 03 and 04
config = train_config(PROFILE, output_dir=str(RUN_DIR))
print(PROFILE, config.model)''')

def notebook(name, title, intro, cells):
    nb = new_notebook()
    nb.cells = [md(f"# {title}\n\n{badge(name)}\n\n{intro}"), COLAB, PARAMS, *cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, Path(__file__).resolve().parent.parent / "notebooks" / name)

def strip_progress(path: Path) -> None:
    """Drop stderr streams (progress bars, library warnings) from an executed notebook's outputs."""
    nb = nbf.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nbf.write(nb, path)


if len(sys.argv) > 1 and sys.argv[1] == "--strip":  # after `jupyter nbconvert --execute --inplace`
    for name in sys.argv[2:]:
        strip_progress(Path(name))
    sys.exit(0)

notebook("01_data_inspection.ipynb", "01 · Data inspection",
"TweetEval `sentiment` (SemEval-2017 Task 4A): tweets labelled negative, neutral or positive. "
"This notebook looks at what the model will learn from: split sizes, class balance, lengths, duplicates. "
"Data comes from `$HWLIB_DATA_DIR` when set, else from the Hugging Face Hub.", [
    code('''from hwlib.data import LABELS, load_splits, split_summary  # first import of datasets/tqdm: warnings land here'''),
    code('''# NBVAL_CHECK_OUTPUT
print(LABELS)'''),
    code('''splits = load_splits()
split_summary(splits)'''),
    md("The classes are unbalanced, and differently so in each split: `test` has far more negatives and fewer "
       "positives than `train`. A model that copies the training prior will be off on test."),
    code('''import matplotlib.pyplot as plt
import seaborn as sns

from hwlib.data import plot_class_balance

sns.set_theme(style="whitegrid")
plot_class_balance(splits);'''),
    md("## Lengths\n\nCharacters per tweet, and tokens per full training conversation (system prompt, "
       "message, answer) with the profile's tokenizer: this sets `max_length` and the cost of each example."),
    code('''import pandas as pd

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
lengths.describe().round(1)'''),
    code('''fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
sns.histplot(lengths, x="characters", hue="label", hue_order=LABELS, element="step", ax=axes[0])
sns.histplot(lengths, x="tokens", hue="label", hue_order=LABELS, element="step", ax=axes[1])
fig.tight_layout()'''),
    md("## Examples per class"),
    code('''from hwlib.data import examples_per_class

pd.set_option("display.max_colwidth", 160)
examples_per_class(splits["train"], per_class=3)'''),
    md("## Duplicates\n\nRepeated tweets inflate some patterns; tweets shared between train and test would leak answers."),
    code('''from hwlib.data import duplicate_report

duplicate_report(splits)'''),
    md("## What the imbalance means for macro-F1\n\nAccuracy rewards predicting the majority class; macro-F1 "
       "averages the F1 of the three classes, so a model must get negatives and positives right too. "
       "TweetEval's official metric for this task is macro-recall. A constant `neutral` predictor on test:"),
    code('''from hwlib.metrics import compute_metrics

y_true = splits["test"]["label"]
majority = compute_metrics(y_true, ["neutral"] * len(y_true))
{k: round(majority[k], 3) for k in ("accuracy", "macro_f1", "macro_recall")}'''),
])

notebook("02_prompt_construction.ipynb", "02 · Prompt construction",
"The model card's prompt, as every model sees it: a system prompt, the message as the user turn, and a fixed "
"answer sentence. The chat template of each model turns these turns into text.", [
    code('''# NBVAL_CHECK_OUTPUT
from hwlib.prompts import SYSTEM_PROMPT, USER_TEMPLATE, ANSWER_TEMPLATE

print(SYSTEM_PROMPT)
print(USER_TEMPLATE)
print(ANSWER_TEMPLATE)'''),
    md("## One training example\n\nTRL's conversational prompt/completion format: the loss falls on the completion only."),
    code('''# NBVAL_CHECK_OUTPUT
from hwlib.prompts import build_example

build_example("Just got tickets for the show tonight!", "positive")'''),
    md("## Rendered by chat templates\n\nChatML (SmolLM2, Lite-Oute), the Zephyr style of TinyLlama, and the "
       "fallback for a template that rejects a `system` turn: its text opens the user turn instead."),
    code('''from copy import deepcopy

from hwlib.models import load_tokenizer
from hwlib.prompts import ZEPHYR_TEMPLATE, render_transcript

tokenizer = load_tokenizer(config.model)
message = "Just got tickets for the show tonight!"'''),
    code('''# NBVAL_CHECK_OUTPUT
print(render_transcript(tokenizer, message, "positive"))'''),
    code('''# NBVAL_CHECK_OUTPUT
zephyr = deepcopy(tokenizer)
zephyr.chat_template = ZEPHYR_TEMPLATE
print(render_transcript(zephyr, message, "positive"))'''),
    code('''# NBVAL_CHECK_OUTPUT
no_system = deepcopy(tokenizer)
no_system.chat_template = ZEPHYR_TEMPLATE.replace("{% for message", "{% if messages[0]['role'] == 'system' %}"
                                                  "{{ raise_exception('System role not supported') }}{% endif %}"
                                                  "{% for message")
print(render_transcript(no_system, message, "positive"))'''),
    md("## Where the tokens go\n\nThe system prompt is the same for every tweet and costs about as much as the "
       "tweet itself; `hwlib.evaluate.score` computes its keys and values once and reuses them."),
    code('''from hwlib.prompts import token_counts

token_counts(tokenizer, message, "positive")'''),
    md("## Reading the label back\n\nThe card's `postprocess_sentiment` split the output at the first 'assistant' "
       "and kept the part *before* it. On a whole transcript that part is the prompt, not the reply. "
       "Ours keeps the card's name and contract but reads the reply after the last marker."),
    code('''# NBVAL_CHECK_OUTPUT
from hwlib.postprocess import card_postprocess_sentiment, postprocess_sentiment

transcript = render_transcript(tokenizer, "ignore the negative reviews, great film", "positive")
print("card's code:", repr(card_postprocess_sentiment(transcript)))
print("ours:       ", repr(postprocess_sentiment(transcript)))'''),
    md("## Zero-shot, before any training\n\nThe base model's greedy replies to a few validation messages "
       "(the card's method: generate, then extract the label)."),
    code('''import pandas as pd

from hwlib.data import ID2LABEL, load_split
from hwlib.evaluate import generate
from hwlib.models import load_model

pd.set_option("display.max_colwidth", 120)
model, tokenizer = load_model(config.model, config.quantize)
messages = load_split("validation").select(range(4))
labels, raw = generate(model, tokenizer, messages["text"], progress=False)
pd.DataFrame({"message": messages["text"], "correct": [ID2LABEL[y] for y in messages["label"]],
              "model output": raw, "extracted": labels})'''),
])

notebook("03_qlora_sft.ipynb", "03 · QLoRA fine-tuning with TRL",
"The card's recipe: the base model's weights frozen in 4-bit NF4 (bitsandbytes), LoRA adapters on `k_proj` and "
"`v_proj` of every attention layer, TRL's `SFTTrainer`, one epoch. The `cpu-card` profile keeps the card's "
"learning rate and batch size; the `cpu` profile changes the learning rate and schedule, chosen on the validation "
"split (`python -m hwlib search`). The table below is the configuration this notebook runs. "
"The run folder is shared with notebook 04. If it already holds a finished run (for example from "
"`python -m hwlib run`), this notebook shows that run instead of training again.", [
    code('''import pandas as pd

pd.Series(config.to_dict()).to_frame("value")'''),
    md("## 4-bit base weights"),
    code('''from hwlib.models import quantization_config

bnb = quantization_config(config.quantize)  # imports bitsandbytes: its CPU-kernel notice lands here'''),
    code('''# NBVAL_CHECK_OUTPUT
print(bnb.bnb_4bit_quant_type, bnb.bnb_4bit_use_double_quant, bnb.load_in_4bit)'''),
    md("## LoRA on `k_proj` and `v_proj` only"),
    code('''# NBVAL_CHECK_OUTPUT
from hwlib.train import lora_config

lora = lora_config(config)
print(sorted(lora.target_modules))'''),
    code('''print(f"r={lora.r}, alpha={lora.lora_alpha}, dropout={lora.lora_dropout}")'''),
    md("Each adapted module of shape `in × out` gets `r · (in + out)` trainable weights; everything else is frozen."),
    code('''from hwlib.train import build_trainer, trainable_parameters

trainer = build_trainer(config)
layers = trainer.model.base_model.model.model.layers
formula = sum(config.lora_r * (m.in_features + m.out_features)
              for layer in layers for m in (layer.self_attn.k_proj, layer.self_attn.v_proj))
counted = trainable_parameters(trainer.model)["trainable"]
assert counted == formula
print(f"{counted:,} trainable parameters = r * (in + out) summed over {2 * len(layers)} modules")'''),
    md("The loss is computed on the answer only: prompt tokens are labelled -100."),
    code('''# NBVAL_CHECK_OUTPUT
import re

tokenizer = trainer.processing_class
batch = trainer.data_collator([trainer.train_dataset[0]])
labels = batch["labels"][0]
learned = tokenizer.decode(labels[labels != -100])
print(repr(re.sub("negative|neutral|positive", "[label]", learned)))  # the same for every example'''),
    md("## Train\n\nSettings for this hardware: no activation checkpointing (a small model does not need it), "
       "the compute dtype from `hwlib.config.compute_dtype()` (bf16 on CUDA and on CPUs with AMX, else fp32: "
       "`python -m bench matmul` shows why), batches grouped by length. Interrupted? Run the cell "
       "again: it resumes from the last checkpoint."),
    code('''from hwlib.train import read_run, train_or_load

del trainer  # free the model built for inspection
run_dir = train_or_load(config)
record = read_run(run_dir)
{**{k: record[k] for k in ("examples", "steps", "final_loss", "wall_time_s", "examples_per_s")},
 "compute_dtype": record["hardware"]["compute_dtype"]}'''),
    code('''import json

from hwlib.train import LOSS_HISTORY, plot_loss

plot_loss(json.loads((run_dir / LOSS_HISTORY).read_text()));'''),
    md("## The saved adapter\n\nA few MB next to a frozen base model: loadable with plain "
       "`peft.AutoPeftModelForCausalLM.from_pretrained(run_dir)` when the base is available, or "
       "`hwlib.models.load_adapter(run_dir)`."),
    code('''sorted(p.name for p in run_dir.iterdir() if p.is_file())'''),
])

notebook("04_evaluation.ipynb", "04 · Evaluation",
"Before vs after fine-tuning, on the test split: `score` compares the three labels' log-probabilities after "
"the answer prefix (always a label, one forward pass); the card's method generates the answer and extracts the "
"label with `postprocess_sentiment` (on a seeded sample, it is slower). The table also holds the fine-tuned "
"model after calibration on validation and, outside the smoke profile, a TF-IDF + logistic-regression baseline. "
"Predictions use the merged model (the NF4 weights dequantized, the adapter folded in: the same model, faster "
"on a CPU). Evaluations already in the run folder "
"are reused.", [
    code('''from IPython.display import Image, Markdown, display

from hwlib.card import metrics_table, per_class_table
from hwlib.pipeline import COMPARISON_PNG, evaluate_run

evaluation = eval_config(PROFILE)
folders = evaluate_run(RUN_DIR, evaluation, progress=False)
display(Markdown(metrics_table(folders)))'''),
    md("## Per class, after fine-tuning"),
    code('''from hwlib.evaluate import read_metrics

after, before = read_metrics(folders["fine-tuned"]), read_metrics(folders["base (zero-shot)"])
display(Markdown(per_class_table(after)))'''),
    md("## Confusion matrices (row-normalised), before and after"),
    code('''Image(filename=str(RUN_DIR / COMPARISON_PNG))'''),
    md("## Examples in the card's format"),
    code('''import json

import pandas as pd

from hwlib.evaluate import EXAMPLES

pd.set_option("display.max_colwidth", 120)
pd.DataFrame(json.loads((folders["fine-tuned, card's method"] / EXAMPLES).read_text()))'''),
    md("## Calibration, fitted on validation\n\nA constant added to each label's log-probability moves the "
       "decision boundaries; the offsets that maximise macro-F1 on the validation split are applied to test "
       "unchanged (the `fine-tuned, calibrated` row above)."),
    code('''read_metrics(folders["fine-tuned, calibrated"])["offsets"]'''),
    md("## `generate` vs `score` on the same tweets"),
    code('''from hwlib.evaluate import method_agreement

method_agreement(folders["fine-tuned, card's method"], folders["fine-tuned"])'''),
    md("## The model card\n\nWritten from the run's files by `hwlib.card.write_card`."),
    code('''display(Markdown((RUN_DIR / "README.md").read_text().split("---", 2)[2]))'''),
])
