"""Policy engines: the embedded Rego interpreter and a co-located OPA over HTTP.

Owns: loading policies and data, evaluating ``data.pgwarden.decision`` for one
input document, and turning every engine failure into an exception the caller
maps to a deny.
Never: decides anything itself, or lets an engine error pass as "allow".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml

DECISION_PATH = "pgwarden/decision"
_DECISION_RULE = "data." + DECISION_PATH.replace("/", ".")


class PolicyError(Exception):
    """The engine could not produce a result (load error, evaluation error, timeout, unreachable)."""


class PolicyEngine(Protocol):
    #: Identifies the loaded policies and data; part of every decision record and cache key.
    version: str
    name: str

    def evaluate_sync(self, input_doc: dict[str, Any]) -> Any | None:
        """Evaluate in-process if the engine can (embedded); None means "use evaluate"."""
        ...

    async def evaluate(self, input_doc: dict[str, Any]) -> Any: ...

    async def evaluate_rule(self, path: str, input_doc: dict[str, Any]) -> Any:
        """Another rule than the decision, e.g. ``pgwarden/masking/identity_masks`` (None if undefined)."""
        ...

    @property
    def synchronous(self) -> bool: ...


def _data_path(root: Path, file: Path) -> list[str]:
    rel = file.parent.relative_to(root)
    return [p for p in rel.parts if p]


def policy_files(roots: Iterable[Path]) -> tuple[list[tuple[Path, str]], dict[str, Any]]:
    """Rego modules (tests excluded) and merged data documents under ``roots``, like ``opa run`` loads them.

    A data.json / data.yaml in ``<root>/a/b/`` lands at ``data.a.b``.
    """
    modules: list[tuple[Path, str]] = []
    data: dict[str, Any] = {}
    for root in roots:
        if not root.exists():
            raise PolicyError(f"policy directory {root} does not exist")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        base = root.parent if root.is_file() else root
        for f in files:
            if f.suffix == ".rego" and not f.name.endswith("_test.rego"):
                modules.append((f, f.read_text()))
            elif f.name in ("data.json", "data.yaml", "data.yml"):
                try:
                    doc = json.loads(f.read_text()) if f.suffix == ".json" else yaml.safe_load(f.read_text())
                except (ValueError, yaml.YAMLError) as exc:
                    raise PolicyError(f"cannot parse policy data {f}: {exc}") from None
                if not isinstance(doc, dict):
                    raise PolicyError(f"policy data {f} must hold an object")
                node = data
                for part in _data_path(base, f):
                    node = node.setdefault(part, {})
                _merge(node, doc)
    if not modules:
        raise PolicyError(f"no .rego policies found under {', '.join(str(r) for r in roots)}")
    return modules, data


def _merge(into: dict[str, Any], doc: dict[str, Any]) -> None:
    for k, v in doc.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _version(modules: list[tuple[Path, str]], data: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for path, text in sorted(modules, key=lambda m: str(m[0])):
        h.update(path.name.encode() + b"\0" + text.encode() + b"\0")
    h.update(json.dumps(data, sort_keys=True).encode())
    return h.hexdigest()[:16]


class EmbeddedEngine:
    """regorus, in-process. Evaluation is synchronous and takes tens of microseconds."""

    name = "embedded"
    synchronous = True

    def __init__(self, roots: list[Path], extra_data: dict[str, Any] | None = None) -> None:
        import regorus

        modules, data = policy_files(roots)
        if extra_data:
            _merge(data, extra_data)
        engine = regorus.Engine()
        for path, text in modules:
            try:
                engine.add_policy(str(path), text)
            except Exception as exc:  # regorus raises plain exceptions with the location
                raise PolicyError(f"policy {path} does not compile: {exc}") from None
        # The JSON entry points: regorus's dict conversion turns booleans into numbers.
        engine.add_data_json(json.dumps(data))
        self._engine = engine
        self.version = _version(modules, data)
        self.modules = [str(p) for p, _ in modules]
        self.texts = [text for _, text in modules]
        self._check_config()

    def _check_config(self) -> None:
        """Refuse policy data the shipped package itself reports as inconsistent."""
        try:
            errors = json.loads(self._engine.eval_rule_as_json("data.pgwarden.config_errors"))
        except Exception:
            return  # a custom policy without this rule
        if errors:
            shown = "; ".join(sorted(str(e) for e in errors)[:5])
            raise PolicyError(f"the policy data is inconsistent: {shown}")

    def evaluate_sync(self, input_doc: dict[str, Any]) -> Any:
        return self.evaluate_json(json.dumps(input_doc, separators=(",", ":"), default=str))

    def evaluate_json(self, input_json: str) -> Any:
        try:
            self._engine.set_input_json(input_json)
            result = json.loads(self._engine.eval_rule_as_json(_DECISION_RULE))
            return None if result == "<undefined>" else result  # regorus's rendering of undefined
        except Exception as exc:
            message = str(exc)
            if "undefined" in message.lower():
                return None
            raise PolicyError(f"evaluation failed: {message}") from None
        except BaseException as exc:
            # A Rust panic inside regorus arrives as pyo3's PanicException, a BaseException:
            # it must deny this statement (fail closed), not take the session down.
            if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)) or type(exc).__name__ not in (
                "PanicException",
            ):
                raise
            raise PolicyError(f"the policy engine panicked: {exc}") from None

    async def evaluate(self, input_doc: dict[str, Any]) -> Any:
        return self.evaluate_sync(input_doc)

    def evaluate_rule_sync(self, path: str, input_doc: dict[str, Any]) -> Any:
        try:
            self._engine.set_input_json(json.dumps(input_doc, separators=(",", ":"), default=str))
            result = json.loads(self._engine.eval_rule_as_json("data." + path.replace("/", ".")))
            return None if result == "<undefined>" else result
        except Exception as exc:
            if "undefined" in str(exc).lower():
                return None
            raise PolicyError(f"evaluation of {path} failed: {exc}") from None

    async def evaluate_rule(self, path: str, input_doc: dict[str, Any]) -> Any:
        return self.evaluate_rule_sync(path, input_doc)


class OPAEngine:
    """A co-located OPA over its REST Data API (``POST /v1/data/pgwarden/decision``), keep-alive."""

    name = "opa"
    synchronous = False

    def __init__(self, url: str, *, timeout: float, unix_socket: str | None = None) -> None:
        import httpx

        transport = httpx.AsyncHTTPTransport(uds=unix_socket) if unix_socket else None
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=16),
        )
        self._timeout = timeout
        self.version = f"opa:{url}"

    def evaluate_sync(self, input_doc: dict[str, Any]) -> Any:
        raise PolicyError("the OPA engine evaluates asynchronously")

    async def evaluate(self, input_doc: dict[str, Any]) -> Any:
        return await self.evaluate_rule(DECISION_PATH, input_doc)

    async def evaluate_rule(self, path: str, input_doc: dict[str, Any]) -> Any:
        import httpx

        try:
            async with asyncio.timeout(self._timeout):
                resp = await self._client.post(f"/v1/data/{path}", json={"input": input_doc})
        except TimeoutError:
            raise PolicyError(f"OPA did not answer within {self._timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise PolicyError(f"OPA is unreachable ({type(exc).__name__}: {exc})") from None
        if resp.status_code != 200:
            raise PolicyError(f"OPA answered HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            body = resp.json()
        except ValueError:
            raise PolicyError("OPA answered with invalid JSON") from None
        if not isinstance(body, dict):
            raise PolicyError("OPA answered with a non-object")
        return body.get("result")

    async def close(self) -> None:
        await self._client.aclose()
