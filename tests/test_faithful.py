"""Faithful to ``ProcessPoolExecutor``: what works with it works, and means
the same, with ``Pool``.

SPEC: "A callable goes by reference whenever the worker can import it, and a
script's ``__main__`` is importable there exactly as multiprocessing makes it
so for ``ProcessPoolExecutor``"; "Only what no worker can import goes by value
with cloudpickle, once per worker"; "``initializer`` and ``initargs`` travel as
the standard library passes them"; "With ``tasks_per_process=1`` the worker's
main thread runs the initializer and the process tasks"; "No user object,
whatever it raises while being pickled or unpickled (``SystemExit`` included),
can stop the engine or leave a future pending"; "Once a future is done the pool
keeps no reference to its callable, arguments or result".

Where the standard library can run the same program, the test runs it on both
engines and asserts that they give the same answers.
"""

from __future__ import annotations

import ast
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from itertools import repeat
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import psutil
import pytest

from nestpool import Pool, RemoteTaskError, TaskPicklingError, process_task
from tests import faithful_tasks as fft
from tests.conftest import wait_until
from tests.helpers import local_engine, where_task

pytestmark = pytest.mark.timeout(60)

MB = 1 << 20

# ----------------------------------------------- 1. by reference first

#: A script: its module-level functions are what a user submits. Run as
#: ``program.py ENGINE METHOD``; prints one ``name=repr`` line per fact.
SCRIPT = textwrap.dedent(
    '''
    import multiprocessing
    import os
    import pickle
    import sys
    import threading
    from concurrent.futures import ProcessPoolExecutor
    from random import random

    from nestpool import Pool, process_task

    #: pids of the processes that pickled BIG
    PICKLED_BIG = []


    class Big:
        """50 MB that says whenever it is pickled."""

        def __init__(self, size):
            self.data = bytearray(size)

        def __reduce__(self):
            PICKLED_BIG.append(os.getpid())
            return Big, (len(self.data),)


    BIG = Big(50 << 20)
    INIT_VALUE = None
    ENTERED = GATE = None
    COUNTER = 0
    LOCK = threading.Lock()


    def init(value, entered, gate):
        global INIT_VALUE, ENTERED, GATE
        INIT_VALUE = value
        ENTERED, GATE = entered, gate


    def read_init():
        return INIT_VALUE


    def module_name():
        return __name__


    def count():
        global COUNTER
        COUNTER += 1
        return os.getpid(), COUNTER


    def draw():
        # The parent opens the gate once both calls have entered: they run in
        # two workers at once.
        ENTERED.release()
        if not GATE.acquire(timeout=60):
            raise TimeoutError("the gate never opened")
        return os.getpid(), random()


    def use_lock():
        with LOCK:
            inside = LOCK.locked()
        return inside, LOCK.locked()


    def big_size():
        return len(BIG.data)


    @process_task
    def decorated_read_init():
        return INIT_VALUE


    def make_adder(k):
        def adder(x):
            return x + k, os.getpid()

        return adder


    def main(guarded):
        engine, method = sys.argv[1], sys.argv[2]
        context = multiprocessing.get_context(method)
        # Semaphores, not a Barrier: see test_initargs_from_the_heap_under_spawn.
        initargs = (42, context.Semaphore(0), context.Semaphore(0))
        entered, gate = initargs[1:]
        if engine == "nestpool":
            executor = Pool(processes=2, start_method=method, initializer=init, initargs=initargs)
        else:
            executor = ProcessPoolExecutor(
                max_workers=2, mp_context=context, initializer=init, initargs=initargs
            )
        me = os.getpid()
        facts = {}
        with executor:
            draws = [executor.submit(draw) for _ in range(2)]
            for _ in draws:
                assert entered.acquire(timeout=60)
            for _ in draws:
                gate.release()
            (pid_a, value_a), (pid_b, value_b) = [f.result(timeout=60) for f in draws]
            facts["draws_in_two_workers"] = pid_a != pid_b and me not in (pid_a, pid_b)
            facts["draws_differ"] = value_a != value_b
            facts["init_seen"] = [executor.submit(read_init).result(timeout=60) for _ in range(4)]
            facts["module"] = executor.submit(module_name).result(timeout=60)
            counts = [executor.submit(count).result(timeout=60) for _ in range(6)]
            per_worker = {}
            for pid, n in counts:
                per_worker.setdefault(pid, []).append(n)
            facts["counter_persists"] = all(
                ns == list(range(1, len(ns) + 1)) for ns in per_worker.values()
            ) and me not in per_worker
            facts["lock"] = executor.submit(use_lock).result(timeout=60)
            facts["big"] = {executor.submit(big_size).result(timeout=60) for _ in range(10)}
            if engine == "nestpool":
                facts["decorated_init_seen"] = decorated_read_init().result(timeout=60)
                value, pid = executor.submit(guarded, 1).result(timeout=60)
                facts["guarded"] = (value, pid != me)
                facts["lambda"] = executor.submit(lambda x: x * 2, 21).result(timeout=60)
                value, pid = executor.submit(make_adder(5), 7).result(timeout=60)
                facts["closure"] = (value, pid != me)
                facts["lambda_map"] = list(executor.map(lambda x: -x, range(3)))
        facts["big_pickled"] = len(PICKLED_BIG)
        pickle.dumps(BIG)  # the recorder works: this one is counted
        facts["big_recorder_works"] = PICKLED_BIG == [me]
        for name, value in facts.items():
            print(f"{name}={value!r}", flush=True)


    if __name__ == "__main__":

        def guarded(x):
            # defined under the guard: a worker's __mp_main__ does not have it
            return x + 1, os.getpid()

        main(guarded)
    '''
)

#: What both engines print, under every start method (``module`` aside).
SHARED_FACTS: dict[str, Any] = {
    "draws_in_two_workers": True,
    "draws_differ": True,
    "init_seen": [42, 42, 42, 42],
    "counter_persists": True,
    "lock": (True, False),
    "big": {50 << 20},
    "big_pickled": 0,
    "big_recorder_works": True,
}

#: What only Pool runs: the by-value functions (ProcessPoolExecutor cannot
#: pickle a lambda or a closure, nor find a function defined under the guard).
BY_VALUE_FACTS: dict[str, Any] = {
    "decorated_init_seen": 42,
    "guarded": (2, True),
    "lambda": 42,
    "closure": (12, True),
    "lambda_map": [0, -1, -2],
}


def _facts(
    command: list[str], cwd: Path, *, quiet: bool = True, timeout: float = 100
) -> dict[str, Any]:
    """Run a program; the ``name=repr`` lines it printed, as a dict."""
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the program hung (still running after {timeout} s)")
    assert done.returncode == 0, done.stderr
    if quiet:
        assert done.stderr == ""
    facts: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition("=")
        facts[name] = ast.literal_eval(value)
    return facts


@pytest.mark.timeout(120)
def test_a_script_means_the_same_on_both_engines(start_method: str, tmp_path: Path) -> None:
    # The initializer's globals, module state, each worker's own random
    # numbers, a module-level lock, a 50 MB global never pickled: as
    # ProcessPoolExecutor gives them, because module-level functions of the
    # script go by reference.
    script = tmp_path / "program.py"
    script.write_text(SCRIPT)
    ours = _facts([sys.executable, str(script), "nestpool", start_method], tmp_path)
    theirs = _facts([sys.executable, str(script), "ppe", start_method], tmp_path, quiet=False)
    module = "__main__" if start_method == "fork" else "__mp_main__"
    assert theirs == {**SHARED_FACTS, "module": module}
    assert ours == {**theirs, **BY_VALUE_FACTS}


#: A script that hands work to an executor and ends without shutting it
#: down: ``program.py ENGINE METHOD DIRECTORY``; each call creates a file.
LEFT_OPEN = textwrap.dedent(
    """
    import multiprocessing
    import os
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from nestpool import Pool


    def save(directory, i):
        open(os.path.join(directory, str(i)), "w").close()


    if __name__ == "__main__":
        engine, method, directory = sys.argv[1:]
        context = multiprocessing.get_context(method)
        if engine == "nestpool":
            executor = Pool(max_workers=2, mp_context=context)
        else:
            executor = ProcessPoolExecutor(max_workers=2, mp_context=context)
        for i in range(10):
            executor.submit(save, directory, i)
        executor.map(save, [directory] * 10, range(10, 20))
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["nestpool", "stdlib"])
def test_work_left_at_the_end_of_a_script_runs_before_it_exits(
    engine: str, start_method: str, tmp_path: Path
) -> None:
    # No shutdown, no with: the interpreter's exit finishes the work, with the
    # script's own functions, although the workers may only be starting when
    # the script's last line has run (and the interpreter has forgotten the
    # script's path, which spawn and forkserver start a worker with).
    script = tmp_path / "program.py"
    script.write_text(LEFT_OPEN)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), engine, start_method, str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(int(path.name) for path in out.iterdir()) == list(range(20)), done.stderr


def _executor(engine: str, workers: int = 2) -> Executor:
    if engine == "nestpool":
        return Pool(max_workers=workers, start_method="forkserver")
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def _submit_and_drop(engine: str) -> list[Future[int]]:
    executor = _executor(engine)
    return [executor.submit(fft.pid_after, 0.2) for _ in range(4)]


@pytest.mark.parametrize("engine", ["nestpool", "stdlib"])
def test_a_dropped_executor_finishes_its_work_and_releases_its_workers(engine: str) -> None:
    # A function that makes an executor and returns its futures, never
    # shutting it down: the work still completes, and once it has, the
    # workers exit (they are not kept until the interpreter exits).
    futures = _submit_and_drop(engine)
    pids = {future.result(timeout=60) for future in futures}
    assert pids and os.getpid() not in pids
    assert wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids), 30), pids


def test_a_dropped_pool_in_a_reference_cycle_is_shut_down_by_the_collector() -> None:
    class Holder:
        pass

    holder = Holder()
    holder.pool = Pool(processes=1, start_method="forkserver")  # type: ignore[attr-defined]
    holder.me = holder  # type: ignore[attr-defined]
    pid = holder.pool.submit(os.getpid).result(timeout=60)  # type: ignore[attr-defined]
    closed = weakref.ref(holder.pool)  # type: ignore[attr-defined]
    del holder
    gc.collect()
    assert closed() is None
    assert wait_until(lambda: not psutil.pid_exists(pid), 30)


def test_decorated_calls_run_inline_once_their_pool_is_dropped() -> None:
    pool = Pool(processes=1, start_method="forkserver")
    pid, in_worker = where_task().result(timeout=60)
    assert in_worker
    assert pid in pool.worker_pids()
    del pool
    # No pool open any more: the call runs here, at once.
    future = where_task()
    assert future.done()
    assert future.result() == (os.getpid(), False)
    assert wait_until(lambda: not psutil.pid_exists(pid), 30)


#: A program with no file (``python -c``, like a notebook or stdin): run as
#: ``python -c PROGRAM ENGINE METHOD``.
PROGRAM = textwrap.dedent(
    """
    import multiprocessing
    import os
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from nestpool import Pool, process_task

    INIT_VALUE = None


    def init(value):
        global INIT_VALUE
        INIT_VALUE = value
        os.environ["NP_FAITHFUL_INIT"] = str(value)


    def read_init():
        return INIT_VALUE


    def read_environ():
        return os.environ.get("NP_FAITHFUL_INIT")


    def cube(x):
        return x**3, os.getpid()


    @process_task
    def decorated_cube(x):
        return x**3, os.getpid()


    def make_adder(k):
        def adder(x):
            return x + k, os.getpid()

        return adder


    engine, method = sys.argv[1:]
    context = multiprocessing.get_context(method)
    if engine == "nestpool":
        executor = Pool(processes=1, start_method=method, initializer=init, initargs=(42,))
    else:
        executor = ProcessPoolExecutor(1, mp_context=context, initializer=init, initargs=(42,))
    me = os.getpid()
    facts = {}
    with executor:
        value, pid = executor.submit(cube, 3).result(timeout=60)
        facts["cube"] = (value, pid != me)
        facts["initializer_ran"] = executor.submit(read_environ).result(timeout=60)
        facts["init_seen"] = executor.submit(read_init).result(timeout=60)
        if engine == "nestpool":
            value, pid = decorated_cube(2).result(timeout=60)
            facts["decorated"] = (value, pid != me)
            facts["lambda"] = executor.submit(lambda x: x * 2, 21).result(timeout=60)
            value, pid = executor.submit(make_adder(5), 7).result(timeout=60)
            facts["closure"] = (value, pid != me)
            facts["map"] = list(executor.map(cube, [1, 2]))[0][0]
    for name, value in facts.items():
        print(f"{name}={value!r}", flush=True)
    """
)


@pytest.mark.timeout(120)
def test_a_python_c_program_runs_by_value(start_method: str, tmp_path: Path) -> None:
    # No file a worker could run again: module-level functions, a decorated
    # task, a lambda, a closure and the initializer all travel by value.
    facts = _facts([sys.executable, "-c", PROGRAM, "nestpool", start_method], tmp_path)
    del facts["init_seen"]  # compared with ProcessPoolExecutor below
    assert facts == {
        "cube": (27, True),
        "initializer_ran": "42",
        "decorated": (8, True),
        "lambda": 42,
        "closure": (12, True),
        "map": 1,
    }


@pytest.mark.timeout(120)
def test_a_python_c_program_under_fork_means_the_same_on_both_engines(tmp_path: Path) -> None:
    # A forked worker inherits the __main__ of `python -c` (or of a notebook):
    # ProcessPoolExecutor finds its functions there by reference, so a task
    # sees the global its worker's initializer set. Under spawn and
    # forkserver ProcessPoolExecutor cannot run such a program at all.
    ours = _facts([sys.executable, "-c", PROGRAM, "nestpool", "fork"], tmp_path)
    theirs = _facts([sys.executable, "-c", PROGRAM, "ppe", "fork"], tmp_path, quiet=False)
    assert theirs == {"cube": (27, True), "initializer_ran": "42", "init_seen": 42}
    assert {name: ours[name] for name in theirs} == theirs


# --------------------------------------------- 2. by value, once per worker


def _sent_by_value(tmp_path: Path, pool: Pool) -> dict[str, tuple[str, list[int]]]:
    """Run 20 calls of each kind of by-value callable; for each, the log its
    captured ``UnpickleLog`` writes and the pids of the workers that ran it.

    Every callable captures its own marker, which logs the pid of each
    process that rebuilds it: it is rebuilt exactly when the callable is.
    """

    def marker(name: str) -> fft.UnpickleLog:
        return fft.UnpickleLog(str(tmp_path / f"{name}.log"), 100)

    closure_marker = marker("closure")

    def closure(x: int) -> tuple[int, int]:
        return x + closure_marker.offset, os.getpid()

    lambda_marker = marker("lambda")
    lam: Callable[[int], tuple[int, int]] = lambda x: (x + lambda_marker.offset, os.getpid())  # noqa: E731
    task_marker = marker("task")

    def for_task(x: int) -> tuple[int, int]:
        return x + task_marker.offset, os.getpid()

    task = process_task(for_task)
    map_marker = marker("pool_map")
    task_map_marker = marker("task_map")

    def for_task_map(x: int) -> tuple[int, int]:
        return x + task_map_marker.offset, os.getpid()

    expected = [(100 + i) for i in range(20)]
    runs: dict[str, list[tuple[int, int]]] = {
        # one at a time, and all at once
        "closure": [pool.submit(closure, i).result(timeout=30) for i in range(20)],
        "lambda": [f.result(timeout=30) for f in [pool.submit(lam, i) for i in range(20)]],
        "task": [f.result(timeout=30) for f in [task(i) for i in range(20)]],
        "pool_map": list(pool.map(lambda x: (x + map_marker.offset, os.getpid()), range(20))),
        "task_map": list(process_task(for_task_map).map(range(20), chunksize=1)),
    }
    report = {}
    for name, results in runs.items():
        assert [value for value, _ in results] == expected, name
        workers = sorted({pid for _, pid in results})
        assert os.getpid() not in workers
        report[name] = (str(tmp_path / f"{name}.log"), workers)
    return report


@pytest.mark.parametrize("processes", [1, 2])
def test_a_by_value_callable_crosses_once_per_worker(
    start_method: str, processes: int, tmp_path: Path
) -> None:
    with Pool(processes=processes, start_method=start_method) as pool:
        for name, (log, workers) in _sent_by_value(tmp_path, pool).items():
            # Each worker that ran it rebuilt it once, and nobody else did.
            assert sorted(fft.unpickled_in(log)) == workers, name
            assert len(workers) <= processes


def test_a_by_value_callable_is_not_sent_again_with_each_call(start_method: str) -> None:
    # What the worker reads from its channel (every read() it makes, from
    # /proc/<pid>/io): 20 more calls of a closure that carries 4 MB cost
    # far less than one more copy of it.
    blob = os.urandom(4 * MB)

    def closure(x: int) -> int:
        return x + len(blob)

    task = process_task(closure)
    with Pool(processes=1, start_method=start_method) as pool:
        assert pool.submit(closure, 0).result(timeout=30) == 4 * MB
        assert task(0).result(timeout=30) == 4 * MB
        (pid,) = pool.worker_pids()
        before = psutil.Process(pid).io_counters().read_chars
        assert [pool.submit(closure, i).result(timeout=30) for i in range(10)] == [
            4 * MB + i for i in range(10)
        ]
        assert [task(i).result(timeout=30) for i in range(5)] == [4 * MB + i for i in range(5)]
        assert list(task.map(range(5), chunksize=1)) == [4 * MB + i for i in range(5)]
        read = psutil.Process(pid).io_counters().read_chars - before
        assert read < MB, read


def test_a_replacement_worker_gets_the_callable_again(tmp_path: Path) -> None:
    log = str(tmp_path / "closure.log")
    marker = fft.UnpickleLog(log, 1)

    def closure(x: int) -> tuple[int, int]:
        return x + marker.offset, os.getpid()

    with Pool(processes=1) as pool:
        first = {pool.submit(closure, i).result(timeout=30)[1] for i in range(5)}
        assert fft.unpickled_in(log) == sorted(first)
        (dead,) = first
        os.kill(dead, signal.SIGKILL)
        assert wait_until(lambda: dead not in pool.worker_pids(), 10)
        second = {pool.submit(closure, i).result(timeout=30)[1] for i in range(5)}
        (replacement,) = second
        assert replacement != dead
        assert fft.unpickled_in(log) == [dead, replacement]


_GLOBAL_LOCK = threading.Lock()


def _unpicklable_functions() -> dict[str, tuple[Callable[..., Any], str]]:
    """By-value callables that cannot be pickled: (callable, the culprit as
    the error must name it)."""
    lock = threading.Lock()

    def closure(_: object = None) -> bool:
        return lock.locked()

    return {
        "closure": (closure, "captured variable 'lock' (a _thread.lock)"),
        "lambda using a global": (
            lambda _=None: _GLOBAL_LOCK.locked(),
            "global '_GLOBAL_LOCK' (a _thread.lock)",
        ),
    }


def _function_errors(pool: Pool, fn: Callable[..., Any]) -> dict[str, BaseException | None]:
    """The error of each way to run ``fn``: submit, a task call, both maps."""
    errors: dict[str, BaseException | None] = {
        "submit": pool.submit(fn).exception(timeout=30),
        "task call": process_task(fn)().exception(timeout=30),
    }
    for name, values in [
        ("pool.map", pool.map(fn, [1])),
        ("task.map", process_task(fn).map([1])),
    ]:
        try:
            next(values)
        except TaskPicklingError as exc:
            errors[name] = exc
        else:
            errors[name] = None
    return errors


def test_a_by_value_function_that_cannot_be_pickled_names_its_culprit() -> None:
    with Pool(processes=1) as pool:
        for case, (fn, culprit) in _unpicklable_functions().items():
            for how, error in _function_errors(pool, fn).items():
                assert isinstance(error, TaskPicklingError), (case, how, error)
                assert error.direction == "function", (case, how)
                assert culprit in str(error), (case, how, str(error))
        assert pool.worker_pids() == []  # failed here: no worker was involved


def test_the_error_for_an_unpicklable_function_never_says_module_level() -> None:
    # Where the function is defined is not the cause (the object it uses
    # is), and in a notebook or `python -c` module level goes by value too.
    with Pool(processes=1) as pool:
        for case, (fn, _) in _unpicklable_functions().items():
            for how, error in _function_errors(pool, fn).items():
                assert "module level" not in str(error), (case, how, str(error))


# ------------------------- 3. initargs as the standard library passes them

#: makes an executor of 2 workers: make(start_method, initializer, initargs)
MakeExecutor = Callable[[str, Callable[..., object], tuple[Any, ...]], Executor]


def _nestpool(method: str, initializer: Callable[..., object], initargs: tuple[Any, ...]) -> Pool:
    return Pool(processes=2, start_method=method, initializer=initializer, initargs=initargs)


def _stdlib(
    method: str, initializer: Callable[..., object], initargs: tuple[Any, ...]
) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=2,
        mp_context=multiprocessing.get_context(method),
        initializer=initializer,
        initargs=initargs,
    )


ENGINES: dict[str, MakeExecutor] = {"nestpool": _nestpool, "ProcessPoolExecutor": _stdlib}


def _use_shared_objects(method: str, make: MakeExecutor) -> dict[str, Any]:
    """Hand a Queue, Lock, Event, Value, Array, shared memory (by name) and a
    manager dict to the workers' initializer; tasks use them; what the
    parent then reads in each."""
    context = multiprocessing.get_context(method)
    memory = SharedMemory(create=True, size=16)
    try:
        with context.Manager() as manager:
            queue = context.Queue()
            event = context.Event()
            value = context.Value("i", 0)
            array = context.Array("i", 10)
            initargs = (queue, context.Lock(), event, value, array, memory.name, manager.dict())
            mapping = initargs[-1]
            assert not event.is_set()
            with make(method, fft.init_shared, initargs) as executor:
                futures = [executor.submit(fft.use_shared, i, 200) for i in range(10)]
                facts = {
                    "results": [f.result(timeout=30) for f in futures],
                    "queue": sorted(queue.get(timeout=10) for _ in range(10)),
                    "event": event.wait(10),
                    "value": value.value,
                    "array": list(array),
                    "memory": bytes(memory.buf[:10]),
                    "dict": dict(mapping),
                }
            queue.close()
            queue.join_thread()
    finally:
        memory.close()
        memory.unlink()
    return facts


@pytest.mark.timeout(90)
def test_initargs_as_the_standard_library_passes_them(start_method: str) -> None:
    facts = {name: _use_shared_objects(start_method, make) for name, make in ENGINES.items()}
    assert facts["ProcessPoolExecutor"] == {
        "results": list(range(10)),
        "queue": list(range(10)),
        "event": True,
        "value": 2000,  # exact: every increment held the Lock
        "array": [i * i for i in range(10)],
        "memory": bytes(range(1, 11)),
        "dict": {f"k{i}": i for i in range(10)},
    }
    assert facts["nestpool"] == facts["ProcessPoolExecutor"]


def test_an_initarg_that_cannot_travel(start_method: str) -> None:
    # A threading.Lock cannot be pickled: under spawn and forkserver the
    # constructor says so; a forked worker inherits it, and it works.
    lock = threading.Lock()
    if start_method != "fork":
        with pytest.raises(TaskPicklingError) as raised:
            Pool(start_method=start_method, initializer=fft.init_thread_lock, initargs=(lock,))
        assert raised.value.direction == "initializer"
        assert "_thread.lock" in str(raised.value)
        return
    with Pool(
        processes=1, start_method="fork", initializer=fft.init_thread_lock, initargs=(lock,)
    ) as pool:
        assert pool.submit(fft.use_thread_lock).result(timeout=30) == (True, False)


# ------------------------------------ 4. the worker's main thread runs tasks


def _main_thread_facts(executor: Executor) -> dict[str, Any]:
    return {
        "thread": executor.submit(fft.thread_facts).result(timeout=30),
        "alarm": executor.submit(fft.alarm_in_task).result(timeout=30),
        "sqlite": [executor.submit(fft.sqlite_insert, x).result(timeout=30) for x in (1, 2, 3)],
    }


def test_the_main_thread_runs_tasks_and_the_initializer(start_method: str) -> None:
    # A signal handler installed by a task runs when the alarm comes; a
    # sqlite3 connection the initializer made is usable (it checks its thread).
    with Pool(processes=1, start_method=start_method, initializer=fft.init_sqlite) as pool:
        ours = _main_thread_facts(pool)
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context(start_method),
        initializer=fft.init_sqlite,
    ) as executor:
        theirs = _main_thread_facts(executor)
    assert theirs == {
        "thread": (True, "MainThread"),
        "alarm": [True],  # the handler ran once, on the main thread
        "sqlite": [(1, 1), (2, 3), (3, 6)],
    }
    assert ours == theirs


def test_with_several_tasks_per_process_tasks_run_on_other_threads(start_method: str) -> None:
    # Documented: with tasks_per_process > 1 the main thread only waits, so
    # signal.signal in a task raises as it does in any thread but the main one.
    with Pool(processes=1, tasks_per_process=2, start_method=start_method) as pool:
        on_main, name = pool.submit(fft.thread_facts).result(timeout=30)
        assert not on_main
        assert name.startswith("nestpool-worker-")
        error = pool.submit(fft.install_handler).exception(timeout=30)
        assert isinstance(error, ValueError), repr(error)
        assert "main thread" in str(error)


# ------------------------------------ 5. no user object can break the engine

#: crossing -> (the error the future fails with, its direction). An exception
#: that cannot make the round trip in the worker arrives as RemoteTaskError
#: (SPEC: "one that cannot be pickled arrives as an exported error carrying
#: its type name, message and traceback text"); one that only the parent
#: cannot rebuild is found there, when the task's outcome is unpickled.
CROSSINGS: dict[str, tuple[type[BaseException], str | None]] = {
    "argument pickled in the parent": (TaskPicklingError, "argument"),
    "argument unpickled in the worker": (TaskPicklingError, "argument (unpickling in the worker)"),
    "function pickled in the parent": (TaskPicklingError, "function"),
    "function unpickled in the worker": (TaskPicklingError, "function (unpickling in the worker)"),
    "result pickled in the worker": (TaskPicklingError, "result"),
    "result unpickled in the parent": (TaskPicklingError, "result (unpickling in the parent)"),
    "exception pickled in the worker": (RemoteTaskError, None),
    "exception rebuilt in the worker": (RemoteTaskError, None),
    "exception unpickled in the parent": (TaskPicklingError, "result (unpickling in the parent)"),
}


def _fail_at(pool: Pool, crossing: str, kind: str) -> Future[Any]:
    """A call whose object raises ``kind`` at ``crossing``."""
    if crossing == "argument pickled in the parent":
        return fft.echo_task(fft.RaisesOnPickle(kind))
    if crossing == "argument unpickled in the worker":
        return pool.submit(fft.echo, fft.RaisesOnRebuild(kind))
    if crossing == "function pickled in the parent":
        captured: Any = fft.RaisesOnPickle(kind)
        return pool.submit(lambda: captured.kind)
    if crossing == "function unpickled in the worker":
        rebuilt = fft.RaisesOnRebuild(kind)
        return process_task(lambda: rebuilt.kind)()
    return fft.bad_outcome_task(crossing, kind, os.getpid())


def _check_crossing_error(error: BaseException | None, crossing: str, kind: str) -> None:
    expected, direction = CROSSINGS[crossing]
    assert isinstance(error, expected), (crossing, repr(error))
    if isinstance(error, TaskPicklingError):
        assert error.direction == direction, crossing
    else:
        assert isinstance(error, RemoteTaskError)
        assert error.type_name.endswith(("ErrorRaisesOnPickle", "ErrorRaisesOnRebuild"))
    assert kind in str(error), (crossing, str(error))


def _still_works(pool: Pool, pids: list[int]) -> None:
    """The pool runs 50 more tasks, on the same workers (none died)."""
    assert list(pool.map(fft.square, range(50))) == [x * x for x in range(50)]
    assert sorted(pool.worker_pids()) == pids


@pytest.mark.parametrize("kind", fft.KINDS)
def test_a_base_exception_at_any_crossing_fails_that_future_alone(
    start_method: str, kind: str
) -> None:
    with Pool(processes=2, start_method=start_method) as pool:
        assert list(pool.map(fft.square, range(4))) == [0, 1, 4, 9]  # workers up
        pids = sorted(pool.worker_pids())
        for crossing in CROSSINGS:
            started = time.monotonic()
            future = _fail_at(pool, crossing, kind)
            error = future.exception(timeout=5)
            elapsed = time.monotonic() - started
            _check_crossing_error(error, crossing, kind)
            assert elapsed < 1.0, (crossing, elapsed)
            _still_works(pool, pids)


@pytest.mark.parametrize("kind", fft.KINDS)
def test_a_base_exception_at_any_crossing_fails_one_item_of_a_chunk(
    start_method: str, kind: str
) -> None:
    with Pool(processes=2, start_method=start_method) as pool:
        assert list(pool.map(fft.square, range(4))) == [0, 1, 4, 9]  # workers up
        pids = sorted(pool.worker_pids())
        for crossing in CROSSINGS:
            if crossing.startswith("function"):
                continue  # the whole map's function: no item of its own
            bad: Any = 4
            if crossing == "argument pickled in the parent":
                bad = fft.RaisesOnPickle(kind)
            elif crossing == "argument unpickled in the worker":
                bad = fft.RaisesOnRebuild(kind)
            # One chunk of five items; the last is the bad one.
            same = (crossing, kind, os.getpid(), 4)
            values = fft.chunk_item.map([0, 1, 2, 3, bad], *map(repeat, same), chunksize=5)
            assert [next(values) for _ in range(4)] == [0, 10, 20, 30], crossing
            with pytest.raises(BaseException) as raised:
                next(values)
            _check_crossing_error(raised.value, crossing, kind)
            with pytest.raises(StopIteration):
                next(values)
            _still_works(pool, pids)


# ------------------------------------------------- 6. no stale references


def _collectable(refs: list[weakref.ref[Any]]) -> bool:
    """True once nothing keeps the objects alive. Polled briefly: the
    dispatcher thread may still be returning from the step that finished
    the future (a lasting reference fails all the same)."""

    def dead() -> bool:
        gc.collect()
        return all(ref() is None for ref in refs)

    return wait_until(dead, 2)


def _calls(pool: Pool) -> Iterator[tuple[str, list[weakref.ref[Any]], Callable[[], object]]]:
    """Each way to run something on objects only the call refers to: (name,
    weak references to those objects, a function that runs the call to its
    end and returns its done future or its values)."""

    def one(make: Callable[[fft.Holder], Future[Any]], size: int) -> Any:
        holder = fft.Holder(size)
        refs = [weakref.ref(holder)]

        def run() -> Future[Any]:
            future = make(holder)
            assert future.result(timeout=30) == size
            return future

        return refs, run

    def many(make: Callable[[list[fft.Holder]], Iterator[int]]) -> Any:
        holders = [fft.Holder(10 * MB) for _ in range(3)]
        refs = [weakref.ref(holder) for holder in holders]

        def run() -> list[int]:
            values = list(make(holders))
            assert values == [10 * MB] * 3
            return values

        return refs, run

    yield "submit(obj.method)", *one(lambda h: pool.submit(h.method), 10)
    yield "submit(fn, 10 MB)", *one(lambda h: pool.submit(fft.size_of, h), 10 * MB)
    yield "task(10 MB)", *one(fft.size_task, 10 * MB)
    yield "task.map", *many(lambda hs: fft.size_task.map(hs))
    yield "pool.map", *many(lambda hs: pool.map(fft.size_of, hs))
    yield "pool.map(obj.method)", *many(lambda hs: pool.map(hs[0].method, [0, 0, 0]))


def test_a_done_call_keeps_nothing_alive_while_the_pool_is_open(start_method: str) -> None:
    with Pool(processes=2, start_method=start_method) as pool:
        for name, refs, run in _calls(pool):
            outcome = run()
            del run  # the caller's own last reference to the objects
            # A done future (or the values of a map) holds its result only.
            assert _collectable(refs), name
            del outcome


def test_a_done_call_keeps_nothing_alive_once_the_pool_is_closed(start_method: str) -> None:
    with Pool(processes=2, start_method=start_method) as pool:
        calls = list(_calls(pool))
        outcomes = [run() for _, _, run in calls]
    refs = {name: refs for name, refs, _ in calls}
    del calls  # the caller's own last references; the done futures are kept
    for name in refs:
        assert _collectable(refs[name]), name
    dispatcher = local_engine(pool).dispatcher
    assert dispatcher is not None and not dispatcher.is_alive()
    del outcomes


# --------------------------------------------- 7. found on the way: fork

#: Pools used and closed one after another under fork, each still referenced
#: afterwards (as the name a ``with`` block binds keeps it). Low fd numbers
#: are held and some freed between pools, so that a later pool's pipes reuse
#: an earlier one's numbers (several layouts, so no one order of allocation
#: is assumed).
FORK_AFTER_FORK = textwrap.dedent(
    """
    import os

    from nestpool import Pool

    if __name__ == "__main__":
        kept, failures = [], []
        for holes in range(6):
            held = [os.open(os.devnull, os.O_RDONLY) for _ in range(8)]
            first = Pool(processes=1, start_method="fork")
            with first:
                first.submit(abs, -1).result(timeout=5)
            kept.append(first)
            for fd in held[:holes]:
                os.close(fd)
            with Pool(processes=1, start_method="fork") as second:
                try:
                    second.submit(abs, -2).result(timeout=5)
                except Exception as exc:
                    failures.append((holes, type(exc).__name__))
            kept.append(second)
            for fd in held[holes:]:
                os.close(fd)
        print(f"failures={failures!r}")
    """
)


def test_a_closed_fork_pool_still_referenced_does_not_break_later_ones(tmp_path: Path) -> None:
    # Each forked worker runs the after-fork hooks of every dispatcher still
    # alive in the parent; a closed pool's must not close what its old fd
    # numbers have become (a later worker's channel, or its sentinel: then
    # the parent takes the worker for dead and waits for its exit for ever).
    script = tmp_path / "fork_after_fork.py"
    script.write_text(FORK_AFTER_FORK)
    assert _facts([sys.executable, str(script)], tmp_path, timeout=20) == {"failures": []}
