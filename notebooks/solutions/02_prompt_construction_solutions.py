# %% [markdown]
# # 02 · Solutions to the exercises
#
# Worked solutions for lesson 02's exercises, in order. Try each exercise before opening its solution; each starts
# with a hint. They run on any profile (`smoke` in CI); the sentences that depend on the model are printed by code.
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
from hwlib.data import load_split
from hwlib.models import load_model
from hwlib.prompts import SYSTEM_PROMPT, build_messages

MODEL = config.model if config.model != "tinyllama-1.1b" else "smollm2-135m"  # as in lesson 02
model, tokenizer = load_model(MODEL, config.quantize)
tweets = load_split("validation").select(range(10))

# %% [markdown]
# ## 1. Another prompt (★)
#
# *Hint:* count the tokens of the system prompt alone, then of the whole rendered prompt, for both prompts.

# %%
short = "Classify the sentiment."


def prompt_tokens(system: str) -> int:
    messages = [{"role": "system", "content": system}, build_messages(tweets[0]["text"])[-1]]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])


system_tokens = {p: len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in (SYSTEM_PROMPT, short)}
display(Markdown(
    f"The card's system prompt is {system_tokens[SYSTEM_PROMPT]} tokens, the short one {system_tokens[short]} "
    f"(1/{system_tokens[SYSTEM_PROMPT] / system_tokens[short]:.0f}); whole prompts {prompt_tokens(SYSTEM_PROMPT)} and "
    f"{prompt_tokens(short)} tokens. The short prompt no longer names the three labels or the one-word answer."))

# %% [markdown]
# ## 2. Break the template (★★)
#
# *Hint:* render with `add_generation_prompt=False`, generate greedily, decode only the new tokens, extract.

# %%
import torch

from hwlib.postprocess import card_postprocess_sentiment, postprocess_sentiment


def generate_greedily(text: str, generation_prompt: bool = True, system: str = SYSTEM_PROMPT) -> tuple[str, str]:
    """The whole decoded output (prompt included, as `model.generate` returns it) and the reply alone."""
    messages = [{"role": "system", "content": system}, build_messages(text)[-1]]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, return_tensors="pt",
                                        return_dict=True)["input_ids"].to(model.device)
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return (tokenizer.decode(generated[0], skip_special_tokens=True),
            tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True))


def replies(generation_prompt: bool) -> list[str]:
    return [generate_greedily(text, generation_prompt)[1] for text in tweets["text"]]


both = pd.DataFrame({"opened assistant turn": replies(True), "no generation prompt": replies(False)})
found = {column: sum(postprocess_sentiment(r) != "" for r in both[column]) for column in both}
display(both)
self_opened = sum(r.startswith("assistant") for r in both["no generation prompt"])
same_text = sum(b.removeprefix("assistant").strip() == a.strip() for a, b in zip(both["opened assistant turn"],
                                                                             both["no generation prompt"]))
display(Markdown(f"A label is extracted from {found['opened assistant turn']} of {len(both)} replies with "
                 f"`add_generation_prompt=True` and {found['no generation prompt']} of {len(both)} without it. "
                 f"Without the flag, {self_opened} of {len(both)} replies start with `assistant`: the model opened "
                 f"the turn itself; {same_text} of {len(both)} are then, word for word, the reply to the opened "
                 "turn (replies are cut at 16 tokens, so the role marker can push the end of a long one out)."))

# %% [markdown]
# The flag did not decide whether the model answers: a model trained on chat transcripts, as SmolLM2 is, usually
# opens the assistant's turn when the prompt leaves it closed (on `smoke` the random model does neither). It decides
# *where* the answer starts. With the flag that place is fixed by the template; without it, by the model, one role
# marker later, or not at all if it opens another user turn. Code that reads the answer from a fixed position, like
# lesson 04's label scoring, needs the flag.
#
# ## 3. Find the bug yourself (★★)
#
# *Hint:* decode the *whole* output, prompt included, as `model.generate` returns it.

# %%
def transcripts(system: str) -> list[str]:
    return [card_postprocess_sentiment(generate_greedily(text, system=system)[0]) for text in tweets["text"]]


with_assistant = transcripts(SYSTEM_PROMPT)
without = transcripts(SYSTEM_PROMPT.replace("a helpful assistant", "a helpful system"))
display(Markdown(f"The card's function on ten whole transcripts: {sorted(set(with_assistant))}; with "
                 f"\"helpful assistant\" removed from the system prompt: {sorted(set(without))}."))

# %% [markdown]
# With the word "assistant" in the system prompt the split keeps only "You are a helpful", which names no label.
# Without it, the first "assistant" is the reply's role marker and the kept text is the whole prompt, whose first
# label word is its own "'negative'", the same answer for every tweet.
#
# ## 4. Token cost (★)
#
# *Hint:* `token_counts` takes any text; find the longest tweet in tokens with one batched tokenizer call.

# %%
import numpy as np

from hwlib.prompts import token_counts

train = load_split("train")
tweet_tokens = [len(ids) for ids in tokenizer(list(train["text"]), add_special_tokens=False)["input_ids"]]
longest = train[int(np.argmax(tweet_tokens))]["text"]  # the prompt is the same for every tweet
counts = token_counts(tokenizer, longest, "neutral")
display(Markdown(f"The longest training tweet's conversation: {counts['total']} tokens, of which the system prompt "
                 f"and chat markup are {counts['system prompt'] + counts['chat markup']} "
                 f"({(counts['system prompt'] + counts['chat markup']) / counts['total']:.0%})."))
