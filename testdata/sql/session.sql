-- Session and transaction state: SET / RESET / SET ROLE / SET SESSION AUTHORIZATION /
-- set_config, transaction control.
-- Format: see tests/unit/analysis/corpus.py.

-- @case set
-- @expect node: VariableSetStmt
-- @expect kind: set
-- @expect command_tag: SET
-- @expect settings: [{name: statement_timeout, value: '5000', via: SET}]
-- @expect role_change: null
-- @expect flags: {changes_session_setting: true, sets_role: false, is_utility: true, writes: false}
SET statement_timeout = 5000;

-- @case set-to-string
-- @expect settings: [{name: application_name, value: my app, via: SET}]
SET application_name TO 'my app';

-- @case set-name-folds-case
-- @expect settings: [{name: work_mem, value: 64MB, via: SET}]
SET Work_Mem = '64MB';

-- @case set-quoted-name-lowercased
-- @expect settings: [{name: work_mem, value: 64MB, via: SET}]
SET "WORK_MEM" = '64MB';

-- @case set-local
-- @expect settings: [{name: lock_timeout, value: 1s, via: SET LOCAL}]
SET LOCAL lock_timeout = '1s';

-- @case set-session-keyword
-- @expect settings: [{name: datestyle, value: 'iso, mdy', via: SET}]
SET SESSION datestyle = iso, mdy;

-- @case set-search-path
-- @expect settings: [{name: search_path, value: 'evil, Pub, public', via: SET}]
SET search_path TO evil, "Pub", public;

-- @case set-schema
-- @expect settings: [{name: search_path, value: evil, via: SET}]
SET SCHEMA 'evil';

-- @case set-time-zone
-- @expect settings: [{name: timezone, value: UTC, via: SET}]
SET TIME ZONE 'UTC';

-- @case set-names
-- @expect settings: [{name: client_encoding, value: SQL_ASCII, via: SET}]
SET NAMES 'SQL_ASCII';

-- @case set-standard-conforming-strings-off
-- @expect settings: [{name: standard_conforming_strings, value: 'off', via: SET}]
SET standard_conforming_strings = off;

-- @case set-default
-- @expect settings: [{name: search_path, value: null, via: SET}]
SET search_path TO DEFAULT;

-- @case set-from-current
-- @expect settings: [{name: work_mem, value: null, via: SET}]
SET work_mem FROM CURRENT;

-- @case set-custom-placeholder
-- @expect settings: [{name: app.tenant, value: '42', via: SET}]
SET app.tenant = 42;

-- @case reset
-- @expect command_tag: RESET
-- @expect settings: [{name: search_path, value: null, via: RESET}]
-- @expect flags: {changes_session_setting: true}
RESET search_path;

-- @case reset-all
-- @expect command_tag: RESET
-- @expect settings: [{name: all, value: null, via: RESET ALL}]
-- @expect role_change: null
RESET ALL;

-- @case set-transaction
-- @expect command_tag: SET
-- @expect kind: set
-- @expect settings: [{name: transaction_isolation, value: serializable, via: SET LOCAL}, {name: transaction_read_only, value: 'off', via: SET LOCAL}]
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE;

-- @case set-session-characteristics
-- @expect settings: [{name: default_transaction_read_only, value: 'off', via: SET}, {name: default_transaction_isolation, value: read committed, via: SET}]
SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE, ISOLATION LEVEL READ COMMITTED;

-- @case set-role
-- @expect kind: set
-- @expect settings: [{name: role, value: admin, via: SET}]
-- @expect role_change: {via: SET ROLE, role: admin}
-- @expect flags: {sets_role: true, changes_session_setting: true}
SET ROLE admin;

-- @case set-session-role-quoted
-- @expect role_change: {via: SET ROLE, role: Admin}
SET SESSION ROLE "Admin";

-- @case set-role-as-parameter
-- @expect role_change: {via: SET ROLE, role: admin}
SET role = 'admin';

-- @case set-local-role
-- @expect settings: [{name: role, value: admin, via: SET LOCAL}]
-- @expect role_change: {via: SET LOCAL ROLE, role: admin}
SET LOCAL ROLE admin;

-- @case set-role-none
-- @expect role_change: {via: SET ROLE, role: null}
SET ROLE NONE;

-- @case reset-role
-- @expect command_tag: RESET
-- @expect role_change: {via: RESET ROLE, role: null}
-- @expect flags: {sets_role: true}
RESET ROLE;

-- @case set-session-authorization
-- @expect command_tag: SET
-- @expect settings: [{name: session_authorization, value: postgres, via: SET}]
-- @expect role_change: {via: SET SESSION AUTHORIZATION, role: postgres}
-- @expect flags: {sets_role: true}
SET SESSION AUTHORIZATION postgres;

-- @case set-session-authorization-default
-- @expect role_change: {via: SET SESSION AUTHORIZATION, role: null}
SET SESSION AUTHORIZATION DEFAULT;

-- @case reset-session-authorization
-- @expect role_change: {via: SET SESSION AUTHORIZATION, role: null}
RESET SESSION AUTHORIZATION;

-- @case set-local-session-authorization
-- @expect role_change: {via: SET LOCAL SESSION AUTHORIZATION, role: postgres}
SET LOCAL SESSION AUTHORIZATION 'postgres';

-- @case set-config-role
-- @expect kind: select
-- @expect functions: [set_config]
-- @expect settings: [{name: role, value: admin, via: set_config}]
-- @expect role_change: {via: set_config, role: admin}
-- @expect flags: {sets_role: true, changes_session_setting: true, side_effect_functions: true, writes: false}
SELECT set_config('role', 'admin', false);

-- @case set-config-qualified-named-args
-- @expect settings: [{name: role, value: admin, via: set_config}]
-- @expect role_change: {via: set_config, role: admin}
SELECT pg_catalog.set_config(setting_name => 'ROLE', new_value => 'admin'::text, is_local => true);

-- @case set-config-session-authorization
-- @expect role_change: {via: set_config, role: postgres}
SELECT set_config('session_authorization', 'postgres', false);

-- @case set-config-search-path
-- @expect settings: [{name: search_path, value: 'evil, public', via: set_config}]
-- @expect role_change: null
-- @expect flags: {changes_session_setting: true, sets_role: false}
SELECT set_config('search_path', 'evil, public', false);

-- @case set-config-computed-name
-- A name the analysis cannot read could be "role": fail closed.
-- @expect settings: [{name: '*', value: admin, via: set_config}]
-- @expect role_change: {via: set_config, role: null}
-- @expect flags: {sets_role: true}
SELECT set_config(concat('ro', 'le'), 'admin', false);

-- @case set-config-in-where
-- @expect relations: [customers:read]
-- @expect settings: [{name: role, value: admin, via: set_config}]
SELECT email FROM customers WHERE set_config('role', 'admin', true) IS NOT NULL;

-- @case set-config-twice-different-roles
-- @expect role_change: {via: set_config, role: null}
SELECT set_config('role', 'a', false), set_config('role', 'b', false);

-- @case begin
-- @expect node: TransactionStmt
-- @expect kind: transaction
-- @expect command_tag: BEGIN
-- @expect settings: []
-- @expect flags: {transaction_control: true, is_utility: true, changes_session_setting: false}
BEGIN;

-- @case begin-isolation-read-write
-- @expect command_tag: BEGIN
-- @expect settings: [{name: transaction_isolation, value: serializable, via: SET LOCAL}, {name: transaction_read_only, value: 'off', via: SET LOCAL}]
-- @expect flags: {transaction_control: true, changes_session_setting: true}
BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE;

-- @case start-transaction-read-only-deferrable
-- @expect command_tag: START TRANSACTION
-- @expect settings: [{name: transaction_read_only, value: 'on', via: SET LOCAL}, {name: transaction_deferrable, value: 'on', via: SET LOCAL}]
START TRANSACTION READ ONLY, DEFERRABLE;

-- @case commit
-- @expect command_tag: COMMIT
-- @expect flags: {transaction_control: true}
COMMIT;

-- @case end-is-commit
-- @expect command_tag: COMMIT
END;

-- @case commit-and-chain
-- @expect command_tag: COMMIT
COMMIT AND CHAIN;

-- @case rollback
-- @expect command_tag: ROLLBACK
ROLLBACK;

-- @case abort-is-rollback
-- @expect command_tag: ROLLBACK
ABORT;

-- @case savepoint
-- @expect command_tag: SAVEPOINT
SAVEPOINT sp1;

-- @case rollback-to-savepoint
-- @expect command_tag: ROLLBACK
ROLLBACK TO SAVEPOINT sp1;

-- @case release
-- @expect command_tag: RELEASE
RELEASE sp1;

-- @case prepare-transaction
-- @expect command_tag: PREPARE TRANSACTION
-- @expect kind: transaction
-- @expect prepare: null
PREPARE TRANSACTION 'tx1';

-- @case commit-prepared
-- @expect command_tag: COMMIT PREPARED
COMMIT PREPARED 'tx1';

-- @case rollback-prepared
-- @expect command_tag: ROLLBACK PREPARED
ROLLBACK PREPARED 'tx1';

-- @case transaction-block-in-one-message
-- @statements 3
-- @expect[0] kind: transaction
-- @expect[1] kind: update
-- @expect[1] writes: [customers:update:where]
-- @expect[2] command_tag: COMMIT
BEGIN; UPDATE customers SET phone = '1' WHERE id = 1; COMMIT;
