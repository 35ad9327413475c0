"""The wire protocol between the dispatcher and its workers: every message a
named record, packed and unpacked here and nowhere else.

Each worker has its own duplex pipe. The parent sends ``Call`` and ``Exit``;
the worker answers with ``Booted``, ``Ready`` (or ``InitFailed``), then per
call ``Ack`` and one or more ``Result`` (or ``ArgsFailed``)::

    dispatcher                                  worker
    ----------                                  ------
                  <---------- Booted(pid)       interpreter up, nestpool runs
                  <---------- Ready(pid)        initializer done
                  <---------- InitFailed(error) ... or it raised
    Call(task_id, name, function, args, shape, ack, exact) -->
                  <---------- Ack(task_id, runner)  only if the call asked
                  <---------- Result(task_id, first, size, final, ...)  (repeated
                                                for a chunk, one per flush)
                  <---------- ArgsFailed(task_id, error)  the function or the
                                                arguments did not unpickle
    Exit() ---------------------------------->  finish, then leave

Records are ``NamedTuple``s whose last field, ``kind``, names the record on
the wire: ``pack`` sends the plain tuple (a record's own pickle would name
its class, several times slower per message) and ``unpack`` makes the record
again from ``kind``.

User data never travels as a bare object here: arguments, results and
exceptions are pickled first and ride inside a message as bytes, so a message
always unpickles and names the task it is for, whatever the user's objects do.

It must never import parent-side modules (workers load it).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, NamedTuple

from ._serialize import dumps, dumps_builtins, exception_payload, pickling_error

__all__ = [
    "SHAPE_ARGS",
    "SHAPE_SINGLE",
    "SHAPE_UNARY",
    "Ack",
    "ArgsFailed",
    "Booted",
    "Call",
    "Exit",
    "InitFailed",
    "Ready",
    "Result",
    "batch_mark",
    "marked_span",
    "pack",
    "pack_outcomes",
    "unpack",
]

#: ``Call.shape``: how its ``args`` unpickle. SHAPE_SINGLE: ``[(args, kwargs)]``
#: (one call); SHAPE_ARGS: a list of positional-argument tuples (a map's
#: chunk); SHAPE_UNARY: a list of single arguments (a map over one iterable).
SHAPE_SINGLE = 0
SHAPE_ARGS = 1
SHAPE_UNARY = 2


class Call(NamedTuple):
    """Run a function over arguments (parent to worker)."""

    task_id: int
    name: str
    #: ``(key, pickled callable)`` the first time this worker gets that
    #: callable, then ``(key, None)``: the worker keeps callables by key.
    function: tuple[bytes, bytes | None]
    #: pickled arguments, read as ``shape`` says
    args: bytes
    shape: int
    #: True: answer ``Ack`` as the call starts (its timeout starts then).
    #: Either way the runner writes the task id in its start mark, in the
    #: worker's shared array, which the parent reads only after a death: a
    #: message per call that nobody waits for costs a write, and the
    #: dispatcher a turn of its loop, on every round trip.
    ack: bool
    #: True: a chunk's runner writes each item's index to its mark before the
    #: item runs, so a death names the item it interrupted; False: one mark per
    #: batch of items (``batch_mark``), which runs the items twice as fast.
    exact: bool
    kind: int = 1


def batch_mark(start: int, end: int) -> int:
    """A runner's mark while it runs the items ``start`` to ``end`` (not
    included) of a chunk with no mark per item (``Call.exact`` False). An
    item's own mark is its index, which is below ``1 << 32``; a batch's has
    ``end`` (at least 1) in the upper half."""
    return start | (end << 32)


def marked_span(mark: int) -> tuple[int, int]:
    """The items ``(start, end)`` a runner's mark names: one, or a batch."""
    if mark >> 32:
        return mark & 0xFFFFFFFF, mark >> 32
    return mark, mark + 1


class Exit(NamedTuple):
    """Finish the calls in hand, then leave (parent to worker)."""

    kind: int = 2


class Booted(NamedTuple):
    """The worker's interpreter is up and nestpool's code runs; the
    initializer runs next (worker to parent)."""

    pid: int
    kind: int = 10


class InitFailed(NamedTuple):
    """The pool's initializer raised (worker to parent)."""

    #: pickles into the ``InitializerError`` with its traceback text
    error: Any
    kind: int = 11


class Ready(NamedTuple):
    """The initializer ran; the worker takes calls (worker to parent)."""

    pid: int
    kind: int = 12


class Ack(NamedTuple):
    """A call that asked for it (``Call.ack``) started (worker to parent): its
    timeout starts now, and a death from now on fails it."""

    task_id: int
    #: which runner of the worker took it: its entry in the worker's shared
    #: array of marks says which item of a chunk runs
    runner: int
    kind: int = 13


class Result(NamedTuple):
    """Outcomes of a call, or of consecutive items of a chunk (worker to parent)."""

    task_id: int
    #: index, in the call's items, of the first outcome here
    first: int
    #: how many outcomes
    size: int
    #: True on the call's last message
    final: bool
    #: seconds the worker spent on these items (for chunk sizing)
    busy: float
    #: one pickle of the list of outcomes, or one pickle per outcome
    outcomes: bytes | list[bytes]
    #: True: the outcomes are the bare values (every item succeeded); False:
    #: ``(ok, value_or_exception)`` pairs
    plain: bool
    kind: int = 14


class ArgsFailed(NamedTuple):
    """The function or the arguments of a call could not be unpickled in the
    worker (worker to parent); nothing of the call ran."""

    task_id: int
    #: pickles into the ``TaskPicklingError`` with its traceback text
    error: Any
    kind: int = 15


Message = Call | Exit | Booted | InitFailed | Ready | Ack | Result | ArgsFailed

_RECORDS: dict[int, type[Message]] = {
    record._field_defaults["kind"]: record
    for record in (Call, Exit, Booted, InitFailed, Ready, Ack, Result, ArgsFailed)
}
#: ``tuple.__new__``: makes a record from its fields without the record's own
#: ``__new__`` (a Python function, several times slower)
_new_tuple: Callable[[type[Message], tuple[Any, ...]], Message] = getattr(tuple, "__new__")  # noqa: B009


def pack(message: Message) -> bytes:
    """The bytes of a message, to send on a worker's pipe."""
    return pickle.dumps(tuple(message), pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes | memoryview) -> Message:
    """The message ``pack`` made."""
    fields: tuple[Any, ...] = pickle.loads(data)
    return _new_tuple(_RECORDS[fields[-1]], fields)


def pack_outcomes(
    name: str, values: list[Any], outcomes: list[tuple[bool, Any]] | None
) -> tuple[bytes | list[bytes], bool]:
    """``Result.outcomes`` and ``Result.plain`` for a flush of task ``name``:
    ``values`` while every item succeeded (``outcomes`` None), else ``outcomes``.
    Whatever user code raises while they are pickled fails those items alone.
    """
    # The outcomes travel as bytes inside the message, so that if the parent
    # cannot unpickle them it still knows which task and items they were for.
    # Items that may fail to unpickle in the parent (a type it cannot import
    # or rebuild) are pickled one by one, so that one bad item of a chunk
    # fails alone; a flush of builtin values goes as one pickle, and
    # while every item succeeded as the bare values (``plain``: no outcome
    # tuple per item: the tiny-task hot path).
    plain = outcomes is None
    entries: list[Any] = values if outcomes is None else outcomes
    blob: bytes | list[bytes] | None = None
    # BaseException throughout: whatever user code raises while its values are
    # pickled (SystemExit included) fails those items, never the runner.
    if len(entries) <= 1:
        try:
            blob = dumps(entries)
        except BaseException:
            blob = None
    else:
        # Builtin values only (no class named in the pickle, so nothing the
        # parent could fail to rebuild), found at no cost per value.
        blob = dumps_builtins(entries)
    if blob is None:
        if plain:
            try:
                blob = [dumps(value) for value in values]
            except BaseException:
                plain = False
                entries = [(True, value) for value in values]
        if not plain:
            blob = _dumps_each(name, entries)
    assert blob is not None
    return blob, plain


def _dumps_each(name: str, outcomes: list[tuple[bool, Any]]) -> list[bytes]:
    """One pickle per outcome; one that cannot be pickled becomes its error."""
    blobs: list[bytes] = []
    for ok, value in outcomes:
        try:
            blobs.append(dumps((ok, value)))
        except BaseException as exc:
            error = pickling_error(name, "result" if ok else "exception", exc)
            blobs.append(dumps((False, exception_payload(error, name))))
    return blobs
