"""Print shell `export` lines for the services the test run should use.

PostgreSQL at 127.0.0.1:5432 (database `test`, user postgres) and Redis at 127.0.0.1:6379 are used when
they answer and the caller has not chosen already; otherwise the embedded defaults apply (SQLite, and
a private redis-server started by the tests).
"""

import os
import shlex

from simulator.harness import tcp_open


def main() -> None:
    exports: dict[str, str] = {}
    if "FLEET_DATABASE_URL" not in os.environ and tcp_open("127.0.0.1", 5432):
        exports["FLEET_DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/test"
    for key, value in exports.items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
