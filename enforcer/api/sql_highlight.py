"""Light SQL syntax highlighting as escaped HTML, for showing recorded statements.

Owns: splitting SQL text into display tokens (keywords, strings, comments, numbers,
quoted identifiers, parameters) and wrapping them in ``<span class=...>``.
Never: emits a character of the input unescaped. The input is attacker-controlled,
so the output is only fixed tags around ``html.escape``'d text, and it is for the
eye only: nothing here decides anything (the gateway decides with Postgres's parser).
"""

from __future__ import annotations

import html
import re

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS, UNRESERVED_KEYWORDS

KEYWORDS = frozenset(
    k.upper()
    for k in (*RESERVED_KEYWORDS, *UNRESERVED_KEYWORDS, *COL_NAME_KEYWORDS, *TYPE_FUNC_NAME_KEYWORDS)
)

# Order matters: comments and quoted text first, so that what looks like a keyword inside a
# string stays a string. Unterminated quotes and comments run to the end of the text.
_TOKEN = re.compile(
    r"""
    (?P<c>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<s>[Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z)|(?:[BbXxNn]|[Uu]&)?'(?:[^']|'')*(?:'|\Z))
  | (?P<d>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*|)\$.*?(?:\$(?P=tag)\$|\Z))
  | (?P<i>(?:[Uu]&)?"(?:[^"]|"")*(?:"|\Z))
  | (?P<p>\$\d+)
  | (?P<n>(?<![A-Za-z0-9_$])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<w>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*)
  | (?P<o>\s+|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_CLASS = {"c": "sql-comment", "s": "sql-string", "d": "sql-string", "i": "sql-ident", "p": "sql-param"}


def highlight_sql(sql: str) -> str:
    """``sql`` as HTML: escaped text, with tokens wrapped in ``<span class="sql-...">``."""
    out: list[str] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup if m.lastgroup != "tag" else "d"
        text = html.escape(m.group(0), quote=True)
        if kind == "w":
            if m.group(0).upper() in KEYWORDS:
                out.append(f'<span class="sql-keyword">{text}</span>')
            else:
                out.append(text)
        elif kind == "n":
            out.append(f'<span class="sql-number">{text}</span>')
        elif kind in _CLASS:
            out.append(f'<span class="{_CLASS[kind]}">{text}</span>')
        else:
            out.append(text)
    return "".join(out)
