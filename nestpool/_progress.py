"""Progress of a map: ``progress=True`` (a tqdm bar) or ``progress=callable``.

What it owns: checking ``progress=`` at the call (before any work starts),
counting the values handed to the consumer and reporting each one, and
closing the bar when the map ends, fails or is closed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from ._map_iterator import MapIterator
from ._typing import R

__all__ = ["Progress", "Reporter", "make_reporter", "with_progress"]

#: What ``progress=`` accepts: None or False (no report), True (a tqdm bar, the
#: ``nestpool[progress]`` extra), or a callable called as ``progress(done)``
#: with the number of values handed out so far, in the consuming thread.
Progress = bool | Callable[[int], object] | None

_TQDM_MISSING = (
    "progress=True shows a tqdm progress bar, but tqdm is not installed. "
    "Install it with: pip install 'nestpool[progress]' (or pip install tqdm), "
    "or pass a callable, progress=lambda done: ..., to report progress yourself."
)


def _total(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The number of calls a map makes, when every input has a length."""
    lengths: list[int] = []
    for iterable in iterables:
        try:
            lengths.append(len(iterable))  # type: ignore[arg-type]
        except TypeError:
            return None
    return min(lengths) if lengths else None


class Reporter:
    """Counts the values handed to the consumer and reports each one."""

    __slots__ = ("bar", "callback", "done")

    def __init__(self, progress: Progress, total: int | None, desc: str) -> None:
        self.done: int = 0
        self.bar: Any = None
        self.callback: Callable[[int], object] | None = None
        if progress is True:
            try:
                # Imported by name, so typed Any: tqdm is optional, and typed
                # or not, installed or not, no mypy (a user's, with its own
                # configuration) has anything to report about it here.
                tqdm: Any = importlib.import_module("tqdm").tqdm
            except ImportError:
                raise ImportError(_TQDM_MISSING) from None
            self.bar = tqdm(total=total, desc=desc, unit="item")
        elif callable(progress):
            self.callback = progress
        else:
            raise TypeError(
                "progress must be True, False, None or a callable progress(done: int), "
                f"got {type(progress).__name__}"
            )

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.callback is not None:
            self.callback(self.done)

    def close(self) -> None:
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.close()
        self.callback = None


def make_reporter(
    progress: Progress, iterables: tuple[Iterable[Any], ...], desc: str
) -> Reporter | None:
    """A reporter for ``progress=``, or None when no progress is wanted.

    Raises ``ImportError`` (saying how to install tqdm) for ``progress=True``
    without tqdm, at the call, before any work starts.
    """
    if progress is None or progress is False:
        return None
    return Reporter(progress, _total(iterables), desc)


class _ProgressIterator(MapIterator[R]):
    """A map's iterator that reports each value it hands out."""

    __slots__ = ("_iterator", "_reporter")

    def __init__(self, iterator: MapIterator[R], reporter: Reporter) -> None:
        self._iterator = iterator
        self._reporter = reporter

    def __next__(self) -> R:
        try:
            value = next(self._iterator)
        except BaseException:
            self._reporter.close()
            raise
        self._reporter.advance()
        return value

    def close(self) -> None:
        """Stop: cancel what has not started, close the progress bar."""
        self._reporter.close()
        self._iterator.close()

    def _cancel_units(self) -> None:
        self._iterator._cancel_units()


def with_progress(iterator: MapIterator[R], reporter: Reporter | None) -> MapIterator[R]:
    """Wrap a map's iterator so that it reports progress (or return it as is)."""
    if reporter is None:
        return iterator
    return _ProgressIterator(iterator, reporter)
