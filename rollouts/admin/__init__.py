"""Admin pages for releases and rollouts, one module per seam: the catalog (applications, releases, plans),
the rollout page (live per-wave progress, reasons, approvals, actions), and the per-site records (site
rollouts with retry and skip, drift). Importing the package registers them all."""

from rollouts.admin import catalog, rollouts, site_rollouts

__all__ = ["catalog", "rollouts", "site_rollouts"]
