"""Built-in and well-known functions whose mere call matters to a policy.

These lists feed the ``side_effect_functions``, ``executes_dynamic_sql`` and ``locks`` flags of a
statement's facts. Matching is on the function's name alone, whatever schema is written: a
same-named function in another schema is flagged too (fail closed; Postgres searches
``pg_catalog`` first anyway unless the search path says otherwise). Names are compared after the
parser's case folding, so ``PG_SLEEP(1)`` matches and ``"PG_SLEEP"(1)`` (a different function)
does not.

This module only names functions; it never decides anything about them.
"""

from __future__ import annotations

from typing import Final

LOCK_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
    }
)
"""Functions that take a lock (they set the ``locks`` flag)."""

SIDE_EFFECT_FUNCTIONS: Final[frozenset[str]] = (
    frozenset(
        {
            # other sessions and the server process
            "pg_terminate_backend",
            "pg_cancel_backend",
            "pg_reload_conf",
            "pg_rotate_logfile",
            "pg_log_backend_memory_contexts",
            "pg_promote",
            "pg_wal_replay_pause",
            "pg_wal_replay_resume",
            "pg_switch_wal",
            "pg_create_restore_point",
            "pg_backup_start",
            "pg_backup_stop",
            "pg_start_backup",
            "pg_stop_backup",
            "pg_import_system_collations",
            "pg_sync_replication_slots",
            "pg_truncate_visibility_map",
            # server files (pg_read_server_files / pg_write_server_files territory)
            "pg_read_file",
            "pg_read_binary_file",
            "pg_stat_file",
            "pg_ls_dir",
            "pg_file_write",
            "pg_file_rename",
            "pg_file_unlink",
            "pg_file_sync",
            # large objects: server-side file import/export and data outside any table
            "lo_import",
            "lo_export",
            "lo_unlink",
            "lo_from_bytea",
            "lo_put",
            "lo_get",
            "lo_create",
            "lo_creat",
            "lo_open",
            "lo_truncate",
            "lo_truncate64",
            "lowrite",
            "loread",
            # other databases and servers
            "dblink",
            "dblink_exec",
            "dblink_connect",
            "dblink_connect_u",
            "dblink_open",
            "dblink_fetch",
            "dblink_send_query",
            # session state, sequences, locks, time
            "set_config",
            "setseed",
            "nextval",
            "setval",
            "pg_sleep",
            "pg_sleep_for",
            "pg_sleep_until",
            "txid_current",
            "pg_current_xact_id",
            "pg_notify",
            "pg_advisory_unlock",
            "pg_advisory_unlock_shared",
            "pg_advisory_unlock_all",
            # replication slots and WAL decoding (reads every table's changes)
            "pg_create_physical_replication_slot",
            "pg_create_logical_replication_slot",
            "pg_drop_replication_slot",
            "pg_copy_physical_replication_slot",
            "pg_copy_logical_replication_slot",
            "pg_replication_slot_advance",
            "pg_logical_slot_get_changes",
            "pg_logical_slot_get_binary_changes",
            "pg_logical_slot_peek_changes",
            "pg_logical_slot_peek_binary_changes",
            "pg_logical_emit_message",
            # statistics and maintenance that write catalogs or indexes
            "pg_stat_reset",
            "pg_stat_reset_shared",
            "pg_stat_reset_single_table_counters",
            "pg_stat_reset_single_function_counters",
            "pg_stat_reset_slru",
            "pg_stat_reset_replication_slot",
            "pg_stat_reset_subscription_stats",
            "pg_stat_reset_backend_stats",
            "pg_stat_statements_reset",
            "pg_restore_relation_stats",
            "pg_restore_attribute_stats",
            "pg_clear_relation_stats",
            "pg_clear_attribute_stats",
            "brin_summarize_new_values",
            "brin_summarize_range",
            "brin_desummarize_range",
            "gin_clean_pending_list",
        }
    )
    | LOCK_FUNCTIONS
)  # taking a lock is a side effect too
"""Functions that act outside the statement's result: on other sessions, server files, large
objects, other servers, session state, sequences, locks, replication, or that simply sleep."""

SIDE_EFFECT_FUNCTION_PREFIXES: Final[tuple[str, ...]] = (
    "dblink",
    "lo_",
    "pg_advisory_",
    "pg_try_advisory_",
    "pg_file_",
    "pg_ls_",
    "pg_read_",
    "pg_logical_",
    "pg_replication_origin_",
    "pg_stat_reset",
)
"""Name prefixes of families whose every member is treated as side-effecting (``pg_ls_waldir``,
``pg_replication_origin_create``, ``dblink_disconnect`` ...)."""

DYNAMIC_SQL_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        # run a query given as text
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "ts_stat",
        "crosstab",
        "crosstab2",
        "crosstab3",
        "crosstab4",
        "dblink",
        "dblink_exec",
        "dblink_open",
        "dblink_send_query",
        # read a table, a schema or the whole database named by a text/regclass argument
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "connectby",
    }
)
"""Functions that run SQL, or read relations, named inside their (text) arguments: the relations
they reach do not appear in ``relations``, so they set ``executes_dynamic_sql``."""


def is_side_effect_function(name: str) -> bool:
    """Whether a call of ``name`` (in any schema) counts as side-effecting."""
    return name in SIDE_EFFECT_FUNCTIONS or name.startswith(SIDE_EFFECT_FUNCTION_PREFIXES)
