"""For the clock-skew experiment only (bench/faults/scenarios.py `clock_skew`): a worker "host" whose
clock is FLEET_EXPERIMENT_CLOCK_SKEW seconds off. This directory is put on PYTHONPATH of that host's
processes alone, so Python imports this module at start-up; nothing of the project imports it.

Without libfaketime (not installed), the skew goes through the two clocks the control plane reads:
`time.time`/`time.time_ns` (Celery's expiry and ETA, the health rules' timestamps) and
`django.utils.timezone.now` (every `timezone.now()` and auto_now field). What the database stores as
the engine's times is the database's own clock (fleet/workflows/clock.py) and is not skewed: that is the
design the experiment checks.
"""

import os
import time

_SKEW = float(os.environ.get("FLEET_EXPERIMENT_CLOCK_SKEW", "0") or 0)

if _SKEW:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _SKEW
    time.time_ns = lambda: _time_ns() + int(_SKEW * 1e9)

    import datetime as _dt

    from django.utils import timezone as _timezone

    _now = _timezone.now

    def _skewed_now() -> _dt.datetime:
        return _now() + _dt.timedelta(seconds=_SKEW)

    _timezone.now = _skewed_now
