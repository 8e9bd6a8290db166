"""Every write to applications, releases, plans and rollouts: admin, API, beat and the rollout workflow
call these names, so each door validates, audits and refuses alike; nothing here talks to a site. The
modules, each importing only those listed before it: `actors` (who acts, their permission and reason),
`catalog` (applications, releases), `plans` (plans, their beat schedules, the waves they make), `records`
(what the rollout workflow records: states and counters kept exact), `rollouts` (starting a rollout and
people's controls, each waking the rollout's driver run)."""

from rollouts.services.catalog import (
    APPLICATION_FIELDS,
    RELEASE_FIELDS,
    application_create,
    application_delete,
    application_update,
    release_create,
    release_delete,
    release_update,
)
from rollouts.services.plans import (
    PLAN_FIELDS,
    PLAN_SNAPSHOT_FIELDS,
    START_PLAN_TASK,
    plan_dropped_canaries,
    rollout_plan_create,
    rollout_plan_delete,
    rollout_plan_update,
    rollout_plan_waves,
)
from rollouts.services.records import (
    rollout_recount,
    rollout_transition,
    rollout_wave_close,
    rollout_wave_open,
    site_rollout_transition,
    site_rollouts_start,
    skip_not_started_sites,
)
from rollouts.services.rollouts import (
    rollout_approve,
    rollout_cancel,
    rollout_pause,
    rollout_resume,
    rollout_rollback,
    rollout_start,
)

__all__ = [
    "APPLICATION_FIELDS",
    "PLAN_FIELDS",
    "PLAN_SNAPSHOT_FIELDS",
    "RELEASE_FIELDS",
    "START_PLAN_TASK",
    "application_create",
    "application_delete",
    "application_update",
    "plan_dropped_canaries",
    "release_create",
    "release_delete",
    "release_update",
    "rollout_approve",
    "rollout_cancel",
    "rollout_pause",
    "rollout_plan_create",
    "rollout_plan_delete",
    "rollout_plan_update",
    "rollout_plan_waves",
    "rollout_recount",
    "rollout_resume",
    "rollout_rollback",
    "rollout_start",
    "rollout_transition",
    "rollout_wave_close",
    "rollout_wave_open",
    "site_rollout_transition",
    "site_rollouts_start",
    "skip_not_started_sites",
]
