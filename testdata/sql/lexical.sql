-- Lexical details and statement boundaries: comments, quoting, identifiers, statement text.
-- Format: see tests/unit/analysis/corpus.py.

-- @case leading-comment-is-not-part-of-the-text
-- @expect text: SELECT 1
/* why */ SELECT 1;

-- @case trailing-whitespace-and-semicolon-stripped
-- @expect text: SELECT 1
   SELECT 1   ;

-- @case statement-without-semicolon-runs-to-end
-- @statements 2
-- @expect[0] text: SELECT 1
-- @expect[1] text: SELECT 2
SELECT 1; SELECT 2

-- @case empty-statements-are-skipped
-- @statements 2
-- @expect[0] index: 0
-- @expect[1] index: 1
;;SELECT 1;;;SELECT 2;;

-- @case multi-line-statement-text
-- @expect text: "SELECT email\nFROM customers\nWHERE id = 1"
SELECT email
FROM customers
WHERE id = 1;

-- @case comment-only-between-statements
-- @statements 2
-- @expect[1] text: SELECT 2
SELECT 1;
-- note
SELECT 2;

-- @case hash-is-an-operator-not-a-comment
-- "#" is XOR and DELETE an unreserved keyword: this is SELECT 1 # "delete" FROM orders.
-- @expect kind: select
-- @expect relations: [orders:read]
-- @expect columns: [orders.delete@select]
SELECT 1 # DELETE FROM orders;

-- @case quoted-identifier-with-spaces-and-dots
-- @expect relations: [My Schema.My.Table:read]
SELECT * FROM "My Schema"."My.Table";

-- @case quoted-identifier-escaped-quote
-- @expect relations: [we"ird:read]
SELECT 1 FROM "we""ird";

-- @case keyword-as-quoted-identifier
-- @expect relations: [select:read]
-- @expect columns: [select.from@select]
SELECT "from" FROM "select";

-- @case unreserved-keyword-as-identifier
-- @expect relations: [comment:read]
SELECT name FROM comment;

-- @case catalog-qualified-name
-- @expect relations: [public.customers:read]
SELECT 1 FROM shop.public.customers;

-- @case unicode-string-literal
-- @expect kind: select
-- @expect relations: []
SELECT U&'d\0061t\+000061';

-- @case escape-string-literal
-- @expect kind: select
SELECT E'a\nb\x41\u0042';

-- @case bit-and-hex-strings
-- @expect kind: select
SELECT B'1010', X'1F';

-- @case dollar-quote-with-tag-inside
-- @expect kind: select
SELECT $a$ $b$ ; DROP TABLE customers $b$ $a$;

-- @case positional-parameters
-- @expect relations: [customers:read]
SELECT email FROM customers WHERE id = $1 AND email <> $2;

-- @case operators-are-not-functions
-- @expect functions: []
SELECT 1 + 2, 'a' || 'b', 3 OPERATOR(pg_catalog.*) 4, ARRAY[1] @> ARRAY[1];

-- @case sql-value-functions-are-not-calls
-- @expect functions: []
SELECT current_user, session_user, current_timestamp, current_schema;

-- @case type-casts-are-not-calls
-- @expect functions: []
SELECT '1'::int, CAST('2' AS bigint), 'customers'::regclass;

-- @case special-syntax-functions
-- @expect functions_include: [pg_catalog.extract, pg_catalog.overlay, pg_catalog.position]
SELECT extract(year FROM now()), overlay('abc' PLACING 'x' FROM 2), position('b' IN 'abc');
