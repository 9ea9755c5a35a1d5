"""The Hugging Face Hub as ``aigc.load`` sees it: the download keywords users know from ``from_pretrained``
(``token``, ``cache_dir``, ``local_files_only``, ``variant``), checked up front, and a fail-fast check so that a hub
id that is neither in the local cache nor reachable fails in about two seconds with a message that says so, instead
of after half a minute of retries. No torch at import.

Example:
    >>> hub_args({"token": "hf_x", "local_files_only": True})
    {'token': 'hf_x', 'local_files_only': True}
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from aigc.errors import InvalidRequest, ModelNotFound

__all__ = ["HUB_ARGS", "RECORDED_HUB_ARGS", "check_available", "hub_args"]

#: Load keywords passed through to ``from_pretrained`` unchanged (Hugging Face's names and meanings).
HUB_ARGS: dict[str, str] = {
    "token": "a Hugging Face access token (str), or True for the one `hf auth login` saved",
    "cache_dir": "the folder downloaded models are cached in (default: the Hugging Face cache, HF_HOME)",
    "local_files_only": "True: never download, use only files already in the cache",
    "variant": "a weights variant such as 'fp16' (model.fp16.safetensors)",
}
#: The ones that say what the model is (a record keeps them); the others say only where files come from, and
#: a token is a secret.
RECORDED_HUB_ARGS = frozenset({"variant"})
#: How long the reachability check waits for the hub's host.
CONNECT_TIMEOUT_S = 2.0


def hub_args(options: Mapping[str, Any]) -> dict[str, Any]:
    """The hub keywords among ``options``, each checked (typed errors name the argument and the fix)."""
    out: dict[str, Any] = {}
    for name in HUB_ARGS:
        if name not in options:
            continue
        value = options[name]
        if name == "token" and not (value is None or isinstance(value, (str, bool))):
            raise InvalidRequest(name, "<hidden>", "must be a string or True", "pass token='hf_...' or token=True")
        if name == "cache_dir" and not isinstance(value, (str, os.PathLike)):
            raise InvalidRequest(name, value, "must be a folder path", "pass cache_dir='/path/to/hf-cache'")
        if name == "local_files_only" and not isinstance(value, bool):
            raise InvalidRequest(name, value, "must be True or False", "pass local_files_only=True or False")
        if name == "variant" and not (value is None or (isinstance(value, str) and value)):
            raise InvalidRequest(name, value, "must be a variant name", "pass variant='fp16', or leave it out")
        out[name] = os.fspath(value) if name == "cache_dir" else value
    return out


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_home(hub: Mapping[str, Any]) -> str:
    if hub.get("cache_dir"):
        return str(hub["cache_dir"])
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")


def _in_cache(model: str, filename: str, hub: Mapping[str, Any], revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers and diffusers both depend on it
        return False
    try:
        found = try_to_load_from_cache(model, filename, cache_dir=hub.get("cache_dir"), revision=revision)
    except Exception:  # an id the hub library refuses: from_pretrained will say why
        return True
    return isinstance(found, str)


def _reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_available(model: str, filename: str, hub: Mapping[str, Any], revision: str | None = None) -> None:
    """Fail fast when ``model`` is a hub id that can be had neither from the local cache nor from the network.

    A local folder, a cached id, and an id with the hub reachable pass (the download proceeds as before).

    Args:
        model: a local folder or a hub id.
        filename: a file every model of the kind has (``config.json``, ``model_index.json``).
        hub: the checked hub keywords (:func:`hub_args`).
        revision: the revision asked for.

    Raises:
        ModelNotFound: the id is not cached and the hub is unreachable (or downloads are off).
    """
    if os.path.isdir(model) or _in_cache(model, filename, hub, revision):
        return
    offline = bool(hub.get("local_files_only")) or _offline_env()
    if not offline and _reachable():
        return
    why = ("downloads are off (local_files_only=True or HF_HUB_OFFLINE=1)" if offline
           else "the hub could not be reached")
    raise ModelNotFound(
        f"model={model!r}: not available offline and not in the local Hugging Face cache "
        f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}, cache {_cache_home(hub)}); {why}. Fix: "
        "connect to the network once to download it, pass cache_dir= where it is cached, or pass a local folder")
