"""What the tests share for processes, ports and waits: import from here, never write another copy.

- `wait_until(predicate, timeout, what)`, `free_port()`, `tcp_open()`, `start_process()`, `stop_process()`,
  `RedisServer`, `log_has()`, `log_tail()`: the standard-library core in `simulator.harness` (the
  benchmarks use it too);
- `services`: the Django-aware processes (a Redis for the session, a Celery worker and beat on the test
  database, the environment they need);
- `integration`: the pytest plugin that fails a test which starts a process or uses a fixture that does
  without being marked `integration`.
"""

from simulator.harness import (
    RedisServer,
    WaitTimeout,
    free_port,
    log_has,
    log_tail,
    start_process,
    stop_process,
    tcp_open,
    wait_until,
)

__all__ = [
    "RedisServer",
    "WaitTimeout",
    "free_port",
    "log_has",
    "log_tail",
    "start_process",
    "stop_process",
    "tcp_open",
    "wait_until",
]
