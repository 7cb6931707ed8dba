"""QLoRA supervised fine-tuning with TRL's `SFTTrainer`: the model card's recipe, resumable, saved atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path

from datasets import Dataset

from .config import ConfigError, HwlibError, TrainConfig, compute_dtype, device, dtype_name, machine
from .data import ID2LABEL, class_counts, data_source, load_split, subsample
from .files import write_json
from .models import fingerprints, load_model
from .prompts import build_example, ensure_chat_template, protected_strings, supports_system_role
from .runs import (CHECKPOINTS, LOSS_CURVE, LOSS_HISTORY, RUN_CONFIG, TRAIN_REQUEST,
                   complete_checkpoints, is_run_folder, read_run, shipped_adapter)
from .shared_prefix import make_hwlib_trainer

log = logging.getLogger(__name__)

class RunExistsError(HwlibError, FileExistsError):
    """The output folder already holds a run."""


def training_examples(dataset: Dataset, tokenizer) -> Dataset:
    """TRL conversational prompt/completion rows built from `text`/`label` rows."""
    ensure_chat_template(tokenizer)
    system_role, specials = supports_system_role(tokenizer), protected_strings(tokenizer)
    rows = [build_example(text, ID2LABEL[label], system_role, specials)
            for text, label in zip(dataset["text"], dataset["label"])]
    return Dataset.from_list(rows)


def training_data(config: TrainConfig) -> Dataset:
    """The seeded train subset the config asks for, with forged answers written into `forged_share` of its messages
    (`hwlib.forged.with_forgeries`; each row keeps its own label)."""
    data = subsample(load_split("train", config.data_dir), config.train_size, config.sampling, config.seed)
    if not config.forged_share:
        return data
    from .forged import with_forgeries

    texts = with_forgeries(data["text"], data["label"], config.forged_share, config.seed)
    return data.remove_columns("text").add_column("text", texts).select_columns(data.column_names)


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM",
    )


def precision_flags() -> dict[str, bool]:
    """The Trainer's mixed-precision switches, from the one device rule (`hwlib.config.compute_dtype`)."""
    import torch

    return {"bf16": compute_dtype() == torch.bfloat16, "fp16": compute_dtype() == torch.float16}


def training_arguments(config: TrainConfig) -> dict:
    """The Trainer's arguments every hwlib run shares, generative (`sft_config`) or with a classification head."""
    return dict(
        output_dir=str(Path(config.output_dir) / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        activation_checkpointing=config.activation_checkpointing,
        **precision_flags(),
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=False,
        use_cpu=device() == "cpu",
        dataloader_pin_memory=device() == "cuda",
    )


def sft_config(config: TrainConfig):
    """TRL settings for this hardware: no activation checkpointing, bf16 where native, loss on the answer only unless
    `completion_only_loss=False` (the prompt-loss variant)."""
    from trl import SFTConfig

    return SFTConfig(**training_arguments(config), max_length=config.max_length,
                     completion_only_loss=config.completion_only_loss)


# Why each setting that hwlib changes from peft's and TRL's defaults has the value it has (notebook 03 shows them).
WHY = {
    "r": "rank of the update B·A: the card's 8; the cpu profile's 16 scored higher on validation (one seed)",
    "lora_alpha": "the update is scaled by alpha / r; every profile keeps alpha = 2r, so the scale is 2 at any rank",
    "lora_dropout": "a little dropout on the adapter's input, against overfitting a few thousand tweets",
    "target_modules": "the card adapts the attention keys and values only",
    "task_type": "a causal LM: peft wraps the model for next-token prediction",
    "bias": "biases stay frozen",
    "output_dir": "checkpoints go inside the run folder, so --resume finds them",
    "per_device_train_batch_size": "the card's batch size, 12",
    "num_train_epochs": "the card's one pass over the data",
    "max_steps": "a positive value stops early (the smoke profile)",
    "learning_rate": "the card's 5e-4; the cpu profile's 2e-3 was chosen on validation",
    "lr_scheduler_type": "linear decay (card) or cosine (cpu profile)",
    "warmup_steps": "below 1 it is a share of the steps: a gentle start for the fresh adapter",
    "max_length": "the longest of 500 sampled training conversations is far under 256 tokens (notebook 01), so nothing is cut",
    "completion_only_loss": "True learns the answer only (prompt tokens get the label -100); False, the whole "
                            "conversation (the prompt-loss variant)",
    "activation_checkpointing": "recomputing activations saves memory a 135M model does not need, at ~20% more "
                                "time (TRL's documentation)",
    "gradient_checkpointing": "transformers' older name for activation_checkpointing: the same switch",
    "bf16": "from the one device rule (hwlib.config.compute_dtype)",
    "fp16": "from the one device rule (hwlib.config.compute_dtype)",
    "train_sampling_strategy": "batches of similar length waste less compute on padding",
    "logging_steps": "how often the loss is recorded for the curve",
    "save_steps": "a checkpoint to resume from every this many steps",
    "save_total_limit": "keep the two newest checkpoints only",
    "seed": "same seed, same run",
    "data_seed": "same seed, same order of examples",
    "report_to": "no external experiment tracker",
    "disable_tqdm": "keep the progress bar with its time estimate",
    "use_cpu": "train on the CPU when there is no GPU",
    "dataloader_pin_memory": "pinned memory only helps copies to a GPU",
}


def changed_settings(settings) -> "pd.DataFrame":
    """The fields of a config object (LoraConfig, SFTConfig) whose value differs from the class's declared default,
    with the reason. Defaults are read from the dataclass fields, not by building a default object (TRL's refuses
    to build on a CPU without `use_cpu`)."""
    import dataclasses
    import enum

    import pandas as pd

    def plain(value) -> str:  # one spelling per value: an enum and its string, ["x"] and "x"; [], "" and "none"
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, (set, frozenset)):
            value = sorted(value)
        if isinstance(value, (list, tuple)) and len(value) <= 1:
            value = value[0] if value else ""
        return "" if value == "none" else str(value)

    rows = []
    for field in dataclasses.fields(settings):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        value = getattr(settings, field.name)
        if plain(value) != plain(default):
            rows.append({"setting": field.name, "default": plain(default), "used": plain(value),
                         "why": WHY.get(field.name, "set by TRL, peft or transformers, not by a setting of hwlib")})
    return pd.DataFrame(rows).set_index("setting")


def build_trainer(config: TrainConfig, model=None, tokenizer=None, dataset: Dataset | None = None):
    """An `SFTTrainer` ready to train: LoRA on the config's modules of a (by default 4-bit) base model."""
    import torch
    from trl import SFTTrainer

    if model is None:
        model, tokenizer = load_model(config.model, config.quantize, trainable=True, head=config.head)
    dataset = training_data(config) if dataset is None else dataset
    if config.head == "classify":
        from .head import build_head_trainer

        return build_head_trainer(config, model, tokenizer, dataset)
    speed_ups = config.shared_prefix or config.loss_positions_only
    trainer_class = (make_hwlib_trainer(SFTTrainer, config.shared_prefix, config.loss_positions_only) if speed_ups
                     else SFTTrainer)
    trainer = trainer_class(
        model=model,
        args=sft_config(config),
        train_dataset=training_examples(dataset, tokenizer),
        processing_class=tokenizer,
        peft_config=lora_config(config),
    )
    # TRL casts a quantized model's adapter to bf16, but peft upcasts it to fp32 when the Trainer reloads a checkpoint:
    # fp32 from the start makes a resumed run identical to an uninterrupted one (and keeps small late updates).
    cast_adapter(trainer.model, torch.float32)
    dropped = len(dataset) - len(trainer.train_dataset)
    if dropped:  # TRL drops rows whose answer was cut off entirely by max_length
        log.warning("%d of %d examples lost their answer to max_length=%d and were dropped: raise max_length",
                    dropped, len(dataset), config.max_length)
    return trainer


def cast_adapter(model, dtype) -> None:
    """Hold the trainable (LoRA) weights in `dtype`; the forward pass still computes in the compute dtype."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)


def trainable_parameters(model) -> dict[str, int | str]:
    """Trainable and total parameter counts (4-bit weights count as stored: two per byte), and the trainable dtype."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    dtypes = sorted({dtype_name(p.dtype) for p in trainable})
    return {"trainable": sum(p.numel() for p in trainable), "total": sum(p.numel() for p in model.parameters()),
            "trainable_dtype": "+".join(dtypes)}


def prepare_output(output_dir: str | Path, resume: bool, overwrite: bool) -> Path | None:
    """Check the output folder; returns the checkpoint to resume from, if any. Deletes nothing."""
    output = Path(output_dir)
    if resume and overwrite:
        raise ConfigError("choose resume or overwrite, not both")
    if output.is_file() or (output.is_dir() and any(output.iterdir()) and not is_run_folder(output)):
        raise RunExistsError(f"{output} exists and is not a hwlib run folder: give a new or empty folder for the run "
                             "(nothing was written)")
    checkpoints = complete_checkpoints(output)
    if is_run_folder(output) and not (resume or overwrite):
        raise RunExistsError(
            f"{output} already holds a run: pass resume=True (--resume) to continue it, "
            "overwrite=True (--overwrite) to start again, or another output folder"
        )
    if not resume:
        return None
    if (output / RUN_CONFIG).is_file():
        raise RunExistsError(f"{output} holds a finished run: nothing to resume (use --overwrite to train again)")
    if not checkpoints:
        raise ConfigError(f"nothing to resume in {output}: no complete {CHECKPOINTS}/checkpoint-* folder")
    incomplete = sorted(set((output / CHECKPOINTS).glob("checkpoint-*")) - set(checkpoints))
    if incomplete:
        log.warning("skipping incomplete checkpoint(s) %s (interrupted while saving); resuming from %s",
                    ", ".join(p.name for p in incomplete), checkpoints[-1].name)
    return checkpoints[-1]


def _check_resume_settings(config: TrainConfig, output: Path) -> None:
    request = output / TRAIN_REQUEST
    if request.is_file():
        differ = config_differences(config, json.loads(request.read_text()))
        if differ:
            listed = "; ".join(f"{name}: run started with {old!r}, you asked for {new!r}"
                               for name, (old, new) in differ.items())
            raise ConfigMismatchError(f"cannot resume {output} with other settings ({listed}): resume with the "
                                      "run's settings, or start again with --overwrite")


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False, callbacks: list | None = None) -> Path:
    """Train the adapter the config describes and save it, with its record, into `config.output_dir`.

    With `overwrite`, the new run trains in a staging folder beside it and replaces the old run only once complete:
    a failure (bad data folder, missing library, Ctrl-C, out of memory) leaves the old run as it was.
    """
    from accelerate import PartialState

    output = Path(config.output_dir)
    checkpoint = prepare_output(output, resume, overwrite)
    if resume:
        _check_resume_settings(config, output)
    replacing = overwrite and is_run_folder(output)
    folder = output.with_name(output.name + ".staging") if replacing else output
    dataset = training_data(config)  # bad data fails here, before anything is written
    processes = PartialState()
    processes.wait_for_everyone()  # with `accelerate launch`, every process checks the folder before one writes
    if processes.is_main_process:
        if replacing:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_json(folder / TRAIN_REQUEST, config.to_dict())
    processes.wait_for_everyone()
    staged = dataclasses.replace(config, output_dir=str(folder))
    trainer = build_trainer(staged, dataset=dataset)
    for callback in callbacks or []:
        trainer.add_callback(callback)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    wall_time = time.perf_counter() - start
    if trainer.state.global_step < trainer.state.max_steps:
        log.warning("training stopped at step %d of %d; resume with --resume", trainer.state.global_step,
                    trainer.state.max_steps)
        return folder
    if trainer.is_world_process_zero():  # with `accelerate launch`, one process writes the run folder
        save_run(trainer, config, dataset, result.metrics, wall_time, folder)
        if replacing:
            retired = output.with_name(output.name + ".replaced")
            shutil.rmtree(retired, ignore_errors=True)
            output.rename(retired)
            folder.rename(output)
            shutil.rmtree(retired)
    trainer.accelerator.wait_for_everyone()
    return output


# Settings that only say where files go or how often to log: a run trained with other values is the same run.
BOOKKEEPING = ("output_dir", "profile", "logging_steps", "save_steps", "data_dir",
               "shared_prefix", "loss_positions_only")  # the last two change how, not what: the same loss up to rounding


def config_differences(requested: TrainConfig, recorded: dict) -> dict[str, tuple]:
    """Training settings whose requested value differs from a run's record: {name: (recorded, requested)}."""
    wanted = requested.to_dict()
    defaults = TrainConfig().to_dict()  # a record older than a setting was trained with its default
    differ = {}
    for name, value in wanted.items():
        if name in BOOKKEEPING:
            continue
        before = recorded.get(name, defaults[name])
        if isinstance(value, (tuple, list)) or isinstance(before, (tuple, list)):
            value, before = list(value or []), list(before or [])
        if value != before:
            differ[name] = (before, value)
    return differ


class ConfigMismatchError(HwlibError, ValueError):
    """A finished run was trained with other settings than the ones requested."""


def check_same_settings(config: TrainConfig, run_dir: Path) -> None:
    """Refuse to reuse a run trained with other settings, naming each difference and the ways out."""
    differ = config_differences(config, read_run(run_dir)["config"])
    if differ:
        listed = "; ".join(f"{name}: run has {old!r}, you asked for {new!r}" for name, (old, new) in differ.items())
        raise ConfigMismatchError(
            f"{os.path.relpath(run_dir)} was trained with other settings ({listed}). Train them into a new folder "
            "(output_dir=...), train again here with overwrite=True, or restore the settings"
        )


def train_or_load(config: TrainConfig) -> Path:
    """The run folder of a finished training with exactly these settings: reused if there, resumed if interrupted,
    else trained. A finished run with other settings is refused (`check_same_settings`), never reused silently."""
    output = Path(config.output_dir)
    if (output / RUN_CONFIG).is_file():
        check_same_settings(config, output)
        log.info("%s already holds a finished run with these settings: reusing it", output)
        return output
    if complete_checkpoints(output):
        return train(config, resume=True)  # refuses other settings than the run started with
    return train(config, overwrite=is_run_folder(output))  # a run killed before its first checkpoint: start again


# Adapters trained by `python -m hwlib run --profile NAME` and committed under data/adapters/, by profile.
def profile_note(profile: str) -> str:
    """Why a profile exists (PROFILE_NOTES) and, for a profile that ships an adapter, its measured training time and
    machine class, read from the shipped run's record (shown by the lessons and `python -m hwlib profiles`)."""
    from .config import PROFILE_NOTES

    shipped = shipped_adapter(profile)
    if shipped is None:
        return PROFILE_NOTES[profile]
    record = read_run(shipped)
    measured_on = record["hardware"].get("machine")
    where = (f"{measured_on['processor']}, {measured_on['cpu_cores']} cores, "
             f"{', '.join(measured_on['instruction_sets']) or 'no AVX2'}" if measured_on else "machine class not recorded")
    return (f"{PROFILE_NOTES[profile]}; measured: {record['wall_time_s'] / 60:.1f} min of training, {record['steps']} "
            f"steps on {record['hardware']['device']} ({where}; data/adapters/{shipped.name}/{RUN_CONFIG})")


FALLBACK_PROFILE = "cpu"  # its shipped adapter stands in where a profile ships none (a fresh Colab runtime on a GPU)


@dataclasses.dataclass
class LessonRun:
    """The run a lesson teaches with: its folder, how it was obtained (printed by the lesson), and its settings."""

    folder: Path
    how: str
    config: TrainConfig  # the run's own settings: another profile's where the lesson fell back to a shipped adapter


def lesson_run(config: TrainConfig, train_now: bool = False) -> LessonRun:
    """The run lessons 03 and 04 teach with, and how it was obtained. Training happens only when asked for.

    `train_now=True` trains (or resumes, or reuses an identical finished run) in `config.output_dir`. Otherwise, in
    this order: a finished run there (for example on Google Drive, saved by lesson 03 in another Colab runtime);
    the profile's shipped adapter, copied to `<output_dir>-shipped` (so evaluations are written there, not into the
    repository); for `smoke`, which ships none and trains in seconds, a training; for the GPU profiles, the `cpu`
    profile's shipped SmolLM2 adapter, with its own settings. Every path refuses a run whose settings differ from
    the config it was asked for and names the differences.
    """
    output = Path(config.output_dir)
    if train_now or (output / RUN_CONFIG).is_file():
        reused = (output / RUN_CONFIG).is_file()
        return LessonRun(train_or_load(config), "reused the finished run" if reused else "trained now", config)
    shipped = shipped_adapter(config.profile)
    if shipped is not None:
        check_same_settings(config, shipped)
        return LessonRun(_shipped_copy(shipped, output), f"the shipped adapter {shipped.parent.name}/{shipped.name} "
                         f"(no finished run in {output})", config)
    if config.profile == "smoke":
        return LessonRun(train_or_load(config), "trained now: the smoke profile ships no adapter and trains in "
                         "seconds (plumbing only)", config)
    fallback = shipped_adapter(FALLBACK_PROFILE)
    if fallback is None:
        raise ConfigError(f"no finished run in {output} and no shipped adapter to fall back on: set TRAIN = True")
    from .config import train_config

    stand_in = train_config(FALLBACK_PROFILE, output_dir=str(output.with_name(FALLBACK_PROFILE)),
                            data_dir=config.data_dir)
    check_same_settings(stand_in, fallback)
    how = (f"the shipped adapter {fallback.parent.name}/{fallback.name} (profile {FALLBACK_PROFILE!r}, "
           f"{stand_in.model}): {output} holds no finished run and profile {config.profile!r} ships no adapter, so "
           f"nothing was trained. To study a {config.profile!r} run, set TRAIN = True in lesson 03 (RUNS on Google "
           "Drive keeps it for lesson 04)")
    return LessonRun(_shipped_copy(fallback, stand_in.output_dir), how, stand_in)


def _shipped_copy(shipped: Path, output: str | Path) -> Path:
    """A copy of a shipped adapter at `<output>-shipped`, made once, so evaluations never write into the repo."""
    output = Path(output)
    copy = output.with_name(output.name + "-shipped")
    if not (copy / RUN_CONFIG).is_file():
        staging = copy.with_name(copy.name + ".partial")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(shipped, staging)
        staging.rename(copy)
    return copy


def save_run(trainer, config: TrainConfig, dataset: Dataset, metrics: dict, wall_time: float,
             folder: Path | None = None) -> None:
    """Adapter, tokenizer, loss history and curve, then run_config.json last (its presence marks a finished run).

    `folder` is where to write (a staging folder when overwriting); the record names `config.output_dir`."""
    output = Path(folder or config.output_dir)
    staging = output / ".saving"
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging)
    trainer.processing_class.save_pretrained(staging)
    _portable_base_name(staging / "adapter_config.json", config.model)
    _base_notice(staging, config.model)
    for item in staging.iterdir():
        item.replace(output / item.name)
    staging.rmdir()
    # A run shorter than logging_steps logs no step loss: its record holds the final training loss instead.
    history = loss_history(trainer.state.log_history) or [
        {"step": trainer.state.global_step, "epoch": round(trainer.state.epoch or 0.0, 4),
         "loss": metrics.get("train_loss"), "learning_rate": None}]
    write_json(output / LOSS_HISTORY, history)
    save_loss_curve(history, output / LOSS_CURVE)
    write_json(output / RUN_CONFIG, {
        "config": config.to_dict(),
        "data_source": data_source(config.data_dir),
        "examples": len(trainer.train_dataset),
        "examples_per_class": class_counts(dataset),
        "steps": trainer.state.global_step,
        "final_loss": history[-1]["loss"] if history else None,
        "train_loss": metrics.get("train_loss"),
        "wall_time_s": round(wall_time, 1),
        "examples_per_s": round(metrics.get("train_samples_per_second", 0.0), 3),
        "parameters": trainable_parameters(trainer.model),
        "fingerprints": fingerprints(config.model, output),
        "hardware": hardware(),
        "versions": versions(),
    })


def _base_notice(folder: Path, model: str) -> None:
    """The notice a base's terms ask every copy of a derivative to carry (Gemma's), written beside the adapter with
    the terms themselves (copied from the converted base)."""
    from .config import cache_dir
    from .models import EMBEDDED

    embedded = EMBEDDED.get(model)
    if embedded is None or not embedded.derivative_notice:
        return
    (folder / "NOTICE").write_text(embedded.derivative_notice)
    for member in embedded.notices:
        terms = cache_dir() / embedded.folder / Path(member).name
        if terms.is_file() and terms.suffix == ".html":
            shutil.copyfile(terms, folder / terms.name)


def _portable_base_name(adapter_config: Path, model: str) -> None:
    """Name the base by its Hub id, not this machine's cache path, so the adapter loads elsewhere too.

    hwlib itself loads the base from run_config.json's preset (for smollm2-135m: the dequantized Q4_1 copy).
    """
    from .models import PRESETS

    preset = PRESETS.get(model)
    if preset is None or preset.portable_name is None:
        return
    settings = json.loads(adapter_config.read_text())
    settings["base_model_name_or_path"] = preset.portable_name
    write_json(adapter_config, settings)


def loss_history(log_history: list[dict]) -> list[dict]:
    """The training-loss entries of a Trainer log: step, epoch, loss, learning rate."""
    return [
        {"step": entry["step"], "epoch": round(entry.get("epoch", 0.0), 4), "loss": entry["loss"],
         "learning_rate": entry.get("learning_rate")}
        for entry in log_history
        if "loss" in entry
    ]


def save_loss_curve(history: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    from .files import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.2))
    plot_loss(history, ax)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def plot_loss(history: list[dict], ax=None):
    """Seaborn line plot of training loss against step."""
    import pandas as pd
    import seaborn as sns

    ax = sns.lineplot(data=pd.DataFrame(history), x="step", y="loss", marker="o", ax=ax)
    ax.set_title("training loss (answer tokens only)")
    return ax


def hardware() -> dict:
    import torch
    from accelerate import PartialState

    return {"device": device(), "compute_dtype": dtype_name(compute_dtype()),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "processes": PartialState().num_processes, "machine": machine()}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("hwlib", "torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:
            found[name] = "not installed"
    return found
