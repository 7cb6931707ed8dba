# %% [markdown]
# # 03 · QLoRA fine-tuning with TRL
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/your-org/tweet-sentiment-qlora/blob/main/notebooks/03_qlora_sft.ipynb)
#
# This lesson fine-tunes the chat model to answer with the card's sentence, the way the model card does it: the base
# model's weights frozen and stored in 4 bits (the *Q* of QLoRA), small trainable matrices added to two projections of
# every attention layer (*LoRA*), and supervised fine-tuning with TRL's `SFTTrainer`. We open each of these boxes on
# the real model before training.
#
# ## Learning objectives
#
# After this lesson you can:
#
# - quantize one block of real weights to NF4 by hand, check it against bitsandbytes, and say what double
#   quantization saves and what the rounding costs;
# - write LoRA's update `W x + (alpha / r) · B A x` and check it numerically against a real peft layer;
# - count the trainable parameters from the shapes, and explain why the card adapts only `k_proj` and `v_proj`;
# - read the `LoraConfig` and `SFTConfig` that training uses, field by field where they differ from the defaults;
# - show, token by token, which positions the loss is computed on (the `-100` mask);
# - read a loss curve and a learning-rate schedule.
#
# **What you need.** Lessons 01 and 02; basic PyTorch (tensors, `nn.Linear`, a training step). Time: with the shipped
# adapter (the default here), 44 s on a 2-core AVX-512 CPU and somewhat more on an AVX2-only one (the README's
# lessons table, measured with `python tools/notebooks.py execute cpu`). Training yourself (`TRAIN = True`) takes what the profile note printed
# below says: measured minutes for the CPU profiles, an *estimate* for the GPU ones. **Downloads:** with the shipped
# adapter, nothing beyond lesson 02's SmolLM2 wheel; `TRAIN = True` on a GPU profile fetches TinyLlama-1.1B
# (2.2 GB from the Hub, several minutes).
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
# ## Train now, or use the shipped adapter?
#
# Training is the slow part. The course ships the adapter that `python -m hwlib run --profile cpu` trained, with its
# training record and its evaluations, in `data/adapters/`. Leave `TRAIN = False` to study that run (about a minute);
# set `TRAIN = True` to train with `config` yourself (the Trainer's progress bar shows a live time estimate after the
# first steps). If the run folder already holds a finished run, it is reused, but only if it was trained with the same
# training settings (where files go, how often it logs or saves, and the speed-ups that do not change the loss are not
# compared); otherwise you get an error that lists the differences. `smoke` ships no adapter and trains in seconds;
# the GPU profiles (`gpu`, `gpu-card`) ship none either, and with `TRAIN = False` the lesson studies the `cpu`
# profile's shipped adapter instead (the line it prints says so).

# %%
TRAIN = False  # True: train now with `config`; False: reuse a finished run or the shipped adapter

from hwlib.train import lesson_run

run = lesson_run(config, train_now=TRAIN)
run_dir, config = run.folder, run.config  # config: the settings of the run studied here
print(f"run: {run_dir}\nobtained: {run.how}")

# %% [markdown]
# `obtained` says where the run came from; a shipped adapter is studied from a copy in `runs/` (the `-shipped` folder),
# so what this lesson writes never lands in the repository's `data/`. The settings of this run, as the typed
# configuration holds them: everything the training depends on is in this one object, and the profile changed a few
# fields from the card's defaults (`output_dir` and `profile` are bookkeeping, not recipe).

# %%
import pandas as pd

from hwlib.config import TrainConfig

defaults = TrainConfig()
pd.DataFrame([{"setting": name, "card default": getattr(defaults, name), "this run": value}
              for name, value in config.to_dict().items() if value != getattr(defaults, name)]).set_index("setting")

# %% [markdown]
# ## The Q: 4-bit NormalFloat weights
#
# A 135M-parameter model in 16-bit floats needs about 270 MB for its weights, a 1.1B one about 2.2 GB; gradients and
# optimizer state for all of them would need several times more. QLoRA (Dettmers et al., 2023) makes two moves. First,
# the base weights are **frozen**: no gradients or optimizer state for them. Second, they are stored in **4 bits**.
#
# The 4-bit format is *NormalFloat* (NF4). Weights are cut into blocks of 64. Each block is divided by its largest
# absolute value (its *absmax*), which maps it into [-1, 1], and each value is then replaced by the nearest of 16 fixed
# levels. The 16 levels are not evenly spaced: they are quantiles of a normal distribution, because trained weights
# are roughly normally distributed, so the levels follow the weights more closely than evenly spaced levels would. To compute, a layer multiplies each
# stored level by its block's absmax again (*dequantizes*) on the fly.
#
# Let us do it by hand on the first block of the first layer's `k_proj`, then check against bitsandbytes. (The
# SmolLM2 weights this course embeds are themselves a dequantized Q4_1 copy, so on the `cpu` profile the NF4 error
# below is measured against weights already rounded to 4 bits once; TinyLlama's come in bf16 from the Hub.)

# %%
import torch
from bitsandbytes.functional import dequantize_4bit, get_4bit_type, quantize_4bit

from hwlib.models import load_model

dense, _ = load_model(config.model, quantize=None)  # the same weights before quantization
weight = dense.model.layers[0].self_attn.k_proj.weight.detach().float()
levels = get_4bit_type("nf4", device=weight.device)  # on the model's device, CPU or GPU
print("the 16 NF4 levels:", [round(v, 4) for v in levels.tolist()])

# %%
block = weight.flatten()[:64]
absmax = block.abs().max()
codes = (block[None, :] / absmax - levels[:, None]).abs().argmin(dim=0)  # nearest level, a 4-bit number
by_hand = levels[codes] * absmax

packed, state = quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=False)
library = dequantize_4bit(packed, state, quant_type="nf4").flatten()[:64].float()
assert torch.allclose(by_hand, library, rtol=0, atol=1e-6 * absmax.item()), "NF4 by hand differs from bitsandbytes"
pd.DataFrame({"weight": block[:6].cpu(), "4-bit code": codes[:6].cpu(), "dequantized": by_hand[:6].cpu()}).round(5)

# %%
import matplotlib.pyplot as plt

blocks = weight.flatten()[: weight.numel() // 64 * 64].reshape(-1, 64)
scaled = (blocks / blocks.abs().max(dim=1, keepdim=True).values).flatten()
used = torch.bincount((scaled[:, None] - levels[None, :]).abs().argmin(dim=1), minlength=16)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].hist(scaled.cpu().numpy(), bins=200, density=True, color="0.6")
axes[0].vlines(levels.cpu().numpy(), 0, axes[0].get_ylim()[1], colors="C3", linewidth=0.8)
axes[0].set(title="k_proj weights / block absmax, and the 16 NF4 levels", xlabel="scaled weight")
axes[1].bar(range(16), (used / used.sum()).cpu().numpy())
axes[1].set(title="how often each 4-bit code is used", xlabel="code", ylabel="share")
fig.tight_layout()

# %%
from IPython.display import Markdown, display

share = used / used.sum()
display(Markdown(f"{int((used > 0).sum())} of the 16 codes are used on this matrix; the most used holds "
                 f"{share.max().item():.1%} of its weights, the least used {share.min().item():.1%} (an even use "
                 "would be 6.25% each)."))

# %% [markdown]
# The levels are dense near 0, where most weights are, and sparse in the tails. The use of the codes is still far
# from even (the line above), but the quantiles of a normal distribution follow the weights more closely than 16
# evenly spaced levels would (exercise 5 measures what that buys). Each block's largest weight lands exactly on -1
# or +1, so one of the two end codes gets a weight in every block: one weight in 64.
#
# The assertion above passed: our few lines reproduce bitsandbytes' NF4 on this block, to float rounding. Each weight
# became a 4-bit code (0 to 15); the block keeps one absmax, and a weight is restored as its code's level times that
# absmax.
#
# **Double quantization.** The absmax of each block is itself a 32-bit float: 32 bits per 64 weights, another half
# bit per weight. QLoRA's *double quantization* stores these absmax values in 8 bits, in blocks of 256 with their own
# 32-bit scale. The model `hwlib` trains uses it (`bnb_4bit_use_double_quant=True`). The next cell lists the bits
# per weight each format implies (the 4-bit codes plus its scales, by the arithmetic above), measures the rounding
# error of both variants on the whole matrix, and checks that the 4-bit model's layer holds exactly the
# double-quantized values. transformers quantizes the weights from the *compute dtype* (fp32 on most CPUs, bf16 or
# fp16 on GPUs and AMX CPUs: `hwlib.config.compute_dtype`), and bitsandbytes records that dtype and dequantizes back
# to it, so the check quantizes the same weights in the same dtype; an fp32 copy would round differently.

# %%
quantized, _ = load_model(config.model, config.quantize)  # what training uses: 4-bit NF4, double quantized
k_proj = quantized.model.layers[0].self_attn.k_proj
stored_dtype = k_proj.weight.quant_state.dtype  # the dtype the layer was quantized from and dequantizes to
packed2, state2 = quantize_4bit(weight.to(stored_dtype), blocksize=64, quant_type="nf4", compress_statistics=True)
double = dequantize_4bit(packed2, state2, quant_type="nf4")
stored = dequantize_4bit(k_proj.weight.data, k_proj.weight.quant_state)
assert torch.equal(stored, double), "the 4-bit model does not hold the double-quantized weights"
print(f"quantized from {stored_dtype}: the 4-bit layer holds exactly the double-quantized values")
double, single = double.float(), dequantize_4bit(packed, state, quant_type="nf4").float()


def relative_error(approx):
    return ((approx - weight).norm() / weight.norm()).item()


pd.DataFrame({
    "bits per weight": [16, 4 + 32 / 64, 4 + 8 / 64 + 32 / (64 * 256)],
    "relative error": [0.0, relative_error(single), relative_error(double)],
}, index=["bf16", "NF4", "NF4 + double quantization"]).round(4)

# %% [markdown]
# NF4 cuts the weights to about a quarter of their 16-bit size, and double quantization saves most of the remaining
# overhead, at a rounding error that barely changes (the two error figures are nearly equal). The error itself is
# not small, roughly a tenth of the weight matrix's norm, and this is the point of QLoRA's design: the frozen base is
# approximate, and the trainable adapter, kept in higher precision, learns on top of it (and can partly correct it).
#
# ## The LoRA: a low-rank update on `k_proj` and `v_proj`
#
# LoRA (Hu et al., 2021) leaves a weight matrix `W` (shape `out × in`) unchanged and adds a product of two thin
# matrices: `A` (`r × in`) and `B` (`out × r`), with a small rank `r`. A layer then computes
#
# `y = W x + (alpha / r) · B A x`
#
# `B` starts at zero, so training starts from the unchanged model. The factor `alpha / r` keeps the update's size
# from growing with `r` when `alpha` is held fixed; every profile of this course instead sets `alpha = 2r`, so the
# factor is 2 whatever the rank. Only `A` and `B` are trained.
#
# We check this formula against the run's trained adapter, on the first layer's `k_proj`, with a real input: the
# hidden states of a tweet's prompt as they enter that layer's attention (embeddings, then the layer's input norm).

# %%
from hwlib.models import load_adapter

tuned, tokenizer = load_adapter(run_dir)  # the 4-bit base with the trained adapter on top, in eval mode
lora_layer = tuned.base_model.model.model.layers[0].self_attn.k_proj
A, B = lora_layer.lora_A["default"].weight, lora_layer.lora_B["default"].weight
scale = lora_layer.scaling["default"]
assert scale == tuned.peft_config["default"].lora_alpha / tuned.peft_config["default"].r

from hwlib.prompts import render_prompt

prompt_ids = tokenizer(render_prompt(tokenizer, "I love this song!"), return_tensors="pt", add_special_tokens=False)
with torch.no_grad():
    hidden = tuned.get_input_embeddings()(prompt_ids["input_ids"].to(A.device))  # on the model's own device
    x = tuned.base_model.model.model.layers[0].input_layernorm(hidden).to(A.dtype)
    base = lora_layer.base_layer(x).float()
    update = scale * (x @ A.T @ B.T).float()
    layer_output = lora_layer(x).float()
assert torch.allclose(layer_output, base + update, rtol=1e-4, atol=1e-5), "W x + (alpha/r) B A x != peft's output"
print(f"A {tuple(A.shape)}, B {tuple(B.shape)}, alpha/r = {scale:g}; "
      f"|BAx| / |Wx| = {(update.norm() / base.norm()).item():.3f}")

# %% [markdown]
# peft's layer computes exactly `W x + (alpha/r) · B A x`. The last number is the size of the learned update
# relative to the frozen layer's output on this real input: the adapter corrects the keys, it does not replace them
# (on `smoke`, 4 steps from `B = 0`, it is close to zero).
#
# **Why only `k_proj` and `v_proj`?** In attention, each token's *query* is compared with every token's *key* to
# decide where to look, and the *values* are what is read from there. Adapting keys and values changes what the
# answer position can find in the tweet and what it reads from it, which is what classification needs. All other
# weights stay frozen, though not unaffected: the changed keys and values change each layer's output, and so the
# input of every later layer. It is also the cheapest choice: in grouped query attention (several query heads share
# one key/value head) models like SmolLM2 and TinyLlama, `k_proj` and `v_proj` are narrower than `q_proj` and
# `o_proj` (576 → 192 against 576 → 576 in SmolLM2).
# The card's authors made this choice; exercise 2 asks you to test a wider one.
#
# ## Counting trainable parameters
#
# Each adapted module `W` (`out × in`) gets `r · (in + out)` trainable numbers: `A` is `r × in`, `B` is `out × r`. We build the trainer that
# training uses and check that the count it reports is this formula summed over all adapted modules.

# %%
from hwlib.train import build_trainer, trainable_parameters

trainer = build_trainer(config)
layers = trainer.model.base_model.model.model.layers
formula = sum(config.lora_r * (m.in_features + m.out_features)
              for layer in layers for m in (layer.self_attn.k_proj, layer.self_attn.v_proj))
counted = trainable_parameters(trainer.model)
assert counted["trainable"] == formula
print(f"{counted['trainable']:,} trainable parameters = r * (in + out) over {2 * len(layers)} modules; "
      f"{counted['trainable'] / counted['total']:.2%} of the {counted['total']:,} stored parameters, "
      f"held in {counted['trainable_dtype']}")

# %% [markdown]
# Less than one percent of the stored parameters is trained (the share printed above). (4-bit weights are counted as stored, two per byte, so the total
# is smaller than the model's nominal size.) The adapter weights are kept in fp32 whatever the compute dtype: TRL
# stores a 4-bit model's adapter in bf16 (the QLoRA paper's choice), but a resumed run reloads it in fp32, and keeping
# fp32 from the start makes a resumed run identical to an uninterrupted one.
#
# ## TRL in plain sight: the four objects training uses
#
# In your own project you would write four objects: transformers' `BitsAndBytesConfig` (how the base is stored),
# peft's `LoraConfig` (where the adapter goes), TRL's `SFTConfig` (how to train) and TRL's `SFTTrainer` (which puts
# them together). `hwlib.train` builds exactly these from `config`; below we write them by hand, as you would, and
# assert that they equal hwlib's field by field.

# %%
from peft import LoraConfig
from transformers import BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

from hwlib.config import compute_dtype
from hwlib.models import quantization_config
from hwlib.runs import CHECKPOINTS
from hwlib.train import lora_config, sft_config

bnb_config = BitsAndBytesConfig(
    load_in_4bit=True, bnb_4bit_quant_type="nf4",  # NF4, the cell above
    bnb_4bit_use_double_quant=True,                # absmax values in 8 bits
    bnb_4bit_compute_dtype=compute_dtype(),        # dequantize to this dtype to compute (hwlib's device rule)
)
peft_config = LoraConfig(
    r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
    target_modules=list(config.target_modules),    # the card: ["k_proj", "v_proj"]
    task_type="CAUSAL_LM",
)
assert config.quantize != "nf4" or bnb_config.to_dict() == quantization_config(config.quantize).to_dict()
assert peft_config == lora_config(config)
print(f"compute dtype {compute_dtype()}; LoRA r={peft_config.r}, alpha={peft_config.lora_alpha} on "
      f"{sorted(peft_config.target_modules)}")

# %%
on_gpu = torch.cuda.is_available()
training_args = SFTConfig(
    output_dir=str(Path(config.output_dir) / CHECKPOINTS),  # checkpoints inside the run folder
    per_device_train_batch_size=config.batch_size, num_train_epochs=config.epochs, max_steps=config.max_steps,
    learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler,
    warmup_steps=config.warmup_ratio,          # below 1: a share of the steps
    max_length=config.max_length,
    completion_only_loss=True,                 # TRL's default (None) does this for prompt/completion rows too
    activation_checkpointing=False,            # TRL's default True saves memory a small model does not need
    bf16=compute_dtype() == torch.bfloat16, fp16=compute_dtype() == torch.float16,
    train_sampling_strategy="group_by_length", # batches of similar length pad less
    logging_steps=config.logging_steps, save_steps=config.save_steps, save_total_limit=2,
    seed=config.seed, data_seed=config.seed, report_to="none", disable_tqdm=False,
    use_cpu=not on_gpu, dataloader_pin_memory=on_gpu,
)
assert training_args.to_dict() == sft_config(config).to_dict(), "the SFTConfig by hand differs from hwlib's"

# %%
from hwlib.train import training_data, training_examples

student_model, _ = load_model(config.model, config.quantize, trainable=True)  # from_pretrained(quantization_config=bnb_config)
student_trainer = SFTTrainer(
    model=student_model, args=training_args, processing_class=tokenizer, peft_config=peft_config,
    train_dataset=training_examples(training_data(config), tokenizer),  # prompt/completion rows, lesson 02
)
mine = {name: tuple(p.shape) for name, p in student_trainer.model.named_parameters() if p.requires_grad}
hwlibs = {name: tuple(p.shape) for name, p in trainer.model.named_parameters() if p.requires_grad}
assert mine == hwlibs and student_trainer.train_dataset[0] == trainer.train_dataset[0]
assert type(trainer).__bases__ == (SFTTrainer,) and [n for n in vars(type(trainer)) if not n.startswith("__")] == [
    "compute_loss"], "hwlib's trainer is SFTTrainer with compute_loss replaced, nothing else"
held_by_trl = trainable_parameters(student_trainer.model)["trainable_dtype"]
print(f"same {len(mine)} trainable matrices, same tokenized rows; hwlib's trainer is "
      f"{type(trainer).__name__}({SFTTrainer.__name__}) with one method replaced: compute_loss; the adapter is "
      f"held in {held_by_trl} by TRL, in {trainable_parameters(trainer.model)['trainable_dtype']} by hwlib")
del student_trainer, student_model

# %% [markdown]
# Both trainers hold adapters of the same shapes on the same base and read the same tokenized rows. hwlib's differs
# in two ways: its class replaces `compute_loss` with one that computes the same loss faster (the optional box below:
# the shared prompt run once per batch, and the LM head, the final projection onto the vocabulary, computed only
# where the loss is), and it holds the adapter's weights in fp32 where TRL holds them in bf16 (the line above;
# `hwlib.train.cast_adapter`, and the paragraph above says why). To train with your own objects, build
# `student_trainer` again (the cell above deletes it to free memory) and call `student_trainer.train()`;
# `lesson_run` with `TRAIN = True` trains hwlib's trainer instead, with checkpoints, the run record and the resume
# rules.
#
# Why each setting differs from the library's default, as `hwlib.train.changed_settings` lists them (values that
# only differ in spelling, an enum and its string, are not listed):

# %%
from hwlib.train import changed_settings

pd.set_option("display.max_colwidth", 160)
changed_settings(lora_config(config))  # a fresh one: SFTTrainer wrote the base model's local path into peft_config

# %%
changed_settings(training_args)

# %% [markdown]
# Two lines deserve a comment. `completion_only_loss=True` is what makes this *supervised fine-tuning on the
# answer*: TRL's default, `None`, already does the same for prompt/completion rows like ours; hwlib sets it anyway,
# so that the run's recorded settings say it (its opposite, `False`, is the prompt-loss variant below). It is not a
# guard on the data: rows in another format, such as a single `text` field, have no completion to mark, and TRL 1.16
# then trains on the whole text with either value and no error. What keeps the prompt out of the loss here is that
# `hwlib.data` builds prompt/completion rows only. The next section shows the mask at work. And activation checkpointing is off: TRL turns it on by default to save GPU memory by recomputing
# activations in the backward pass, which costs time and buys nothing for a model this small. The table lists it
# twice, as `activation_checkpointing` and as `gradient_checkpointing`: two names for one switch (the second is
# transformers' older name). And `bf16`: TRL's default `None` means bf16 mixed precision, which a CPU without AMX
# emulates slowly (docs/speed.md); hwlib's device rule (`compute_dtype`, printed above) picks fp32 on such a CPU.
#
# ## What the loss sees: the `-100` mask
#
# A causal language model is trained to predict each next token. Cross-entropy in PyTorch ignores every position
# whose label is `-100`. TRL sets the labels of all prompt tokens (system prompt, tweet, the opening of the
# assistant's turn) to `-100`, so the model is trained only to produce the answer sentence, its end-of-turn
# token and what the template writes after it. The labels are the input ids themselves, not the ids shifted by one: the model's loss shifts them, so that
# the logits at position *t* are scored against the token at *t + 1*. Below, one training example token by token,
# then the same mask built by hand from the rendered prompt's length and compared with the collator's (the data
# collator pads a batch's rows to one length and builds their labels). In the token column `Ġ` marks a leading space
# and `Ċ` a newline, as in lesson 02.

# %%
example = trainer.train_dataset[0]
batch = trainer.data_collator([example])
input_ids, labels = batch["input_ids"][0], batch["labels"][0]
tokens = pd.DataFrame({"token": tokenizer.convert_ids_to_tokens(input_ids.tolist()), "input id": input_ids.tolist(),
                       "label": labels.tolist()})
tokens.tail(16)

# %%
text = example["prompt"][-1]["content"].removeprefix('Message: "').removesuffix('"')
prompt_length = len(tokenizer(render_prompt(tokenizer, text), add_special_tokens=False)["input_ids"])
by_hand = torch.cat([torch.full((prompt_length,), -100), input_ids[prompt_length:]])
assert torch.equal(by_hand, labels), "the collator's labels are not 'prompt masked, answer kept'"
print(f"{prompt_length} prompt tokens masked with -100, {len(input_ids) - prompt_length} answer tokens learned: "
      f"{tokenizer.decode(input_ids[prompt_length:])!r}; the last one learned is "
      f"{tokenizer.convert_ids_to_tokens(int(input_ids[-1]))!r}")

# %% [markdown]
# The loss is computed on a dozen or so tokens per example: the answer sentence, the end-of-turn token and whatever
# the template writes after it (the line above names the last learned token; ChatML's template ends each turn with
# a newline, and that newline is learned too). Most of them are the same in every example ("Classifying the sentiment of the message as"); only the label token carries
# the decision. That explains the loss curve below.
#
# ## One prompt, computed once per batch
#
# *An optional box: this course's own speed-up, not part of the card's recipe or of TRL. Skip it on a first reading.*
#
# Every example starts with the same tokens: the system prompt and the chat markup before the tweet. In attention,
# each position's *query* is compared with the *keys* of the positions before it, and their *values* are mixed into
# its output; a **key/value cache** stores those keys and values so that later positions can use them without
# recomputing the earlier ones (generation uses it token by token). In a causal model the keys and values at the
# shared positions depend only on the tokens before them, so they are identical in every row of a batch, and a plain
# training step computes them twelve times. hwlib's trainer (`hwlib.shared_prefix.make_hwlib_trainer`:
# TRL's `SFTTrainer` with only `compute_loss` changed) runs the shared prefix once, as a batch of one and with
# gradients, hands its keys and values to every row as a cache, and runs only each row's own tokens. It cannot keep
# that cache from one step to the next: the LoRA weights on `k_proj` and `v_proj` change the prefix's keys and
# values at every update. Below, four training rows: how much they share, and the loss computed both ways.

# %%
from trl import SFTTrainer

from hwlib.shared_prefix import shared_prefix_inputs, shared_prefix_length

rows = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])  # built on the CPU, as the Trainer does
rows = {name: values.to(trainer.model.device) for name, values in rows.items()}  # and moved to the model, as it does
shared_tokens = shared_prefix_length(rows["input_ids"], rows["attention_mask"], rows["labels"])
real_tokens = int(rows["attention_mask"].sum())
print(f"{shared_tokens} leading tokens are the same in all 4 rows; computing them once skips "
      f"{3 * shared_tokens} of {real_tokens} token positions ({3 * shared_tokens / real_tokens:.0%})")
trainer.model.eval()  # no dropout, so both ways see the same network; gradients on, as in training
assert shared_prefix_inputs(trainer.model, dict(rows)) is not None  # the shared path is taken, no fallback
loss_whole_rows = SFTTrainer.compute_loss(trainer, trainer.model, dict(rows))
loss_shared_prefix = trainer.compute_loss(trainer.model, dict(rows))
trainer.model.train()
from hwlib.config import agreement_tolerance, compute_dtype

gap = abs(loss_whole_rows.item() - loss_shared_prefix.item()) / loss_whole_rows.item()
assert gap <= agreement_tolerance(), "the shared prefix changed the loss beyond rounding"
print(f"loss over whole rows {loss_whole_rows.item():.6f}, with the prefix shared {loss_shared_prefix.item():.6f}: "
      f"relative gap {gap:.1e}, allowed {agreement_tolerance():.0e} in {str(compute_dtype()).removeprefix('torch.')}")

# %% [markdown]
# The two losses agree to float rounding (the relative gap printed above). In fp32 the bound is 1e-4; in bf16 or fp16
# (GPUs, AMX CPUs) each path rounds its intermediate results to the half-precision significand in its own order, and
# the bound is 8 units in the last place of the number format (`hwlib.config.agreement_tolerance`; lesson 04 shows
# where it comes from). The check runs with gradients on, as training does: under
# `torch.no_grad()` bitsandbytes' 4-bit layers can take an inference kernel on a CPU, whose rounding depends on the
# batch's shape, and the two ways then differ by more than rounding. It runs in eval mode, without dropout; in training, LoRA's dropout
# draws one mask for the shared prefix, which then serves every row of the batch, where the plain path draws one per
# row: the only difference between the two paths. `tests/test_train.py` checks the same equality for the LoRA gradients (relative
# difference below 1e-5, on the tiny test model and on a real SmolLM2 batch). The saving grows with the batch: with
# twelve rows, eleven copies of the prefix are skipped. The README's Speed section measures what that does to a
# whole training step (`python -m bench training`).
#
# The same `compute_loss` saves a second piece of work. The loss needs the LM head's scores (a projection onto the
# whole vocabulary) only at the positions whose next token carries a label. TRL computes only those on CUDA and XPU;
# on other devices it computes every position and discards the rest. hwlib's `compute_loss` takes TRL's own compact path on
# every device (`loss_positions_only`; the equality above covers it, since `SFTTrainer.compute_loss` is TRL's default
# path). How much it skips on these four rows:

# %%
head_width = trainer.model.get_output_embeddings().weight.shape[0]
in_loss = int((rows["labels"][:, 1:] != -100).sum())
print(f"{in_loss} of {real_tokens} real positions predict a label: the LM head ({head_width:,} tokens wide) runs "
      f"at those {in_loss} only, {in_loss / real_tokens:.0%} of the positions")

# %% [markdown]
# ## Training and its curves
#
# With `TRAIN = True`, `lesson_run` called `trainer.train()` on a trainer like the one above (checkpoints every
# `save_steps`, so an interrupted run resumes). Either way, the run folder holds its record: how many examples and
# steps, the time, and the logged loss and learning rate. The shipped adapter's record lists neither `shared_prefix`
# nor `loss_positions_only`: it trained on the plain path. With both (the defaults), the same 250 steps took 13.0 min
# on a 2-core AVX-512 CPU in the main job (docs/speed.md, "The main job"), and about twice that is normal on an
# AVX2-only one.

# %%
from hwlib.runs import read_run

del dense, quantized  # free the models built for inspection
record = read_run(run_dir)
{**{k: record[k] for k in ("examples", "steps", "final_loss", "wall_time_s", "examples_per_s")},
 "compute_dtype": record["hardware"]["compute_dtype"], "device": record["hardware"]["device"]}

# %%
import json

import matplotlib.pyplot as plt
import seaborn as sns

from hwlib.runs import LOSS_HISTORY

history = pd.DataFrame(json.loads((run_dir / LOSS_HISTORY).read_text()))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
sns.lineplot(data=history, x="step", y="loss", marker="o", ax=axes[0]).set(
    title="training loss (answer tokens), log scale", yscale="log")
sns.lineplot(data=history, x="step", y="learning_rate", ax=axes[1]).set_title("learning rate")
fig.tight_layout()

# %%
import math

from IPython.display import Markdown, display

first, last = history.iloc[0], history.iloc[-1]
quarter = history[history["step"] <= history["step"].max() / 4].iloc[-1]
answer_tokens = len(input_ids) - prompt_length  # the example of the -100 section
guess = math.log(3) / answer_tokens  # the sentence learned perfectly, the label a guess among three
below = history[history["loss"] < guess]
display(Markdown(
    f"The loss falls from **{first['loss']:.2f}** at step {first['step']:.0f} to **{quarter['loss']:.2f}** by step "
    f"{quarter['step']:.0f} (a quarter of the run) and ends at **{last['loss']:.3f}**; the learning rate peaks at "
    f"**{history['learning_rate'].max():.2g}**. The plotted loss is a mean over the answer's {answer_tokens} tokens: "
    f"a model that wrote the sentence perfectly but guessed the label would sit at ln 3 / {answer_tokens} = "
    f"**{guess:.3f}**, " + (f"a line the curve first goes below at step {below['step'].iloc[0]:.0f}: below it the "
                            "label is predicted better than a guess, and further falls are the label being learned." if len(below) else
                            "and the curve never gets below it: the label is not being learned.")
))

# %% [markdown]
# Where is the remaining loss? The trained model on twelve training rows, the loss of each answer token: the label
# word against the fixed words of the sentence and the end of turn. These rows were trained on, so this shows where
# the loss sits, not how well the model generalises; lesson 04 measures unseen tweets.

# %%
from hwlib.data import LABELS

rows12 = trainer.data_collator([trainer.train_dataset[i] for i in range(12)])
with torch.no_grad():
    logits = tuned(input_ids=rows12["input_ids"].to(tuned.device),
                   attention_mask=rows12["attention_mask"].to(tuned.device)).logits.float().cpu()
targets = rows12["labels"][:, 1:]
token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none",
                                               ignore_index=-100)
is_label = torch.tensor([[tokenizer.decode([t]).strip() in LABELS for t in row] for row in targets.clamp(min=0).tolist()])
answer = targets != -100
label_loss, rest_loss = token_loss[answer & is_label].mean().item(), token_loss[answer & ~is_label].mean().item()
display(Markdown(
    f"Per answer token, on these 12 rows: the label word **{label_loss:.3f}**, the other "
    f"{int((answer & ~is_label).sum() / 12)} answer tokens of a row **{rest_loss:.4f}** on average; the label "
    f"carries {label_loss / (label_loss + rest_loss * (answer & ~is_label).sum().item() / 12):.1%} of a row's loss."))
del trainer, logits  # free the trainer built for inspection

# %% [markdown]
# How to read these curves. The steep drop at the start is the model learning the *format*: the fixed words of the
# answer sentence are easy and soon predicted almost perfectly. The cell above shows what remains once training is
# done (with the shipped adapter; on `smoke` nothing was learned and every token is still hard): nearly all of it on
# the label word, because telling sentiment apart is the hard part. A curve that flattens early is
# therefore expected here and is not by itself a sign that learning stopped; the evaluation in lesson 04 is what
# tells. The learning-rate plot shows the schedule: with the `cpu` profile a short linear warm-up (10% of the steps)
# and then a cosine decay to zero; with the card's recipe a linear decay. Warm-up protects the freshly initialised
# adapter from large first steps; the decay lets the last steps make small, careful updates. (On `smoke`, four steps
# of a random model, the curves show only that the plumbing works.)
#
# ## After training: the same tweets again
#
# Lesson 02 showed the base model's replies. Here are the fine-tuned model's replies to the same validation tweets.

# %%
from hwlib.data import ID2LABEL, load_split
from hwlib.evaluate import generate

tweets = load_split("validation").select(range(8))
labels_after, raw_after = generate(tuned, tokenizer, tweets["text"], progress=False)
right = sum(got == ID2LABEL[y] for got, y in zip(labels_after, tweets["label"]))
print(f"{sum(bool(got) for got in labels_after)} of {len(tweets)} replies give a label that can be read back; "
      f"{right} of {len(tweets)} are right")
pd.DataFrame({"message": tweets["text"], "correct": [ID2LABEL[y] for y in tweets["label"]],
              "model output": raw_after, "extracted": labels_after})

# %% [markdown]
# Compare the replies with lesson 02's: the `extracted` column shows how many now follow the answer format closely
# enough for the label to be read back. Whether it is the *right* label is lesson 04's question, on thousands of
# tweets rather than eight.
#
# ## How much data is worth the time? The learning curve
#
# On a CPU, training time is the budget, and every training tweet costs about the same. So the useful question is
# what more tweets buy, and whether they should be drawn with equal numbers per class (`balanced`) or in train's own
# class shares (`stratified`: neutral the largest class, negative the smallest, lesson 01). `python -m hwlib curve`
# trains this profile's recipe on seeded samples of train of growing size, per sampling and seed, and scores each run on the whole
# validation split; test is never looked at. The course ships the points measured for this repository beside the
# adapter.

# %%
from hwlib.search import curve_findings, curve_summary, plot_curve
from hwlib.runs import shipped_adapter

curve = json.loads((shipped_adapter("cpu") / "curve.json").read_text())
plot_curve(curve["rows"])
curve_summary(curve["rows"])

# %%
display(Markdown("\n".join(f"- {finding}" for finding in curve_findings(curve["rows"]))))

# %% [markdown]
# How to read it. Each point is one training run scored once on validation, or the mean of several seeds (the
# `seeds` column), so the first number to find is the spread between seeds (the standard deviation printed for the
# points trained with several seeds): a difference within two of those deviations is not evidence of anything. Then three questions. Is the line still rising at its right end?
# If so, more tweets would still pay, and the time budget, not the data, is the limit. Which sampling sits higher?
# Macro-F1 and macro-recall weight the three classes equally, so a sample with as many negative tweets as neutral
# ones helps the rarest class most; a stratified sample mirrors train and leans towards neutral. And where does the
# wider adapter sit against `k_proj`/`v_proj` at the same number of tweets? Its training time is printed beside it
# (minutes on the machine each point was trained on, which differs between points, and for several seeds their mean:
# docs/results.md names the machines). The printed sentences above answer the three questions for this repository's
# points; docs/results.md, section "Learning curve (validation only)", lists the commands that made them and what
# they chose.
#
# ### Other levers, one change at a time
#
# More data is one lever. `python -m hwlib variants` tries others on the same 3,000 rows, each changing one setting
# of this recipe:
#
# - `two-epochs` (`epochs=2`): two passes over the rows instead of one;
# - `prompt-loss` (`completion_only_loss=False`): the loss over the whole conversation, not the answer alone. Shi et
#   al. (2024, references) report that learning the prompt's tokens too helps most when answers are short and
#   examples few, which is this setting;
# - `head` (`head="classify"`): no answer sentence at all, but a 3-way classification head on the prompt's last token
#   trained with cross-entropy on the label, the classic recipe for classifying with an LLM (transformers'
#   `...ForSequenceClassification` with peft's `SEQ_CLS` LoRA on the same `k_proj`/`v_proj`, trained by
#   transformers' `Trainer`, since TRL's trainers do not classify);
# - `gemma` (`model="gemma3-270m"`): another base model, Gemma 3 270M, Google's pretrained model, 268M parameters of
#   which about 168M are the embedding of a 262,144-token vocabulary (docs/data-and-models.md). Its learning rate is
#   chosen on validation with one seed among a quarter of the recipe's (`gemma-lr5e-4`), half (`gemma`, 1e-3) and the
#   recipe's own (`gemma-lr2e-3`); the chosen rate gets three seeds.
#
# Each is scored on validation, and the yardstick is the recipe's own seed-to-seed spread: a difference within two
# of its standard deviations is not evidence. Test is read only for the chosen configuration (the last column). The course ships the measured table beside the adapter; its first two
# rows give the scale: this lesson's recipe with its three seeds, then the card's own recipe (its shipped adapter).

# %%
from hwlib.search import card_recipe_point, variant_findings, variants_table

variants = json.loads((shipped_adapter("cpu") / "variants.json").read_text())
seeds = json.loads((shipped_adapter("cpu") / "seeds.json").read_text())
display(Markdown(variants_table(variants, seeds, card_recipe_point())))
display(Markdown("\n".join(f"- {finding}" for finding in variant_findings(variants, seeds))))

# %% [markdown]
# The rule the sentences apply: a configuration replaces the recipe only if it is better by more than two of the
# recipe's seed deviations on validation, with three seeds. Training minutes are each run's own, some beside other
# work on the same two cores (docs/results.md lists them), so compare them only roughly.

# %% [markdown]
# ## The saved adapter
#
# The run folder holds the adapter (a few MB, next to a base model of hundreds of MB), the tokenizer, the loss
# history (`loss_history.json`, `loss_curve.png`) and `run_config.json`, the record shown above; it is written last,
# so its presence marks a finished run. The shipped copy also holds the main job's results (`summary.json`, the
# `README.md` model card, the confusion figure) and the search, learning-curve, seed and variant records used above.
# Load it with `hwlib.models.load_adapter(run_dir)` (offline, with the exact base it was trained on) or with
# `peft.AutoPeftModelForCausalLM.from_pretrained(run_dir)` where the Hub is reachable; that loads the Hub's original
# SmolLM2 weights, not the copy dequantized from the Q4_1 file this adapter was trained on, so its scores differ
# slightly.

# %%
sorted(p.name for p in run_dir.iterdir() if p.is_file())

# %% [markdown]
# ## Recap
#
# - QLoRA freezes the base model and stores it in 4-bit NF4: blocks of 64 weights, each scaled by its absmax and
#   rounded to 16 normal-quantile levels; double quantization stores the absmax values in 8 bits. We reproduced NF4
#   by hand on one block and matched bitsandbytes, and bitsandbytes' double-quantized matrix matched the 4-bit model's
#   layer.
# - LoRA adds `(alpha/r) · B A x` to chosen layers; we checked the formula against peft's layer. The card adapts
#   `k_proj` and `v_proj` only, under 1% of the parameters, counted as `r · (in + out)` per module.
# - `SFTConfig` with `completion_only_loss=True` masks the prompt with `-100`: the model learns the answer only.
# - The loss falls fast while the model learns the format, then slowly while it learns sentiment.
# - Every example shares its first tokens, the system prompt; hwlib's trainer computes them once per batch, with
#   gradients, and gets the same loss.
# - The learning curve, measured on validation only, is how this course chooses between more tweets, another
#   sampling and a wider adapter; a difference counts only when it is larger than two seed deviations.
#
# ## Exercises
#
# Worked solutions, each with a hint first: [`solutions/03_qlora_sft_solutions.ipynb`](solutions/03_qlora_sft_solutions.ipynb)
# (run it after this lesson; CI runs it too). ★ a few lines, ★★ a small experiment, ★★★ going further.
#
# 1. **Rank.** (★★) Set `config = train_config(PROFILE, output_dir="../runs/r4", lora_r=4, lora_alpha=8)` and
#    `TRAIN = True`, then re-run the `lesson_run` cell and the cells after it (not the first cells, which reset
#    `config`). *Expect:* a quarter of the trainable parameters of the `cpu` profile's r=16; training time hardly changes (the
#    frozen base dominates). Compare the validation score in lesson 04 against an r=16 run on as many tweets: rank
#    is then the only difference. (To save time on a CPU, train both with `train_size=600`; at 600 tweets the seed
#    spread is about 2 points of macro-F1, so only differences beyond two of those count.)
# 2. **Target modules.** (★★) Train with `target_modules=("q_proj", "k_proj", "v_proj", "o_proj")` into a new folder,
#    on 600 tweets, beside the recipe's own `k_proj`/`v_proj` on the same 600. *Expect:* 2.5 times the parameters of
#    the card's choice on SmolLM2 (`r · (in + out)`: `q_proj` and `o_proj` are 576 × 576, `k_proj` and `v_proj`
#    576 → 192), and a validation macro-F1 within two seed deviations of the narrower adapter's (the learning curve's
#    spread at 600 tweets); compare with the curve's wider adapter (every attention and MLP projection).
# 3. **Learning rate.** (★★) Train this profile's recipe on 600 tweets twice: with the card's learning rate and
#    schedule (`learning_rate=5e-4, lr_scheduler="linear", warmup_ratio=0.0`) and with its own. *Expect:* with 5e-4,
#    50 steps are not enough: the loss is still higher at the end and validation macro-F1 is far lower (the
#    repository's search, one seed each at 600 tweets: 0.38 with the card's lr 5e-4 linear, against 0.55 (r=8) and
#    0.57 (r=16) with lr 2e-3 cosine; docs/results.md, "How the improved settings were chosen").
# 4. **Change a setting without a new folder.** (★) Change `lora_dropout` in `config` and re-run the `lesson_run` cell
#    with `TRAIN = False`. *Expect:* an error naming `lora_dropout` and both values, not a silently reused run.
# 5. **NF4 by hand, further.** (★★★) Repeat the NF4 cell on a block from `mlp.down_proj` and on `levels` replaced by 16
#    evenly spaced levels (`torch.linspace(-1, 1, 16)`). *Expect:* the evenly spaced levels give a larger error:
#    the normal quantiles fit the weights' distribution better.
#
# ## References
#
# - E. Hu et al. *LoRA: Low-Rank Adaptation of Large Language Models.* ICLR 2022. https://arxiv.org/abs/2106.09685
# - T. Dettmers, A. Pagnoni, A. Holtzman, L. Zettlemoyer. *QLoRA: Efficient Finetuning of Quantized LLMs.*
#   NeurIPS 2023. https://arxiv.org/abs/2305.14314
# - Z. Shi et al. *Instruction Tuning With Loss Over Instructions.* NeurIPS 2024. https://arxiv.org/abs/2405.14394
# - TRL documentation, *SFT Trainer*: https://huggingface.co/docs/trl/sft_trainer
# - peft documentation, *LoRA*: https://huggingface.co/docs/peft/developer_guides/lora
# - bitsandbytes documentation, *4-bit quantization*: https://huggingface.co/docs/bitsandbytes
# - The model card this course follows: the repository's README, section "The model card this course follows".
#
# Next: lesson 04 evaluates the adapter before and after, on the test split.
