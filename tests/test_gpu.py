"""The GPU path: the prepared check (tools/gpu_check.py) on the CPU here and on CUDA where visible, and the lessons
proven device-correct and Colab-safe without a GPU."""

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
import torch

from .simulated_device import DeviceMixError, SimulatedAccelerator

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "gpu_check.py"


CHECK = runpy.run_path(str(SCRIPT))
run_lesson = CHECK["run_lesson"]
LESSONS = runpy.run_path(str(SCRIPT.parent / "notebooks.py"))["sources"]()
LESSON_FILE = CHECK["LESSON_CELL"]


def run_check(tmp_path, *args: str) -> dict:
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(SCRIPT), *args, "--report", str(report)], capture_output=True,
                            text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads(report.read_text())


def test_the_gpu_check_runs_its_steps_on_the_cpu(tmp_path):
    report = run_check(tmp_path, "--cpu")
    assert report["passed"] and report["missing_modules"] == []
    (entry,) = report["dtypes"]
    resume = entry["steps"]["resume"]
    assert resume["device"] == "cpu" and resume["compute_dtype"] == "float32" == resume["run_config_compute_dtype"]
    assert resume["stopped_at_step_2"] and resume["resume_bit_identical"]
    assert resume["adapter_dtype"] == "float32" and resume["evaluated_rows"] > 0
    assert [name for name in entry["steps"] if name != "resume"] == [source.name for source in LESSONS]
    assert all("seconds" in entry["steps"][source.name] for source in LESSONS)


def test_the_checks_cells_are_the_notebooks_code_cells():
    """gpu_check reads the lessons without jupytext (the GPU machine lacks it): the same cells jupytext reads."""
    for source in LESSONS:
        cells = [c.source.strip() for c in jupytext.read(source).cells
                 if c.cell_type == "code" and "NBVAL_SKIP" not in c.source]
        assert CHECK["lesson_cells"](source) == cells, source.name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
def test_cuda_path_in_fp16_and_bf16(tmp_path):
    report = run_check(tmp_path)
    assert report["passed"]
    fp16, bf16 = report["dtypes"]
    assert fp16["steps"]["resume"]["compute_dtype"] == "float16" == fp16["steps"]["resume"]["run_config_compute_dtype"]
    assert "skipped" in bf16 or bf16["steps"]["resume"]["compute_dtype"] == "bfloat16"


# The lessons on a GPU, proven without one: each lesson's own cells, executed with the model on a simulated device
# (tests/simulated_device.py) that refuses to mix with CPU tensors as CUDA does.


@pytest.fixture
def lesson_folder(tmp_path, monkeypatch, smoke_run):
    """A working folder like notebooks/ whose `../runs/smoke` already holds a finished smoke run."""
    (tmp_path / "notebooks").mkdir()
    shutil.copytree(smoke_run, tmp_path / "runs" / "smoke")
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.setenv("HWLIB_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield tmp_path
    import matplotlib.pyplot as plt

    plt.close("all")


def test_the_simulated_device_refuses_what_cuda_refuses():
    """The yardstick itself: each mistake of a CPU-only lesson raises, the corrected code runs."""
    layer = torch.nn.Linear(4, 3)
    with SimulatedAccelerator((__file__,)):
        assert layer.weight.device != torch.device("cpu")
        with pytest.raises(DeviceMixError, match="Linear got an input"):
            layer(torch.ones(2, 4))  # an input built on the CPU
        with pytest.raises(DeviceMixError, match="same device"):
            layer.weight - torch.zeros(3, 4)  # arithmetic with a CPU tensor in the code under test
        with pytest.raises(TypeError, match="numpy"):
            layer.weight.detach().numpy()
        out = layer(torch.ones(2, 4, device=layer.weight.device))  # what the lessons do
        assert out.device == layer.weight.device and (out.detach().cpu() * 2).numpy().shape == (2, 3)
        assert (layer.weight * torch.tensor(2.0)).device == layer.weight.device  # 0-dim CPU tensors mix, as on CUDA


@pytest.mark.parametrize("source", LESSONS, ids=lambda p: p.stem)
def test_lessons_keep_every_tensor_on_the_models_device(source, lesson_folder):
    """Every tensor a lesson builds to compare with a model's takes that model's device (CPU or CUDA)."""
    with SimulatedAccelerator((LESSON_FILE,)):
        run_lesson(source)


@pytest.mark.parametrize("source", [s for s in LESSONS if "lesson_run(" in s.read_text()], ids=lambda p: p.stem)
def test_a_gpu_lesson_without_a_run_studies_the_shipped_adapter_and_never_trains(source, lesson_folder, monkeypatch):
    """Colab runs each notebook in its own runtime: with TRAIN = False and no run on a GPU profile, the lesson falls
    back to the shipped SmolLM2 adapter and says so, and training is never called."""
    import hwlib.train
    from hwlib import config

    def no_training(*args, **kwargs):
        raise AssertionError("the lesson trained although TRAIN = False")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hwlib.train, "train_or_load", no_training)
    config.device.cache_clear()
    monkeypatch.setenv("HWLIB_PROFILE", "gpu")
    try:
        namespace = run_lesson(source, stop_after="lesson_run(config")
    finally:
        config.device.cache_clear()
    run = namespace["run"]
    assert run.folder.resolve() == lesson_folder / "runs" / "cpu-shipped" and run.config.profile == "cpu"
    assert "nothing was trained" in run.how and "gpu" in run.how
    assert namespace["config"] == run.config  # the rest of the lesson studies that run, with its own settings


@pytest.mark.parametrize("source", LESSONS, ids=lambda p: p.stem)
def test_colab_setup_says_the_course_is_not_published_yet(source, monkeypatch):
    """Until REPO names a published repository, the Colab cell stops with one sentence instead of a git error."""
    setup = next(c.source for c in jupytext.read(source).cells if "google.colab" in c.source)
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setattr(os.path, "isdir", lambda path: False)
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("tried to clone the placeholder repository"))
    with pytest.raises(SystemExit, match="not published on GitHub yet"):
        exec(compile(setup, "<setup cell>", "exec"), {"__name__": "__main__"})
