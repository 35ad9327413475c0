"""Every public name, and every public method and property of the public
classes, has a Google-style docstring with an example: a summary line, an
``Example:`` section, and ``Args:`` when it takes arguments. The API
reference (docs/api.md, mkdocstrings) is generated from these docstrings.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import pytest

import nestpool

_SECTION = re.compile(r"^\s*(Args|Arguments|Returns|Raises|Attributes|Examples?|Yields):\s*$", re.M)


def _public() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) of each public name and of the public methods
    and properties its class defines (not those inherited from the standard
    library, wrapt or ``Exception``)."""
    for name in nestpool.__all__:
        if name == "__version__":
            continue
        obj = getattr(nestpool, name)
        yield name, obj
        if not inspect.isclass(obj):
            continue
        for klass in obj.__mro__:
            if not klass.__module__.startswith("nestpool"):
                continue
            for attr, member in vars(klass).items():
                # An override is checked where it is defined, once.
                if attr.startswith("_") or (attr in vars(obj) and klass is not obj):
                    continue
                if isinstance(member, property):
                    yield f"{name}.{attr}", member
                elif inspect.isfunction(member):
                    yield f"{name}.{attr}", getattr(obj, attr)


#: public by name, but the duck-typed route protocol that decorated calls use
#: (``_routing.Route``); not for users, left out of the API reference too
#: (mkdocs.yml's filters).
ROUTE_PROTOCOL = {"Pool.map_task", "Pool.submit_task", "Pool.subtask_pool"}
#: classes users get from nestpool (a decorator, a map), never construct
NOT_CONSTRUCTED = {
    "ProcessTask",
    "ThreadSubtask",
    "AsyncSubtask",
    "MapIterator",
    "AsyncMapIterator",
}

PUBLIC = {name: obj for name, obj in _public() if name not in ROUTE_PROTOCOL}


def _parameters(obj: Any) -> list[str]:
    target = obj.fget if isinstance(obj, property) else obj
    if inspect.isclass(target):
        target = target.__init__
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p for p in signature.parameters if p not in ("self", "cls")]


def test_the_public_surface_is_found() -> None:
    for expected in (
        "Pool.submit",
        "Pool.map",
        "ProcessTask.map",
        "ProcessTask.amap",
        "ThreadSubtask.sync",
        "MapIterator.close",
        "AsyncMapIterator.aclose",
        "WorkerDiedError.signal",
        "gather",
        "process_task",
    ):
        assert expected in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_has_a_summary_and_an_example(name: str) -> None:
    doc = inspect.getdoc(PUBLIC[name])
    assert doc, f"{name} has no docstring"
    summary = doc.split("\n\n")[0]
    assert not _SECTION.search(summary), f"{name}: the docstring starts with a section"
    assert summary.rstrip().endswith((".", ":", ")")), f"{name}: the summary is not a sentence"
    assert re.search(r"^Examples?:\s*$", doc, re.M), f"{name}: no Example: section"
    example = doc[re.search(r"^Examples?:\s*$", doc, re.M).end() :]  # type: ignore[union-attr]
    assert ">>>" in example, f"{name}: the Example: section shows no code"


def _needs_args(name: str) -> bool:
    obj = PUBLIC[name]
    if name in NOT_CONSTRUCTED:
        return False  # built by nestpool, not by users: the constructor is internal
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return False  # built by nestpool; their Attributes: section documents them
    return bool(_parameters(obj))


@pytest.mark.parametrize("name", sorted(filter(_needs_args, PUBLIC)))
def test_docstring_of_a_callable_with_parameters_has_args(name: str) -> None:
    doc = inspect.getdoc(PUBLIC[name]) or ""
    assert re.search(r"^(Args|Arguments):\s*$", doc, re.M), f"{name}: no Args: section"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_returns_is_one_item(name: str) -> None:
    # The API reference reads a Returns: line at the section's indentation as
    # a new item (a table row of its own): continuation lines are indented.
    doc = inspect.getdoc(PUBLIC[name]) or ""
    match = re.search(r"^(Returns|Yields):[ \t]*\n((?:[ \t]+\S.*\n?)+)", doc, re.M)
    if match is None:
        return
    lines = match[2].rstrip("\n").split("\n")
    indent = len(lines[0]) - len(lines[0].lstrip())
    items = [line for line in lines if len(line) - len(line.lstrip()) == indent]
    assert len(items) == 1, f"{name}: Returns: has {len(items)} items: {items}"


@pytest.mark.parametrize(
    "name", sorted(n for n, o in PUBLIC.items() if inspect.isclass(o) and issubclass(o, Exception))
)
def test_an_error_says_which_standard_error_it_is(name: str) -> None:
    # The reference hides bases (private helpers among them): the docstring
    # names the standard library class that existing except clauses catch.
    error = PUBLIC[name]
    doc = inspect.getdoc(error) or ""
    bases = list(error.__bases__)
    while any(base.__name__.startswith("_") for base in bases):  # a private helper base
        bases = [
            b for base in bases for b in (base.__bases__ if base.__name__[0] == "_" else [base])
        ]
    for base in bases:
        if base.__module__ == "nestpool" or base is Exception:
            continue
        assert base.__name__ in doc, f"{name}: the docstring does not say it is a {base.__name__}"
