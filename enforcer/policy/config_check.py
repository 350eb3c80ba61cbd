"""Review rules for gateway configurations: conftest-style Rego evaluated on the embedded engine.

Owns: evaluating the ``deny`` and ``warn`` rules of package ``main`` on a configuration file (the
YAML as conftest parses it) and of package ``policy_data`` on each policy data file the
configuration loads (``policy.paths``), reporting each finding with its file, and comparing the
findings with a ``conftest`` binary when one is on PATH.
Never: validates a configuration the way the gateway loads it (``pgwarden config check`` does),
reads a secret, or starts any process other than ``conftest``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import yaml

from enforcer.config import SHIPPED_POLICIES
from enforcer.policy.engine import PolicyError, policy_files

#: conftest's default namespace: rules about a configuration file.
CONFIG_NAMESPACE = "main"
#: Rules about a policy data file (``conftest test --namespace policy_data data.json``).
DATA_NAMESPACE = "policy_data"
#: The shipped rules (a source checkout; an installed package has to be given ``--policies``).
SHIPPED_CONFIG_RULES = SHIPPED_POLICIES.parent / "conftest"
DATA_FILE_NAMES = ("data.json", "data.yaml", "data.yml")
CONFTEST_TIMEOUT_S = 120.0

Level = Literal["deny", "warn"]
_LEVELS: tuple[Level, ...] = ("deny", "warn")
#: conftest's JSON output keys for each level.
_CONFTEST_KEYS: tuple[tuple[str, Level], ...] = (("failures", "deny"), ("warnings", "warn"))


class ConfigCheckError(Exception):
    """The check cannot run (rules that do not load, a file that does not parse)."""


@dataclass(frozen=True)
class Finding:
    file: str
    namespace: str
    level: Level
    message: str

    def line(self) -> str:
        """conftest's text output: ``FAIL - file - namespace - message``."""
        word = "FAIL" if self.level == "deny" else "WARN"
        return f"{word} - {self.file} - {self.namespace} - {self.message}"


@dataclass(frozen=True)
class CheckedFile:
    file: str
    namespace: str
    #: The parsed document (the rules' ``input``).
    document: Any = field(repr=False, compare=False)


@dataclass
class CheckReport:
    checked: list[CheckedFile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: Things the reader should know: policy data that could not be found here, conftest skipped.
    notes: list[str] = field(default_factory=list)
    #: Disagreements with ``conftest test`` (empty when it agreed or did not run).
    disagreements: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "deny"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warn"]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.disagreements


class ConfigRules:
    """The Rego modules of a rules directory (``*_test.rego`` left out), loaded into regorus."""

    def __init__(self, directory: Path) -> None:
        import regorus

        if not directory.is_dir():
            raise ConfigCheckError(
                f"rules directory {directory} does not exist; name one with --policies DIR "
                "(pgwarden's are in policies/conftest of its source)"
            )
        try:
            modules, data = policy_files([directory])
        except PolicyError as exc:
            raise ConfigCheckError(str(exc)) from None
        self.directory = directory
        self._engine = regorus.Engine()
        for path, text in modules:
            try:
                self._engine.add_policy(str(path), text)
            except Exception as exc:  # regorus reports the location in a plain exception
                raise ConfigCheckError(f"rule file {path} does not compile: {exc}") from None
        self._engine.add_data_json(json.dumps(data))

    def evaluate(self, namespace: str, document: Any) -> list[tuple[Level, str]]:
        """The sorted ``deny`` and ``warn`` messages of ``namespace`` for ``document`` as input."""
        self._engine.set_input_json(json.dumps(document, default=str))
        out: list[tuple[Level, str]] = []
        for level in _LEVELS:
            for message in self._messages(f"data.{namespace}.{level}"):
                out.append((level, message))
        return out

    def _messages(self, rule: str) -> list[str]:
        try:
            raw = self._engine.eval_rule_as_json(rule)
        except Exception as exc:
            if "not a valid rule path" in str(exc):
                return []  # no such rule in these modules: nothing to report, as with conftest
            raise ConfigCheckError(f"evaluating {rule} failed: {exc}") from None
        result = json.loads(raw)
        if result == "<undefined>" or result is None:
            return []
        if not isinstance(result, list):
            raise ConfigCheckError(f"{rule} must be a set of messages, got {type(result).__name__}")
        return sorted(m if isinstance(m, str) else json.dumps(m, sort_keys=True) for m in result)


def read_document(path: Path) -> Any:
    """A YAML or JSON file as conftest parses it (JSON is YAML, so one parser does)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigCheckError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigCheckError(f"{path} does not parse: {exc}") from None


def configured_policy_roots(config_path: Path, document: Any) -> list[Path]:
    """``policy.paths`` as the loader resolves them: relative to the file, ``$VARS`` expanded."""
    policy = document.get("policy") if isinstance(document, dict) else None
    paths = policy.get("paths") if isinstance(policy, dict) else None
    if not isinstance(paths, list) or not paths:
        return [SHIPPED_POLICIES]
    roots = []
    for p in paths:
        if isinstance(p, str) and p:
            root = Path(os.path.expandvars(p)).expanduser()
            roots.append(root if root.is_absolute() else config_path.resolve().parent / root)
    return roots


def data_files(roots: Iterable[Path]) -> list[Path]:
    """Every policy data file under ``roots`` (dot-directories skipped, as the loaders do)."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.name in DATA_FILE_NAMES and not any(part.startswith(".") for part in rel.parts):
                found.append(path)
    return found


def _shown(path: Path) -> str:
    """A path as a person would type it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def check_configs(
    configs: Sequence[Path],
    rules_dir: Path,
    *,
    data: Sequence[Path] | None = None,
    conftest: str | None = None,
) -> CheckReport:
    """Run the rules on ``configs`` and on their policy data (or on ``data`` when given).

    ``conftest``: the binary to compare with (``None``: look for ``conftest`` on PATH; ``""``: don't).
    """
    rules = ConfigRules(rules_dir)
    report = CheckReport()
    roots: list[Path] = []
    for config in configs:
        document = read_document(config)
        report.checked.append(CheckedFile(str(config), CONFIG_NAMESPACE, document))
        if data is None:
            roots.extend(configured_policy_roots(config, document))
    if data is not None:
        roots = list(data)
    seen: set[Path] = set()
    for root in roots:
        if not root.exists():
            report.notes.append(
                f"policy data under {root} was not checked: it does not exist here (pass --data DIR)"
            )
            continue
        for path in data_files([root]):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                report.checked.append(CheckedFile(_shown(path), DATA_NAMESPACE, read_document(path)))
    for checked in report.checked:
        for level, message in rules.evaluate(checked.namespace, checked.document):
            report.findings.append(Finding(checked.file, checked.namespace, level, message))
    binary = shutil.which("conftest") if conftest is None else conftest
    if binary:
        for checked in report.checked:
            report.disagreements.extend(_compare_with_conftest(binary, rules_dir, checked, report.findings))
    elif conftest is None:
        report.notes.append("conftest is not on PATH: checked with the embedded engine (regorus) only")
    return report


def _compare_with_conftest(
    binary: str, rules_dir: Path, checked: CheckedFile, findings: list[Finding]
) -> list[str]:
    ours = {
        (f.level, f.message) for f in findings if (f.file, f.namespace) == (checked.file, checked.namespace)
    }
    try:
        theirs = conftest_findings(binary, rules_dir, Path(checked.file), checked.namespace)
    except ConfigCheckError as exc:
        return [f"{checked.file} ({checked.namespace}): {exc}"]
    if ours == theirs:
        return []
    lines = [f"{checked.file} ({checked.namespace}): conftest and the embedded engine disagree"]
    lines += [f"  only pgwarden: {level} {msg}" for level, msg in sorted(ours - theirs)]
    lines += [f"  only conftest: {level} {msg}" for level, msg in sorted(theirs - ours)]
    return lines


def conftest_findings(binary: str, rules_dir: Path, file: Path, namespace: str) -> set[tuple[Level, str]]:
    """``conftest test --output json`` on one file: its failures (deny) and warnings (warn)."""
    parser = "json" if file.suffix == ".json" else "yaml"
    cmd = [
        binary,
        "test",
        "--no-color",
        "--output",
        "json",
        "--parser",
        parser,
        "--policy",
        str(rules_dir),
        "--namespace",
        namespace,
        str(file),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CONFTEST_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigCheckError(f"conftest did not run: {exc}") from None
    try:
        results = json.loads(proc.stdout)
    except ValueError:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ConfigCheckError(
            f"conftest exited {proc.returncode} without JSON output: {detail[-1] if detail else ''}"
        ) from None
    out: set[tuple[Level, str]] = set()
    for result in results if isinstance(results, list) else []:
        if not isinstance(result, dict):
            continue
        for key, level in _CONFTEST_KEYS:
            for item in result.get(key) or []:
                if isinstance(item, dict) and isinstance(item.get("msg"), str):
                    out.add((level, item["msg"]))
        for item in result.get("exceptions") or []:
            if isinstance(item, dict) and item.get("msg"):
                raise ConfigCheckError(f"conftest raised: {item['msg']}")
    return out


def write_report(report: CheckReport, out: TextIO) -> None:
    """Findings in conftest's text format, then notes, disagreements and a summary line."""
    for finding in sorted(report.findings, key=lambda f: (f.file, f.namespace, f.level != "deny", f.message)):
        out.write(finding.line() + "\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    for line in report.disagreements:
        out.write(f"DISAGREE - {line}\n")
    files = len(report.checked)
    out.write(
        f"{files} file(s) checked: {len(report.failures)} failure(s), {len(report.warnings)} warning(s)"
        + (", conftest disagrees" if report.disagreements else "")
        + "\n"
    )
