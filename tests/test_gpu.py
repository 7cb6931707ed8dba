"""The prepared GPU check (tools/gpu_check.py): its plumbing on the CPU here, the CUDA path where a GPU is visible."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "gpu_check.py"


def run_check(*args: str) -> list[dict]:
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_gpu_check_runs_its_steps_on_the_cpu():
    (report,) = run_check("--cpu")
    assert report["device"] == "cpu" and report["compute_dtype"] == "float32" == report["run_config_compute_dtype"]
    assert report["stopped_at_step_2"] and report["resume_bit_identical"]
    assert report["adapter_dtype"] == "float32" and report["evaluated_rows"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
def test_cuda_path_in_fp16_and_bf16():
    reports = run_check()
    fp16 = reports[0]
    assert fp16["device"] == "cuda" and fp16["compute_dtype"] == "float16" == fp16["run_config_compute_dtype"]
    assert fp16["stopped_at_step_2"] and fp16["evaluated_rows"] > 0
    bf16 = reports[1]
    assert "skipped" in bf16 or bf16["compute_dtype"] == "bfloat16" == bf16["run_config_compute_dtype"]
