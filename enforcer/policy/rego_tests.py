"""Rego unit tests (``*_test.rego``) run on the embedded engine, the way ``opa test`` runs them.

Owns: loading a policy tree (every ``.rego`` file, tests included, and its data
files), finding the test rules, evaluating them on regorus, reporting in the
shape of ``opa test`` output, line coverage, and folding in a real ``opa test``
run when an ``opa`` binary is on PATH.
Never: decides statements, or loads policies for the gateway (that is
:mod:`enforcer.policy.engine`); the only process it starts is ``opa``.

Loading follows ``opa test``: a data file in ``<root>/a/b/`` lands at
``data.a.b`` (a file directly in a root lands at ``data``), so
``policies/rego/pgwarden/data.json`` is ``data.pgwarden``. Only files named
``data.json``, ``data.yaml`` or ``data.yml`` are data, as for the gateway;
``opa test`` would also load any other JSON or YAML file in the tree, so keep
none there. Directories whose name starts with a dot are skipped.

A test is a rule whose name starts with ``test_``; it passes iff it evaluates
to ``true``. Undefined or any other value is a FAIL, an evaluation error an
ERROR. Rules named ``todo_test_*`` are reported as SKIPPED.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import regorus
import yaml

TEST_PREFIX = "test_"
SKIP_PREFIX = "todo_test_"
DATA_FILE_NAMES = frozenset({"data.json", "data.yaml", "data.yml"})
DATA_SUFFIXES = (".json", ".yaml", ".yml")
OPA_TIMEOUT_S = 600.0
_RULE_LINE = re.compile(r"^((?:todo_)?test_[A-Za-z0-9_]*)\b(?!\s*\()", re.MULTILINE)
_PACKAGE_LINE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_SEPARATOR = "-" * 80


class Outcome(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class TestCase:
    """A test rule: ``data.<package>.<name>``, defined first at ``file:line``."""

    package: str
    name: str
    file: str
    line: int

    @property
    def rule(self) -> str:
        return f"data.{self.package}.{self.name}"

    @property
    def skipped(self) -> bool:
        return self.name.startswith(SKIP_PREFIX)


@dataclass(frozen=True)
class TestResult:
    case: TestCase
    outcome: Outcome
    seconds: float
    detail: str = ""
    prints: tuple[str, ...] = ()


@dataclass
class PolicyTree:
    """What a set of paths holds: Rego modules by file name, the merged data document, load errors."""

    modules: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileCoverage:
    file: str
    covered: frozenset[int]
    not_covered: frozenset[int]

    @property
    def percent(self) -> float:
        total = len(self.covered) + len(self.not_covered)
        return 100.0 * len(self.covered) / total if total else 100.0


# --- loading -----------------------------------------------------------------


def _walk(root: Path) -> Iterator[Path]:
    """Files under a directory, sorted, skipping dot-directories."""
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            if not entry.name.startswith("."):
                yield from _walk(entry)
        elif entry.is_file():
            yield entry


def _load_data_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _merge(into: dict[str, Any], doc: dict[str, Any], where: list[str]) -> str | None:
    """Deep-merge ``doc`` into ``into``; the dotted path of the first conflict, if any."""
    for key, value in doc.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            conflict = _merge(into[key], value, [*where, key])
            if conflict is not None:
                return conflict
        elif into[key] != value:
            return ".".join(["data", *where, key])
    return None


def load_tree(paths: Iterable[Path]) -> PolicyTree:
    """Read every Rego module and data file under ``paths``; problems are collected, not raised."""
    tree = PolicyTree()
    for root in paths:
        if not root.exists():
            tree.errors.append(f"{root}: no such file or directory")
            continue
        files = [root] if root.is_file() else list(_walk(root))
        base = root.parent if root.is_file() else root
        for file in files:
            name = str(file)
            if file.suffix == ".rego":
                tree.modules[name] = file.read_text(encoding="utf-8")
            elif file.name in DATA_FILE_NAMES or (root.is_file() and file.suffix in DATA_SUFFIXES):
                # A data file named on the command line lands at the root, as with opa.
                where = [] if root.is_file() else list(file.parent.relative_to(base).parts)
                _add_data_file(tree, file, where)
    return tree


def _add_data_file(tree: PolicyTree, file: Path, where: list[str]) -> None:
    try:
        doc = _load_data_file(file)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        tree.errors.append(f"{file}: cannot parse data: {exc}")
        return
    if not where and not isinstance(doc, dict):
        tree.errors.append(f"{file}: a data file at the root must hold an object")
        return
    for part in reversed(where):
        doc = {part: doc}
    conflict = _merge(tree.data, doc, [])
    if conflict is not None:
        tree.errors.append(f"{file}: merge error: {conflict} is already defined by another data file")


def _engine_message(exc: BaseException) -> str:
    """regorus's error text without the Rust backtrace RUST_BACKTRACE may append."""
    text = str(exc).split("\nStack backtrace:", 1)[0]
    return text.strip() or type(exc).__name__


def build_engine(tree: PolicyTree) -> regorus.Engine:
    """An engine holding the tree's modules and data; parse errors are added to ``tree.errors``."""
    engine = regorus.Engine()
    for name, text in tree.modules.items():
        try:
            engine.add_policy(name, text)
        except Exception as exc:  # regorus raises plain exceptions that carry file:line:col
            message = _engine_message(exc)
            tree.errors.append(message if name in message else f"{name}: {message}")
    # The JSON form: regorus's Python conversion turns True/False into 1/0.
    engine.add_data_json(json.dumps(tree.data))
    return engine


# --- discovery ---------------------------------------------------------------


def _ref_path(ref: dict[str, Any]) -> list[str] | None:
    """The dotted parts of a package reference in regorus's AST (Var, RefDot, RefBrack with a string)."""
    if "Var" in ref:
        return [str(ref["Var"]["value"])]
    if "RefDot" in ref:
        head = _ref_path(ref["RefDot"]["refr"])
        return None if head is None else [*head, str(ref["RefDot"]["field"][1])]
    if "RefBrack" in ref:
        head = _ref_path(ref["RefBrack"]["refr"])
        index = ref["RefBrack"]["index"]
        if head is None or "String" not in index:
            return None
        return [*head, str(index["String"]["value"])]
    return None


def _rule_name(rule: dict[str, Any]) -> tuple[str, int] | None:
    """Name and line of a rule that could be a test: a plain (non-function, non-set) rule or a default."""
    if "Default" in rule:
        ref = rule["Default"]["refr"]
    elif "Spec" in rule and "Compr" in rule["Spec"]["head"]:
        ref = rule["Spec"]["head"]["Compr"]["refr"]
    else:
        return None
    if "Var" not in ref:
        return None
    return str(ref["Var"]["value"]), int(ref["Var"]["span"]["line"])


def _is_test_name(name: str) -> bool:
    return name.startswith(TEST_PREFIX) or name.startswith(SKIP_PREFIX)


def _cases_from_ast(engine: regorus.Engine) -> list[TestCase]:
    cases: list[TestCase] = []
    for module in json.loads(engine.get_ast_as_json()):
        file = str(module["source"]["file"])
        parts = _ref_path(module["ast"]["package"]["refr"])
        if parts is None:
            continue
        for rule in module["ast"]["rules"]:
            named = _rule_name(rule)
            if named is not None and _is_test_name(named[0]):
                cases.append(TestCase(".".join(parts), named[0], file, named[1]))
    return cases


def _cases_from_text(modules: dict[str, str]) -> list[TestCase]:
    """Fallback for regorus builds without the AST feature: rule heads at the start of a line."""
    cases: list[TestCase] = []
    for file, text in modules.items():
        package = _PACKAGE_LINE.search(text)
        if package is None:
            continue
        for match in _RULE_LINE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            cases.append(TestCase(package.group(1), match.group(1), file, line))
    return cases


def discover_tests(engine: regorus.Engine, modules: dict[str, str]) -> list[TestCase]:
    """Every test rule, once per ``data.<package>.<name>``, in file order then line order."""
    try:
        found = _cases_from_ast(engine)
    except (AttributeError, RuntimeError, KeyError, TypeError, ValueError):
        found = _cases_from_text(modules)
    order = {file: i for i, file in enumerate(modules)}
    unique: dict[str, TestCase] = {}
    for case in sorted(found, key=lambda c: (order.get(c.file, len(order)), c.line)):
        unique.setdefault(case.rule, case)
    return list(unique.values())


# --- running -----------------------------------------------------------------


def run_case(engine: regorus.Engine, case: TestCase) -> TestResult:
    if case.skipped:
        return TestResult(case, Outcome.SKIPPED, 0.0)
    start = time.perf_counter()
    try:
        raw = engine.eval_rule_as_json(case.rule)
    except Exception as exc:  # an evaluation error is the test's result, not the runner's
        seconds = time.perf_counter() - start
        return TestResult(case, Outcome.ERROR, seconds, _engine_message(exc), _prints(engine))
    seconds = time.perf_counter() - start
    value = json.loads(raw)
    if value is True:
        return TestResult(case, Outcome.PASS, seconds, prints=_prints(engine))
    detail = "undefined" if value == "<undefined>" else f"evaluated to {json.dumps(value)[:200]}"
    return TestResult(case, Outcome.FAIL, seconds, detail, _prints(engine))


def _prints(engine: regorus.Engine) -> tuple[str, ...]:
    try:
        return tuple(engine.take_prints())
    except Exception:  # builds without print gathering
        return ()


def coverage_report(engine: regorus.Engine) -> list[FileCoverage]:
    report = json.loads(engine.get_coverage_report_as_json())
    return [
        FileCoverage(str(f["path"]), frozenset(f["covered"]), frozenset(f["not_covered"]))
        for f in report.get("files", [])
    ]


# --- reporting ---------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """Like Go's time.Duration: 812.4µs, 3.1ms, 1.2s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def _line_ranges(lines: Iterable[int]) -> str:
    ordered = sorted(lines)
    spans: list[str] = []
    start = prev = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(spans)


def write_results(results: list[TestResult], *, verbose: bool, out: TextIO) -> None:
    shown = [r for r in results if verbose or r.outcome in (Outcome.FAIL, Outcome.ERROR)]
    current_file: str | None = None
    for result in shown:
        if result.case.file != current_file:
            if current_file is not None:
                out.write("\n")
            out.write(f"{result.case.file}:\n")
            current_file = result.case.file
        timing = "" if result.outcome is Outcome.SKIPPED else f" ({format_duration(result.seconds)})"
        out.write(f"{result.case.rule}: {result.outcome.value}{timing}\n")
        if result.detail and result.outcome is not Outcome.PASS:
            for line in result.detail.splitlines():
                out.write(f"  {line}\n")
        for line in result.prints:
            out.write(f"  {line}\n")
    if shown:
        out.write(f"{_SEPARATOR}\n")
    total = len(results)
    for outcome in Outcome:
        n = sum(1 for r in results if r.outcome is outcome)
        if n or (outcome is Outcome.PASS and total):
            out.write(f"{outcome.value}: {n}/{total}\n")


def write_coverage(files: list[FileCoverage], *, verbose: bool, out: TextIO) -> None:
    out.write(f"{_SEPARATOR}\nCoverage (lines of rules evaluated by the tests):\n")
    if not files:
        out.write("  no coverage recorded\n")
        return
    width = max(len(f.file) for f in files)
    covered = not_covered = 0
    for f in sorted(files, key=lambda f: f.file):
        covered += len(f.covered)
        not_covered += len(f.not_covered)
        count = f"({len(f.covered)}/{len(f.covered) + len(f.not_covered)})"
        out.write(f"  {f.file:<{width}}  {f.percent:6.1f}%  {count}\n")
        if verbose and f.not_covered:
            out.write(f"  {'':<{width}}  not covered: lines {_line_ranges(f.not_covered)}\n")
    total = covered + not_covered
    percent = 100.0 * covered / total if total else 100.0
    out.write(f"  {'total':<{width}}  {percent:6.1f}%  ({covered}/{total})\n")


# --- opa ---------------------------------------------------------------------


def find_opa() -> str | None:
    return shutil.which("opa")


def run_opa(opa: str, paths: list[Path], *, verbose: bool, out: TextIO) -> int:
    """``opa test`` over the same paths, its output copied to ``out``; its exit status."""
    command = [opa, "test", *(["--verbose"] if verbose else []), *[str(p) for p in paths]]
    out.write(f"{_SEPARATOR}\n$ {' '.join(command)}\n")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=OPA_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        out.write(f"opa test could not run: {exc}\n")
        return 1
    out.write(done.stdout)
    out.write(done.stderr)
    if done.stdout and not done.stdout.endswith("\n"):
        out.write("\n")
    return done.returncode


# --- entry point -------------------------------------------------------------


def run_policy_tests(
    paths: list[Path], *, coverage: bool = False, verbose: bool = False, out: TextIO = sys.stdout
) -> int:
    """Run every Rego test under ``paths``; 0 iff every test passed (and ``opa test`` too, if installed)."""
    tree = load_tree(paths)
    engine = build_engine(tree)
    if tree.errors:
        noun = "error" if len(tree.errors) == 1 else "errors"
        out.write(f"{len(tree.errors)} {noun} occurred while loading:\n")
        for error in tree.errors:
            out.write(f"ERROR: {error}\n")
        return 1
    cases = discover_tests(engine, tree.modules)
    if not cases:
        out.write(f"no tests found under {', '.join(str(p) for p in paths)}\n")
        return 1
    try:
        engine.set_gather_prints(True)
        if coverage:
            engine.set_enable_coverage(True)
    except Exception as exc:  # a build without the feature: say so, run the tests anyway
        out.write(f"note: {_engine_message(exc)}\n")
    results = [run_case(engine, case) for case in cases]
    write_results(results, verbose=verbose, out=out)
    if coverage:
        try:
            write_coverage(coverage_report(engine), verbose=verbose, out=out)
        except Exception as exc:  # coverage is a build feature of regorus
            out.write(f"coverage is not available: {_engine_message(exc)}\n")
    status = 0 if all(r.outcome in (Outcome.PASS, Outcome.SKIPPED) for r in results) else 1
    opa = find_opa()
    if opa is not None:
        status = max(status, 1 if run_opa(opa, paths, verbose=verbose, out=out) != 0 else 0)
    elif verbose:
        out.write("opa is not on PATH: ran the embedded engine (regorus) only\n")
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m enforcer.policy.rego_tests [-v] [--coverage] PATH...``"""
    args = sys.argv[1:] if argv is None else argv
    flags = {a for a in args if a.startswith("-")}
    paths = [Path(a) for a in args if not a.startswith("-")] or [Path("policies/rego")]
    return run_policy_tests(paths, coverage="--coverage" in flags, verbose=bool(flags & {"-v", "--verbose"}))


if __name__ == "__main__":
    sys.exit(main())
