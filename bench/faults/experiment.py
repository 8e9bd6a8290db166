"""One experiment's course: start a rollout of a release over the lab's fleet, wait until it is in the
middle of a wave, inject the fault (the scenario's `inject`, which returns once the fault has ended),
wait for the rollout to finish within the stated bound, and check the result from outside.

The bound after the fault: `recovery` seconds (what the control plane may need to notice: a lease, a
sweep, a back-off) plus three times what the sites left over would take at the pace measured before the
fault (so a loaded machine does not fail the experiment, a stall does).
"""

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.faults.lab import Lab, Timeout, wait_until
from bench.faults.verdict import Outcome, check_rollout, retries_of
from fleet.audit.choices import Source

APPLICATION = "pos-bridge"


@dataclass
class Shape:
    """The rollout's plan: waves, parallelism, the site deadline and the failure threshold."""

    waves: tuple[dict[str, Any], ...] = ({"name": "canary", "count": 1}, {"name": "all", "percent": 100})
    max_parallel: int = 6
    site_deadline_seconds: int = 6 * 3600
    threshold_percent: int = 100
    trigger: float = 0.25  # the fraction of sites done when the fault is injected


def application(name: str = APPLICATION) -> Any:
    """The demo application, or another of the same shape under another name and namespace."""
    from rollouts import services
    from rollouts.models import Application

    found = Application.objects.filter(name=name).first()
    if found is not None:
        return found
    namespace = "pos" if name == APPLICATION else name
    return services.application_create(
        actor="bench", source=Source.COMMAND, name=name, team="bench", namespace=namespace
    )


def templates_of(name: str) -> dict[str, str]:
    from rollouts import demo

    return {path: text.replace("pos-bridge", name) for path, text in demo.TEMPLATES.items()}


def start_rollout(version: str, shape: Shape, *, app_name: str = APPLICATION, codes: list[str] | None = None) -> Any:
    from rollouts import demo, services

    app = application(app_name)
    release = services.release_create(
        actor="bench", source=Source.COMMAND, application=app, version=version,
        templates=templates_of(app_name), values=demo.VALUES,
    )  # fmt: skip
    plan = services.rollout_plan_create(
        actor="bench", source=Source.COMMAND, name=f"faults {app_name} {version}", release=release,
        target={"sites": codes} if codes else {"all": True}, waves=list(shape.waves),
        max_parallel=shape.max_parallel, failure_threshold={"percent": shape.threshold_percent},
        bake_seconds=0, respect_windows=False, site_deadline_seconds=shape.site_deadline_seconds,
    )  # fmt: skip
    return services.rollout_start(plan=plan, actor="bench", source=Source.COMMAND)


def finished(rollout: Any) -> bool:
    rollout.refresh_from_db()
    return rollout.state in ("succeeded", "halted", "cancelled", "rolled_back")


def done(rollout: Any) -> int:
    rollout.refresh_from_db()
    return int(rollout.done)


def run(
    lab: Lab,
    outcome: Outcome,
    inject: Callable[[Lab, Any], None],
    *,
    shape: Shape | None = None,
    recovery: float = 60.0,
    version: str = "1.0.0",
) -> Any:
    """Run the rollout with the fault injected mid-wave; check it; returns the rollout."""
    shape = shape or Shape()
    started = time.monotonic()
    rollout = start_rollout(version, shape)
    trigger = max(2, int(lab.sites * shape.trigger))
    try:
        wait_until(lambda: done(rollout) >= trigger, 600, f"{trigger} sites done before the fault")
    except Timeout as exc:
        outcome.check("rollout under way before the fault", False, str(exc))
        return rollout
    before_fault = time.monotonic() - started
    pace = before_fault / max(done(rollout), 1)
    fault_at = time.monotonic()
    done_at_fault = done(rollout)
    inject(lab, rollout)
    fault_over = time.monotonic()
    remaining = lab.sites - done_at_fault
    bound = recovery + 3 * pace * remaining
    try:
        what = f"the rollout finishing after the fault (bound {bound:.0f} s)"
        after = wait_until(lambda: finished(rollout), bound, what)
        outcome.check("finished within the bound after the fault", True, f"{after:.0f} s <= {bound:.0f} s")
    except Timeout as exc:
        after = time.monotonic() - fault_over
        outcome.check("finished within the bound after the fault", False, f"{exc}; state {rollout.state}")
        # Let it finish if it will, so the rest of the checks say what became of each site.
        try:
            wait_until(lambda: finished(rollout), 300, "the rollout finishing late")
        except Timeout:
            pass
    clear = getattr(lab.sim, "clear_faults", None)
    if clear is not None:
        clear()
    halted_at = None
    if rollout.state == "halted" and rollout.state_changed_at is not None:
        halted_at = rollout.state_changed_at + dt.timedelta(seconds=2)  # commit times have whole seconds
    facts = check_rollout(
        outcome,
        rollout=rollout,
        repo_path=lab.sim.repo_path,
        kubeconfig_path=lab.sim.kubeconfig_path,
        deployment=("pos", APPLICATION),
        halted_at=halted_at,
    )
    outcome.figures.update(retries_of(rollout))
    outcome.figures.update(
        {
            "fault at": f"{fault_at - started:.0f} s ({done_at_fault} sites done)",
            "fault lasted": f"{fault_over - fault_at:.0f} s",
            "finished after fault": f"{after:.0f} s",
            "total": f"{time.monotonic() - started:.0f} s",
        }
    )
    outcome.facts = facts
    return rollout
