"""Untrusted text on a terminal: recorded SQL, identities, values and errors come from clients.

Owns: making such text inert before rich prints it: no terminal control sequences, no
bidirectional or other invisible format characters (shown as escapes), and never rich markup
(callers wrap the result in ``rich.text.Text``, which rich does not parse); and the console
such output goes to.
"""

from __future__ import annotations

import unicodedata
from typing import Any, TextIO

from rich.console import Console

#: Width of tables when output is piped (a file, grep, a CI log) instead of rich's 80 columns.
PIPED_WIDTH = 160


def console(file: TextIO | None = None, **options: Any) -> Console:
    """A rich console for command output: the terminal's width, or room for tables when piped."""
    found = Console(file=file, **options)
    return found if found.is_terminal else Console(file=file, width=PIPED_WIDTH, **options)


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` without characters a terminal would act on or hide (shown as ``\\xNN``/``\\uNNNN``)."""
    out = []
    for ch in text:
        if one_line and ch in "\r\n\t":
            out.append(" ")
        elif ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode())
    joined = "".join(out)
    return " ".join(joined.split()) if one_line else joined
