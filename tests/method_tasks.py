"""Decorated methods of every kind, for tests/test_methods.py (importable by
workers under every start method)."""

from __future__ import annotations

import os

from nestpool import process_task, thread_subtask


def _check_class(cls: object) -> None:
    if not isinstance(cls, type):
        raise TypeError(f"a class method got {cls!r} as cls, not a class")


class Counter:
    """Instance, static and class methods, decorated above and below."""

    base = 100

    def __init__(self, offset: int) -> None:
        self.offset = offset

    @process_task
    def add(self, x: int) -> tuple[int, int]:
        """An instance method as a process task: (value, pid)."""
        return self.offset + x, os.getpid()

    @thread_subtask
    def sub_add(self, x: int) -> int:
        """An instance method as a subtask."""
        return self.offset + x

    @staticmethod
    @process_task
    def static_above(x: int) -> tuple[int, int]:
        """``@staticmethod`` over ``@process_task``."""
        return x + 1, os.getpid()

    @process_task
    @staticmethod
    def static_below(x: int) -> tuple[int, int]:
        """``@process_task`` over ``@staticmethod``."""
        return x + 2, os.getpid()

    @classmethod
    @process_task
    def class_above(cls, x: int) -> tuple[int, int]:
        """``@classmethod`` over ``@process_task``."""
        _check_class(cls)
        return cls.base + x, os.getpid()

    @process_task
    @classmethod
    def class_below(cls, x: int) -> tuple[int, int]:
        """``@process_task`` over ``@classmethod``."""
        _check_class(cls)
        return cls.base + x, os.getpid()

    @thread_subtask
    @classmethod
    def sub_class_below(cls, x: int) -> int:
        """``@thread_subtask`` over ``@classmethod``."""
        _check_class(cls)
        return cls.base + x


class SubCounter(Counter):
    """A subclass: a class method must receive the subclass."""

    base = 200
