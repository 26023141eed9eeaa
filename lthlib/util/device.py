"""Device choice in one place: CUDA when present, else CPU; ``LTH_DEVICE`` overrides."""
from __future__ import annotations

import os
import warnings

import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """Resolve ``device`` (argument, else env LTH_DEVICE, else cuda if available, else cpu)."""
    choice = device if device is not None else os.environ.get("LTH_DEVICE") or None
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(choice)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {choice!r}; allowed: cpu, cuda, cuda:<index>, "
                         f"mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(choice)!r} requested but CUDA is not available; "
                         "allowed here: 'cpu'")
    return dev


def native_bf16(device: torch.device) -> bool:
    """True on a GPU or on a CPU that computes bf16 natively (AMX or AVX512-BF16). Elsewhere
    bf16 autocast is emulated: on an AVX2-only AMD EPYC ResNet-18 trained 13x slower than in
    float32 (runs/bench/cpu-conv-precision-amd-epyc.json)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def warn_if_bf16_emulated(device: torch.device) -> None:
    """Warn (RuntimeWarning) when bf16 is asked for where it would only be emulated: a run
    that takes hours in float32 would silently take days."""
    if not native_bf16(device):
        warnings.warn(f"bf16 autocast on {device} without native bf16 (no AMX or AVX512-BF16) "
                      f"is emulated, about 13x slower than float32 on an AVX2 CPU; use "
                      f"precision 'fp32' (CLI --precision fp32, a run of its own identity) or a "
                      f"machine with native bf16", RuntimeWarning, stacklevel=3)


def describe_hardware(device: torch.device) -> dict[str, str | int]:
    """What a result ran on, for the records (CPU model/threads or GPU name)."""
    info: dict[str, str | int] = {"device": str(device), "torch": torch.__version__,
                                  "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        model = ""
        try:
            with open("/proc/cpuinfo") as fh:
                model = next((ln.split(":", 1)[1].strip() for ln in fh
                              if ln.startswith("model name")), "")
        except OSError:
            pass
        info["cpu"] = model or "unknown"
        info["cores"] = os.cpu_count() or 0
    return info
