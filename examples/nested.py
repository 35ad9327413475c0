"""The seed tutorial's first program ("thread pools within worker processes"),
rewritten with nestpool.

Five process tasks each run five thread subtasks that sleep a random moment and
print a message; the main program waits for all of them. Run it with
``python examples/nested.py``.
"""

from concurrent.futures import wait
from random import random
from time import sleep

from nestpool import Pool, process_task, thread_subtask


@thread_subtask
def thread_work(process_id: int, thread_id: int) -> None:
    """IO-bound work for a worker thread: wait a moment, report."""
    sleep(random())
    print(f"Process {process_id}, thread worker {thread_id}", flush=True)


@process_task
def process_work(identifier: int) -> None:
    """Work for a worker process: five subtasks on the worker's thread pool."""
    futures = [thread_work(identifier, i) for i in range(5)]
    wait(futures)
    print(f"Process {identifier} Done", flush=True)


if __name__ == "__main__":
    from _backend import pool_options  # --dask / --scheduler ADDRESS: run on Dask

    with Pool(**pool_options()):
        futures = [process_work(i) for i in range(5)]
        wait(futures)
    print("Main Done", flush=True)
