"""Decide how to read a table: refuse what changes the task (tasks.py), then choose the format
and columns (formats.py). One function, so every reader of data (training, the report, the
preview, load_records) decides the same way."""

from __future__ import annotations

from engine.data.formats import Plan, check_mapping, choose_plan
from engine.data.tasks import refuse_unmapped


def plan_format(fmt: str, found: list[str], rows: list[dict], mapping: dict | None, source: str,
                caps=None, skip_bad_lines: bool = False) -> Plan:
    """The Plan for a table with columns ``found`` (``rows``: a sample of its records).

    Raises DataError (``.detected`` set for preference data) when a column that changes what the
    model learns is not mapped in data.columns: preference pairs, a boolean label, media, or a
    tools column the chat template (``caps``) cannot render. With ``skip_bad_lines`` such a tools
    column is left unread and the rows that use tools are skipped one by one instead. Then as
    formats.choose_plan: DataError when the columns fit no format."""
    checked = check_mapping(mapping or {}, found, source)
    refuse_unmapped(found, rows, checked, source, caps, skip_tools=skip_bad_lines)
    return choose_plan(fmt, found, rows, checked, source, caps)
