"""Class tables: the classes a model draws and the prompt phrases that name each.

A table is stored as a list of ``{"id": 9, "name": "ankle boot", "phrases": ["boot", ...]}`` entries inside a
model's own files (``aigc_classes.json`` for class diffusion, ``config.json`` for GANs, VAEs and sprite clips).
A prompt picks the class whose longest phrase it contains as whole words.

Example:
    >>> table = ClassTable.from_entries([{"id": 0, "name": "sneaker", "phrases": ["trainer"]},
    ...                                  {"id": 1, "name": "ankle boot", "phrases": ["boot"]}])
    >>> table.match("a photo of an ankle boot"), table.match("a boot and a trainer")
    (1, None)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ClassTable", "entries", "words"]

_ARTICLES = frozenset({"a", "an", "the"})
#: Words a prompt may hold around a class name without asking for anything the model could be missing.
_FILLER = frozenset({"of", "photo", "picture", "image", "drawing", "sketch", "one", "some", "single", "please",
                     "draw", "make", "generate", "show", "me", "my", "this", "that", "in", "on", "with", "and"})


def words(text: str) -> tuple[str, ...]:
    """Lower-case words of ``text`` without articles.

    Example:
        >>> words("An Ankle-Boot!")
        ('ankle', 'boot')
    """
    return tuple(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _ARTICLES)


def entries(names: Sequence[str], phrases: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """The stored form of a table: one entry per class name, ids in order, with its extra phrases.

    Example:
        >>> entries(["cat", "dog"], {"dog": ["puppy"]})
        [{'id': 0, 'name': 'cat', 'phrases': []}, {'id': 1, 'name': 'dog', 'phrases': ['puppy']}]
    """
    extra = phrases or {}
    return [{"id": i, "name": str(n), "phrases": [str(p) for p in extra.get(n, ())]} for i, n in enumerate(names)]


@dataclass(frozen=True)
class ClassTable:
    """The classes of a model and the phrases that name them.

    Attributes:
        names: class id -> display name.
        phrases: word tuple of a phrase -> class id (names are phrases too).
        null_class: the id of the unconditional class (classifier-free guidance).
    """

    names: dict[int, str]
    phrases: dict[tuple[str, ...], int]
    null_class: int

    @classmethod
    def from_entries(cls, items: Sequence[Mapping[str, Any]], *, null_class: int | None = None) -> ClassTable:
        """Build a table from stored entries; ``ValueError`` when a phrase names two classes."""
        names: dict[int, str] = {}
        phrases: dict[tuple[str, ...], int] = {}
        for entry in items:
            cid, name = int(entry["id"]), str(entry["name"])
            names[cid] = name
            for phrase in [name, *entry.get("phrases", [])]:
                key = words(str(phrase))
                if key and phrases.setdefault(key, cid) != cid:
                    raise ValueError(f"phrase {phrase!r} names two classes ({phrases[key]} and {cid})")
        null = int(null_class) if null_class is not None else (max(names) + 1 if names else 0)
        return cls(names=names, phrases=phrases, null_class=null)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassTable:
        """A table from ``{"classes": [...], "null_class": n}`` (``null_class`` optional)."""
        return cls.from_entries(data["classes"], null_class=data.get("null_class"))

    def match(self, prompt: str) -> int | None:
        """The class named by ``prompt``: the longest phrase found in it as whole words; ``None`` when no
        phrase is found or two classes tie (``"a boot and a bag"``). Linear in the prompt's length.
        """
        found = words(prompt)
        best: set[int] = set()
        # Only windows as long as the longest phrase can match: O(len(words) x longest), linear in the prompt.
        for n in range(min(len(found), self.longest), 0, -1):  # longest phrases first
            for start in range(len(found) - n + 1):
                cid = self.phrases.get(found[start:start + n])
                if cid is not None:
                    best.add(cid)
            if best:
                break
        return next(iter(best)) if len(best) == 1 else None

    @functools.cached_property
    def longest(self) -> int:
        """Words in the longest phrase."""
        return max(map(len, self.phrases), default=0)

    def ignored_words(self, prompt: str, cid: int) -> list[str]:
        """The words of ``prompt`` that are neither in a phrase of class ``cid`` nor filler ("a photo of").

        Example:
            >>> ClassTable.from_entries(entries(["sneaker"])).ignored_words("a red sneaker, please", 0)
            ['red']
        """
        used = {w for phrase, c in self.phrases.items() if c == cid for w in phrase}
        return [w for w in words(prompt) if w not in used and w not in _FILLER]

    def prompt_ids(self, prompts: Sequence[str], *, single: bool, what: str = "classes this model draws",
                   example: str | None = None, warn_ignored: bool = False) -> list[int]:
        """One class id per prompt, or :class:`~aigc.errors.InvalidRequest` naming the prompt (``prompt`` when the
        request has a ``single`` prompt, else ``prompt[i]``) and the classes to choose from. With
        ``warn_ignored``, a prompt with words the model cannot honour ("a *red* sneaker") gets a
        :class:`~aigc.errors.PromptWarning` naming them.

        Example:
            >>> ClassTable.from_entries(entries(["cat", "dog"])).prompt_ids(["a dog", "the cat"], single=False)
            [1, 0]
        """
        from aigc.errors import InvalidRequest

        ids = []
        for i, prompt in enumerate(prompts):
            cid = self.match(prompt)
            if cid is None:
                hint = f"use one of: {self.listing()}" + (f", e.g. {example!r}" if example else "")
                raise InvalidRequest("prompt" if single else f"prompt[{i}]", prompt,
                                     f"names none of the {len(self.names)} {what} (or more than one)", hint)
            ids.append(cid)
            ignored = self.ignored_words(prompt, cid) if warn_ignored else []
            if ignored:
                import warnings

                from aigc.errors import PromptWarning

                warnings.warn(PromptWarning(
                    f"{'prompt' if single else f'prompt[{i}]'}={prompt!r}: this model draws its classes only "
                    f"({self.names[cid]!r} here); ignored: {', '.join(repr(w) for w in ignored)}"), stacklevel=2)
        return ids

    def listing(self) -> str:
        """The class names, quoted, in id order (for error messages)."""
        return ", ".join(repr(self.names[c]) for c in sorted(self.names))
