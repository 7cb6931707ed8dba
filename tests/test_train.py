import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hwlib.config import agreement_tolerance, compute_dtype, train_config
from hwlib.data import load_split
from hwlib.evaluate import generate, weights
from hwlib.models import load_adapter, load_model
from hwlib.prompts import answer, render_prompt
from hwlib.runs import read_run
from hwlib.train import RunExistsError, build_trainer, train, trainable_parameters


@pytest.fixture
def smoke_config(tmp_path, data_dir):
    return train_config("smoke", output_dir=str(tmp_path / "run"), data_dir=str(data_dir))


@pytest.fixture
def trainer(smoke_config):
    return build_trainer(smoke_config)


def test_only_lora_on_k_and_v_is_trainable(trainer, smoke_config):
    model = trainer.model
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(re.search(r"\.(k_proj|v_proj)\.lora_[AB]\.", name) for name in trainable)
    r = smoke_config.lora_r
    expected = 0
    for layer in model.base_model.model.model.layers:
        for module in (layer.self_attn.k_proj, layer.self_attn.v_proj):
            expected += r * (module.in_features + module.out_features)
    assert trainable_parameters(model)["trainable"] == expected


def test_adapter_weights_are_float32_master_weights(trainer):
    """TRL would store a 4-bit model's adapter in bf16; a resumed run reloads it in fp32, so hwlib keeps fp32."""
    assert weights(trainer.model) == "4-bit"
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}


def test_labels_cover_answer_and_end_of_turn_only(trainer):
    tokenizer = trainer.processing_class
    rows = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator(rows)
    for i, row in enumerate(rows):
        text = row["prompt"][1]["content"].removeprefix('Message: "').removesuffix('"')
        prompt_ids = tokenizer(render_prompt(tokenizer, text), add_special_tokens=False)["input_ids"]
        labels = batch["labels"][i]
        real = batch["attention_mask"][i].bool()
        assert (labels[: len(prompt_ids)] == -100).all()
        learned = tokenizer.decode(labels[real & (labels != -100)])
        assert learned == row["completion"][0]["content"] + "<|im_end|>\n"
        assert learned.startswith(answer("")[:-2])


def test_loss_goes_down_on_a_fixed_batch(trainer):
    model = trainer.model
    model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(6):
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def test_save_and_reload_give_identical_logits(trainer, tmp_path):
    trainer.train()
    model = trainer.model.eval()
    inputs = trainer.processing_class(["<|im_start|>user\nMessage: \"hi\"<|im_end|>\n"], return_tensors="pt")
    with torch.no_grad():
        before = model(**inputs).logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded, _ = load_model("tiny-random", "nf4", adapter=tmp_path / "adapter")
    with torch.no_grad():
        after = reloaded(**inputs).logits
    # Trained adapter weights compute in bf16; PEFT reloads them in fp32: equal up to that rounding.
    assert torch.allclose(before.float(), after.float(), atol=1e-2, rtol=1e-2)


def test_finished_run_folder(smoke_run):
    record = read_run(smoke_run)
    assert record["steps"] == 4 and record["config"]["profile"] == "smoke"
    assert record["examples"] == 48 and record["versions"]["trl"]
    history = json.loads((smoke_run / "loss_history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert (smoke_run / "loss_curve.png").stat().st_size > 5000
    model, _ = load_adapter(smoke_run)
    assert model.peft_config["default"].target_modules == {"k_proj", "v_proj"}


def test_saved_adapter_names_a_portable_base(tmp_path):
    """An adapter trained on a cached copy names the Hub model, not this machine's path."""
    from hwlib.train import _portable_base_name

    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"base_model_name_or_path": "/home/me/.cache/hwlib/smollm2-135m-instruct", "r": 8}))
    _portable_base_name(path, "smollm2-135m")
    assert json.loads(path.read_text()) == {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "r": 8}
    _portable_base_name(path, "tiny-random")  # built locally: no Hub name to give, the path stays
    assert json.loads(path.read_text())["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_existing_run_is_refused(smoke_run):
    config = train_config("smoke", output_dir=str(smoke_run))
    with pytest.raises(RunExistsError, match=r"--resume\).*--overwrite"):
        train(config)
    with pytest.raises(RunExistsError, match="finished run"):
        train(config, resume=True)


class StopAt(TrainerCallback):
    """Interrupts training after a given step, as a crash would (a checkpoint is saved at that step)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True
            control.should_training_stop = True


def test_resume_matches_uninterrupted_run(tmp_path, data_dir):
    straight = train(train_config("smoke", output_dir=str(tmp_path / "a"), data_dir=str(data_dir)))
    config = train_config("smoke", output_dir=str(tmp_path / "b"), data_dir=str(data_dir))
    train(config, callbacks=[StopAt(2)])
    assert not (tmp_path / "b" / "run_config.json").exists()
    resumed = train(config, resume=True)
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    differing = [k for k in a if not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]
    assert not differing, differing
    assert read_run(resumed)["steps"] == 4


@pytest.mark.slow
def test_data_parallel_two_processes_on_cpu(tmp_path, data_dir):
    """The `accelerate launch` path with 2 CPU processes (gloo), tiny-random without quantization.

    accelerate's `--cpu` flag runs a single process; `--multi_gpu` on a machine without CUDA runs N CPU
    processes over torch.distributed (gloo), which is the data-parallel path a multi-GPU run takes.
    """
    output = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "hwlib", "train", "--profile", "smoke", "--quantize", "none", "--output", str(output)]
    env = {**os.environ, "HWLIB_DATA_DIR": str(data_dir)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_run(output)
    assert record["config"]["quantize"] is None and record["hardware"]["processes"] == 2


@pytest.mark.slow
def test_smollm2_learns_the_answer_format(tmp_path, data_dir):
    """Real SmolLM2-135M in 4-bit: after 300 examples its greedy output follows the card's answer sentence."""
    import bitsandbytes as bnb

    # 25 steps: at the card's 5e-4 the model still quotes the label ('negative'), so this short run uses 2e-3
    config = train_config("cpu-card", output_dir=str(tmp_path / "smol"), data_dir=str(data_dir), train_size=300,
                          learning_rate=2e-3, save_steps=1000, logging_steps=5)
    run = train(config)
    model, tokenizer = load_adapter(run)
    assert isinstance(model.base_model.model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    held_out = load_split("validation", data_dir)["text"][:4]
    labels, raw = generate(model, tokenizer, held_out, progress=False)
    pattern = re.compile(r"Classifying the sentiment of the message as (negative|neutral|positive)\.")
    assert all(pattern.fullmatch(r.strip()) for r in raw), raw
    assert all(labels)


def test_changed_setting_is_refused_not_reused(smoke_run, data_dir):
    from hwlib.train import ConfigMismatchError, train_or_load

    same = train_config("smoke", output_dir=str(smoke_run), data_dir=str(data_dir))
    assert train_or_load(same) == smoke_run  # identical settings: the finished run is reused
    changed = train_config("smoke", output_dir=str(smoke_run), data_dir=str(data_dir), lora_dropout=0.1,
                           learning_rate=1e-3)
    with pytest.raises(ConfigMismatchError, match=r"lora_dropout: run has 0\.05, you asked for 0\.1") as error:
        train_or_load(changed)
    assert "learning_rate: run has 0.0005, you asked for 0.001" in str(error.value)
    assert "output_dir=" in str(error.value)  # the message says the ways out


def test_lesson_run_uses_the_shipped_adapter_without_training(tmp_path):
    from hwlib.runs import shipped_adapter
    from hwlib.train import ConfigMismatchError, lesson_run

    config = train_config("cpu", output_dir=str(tmp_path / "cpu"))
    run = lesson_run(config)
    run_dir = run.folder
    assert run_dir == tmp_path / "cpu-shipped" and "shipped adapter" in run.how and run.config == config
    assert read_run(run_dir) == read_run(shipped_adapter("cpu"))
    assert not (tmp_path / "cpu").exists()  # nothing trained
    with pytest.raises(ConfigMismatchError, match=r"lora_r: run has 16, you asked for 8"):
        lesson_run(train_config("cpu", output_dir=str(tmp_path / "cpu"), lora_r=8))


def test_every_shipped_adapter_was_trained_with_its_profile_settings():
    from hwlib.runs import SHIPPED_ADAPTERS, shipped_adapter
    from hwlib.train import check_same_settings

    for profile in SHIPPED_ADAPTERS:
        folder = shipped_adapter(profile)
        assert folder is not None, f"{profile}: data/adapters/{SHIPPED_ADAPTERS[profile]} is missing"
        check_same_settings(train_config(profile), folder)  # raises, naming each setting that drifted


def loss_and_gradients(model_name: str, quantize: str | None, shared: bool, tmp_path) -> tuple:
    """One batch of 12 through TRL's loss, plain or with the shared prefix; dropout off so both see the same net."""
    from hwlib.shared_prefix import shared_prefix_inputs

    config = train_config("smoke", output_dir=str(tmp_path / "run"), model=model_name, quantize=quantize,
                          lora_dropout=0.0, max_length=256)
    trainer = build_trainer(config)
    model = trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(12)])
    inputs = shared_prefix_inputs(model, dict(batch)) if shared else dict(batch)
    assert inputs is not None
    loss = super(type(trainer), trainer).compute_loss(model, inputs)  # TRL's own loss, on what we pass
    loss.backward()
    return loss.item(), [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]


# The two paths round differently: 1e-5 relative in fp32; in bf16 or fp16 (forced with HWLIB_COMPUTE_DTYPE, as on GPUs
# and AMX CPUs) 8 units in the dtype's last place (`hwlib.config.agreement_tolerance`). Measured on these batches:
# gradients 2.6e-3 apart in bf16 (eps 7.8e-3), 1.3e-3 in fp16 (eps 9.8e-4); losses 5e-6 or less.
ROUNDING = agreement_tolerance(compute_dtype(), float32=1e-5)


def relative_difference(a: list, b: list) -> float:
    return (torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b))) /
            torch.sqrt(sum((x ** 2).sum() for x in a))).item()


@pytest.mark.parametrize("model_name", ["tiny-random", "tiny-random-gemma3"])
@pytest.mark.parametrize("quantize", ["nf4", None])
def test_shared_prefix_gives_the_plain_loss_and_gradients(quantize, model_name, tmp_path):
    plain_loss, plain_grads = loss_and_gradients(model_name, quantize, False, tmp_path)
    shared_loss, shared_grads = loss_and_gradients(model_name, quantize, True, tmp_path)
    assert abs(plain_loss - shared_loss) <= ROUNDING * abs(plain_loss)
    assert relative_difference(plain_grads, shared_grads) <= ROUNDING


@pytest.mark.slow
def test_shared_prefix_on_a_real_smollm2_batch(tmp_path):
    plain_loss, plain_grads = loss_and_gradients("smollm2-135m", "nf4", False, tmp_path)
    shared_loss, shared_grads = loss_and_gradients("smollm2-135m", "nf4", True, tmp_path)
    assert abs(plain_loss - shared_loss) <= ROUNDING * abs(plain_loss)
    assert relative_difference(plain_grads, shared_grads) <= ROUNDING


@pytest.mark.parametrize("shared", [False, True])
def test_the_lm_head_projects_only_the_positions_in_the_loss(shared, tmp_path, monkeypatch):
    """`loss_positions_only`: TRL's fused LM head sees one row per answer token instead of every token, with the
    loss and LoRA gradients of TRL's default path (which projects every position off CUDA)."""
    import trl.trainer.utils as fused

    projected = []
    apply = fused._ChunkedLogProbFunction.apply
    monkeypatch.setattr(fused._ChunkedLogProbFunction, "apply",
                        lambda hidden, *args: projected.append(hidden.shape[0]) or apply(hidden, *args))

    def loss_and_grads(positions_only: bool):
        config = train_config("smoke", output_dir=str(tmp_path / "run"), lora_dropout=0.0, shared_prefix=shared,
                              loss_positions_only=positions_only)
        torch.manual_seed(0)
        trainer = build_trainer(config)
        model = trainer.model.train()
        batch = dict(trainer.data_collator([trainer.train_dataset[i] for i in range(12)]))
        projected.clear()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        return loss.item(), [p.grad.detach().clone() for p in model.parameters() if p.requires_grad], \
            sum(projected), batch

    every_loss, every_grads, every_rows, batch = loss_and_grads(False)
    only_loss, only_grads, only_rows, _ = loss_and_grads(True)
    answer_tokens = int((batch["labels"][:, 1:] != -100).sum())
    assert only_rows == answer_tokens < every_rows
    assert abs(every_loss - only_loss) <= ROUNDING * abs(every_loss)
    assert relative_difference(every_grads, only_grads) <= ROUNDING


def test_prompt_loss_trains_on_the_whole_conversation(tmp_path, data_dir):
    """`completion_only_loss=False` (the prompt-loss variant): every real token but the first is in the loss, and
    the shared prefix steps aside (it needs the prompt outside the loss)."""
    import logging

    config = train_config("smoke", output_dir=str(tmp_path / "run"), data_dir=str(data_dir),
                          completion_only_loss=False)
    trainer = build_trainer(config)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    real = batch["attention_mask"].bool()
    assert ((batch["labels"] != -100) == real).all()
    from hwlib.shared_prefix import shared_prefix_length

    assert shared_prefix_length(batch["input_ids"], batch["attention_mask"], batch["labels"]) == 0
    logger = logging.getLogger("hwlib.train")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler), logger.setLevel(logging.INFO)
    try:
        loss = trainer.compute_loss(trainer.model, dict(batch))
    finally:
        logger.removeHandler(handler)
    assert torch.isfinite(loss)
    assert any("the prompt is in the loss" in r.getMessage() for r in records)


def test_shared_prefix_length_rules():
    from hwlib.shared_prefix import shared_prefix_length

    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21]])
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    assert shared_prefix_length(ids, mask, labels) == 10
    labels[:, 9:] = ids[:, 9:]  # the loss starts inside the shared part: keep that token's predictor outside
    assert shared_prefix_length(ids, mask, labels) == 8
    assert shared_prefix_length(ids[:, :7], mask[:, :7], torch.full_like(ids[:, :7], -100)) == 0  # too short
    assert shared_prefix_length(ids[:1], mask[:1], labels[:1]) == 0  # one row: nothing to share


def test_rows_without_a_common_prefix_take_the_plain_path(tmp_path, caplog):
    import logging

    from hwlib.shared_prefix import shared_prefix_inputs

    trainer = build_trainer(train_config("smoke", output_dir=str(tmp_path / "run")))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    batch["input_ids"][1, :4] = batch["input_ids"][1, :4].flip(0) + 1  # the second row now starts differently
    assert shared_prefix_inputs(trainer.model, dict(batch)) is None
    with caplog.at_level(logging.INFO, logger="hwlib.train"):
        loss = trainer.compute_loss(trainer.model, dict(batch))
    assert torch.isfinite(loss) and "shared prefix not used: the rows share no prefix" in caplog.text


def test_learning_curve_points_resume_and_summarise(tmp_path, data_dir):
    """Two seeds of one point (smoke: plumbing only), then a second call that reuses both instead of training."""
    from hwlib.search import curve_summary, curve_table, plot_curve, run_curve

    root = tmp_path / "curve"
    rows = run_curve(root, sizes=(24,), samplings=("balanced",), seeds=(1, 2), data_dir=str(data_dir),
                     progress=False, profile="smoke")
    assert [(r["train_rows"], r["sampling"], r["seed"]) for r in rows] == [(24, "balanced", 1), (24, "balanced", 2)]
    assert [read_run(root / f"balanced-24-seed{s}")["config"]["seed"] for s in (1, 2)] == [1, 2]
    stamps = [(root / f"balanced-24-seed{s}" / "run_config.json").stat().st_mtime_ns for s in (1, 2)]
    again = run_curve(root, sizes=(24,), samplings=("balanced",), seeds=(1, 2), data_dir=str(data_dir),
                      progress=False, profile="smoke")
    assert again == rows  # finished points are reused, not retrained
    assert stamps == [(root / f"balanced-24-seed{s}" / "run_config.json").stat().st_mtime_ns for s in (1, 2)]
    assert json.loads((root / "curve.json").read_text())["rows"] == rows
    summary = curve_summary(rows)
    assert summary["seeds"].tolist() == [2]
    assert summary["macro_f1_mean"].iloc[0] == pytest.approx(sum(r["validation_macro_f1"] for r in rows) / 2)
    assert "| k_proj,v_proj | balanced | 24 | 2 |" in curve_table(rows)
    assert plot_curve(rows).get_xscale() == "log"


def test_variants_train_from_the_cli_and_are_tabled_against_the_recipe_seeds(tmp_path, data_dir):
    """`python -m hwlib variants` on the smoke profile (plumbing only): each variant trains with its one change (the
    Gemma one on a tiny random Gemma 3) and is scored on validation; the table puts it beside the shipped recipe's
    seeds in units of their spread."""
    from hwlib.search import VARIANTS, variant_settings, variants_table

    output = tmp_path / "variants"
    result = subprocess.run([sys.executable, "-m", "hwlib", "variants", "--profile", "smoke", "--names",
                             ",".join(VARIANTS), "--output", str(output), "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((output / "variants.json").read_text())
    assert [r["variant"] for r in record["rows"]] == sorted(VARIANTS)
    for row in record["rows"]:
        config = read_run(output / f"{row['variant']}-seed42")["config"]
        changes = variant_settings(row["variant"], "smoke")  # a swapped base trains its tiny stand-in here
        assert row["changes"] == changes and all(config[name] == value for name, value in changes.items())
    recipe = {"seeds": [{"validation_macro_f1": 0.60, "validation_macro_recall": 0.70},
                        {"validation_macro_f1": 0.62, "validation_macro_recall": 0.72}]}
    rows = [{"variant": "x", "seed": s, "validation_macro_f1": f, "validation_macro_recall": 0.7, "train_min": 1.0}
            for s, f in ((42, 0.64), (43, 0.66))]
    table = variants_table({"rows": rows}, recipe)
    sd = 0.02 ** 0.5 * 0.1  # the sample sd of 0.60 and 0.62
    assert f"| x | 2 | 0.6500 ± 0.0141 | 0.7000 ± 0.0000 | +0.0400 ({0.04 / sd:+.2f}) | 1.0 | not read |" in table
    assert table.splitlines()[2] == "| `cpu` recipe | 2 | 0.6100 ± 0.0141 | 0.7100 ± 0.0141 | — | — | not read |"
    recipe["seeds"][0]["test_macro_f1"] = 0.68  # test read for the chosen recipe only: shown in its row alone
    table = variants_table({"rows": rows}, recipe, {"variant": "card", "validation_macro_f1": 0.5,
                                                    "validation_macro_recall": 0.5, "train_min": 2.0,
                                                    "test_macro_f1": 0.55})
    assert table.splitlines()[2].endswith("| — | — | 0.6800 |") and "| 2.0 | 0.5500 |" in table
    assert table.splitlines()[-1].endswith("| 1.0 | not read |")
    assert all(f"| {name} | 1 |" in result.stdout for name in VARIANTS)  # the CLI prints the table


def test_a_learning_rate_trial_names_the_rate_kept_and_the_kept_rate_is_judged_once_it_has_seeds():
    from hwlib.search import RATE_TRIALS, variant_findings

    trial, of = next(iter(RATE_TRIALS.items()))
    recipe = {"seeds": [{"validation_macro_f1": f} for f in (0.64, 0.65, 0.66)]}
    rows = [{"variant": of, "seed": 42, "validation_macro_f1": 0.66},
            {"variant": trial, "seed": 42, "validation_macro_f1": 0.65}]
    found = variant_findings({"rows": rows}, recipe)
    assert all(f"{of}'s rate is the one given more seeds" in line for line in found)
    rows += [{"variant": of, "seed": seed, "validation_macro_f1": 0.70} for seed in (43, 44)]
    found = {line.split(" (")[0]: line for line in variant_findings({"rows": rows}, recipe)}
    assert "beyond two deviations: better than the recipe" in found[of]
    assert "given more seeds" in found[trial]


def test_curve_command_refuses_bad_sizes():
    result = subprocess.run([sys.executable, "-m", "hwlib", "curve", "--sizes", "600,lots"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--sizes '600,lots': give positive whole numbers" in result.stderr


def test_the_main_job_says_nothing_of_the_known_harmless_notices(tmp_path, data_dir):
    """No bitsandbytes kernels notice and no FutureWarning on a CPU run by default; HWLIB_VERBOSE=1 shows them."""
    command = [sys.executable, "-m", "hwlib", "run", "--profile", "smoke", "--output", str(tmp_path / "run"),
               "--data-dir", str(data_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "HWLIB_VERBOSE": ""})
    shown = result.stdout + result.stderr
    assert result.returncode == 0, shown[-2000:]
    assert "kernels-community" not in shown and "FutureWarning" not in shown
    assert "macro-F1" in shown  # hwlib's own lines are kept
    verbose = subprocess.run([*command[:-4], "--output", str(tmp_path / "again"), *command[-2:]], capture_output=True,
                             text=True, timeout=600, env={**os.environ, "HWLIB_VERBOSE": "1"})
    assert verbose.returncode == 0, (verbose.stdout + verbose.stderr)[-2000:]
    from bitsandbytes.functional import has_avx512bf16

    if has_avx512bf16():  # bitsandbytes looks for the Hub kernel only on CPUs with AVX-512 BF16 (AMX ones have it)
        assert "kernels-community" in verbose.stdout + verbose.stderr


def test_training_and_evaluation_records_name_their_machine_class(smoke_run, tmp_path, data_dir):
    """Times mean little without the machine: every new record names the processor and the instruction sets."""
    from hwlib.config import INSTRUCTION_SETS, eval_config
    from hwlib.evaluate import evaluate, read_metrics

    trained = read_run(smoke_run)["hardware"]["machine"]
    assert trained["processor"] and trained["cpu_cores"] >= 1 and set(trained["instruction_sets"]) <= set(INSTRUCTION_SETS)
    model, tokenizer = load_adapter(smoke_run, merged=True)
    evaluate(model, tokenizer, eval_config("smoke", limit=6), tmp_path / "eval", "tiny-random", str(smoke_run),
             str(data_dir), progress=False)
    assert read_metrics(tmp_path / "eval")["machine"] == trained
