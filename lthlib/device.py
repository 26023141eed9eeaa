"""Device choice in one place: CUDA when present, else CPU; ``LTH_DEVICE`` overrides."""
from __future__ import annotations

import os

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
