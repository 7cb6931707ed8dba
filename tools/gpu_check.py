"""The CUDA path in one short check: the `smoke` profile in 4-bit NF4, with fp16 forced and with bf16.

For each dtype it trains (stopping after 2 of 4 steps), resumes to the end, trains the same run uninterrupted for
comparison, evaluates before/after, and prints what it used. It needs no Hub and no real weights (`tiny-random` is
built locally), so it runs as it is on any CUDA machine:

    python tools/gpu_check.py               # on a CUDA GPU: float16, then bfloat16 (skipped where not native)
    python tools/gpu_check.py --cpu         # the same steps on the CPU in float32, to check this script (CI)

Exit status 0 when every step ran; the last line is a JSON summary per dtype. `pytest -m gpu` runs it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def one(dtype: str, output: Path) -> dict:
    """Train, interrupt, resume, compare and evaluate in this process with `dtype` as the compute dtype."""
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from hwlib.config import compute_dtype, device, eval_config, train_config
    from hwlib.pipeline import evaluate_run
    from hwlib.train import read_run, train

    class StopAtStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2

    report = {"dtype_requested": dtype, "device": device(), "compute_dtype": str(compute_dtype()).split(".")[-1]}
    if device() == "cuda":
        report["gpu"] = torch.cuda.get_device_name()
        report["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        torch.cuda.reset_peak_memory_stats()
    resumed = train_config("smoke", output_dir=str(output / "resumed"))
    train(resumed, callbacks=[StopAtStep2()])
    report["stopped_at_step_2"] = not (output / "resumed" / "run_config.json").exists()
    train(resumed, resume=True)
    straight = train_config("smoke", output_dir=str(output / "straight"))
    train(straight)
    a = load_file(output / "resumed" / "adapter_model.safetensors")
    b = load_file(output / "straight" / "adapter_model.safetensors")
    report["resume_bit_identical"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    report["resume_max_abs_difference"] = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    record = read_run(output / "resumed")
    report["run_config_compute_dtype"] = record["hardware"]["compute_dtype"]
    report["adapter_dtype"] = record["parameters"]["trainable_dtype"]
    folders = evaluate_run(output / "resumed", eval_config("smoke"), progress=False)
    metrics = json.loads((folders["fine-tuned"] / "metrics.json").read_text())
    report["evaluated_rows"] = metrics["rows"]
    report["evaluated_weights"] = metrics["weights"]
    if device() == "cuda":
        report["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return report


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--one":
        print("REPORT " + json.dumps(one(argv[1], Path(argv[2]))))
        return 0
    import torch

    on_cpu = argv == ["--cpu"]
    if not on_cpu and not torch.cuda.is_available():
        print("no CUDA GPU visible: run this on a GPU machine, or `--cpu` to check the script itself")
        return 2
    plans = ["float32"] if on_cpu else ["float16", "bfloat16"]
    reports, failed = [], False
    for dtype in plans:
        if dtype == "bfloat16" and torch.cuda.get_device_capability() < (8, 0):
            reports.append({"dtype_requested": dtype, "skipped": "bf16 is not native on this GPU (compute capability "
                            f"{'.'.join(map(str, torch.cuda.get_device_capability()))}); hwlib uses fp16 here"})
            continue
        env = {**os.environ, "HWLIB_COMPUTE_DTYPE": dtype, "HWLIB_PROFILE": "smoke"}
        if on_cpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        with tempfile.TemporaryDirectory(prefix=f"gpu-check-{dtype}-") as folder:
            result = subprocess.run([sys.executable, __file__, "--one", dtype, folder], env=env, capture_output=True,
                                    text=True)
        lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
        if result.returncode != 0 or not lines:
            failed = True
            reports.append({"dtype_requested": dtype, "failed": result.stderr.strip().splitlines()[-5:]})
        else:
            reports.append(json.loads(lines[-1].removeprefix("REPORT ")))
        print(json.dumps(reports[-1]), flush=True)
    print(json.dumps(reports))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
