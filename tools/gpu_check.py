"""The CUDA path in one short check: every lesson top to bottom and an interrupted training resumed, on the `smoke`
profile (a 2-layer random model built locally, 4-bit NF4), with fp16 forced and with bf16. It reads nothing from the
Hub, and it writes one JSON report.

    python tools/gpu_check.py prepare       # here, with the internet: wheels a bare GPU machine lacks, into build/
    python tools/gpu_check.py               # on a CUDA GPU: float16, then bfloat16 (skipped where not native)
    python tools/gpu_check.py --cpu         # the same steps on the CPU in float32, to check this script (CI)

A GPU machine that has torch, transformers and peft but not trl, bitsandbytes or datasets gets them from
`build/gpu-check/wheels/` (made by `prepare`, installed with `pip --no-index --no-deps`); what is still missing is
reported and its steps skipped, with the reason. The report goes to `--report PATH`, else `$OUT/gpu-check.json` where
`$OUT` is set, else `build/gpu-check/report.json`. Exit status 0 when every step that ran passed. The lessons run from
their `.py` sources (py:percent cells, Colab-only cells skipped), each in its own process like a notebook kernel,
in one scratch folder so lesson 04 finds lesson 03's run. `pytest -m gpu` runs this on CUDA; tests run `--cpu`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "build" / "gpu-check" / "wheels"
# What hwlib and the lessons import beyond the GPU machine's torch/transformers/peft/accelerate/pandas/seaborn/sklearn.
# pyarrow (55 MB) would not fit the 64 MiB that travels with the tree; the machine's pandas must bring its own.
EXTRA_WHEELS = ("trl==1.16.0", "datasets", "bitsandbytes", "dill", "xxhash", "multiprocess", "gguf")
NEEDED_MODULES = ("trl", "datasets", "bitsandbytes", "pyarrow", "gguf", "sklearn", "seaborn")
LESSON_CELL = "<lesson"


def lesson_cells(source: Path) -> list[str]:
    """The code cells of a py:percent lesson, without the Colab-only ones (marked NBVAL_SKIP)."""
    cells, current, kind = [], [], None
    for line in source.read_text().splitlines() + ["# %%"]:
        if line.startswith("# %%"):
            if kind == "code" and "NBVAL_SKIP" not in "\n".join(current):
                cells.append("\n".join(current).strip())
            current, kind = [], "markdown" if "[markdown]" in line else "code"
        else:
            current.append(line)
    return [cell for cell in cells if cell]


def run_lesson(source: Path, namespace: dict | None = None, stop_after: str | None = None) -> dict:
    """Execute a lesson's code cells in order in `namespace` and return it. Cells are compiled as
    `<lesson NAME cell I>`, so a tool watching the code (tests/simulated_device.py) can tell the lesson's from a
    library's. `stop_after`: stop after the first cell containing that text."""
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    for index, cell in enumerate(lesson_cells(source)):
        exec(compile(cell, f"{LESSON_CELL} {source.stem} cell {index}>", "exec"), namespace)
        if stop_after is not None and stop_after in cell:
            break
    return namespace


def resume_check(output: Path) -> dict:
    """Train the smoke profile, stop after 2 of 4 steps, resume, compare with an uninterrupted run, evaluate."""
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from hwlib.config import compute_dtype, device, eval_config, train_config
    from hwlib.pipeline import evaluate_run
    from hwlib.runs import RUN_CONFIG, read_run
    from hwlib.train import train

    class StopAtStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2

    report = {"device": device(), "compute_dtype": str(compute_dtype()).split(".")[-1]}
    if device() == "cuda":
        report["gpu"] = torch.cuda.get_device_name()
        report["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        torch.cuda.reset_peak_memory_stats()
    resumed = train_config("smoke", output_dir=str(output / "resumed"))
    train(resumed, callbacks=[StopAtStep2()])
    report["stopped_at_step_2"] = not (output / "resumed" / RUN_CONFIG).exists()
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


def child(step: str, folder: Path) -> dict:
    """One step in this process: `resume`, or a lesson's file name (run with `folder`/notebooks as its folder)."""
    if step == "resume":
        return resume_check(folder / "resume")
    import matplotlib

    matplotlib.use("Agg")
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    os.chdir(folder / "notebooks")
    started = time.perf_counter()
    run_lesson(ROOT / "notebooks" / step)
    return {"seconds": round(time.perf_counter() - started, 1)}


def missing_modules() -> list[str]:
    return [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]


def install_wheels() -> list[str]:
    """Install the prepared wheels for what this machine lacks (offline); return what is still missing."""
    missing = missing_modules()
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    if missing and wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels)],
                       check=False)
        importlib.invalidate_caches()
        missing = missing_modules()
    return missing


def prepare() -> int:
    """Download the extra wheels (no dependencies) into build/gpu-check/wheels and print their size."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                    "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", "-d", str(WHEELS),
                    *EXTRA_WHEELS], check=True)
    size = sum(p.stat().st_size for p in WHEELS.glob("*.whl"))
    print(f"{size / 2**20:.1f} MiB of wheels in {WHEELS.relative_to(ROOT)}: carry it with the tree "
          "(the device tool's carry: ['build/gpu-check'])")
    return 0


def report_path(argv: list[str]) -> Path:
    if "--report" in argv:
        return Path(argv[argv.index("--report") + 1])
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu-check.json"
    return ROOT / "build" / "gpu-check" / "report.json"


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--child":
        print("REPORT " + json.dumps(child(argv[1], Path(argv[2]))))
        return 0
    if argv[:1] == ["prepare"]:
        return prepare()
    import torch

    on_cpu = "--cpu" in argv
    if not on_cpu and not torch.cuda.is_available():
        print("no CUDA GPU visible: run this on a GPU machine, or `--cpu` to check the script itself")
        return 2
    missing = install_wheels()
    report = {"device": "cpu" if on_cpu else torch.cuda.get_device_name(), "torch": torch.__version__,
              "missing_modules": missing, "dtypes": []}
    steps = ["resume", *(source.name for source in sorted((ROOT / "notebooks").glob("0*_*.py")))]
    failed = False
    for dtype in ["float32"] if on_cpu else ["float16", "bfloat16"]:
        entry = {"dtype_requested": dtype, "steps": {}}
        report["dtypes"].append(entry)
        if dtype == "bfloat16" and torch.cuda.get_device_capability() < (8, 0):
            entry["skipped"] = ("bf16 is not native on this GPU (compute capability "
                                f"{'.'.join(map(str, torch.cuda.get_device_capability()))}); hwlib uses fp16 here")
            continue
        if missing:
            entry["skipped"] = f"not installed here, and no wheel in build/gpu-check/wheels: {', '.join(missing)}"
            failed = True
            continue
        env = {**os.environ, "HWLIB_COMPUTE_DTYPE": dtype, "HWLIB_PROFILE": "smoke", "MPLBACKEND": "Agg"}
        if on_cpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        with tempfile.TemporaryDirectory(prefix=f"gpu-check-{dtype}-") as folder:
            for step in steps:
                started = time.perf_counter()
                result = subprocess.run([sys.executable, __file__, "--child", step, folder], env=env,
                                        capture_output=True, text=True)
                lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
                if result.returncode != 0 or not lines:
                    failed = True
                    entry["steps"][step] = {"failed": result.stderr.strip().splitlines()[-8:]}
                else:
                    entry["steps"][step] = json.loads(lines[-1].removeprefix("REPORT "))
                entry["steps"][step]["wall_s"] = round(time.perf_counter() - started, 1)
                print(json.dumps({dtype: {step: entry["steps"][step]}}), flush=True)
    report["passed"] = not failed
    path = report_path(argv)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
