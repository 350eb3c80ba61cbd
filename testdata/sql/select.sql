-- Read-only queries: SELECT, VALUES, TABLE, joins, sub-queries, CTEs, set operations.
-- Format: see tests/unit/analysis/corpus.py. Tables follow testdata/demo_schema.sql.

-- @case simple
-- @expect node: SelectStmt
-- @expect kind: select
-- @expect command_tag: SELECT
-- @expect relations: [customers:read]
-- @expect columns: [customers.id@select, customers.email@select, customers.id@where]
-- @expect functions: []
-- @expect writes: []
-- @expect flags: {writes: false, ddl: false, is_utility: false, modifies_data: false, has_where: true, executes_dynamic_sql: false, side_effect_functions: false, locks: false}
SELECT id, email FROM customers WHERE id = 1;

-- @case select-without-from
-- @expect kind: select
-- @expect relations: []
-- @expect columns: []
-- @expect functions: [now]
SELECT 1, 'x', now();

-- @case schema-qualified
-- @expect relations: [public.customers:read]
-- @expect columns: [public.customers.email@select, public.customers.id@order]
SELECT email FROM public.customers ORDER BY id;

-- @case qualified-column-three-parts
-- @expect relations: [public.customers:read]
-- @expect columns: [public.customers.email@select]
SELECT public.customers.email FROM public.customers;

-- @case alias-resolution
-- @expect relations: [customers:read]
-- @expect columns: [customers.email@select, customers.full_name@select, customers.id@where]
SELECT c.email, c.full_name FROM customers AS c WHERE c.id = 7;

-- @case star-single-table
-- @expect columns: [customers.*@star]
SELECT * FROM customers;

-- @case star-join-expands-per-table
-- @expect relations: [customers:read, orders:read]
-- @expect columns: [customers.*@star, orders.*@star, customers.id@join, orders.customer_id@join]
SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id;

-- @case qualified-star
-- @expect columns: [orders.*@star, customers.email@select, customers.id@join, orders.customer_id@join]
SELECT o.*, c.email FROM orders o JOIN customers c ON c.id = o.customer_id;

-- @case table-statement
-- @expect kind: select
-- @expect relations: [customers:read]
-- @expect columns: [customers.*@star]
TABLE customers;

-- @case values
-- @expect kind: select
-- @expect relations: []
VALUES (1, 'a'), (2, 'b');

-- @case values-in-from
-- @expect relations: []
-- @expect columns: ['*@star']
SELECT * FROM (VALUES (1), (2)) AS v(a);

-- @case join-using
-- @expect relations: [orders:read, products:read]
-- @expect columns_include: [id@join, products.name@select]
SELECT p.name, o.quantity FROM orders o JOIN products p USING (id);

-- @case left-join-three-tables
-- @expect relations: [customers:read, orders:read, products:read]
-- @expect columns_include: [customers.id@join, orders.customer_id@join, products.id@join, orders.product_id@join, products.sku@select]
SELECT c.email, p.sku FROM customers c LEFT JOIN orders o ON o.customer_id = c.id LEFT JOIN products p ON p.id = o.product_id;

-- @case implicit-join
-- @expect relations: [customers:read, orders:read]
-- @expect columns: [customers.email@select, customers.id@where, orders.customer_id@where, quantity@where]
SELECT c.email FROM customers c, orders o WHERE o.customer_id = c.id AND quantity > 1;

-- @case natural-join
-- @expect relations: [orders:read, products:read]
SELECT * FROM orders NATURAL JOIN products;

-- @case join-alias-hides-tables
-- @expect relations: [customers:read, orders:read]
-- @expect columns_include: [id@select]
SELECT j.id FROM (customers JOIN orders ON true) AS j;

-- @case group-having-order
-- @expect relations: [orders:read]
-- @expect columns: [orders.customer_id@select, orders.customer_id@group, orders.quantity@function_arg, orders.quantity@having, orders.quantity@select]
-- @expect functions: [sum]
SELECT customer_id, sum(quantity) AS total FROM orders GROUP BY customer_id HAVING sum(quantity) > 10 ORDER BY total DESC;

-- @case order-by-output-alias-is-not-a-column
-- @expect columns: [customers.email@function_arg, customers.email@select]
SELECT lower(email) AS e FROM customers ORDER BY e;

-- @case distinct-on
-- @expect columns: [customers.email@distinct, customers.email@select, customers.id@order, customers.email@order]
SELECT DISTINCT ON (email) email FROM customers ORDER BY email, id;

-- @case window
-- @expect functions: [row_number]
-- @expect columns: [orders.customer_id@window, orders.ordered_at@window, orders.id@select]
SELECT id, row_number() OVER (PARTITION BY customer_id ORDER BY ordered_at) FROM orders;

-- @case named-window
-- @expect columns: [orders.customer_id@window, orders.quantity@function_arg, orders.quantity@select]
SELECT sum(quantity) OVER w FROM orders WINDOW w AS (PARTITION BY customer_id);

-- @case grouping-sets
-- @expect columns_include: [orders.product_id@group, orders.customer_id@group]
SELECT customer_id, product_id, count(*) FROM orders GROUP BY GROUPING SETS ((customer_id), (product_id), ());

-- @case scalar-subquery
-- @expect relations: [customers:read, orders:read]
-- @expect functions: [count]
SELECT c.email, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) FROM customers c;

-- @case in-subquery
-- @expect relations: [customers:read, orders:read]
-- @expect columns: [customers.email@select, customers.id@where, customer_id@select]
SELECT email FROM customers WHERE id IN (SELECT customer_id FROM orders);

-- @case exists-correlated
-- @expect relations: [customers:read, orders:read]
-- @expect columns: [customers.email@select, customers.id@where, orders.customer_id@where]
SELECT c.email FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id);

-- @case not-exists-any-all
-- @expect relations: [customers:read, orders:read, products:read]
SELECT 1 FROM customers WHERE NOT EXISTS (SELECT 1 FROM orders) AND id = ANY (SELECT id FROM products) AND id > ALL (SELECT 0);

-- @case derived-table
-- @expect relations: [orders:read]
-- @expect columns: [orders.customer_id@select, orders.customer_id@group, customer_id@select, total@select, total@where]
SELECT s.customer_id, s.total FROM (SELECT customer_id, count(*) AS total FROM orders GROUP BY customer_id) AS s WHERE s.total > 2;

-- @case nested-derived-tables
-- @expect relations: [customers:read]
SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT email FROM customers) a) b) c;

-- @case lateral
-- @expect relations: [customers:read, orders:read]
-- @expect columns_include: [customers.id@where, orders.customer_id@where]
SELECT c.email, l.n FROM customers c, LATERAL (SELECT count(*) AS n FROM orders o WHERE o.customer_id = c.id) l;

-- @case function-in-from
-- @expect relations: []
-- @expect functions: [generate_series]
SELECT g FROM generate_series(1, 10) AS g;

-- @case rows-from
-- @expect functions: [generate_series, unnest]
SELECT * FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY['a', 'b'])) AS r(a, b);

-- @case tablesample
-- @expect relations: [customers:read]
SELECT * FROM customers TABLESAMPLE BERNOULLI (10);

-- @case only-and-inheritance
-- @expect relations: [customers:read, orders:read]
SELECT 1 FROM ONLY customers, orders *;

-- @case union
-- @expect relations: [customers:read, products:read]
-- @expect columns: [customers.email@select, products.name@select]
SELECT email FROM customers UNION SELECT name FROM products;

-- @case union-all-intersect-except
-- @expect relations: [customers:read, orders:read, products:read]
SELECT id FROM customers UNION ALL (SELECT id FROM orders INTERSECT SELECT id FROM products) EXCEPT SELECT 0;

-- @case cte
-- @expect relations: [orders:read]
-- @expect columns_include: [orders.customer_id@select]
WITH totals AS (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id) SELECT * FROM totals WHERE n > 1;

-- @case cte-chain
-- @expect relations: [customers:read]
WITH a AS (SELECT id, email FROM customers), b AS (SELECT * FROM a WHERE id > 1) SELECT email FROM b;

-- @case cte-visible-in-subquery
-- @expect relations: [customers:read, orders_view:read]
WITH a AS (SELECT id FROM customers) SELECT * FROM orders_view WHERE false UNION SELECT * FROM (SELECT * FROM a) s;

-- @case cte-shadowing-table-reads-table
-- A non-recursive CTE does not see itself: the inner customers is the table.
-- @expect relations: [customers:read]
WITH customers AS (SELECT * FROM customers WHERE id < 3) SELECT * FROM customers;

-- @case cte-name-not-visible-outside
-- @expect relations: [customers:read]
SELECT * FROM (WITH customers AS (SELECT 1 AS x) SELECT * FROM customers) s, customers;

-- @case schema-qualified-name-is-never-a-cte
-- @expect relations: [public.customers:read]
WITH customers AS (SELECT 1) SELECT * FROM public.customers;

-- @case recursive-cte
-- @expect relations: [orders:read]
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < (SELECT count(*) FROM orders)) SELECT n FROM r;

-- @case materialized-cte
-- @expect relations: [customers:read]
WITH c AS MATERIALIZED (SELECT * FROM customers) SELECT * FROM c;

-- @case whole-row-reference
-- @expect columns: [customers.*@whole_row]
SELECT c FROM customers c;

-- @case whole-row-in-function
-- @expect functions: [row_to_json]
-- @expect columns: [customers.*@whole_row, customers.*@function_arg]
SELECT row_to_json(c) FROM customers c;

-- @case whole-row-field-selection
-- @expect columns: [customers.*@whole_row]
SELECT (c).email FROM customers c;

-- @case star-in-function
-- @expect columns: [customers.*@star, customers.*@function_arg]
SELECT to_jsonb(c.*) FROM customers c;

-- @case count-star-is-not-a-column
-- @expect columns: []
-- @expect functions: [count]
SELECT count(*) FROM customers;

-- @case expressions
-- @expect functions: [coalesce_fn, lower, upper]
-- @expect columns_include: [customers.email@function_arg, customers.phone@select]
SELECT CASE WHEN phone IS NULL THEN lower(email) ELSE upper(email) END, coalesce(phone, coalesce_fn(email)), email::text, email || '!' FROM customers;

-- @case aggregate-filter-and-order
-- @expect functions: [string_agg]
-- @expect columns_include: [customers.email@function_arg, customers.id@function_arg]
SELECT string_agg(email, ',' ORDER BY id) FILTER (WHERE phone IS NOT NULL) FROM customers;

-- @case limit-offset-fetch
-- @expect relations: [products:read]
SELECT * FROM products ORDER BY price LIMIT 10 OFFSET 5;

-- @case for-update
-- @expect relations: [customers:lock, customers:read]
-- @expect flags: {locks: true, writes: false}
SELECT * FROM customers WHERE id = 1 FOR UPDATE;

-- @case for-update-of
-- @expect relations: [customers:read, orders:lock, orders:read]
-- @expect flags: {locks: true}
SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id FOR NO KEY UPDATE OF o SKIP LOCKED;

-- @case for-share-in-subquery
-- @expect relations: [orders:lock, orders:read, customers:read]
-- @expect flags: {locks: true}
SELECT * FROM customers WHERE id IN (SELECT customer_id FROM orders FOR SHARE);

-- @case catalog-read
-- @expect relations: [pg_catalog.pg_authid:read]
SELECT rolname, rolpassword FROM pg_catalog.pg_authid;

-- @case quoted-identifiers-keep-case
-- @expect relations: [Customers:read]
-- @expect columns: [Customers.Email@select]
SELECT "Email" FROM "Customers";

-- @case unquoted-identifiers-fold
-- @expect relations: [public.customers:read]
-- @expect columns: [public.customers.email@select]
SELECT EMAIL FROM PUBLIC.Customers;

-- @case json-and-xml-table-functions
-- @expect relations: []
SELECT * FROM json_table('[{"a":1}]', '$[*]' COLUMNS (a int PATH '$.a')) AS jt, xmltable('/r' PASSING '<r/>' COLUMNS x int) AS xt;

-- @case declare-free-params
-- @expect columns: [customers.email@select, customers.id@where]
SELECT email FROM customers WHERE id = $1;
