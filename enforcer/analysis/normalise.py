"""Literal normalisation (constants replaced by ``$n``, as pg_stat_statements does), with a fast path.

Owns: ``normalise(text)``, which returns exactly what ``pglast.parser.normalize`` returns
for ``text`` (None where it cannot parse), and the templates that let a text skip the
parser when it differs from an already normalised text only in the digits of integer
literals. Clients that send the same statement again and again with a new id each time
(pgbench, simple-protocol drivers, scripts) then cost a regular-expression match instead
of a parse. Never: returns a normalised form the parser would not return for that text.

Why a template is exact. A template is learnt from a text ``t0`` and its normalised form
``n0``: ``n0`` is ``t0`` with each replaced constant's span turned into ``$k``. A template
is kept only if every replaced span of ``t0`` is a plain decimal integer of at most nine
digits, ``t0`` contains no ``$`` (so every ``$k`` of ``n0`` is a replaced constant, and no
dollar quoting is in play), and each span is bounded by separator characters that no
numeric or identifier token can include. A text ``t`` that matches the template has the
same bytes as ``t0`` everywhere except inside those spans, and each span is again a
decimal integer of at most nine digits between the same separators. The lexer therefore
produces the same tokens for ``t`` as for ``t0`` (the same integer-constant token, with
another value, in each span; nine digits always fit an int4, so never a float token), the
grammar builds the same tree around them (the raw grammar does not look at the values of
these constants), and the normaliser replaces the same spans: ``normalise(t) == n0``.
The tests check this against the parser over the SQL corpus with random literal values.
"""

from __future__ import annotations

import re

import pglast.parser

#: Digits erased: texts that may share a template share this key (the template then checks,
#: by matching the whole text). Erased from the UTF-8 bytes: ``bytes.translate`` costs a fifth
#: of a regular expression's ``sub``.
_DIGITS = b"0123456789"
_PLACEHOLDER = re.compile(r"\$([0-9]+)")
#: A replaced span of the template text and of a matching text: a small decimal integer.
_INTEGER = "([0-9]{1,9})"
#: Characters allowed right before / after a templated integer: none can be part of a
#: numeric or identifier token (no letters, digits, ``_``, ``.``, ``$`` or non-ASCII).
_BEFORE = frozenset(" \t\n\r\f(,=<>+-*/%^|&!~#@?[")
_AFTER = frozenset(" \t\n\r\f),;=<>+-*/%^|&!~#@?]:")
_MAX_KEYS = 4096
_MAX_PER_KEY = 4


class LiteralTemplates:
    """``normalise`` with the templates learnt so far (bounded; shared by every session)."""

    def __init__(self, max_keys: int = _MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._by_key: dict[bytes, list[tuple[re.Pattern[str], str]]] = {}
        #: Texts answered by a template / by the parser (for tests and the bench).
        self.hits = 0
        self.parses = 0

    def normalise(self, text: str) -> str | None:
        """``pglast.parser.normalize(text)``, or None if the text does not parse."""
        key = text.encode("utf-8", "surrogatepass").translate(None, _DIGITS)
        templates = self._by_key.get(key)
        if templates is not None:
            for pattern, normalised in templates:
                if pattern.fullmatch(text) is not None:
                    self.hits += 1
                    return normalised
        self.parses += 1
        try:
            normalised = pglast.parser.normalize(text)
        except pglast.parser.ParseError:
            return None
        learnt = template_of(text, normalised)
        if learnt is not None:
            self._learn(key, learnt, normalised)
        return normalised

    def _learn(self, key: bytes, pattern: re.Pattern[str], normalised: str) -> None:
        templates = self._by_key.get(key)
        if templates is None:
            if len(self._by_key) >= self.max_keys:
                self._by_key.pop(next(iter(self._by_key)), None)  # the oldest key
            self._by_key[key] = [(pattern, normalised)]
        elif len(templates) < _MAX_PER_KEY:
            templates.append((pattern, normalised))


def template_of(text: str, normalised: str) -> re.Pattern[str] | None:
    """The pattern of the texts whose normalised form is ``normalised`` because ``text``'s is,
    or None when ``text`` does not meet the conditions in the module docstring."""
    if "$" in text:
        return None
    pieces = _PLACEHOLDER.split(normalised)
    segments, numbers = pieces[0::2], pieces[1::2]
    if numbers != [str(i) for i in range(1, len(numbers) + 1)]:
        return None
    for i in range(len(numbers)):
        before = segments[i][-1:] if segments[i] else ("" if i == 0 else None)
        after = segments[i + 1][:1]
        if before is None or (before and before not in _BEFORE) or (after and after not in _AFTER):
            return None
    pattern = re.compile(_INTEGER.join(re.escape(s) for s in segments))
    return pattern if pattern.fullmatch(text) is not None else None


_shared = LiteralTemplates()


def normalise(text: str) -> str | None:
    """``pglast.parser.normalize(text)`` (None: no parse), through the shared templates."""
    return _shared.normalise(text)
