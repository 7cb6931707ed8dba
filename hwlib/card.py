"""The model card (README.md in the adapter folder), written from the run's own files: no number typed by hand."""

from __future__ import annotations

import inspect
from pathlib import Path

from .config import PACKAGE_PARENT
from .data import LABELS
from .evaluate import EXAMPLES, read_metrics
from .files import read_json, write_text
from .metrics import recorded_interval
from .models import PRESETS
from .postprocess import postprocess_sentiment
from .prompts import ANSWER_TEMPLATE, SYSTEM_PROMPT, USER_TEMPLATE
from .runs import METRICS, RUN_CONFIG, read_run


def _pct(value: float) -> str:
    return f"{value:.4f}"


def _dtype_note(parameters: dict) -> str:
    """Runs recorded before hwlib kept fp32 adapter weights have no dtype: say nothing rather than guess."""
    dtype = parameters.get("trainable_dtype")
    return f" (held in {dtype} during training)" if dtype else ""


def metrics_table(evaluations: dict[str, str | Path]) -> str:
    """A Markdown table of macro-F1, macro-recall, accuracy and invalid rate for titled evaluation folders."""
    lines = ["| model | method | split (rows) | macro-F1 | macro-recall | accuracy | invalid | tweets/s | macro-F1 95% |",
             "|---|---|---|---|---|---|---|---|---|"]
    sources = []
    for title, folder in evaluations.items():
        m = read_metrics(folder)
        source = m.get("data_source", "not recorded")
        sources += [] if source in sources else [source]
        speed = f"{m['tweets_per_s']:.1f}" if m.get("tweets_per_s") else "–"
        interval = recorded_interval(m)
        spread = f"{interval[0]:.3f}–{interval[1]:.3f}" if interval else "–"
        lines.append(f"| {title} | {m['method']} | {m['split']} ({m['rows']:,}) | {_pct(m['macro_f1'])} | "
                     f"{_pct(m['macro_recall'])} | {_pct(m['accuracy'])} | {_pct(m['invalid_rate'])} | {speed} | "
                     f"{spread} |")
    return ("\n".join(lines) + f"\n\nData read from: {'; '.join(sources)}. Last column: bootstrap 95% interval of "
            "macro-F1 (1,000 resamples of the rows), how far another sample of as many tweets could move it.")


def per_class_table(metrics: dict) -> str:
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name in LABELS:
        c = metrics["per_class"][name]
        lines.append(f"| {name} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {c['support']:,} |")
    return "\n".join(lines)


def examples_table(folder: str | Path) -> str:
    rows = read_json(Path(folder) / EXAMPLES)
    output = "raw_output" if rows and "raw_output" in rows[0] else "predicted"
    lines = [f"| message | correct | model output |", "|---|---|---|"]
    for row in rows:
        text = row["text"].replace("|", "\\|").replace("\n", " ")
        said = str(row[output]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {text} | {row['gold']} | {said} |")
    return "\n".join(lines)


def _from_repository_root(folder: Path) -> str:
    """The folder as a path from the repository root (where the README's commands run), else as absolute."""
    try:
        return folder.resolve().relative_to(PACKAGE_PARENT).as_posix()
    except ValueError:
        return folder.resolve().as_posix()


CARD = "README.md"


def write_card(run_dir: str | Path, evaluations: dict[str, str | Path], headline: str,
               examples_from: str | Path, confusion_png: str = "confusion_before_after.png") -> Path:
    """Write `run_dir/README.md`: recipe, prompt, label extraction, training record, metrics, examples."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    config = run["config"]
    main = read_metrics(evaluations[headline])
    preset = PRESETS.get(config["model"])
    base = f"`{config['model']}`" + (f" ({preset.about}; source `{preset.source}`)" if preset else "")
    quant = "4-bit NF4 with double quantization (bitsandbytes), QLoRA" if config["quantize"] == "nf4" else "none"
    hardware = run["hardware"]
    text = f"""---
library_name: peft
tags: [sentiment-analysis, tweet_eval, qlora, lora, trl, sft]
datasets: [cardiffnlp/tweet_eval]
---

# Tweet sentiment adapter ({config['profile']} profile)

A LoRA adapter that makes a small chat model classify a tweet as {', '.join(LABELS)}.
Written by `hwlib.card.write_card` from this folder's `{RUN_CONFIG}` and the evaluation `{METRICS}` files.

## Result

**macro-F1 {_pct(main['macro_f1'])}**, macro-recall {_pct(main['macro_recall'])} (TweetEval's official metric),
accuracy {_pct(main['accuracy'])} on the `{main['split']}` split ({main['rows']:,} tweets), method `{main['method']}`.

{metrics_table(evaluations)}

Per class ({headline}):

{per_class_table(main)}

![confusion matrices]({confusion_png})

## Model

- Base model: {base}
- Quantization of the base: {quant}
- Adapted: LoRA on `{'`, `'.join(config['target_modules'])}` of every attention layer, nothing else;
  r={config['lora_r']}, alpha={config['lora_alpha']}, dropout={config['lora_dropout']};
  {run['parameters']['trainable']:,} trainable parameters{_dtype_note(run['parameters'])}.

## Prompt

System prompt: `{SYSTEM_PROMPT}`

User turn: `{USER_TEMPLATE.format(text='[text of the message]')}`

Assistant answer: `{ANSWER_TEMPLATE.format(label='[label]')}`

Label extraction for generated text (the card's function with its bug fixed: it reads the reply after the
*last* "assistant" marker, not the text before the first):

```python
{inspect.getsource(postprocess_sentiment).strip()}
```

The `score` method instead compares the log-probabilities of the three labels after
`Classifying the sentiment of the message as`, so it always returns a label.

## Training

- Data: `cardiffnlp/tweet_eval`, config `sentiment`, read from {run.get('data_source', 'a source this run did not record')};
  train split: {run['examples']:,} examples
  ({', '.join(f'{k} {v:,}' for k, v in run['examples_per_class'].items())}; sampling `{config['sampling']}`,
  seed {config['seed']}).
- TRL `SFTTrainer`, loss on the answer tokens only (end-of-turn token included); {config['epochs']:g} epoch,
  learning rate {config['learning_rate']:g} ({config['lr_scheduler']} schedule), batch size {config['batch_size']},
  max length {config['max_length']}; {run['steps']} steps.
- Final logged training loss {run['final_loss']:.4f}; wall time {run['wall_time_s'] / 60:.1f} min
  ({run['examples_per_s']:.2f} examples/s) on {hardware['device']} ({hardware['cpu']}, {hardware['threads']} threads,
  {hardware['compute_dtype']} compute{', ' + hardware['gpu'] if 'gpu' in hardware else ''}).
- Libraries: {', '.join(f'{k} {v}' for k, v in run['versions'].items())}.

![loss curve](loss_curve.png)

## Examples

{examples_table(examples_from)}

## Use

```bash
python -m hwlib predict --adapter {_from_repository_root(run_dir)} "I love this song!"
```
"""
    return write_text(run_dir / CARD, text)
