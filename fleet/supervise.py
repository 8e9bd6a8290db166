"""Keep one long-running process alive: any exit is a restart, not an outage.

    python -m fleet.supervise [--name worker] -- celery -A fleet worker -Q control,io

Runs the command; when it exits, for whatever reason (a crash, an unrecoverable error, a SIGKILL from
the kernel's OOM killer), it is started again after a back-off that doubles from `--min-backoff` to
`--max-backoff` seconds and starts over once the command has run for `--healthy-after` seconds.
SIGTERM or SIGINT to the supervisor is passed to the command, which is then not restarted: that is how
`make dev`'s Ctrl-C and a container's stop still stop everything.

The rule for a restart is `backoff_after()`, a pure function with its own test. Production platforms
supervise too (docker-compose's `restart:`, Kubernetes' restartPolicy); this is for the places that do
not: `make dev` under honcho, which stops the whole stack when one process exits, and Procfile runners.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("fleet.supervise")


def backoff_after(
    *, previous: float, ran_for: float, min_backoff: float, max_backoff: float, healthy_after: float
) -> float:
    """Seconds to wait before the next start: the minimum after a run that was healthy long enough,
    else double the previous wait, never above the maximum."""
    if ran_for >= healthy_after or previous <= 0:
        return min_backoff
    return min(max_backoff, max(min_backoff, previous * 2))


class Supervisor:
    """Runs `command` until told to stop, restarting it whenever it exits."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        min_backoff: float = 1.0,
        max_backoff: float = 30.0,
        healthy_after: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.command = list(command)
        self.name = name
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._stop_signal = signal.SIGTERM

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Pass `signum` to the command and let it exit for good."""
        self._stop_signal = signal.Signals(signum)
        self._stopping.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def run(self) -> int:
        """Start, wait, restart; returns the command's last exit code once stopped."""
        wait = 0.0
        code = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            child = self._child = subprocess.Popen(self.command)  # noqa: S603 - our own commands, from the Procfile
            log.info("%s: started pid %d: %s", self.name, child.pid, " ".join(self.command))
            code = self._wait_for(child)
            ran_for = time.monotonic() - started
            if self._stopping.is_set():
                break
            wait = backoff_after(
                previous=wait,
                ran_for=ran_for,
                min_backoff=self.min_backoff,
                max_backoff=self.max_backoff,
                healthy_after=self.healthy_after,
            )
            self.restarts += 1
            log.warning(
                "%s: exited with %s after %.0f s; restart %d in %.0f s", self.name, code, ran_for, self.restarts, wait
            )
            self._stopping.wait(wait)
        return code

    def _wait_for(self, child: "subprocess.Popen[bytes]") -> int:
        while True:
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self._stopping.is_set():
                    return self._finish(child)

    def _finish(self, child: "subprocess.Popen[bytes]") -> int:
        """The command was told to stop; give it `stop_timeout` seconds, then kill it."""
        try:
            return child.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s: did not stop within %.0f s; killing it", self.name, self.stop_timeout)
            child.kill()
            return child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", default="", help="how the process is named in the log (default: the command)")
    parser.add_argument("--min-backoff", type=float, default=1.0)
    parser.add_argument("--max-backoff", type=float, default=30.0)
    parser.add_argument("--healthy-after", type=float, default=60.0)
    parser.add_argument("--stop-timeout", type=float, default=30.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to supervise after --")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervisor = Supervisor(
        command,
        name=args.name or os.path.basename(command[0]),
        min_backoff=args.min_backoff,
        max_backoff=args.max_backoff,
        healthy_after=args.healthy_after,
        stop_timeout=args.stop_timeout,
    )

    def forward(signum: int, frame: FrameType | None) -> None:
        supervisor.stop(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    code = supervisor.run()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
