"""The tutorial's second program ("collate results from worker threads and
worker processes"), rewritten with nestpool.

Each of five process tasks fans out five thread subtasks that sleep a random
moment and return a random value; each process task sums its subtasks' values,
and the main program sums the process totals. The thread pool of each worker
is created once and reused (the tutorial made a new one per task).

Run it: ``bash scripts/example.sh`` (or ``python examples/collate.py``).
"""

import sys
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
def thread_work(process_id: int, thread_id: int) -> float:
    """IO-bound work for a worker thread: wait a moment, return a value."""
    value = random()
    sleep(value)
    say(f"Process {process_id}, thread worker {thread_id}, value={value}")
    return value


@process_task
def process_work(identifier: int) -> float:
    """Work for a worker process: sum the values of five thread subtasks."""
    total = sum(thread_work.map([identifier] * 5, range(5)))
    say(f"Process {identifier} Done, total={total}")
    return total


if __name__ == "__main__":
    from _backend import pool_options  # --dask / --scheduler ADDRESS: run on Dask

    with Pool(**pool_options()):
        total = sum(process_work.map(range(5)))
    print(f"Main Done, total={total}", flush=True)
