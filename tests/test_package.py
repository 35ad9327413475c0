"""The package: public names, their module and docstrings, the declared
dependencies and extras, py.typed."""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import importlib.resources
import inspect
import pickle
import re
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

import nestpool

ROOT = Path(__file__).resolve().parents[1]

#: the public API and the errors users catch (docs/api.md, docs/faults.md)
CORE_NAMES = {
    "Pool",
    "process_task",
    "thread_subtask",
    "gather",
    "NestpoolError",
    "WorkerDiedError",
    "TaskTimeoutError",
    "TaskPicklingError",
    "RemoteTaskError",
    "InitializerError",
}
#: documented extras: PoolClosedError, the decorated types and the map
#: iterators (for annotations), per-worker resources, stopping a running
#: task, and the version
EXTRA_NAMES = {
    "PoolClosedError",
    "ProcessTask",
    "ThreadSubtask",
    "AsyncSubtask",
    "MapIterator",
    "AsyncMapIterator",
    "PerWorker",
    "per_worker",
    "stop",
    "__version__",
}


def test_all_is_exactly_the_core_names_and_the_documented_extras() -> None:
    assert set(nestpool.__all__) == CORE_NAMES | EXTRA_NAMES
    assert len(nestpool.__all__) == len(set(nestpool.__all__))
    for name in nestpool.__all__:
        assert hasattr(nestpool, name), name


@pytest.mark.parametrize("name", sorted((CORE_NAMES | EXTRA_NAMES) - {"__version__"}))
def test_public_objects_live_in_nestpool_and_have_docstrings(name: str) -> None:
    obj = getattr(nestpool, name)
    assert obj.__module__ == "nestpool"
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    assert doc.splitlines()[0].endswith("."), f"{name}: the summary line is not a sentence"
    if inspect.isclass(obj):
        for attribute, member in vars(obj).items():
            if attribute.startswith("_") or not callable(member):
                continue
            assert inspect.getdoc(member), f"{name}.{attribute} has no docstring"


def test_version_is_the_installed_one() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", nestpool.__version__)
    assert importlib.metadata.version("nestpool") == nestpool.__version__


def test_the_error_classes_subclass_what_users_already_catch() -> None:
    expected = {
        nestpool.WorkerDiedError: BrokenProcessPool,
        nestpool.TaskTimeoutError: TimeoutError,
        nestpool.TaskPicklingError: pickle.PicklingError,
        nestpool.InitializerError: concurrent.futures.BrokenExecutor,
        nestpool.PoolClosedError: RuntimeError,
        nestpool.RemoteTaskError: nestpool.NestpoolError,
    }
    for error, base in expected.items():
        assert issubclass(error, nestpool.NestpoolError)
        assert issubclass(error, base), (error, base)
    assert issubclass(nestpool.TaskTimeoutError, concurrent.futures.TimeoutError)
    assert issubclass(nestpool.NestpoolError, Exception)


def test_runtime_dependencies_are_wrapt_and_cloudpickle_only() -> None:
    requirements = importlib.metadata.requires("nestpool") or []
    runtime = {
        re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        for requirement in requirements
        if "extra ==" not in requirement
    }
    assert runtime == {"wrapt", "cloudpickle"}


def test_the_extras_exist() -> None:
    metadata = importlib.metadata.metadata("nestpool")
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"test", "bench", "dask", "docs"} <= extras
    assert metadata["Requires-Python"] == ">=3.10"
    classifiers = set(metadata.get_all("Classifier") or [])
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_pyproject_declares_the_same() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    assert names == {"wrapt", "cloudpickle"}
    assert {"test", "bench", "dask", "docs"} <= set(project["optional-dependencies"])
    assert project["requires-python"] == ">=3.10"
    test_extra = " ".join(project["optional-dependencies"]["test"])
    assert "pytest-timeout" in test_extra


def test_py_typed_ships_with_the_package() -> None:
    assert importlib.resources.files("nestpool").joinpath("py.typed").is_file()
