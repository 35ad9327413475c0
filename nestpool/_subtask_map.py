"""The ``.map`` and ``.amap`` of a thread subtask, and the checks every
decorated ``.map`` makes of its options.

What it owns: ``check_map_options`` (``chunksize`` and ``buffersize``, for
process tasks' maps too), and ``subtask_map``: a map of a
subtask on the thread pool of the process it is called in (the route's
subtask pool), item by item or in chunks, collated by ``_collate``; inline,
in the caller, when there is no pool or it has no threads.

It never touches processes or the dispatcher, and never waits on a subtask a
helper thread could run itself (``_collate`` and ``_futures`` see to that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

from . import _routing
from ._collate import ChunkedMap, ChunkSizer, Item, run_chunk
from ._inline import map_inline
from ._map_iterator import MapIterator
from ._progress import Progress, make_reporter, with_progress

__all__ = ["check_map_options", "subtask_map"]

#: units of a subtask map kept in flight per thread when no buffersize is given
SUBTASK_UNITS_PER_THREAD = 4


def check_map_options(chunksize: int | None, buffersize: int | None) -> None:
    if chunksize is not None and (isinstance(chunksize, bool) or chunksize < 1):
        raise ValueError(f"chunksize must be None or >= 1, got {chunksize!r}")
    # Checked at run time too, for callers that are not type-checked.
    if buffersize is not None and not isinstance(buffersize, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"buffersize must be an integer or None, got {type(buffersize).__name__}")
    if buffersize is not None and (isinstance(buffersize, bool) or buffersize < 1):
        raise ValueError(f"buffersize must be None or >= 1, got {buffersize!r}")


def subtask_map(
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    ordered: bool,
    chunksize: int | None,
    buffersize: int | None,
    progress: Progress = None,
    name: str = "",
) -> MapIterator[Any]:
    check_map_options(chunksize, buffersize)
    reporter = make_reporter(progress, iterables, name)  # before any work starts
    pool = _routing.subtask_pool_here()
    if pool is None:
        return with_progress(map_inline(fn, iterables), reporter)
    chunked = chunksize is not None and chunksize > 1

    def submit(items: Sequence[Item]) -> tuple[Future[Any], bool]:
        if chunked:
            return pool.submit(run_chunk, (fn, items), {}), True
        return pool.submit(fn, items[0], {}), False

    iterator: ChunkedMap[Any] = ChunkedMap(
        iterables,
        submit,
        ChunkSizer(chunksize or 1, None, buffersize or (1 << 30)),
        ordered=ordered,
        buffersize=buffersize,
        max_units=SUBTASK_UNITS_PER_THREAD * pool.max_workers,
    )
    return with_progress(iterator, reporter)
