"""The CUDA path in one short check: every lesson top to bottom and an interrupted training resumed, on the `smoke`
profile (a 2-layer random model built locally, 4-bit NF4), with fp16 forced and with bf16. It reads nothing from the
Hub, and it writes one JSON report.

    python tools/gpu_check.py prepare --python 3.11 --platform manylinux_2_28_x86_64
                                            # here, with PyPI: wheels for the GPU machine's Python and platform
    python tools/gpu_check.py               # on a CUDA GPU: float16, then bfloat16 (skipped where not native)
    python tools/gpu_check.py --cpu         # the same steps on the CPU in float32, to check this script (CI)

`hwlib` is found from this clone (the children run with it on PYTHONPATH), never installed. Before anything runs,
every module the library, the lessons and their solutions import is looked up (`needed_modules`, read from their
sources); what is missing is installed offline from `build/gpu-check/wheels/` (made by `prepare` for the Python and
platform named there, checked before anything is downloaded) into `build/gpu-check/site/`, which the children put on
their path; anything still missing is reported and nothing runs. Each step has its own time limit
(`--step-timeout`, 480 s), and the report is rewritten after every step: to `--report PATH`, else `$OUT/gpu-check.json`
where `$OUT` is set, else `build/gpu-check/report.json`. Exit status 0 when every step passed. The lessons run from
their `.py` sources (py:percent cells, Colab-only cells skipped), each in its own process like a notebook kernel,
in one scratch folder so lesson 04 finds lesson 03's run. `pytest -m gpu` runs this on CUDA; tests run `--cpu`.

Not yet here: splitting the wheels into parts of at most 64 MiB for a machine that takes a limited copy per call,
and a step at the real model's logit scale (the smoke model's logits are near 0.1 and hide half-precision rounding;
`tools/half_precision.py` measures the real model on a CPU with `HWLIB_COMPUTE_DTYPE`).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "build" / "gpu-check" / "wheels"
SITE = ROOT / "build" / "gpu-check" / "site"  # where missing packages are installed; on the children's path
# Module names whose distribution on PyPI is named otherwise.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "pyyaml", "IPython": "ipython", "PIL": "pillow",
                 "safetensors": "safetensors", "py3langid": "py3langid", "filelock": "filelock"}
LESSON_CELL = "<lesson"
STEP_TIMEOUT = 480  # seconds per step; a device call is limited to about 9 minutes


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


def needed_modules() -> list[str]:
    """Every top-level module that hwlib, the lessons and their solutions import, standard library and hwlib left out:
    read from their sources, so a new import is checked without a list to keep."""
    sources = [*sorted((ROOT / "hwlib").glob("*.py")), *sorted((ROOT / "notebooks").glob("0*_*.py")),
               *sorted((ROOT / "notebooks" / "solutions").glob("0*_*.py"))]
    found = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    optional = {"google"}  # Colab's own module, imported only inside Colab
    return sorted(found - set(sys.stdlib_module_names) - {"hwlib", "__future__"} - optional)


def missing_modules() -> list[str]:
    return [name for name in needed_modules() if importlib.util.find_spec(name) is None]


def install_wheels() -> list[str]:
    """Install the prepared wheels into SITE, offline, for what this machine lacks; return what is still missing."""
    if str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))
    missing = missing_modules()
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    if missing and wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(SITE),
                        *map(str, wheels)], check=False)
        importlib.invalidate_caches()
        missing = missing_modules()
    return missing


def prepare(python: str, platform: str) -> int:
    """Download the wheels of every needed module that this environment has (their installed versions, no
    dependencies beyond them) for the GPU machine's `python` (3.10 to 3.13) and `platform`, into WHEELS."""
    if not re.fullmatch(r"3\.1[0-3]", python):
        raise SystemExit(f"--python {python!r}: give the GPU machine's Python as 3.10, 3.11, 3.12 or 3.13")
    if not re.fullmatch(r"(manylinux\w*|linux)_(x86_64|aarch64)", platform):
        raise SystemExit(f"--platform {platform!r}: give a Linux wheel platform such as manylinux_2_28_x86_64")
    from importlib import metadata

    wanted = []
    for module in needed_modules():
        name = DISTRIBUTIONS.get(module, module)
        if name == "torch":
            continue  # the GPU machine brings its own CUDA build
        try:
            wanted.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{module} is imported but {name} is not installed here: install it, then prepare")
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                    "--python-version", python, "--platform", platform, "-d", str(WHEELS), *wanted], check=True)
    size = sum(p.stat().st_size for p in WHEELS.glob("*.whl"))
    print(f"{size / 2**20:.1f} MiB of wheels for Python {python} on {platform} in {WHEELS.relative_to(ROOT)}")
    return 0


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


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
        named = dict(zip(argv[1::2], argv[2::2]))
        if set(named) != {"--python", "--platform"}:
            raise SystemExit("usage: python tools/gpu_check.py prepare --python 3.11 --platform manylinux_2_28_x86_64")
        return prepare(named["--python"], named["--platform"])
    import torch

    on_cpu = "--cpu" in argv
    if not on_cpu and not torch.cuda.is_available():
        print("no CUDA GPU visible: run this on a GPU machine, or `--cpu` to check the script itself")
        return 2
    path = report_path(argv)
    step_timeout = int(argv[argv.index("--step-timeout") + 1]) if "--step-timeout" in argv else STEP_TIMEOUT
    missing = install_wheels()
    report = {"device": "cpu" if on_cpu else torch.cuda.get_device_name(), "torch": torch.__version__,
              "missing_modules": missing, "dtypes": []}
    write_report(report, path)
    if missing:
        report["passed"] = False
        write_report(report, path)
        print(f"missing, and no wheel for them in {WHEELS.relative_to(ROOT)}: {', '.join(missing)}; nothing ran")
        return 1
    steps = ["resume", *(source.name for source in sorted((ROOT / "notebooks").glob("0*_*.py")))]
    failed = False
    for dtype in ["float32"] if on_cpu else ["float16", "bfloat16"]:
        entry = {"dtype_requested": dtype, "steps": {}}
        report["dtypes"].append(entry)
        if dtype == "bfloat16" and torch.cuda.get_device_capability() < (8, 0):
            entry["skipped"] = ("bf16 is not native on this GPU (compute capability "
                                f"{'.'.join(map(str, torch.cuda.get_device_capability()))}); hwlib uses fp16 here")
            continue
        path_entries = [str(ROOT), str(SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "HWLIB_COMPUTE_DTYPE": dtype, "HWLIB_PROFILE": "smoke", "MPLBACKEND": "Agg",
               "PYTHONPATH": os.pathsep.join(path_entries)}
        if on_cpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        with tempfile.TemporaryDirectory(prefix=f"gpu-check-{dtype}-") as folder:
            for step in steps:
                started = time.perf_counter()
                try:
                    result = subprocess.run([sys.executable, __file__, "--child", step, folder], env=env,
                                            capture_output=True, text=True, timeout=step_timeout)
                    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
                    if result.returncode != 0 or not lines:
                        failed = True
                        entry["steps"][step] = {"failed": result.stderr.strip().splitlines()[-8:]}
                    else:
                        entry["steps"][step] = json.loads(lines[-1].removeprefix("REPORT "))
                except subprocess.TimeoutExpired:
                    failed = True
                    entry["steps"][step] = {"failed": [f"stopped after its limit of {step_timeout} s"]}
                entry["steps"][step]["wall_s"] = round(time.perf_counter() - started, 1)
                write_report(report, path)
                print(json.dumps({dtype: {step: entry["steps"][step]}}), flush=True)
    report["passed"] = not failed
    write_report(report, path)
    print(json.dumps(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
