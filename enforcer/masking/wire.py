"""The second layer: masking on the result path, by the provenance Postgres reports.

Owns: :class:`ResultMasker`, a result transformer (the gateway's ``ResultTransformer`` shape:
``transform(type_byte, payload) -> [(type_byte, payload), ...]``) that follows the backend frames
of one response cycle. A RowDescription says, per field, which table column (table OID, attribute
number) it comes from, its type and its format; any field whose provenance is a masked column is
masked in every DataRow, text or binary, with values of the field's type. It also withholds error
texts that may quote real values and refuses COPY output it cannot vouch for.
Never: performs I/O, imports the proxy, or trusts a frame it cannot decode (it fails closed).

After a rewrite (``enforcer.masking.rewrite``) masked columns reach the wire as expressions (no
provenance), so this layer only acts when something bypassed the rewrite -- which is the point.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from enforcer.masking.catalog import Catalog, Column
from enforcer.masking.plan import INSUFFICIENT_PRIVILEGE, ColumnMask, HmacKey, MaskPlan
from enforcer.masking.protection import Protection
from enforcer.masking.rewrite import Rewritten
from enforcer.masking.strategies import ValueMasker
from enforcer.wire import (
    DataRow,
    ErrorResponse,
    FieldDescription,
    NoticeResponse,
    ProtocolError,
    RowDescription,
)

_T = ord("T")
_D = ord("D")
_PARAM_DESC = ord("t")
_NO_DATA = ord("n")
_BIND_COMPLETE = ord("2")
_COMMAND_COMPLETE = ord("C")
_EMPTY = ord("I")
_SUSPENDED = ord("s")
_COPY_OUT = ord("H")
_COPY_BOTH = ord("W")
_COPY_DATA = ord("d")
_COPY_DONE = ord("c")
_ERROR = ord("E")
_NOTICE = ord("N")
_READY = ord("Z")

#: Error/notice fields that can quote values: message, detail, hint, context, internal query.
_VALUE_FIELDS = frozenset("MDHWqp")


@dataclass(frozen=True)
class WireMasks:
    """Which result fields to mask: (table OID, attribute number) -> (mask, column)."""

    columns: Mapping[tuple[int, int], tuple[ColumnMask, Column]]
    hmac_key: HmacKey | None = None
    redact_text: str = "****"

    @classmethod
    def build(cls, plan: MaskPlan, catalog: Catalog) -> WireMasks:
        """Every column the plan masks, in tables, partitions/children, views and their kin."""
        protection = Protection(plan, catalog)
        columns: dict[tuple[int, int], tuple[ColumnMask, Column]] = {}
        for rel in catalog.relations:
            masks = protection.column_masks(rel)
            for col in rel.columns:
                m = masks.get(col.name)
                if m is not None:
                    columns[(rel.oid, col.attnum)] = (m, col)
        return cls(columns, plan.hmac_key, plan.redact_text)

    def masker(self, field: FieldDescription) -> ValueMasker | None:
        """The masker for one field, or None when its provenance is not a masked column."""
        if field.table_oid == 0:
            return None
        found = self.columns.get((field.table_oid, field.column_attr))
        if found is None:
            return None
        mask, column = found
        if field.type_oid != column.base_type_oid:
            # Not the column's own type: we cannot compute its masked form -- send NULL.
            mask = ColumnMask("null", mask.label)
        return ValueMasker.for_column(mask, column, key=self.hmac_key, redact_text=self.redact_text)


def _formats(formats: Sequence[int], count: int) -> list[int]:
    if not formats:
        return [0] * count
    if len(formats) == 1:
        return [formats[0]] * count
    return list(formats[:count]) + [0] * (count - len(formats))


class ResultMasker:
    """Masks one statement's results on the way to the client (see the module docstring).

    ``rewritten`` is the statement's :class:`Rewritten`, or None when it was forwarded as sent
    (then COPY output is refused and every error text is withheld, as nothing vouches for them).

    The extended protocol separates a result's description from its rows. Rows are matched to a
    description in this order: a RowDescription earlier in the same cycle (simple Query, or
    Describe of a portal); else the fields registered by :meth:`bind` for the BindComplete they
    follow (the gateway calls it when it forwards a Bind, with the statement's description it
    remembered from an earlier Describe); else ``fields`` given at construction. Rows with no
    description are never passed on: the client gets an ErrorResponse instead and the rest of the
    cycle up to ReadyForQuery is dropped.
    """

    def __init__(
        self,
        masks: WireMasks,
        *,
        rewritten: Rewritten | None = None,
        fields: Sequence[FieldDescription] | None = None,
        result_formats: Sequence[int] | None = None,
        on_statement_fields: Callable[[tuple[FieldDescription, ...]], None] | None = None,
    ) -> None:
        self.masks = masks
        #: Told the description of a prepared statement when a Describe answers it (the session
        #: remembers it per statement name for later Binds, e.g. asyncpg's).
        self.on_statement_fields = on_statement_fields
        self.copy_allowed = rewritten is not None
        self.scrub = rewritten is None or rewritten.scrub_errors
        self.drop_position = rewritten is not None and rewritten.changed
        self._preset = tuple(fields) if fields is not None else None
        self._current: list[tuple[int, ValueMasker, int]] | None = None
        self._width = 0
        if self._preset is not None:
            self._use(self._preset, result_formats)
        self._binds: deque[tuple[tuple[int, ...], tuple[FieldDescription, ...] | None]] = deque()
        self._after_param_desc = False
        #: The last RowDescription answering a Describe of a prepared statement (formats unknown
        #: then): remember it per statement name, pass it to :meth:`bind` or ``fields`` later.
        self.statement_fields: tuple[FieldDescription, ...] | None = None
        #: The description rows are currently matched to (remember it per portal).
        self.current_fields: tuple[FieldDescription, ...] | None = self._preset
        self._copy_refused = False
        self._dropping = False
        self.masked_fields = 0

    # ------------------------------------------------------------------ hooks for the session
    def absorb(self, other: ResultMasker) -> None:
        """Another masked statement in the same response cycle: one masker serves both, carefully."""
        self.copy_allowed = self.copy_allowed and other.copy_allowed
        self.scrub = self.scrub or other.scrub
        self.drop_position = self.drop_position or other.drop_position
        self._binds.extend(other._binds)
        if other.on_statement_fields is not None:
            self.on_statement_fields = other.on_statement_fields

    def bind(self, result_formats: Sequence[int], fields: Sequence[FieldDescription] | None = None) -> None:
        """A Bind was forwarded in this cycle: its result formats, and the statement's description."""
        self._binds.append((tuple(result_formats), tuple(fields) if fields is not None else None))

    # ------------------------------------------------------------------ the transformer
    def transform(self, type_byte: int, payload: bytes) -> list[tuple[int, bytes]]:
        if self._dropping:
            if type_byte == _READY:
                self._reset()
                return [(type_byte, payload)]
            return []
        try:
            return self._transform(type_byte, payload)
        except ProtocolError:
            return self._refuse("pgwarden could not decode a result message, so it was not passed on")

    def _transform(self, type_byte: int, payload: bytes) -> list[tuple[int, bytes]]:
        if type_byte == _D:
            return self._data_row(payload)
        if type_byte == _T:
            fields = RowDescription.decode(payload).fields
            if self._after_param_desc:
                self._after_param_desc = False
                self.statement_fields = fields
                if self.on_statement_fields is not None:
                    self.on_statement_fields(fields)
            else:
                self._use(fields, None)
            return [(type_byte, payload)]
        if type_byte == _PARAM_DESC:
            self._after_param_desc = True
        elif type_byte == _NO_DATA:
            self._after_param_desc = False
        elif type_byte == _BIND_COMPLETE:
            if self._binds:
                formats, bound = self._binds.popleft()
                described = bound or self.statement_fields or self._preset
                if described is not None:
                    self._use(described, formats)
                else:
                    self._clear()
            else:
                self._clear()
        elif type_byte in (_COMMAND_COMPLETE, _EMPTY):
            if self._copy_refused:
                self._copy_refused = False
                return self._refuse(
                    "pgwarden withheld this COPY output: it was not rewritten for masking, so masked "
                    "values could not be excluded"
                )
            self._clear()
        elif type_byte in (_COPY_OUT, _COPY_BOTH):
            if not self.copy_allowed:
                self._copy_refused = True
                return []
        elif type_byte in (_COPY_DATA, _COPY_DONE):
            if self._copy_refused:
                return []
        elif type_byte == _ERROR:
            self._copy_refused = False
            return [(type_byte, self._scrub(ErrorResponse.decode(payload)).encode()[5:])]
        elif type_byte == _NOTICE and (self.scrub or self.drop_position):
            return [(type_byte, self._scrub(NoticeResponse.decode(payload)).encode()[5:])]
        elif type_byte == _READY:
            self._reset()
        return [(type_byte, payload)]

    # ------------------------------------------------------------------ rows
    def _use(self, fields: Sequence[FieldDescription], formats: Sequence[int] | None) -> None:
        fmts = [f.format for f in fields] if formats is None else _formats(formats, len(fields))
        plan = []
        for i, field in enumerate(fields):
            masker = self.masks.masker(field)
            if masker is not None:
                plan.append((i, masker, fmts[i]))
        self._current = plan
        self._width = len(fields)
        self.current_fields = tuple(fields)

    def _clear(self) -> None:
        self._current = None
        self.current_fields = None

    def _data_row(self, payload: bytes) -> list[tuple[int, bytes]]:
        plan = self._current
        if plan is None:
            return self._refuse(
                "pgwarden could not match these result rows to their columns, so masking could not be "
                "guaranteed; the result was withheld"
            )
        if not plan:
            return [(_D, payload)]
        values = list(DataRow.decode(payload).values)
        if len(values) != self._width:
            return self._refuse("a result row does not match its description; the result was withheld")
        for index, masker, fmt in plan:
            raw = values[index]
            if raw is not None:
                values[index] = masker(raw, fmt)
        self.masked_fields += len(plan)
        return [(_D, DataRow(tuple(values)).encode()[5:])]

    # ------------------------------------------------------------------ errors
    def _scrub(self, msg: ErrorResponse | NoticeResponse) -> ErrorResponse | NoticeResponse:
        fields = list(msg.fields)
        if self.drop_position:
            # Positions point into the rewritten text, which the client never sent.
            fields = [(k, v) for k, v in fields if k not in ("P", "p", "q")]
        if self.scrub:
            sqlstate = msg.sqlstate or "XX000"
            kept = [(k, v) for k, v in fields if k not in _VALUE_FIELDS]
            what = "error" if isinstance(msg, ErrorResponse) else "notice"
            kept.append(
                (
                    "M",
                    f"pgwarden withheld the text of this {what} (SQLSTATE {sqlstate}): it may quote values "
                    "of masked columns",
                )
            )
            fields = kept
        return type(msg)(tuple(fields))

    def _refuse(self, message: str) -> list[tuple[int, bytes]]:
        self._dropping = True
        error = ErrorResponse.build(
            INSUFFICIENT_PRIVILEGE,
            message,
            hint="The statement ran upstream; only its result was withheld.",
        )
        return [(_ERROR, error.encode()[5:])]

    def _reset(self) -> None:
        self._dropping = False
        self._copy_refused = False
        self._after_param_desc = False
        self._binds.clear()
        if self._preset is not None:
            self._use(self._preset, None)
        else:
            self._clear()
