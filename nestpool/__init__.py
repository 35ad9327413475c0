"""nestpool: a thread pool inside every worker process, typed and fault-tolerant.

Decorate CPU-heavy functions with ``@process_task`` and IO-bound ones with
``@thread_subtask`` (an ``async def`` too), open ``with Pool(...)``, and call them: calls return
``concurrent.futures.Future``s, or collated values through ``.map`` and
``gather``. Where a call runs is decided by where it happens (see the routing
table in the docs).
"""

import logging as _logging

from ._async import AsyncMapIterator as AsyncMapIterator
from ._async_subtask import AsyncSubtask as AsyncSubtask
from ._errors import InitializerError as InitializerError
from ._errors import NestpoolError as NestpoolError
from ._errors import PoolClosedError as PoolClosedError
from ._errors import RemoteTaskError as RemoteTaskError
from ._errors import TaskPicklingError as TaskPicklingError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerDiedError as WorkerDiedError
from ._gather import gather as gather
from ._map_iterator import MapIterator as MapIterator
from ._per_worker import PerWorker as PerWorker
from ._per_worker import per_worker as per_worker
from ._pool import Pool as Pool
from ._process_task import ProcessTask as ProcessTask
from ._process_task import process_task as process_task
from ._stop import stop as stop
from ._thread_subtask import ThreadSubtask as ThreadSubtask
from ._thread_subtask import thread_subtask as thread_subtask

__version__ = "0.1.0"

__all__ = [
    "AsyncMapIterator",
    "AsyncSubtask",
    "InitializerError",
    "MapIterator",
    "NestpoolError",
    "PerWorker",
    "Pool",
    "PoolClosedError",
    "ProcessTask",
    "RemoteTaskError",
    "TaskPicklingError",
    "TaskTimeoutError",
    "ThreadSubtask",
    "WorkerDiedError",
    "__version__",
    "gather",
    "per_worker",
    "process_task",
    "stop",
    "thread_subtask",
]

# Public objects say they live in "nestpool": clean tracebacks and reprs, and
# errors pickled in a worker are rebuilt from the stable public path.
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and not isinstance(_obj, str):
        try:
            _obj.__module__ = "nestpool"
        except (AttributeError, TypeError):  # pragma: no cover
            pass
# (bound: __all__ is not empty)
del _name, _obj  # pyright: ignore[reportPossiblyUnboundVariable]

# A library logs, the application decides what to show (nothing by default).
_logging.getLogger("nestpool").addHandler(_logging.NullHandler())
