"""By value when needed, by reference when possible.

Functions a worker cannot import (lambdas, closures, functions defined in
``__main__`` of a script or of a notebook-like ``python -c``, in a module made
with ``exec``, or in a module loaded from a file that is not on the import
path, as plugin loaders do) are sent by value with cloudpickle; importable
ones travel as a reference. The subprocess scripts run a real program under
each start method; the in-process tests look at the payloads.
"""

from __future__ import annotations

import ast
import importlib.util
import pickle
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from nestpool import Pool, ProcessTask, _serialize, process_task
from tests import core_tasks

pytestmark = pytest.mark.timeout(120)

SCRIPT = textwrap.dedent(
    '''
    import importlib.util
    import os
    import sys
    import types

    from nestpool import Pool, process_task, thread_subtask

    # The parent's pid, also where a worker runs this module again (a script's
    # __main__ is imported by spawn and forkserver workers as __mp_main__).
    ME = int(os.environ.setdefault("NP_PARENT_PID", str(os.getpid())))


    @thread_subtask
    def inc(x):
        return x + 1


    @process_task
    def in_main(xs):
        return sum(inc.map(xs)), os.getpid() != ME


    @process_task
    def apply(task, x):
        # a decorated function received as an argument: runs inline here
        return task(x).result(), os.getpid() != ME


    def make_closure(k):
        def closure(x):
            return x * k, os.getpid() != ME

        return closure


    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y


    def init_main(value):
        # an initializer defined in __main__ (notebook-style: not importable)
        os.environ["NP_INIT_VALUE"] = f"{value}:{os.getpid()}"


    def read_init():
        value, pid = os.environ["NP_INIT_VALUE"].split(":")
        return value, int(pid) == os.getpid() != ME


    def describe_point(point):
        return type(point).__name__, point.x, point.y, type(point) is Point


    SOURCE = """
    import os
    from nestpool import process_task

    @process_task
    def dyn_task(x, me):
        return __name__, x, os.getpid() != me

    def dyn_plain(x, me):
        return __name__, x, os.getpid() != me
    """


    def load_plugin(directory):
        # as plugin loaders do: a file loaded under a name nothing can import
        path = os.path.join(directory, "np_plugin_mod.py")
        with open(path, "w") as handle:
            handle.write(SOURCE)
        spec = importlib.util.spec_from_file_location("np_plugin_mod", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


    def exec_module():
        module = types.ModuleType("np_exec_mod")
        sys.modules[module.__name__] = module
        exec(SOURCE, module.__dict__)
        return module


    def main(method, directory):
        plugin = load_plugin(directory)
        dynamic = exec_module()
        results = {}
        with Pool(processes=1, threads=2, start_method=method) as pool:
            cases = {
                "main_task": lambda: in_main([1, 2, 3]).result(timeout=60),
                "main_map": lambda: list(in_main.map([[1], [2, 3]])),
                "main_submit": lambda: pool.submit(in_main, [5]).result(timeout=60),
                "lambda": lambda: pool.submit(lambda x: (x + 100, os.getpid() != ME), 1).result(
                    timeout=60
                ),
                "lambda_map": lambda: list(pool.map(lambda x: -x, range(3))),
                "closure": lambda: pool.submit(make_closure(7), 6).result(timeout=60),
                "decorated_closure": lambda: process_task(make_closure(3))(5).result(timeout=60),
                "task_argument": lambda: apply(in_main, [4]).result(timeout=60),
                "main_class": lambda: describe_point(pool.submit(Point, 1, 2).result(timeout=60)),
                "exec_task": lambda: dynamic.dyn_task(1, ME).result(timeout=60),
                "exec_submit": lambda: pool.submit(dynamic.dyn_plain, 2, ME).result(timeout=60),
                "plugin_task": lambda: plugin.dyn_task(3, ME).result(timeout=60),
                "plugin_submit": lambda: pool.submit(plugin.dyn_plain, 4, ME).result(timeout=60),
                "plugin_map": lambda: list(plugin.dyn_task.map([5], [ME])),
            }
            for name, case in cases.items():
                try:
                    results[name] = case()
                except Exception as exc:
                    results[name] = ("error", type(exc).__name__, str(exc)[:300])
        try:
            with Pool(
                processes=1, start_method=method, initializer=init_main, initargs=(5,)
            ) as pool:
                results["main_initializer"] = pool.submit(read_init).result(timeout=60)
        except Exception as exc:
            results["main_initializer"] = ("error", type(exc).__name__, str(exc)[:300])
        for name, value in results.items():
            print(f"{name}={value!r}", flush=True)


    if __name__ == "__main__":
        main(*sys.argv[1:])
    '''
)

EXPECTED: dict[str, Any] = {
    "main_task": (9, True),
    "main_map": [(2, True), (7, True)],
    "main_submit": (6, True),
    "lambda": (101, True),
    "lambda_map": [0, -1, -2],
    "closure": (42, True),
    "decorated_closure": (15, True),
    "task_argument": ((5, True), True),
    "main_class": ("Point", 1, 2, True),
    "exec_task": ("np_exec_mod", 1, True),
    "exec_submit": ("np_exec_mod", 2, True),
    "plugin_task": ("np_plugin_mod", 3, True),
    "plugin_submit": ("np_plugin_mod", 4, True),
    "plugin_map": [("np_plugin_mod", 5, True)],
    "main_initializer": ("5", True),
}


def _run(command: list[str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=100, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    results: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition("=")
        results[name] = ast.literal_eval(value)
    return results


@pytest.mark.parametrize("style", ["script", "notebook"])
def test_functions_the_worker_cannot_import_go_by_value(
    start_method: str, style: str, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"  # not on the import path, unlike the script's directory
    plugins.mkdir()
    if style == "script":
        script = tmp_path / "program.py"
        script.write_text(SCRIPT)
        command = [sys.executable, str(script), start_method, str(plugins)]
    else:
        # like a notebook: __main__ has no file a spawned worker could re-import
        command = [sys.executable, "-c", SCRIPT, start_method, str(plugins)]
    assert _run(command, tmp_path) == EXPECTED


# ------------------------------------------------------------ in process


def _load_plugin(directory: Path, name: str) -> types.ModuleType:
    path = directory / f"{name}.py"
    path.write_text(
        "from nestpool import process_task\n\n"
        "@process_task\n"
        "def plug(x):\n"
        "    return ('plug', x)\n\n"
        "def plain(x):\n"
        "    return ('plain', x)\n"
    )
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_importable_functions_go_by_reference() -> None:
    task: ProcessTask[[int], int] = core_tasks.double_it
    payload = task._self_options.get_payload()
    # a reference: the module and the qualified name, no code
    assert b"tests.core_tasks" in payload
    assert b"double_it" in payload
    assert len(payload) < 200
    assert pickle.loads(payload) is task.__wrapped__  # found by import, not rebuilt
    plain = _serialize.dumps_callable(core_tasks.plain_triple)
    assert pickle.loads(plain) is core_tasks.plain_triple
    method = core_tasks.Scaler.__dict__["scale"]._self_options.get_payload()
    assert pickle.loads(method) is core_tasks.Scaler.__dict__["scale"].__wrapped__
    # the decorated function itself pickles as a reference too
    assert pickle.loads(pickle.dumps(task)) is task
    assert cloudpickle.loads(cloudpickle.dumps(task)) is task


def test_unimportable_functions_go_by_value(tmp_path: Path) -> None:
    def closure(x: int) -> int:
        return x + 1

    decorated = process_task(closure)
    payload = decorated._self_options.get_payload()
    rebuilt = pickle.loads(payload)
    assert rebuilt is not closure
    assert rebuilt(1) == 2
    lam = pickle.loads(_serialize.dumps_callable(lambda x: x * 2))
    assert lam(4) == 8

    plugin = _load_plugin(tmp_path, "np_plugin_in_process")
    exec_module = types.ModuleType("np_exec_in_process")
    exec(
        "from nestpool import process_task\n@process_task\ndef dyn(x):\n    return ('dyn', x)\n",
        exec_module.__dict__,
    )
    sys.modules[exec_module.__name__] = exec_module
    try:
        payloads = [
            plugin.plug._self_options.get_payload(),
            _serialize.dumps_callable(plugin.plain),
            exec_module.dyn._self_options.get_payload(),
        ]
        task_pickle = _serialize.dumps(plugin.plug)  # as an argument is pickled
    finally:
        # Like a worker, which cannot import them by name:
        del sys.modules["np_plugin_in_process"], sys.modules["np_exec_in_process"]
    assert [pickle.loads(p)(1) for p in payloads] == [("plug", 1), ("plain", 1), ("dyn", 1)]
    rebuilt_task = pickle.loads(task_pickle)
    assert rebuilt_task.sync(2) == ("plug", 2)
    assert isinstance(rebuilt_task, ProcessTask)


def test_a_decorated_task_passed_as_an_argument_runs_inline_in_the_worker() -> None:
    with Pool(processes=1, start_method="spawn") as pool:
        value, in_worker, pid = core_tasks.call_task(core_tasks.double_it, 5).result(timeout=30)
        assert (value, in_worker) == (10, True)
        assert pid == pool.worker_pids()[0]
