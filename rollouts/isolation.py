"""Rendering release templates in a separate process, with a CPU-time, a memory and a wall-clock limit
per site and a wall-clock limit per release.

Every rendering of a release (the check at creation, the check at rollout start, the dry run, each
site's commit step) goes through `render`. It hands the work to a renderer process
(rollouts/render_child.py) that this process keeps: started on first use, reused for every following
render (a rollout renders one release at thousands of sites: a new process per site would cost more
than the render), one per thread that renders at the same time. A process that passes a limit is
killed or ends itself, and the next render starts a new one. The limits (settings, environment):

- FLEET_RENDER_CPU_SECONDS (2): CPU time for one site (compiling included);
- FLEET_RENDER_MEMORY_MB (512): the renderer process's address space;
- FLEET_RENDER_TIMEOUT_SECONDS (5): wall-clock time for one site, however busy the machine;
- FLEET_RENDER_RELEASE_SECONDS (20): wall-clock time for rendering one release for all the sites of
  one check (creation, start, dry run). It must stay under the web server's request timeout (30 s):
  a rollout start renders every targeted site inside its request.

A limit passed is fleet.errors.Invalid (field `templates`) naming the site and the limit, e.g.
"rendering for site TX-0412 exceeded the 2 s CPU limit (FLEET_RENDER_CPU_SECONDS)". A renderer that
cannot be started at all is RendererUnavailable (503): the machine's trouble, not the template's.

What crosses the pipe is JSON, both ways; the parent checks the shape of every answer (the template
paths it sent, strings, sizes) before using it.
"""

import atexit
import hashlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from fleet.errors import FleetError, Invalid
from rollouts.templating import MAX_RENDERED_CHARS, RenderedSite, SampleSite, site_facts

ROOT = Path(__file__).resolve().parent.parent
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# How long a new renderer process may take to start (Python and Jinja2 imported) on a busy machine.
STARTUP_SECONDS = 30.0
# A renderer killed by a signal: SIGXCPU is RLIMIT_CPU's; SIGKILL is ours (timeout) or the kernel's (out of memory).
_SIGNAL_NAMES = {int(signal.SIGXCPU): "cpu", int(signal.SIGKILL): "killed"}


class RendererUnavailable(FleetError):
    """The renderer process could not be started or talked to (the machine's trouble, not the template's)."""

    status_code = 503


@dataclass(frozen=True)
class RenderLimits:
    """The limits of one site's render and of one release's check (see the module's docstring)."""

    cpu_seconds: float = 2.0
    memory_mb: int = 512
    timeout_seconds: float = 5.0
    release_seconds: float = 20.0

    @classmethod
    def current(cls) -> "RenderLimits":
        return cls(
            cpu_seconds=float(getattr(settings, "FLEET_RENDER_CPU_SECONDS", cls.cpu_seconds)),
            memory_mb=int(getattr(settings, "FLEET_RENDER_MEMORY_MB", cls.memory_mb)),
            timeout_seconds=float(getattr(settings, "FLEET_RENDER_TIMEOUT_SECONDS", cls.timeout_seconds)),
            release_seconds=float(getattr(settings, "FLEET_RENDER_RELEASE_SECONDS", cls.release_seconds)),
        )


@dataclass(frozen=True)
class ReleaseMaterial:
    """Everything rendering reads of a release, as JSON, and its digest (the renderer's cache key)."""

    label: str
    data: dict[str, Any]
    digest: str
    paths: frozenset[str]

    @classmethod
    def build(cls, *, label: str, application: dict[str, Any], version: str, templates: dict[str, str], values: Any):
        data = {"application": application, "version": version, "templates": templates, "values": values}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return cls(label=label, data=data, digest=digest, paths=frozenset(templates))


@dataclass
class ReleaseBudget:
    """The wall-clock time one release's check may spend rendering, over any number of renders (and, for
    the dry run, over several workflow steps: `spent` carries what earlier steps used)."""

    limit: float
    spent: float = 0.0
    sites: int = 0
    _started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return self._started + self.limit - self.spent

    def used(self) -> float:
        """Seconds spent so far, earlier steps included."""
        return self.spent + time.monotonic() - self._started


def _where(site: Any) -> str:
    return "the sample site" if site is None or isinstance(site, SampleSite) else f"site {site_facts(site)['code']}"


def render(
    material: ReleaseMaterial,
    site: Any,
    *,
    budget: ReleaseBudget | None = None,
    limits: RenderLimits | None = None,
) -> RenderedSite:
    """The release rendered and checked for `site` (a Site, a dict of site facts, or None / SampleSite
    for the sample site) in the renderer process, within the limits. Raises Invalid naming the site and
    the limit passed, or the template's problem; RendererUnavailable if no renderer can be started."""
    limits = limits or RenderLimits.current()
    sample = site is None or isinstance(site, SampleSite)
    where = _where(site)
    timeout, by_budget = limits.timeout_seconds, False
    if budget is not None:
        left = budget.deadline - time.monotonic()
        if left <= 0 or left < timeout:
            timeout, by_budget = max(left, 0.0), True
        if left <= 0:
            raise _release_limit(material, budget, limits, where)
    request = {"digest": material.digest, "site": None if sample else site_facts(site), "cpu": limits.cpu_seconds}
    for attempt in (1, 2):
        with _POOL.child(limits.memory_mb) as child:
            try:
                answer = child.ask(request, timeout)
                if answer.get("status") == "need_material":
                    answer = child.ask({**request, "material": material.data}, timeout)
            except _Gone:
                if attempt == 1:
                    continue  # it had ended while idle (killed from outside): a new one takes the request
                raise RendererUnavailable("the renderer process ends as soon as it starts") from None
            except _TimedOut:
                child.kill()
                if by_budget and budget is not None:
                    raise _release_limit(material, budget, limits, where) from None
                raise _limit(where, "time", limits) from None
            except _Ended as ended:
                raise _limit(where, ended.limit, limits, detail=ended.detail) from None
            if budget is not None:
                budget.sites += 1
            return _rendered(answer, material, where, limits, child)
    raise AssertionError("unreachable")  # pragma: no cover


def _rendered(
    answer: dict[str, Any], material: ReleaseMaterial, where: str, limits: RenderLimits, child: "_Child"
) -> RenderedSite:
    status = answer.get("status")
    if status == "invalid":
        raise Invalid(str(answer.get("message"))[:4000], field="templates")
    if status == "limit":
        raise _limit(where, str(answer.get("limit")), limits)
    files, objects = answer.get("files"), answer.get("objects")
    if (
        status != "ok"
        or not isinstance(files, dict)
        or set(files) != material.paths
        or not all(isinstance(text, str) for text in files.values())
        or sum(len(text) for text in files.values()) > MAX_RENDERED_CHARS
        or not isinstance(objects, list)
        or not all(isinstance(key, list) and len(key) == 4 and all(isinstance(p, str) for p in key) for key in objects)
    ):
        child.kill()
        raise Invalid(f"rendering for {where} gave an answer of the wrong shape; refused", field="templates")
    return RenderedSite(files=files, objects=tuple((k[0], k[1], k[2], k[3]) for k in objects))


def _limit(where: str, limit: str, limits: RenderLimits, *, detail: str = "") -> Invalid:
    if limit == "cpu":
        message = f"rendering for {where} exceeded the {limits.cpu_seconds:g} s CPU limit (FLEET_RENDER_CPU_SECONDS)"
    elif limit == "memory":
        message = f"rendering for {where} exceeded the {limits.memory_mb} MB memory limit (FLEET_RENDER_MEMORY_MB)"
    elif limit == "time":
        message = (
            f"rendering for {where} exceeded the {limits.timeout_seconds:g} s time limit (FLEET_RENDER_TIMEOUT_SECONDS)"
        )
    else:
        message = (
            f"rendering for {where} stopped the renderer process ({detail or limit}); the template may need more "
            f"than the {limits.memory_mb} MB memory limit (FLEET_RENDER_MEMORY_MB)"
        )
    return Invalid(message, field="templates")


def _release_limit(material: ReleaseMaterial, budget: ReleaseBudget, limits: RenderLimits, where: str) -> Invalid:
    return Invalid(
        f"rendering {material.label} exceeded the {budget.limit:g} s limit for one release "
        f"(FLEET_RENDER_RELEASE_SECONDS): it stopped at {where} after {budget.sites} site(s)",
        field="templates",
    )


# --- the renderer processes ---------------------------------------------------------------------------


class _TimedOut(Exception):
    pass


class _Gone(Exception):
    """The renderer process had ended before it was sent anything."""


class _Ended(Exception):
    """The renderer process ended without answering: `limit` is what its exit says it passed."""

    def __init__(self, limit: str, detail: str = ""):
        super().__init__(limit)
        self.limit = limit
        self.detail = detail


class _Child:
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
        except (_TimedOut, EOFError):
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
        """Send one request and read its answer within `timeout` seconds (raises _TimedOut, _Ended)."""
        deadline = time.monotonic() + timeout
        body = json.dumps(request, separators=(",", ":")).encode()
        try:
            self._write(len(body).to_bytes(4, "big") + body, deadline)
        except BrokenPipeError:
            self.kill()
            raise _Gone from None
        try:
            header = self._read(4, deadline)
            size = int.from_bytes(header, "big")
            if size > MAX_ANSWER_BYTES:
                self.kill()
                raise _Ended("crashed", f"an answer of {size} bytes")
            answer = json.loads(self._read(size, deadline))
        except (BrokenPipeError, EOFError):
            raise self._ended() from None
        except ValueError:
            self.kill()
            raise _Ended("crashed", "an answer that is not JSON") from None
        if not isinstance(answer, dict):
            self.kill()
            raise _Ended("crashed", "an answer that is not a JSON object")
        if answer.get("status") == "limit":
            self.usable = False  # it ends after this answer
            self._reap(5.0)
        return answer

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        poller = select.poll()
        poller.register(self._in, select.POLLOUT)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise _TimedOut
            try:
                view = view[os.write(self._in, view) :]
            except BlockingIOError:
                continue

    def _read(self, size: int, deadline: float) -> bytes:
        chunks, missing = [], size
        poller = select.poll()
        poller.register(self._out, select.POLLIN)
        while missing:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise _TimedOut
            try:
                chunk = os.read(self._out, min(missing, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _ended(self) -> _Ended:
        """Why the process ended without answering, from its exit status."""
        self.usable = False
        code = self._reap(5.0)
        if code is None:
            self.kill()
            return _Ended("crashed", "it stopped answering")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return _Ended(_SIGNAL_NAMES.get(-code, "crashed"), f"killed by {name}")
        return _Ended("crashed", f"exit status {code}")

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


class _Pool:
    """The renderer processes of this process: idle ones are reused, one is started when none is idle.

    A forked process (a Celery prefork child, say) must not share its parent's renderers: on the first
    use after a fork it forgets them (closing its copies of their pipes) and starts its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._pid = os.getpid()

    @contextmanager
    def child(self, memory_mb: int) -> Iterator[_Child]:
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
            child = _Child(memory_mb)
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


_POOL = _Pool()
atexit.register(_POOL.close)
