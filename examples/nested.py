"""The tutorial's first program ("thread pools within worker processes"),
rewritten with nestpool.

Five process tasks each run five thread subtasks that sleep a random moment and
print a message; the main program waits for all of them. Run it with
``python examples/nested.py``.
"""

import sys
from concurrent.futures import wait
from random import random
from time import sleep

from nestpool import Pool, process_task, thread_subtask


def say(line: str) -> None:
    """Print a line in one write, so lines printed at once by several threads
    and processes never run into each other (``print`` writes the text and the
    newline separately)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@thread_subtask
def thread_work(process_id: int, thread_id: int) -> None:
    """IO-bound work for a worker thread: wait a moment, report."""
    sleep(random())
    say(f"Process {process_id}, thread worker {thread_id}")


@process_task
def process_work(identifier: int) -> None:
    """Work for a worker process: five subtasks on the worker's thread pool."""
    futures = [thread_work(identifier, i) for i in range(5)]
    wait(futures)
    say(f"Process {identifier} Done")


if __name__ == "__main__":
    from _backend import pool_options  # --dask / --scheduler ADDRESS: run on Dask

    with Pool(**pool_options()):
        futures = [process_work(i) for i in range(5)]
        wait(futures)
    print("Main Done", flush=True)
