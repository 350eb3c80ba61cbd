-- Data modification: INSERT, UPDATE, DELETE, MERGE (RETURNING, ON CONFLICT, CTEs), TRUNCATE.
-- Format: see tests/unit/analysis/corpus.py. Tables follow testdata/demo_schema.sql.

-- @case insert-values
-- @expect node: InsertStmt
-- @expect kind: insert
-- @expect command_tag: INSERT
-- @expect relations: [audit_notes:insert]
-- @expect columns: [audit_notes.note@insert]
-- @expect writes: [audit_notes:insert:nowhere]
-- @expect flags: {writes: true, modifies_data: true, ddl: false, is_utility: false, has_where: true}
INSERT INTO audit_notes (note) VALUES ('hello');

-- @case insert-without-column-list
-- @expect relations: [audit_notes:insert]
-- @expect columns: [audit_notes.*@insert]
INSERT INTO audit_notes VALUES (DEFAULT, 'x');

-- @case insert-default-values
-- @expect relations: [audit_notes:insert]
-- @expect writes: [audit_notes:insert:nowhere]
INSERT INTO audit_notes DEFAULT VALUES;

-- @case insert-select
-- @expect relations: [audit_notes:insert, customers:read]
-- @expect columns: [audit_notes.note@insert, customers.email@select]
-- @expect writes: [audit_notes:insert:nowhere]
INSERT INTO audit_notes (note) SELECT email FROM customers;

-- @case insert-schema-qualified-alias
-- @expect relations: [public.audit_notes:insert]
-- @expect writes: [public.audit_notes:insert:nowhere]
INSERT INTO public.audit_notes AS a (note) VALUES ('x');

-- @case insert-returning
-- @expect relations: [audit_notes:insert, audit_notes:read]
-- @expect columns: [audit_notes.note@insert, audit_notes.id@returning]
INSERT INTO audit_notes (note) VALUES ('x') RETURNING id;

-- @case insert-returning-star
-- @expect columns: [audit_notes.note@insert, audit_notes.*@star]
INSERT INTO audit_notes (note) VALUES ('x') RETURNING *;

-- @case insert-values-with-subquery
-- @expect relations: [audit_notes:insert, customers:read]
-- @expect columns_include: [customers.ssn@select]
INSERT INTO audit_notes (note) VALUES ((SELECT ssn FROM customers WHERE id = 1));

-- @case insert-on-conflict-do-nothing
-- @expect relations: [products:insert]
-- @expect writes: [products:insert:nowhere]
-- @expect columns: [products.sku@insert, products.name@insert, products.price@insert, products.sku@where]
INSERT INTO products (sku, name, price) VALUES ('a', 'b', 1) ON CONFLICT (sku) DO NOTHING;

-- @case insert-on-conflict-do-update
-- ON CONFLICT DO UPDATE is an update of the target; without WHERE it is unbounded.
-- @expect relations: [products:insert, products:update, products:read]
-- @expect writes: [products:insert:nowhere, products:update:nowhere]
-- @expect columns: [products.sku@insert, products.name@insert, products.price@insert, products.sku@where, products.name@set, products.name@select, products.price@set, products.price@select]
-- @expect flags: {has_where: false, modifies_data: true}
INSERT INTO products (sku, name, price) VALUES ('a', 'b', 1) ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price = excluded.price;

-- @case insert-on-conflict-do-update-where
-- @expect writes: [products:insert:nowhere, products:update:where]
-- @expect flags: {has_where: true}
-- @expect columns_include: [products.price@where]
INSERT INTO products AS p (sku, name, price) VALUES ('a', 'b', 1) ON CONFLICT ON CONSTRAINT products_sku_key DO UPDATE SET price = excluded.price WHERE p.price < excluded.price RETURNING p.id;

-- @case update
-- @expect node: UpdateStmt
-- @expect kind: update
-- @expect command_tag: UPDATE
-- @expect relations: [customers:update, customers:read]
-- @expect columns: [customers.phone@set, customers.id@where]
-- @expect writes: [customers:update:where]
-- @expect flags: {has_where: true, writes: true, modifies_data: true}
UPDATE customers SET phone = NULL WHERE id = 3;

-- @case update-without-where
-- @expect relations: [customers:update]
-- @expect writes: [customers:update:nowhere]
-- @expect flags: {has_where: false}
UPDATE customers SET phone = NULL;

-- @case update-where-true-is-unbounded
-- @expect writes: [customers:update:nowhere]
-- @expect flags: {has_where: false}
UPDATE customers SET phone = NULL WHERE true;

-- @case update-where-constant-comparison-is-unbounded
-- @expect writes: [customers:update:nowhere]
-- @expect flags: {has_where: false}
UPDATE customers SET phone = NULL WHERE 1 = 1 OR 'a' = 'a';

-- @case update-set-expression-reads
-- @expect columns: [customers.email@set, customers.email@select, customers.email@function_arg, customers.id@where]
UPDATE customers SET email = lower(email) WHERE id = 1;

-- @case update-from
-- @expect relations: [orders:update, orders:read, products:read]
-- @expect columns: [orders.quantity@set, price@select, orders.product_id@where, products.id@where]
-- @expect writes: [orders:update:where]
UPDATE orders o SET quantity = price FROM products p WHERE p.id = o.product_id;

-- @case update-multi-column-subselect
-- @expect relations: [orders:update, orders:read, customers:read]
-- @expect columns_include: [orders.card_last4@set, orders.quantity@set]
UPDATE orders SET (card_last4, quantity) = (SELECT phone, 1 FROM customers WHERE customers.id = orders.customer_id) WHERE id = 1;

-- @case update-returning-old-new
-- @expect relations: [products:update, products:read]
-- @expect columns: [products.price@set, products.price@select, products.price@returning, products.id@where]
UPDATE products SET price = price * 2 WHERE id = 1 RETURNING old.price, new.price;

-- @case update-where-current-of
-- @expect writes: [orders:update:where]
-- @expect flags: {has_where: true}
UPDATE orders SET quantity = 2 WHERE CURRENT OF c;

-- @case update-where-in-subquery
-- @expect relations: [orders:update, orders:read, customers:read]
-- @expect writes: [orders:update:where]
UPDATE orders SET quantity = 0 WHERE customer_id IN (SELECT id FROM customers WHERE email LIKE '%@example.com');

-- @case delete
-- @expect node: DeleteStmt
-- @expect kind: delete
-- @expect command_tag: DELETE
-- @expect relations: [orders:delete, orders:read]
-- @expect writes: [orders:delete:where]
-- @expect flags: {has_where: true}
DELETE FROM orders WHERE id = 5;

-- @case delete-without-where
-- @expect relations: [audit_notes:delete]
-- @expect writes: [audit_notes:delete:nowhere]
-- @expect flags: {has_where: false, modifies_data: true}
DELETE FROM audit_notes;

-- @case delete-where-parameter-only
-- @expect writes: [audit_notes:delete:nowhere]
DELETE FROM audit_notes WHERE $1;

-- @case delete-using
-- @expect relations: [orders:delete, orders:read, customers:read]
-- @expect columns: [orders.customer_id@where, customers.id@where, customers.email@where]
DELETE FROM orders o USING customers c WHERE o.customer_id = c.id AND c.email = 'x';

-- @case delete-returning
-- @expect relations: [orders:delete, orders:read]
-- @expect columns: [orders.*@star, orders.id@where]
DELETE FROM orders WHERE id = 1 RETURNING *;

-- @case delete-returning-with-alias-options
-- @expect columns: [orders.quantity@returning, orders.id@where]
DELETE FROM orders WHERE id = 1 RETURNING WITH (OLD AS gone) gone.quantity;

-- @case merge
-- @expect node: MergeStmt
-- @expect kind: merge
-- @expect command_tag: MERGE
-- @expect relations: [products:merge, products:read, products:update, products:insert, products:delete, staging:read]
-- @expect writes: [products:merge:where]
-- @expect columns_include: [products.sku@join, staging.sku@join, products.price@set, staging.price@select, products.sku@insert, staging.discontinued@where]
-- @expect flags: {has_where: true, modifies_data: true, writes: true}
MERGE INTO products p USING staging s ON p.sku = s.sku
WHEN MATCHED AND s.discontinued THEN DELETE
WHEN MATCHED THEN UPDATE SET price = s.price
WHEN NOT MATCHED THEN INSERT (sku, name, price) VALUES (s.sku, s.name, s.price);

-- @case merge-on-true-is-unbounded
-- @expect writes: [products:merge:nowhere]
-- @expect flags: {has_where: false}
MERGE INTO products USING (SELECT 1) AS s ON true WHEN MATCHED THEN DELETE;

-- @case merge-source-subquery-and-returning
-- @expect relations: [products:merge, products:read, products:update, staging:read]
-- @expect columns_include: [products.id@returning]
MERGE INTO products p USING (SELECT sku, price FROM staging) s ON p.sku = s.sku WHEN MATCHED THEN UPDATE SET price = s.price RETURNING p.id;

-- @case merge-not-matched-by-source
-- @expect relations: [products:merge, products:read, products:delete, staging:read]
MERGE INTO products p USING staging s ON p.sku = s.sku WHEN NOT MATCHED BY SOURCE THEN DELETE;

-- @case writable-cte-delete
-- @expect kind: select
-- @expect relations: [orders:delete, orders:read]
-- @expect writes: [orders:delete:where]
-- @expect flags: {writes: true, modifies_data: true, has_where: true}
WITH gone AS (DELETE FROM orders WHERE quantity = 0 RETURNING id) SELECT count(*) FROM gone;

-- @case writable-cte-update-without-where
-- @expect kind: select
-- @expect writes: [customers:update:nowhere]
-- @expect flags: {has_where: false, writes: true}
WITH u AS (UPDATE customers SET phone = NULL RETURNING id) SELECT * FROM u;

-- @case writable-cte-move-rows
-- @expect kind: insert
-- @expect relations: [orders:delete, orders:read, audit_notes:insert]
-- @expect writes: [orders:delete:where, audit_notes:insert:nowhere]
WITH moved AS (DELETE FROM orders WHERE id < 10 RETURNING id) INSERT INTO audit_notes (note) SELECT id::text FROM moved;

-- @case writable-cte-in-update
-- @expect kind: update
-- @expect writes: [customers:update:where, audit_notes:insert:nowhere]
WITH n AS (INSERT INTO audit_notes (note) VALUES ('x') RETURNING id) UPDATE customers SET phone = '1' WHERE id = (SELECT id FROM n);

-- @case cte-target-name-is-the-table
-- The DML target is never a CTE: INSERT INTO customers writes the table.
-- @expect relations: [customers:insert]
-- @expect writes: [customers:insert:nowhere]
WITH customers AS (SELECT 1) INSERT INTO customers (id) SELECT * FROM customers;

-- @case nested-insert-select-subqueries
-- @expect relations: [audit_notes:insert, customers:read, orders:read, products:read]
INSERT INTO audit_notes (note) SELECT email FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE product_id IN (SELECT id FROM products WHERE price > 10));

-- @case truncate
-- @expect node: TruncateStmt
-- @expect kind: truncate
-- @expect command_tag: TRUNCATE TABLE
-- @expect relations: [orders:truncate, public.audit_notes:truncate]
-- @expect writes: [orders:truncate:nowhere, public.audit_notes:truncate:nowhere]
-- @expect flags: {writes: true, modifies_data: true, is_utility: true, has_where: true}
TRUNCATE orders, public.audit_notes RESTART IDENTITY CASCADE;

-- @case truncate-only
-- @expect relations: [audit_notes:truncate]
TRUNCATE TABLE ONLY audit_notes;
