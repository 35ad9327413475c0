"""Which callables a worker can import, and so get by reference, and which
must go by value: the rule multiprocessing itself follows for a script's
``__main__``, and a fresh import for every other module.

What it owns: ``Reach`` (the workers a pickle must reach) and
``needs_by_value``, with what it caches about ``__main__`` and about modules.
It must never pickle anything or import parent-side modules (workers load it).
"""

from __future__ import annotations

import ast
import os
import sys
import types
from typing import Literal

__all__ = ["Reach", "importable_by_name", "needs_by_value"]

#: The workers a pickled callable must reach: ``"spawned"`` (spawn and
#: forkserver: they run a script's ``__main__`` again, as ``__mp_main__``),
#: ``"forked"`` (they inherit ``__main__`` as it was at the fork) or
#: ``"portable"`` (processes that are not this program's children: Dask).
Reach = Literal["spawned", "forked", "portable"]


def needs_by_value(fn: object, reach: Reach = "spawned") -> bool:
    """True when a worker could not import ``fn`` by its module and qualified name.

    Lambdas, functions defined inside other functions, and functions of
    modules a fresh interpreter cannot import go by value with cloudpickle.
    A script's ``__main__`` is importable in a worker exactly as
    multiprocessing makes it so (spawn and forkserver run the main module as
    ``__mp_main__`` there, fork inherits it), so its module-level functions go
    by reference, as with ``ProcessPoolExecutor``; those defined under its
    ``if __name__ == "__main__":`` guard, and everything of a ``__main__``
    without a file (a notebook, ``python -c``, stdin), go by value, except to
    forked workers, which inherit ``__main__`` whole.

    Args:
        reach: the workers it must reach (see ``Reach``).
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not isinstance(module, str):
        return True
    if "<locals>" in qualname or "<lambda>" in qualname:
        return True
    if module in ("__main__", "__mp_main__"):
        if reach == "forked":
            # A forked worker inherits __main__ as it is: whatever is found
            # there by name (a notebook's, a guarded function) is there too.
            return not _found_in_main(qualname, fn)
        return reach == "portable" or not _main_exports(qualname)
    return not importable_by_name(module)


#: (the __main__ module, whether workers import it, names bound under its guard)
_main_facts: tuple[types.ModuleType, bool, frozenset[str]] | None = None


def _main_exports(qualname: str) -> bool:
    """True when a worker started by multiprocessing finds ``qualname`` in its
    ``__main__``: the main module has a file (or a module name) that
    multiprocessing runs again there, and the name is not bound only under
    the ``if __name__ == "__main__":`` guard, which does not run there."""
    global _main_facts
    main = sys.modules.get("__main__")
    if main is None:
        return False
    facts = _main_facts
    if facts is None or facts[0] is not main:
        facts = _main_facts = (main, _main_rerun_in_workers(main), _guarded_names(main))
    return facts[1] and qualname.partition(".")[0] not in facts[2]


def _found_in_main(qualname: str, fn: object) -> bool:
    """True when ``fn`` is what ``__main__`` holds at ``qualname``."""
    found: object = sys.modules.get("__main__")
    try:
        for part in qualname.split("."):
            found = getattr(found, part)
    except AttributeError:
        return False
    return found is fn or getattr(found, "__wrapped__", None) is fn


def _main_rerun_in_workers(main: types.ModuleType) -> bool:
    # The rule of multiprocessing.spawn.get_preparation_data and _fixup_main_*.
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None:
        return not (spec_name == "__main__" or spec_name.endswith(".__main__"))
    path = getattr(main, "__file__", None)
    if not isinstance(path, str):
        return False
    return os.path.splitext(os.path.basename(path))[0] != "ipython"


def _guarded_names(main: types.ModuleType) -> frozenset[str]:
    """Names the main module binds inside a top-level ``if`` that tests
    ``__name__`` (the entry point guard)."""
    path = getattr(main, "__file__", None)
    try:
        with open(str(path), "rb") as source:
            tree = ast.parse(source.read())
    except Exception:
        return frozenset()
    names: set[str] = set()
    for statement in tree.body:
        if not isinstance(statement, ast.If):
            continue
        if not any(
            isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(statement.test)
        ):
            continue
        for node in ast.walk(statement):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return frozenset(names)


#: module name -> (the module, whether a fresh interpreter finds it by name)
_importable: dict[str, tuple[types.ModuleType, bool]] = {}


def importable_by_name(module_name: str) -> bool:
    """True when a worker would find ``module_name`` by importing it: the module
    is loaded here, and the import system finds it again where it came from.

    False for a module made with ``types.ModuleType`` and ``exec``, and for one
    loaded from a file under a name that does not lead there (plugin loaders,
    ``importlib.util.spec_from_file_location``); those go by value. Decided
    once per module.
    """
    module = sys.modules.get(module_name)
    if module is None:
        return False
    cached = _importable.get(module_name)
    if cached is not None and cached[0] is module:
        return cached[1]
    try:
        found = _found_by_import(module_name, module)
    except Exception:  # pragma: no cover - a finder that fails: trust the name
        found = True
    _importable[module_name] = (module, found)
    return found


def _found_by_import(name: str, module: types.ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    if spec is None:
        # made at run time (types.ModuleType + exec), or the __main__ of `python -c`
        return getattr(module, "__file__", None) is not None
    origin = spec.origin if spec.has_location else None
    if origin is None:
        return True  # built-in, frozen, a namespace package: found by name
    parent_name = name.rpartition(".")[0]
    path = None
    if parent_name:
        if not importable_by_name(parent_name):
            return False
        path = getattr(sys.modules[parent_name], "__path__", None)
    # Ask the finders as a fresh import would, without sys.modules.
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            found = find_spec(name, path)
        except Exception:
            continue
        if found is not None:
            return found.origin is not None and _same_file(found.origin, origin)
    return False


def _same_file(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))
