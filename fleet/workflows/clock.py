"""The database's clock in SQL, per backend, for the engine's hand-written statements (runs.py, timeline.py).

Every time the engine stores on a run (due, leased until, sent, finished) is the database's, so a
comparison never mixes two hosts' clocks or two precisions (SQLite's clock counts milliseconds where
Python writes microseconds). The expressions are those Django's `Now()` writes for the backend.
"""

import json
from typing import Any

from django.db import connection


def now() -> str:
    """The database clock."""
    if connection.vendor == "postgresql":
        return "STATEMENT_TIMESTAMP()"
    return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')"


def now_plus() -> str:
    """The database clock plus a number of seconds given as the next parameter (see `seconds`)."""
    if connection.vendor == "postgresql":
        return "(STATEMENT_TIMESTAMP() + %s * INTERVAL '1 second')"
    return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW', %s)"


def seconds(value: float) -> Any:
    """The parameter `now_plus` takes for `value` seconds."""
    return value if connection.vendor == "postgresql" else f"{value:+.3f} seconds"


def seconds_until(column: str) -> str:
    """Seconds from now until the time in `column` (negative once it has passed), as a float."""
    if connection.vendor == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM ({column} - STATEMENT_TIMESTAMP())) AS DOUBLE PRECISION)"
    return f"((JULIANDAY({column}) - JULIANDAY('now')) * 86400.0)"


def prep(model: Any, name: str, value: Any) -> Any:
    """A value as the ORM would send it for this field (datetimes for SQLite, JSON for jsonb...)."""
    field = model._meta.get_field(name)
    if name in ("context", "result"):
        json.dumps(value)  # fail here, readably, rather than in the driver
    return field.get_db_prep_value(value, connection, prepared=False)
