"""Rendering release templates in a separate process (`render`), within a CPU-time, a memory and a
wall-clock limit per site and a wall-clock limit per release; a limit passed is fleet.errors.Invalid
(field `templates`) naming the site and the limit, a renderer that cannot start is RendererUnavailable
(503). The processes themselves are rollouts.renderer_process; the limits and why they are set so are
in docs/ARCHITECTURE.md, "Rendering in a separate process"."""

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from fleet.errors import Invalid
from rollouts.renderer_process import POOL as _POOL
from rollouts.renderer_process import Ended, Gone, RendererProcess, RendererUnavailable, TimedOut
from rollouts.templating import MAX_RENDERED_CHARS, RenderedSite, SampleSite, site_facts

__all__ = ["RenderLimits", "ReleaseBudget", "ReleaseMaterial", "RendererUnavailable", "render"]


@dataclass(frozen=True)
class RenderLimits:
    """The limits of one site's render and of one release's check (FLEET_RENDER_*)."""

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
            except Gone:
                if attempt == 1:
                    continue  # it had ended while idle (killed from outside): a new one takes the request
                raise RendererUnavailable("the renderer process ends as soon as it starts") from None
            except TimedOut:
                child.kill()
                if by_budget and budget is not None:
                    raise _release_limit(material, budget, limits, where) from None
                raise _limit(where, "time", limits) from None
            except Ended as ended:
                raise _limit(where, ended.limit, limits, detail=ended.detail) from None
            if budget is not None:
                budget.sites += 1
            return _rendered(answer, material, where, limits, child)
    raise AssertionError("unreachable")  # pragma: no cover


def _rendered(
    answer: dict[str, Any], material: ReleaseMaterial, where: str, limits: RenderLimits, child: RendererProcess
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
