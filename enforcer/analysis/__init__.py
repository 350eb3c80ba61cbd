"""Statement analysis: SQL text -> the facts a policy decides on.

Parses with Postgres's own grammar (pglast / libpg_query), walks the libpg_query JSON AST (never
pglast's Python node objects) and returns, per statement, a JSON-able facts document plus the AST.
Imports nothing else of pgwarden; knows nothing of sockets, sessions or policies. Any doubt is an
:class:`AnalysisError` -- the caller refuses the statement. Field reference:
``docs/statement-facts.md``.
"""

from .analyser import analyse
from .errors import AnalysisError
from .facts import Analysis, StatementFacts
from .known_functions import DYNAMIC_SQL_FUNCTIONS, SIDE_EFFECT_FUNCTIONS

__all__ = [
    "DYNAMIC_SQL_FUNCTIONS",
    "SIDE_EFFECT_FUNCTIONS",
    "Analysis",
    "AnalysisError",
    "StatementFacts",
    "analyse",
]
