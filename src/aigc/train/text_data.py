"""The data of :func:`aigc.train.finetune_text`: reading and checking examples, tokenizing them with their loss
masks, the held-out split, batches and the loss.

An example is a plain text (every token scored, an end-of-sequence token appended), a prompt/completion pair (only
the completion and an end-of-sequence token scored), or a conversation (only the assistant turns scored, as the
model's chat template writes them).

Example:
    >>> [ex.where for ex in read_text_data(["Hello.", {"prompt": "Q: 1+1?", "completion": " 2"}])]
    ['data[0]', 'data[1]']
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest
from aigc.train._checks import jsonl_rows
from aigc.train._run import derive_seed

if TYPE_CHECKING:
    import torch

__all__ = ["IGNORE", "TextData", "TextExample", "Tokens", "collate", "read_text_data", "split_examples",
           "token_losses", "tokenize_all"]

logger = logging.getLogger(__name__)

#: What ``finetune_text`` accepts as ``data``: a list of texts or example dicts, or a .txt/.jsonl file.
TextData = Sequence[str | Mapping[str, Any]] | str | os.PathLike[str]

IGNORE = -100  # label of a token that is not scored (the cross-entropy's ignore_index)
_DATA_FIX = ('pass a list of texts, a list of {"prompt", "completion"} or {"messages": [...]} dicts, '
             "or a path to a .txt or .jsonl file")


# -- data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextExample:
    """One checked example: exactly one of ``text``, ``(prompt, completion)`` or ``messages`` is set.

    Attributes:
        where: where it came from, for error messages: ``"data[3]"`` or ``"file.jsonl:4"``.
        text: a plain text (every token scored).
        prompt, completion: a pair (only the completion scored).
        messages: ``(role, content)`` turns of a conversation (only assistant turns scored).
    """

    where: str
    text: str | None = None
    prompt: str | None = None
    completion: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None


def _check_example(item: Any, where: str) -> TextExample:
    if isinstance(item, str):
        if not item.strip():
            raise InvalidRequest("data", where, "an empty text", "remove it, or put some text in it")
        return TextExample(where, text=item)
    if not isinstance(item, Mapping):
        raise InvalidRequest("data", where, f"an example must be a text or a dict, not {type(item).__name__}",
                             _DATA_FIX)
    if "messages" in item:
        messages = item["messages"]
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("data", where, '"messages" must be a non-empty list', 'write "messages": '
                                 '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
        turns = []
        for j, m in enumerate(messages):
            if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise InvalidRequest("data", where, f"message {j} needs a string \"role\" and \"content\"",
                                     'write {"role": "user", "content": "..."}')
            turns.append((m["role"], m["content"]))
        if not any(role == "assistant" for role, _ in turns):
            raise InvalidRequest("data", where, "a conversation without an assistant turn has nothing to learn",
                                 'add a {"role": "assistant", ...} message')
        return TextExample(where, messages=tuple(turns))
    if "prompt" in item or "completion" in item:
        prompt, completion = item.get("prompt"), item.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise InvalidRequest("data", where, '"prompt" and "completion" must both be strings',
                                 'write {"prompt": "...", "completion": "..."}')
        if not completion.strip():
            raise InvalidRequest("data", where, "an empty completion has nothing to learn", "fill it in or remove it")
        return TextExample(where, prompt=prompt, completion=completion)
    if "text" in item:
        return _check_example(item["text"], where) if isinstance(item["text"], str) else _check_example(
            None, where)
    raise InvalidRequest("data", where, f"a dict with keys {sorted(item)!r}, none of which aigc knows",
                         'use {"text"}, {"prompt", "completion"} or {"messages"}')


def _read_txt(path: Path) -> list[TextExample]:
    content = path.read_text(encoding="utf-8").replace("\r\n", "\n").strip()
    if re.search(r"\n[ \t]*\n", content):  # blank-line separated blocks
        blocks = [b.strip("\n") for b in re.split(r"\n[ \t]*\n+", content)]
    else:  # one example per line
        blocks = content.split("\n")
    texts = [b for b in blocks if b.strip()]
    return [TextExample(f"{path.name}:{i + 1}", text=t) for i, t in enumerate(texts)]


def _read_jsonl(path: Path) -> list[TextExample]:
    out = []
    for lineno, where, item in jsonl_rows(path, "write one JSON object per line"):
        if not isinstance(item, dict):
            raise InvalidRequest("data", where, f"line {lineno} is not a JSON object",
                                 'write {"prompt": ..., "completion": ...} or {"messages": [...]} per line')
        out.append(_check_example(item, where))
    return out


def read_text_data(data: TextData) -> list[TextExample]:
    """Read and check every example of ``data`` (see :func:`finetune_text`); nothing is tokenized yet.

    Raises:
        InvalidRequest: no examples, an unreadable file, a malformed JSONL line (with its line number),
            or an example of an unknown shape.

    Example:
        >>> len(read_text_data(["Hello.", {"prompt": "Q: 1+1?", "completion": " 2"}]))
        2
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(os.fspath(data))
        if not path.is_file():
            raise InvalidRequest("data", os.fspath(data), "no such file", _DATA_FIX)
        if path.suffix.lower() not in (".txt", ".jsonl"):
            raise InvalidRequest("data", os.fspath(data), f"unknown file type {path.suffix!r}",
                                 "pass a .txt (one example per line, or blank-line separated) or a .jsonl file")
        try:
            examples = _read_txt(path) if path.suffix.lower() == ".txt" else _read_jsonl(path)
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidRequest("data", os.fspath(data), f"cannot read the file ({e})",
                                 "pass a readable UTF-8 file") from None
        if not examples:
            raise InvalidRequest("data", os.fspath(data), "the file holds no examples", "put some examples in it")
        return examples
    if isinstance(data, Mapping) or not isinstance(data, Sequence):
        raise InvalidRequest("data", type(data).__name__, "not a list of examples or a file path", _DATA_FIX)
    if not data:
        raise InvalidRequest("data", [], "no examples", "pass at least one example")
    return [_check_example(item, f"data[{i}]") for i, item in enumerate(data)]


# -- tokens -------------------------------------------------------------------------------------------
def _render(tokenizer: Any, where: str, turns: Sequence[tuple[str, str]], *, generation_prompt: bool) -> str:
    messages = [{"role": r, "content": c} for r, c in turns]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as e:  # jinja errors of the model's own template (e.g. "roles must alternate")
        raise InvalidRequest("data", where, f"the model's chat template rejects this conversation ({e})",
                             "fix the conversation, or use prompt/completion pairs") from None
    return str(text)


def _chat_segments(tokenizer: Any, ex: TextExample) -> list[tuple[str, bool]]:
    """The conversation as (text, scored) pieces: each assistant turn's text is scored, the rest is not.

    Renders the template on growing prefixes of the conversation; the text an assistant turn adds after
    the generation prompt is that turn. Needs a template that renders prefixes as prefixes (most do).
    """
    turns = ex.messages or ()
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, (role, _) in enumerate(turns):
        if role == "assistant":
            head = _render(tokenizer, ex.where, turns[:i], generation_prompt=True)
            if not head.startswith(done):
                break
            pieces.append((head[len(done):], False))
            done = head
        full = _render(tokenizer, ex.where, turns[:i + 1], generation_prompt=False)
        if not full.startswith(done):
            break
        pieces.append((full[len(done):], role == "assistant"))
        done = full
    else:
        return [(text, scored) for text, scored in pieces if text]
    raise InvalidRequest("data", ex.where, "the model's chat template does not render a conversation prefix by "
                         "prefix, so its assistant turns cannot be located", "use prompt/completion pairs")


def _tokenize(tokenizer: Any, ex: TextExample, eos: int | None) -> tuple[list[int], list[int]]:
    """Token ids and labels (``-100`` where not scored) of one example, before truncation."""
    def encode(text: str, special: bool) -> list[int]:
        return [int(t) for t in tokenizer(text, add_special_tokens=special)["input_ids"]]

    tail = [] if eos is None else [eos]
    if ex.text is not None:
        ids = encode(ex.text, True) + tail
        return ids, list(ids)
    if ex.prompt is not None and ex.completion is not None:
        # Tokenized apart, as at generation time: the prompt alone, then the tokens that follow it.
        head = encode(ex.prompt, True)
        body = encode(ex.completion, False) + tail
        return head + body, [IGNORE] * len(head) + body
    ids, labels = [], []
    for text, scored in _chat_segments(tokenizer, ex):
        part = encode(text, False)
        ids += part
        labels += part if scored else [IGNORE] * len(part)
    return ids, labels


@dataclass
class Tokens:
    ids: list[list[int]]
    labels: list[list[int]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for ids, labels in zip(self.ids, self.labels, strict=True):
            h.update(json.dumps([ids, labels]).encode("ascii"))
        return "sha256:" + h.hexdigest()[:32]


def tokenize_all(tokenizer: Any, examples: Sequence[TextExample], max_length: int) -> Tokens:
    if any(ex.messages is not None for ex in examples) and not getattr(tokenizer, "chat_template", None):
        raise InvalidRequest("data", next(ex.where for ex in examples if ex.messages is not None),
                             "chat examples need a chat template, and the model's tokenizer has none",
                             "use prompt/completion pairs, or a model with a chat template")
    eos = tokenizer.eos_token_id
    tokens = Tokens([], [])
    dropped = []
    for ex in examples:
        ids, labels = _tokenize(tokenizer, ex, None if eos is None else int(eos))
        ids, labels = ids[:max_length], labels[:max_length]
        if sum(1 for t in labels[1:] if t != IGNORE) == 0:  # the first token is never predicted
            dropped.append(ex.where)
            continue
        tokens.ids.append(ids)
        tokens.labels.append(labels)
    if dropped:
        logger.warning("%d example(s) have no scored token within max_length=%d and are left out (first: %s)",
                       len(dropped), max_length, dropped[0])
    if not tokens.ids:
        raise InvalidRequest("max_length", max_length, "no example keeps a scored token after truncation",
                             "pass a larger max_length, or shorter prompts")
    return tokens


def split_examples(count: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) example indices: ``floor(count * eval_fraction)`` held out, chosen by the seed."""
    import torch

    n_eval = int(count * eval_fraction)
    order = torch.randperm(count, generator=torch.Generator("cpu").manual_seed(derive_seed(seed, "split")))
    return sorted(order[n_eval:].tolist()), sorted(order[:n_eval].tolist())


def collate(ids: Sequence[list[int]], labels: Sequence[list[int]], pad: int, device: torch.device,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels), each (B, T)."""
    import torch

    width = max(len(r) for r in ids)
    x = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    y = torch.full((len(ids), width), IGNORE, dtype=torch.long)
    for i, (r, lab) in enumerate(zip(ids, labels, strict=True)):
        x[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
        y[i, :len(lab)] = torch.tensor(lab, dtype=torch.long)
    return x.to(device), mask.to(device), y.to(device)


def token_losses(model: Any, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """Next-token cross-entropy over the labelled tokens: logits at t predict the label at t + 1."""
    import torch.nn.functional as F  # noqa: N812

    logits = model(input_ids=x, attention_mask=mask).logits  # (B, T, V)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), y[:, 1:].flatten(), ignore_index=IGNORE,
                           reduction=reduction)
