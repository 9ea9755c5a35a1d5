"""What the ``transformers`` text and audio backends share: :class:`TransformersGenerator`, their base.

It owns what loading a transformers model means in aigc -- one device (no offload), safetensors only unless
``allow_pickle``, ``trust_remote_code`` only when given, the weights fingerprint of a local folder, the hub
revision, and transformers' loading errors turned into aigc's (``ModelNotFound``, ``UnsafeModelFile``,
``BackendUnavailable``) -- and the Generator hooks over the loaded modules. A backend lists its modules in
``_modules`` and implements the rest.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from aigc._generator import Generator, LoadOptions, ReqT, ResT
from aigc._runtime.hub import check_available
from aigc._runtime.weights import fingerprint_files, pretrained_errors, weight_files
from aigc.errors import InvalidRequest, ModelNotFound

__all__ = ["TransformersGenerator"]


class TransformersGenerator(Generator[ReqT, ResT]):
    """Base of the backends whose models load through transformers' ``from_pretrained``."""

    hub_models = True

    @classmethod
    def refuse_offload(cls, options: LoadOptions, fix: str = "pass offload='none'") -> None:
        """These backends keep the model on one device."""
        if options.offload != "none":
            raise InvalidRequest("offload", options.offload, f"the transformers {cls.modality} backend keeps the "
                                 "model on one device", fix)

    @staticmethod
    def common_kwargs(options: LoadOptions) -> dict[str, Any]:
        """The keywords every ``from_pretrained`` call gets: the revision, the remote-code switch and the caller's
        download keywords (``token``, ``cache_dir``, ``local_files_only``, ``variant``)."""
        return {"revision": options.revision, "trust_remote_code": options.trust_remote_code, **options.hub}

    @staticmethod
    def safetensors_only(options: LoadOptions) -> bool | None:
        """``use_safetensors=``: ``True`` (refuse pickle weights) unless ``allow_pickle``."""
        return None if options.allow_pickle else True

    @staticmethod
    def local_weights(folders: Sequence[Path], options: LoadOptions) -> tuple[list[Path], str | None]:
        """The weight files of local folders (pickle-only ones refused) and their fingerprint (``None``: none)."""
        files = [f for folder in folders for f in weight_files(folder, allow_pickle=options.allow_pickle)]
        return files, fingerprint_files(files) if files else None

    @classmethod
    def load_config(cls, model: str, options: LoadOptions) -> Any:
        """``AutoConfig.from_pretrained``, or ModelNotFound saying whether the hub was asked."""
        check_available(model, "config.json", options.hub, options.revision)  # fail fast offline
        import transformers

        try:
            return transformers.AutoConfig.from_pretrained(model, **cls.common_kwargs(options))
        except (OSError, ValueError) as e:
            local = os.path.isdir(model)
            where = "local directory" if local else "local directory, and the hub could not provide it"
            raise ModelNotFound(f"model={model!r}: no usable {where}: {e}") from None

    @staticmethod
    def loading_errors(model: str, options: LoadOptions) -> contextlib.AbstractContextManager[None]:
        """Turn what ``from_pretrained`` raises into aigc's errors."""
        return pretrained_errors(model, allow_pickle=options.allow_pickle)

    @staticmethod
    def revision_of(options: LoadOptions, config: Any) -> str | None:
        """The revision to record: the one asked for, or the commit the hub cache resolved."""
        return options.revision or getattr(config, "_commit_hash", None)

    @staticmethod
    def place(modules: Sequence[Any], device: torch.device) -> None:
        """Move the loaded modules to ``device`` and put them in eval mode."""
        for module in modules:
            module.to(device)
            module.eval()

    # -- Generator hooks -------------------------------------------------------------------------
    def _to(self, device: torch.device) -> None:
        for module in self._modules():
            module.to(device)
