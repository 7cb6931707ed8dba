"""Predictions and reports: the card's `generate` + regex, and constrained label scoring (`score`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .config import EvalConfig, HwlibError, compute_dtype, dtype_name, machine
from .data import ID2LABEL, LABELS, data_source, load_split, sample_indices
from .files import atomic_path, read_json, write_json
from .metrics import bootstrap_interval, compute_metrics, save_confusion_png
from .postprocess import postprocess_sentiment
from .prompts import (answer, build_example, ensure_chat_template, render_prompt, render_transcript, protected_strings,
                      supports_system_role)
from .runs import EXAMPLES, METRICS, PREDICTIONS

log = logging.getLogger(__name__)

METHODS = ("score", "generate")
CONFUSION = {False: "confusion_counts.png", True: "confusion_normalised.png"}


class EvalError(HwlibError, ValueError):
    """Bad evaluation input: the message names it and the fix."""


@dataclass
class Encoded:
    """One message ready for scoring: the tokens before the label and each label's own tokens."""

    context: list[int]
    candidates: tuple[list[int], ...]


EMPTY = "empty"  # the outcome reported for an empty message with `empty="report"` (never a label)


def _rows(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:10]))
    return shown + (f" and {len(indices) - 10} more" if len(indices) > 10 else "")


def check_texts(texts, empty: str = "refuse", rows: list | None = None) -> list[str]:
    """The messages as a list of strings; empty or whitespace-only ones are refused (or allowed, `empty="report"`).
    `rows`: the numbers errors name the messages by (the CLI's `row` column); default their positions from 0."""
    texts = list(texts)
    if not texts:
        raise EvalError("no texts to classify: pass at least one message")
    rows = list(range(len(texts))) if rows is None else list(rows)
    not_text = [rows[i] for i, t in enumerate(texts) if not isinstance(t, str)]
    if not_text:
        first = texts[rows.index(not_text[0])]
        raise EvalError(f"message(s) at row {_rows(not_text)} are not text ({type(first).__name__}): "
                        "pass strings (decode bytes first)")
    blank = [rows[i] for i, t in enumerate(texts) if not t.strip()]
    if blank and empty != "report":
        refuse_blank(blank)
    return texts


def refuse_blank(rows: list) -> None:
    """The one error for empty messages, naming their rows."""
    raise EvalError(f"{len(rows)} empty or whitespace-only message(s) at row {_rows(rows)}: remove them, or "
                    f"report them as {EMPTY!r} (--allow-empty; empty=\"report\" in Python)")


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise EvalError(f"batch size must be a positive number of messages (got {batch_size!r})")


def truncate_messages(tokenizer, texts: list[str], max_length: int, rows: list | None = None) -> list[str]:
    """Messages cut so that prompt + message + answer fit in `max_length` tokens (the training length); a warning
    counts the messages that were cut, naming them by `rows` (default their positions from 0). Beyond it the model
    was never trained, and far beyond it lies its context."""
    overhead = len(tokenizer(render_transcript(tokenizer, "", LABELS[-1]), add_special_tokens=False)["input_ids"])
    room = max_length - overhead
    if room < 1:
        raise EvalError(f"max_length {max_length} leaves no room for a message (the prompt alone takes {overhead} "
                        "tokens): raise it")
    rows = list(range(len(texts))) if rows is None else list(rows)
    cut, out = [], []
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > room:
            cut.append(rows[i])
            text = tokenizer.decode(ids[:room])
        out.append(text)
    if cut:
        log.warning("%d message(s) longer than %d tokens were truncated to fit max_length=%d (rows %s)",
                    len(cut), room, max_length, _rows(cut))
    return out


def encode_for_scoring(tokenizer, texts: list[str]) -> list[Encoded]:
    """Tokenize each message's three full transcripts; where they diverge is where the label starts.

    This reproduces training's tokenization exactly (the whole conversation through the chat template), so a
    label that splits into several tokens, or merges with its neighbours, is still scored correctly.
    """
    ensure_chat_template(tokenizer)
    system_role, specials = supports_system_role(tokenizer), protected_strings(tokenizer)
    encoded = []
    for text in texts:
        example = build_example(text, LABELS[0], system_role, specials)
        ids = []
        for label in LABELS:
            example["completion"][0]["content"] = answer(label)
            rendered = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
            ids.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        start = _common_prefix(ids)
        tails = [seq[start:] for seq in ids]
        end = _common_prefix([tail[::-1] for tail in tails])
        encoded.append(Encoded(ids[0][:start], tuple(tail[: len(tail) - end] for tail in tails)))
    return encoded


def _common_prefix(sequences: list[list[int]]) -> int:
    length = min(len(s) for s in sequences)
    for i in range(length):
        if any(s[i] != sequences[0][i] for s in sequences[1:]):
            return i
    return length


def shared_prefix_length(encoded: list[Encoded]) -> int:
    """Tokens every context starts with (the system prompt and chat markup), keeping ≥ 1 token per message."""
    contexts = [e.context for e in encoded]
    return min(_common_prefix(contexts), min(len(c) for c in contexts) - 1)


# First characters of every kind a message can start with: a letter, a digit, a mention, a hashtag, quotes, a space,
# an accent, an emoji. The quote before a message can merge with punctuation after it ('"@' is one token), so the
# prefix shared by all messages ends where these probes' contexts part.
PREFIX_PROBES = ("a", "A", "1", "@user", "#tag", '"', "'", " a", "é", "\u2764", "\U0001F600", "-", "\n")


def prompt_prefix(tokenizer) -> list[int]:
    """The tokens every message's context starts with, from the chat template alone (system prompt and markup up to
    the message): the same for every batch, so a message's scores never depend on which messages came with it."""
    contexts = [e.context for e in encode_for_scoring(tokenizer, list(PREFIX_PROBES))]
    return contexts[0][: min(_common_prefix(contexts), min(len(c) for c in contexts) - 1)]


def scoring_batches(encoded: list[Encoded], batch_size: int, sort_by_length: bool = True) -> list[list[int]]:
    """The messages' indices cut into batches: in order of context length (ties by position) when `sort_by_length`,
    so a batch pads little. A function of the messages alone: the same messages always make the same batches."""
    order = list(range(len(encoded)))
    if sort_by_length:
        order.sort(key=lambda i: len(encoded[i].context))
    return list(_batches(order, batch_size))


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.inference_mode()
def score(model, tokenizer, texts, batch_size: int = 32, prefix_cache: bool = True, sort_by_length: bool = True,
          label_head: bool = True, progress: bool = True, bar=None,
          share: tuple[int, int] = (0, 1)) -> tuple[list[str | None], np.ndarray]:
    """Label and label probabilities per message from one forward pass over prompt + answer prefix.

    The three answers differ only in the label, so the model is run up to `...message as` and the label's
    log-probability is read from the last position (multi-token labels: from their last positions).
    Speed-ups: the chat template's prompt is computed once and its keys and values shared by every message
    (`prefix_cache`); messages of similar length are batched together (`sort_by_length`); only the needed positions'
    logits are computed, and for one-token labels only the label tokens' logits (`label_head`). Each can be switched
    off to measure it. `bar`: a tqdm bar to advance instead of a bar of its own (a file labelled in chunks shows one
    bar). `share=(k, n)`: score only every n-th batch from the k-th (one process's share); the others' rows come back
    with the label None and NaN probabilities.
    """
    texts = check_texts(texts)
    _check_batch_size(batch_size)
    from .head import classify, is_classifier

    if is_classifier(model):  # the classification-head variant: its three logits are the label scores
        return classify(model, tokenizer, texts, batch_size, progress, bar, share)
    encoded = encode_for_scoring(tokenizer, texts)
    prefix = prompt_prefix(tokenizer) if prefix_cache else []
    device = next(model.parameters()).device
    cache = _prefix_cache(model, prefix, device) if prefix else None
    batches = scoring_batches(encoded, batch_size, sort_by_length)[share[0] :: share[1]]
    log_probs = np.full((len(texts), len(LABELS)), np.nan)
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=sum(map(len, batches)), desc="score", unit="tweet", disable=not progress, mininterval=2)
    for batch in batches:
        items = [encoded[i] for i in batch]
        shared = cache is not None and all(e.context[: len(prefix)] == prefix and len(e.context) > len(prefix)
                                           for e in items)
        log_probs[batch] = _score_batch(model, items, len(prefix) if shared else 0, cache if shared else None,
                                        device, tokenizer, label_head)
        bar.update(len(batch))
    if own_bar:
        bar.close()
    scored = [i for batch in batches for i in batch]
    broken = [i for i in scored if not np.isfinite(log_probs[i]).all()]
    if broken:
        raise EvalError(f"the model gave NaN or infinite label scores for {len(broken)} message(s) (row "
                        f"{_rows(broken)}): its weights may be corrupted, or half precision overflowed; retry with "
                        "HWLIB_COMPUTE_DTYPE=float32")
    probs = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return [None if np.isnan(p).any() else ID2LABEL[int(p.argmax())] for p in probs], probs


def _prefix_cache(model, prefix_ids: list[int], device):
    out = model(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True)
    return [(layer[0], layer[1]) for layer in out.cache]


def _score_batch(model, batch: list[Encoded], prefix: int, cache, device, tokenizer, label_head: bool) -> np.ndarray:
    """Each label's summed token log-probabilities for a batch of messages (up to a per-message constant)."""
    from transformers import DynamicCache

    longest = max(len(c) for e in batch for c in e.candidates)
    if longest == 1:  # the usual case: one row per message, the label read at its last position
        rows = [e.context[prefix:] for e in batch]
    else:  # one row per message and label, the label's leading tokens appended
        rows = [e.context[prefix:] + c[:-1] for e in batch for c in e.candidates]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    kwargs = {}
    if cache is not None:
        # Left padding sits between the cached prefix and each row, so positions continue from the prefix.
        kwargs["position_ids"] = prefix + (mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([mask.new_ones(len(rows), prefix), mask], dim=1)
        kwargs["cache"] = DynamicCache([(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1))
                                        for k, v in cache])
        kwargs["use_cache"] = True
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=mask, **kwargs).last_hidden_state
    hidden = hidden[:, -longest:].float()
    head = model.get_output_embeddings()
    scores = np.zeros((len(batch), len(LABELS)))
    if longest == 1 and label_head:
        # One position, so the softmax's normaliser is shared by the three labels and cancels when their
        # probabilities are renormalised: projecting onto the label tokens alone gives the same answer as
        # the 49k-token vocabulary, at a fraction of the cost.
        vocabulary = sorted({c[0] for e in batch for c in e.candidates})
        column = {token: k for k, token in enumerate(vocabulary)}
        picked = torch.tensor(vocabulary, device=device)
        bias = None if head.bias is None else head.bias[picked].float()
        logits = torch.nn.functional.linear(hidden[:, 0], head.weight[picked].float(), bias)
        for i, item in enumerate(batch):
            scores[i] = [logits[i, column[c[0]]].item() for c in item.candidates]
        return scores
    logits = torch.nn.functional.linear(hidden, head.weight.float(), None if head.bias is None else head.bias.float())
    token_log_probs = torch.log_softmax(logits, dim=-1)
    for i, item in enumerate(batch):
        for j, candidate in enumerate(item.candidates):
            row = i if longest == 1 else i * len(LABELS) + j
            positions = range(longest - len(candidate), longest)
            scores[i, j] = sum(token_log_probs[row, p, t].item() for p, t in zip(positions, candidate))
    return scores


@torch.inference_mode()
def generate(model, tokenizer, texts, batch_size: int = 16, max_new_tokens: int = 16,
             progress: bool = True) -> tuple[list[str], list[str]]:
    """The card's method: batched greedy decoding, then `postprocess_sentiment`; labels ("" if none) and raw text."""
    from .head import is_classifier

    if is_classifier(model):
        raise EvalError("a model with a classification head writes no text: evaluate it with method 'score'")
    texts = check_texts(texts)
    _check_batch_size(batch_size)
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    raw: list[str] = []
    bar = tqdm(total=len(texts), desc="generate", unit="tweet", disable=not progress, mininterval=2)
    for batch in _batches(list(range(len(texts))), batch_size):
        prompts = [render_prompt(tokenizer, texts[i]) for i in batch]
        enc = tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False).to(device)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        raw += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        bar.update(len(batch))
    bar.close()
    return [postprocess_sentiment(r) for r in raw], raw


def predict(model, tokenizer, texts, method: str = "score", batch_size: int = 32, max_new_tokens: int = 16,
            progress: bool = True, empty: str = "refuse", max_length: int | None = 256, rows: list | None = None,
            bar=None, share: tuple[int, int] = (0, 1)) -> pd.DataFrame:
    """A table of predictions: `predicted`, plus label probabilities (`score`) or raw output (`generate`).

    Empty messages are refused, or with `empty="report"` get the outcome "empty" (no label, no probabilities).
    Messages longer than `max_length` tokens with the prompt are truncated, with a warning (None: no limit).
    Errors and warnings name messages by `rows` (default their positions from 0); `bar`, `share`: see `score`.
    """
    if method not in METHODS:
        raise EvalError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    texts = check_texts(texts, empty, rows)
    rows = list(range(len(texts))) if rows is None else list(rows)
    _check_batch_size(batch_size)
    filled = [i for i, t in enumerate(texts) if t.strip()]
    table = pd.DataFrame({"text": texts, "predicted": EMPTY})
    if filled:
        inputs = [texts[i] for i in filled]
        if max_length is not None:
            inputs = truncate_messages(tokenizer, inputs, max_length, [rows[i] for i in filled])
        if method == "score":
            labels, probs = score(model, tokenizer, inputs, batch_size=batch_size, progress=progress, bar=bar,
                                  share=share)
            table.loc[filled, "predicted"] = labels
            for j, name in enumerate(LABELS):
                table[f"p_{name}"] = np.nan
                table.loc[filled, f"p_{name}"] = probs[:, j].round(6)
        else:
            labels, raw = generate(model, tokenizer, inputs, batch_size, max_new_tokens, progress=progress)
            table.loc[filled, "predicted"] = labels
            table["raw_output"] = ""
            table.loc[filled, "raw_output"] = raw
    return table


def evaluation_rows(config: EvalConfig, data_dir=None) -> pd.DataFrame:
    """The split's rows to evaluate: all of them, or a seeded stratified sample of `limit`."""
    if config.limit is not None and config.limit <= 0:
        raise EvalError(f"--limit must be a positive number of rows (got {config.limit}); leave it out for all rows")
    split = load_split(config.split, data_dir)
    frame = pd.DataFrame({"text": split["text"], "gold": [ID2LABEL[y] for y in split["label"]]})
    frame.insert(0, "row", range(len(frame)))
    if config.limit is not None and config.limit < len(frame):
        frame = frame.iloc[sample_indices(split["label"], config.limit, "stratified", config.seed)]
    return frame.reset_index(drop=True)


def evaluate(model, tokenizer, config: EvalConfig, output_dir: str | Path, model_name: str,
             adapter: str | None = None, data_dir=None, progress: bool = True) -> dict:
    """Predict a split, then write predictions.csv, metrics.json, examples.json and confusion PNGs."""
    output = Path(output_dir)
    rows = evaluation_rows(config, data_dir)
    start = time.perf_counter()
    table = predict(model, tokenizer, rows["text"].tolist(), config.method, config.batch_size,
                    config.max_new_tokens, progress, max_length=config.max_length)
    wall_time = time.perf_counter() - start
    table.insert(0, "row", rows["row"])
    table.insert(2, "gold", rows["gold"])
    with atomic_path(output / PREDICTIONS) as tmp:
        table.to_csv(tmp, index=False)
    metrics = compute_metrics(table["gold"].tolist(), table["predicted"].fillna("").tolist())
    metrics["bootstrap_95"] = bootstrap_interval(table["gold"].tolist(), table["predicted"].fillna("").tolist(),
                                                 seed=config.seed)
    metrics.update(method=config.method, split=config.split, limit=config.limit, seed=config.seed,
                   data_source=data_source(data_dir),
                   model=model_name, adapter=adapter,
                   weights=weights(model), compute_dtype=dtype_name(compute_dtype()), wall_time_s=round(wall_time, 2),
                   tweets_per_s=round(len(table) / wall_time, 3), machine=machine())
    write_json(output / EXAMPLES, examples(table, config.examples_per_class, config.seed))
    for normalised in (False, True):
        save_confusion_png({_title(metrics): metrics}, output / CONFUSION[normalised], normalised)
    write_json(output / METRICS, metrics)
    return metrics


def weights(model) -> str:
    """How the evaluated model held its weights: "4-bit" (bitsandbytes layers, as trained) or "dense" (merged)."""
    return "4-bit" if any(type(m).__name__ == "Linear4bit" for m in model.modules()) else "dense"


def _title(metrics: dict) -> str:
    who = "fine-tuned" if metrics.get("adapter") else "base (zero-shot)"
    return f"{who}, {metrics['method']}, {metrics['split']} ({metrics['rows']:,})"


def examples(table: pd.DataFrame, per_class: int, seed: int) -> list[dict]:
    """A fixed, seeded sample of rows per gold class, in the card's style (message, correct label, output)."""
    picked = []
    for label in LABELS:
        rows = table[table["gold"] == label]
        picked.append(rows.sample(n=min(per_class, len(rows)), random_state=seed))
    columns = [c for c in ("text", "gold", "predicted", "raw_output") if c in table]
    columns += [c for c in table.columns if c.startswith("p_")]
    return pd.concat(picked)[columns].fillna("").to_dict(orient="records")


def read_metrics(folder: str | Path) -> dict:
    path = Path(folder) / METRICS
    if not path.is_file():
        raise EvalError(f"{path} not found: run `python -m hwlib evaluate ... --output {folder}` first")
    return read_json(path)


def compare_png(folders: dict[str, str | Path], path: str | Path, normalised: bool = True) -> Path:
    """Confusion matrices of several evaluations side by side (e.g. before vs after fine-tuning)."""
    return save_confusion_png({title: read_metrics(f) for title, f in folders.items()}, path, normalised)


def method_agreement(generate_folder: str | Path, score_folder: str | Path) -> pd.DataFrame:
    """`generate` vs `score` on the rows both evaluated: macro-F1, invalid rate, speed, and how often they agree."""
    generated = pd.read_csv(Path(generate_folder) / PREDICTIONS, keep_default_na=False)
    scored = pd.read_csv(Path(score_folder) / PREDICTIONS, keep_default_na=False)
    both = generated.merge(scored[["row", "predicted"]], on="row", suffixes=("_generate", "_score"))
    rows = {}
    for method, folder in (("generate", generate_folder), ("score", score_folder)):
        m = compute_metrics(both["gold"].tolist(), both[f"predicted_{method}"].tolist())
        rows[method] = {"tweets": len(both), "macro_f1": round(m["macro_f1"], 4),
                        "invalid_rate": round(m["invalid_rate"], 4),
                        "tweets_per_s": read_metrics(folder)["tweets_per_s"]}
    table = pd.DataFrame(rows).T
    table["agreement"] = round(float((both["predicted_generate"] == both["predicted_score"]).mean()), 4)
    return table
