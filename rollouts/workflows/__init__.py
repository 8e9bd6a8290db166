"""The rollout workflows, registered when Django imports this package (fleet.workflows' apps.py
autodiscovers every app's `workflows`): `rollout.drive` (driver.py, one run per rollout), `rollout.site`
(site.py, one run per site of it) and `rollout.site_rollback` (rollback.py), with what they share
(common.py) and what the converge step reads from a site (converge.py); and `rollout.dry_run`
(rollouts.dry_runs). docs/ARCHITECTURE.md ("Rollouts") tells how they work together."""

from rollouts import dry_runs  # noqa: F401  # registers rollout.dry_run
from rollouts.workflows import driver, rollback, site  # noqa: F401  # register the rollout kinds
