"""The renderer process: renders release templates for one web or Celery process, one request at a
time, under a CPU-time and a memory limit, so a template that asks for too much costs this process
and not the worker (rollouts/renderer_process.py is the other end, and adds the wall-clock timeout).

Started by rollouts.renderer_process with `python -I` and an empty environment (no FLEET_* secrets: it needs
none, and a template must not find any); it imports Jinja2, PyYAML and rollouts.templating only.

Protocol: frames of a 4-byte big-endian length and a JSON document; requests on stdin, answers on
stdout. JSON both ways: the parent never unpickles what this process says, so even a template that
escaped the sandbox could not run code in the parent by answering.

    request  {"digest": "<sha256 of the release>", "site": {...} | null (the sample site),
              "cpu": seconds, "material": {...} (only when asked for)}
    answers  {"status": "ok", "files": {path: text}, "objects": [[group, kind, namespace, name]], "cpu": s}
             {"status": "need_material"}   this release is not compiled here yet: send it along
             {"status": "invalid", "message": "..."}   the template's fault (rollouts.templating)
             {"status": "limit", "limit": "cpu" | "memory"}   and the process ends; a new one replaces it

Limits: RLIMIT_AS of `argv[1]` MB for the whole process. Per request, an ITIMER_PROF timer interrupts
Python code at `cpu` seconds of CPU time (the precise bound, answered as a limit), and RLIMIT_CPU a
second later kills the process with SIGXCPU (the bound for a template stuck in one long C call, which
the timer cannot interrupt). Compiled releases are kept by digest, a few and small (CACHE_*).
"""

import json
import math
import resource
import signal
import sys
import time
from collections import OrderedDict
from typing import Any, BinaryIO

from rollouts.templating import SAMPLE_SITE, AppFacts, TemplateProblem, TemplateSet, site_facts

MAX_REQUEST_BYTES = 64 * 1024 * 1024
CACHE_RELEASES = 16
CACHE_CHARS = 8 * 1024 * 1024


class CpuLimit(BaseException):
    """Raised by the CPU timer. A BaseException, so no `except Exception` in a render can swallow it."""


def _on_cpu_timer(signum: int, frame: Any) -> None:
    raise CpuLimit


def _arm(cpu_seconds: float) -> None:
    signal.setitimer(signal.ITIMER_PROF, max(cpu_seconds, 0.001))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + cpu_seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)


class Releases:
    """Compiled releases by digest, least recently used first out, bounded in number and template size."""

    def __init__(self) -> None:
        self._by_digest: OrderedDict[str, tuple[TemplateSet, int]] = OrderedDict()

    def get(self, digest: str) -> TemplateSet | None:
        entry = self._by_digest.get(digest)
        if entry is None:
            return None
        self._by_digest.move_to_end(digest)
        return entry[0]

    def add(self, digest: str, material: dict[str, Any]) -> TemplateSet:
        templates = TemplateSet(
            application=AppFacts.from_json(material["application"]),
            version=str(material["version"]),
            templates=material["templates"],
            values=material["values"],
        )
        size = sum(len(text) for text in material["templates"].values())
        self._by_digest[digest] = (templates, size)
        while len(self._by_digest) > CACHE_RELEASES or (
            len(self._by_digest) > 1 and sum(s for _, s in self._by_digest.values()) > CACHE_CHARS
        ):
            self._by_digest.popitem(last=False)
        return templates


def handle(request: dict[str, Any], releases: Releases) -> tuple[dict[str, Any], bool]:
    """The answer to one request, and whether this process must end after sending it."""
    started = time.process_time()
    _arm(float(request["cpu"]))
    try:
        templates = releases.get(request["digest"])
        if templates is None:
            if request.get("material") is None:
                return {"status": "need_material"}, False
            templates = releases.add(request["digest"], request["material"])
        site = request.get("site")
        if site is None:
            rendered = templates.render_checked(site_facts(SAMPLE_SITE), sample=True)
        else:
            rendered = templates.render_checked(site)
        _disarm()
    except CpuLimit:
        return {"status": "limit", "limit": "cpu"}, True
    except MemoryError:
        return {"status": "limit", "limit": "memory"}, True
    except TemplateProblem as exc:
        return {"status": "invalid", "message": exc.message}, False
    finally:
        _disarm()
    cpu = time.process_time() - started
    return {"status": "ok", "files": rendered.files, "objects": [list(k) for k in rendered.objects], "cpu": cpu}, False


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = stream.read(4)
    if len(header) < 4:
        return None  # the parent went away
    size = int.from_bytes(header, "big")
    if size > MAX_REQUEST_BYTES:
        raise SystemExit(f"render_child: a request of {size} bytes is more than {MAX_REQUEST_BYTES}")
    body = stream.read(size)
    if len(body) < size:
        return None
    request = json.loads(body)
    if not isinstance(request, dict):
        raise SystemExit("render_child: a request must be a JSON object")
    return request


def write_frame(stream: BinaryIO, answer: dict[str, Any]) -> None:
    body = json.dumps(answer, separators=(",", ":")).encode()
    stream.write(len(body).to_bytes(4, "big") + body)
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    memory = int(argv[1]) * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)  # already limited from outside (ulimit -v, a container): stay within it
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.signal(signal.SIGPROF, _on_cpu_timer)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the parent, which ends us
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    releases = Releases()
    write_frame(stdout, {"status": "ready"})
    while True:
        request = read_frame(stdin)
        if request is None:
            return 0
        try:
            answer, stop = handle(request, releases)
        except CpuLimit:  # the timer fired between the render and disarming it
            answer, stop = {"status": "limit", "limit": "cpu"}, True
        except MemoryError:
            answer, stop = {"status": "limit", "limit": "memory"}, True
        try:
            write_frame(stdout, answer)
        except MemoryError:  # the answer itself did not fit
            write_frame(stdout, {"status": "limit", "limit": "memory"})
            return 0
        if stop:
            return 0


if __name__ == "__main__":
    sys.exit(main())
