"""A griffe extension for the API reference: ``Example:`` sections are examples.

nestpool's docstrings head their examples ``Example:`` (Google style, as
``help()`` shows them). griffe's Google parser knows only the plural,
``Examples:``, as the examples section; the singular becomes an admonition
whose ``>>>`` lines Markdown reads as nested block quotes, run together on one
line. This renames the header before griffe parses the docstring, so the
reference shows each example as highlighted Python console code.

It also shows the private "keep the task's own" default of
``options()``'s arguments as ``...``, as a stub would, so the reference names
no internal object.

mkdocs.yml loads it (``extensions:`` of the mkdocstrings Python handler);
scripts/check_site.py fails the docs build if a block-quoted doctest appears.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADER = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename each docstring's ``Example:`` header to ``Examples:``."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _HEADER.sub(r"\1Examples:", docstring.value)
        if isinstance(obj, griffe.Function):
            for parameter in obj.parameters:
                if str(parameter.default) == "_KEEP":
                    parameter.default = "..."
