"""A second device, simulated on the CPU, that refuses to mix with CPU tensors the way CUDA does.

Without a GPU, a lesson cell that builds a tensor on the CPU and combines it with a model's would pass here and fail
in Colab. Under `SimulatedAccelerator` every model parameter and buffer, and everything computed from them, counts as
living on `SIMULATED` (their `.device` says so); a tensor created with `device=<that device>` or moved there with
`.to(...)` joins them, while `.cpu()` brings a copy back. The values are real CPU values, so every assertion of a
lesson still runs. What raises, with CUDA's message:
- a module called with an input that is not on its device (the first thing CUDA checks, in `F.linear` or an
  embedding lookup);
- an operation written in the code under test (not inside a library) that mixes both devices;
- a device tensor turned into NumPy (pandas, matplotlib), which CUDA refuses too.
Zero-dimensional CPU tensors mix freely, as on CUDA.
"""

from __future__ import annotations

import sys

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

SIMULATED = torch.device("cpu", 1)
TAG = "_on_simulated_device"
TORCH_ROOT = str(torch.__file__).rsplit("/", 1)[0]
CROSSING = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.__getitem__, torch.Tensor.__setitem__,
            torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__array__}


def on_device(value) -> bool:
    return isinstance(value, torch.Tensor) and (isinstance(value, torch.nn.Parameter) or getattr(value, TAG, False))


def _tag(value):
    if isinstance(value, torch.Tensor):
        try:
            setattr(value, TAG, True)
        except (AttributeError, RuntimeError):
            pass
    return value


def _is_simulated(value) -> bool:
    return (isinstance(value, torch.device) and value == SIMULATED) or (isinstance(value, str) and value == str(SIMULATED))


def _to_cpu_device(value):
    return torch.device("cpu") if _is_simulated(value) else value


def _caller_is_under_test(filenames: tuple[str, ...]) -> bool:
    """Whether the first frame outside torch itself belongs to the code under test."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_ROOT):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(filenames)


class DeviceMixError(RuntimeError):
    pass


def _refuse(what: str) -> None:
    raise DeviceMixError(f"Expected all tensors to be on the same device, but found at least two devices, "
                         f"{SIMULATED} and cpu! ({what})")


class SimulatedAccelerator(TorchFunctionMode):
    """Track tensors on `SIMULATED`; refuse what CUDA refuses (see the module docstring)."""

    def __init__(self, code_under_test: tuple[str, ...]):
        super().__init__()
        self.code_under_test = code_under_test
        self.handle = None

    def __enter__(self):
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(self._check_module_inputs)
        return super().__enter__()

    def __exit__(self, *exc):
        self.handle.remove()
        return super().__exit__(*exc)

    def _check_module_inputs(self, module, args):
        if next(module.parameters(recurse=False), None) is None:
            return
        for value in tree_flatten(args)[0]:
            if isinstance(value, torch.Tensor) and value.dim() > 0 and not on_device(value):
                _refuse(f"{type(module).__name__} got an input of shape {tuple(value.shape)} on cpu")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == torch.Tensor.device.__get__:
            return SIMULATED if on_device(args[0]) else func(*args)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and on_device(args[0]):
            raise TypeError(f"can't convert {SIMULATED} device type tensor to numpy. Use Tensor.cpu() first.")
        tensors = [v for v in tree_flatten((args, kwargs))[0] if isinstance(v, torch.Tensor)]
        placed = any(_is_simulated(v) for v in tree_flatten((args, kwargs))[0])
        onto_cpu = func is torch.Tensor.cpu or (func is torch.Tensor.to and not placed and any(
            str(v) == "cpu" for v in tree_flatten((args[1:], kwargs))[0] if isinstance(v, (str, torch.device))))
        mixed = any(on_device(t) for t in tensors) and any(not on_device(t) and t.dim() > 0 for t in tensors)
        if mixed and func not in CROSSING and _caller_is_under_test(self.code_under_test):
            _refuse(f"{getattr(func, '__name__', func)}")
        args, kwargs = tree_map(_to_cpu_device, (args, kwargs))
        result = func(*args, **kwargs)
        if onto_cpu and result is args[0]:  # on the CPU `.cpu()` returns the tensor itself; CUDA returns a copy
            result = result.view_as(result)
        if not onto_cpu and (placed or (func not in CROSSING and any(on_device(t) for t in tensors))
                             or (func in (torch.Tensor.to, torch.Tensor.__getitem__) and on_device(args[0]))):
            tree_map(_tag, result)
        return result
