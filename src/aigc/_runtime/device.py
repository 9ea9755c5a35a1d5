"""Device and dtype resolution.

``"auto"`` picks cuda, then mps, then cpu; ``dtype="auto"`` picks bf16 (fp16 where the GPU has no bf16)
on accelerators and float32 on the CPU. Explicit values are validated with a fix-it message. The string
forms are checked without importing torch, so a typo fails before any heavy import.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aigc.errors import DeviceUnavailable, InvalidRequest

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPE_NAMES", "check_device_spec", "check_dtype_spec", "resolve_device", "resolve_dtype"]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda|xpu)(:\d+)?$")

#: Accepted dtype spellings and their canonical names.
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


def check_device_spec(device: Any) -> None:
    """Validate a device spelling without importing torch."""
    if isinstance(device, str):
        if not _DEVICE_RE.match(device) or device.startswith("auto:"):
            raise InvalidRequest("device", device, "not a device name",
                                 'pass "auto", "cpu", "cuda", "cuda:1" or "mps"')
        return
    if type(device).__name__ == "device" and type(device).__module__ == "torch":
        return
    raise InvalidRequest("device", device, "must be a string or a torch.device", 'pass device="auto"')


def check_dtype_spec(dtype: Any) -> None:
    """Validate a dtype spelling without importing torch."""
    if isinstance(dtype, str):
        if dtype != "auto" and dtype not in DTYPE_NAMES:
            raise InvalidRequest("dtype", dtype, "not a supported dtype",
                                 'pass "auto", "float32", "float16" or "bfloat16"')
        return
    if type(dtype).__name__ == "dtype" and type(dtype).__module__ == "torch":
        if str(dtype).removeprefix("torch.") not in DTYPE_NAMES:
            raise InvalidRequest("dtype", dtype, "not a floating dtype aigc runs models in",
                                 "pass torch.float32, torch.float16 or torch.bfloat16")
        return
    raise InvalidRequest("dtype", dtype, "must be a string or a torch.dtype", 'pass dtype="auto"')


def _mps_available(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` or an explicit device into an available ``torch.device``.

    Raises:
        InvalidRequest: the spelling is wrong.
        DeviceUnavailable: the device is not present in this process.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    check_device_spec(device)
    import torch

    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device={str(device)!r}: CUDA is not available here. Fix: pass device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device={str(device)!r}: only {torch.cuda.device_count()} CUDA device(s). Fix: pass device='cuda:0'"
            )
    elif dev.type == "mps" and not _mps_available(torch):
        raise DeviceUnavailable(f"device={str(device)!r}: MPS is not available here. Fix: pass device='auto' or 'cpu'")
    elif dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise DeviceUnavailable(f"device={str(device)!r}: XPU is not available here. Fix: pass device='auto' or 'cpu'")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Turn ``"auto"`` or an explicit dtype into a ``torch.dtype`` for ``device``.

    Example:
        >>> import torch
        >>> resolve_dtype("auto", torch.device("cpu"))
        torch.float32
    """
    check_dtype_spec(dtype)
    import torch

    if not isinstance(dtype, str):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type in ("mps", "xpu"):
            return torch.float16
        return torch.float32
    return getattr(torch, DTYPE_NAMES[dtype])  # type: ignore[no-any-return]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
