"""Task functions for the chunk wire-format tests (importable by every worker)."""

from __future__ import annotations

import os
import signal
import threading

from nestpool import process_task


@process_task
def chunk_item(x: int, kill_at: int = -1, marker: str = "") -> object:
    """x * 2; raises for x % 7 == 3; an unpicklable result for x % 11 == 5;
    SIGKILLs its worker at ``x == kill_at`` the first time (``marker`` file)."""
    if x == kill_at and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os.kill(os.getpid(), signal.SIGKILL)
    if x % 7 == 3:
        raise ValueError(f"bad {x}")
    if x % 11 == 5:
        return threading.Lock()
    return x * 2
