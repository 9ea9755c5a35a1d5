"""Results as response pieces: files written by the result's own ``save`` (so the record is embedded exactly as in a
file saved locally), the record as JSON, token usage, the system fingerprint."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aigc
from aigc._results import Record, Result, VideoResult
from aigc.serve._jobs import Job

if TYPE_CHECKING:
    from aigc.serve._base import ServedModel

__all__ = ["encode", "encode_video", "fingerprint", "image_size", "record_json", "usage"]


def encode(result: Result, suffix: str) -> list[bytes]:
    """Each sample as a file's bytes, written by the result's own ``save`` (so the record is embedded exactly as in a
    file saved locally), through a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="aigc-serve-") as tmp:
        paths = result.save(Path(tmp) / f"out{suffix}")
        return [p.read_bytes() for p in paths]


def image_size(png: bytes) -> str | None:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return f"{image.width}x{image.height}"


def encode_video(result: Result) -> dict[str, Any]:
    """MP4 files, and the clip's size and length (the video object's ``size`` and ``seconds``)."""
    assert isinstance(result, VideoResult)
    frames = result.videos[0]
    return {"files": encode(result, ".mp4"), "size": f"{frames.shape[2]}x{frames.shape[1]}",
            "seconds": frames.shape[0] / result.fps}


def record_json(record: Record | None) -> dict[str, Any] | None:
    return None if record is None else dataclasses.asdict(record)


def usage(job: Job) -> dict[str, int]:
    prompt = sum(job.prompt_token_counts)
    completion = sum(job.tokens.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def fingerprint(served: ServedModel) -> str:
    weights = served.generator.weights or served.generator.model_id
    return f"aigc-{aigc.__version__}-{str(weights).removeprefix('sha256:')[:12]}"
