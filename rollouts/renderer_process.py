"""The renderer processes (rollouts/render_child.py at the other end): starting one with its memory limit
and an empty environment, talking to it over non-blocking pipes (length-prefixed JSON both ways) with a
deadline, telling from its exit why it ended, and a pool that reuses idle ones and forgets them after
a fork."""

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleet.errors import FleetError

ROOT = Path(__file__).resolve().parent.parent
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# How long a new renderer process may take to start (Python and Jinja2 imported) on a busy machine.
STARTUP_SECONDS = 30.0
# A renderer killed by a signal: SIGXCPU is RLIMIT_CPU's; SIGKILL is ours (timeout) or the kernel's (out of memory).
_SIGNAL_NAMES = {int(signal.SIGXCPU): "cpu", int(signal.SIGKILL): "killed"}


class RendererUnavailable(FleetError):
    """The renderer process could not be started or talked to (the machine's trouble, not the template's)."""

    status_code = 503


class TimedOut(Exception):
    pass


class Gone(Exception):
    """The renderer process had ended before it was sent anything."""


class Ended(Exception):
    """The renderer process ended without answering: `limit` is what its exit says it passed."""

    def __init__(self, limit: str, detail: str = ""):
        super().__init__(limit)
        self.limit = limit
        self.detail = detail


def _wait(poller: select.poll, deadline: float) -> None:
    """Until `poller` says its pipe is ready; TimedOut once `deadline` (time.monotonic) passes."""
    left = deadline - time.monotonic()
    if left <= 0 or not poller.poll(left * 1000):
        raise TimedOut


class RendererProcess:
    """One renderer process and the two ends of its pipes, in non-blocking mode."""

    def __init__(self, memory_mb: int):
        self.memory_mb = memory_mb
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); from rollouts.render_child import main; sys.exit(main())"
        )
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        try:
            self.process = subprocess.Popen(  # noqa: S603  # our own interpreter and module, no shell
                [sys.executable, "-I", "-c", code, str(memory_mb)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise RendererUnavailable(f"cannot start the renderer process: {exc}") from exc
        assert self.process.stdin is not None and self.process.stdout is not None  # noqa: S101  # PIPE above
        self._in, self._out = self.process.stdin.fileno(), self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self.usable = True
        # It says it is ready once its limits are set and Jinja2 is imported: a renderer that cannot
        # even start (a memory limit too small for Python itself) is the set-up's fault, not a template's.
        deadline = time.monotonic() + STARTUP_SECONDS
        try:
            hello = self._read(min(int.from_bytes(self._read(4, deadline), "big"), 64), deadline)
        except (TimedOut, EOFError):
            status = self._reap(1.0)
            self.kill()
            how = "no answer" if status is None else f"exit status {status}"
            raise RendererUnavailable(
                f"the renderer process did not start ({how}); is FLEET_RENDER_MEMORY_MB ({memory_mb}) too small?"
            ) from None
        if hello != b'{"status":"ready"}':
            self.kill()
            raise RendererUnavailable("the renderer process did not start: it said something unexpected")

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and read its answer within `timeout` seconds (raises TimedOut, Ended)."""
        deadline = time.monotonic() + timeout
        body = json.dumps(request, separators=(",", ":")).encode()
        try:
            self._write(len(body).to_bytes(4, "big") + body, deadline)
        except BrokenPipeError:
            self.kill()
            raise Gone from None
        try:
            header = self._read(4, deadline)
            size = int.from_bytes(header, "big")
            if size > MAX_ANSWER_BYTES:
                self.kill()
                raise Ended("crashed", f"an answer of {size} bytes")
            answer = json.loads(self._read(size, deadline))
        except (BrokenPipeError, EOFError):
            raise self._ended() from None
        except ValueError:
            self.kill()
            raise Ended("crashed", "an answer that is not JSON") from None
        if not isinstance(answer, dict):
            self.kill()
            raise Ended("crashed", "an answer that is not a JSON object")
        if answer.get("status") == "limit":
            self.usable = False  # it ends after this answer
            self._reap(5.0)
        return answer

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        poller = select.poll()
        poller.register(self._in, select.POLLOUT)
        while view:
            _wait(poller, deadline)
            try:
                view = view[os.write(self._in, view) :]
            except BlockingIOError:
                continue

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, missing = [], size
        poller = select.poll()
        poller.register(self._out, select.POLLIN)
        while missing:
            _wait(poller, deadline)
            try:
                chunk = os.read(self._out, min(missing, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _ended(self) -> Ended:
        """Why the process ended without answering, from its exit status."""
        self.usable = False
        code = self._reap(5.0)
        if code is None:
            self.kill()
            return Ended("crashed", "it stopped answering")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return Ended(_SIGNAL_NAMES.get(-code, "crashed"), f"killed by {name}")
        return Ended("crashed", f"exit status {code}")

    def _reap(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self.usable = False
        if self.process.poll() is None:
            self.process.kill()
        self._reap(10.0)
        self.close()

    def close(self) -> None:
        """Close our ends: an idle renderer reads end-of-file and exits."""
        self.usable = False
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class RendererPool:
    """The renderer processes of this process: idle ones are reused, one is started when none is idle.

    A forked process (a Celery prefork child, say) must not share its parent's renderers: on the first
    use after a fork it forgets them (closing its copies of their pipes) and starts its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[RendererProcess] = []
        self._pid = os.getpid()

    @contextmanager
    def child(self, memory_mb: int) -> Iterator[RendererProcess]:
        with self._lock:
            if self._pid != os.getpid():
                for inherited in self._idle:
                    inherited.close()
                self._idle, self._pid = [], os.getpid()
            child = None
            while self._idle and child is None:
                candidate = self._idle.pop()
                if candidate.memory_mb == memory_mb and candidate.process.poll() is None:
                    child = candidate
                else:
                    candidate.close()
        if child is None:
            child = RendererProcess(memory_mb)
        try:
            yield child
        finally:
            if child.usable and child.process.poll() is None:
                with self._lock:
                    self._idle.append(child)
            else:
                child.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.close()
            child._reap(1.0)


POOL = RendererPool()
atexit.register(POOL.close)
