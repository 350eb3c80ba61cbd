-- Utility statements: EXPLAIN, PREPARE/EXECUTE/DEALLOCATE, DO, CALL, LOCK, maintenance,
-- cursors, LISTEN/NOTIFY, DISCARD, LOAD, CHECKPOINT, SHOW.
-- Format: see tests/unit/analysis/corpus.py.

-- @case explain
-- @expect node: ExplainStmt
-- @expect kind: explain
-- @expect command_tag: EXPLAIN
-- @expect relations: [customers:read]
-- @expect explain: {analyze: false, body: {kind: select, text: SELECT * FROM customers, relations: [customers:read]}}
-- @expect flags: {explain_analyze: false, executes_dynamic_sql: false, is_utility: true, writes: false}
EXPLAIN SELECT * FROM customers;

-- @case explain-analyze-select
-- @expect explain: {analyze: true, body: {kind: select, node: SelectStmt}}
-- @expect flags: {explain_analyze: true, executes_dynamic_sql: true, writes: false}
EXPLAIN ANALYZE SELECT count(*) FROM orders;

-- @case explain-analyze-delete
-- EXPLAIN ANALYZE executes the statement: its write is the EXPLAIN's write.
-- @expect kind: explain
-- @expect relations: [orders:delete]
-- @expect writes: [orders:delete:nowhere]
-- @expect explain: {analyze: true, body: {kind: delete, text: DELETE FROM orders, writes: [orders:delete:nowhere]}}
-- @expect flags: {explain_analyze: true, writes: true, modifies_data: true, has_where: false}
EXPLAIN ANALYZE DELETE FROM orders;

-- @case explain-options-analyze
-- @expect explain: {analyze: true, body: {kind: update, text: UPDATE customers SET phone = NULL}}
-- @expect writes: [customers:update:nowhere]
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) UPDATE customers SET phone = NULL;

-- @case explain-options-analyze-true-string
-- @expect explain: {analyze: true}
EXPLAIN (ANALYZE 'on') DELETE FROM orders;

-- @case explain-options-analyze-false
-- Without ANALYZE nothing runs, but the body's facts are still the EXPLAIN's (fail closed).
-- @expect explain: {analyze: false, body: {kind: delete}}
-- @expect flags: {explain_analyze: false, modifies_data: true}
EXPLAIN (ANALYZE false, VERBOSE) DELETE FROM orders;

-- @case explain-options-analyze-zero
-- @expect explain: {analyze: false}
EXPLAIN (ANALYZE 0, COSTS off) DELETE FROM orders;

-- @case explain-legacy-analyse-verbose
-- @expect explain: {analyze: true, body: {text: 'INSERT INTO audit_notes (note) VALUES (''x'')'}}
-- @expect relations: [audit_notes:insert]
EXPLAIN ANALYSE VERBOSE INSERT INTO audit_notes (note) VALUES ('x');

-- @case explain-create-table-as
-- @expect explain: {analyze: true, body: {kind: ddl, command_tag: CREATE TABLE AS}}
-- @expect flags: {ddl: true, writes: true}
EXPLAIN ANALYZE CREATE TABLE leak AS SELECT * FROM customers;

-- @case explain-execute
-- @expect execute: {name: stmt1}
-- @expect explain: {analyze: false, body: {kind: execute, execute: {name: stmt1}}}
-- @expect flags: {executes_dynamic_sql: true}
EXPLAIN EXECUTE stmt1(1);

-- @case prepare
-- @expect node: PrepareStmt
-- @expect kind: prepare
-- @expect command_tag: PREPARE
-- @expect prepare: {name: q1, body: {kind: select, text: 'SELECT email FROM customers WHERE id = $1', relations: [customers:read]}}
-- @expect relations: [customers:read]
-- @expect flags: {executes_dynamic_sql: true, writes: false}
PREPARE q1 (int) AS SELECT email FROM customers WHERE id = $1;

-- @case prepare-write
-- The prepared body's facts are the PREPARE's too: a write is visible before any EXECUTE.
-- @expect prepare: {name: wipe, body: {kind: delete, writes: [orders:delete:nowhere]}}
-- @expect relations: [orders:delete]
-- @expect writes: [orders:delete:nowhere]
-- @expect flags: {modifies_data: true, writes: true, has_where: false}
PREPARE wipe AS DELETE FROM orders;

-- @case prepare-with-comment-before-as
-- @expect prepare: {name: p2, body: {text: 'UPDATE customers SET phone = $1'}}
PREPARE p2 (text) /* AS SELECT 1 */ AS UPDATE customers SET phone = $1;

-- @case execute
-- @expect node: ExecuteStmt
-- @expect kind: execute
-- @expect command_tag: EXECUTE
-- @expect execute: {name: q1}
-- @expect relations: []
-- @expect functions: [pg_sleep]
-- @expect flags: {executes_dynamic_sql: true, side_effect_functions: true}
EXECUTE q1(pg_sleep(1)::int);

-- @case create-table-as-execute
-- @expect command_tag: CREATE TABLE AS
-- @expect execute: {name: q1}
-- @expect relations: [t:ddl, t:insert]
CREATE TABLE t AS EXECUTE q1(1);

-- @case deallocate
-- @expect node: DeallocateStmt
-- @expect kind: deallocate
-- @expect command_tag: DEALLOCATE
-- @expect deallocate: {name: q1, all: false}
DEALLOCATE q1;

-- @case deallocate-prepare
-- @expect deallocate: {name: q1, all: false}
DEALLOCATE PREPARE q1;

-- @case deallocate-all
-- @expect command_tag: DEALLOCATE ALL
-- @expect deallocate: {name: null, all: true}
DEALLOCATE ALL;

-- @case do-block
-- @expect node: DoStmt
-- @expect kind: do
-- @expect command_tag: DO
-- @expect relations: []
-- @expect flags: {executes_dynamic_sql: true, is_utility: true}
DO $$ BEGIN EXECUTE 'DROP TABLE customers'; END $$;

-- @case do-language
-- @expect kind: do
-- @expect flags: {executes_dynamic_sql: true}
DO LANGUAGE plpgsql 'BEGIN PERFORM 1; END';

-- @case call
-- @expect node: CallStmt
-- @expect kind: call
-- @expect command_tag: CALL
-- @expect functions: [purge, now]
-- @expect flags: {executes_dynamic_sql: true}
CALL purge(now());

-- @case call-qualified
-- @expect functions: [admin.reset_all]
CALL admin.reset_all();

-- @case lock
-- @expect node: LockStmt
-- @expect kind: lock
-- @expect command_tag: LOCK TABLE
-- @expect relations: [orders:lock, public.customers:lock]
-- @expect flags: {locks: true, writes: false, is_utility: true}
LOCK TABLE orders, public.customers IN ACCESS EXCLUSIVE MODE;

-- @case lock-nowait
-- @expect relations: [orders:lock]
LOCK orders IN SHARE MODE NOWAIT;

-- @case vacuum
-- @expect node: VacuumStmt
-- @expect kind: maintenance
-- @expect command_tag: VACUUM
-- @expect relations: [orders:maintenance, customers:maintenance]
-- @expect flags: {writes: false, is_utility: true}
VACUUM (FULL, ANALYZE) orders, customers (email);

-- @case vacuum-everything
-- @expect command_tag: VACUUM
-- @expect relations: []
VACUUM;

-- @case analyze
-- @expect command_tag: ANALYZE
-- @expect relations: [orders:maintenance]
ANALYZE VERBOSE orders;

-- @case cluster
-- @expect command_tag: CLUSTER
-- @expect relations: [orders:maintenance]
CLUSTER orders USING orders_pkey;

-- @case reindex
-- @expect command_tag: REINDEX
-- @expect relations: [orders:maintenance]
REINDEX TABLE CONCURRENTLY orders;

-- @case reindex-database
-- @expect command_tag: REINDEX
-- @expect relations: []
REINDEX DATABASE shop;

-- @case refresh-materialized-view
-- @expect node: RefreshMatViewStmt
-- @expect kind: maintenance
-- @expect command_tag: REFRESH MATERIALIZED VIEW
-- @expect relations: [order_totals:refresh]
-- @expect flags: {ddl: true, writes: true}
REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;

-- @case checkpoint
-- @expect node: CheckPointStmt
-- @expect kind: maintenance
-- @expect command_tag: CHECKPOINT
CHECKPOINT;

-- @case declare-cursor
-- @expect node: DeclareCursorStmt
-- @expect kind: utility
-- @expect command_tag: DECLARE CURSOR
-- @expect relations: [customers:read]
DECLARE c CURSOR WITH HOLD FOR SELECT ssn FROM customers;

-- @case fetch
-- @expect command_tag: FETCH
-- @expect kind: utility
FETCH 10 FROM c;

-- @case move
-- @expect command_tag: MOVE
MOVE LAST IN c;

-- @case close
-- @expect command_tag: CLOSE CURSOR
CLOSE c;

-- @case close-all
-- @expect command_tag: CLOSE CURSOR ALL
CLOSE ALL;

-- @case listen
-- @expect node: ListenStmt
-- @expect kind: listen
-- @expect command_tag: LISTEN
LISTEN approvals;

-- @case unlisten
-- @expect kind: listen
-- @expect command_tag: UNLISTEN
UNLISTEN *;

-- @case notify
-- @expect node: NotifyStmt
-- @expect kind: notify
-- @expect command_tag: NOTIFY
NOTIFY approvals, 'payload';

-- @case discard-all
-- DISCARD ALL resets the session: role, settings, prepared statements.
-- @expect node: DiscardStmt
-- @expect kind: discard
-- @expect command_tag: DISCARD ALL
-- @expect deallocate: {name: null, all: true}
-- @expect settings: [{name: all, via: RESET ALL}]
-- @expect role_change: {via: SET SESSION AUTHORIZATION, role: null}
-- @expect flags: {sets_role: true, changes_session_setting: true}
DISCARD ALL;

-- @case discard-plans
-- @expect command_tag: DISCARD PLANS
-- @expect deallocate: null
-- @expect flags: {changes_session_setting: false}
DISCARD PLANS;

-- @case discard-temp
-- @expect command_tag: DISCARD TEMP
DISCARD TEMPORARY;

-- @case load
-- Loading a shared library runs arbitrary code.
-- @expect node: LoadStmt
-- @expect kind: utility
-- @expect command_tag: LOAD
-- @expect flags: {executes_dynamic_sql: true}
LOAD '/tmp/evil.so';

-- @case show
-- @expect node: VariableShowStmt
-- @expect kind: show
-- @expect command_tag: SHOW
-- @expect flags: {is_utility: true, changes_session_setting: false, writes: false}
SHOW search_path;

-- @case show-all
-- @expect kind: show
SHOW ALL;

-- @case set-constraints
-- @expect node: ConstraintsSetStmt
-- @expect kind: utility
-- @expect command_tag: SET CONSTRAINTS
SET CONSTRAINTS ALL DEFERRED;
