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

# The whole string (fullmatch: no trailing newline), an index without leading zeros. torch keeps a device
# index in a signed byte, so an index above 127 wraps around rather than failing.
_DEVICE_RE = re.compile(r"(auto|cpu|mps|cuda|xpu)(?::(0|[1-9][0-9]{0,2}))?")
_DEVICE_TYPES = ("cpu", "mps", "cuda", "xpu")
MAX_DEVICE_INDEX = 127
_DEVICE_FIX = 'pass "auto", "cpu", "cuda", "cuda:1" or "mps"'

#: Accepted dtype spellings and their canonical names.
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


def check_device_spec(device: Any) -> None:
    """Validate a device spelling without importing torch: ``auto``, or ``cpu``/``cuda``/``mps``/``xpu`` with an
    optional index (0-127, no leading zeros; the CPU's only index is 0), or such a ``torch.device``."""
    if isinstance(device, str):
        m = _DEVICE_RE.fullmatch(device)
        if m is None:
            raise InvalidRequest("device", device, "not a device name", _DEVICE_FIX)
        kind, index = m.group(1), m.group(2)
        if index is not None:
            _check_index(device, kind, int(index))
        return
    if type(device).__name__ == "device" and type(device).__module__ == "torch":
        if device.type not in _DEVICE_TYPES:
            raise InvalidRequest("device", str(device), f"aigc runs models on {', '.join(_DEVICE_TYPES)}", _DEVICE_FIX)
        if device.index is not None:
            _check_index(str(device), device.type, device.index)
        return
    raise InvalidRequest("device", device, "must be a string or a torch.device", 'pass device="auto"')


def _check_index(device: str, kind: str, index: int) -> None:
    if kind == "auto":
        raise InvalidRequest("device", device, '"auto" takes no index', 'pass device="auto" or e.g. "cuda:1"')
    if kind == "cpu" and index != 0:
        raise InvalidRequest("device", device, "the CPU has no other index than 0", 'pass device="cpu"')
    if not 0 <= index <= MAX_DEVICE_INDEX:
        raise InvalidRequest("device", device, f"device indices go from 0 to {MAX_DEVICE_INDEX}", _DEVICE_FIX)


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
