"""The one way analysis refuses a statement: :class:`AnalysisError`.

Every failure of :func:`enforcer.analysis.analyse` -- a syntax error reported by Postgres's own
parser, text the parser cannot take (NUL, unpaired surrogates), a statement nested too deeply to
walk, or an unexpected shape in the parse tree -- surfaces as this exception, so the caller can
refuse the statement (fail closed) without catching anything broader. Its message is safe to show
to the client: it is the parser's own message, never a traceback or server detail.
"""

from __future__ import annotations

SYNTAX_ERROR = "42601"
CHARACTER_NOT_IN_REPERTOIRE = "22021"
STATEMENT_TOO_COMPLEX = "54001"
INTERNAL_ERROR = "XX000"


class AnalysisError(Exception):
    """The SQL text could not be analysed; the statement must not be forwarded.

    ``message`` is the parser's message (for example ``syntax error at or near "x"``),
    ``position`` the 1-based character position of the error in the analysed text (what
    Postgres puts in the ErrorResponse ``P`` field), or ``None`` when the parser gives none,
    and ``sqlstate`` the SQLSTATE a gateway should report.
    """

    def __init__(self, message: str, position: int | None = None, sqlstate: str = SYNTAX_ERROR) -> None:
        self.message = message
        self.position = position
        self.sqlstate = sqlstate
        text = message if position is None else f"{message} (at character {position})"
        super().__init__(text)
