"""A run's timeline as people read it (the admin's run page): each step once, with its attempts; each
stretch of repeated polls as one line ("waited 2 min 30 s for the edge to apply 3f9c2e1: 73 checks");
and what the run waits for now and until when. Reads only: the rows are fleet/workflows/timeline.py's,
written by the engine. Pure apart from `run_timeline`, which reads the newest rows of one run.
"""

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone

from fleet.admin_display import duration
from fleet.workflows.choices import ACTIVE_STATES, RunState, StepState
from fleet.workflows.models import StepRun, WorkflowRun

# The newest rows shown on a run's page (a run that retried for days keeps its older rows in the API).
MAX_ROWS = 300


def wait_sentence(message: str, *, polls: int, seconds: float, ongoing: bool = False) -> str:
    """One line for a stretch of waits: `waited 2 min 30 s for the edge to apply 3f9c2e1: 73 checks`
    (`waiting 2 min 30 s so far ...` for the stretch the run is still in)."""
    checks = f"{polls} check" + ("" if polls == 1 else "s")
    waited = f"waiting {duration(seconds)} so far" if ongoing else f"waited {duration(seconds)}"
    text = message.strip()
    lower = text.lower()
    if lower.startswith("waiting for "):
        return f"{waited} for {text[len('waiting for ') :]}: {checks}"
    if lower.startswith("waiting: "):
        return f"{waited}, {text[len('waiting: ') :]}: {checks}"
    return waited + (f" ({text})" if text else "") + f": {checks}"


@dataclass(frozen=True)
class Line:
    """One row of the timeline, as a sentence."""

    attempt: int
    state: str
    text: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str = ""
    polls: int = 1


@dataclass
class StepGroup:
    """One step, once: its attempts and what came of each, in order."""

    step: str
    lines: list[Line] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len({line.attempt for line in self.lines if line.state != StepState.WAITING} or {1})

    @property
    def outcome(self) -> str:
        return self.lines[-1].state if self.lines else ""

    @property
    def started_at(self) -> dt.datetime | None:
        return next((line.started_at for line in self.lines if line.started_at), None)

    @property
    def finished_at(self) -> dt.datetime | None:
        return self.lines[-1].finished_at if self.lines else None


def line_of(row: StepRun, ongoing_at: dt.datetime | None = None) -> Line:
    """A timeline row as a sentence: a stretch of waits collapsed, anything else its message. With
    `ongoing_at`, the row is the wait the run is still in: counted up to that time."""
    if row.state == StepState.WAITING:
        end = ongoing_at or row.finished_at
        seconds = (end - row.started_at).total_seconds() if row.started_at and end else 0.0
        text = wait_sentence(row.message, polls=row.polls, seconds=seconds, ongoing=ongoing_at is not None)
    else:
        text = row.message or row.get_state_display().lower()
    return Line(row.attempt, row.state, text, row.started_at, row.finished_at, row.error, row.polls)


def group(rows: list[StepRun], *, ongoing_at: dt.datetime | None = None) -> list[StepGroup]:
    """Consecutive rows of one step are one group (a step run again after a later one failed is a new one).
    `ongoing_at`: the run still waits in its last row (counted up to then)."""
    groups: list[StepGroup] = []
    for i, row in enumerate(rows):
        if not groups or groups[-1].step != row.step:
            groups.append(StepGroup(row.step))
        groups[-1].lines.append(line_of(row, ongoing_at if i == len(rows) - 1 else None))
    return groups


def waiting_now(run: WorkflowRun, last: StepRun | None, now: dt.datetime) -> str:
    """What the run is doing or waiting for now, and until when ("" once it has ended)."""
    if run.state not in ACTIVE_STATES:
        return ""
    if run.cancel_requested:
        return f"stopping: cancel requested ({run.cancel_reason or 'no reason given'})"
    step = run.current_step or "its first step"
    if run.state == RunState.WAITING:
        what = last.message if last is not None and last.step == run.current_step and last.message else "its next check"
        when = ""
        if run.wake_at is not None:
            left = (run.wake_at - now).total_seconds()
            local = timezone.localtime(run.wake_at).strftime("%H:%M:%S %Z")
            when = f"; next check at {local}" + (f" (in {duration(left)})" if left > 0 else " (due)")
        return f"step {step} waits: {what}{when}"
    return f"step {step}, attempt {max(run.attempt, 1)}: {run.get_state_display().lower()}"


@dataclass
class Timeline:
    groups: list[StepGroup]
    now: str
    hidden: int


def run_timeline(run: WorkflowRun, now: dt.datetime | None = None) -> Timeline:
    """The newest MAX_ROWS rows of the run (two queries), grouped by step, and what it waits for now."""
    total = StepRun.objects.filter(run=run).count()
    rows = list(StepRun.objects.filter(run=run).order_by("-id")[:MAX_ROWS])[::-1]
    now = now or timezone.now()
    last = rows[-1] if rows else None
    still_waiting = run.state == RunState.WAITING and last is not None and last.state == StepState.WAITING
    groups = group(rows, ongoing_at=now if still_waiting else None)
    return Timeline(groups, waiting_now(run, last, now), total - len(rows))
