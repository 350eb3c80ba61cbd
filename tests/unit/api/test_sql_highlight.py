"""SQL highlighting shows exactly the recorded text, escaped, with nothing but its own spans added."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from enforcer.api.sql_highlight import highlight_sql

_SPAN = re.compile(r'<span class="sql-(?:keyword|string|number|comment|ident|param)">|</span>')


def _text_of(markup: str) -> str:
    return html.unescape(_SPAN.sub("", markup))


def test_tokens_get_their_classes() -> None:
    out = highlight_sql('SELECT "Odd""name", $1, 4.5e2 FROM t -- note\nWHERE s = E\'it\\\'s\' /* c */')
    assert '<span class="sql-keyword">SELECT</span>' in out
    assert '<span class="sql-ident">&quot;Odd&quot;&quot;name&quot;</span>' in out
    assert '<span class="sql-param">$1</span>' in out
    assert '<span class="sql-number">4.5e2</span>' in out
    assert '<span class="sql-comment">-- note</span>' in out
    assert '<span class="sql-string">E&#x27;it\\&#x27;s&#x27;</span>' in out
    assert '<span class="sql-comment">/* c */</span>' in out
    assert " t " in out  # a plain identifier stays plain


def test_dollar_quotes_and_unterminated_text() -> None:
    out = highlight_sql("DO $fn$ BEGIN '<x>' END $fn$; SELECT 'open")
    assert '<span class="sql-string">$fn$ BEGIN &#x27;&lt;x&gt;&#x27; END $fn$</span>' in out
    assert out.endswith('<span class="sql-string">&#x27;open</span>')


def test_script_is_text() -> None:
    out = highlight_sql("SELECT '</code></pre><script>alert(1)</script>'")
    assert "<script" not in out and "</code>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out


@given(st.text())
def test_any_text_round_trips_and_adds_only_spans(sql: str) -> None:
    out = highlight_sql(sql)
    assert _text_of(out) == sql
    assert "<" not in _SPAN.sub("", out) and ">" not in _SPAN.sub("", out)
