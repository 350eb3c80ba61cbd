"""Untrusted text on a terminal: recorded SQL, identities, values and errors come from clients.

Owns: making such text inert before rich prints it: no terminal control sequences, no
bidirectional or other invisible format characters (shown as escapes), and never rich markup
(callers wrap the result in ``rich.text.Text``, which rich does not parse).
"""

from __future__ import annotations

import unicodedata


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
