"""MkDocs hook: read aigc's ``Example:`` docstring sections as examples (code), as ``Examples:`` is.

aigc's docstrings use one format, with an ``Example:`` section (see docs/STYLE in the repository); griffe's Google
parser knows only the plural and would render the singular as an admonition of plain Markdown, where doctest output
such as ``[1, 2]`` reads as a link reference.
"""

from __future__ import annotations

from griffe._internal.docstrings import google  # no public hook for section titles (griffe 1.x/2.x)
from griffe._internal.enumerations import DocstringSectionKind

google._section_kind.setdefault("example", DocstringSectionKind.examples)
