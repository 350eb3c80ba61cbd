-- Text that must be refused: analyse() raises AnalysisError (the gateway denies, fail closed).
-- Format: see tests/unit/analysis/corpus.py.

-- @case syntax-error
-- @error syntax error at or near "selec"
-- @sqlstate 42601
selec 1;

-- @case syntax-error-position
-- @error syntax error at or near "=" (at character 27)
SELECT 1 FROM t WHERE x = = 1;

-- @case syntax-error-at-end
-- @error syntax error at end of input
SELECT * FROM customers WHERE

-- @case one-bad-statement-refuses-the-message
-- @error syntax error at or near "DELET"
SELECT 1; DELET FROM orders;

-- @case unterminated-string
-- @error unterminated quoted string
SELECT 'abc;

-- @case unterminated-dollar-quote
-- @error unterminated dollar-quoted string
SELECT $$ abc;

-- @case unterminated-comment
-- @error unterminated /* comment
SELECT 1 /* DELETE FROM orders;

-- @case psql-meta-command
-- @error syntax error
\copy customers to '/tmp/x'

-- @case invalid-unicode-escape
-- @error invalid Unicode surrogate pair
SELECT U&'\D800';
