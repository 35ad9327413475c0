"""The interpreter-exit registry: the pools this process has open, and what
happens to them when the interpreter exits or the process forks.

What it owns: the weak set of open pools (``Pool`` adds itself when made and
discards itself when shut down or terminated), the flag that says the
interpreter has begun to exit (as ``ProcessPoolExecutor``'s
``_global_shutdown``: no pool takes new work after it is set), and the hooks
that act on them: at exit, finish the work of every pool the program left open
and join the dispatcher threads; in a forked child, forget the parent's pools.

It never makes, routes or configures a pool, and never decides what a pool
refuses or with which error: ``Pool`` reads the flag and words its refusal.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING

from ._dispatcher import join_all_dispatchers

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["EXIT_MESSAGE", "global_shutdown", "open_pools"]

#: The pools made in this process and not yet shut down.
open_pools: weakref.WeakSet[Pool] = weakref.WeakSet()

#: The standard library's words (concurrent.futures.process), as
#: ``_local.SHUTDOWN_MESSAGE`` is for a pool shut down.
EXIT_MESSAGE = "cannot schedule new futures after interpreter shutdown"
#: Set when the interpreter begins to exit (``_shutdown_open_pools``), as
#: ProcessPoolExecutor's ``_global_shutdown``: no pool takes new work after.
global_shutdown = False


def _shutdown_open_pools() -> None:
    # At interpreter exit, as the standard library's executors do: refuse new
    # work from now on (ProcessPoolExecutor's _python_exit sets its
    # _global_shutdown first too), finish the work of pools the program left
    # open, then release their workers.
    global global_shutdown
    global_shutdown = True
    for pool in list(open_pools):
        pool._closed_at_exit = True
        try:
            pool.shutdown(wait=True)
        except BaseException:  # pragma: no cover - best effort at exit
            pool.terminate()
    join_all_dispatchers()


# A forked worker inherits the parent's registry but owns none of its pools: on
# its way out it must not shut them down (their locks may have been held by
# parent threads at the fork, and it would hang forever in that shutdown).
os.register_at_fork(after_in_child=open_pools.clear)

_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_shutdown_open_pools)
else:  # pragma: no cover
    import atexit

    atexit.register(_shutdown_open_pools)
