"""What a rollout of a K3s release (the platform's `k3s` application, rollouts.k3s) may not do, checked
when its plan is saved and when it starts, each a 400 naming the field:

- `version` (of the release): a K3s version, like v1.31.4+k3s1; `templates`: its Plans run only the image
  rancher/k3s-upgrade (the upgrade Jobs are privileged on every machine);
- `release`: no targeted site may skip a minor version (K3s upgrades one minor at a time) or go back to an
  older version (K3s is not downgraded), as sites.k3s_versions.upgrade_problem says, from the versions the
  probes recorded;
- `auto_rollback`: a K3s upgrade is never reverted; a failure halts the rollout and leaves the failed site
  cordoned for a person (docs/OPERATIONS.md).
"""

import re
from typing import Any

from fleet.errors import Invalid
from sites.k3s_versions import K3sVersion, upgrade_problem
from sites.models import Cluster, Site

APPLICATION = "k3s"
UPGRADE_IMAGE = "rancher/k3s-upgrade"
_IMAGE_RE = re.compile(r"^\s*-?\s*image:\s*(.+?)\s*$", re.MULTILINE)
_ALLOWED_IMAGE_RE = re.compile(r"^rancher/k3s-upgrade(:[A-Za-z0-9._+-]+)?$")
# How many refused sites an error names before "and N more".
_NAMED = 5


def is_k3s(application: Any) -> bool:
    return getattr(application, "name", None) == APPLICATION


def check_release(application: Any, version: str, templates: Any) -> None:
    """A K3s release is a K3s version, and its Plans run only the K3s upgrade image: the upgrade Jobs are
    privileged with the host's root mounted, on every machine of the fleet, so no other image is accepted
    (written literally: an image from a value or an expression is refused too)."""
    if not is_k3s(application):
        return
    if K3sVersion.parse(version) is None:
        raise Invalid(f"{version!r} is not a K3s version (like v1.31.4+k3s1)", field="version")
    for path, text in (templates or {}).items() if isinstance(templates, dict) else ():
        for image in _IMAGE_RE.findall(str(text)):
            if not _ALLOWED_IMAGE_RE.match(image.strip().strip("\"'")):
                raise Invalid(
                    f"{path}: image {image.strip()!r} is not allowed in a K3s release: its Plans run only "
                    f"{UPGRADE_IMAGE} (privileged, on every machine)",
                    field="templates",
                )


def check_plan(*, release: Any, auto_rollback: bool, sites: list[Site] | None) -> None:
    """Refuse a plan of a K3s release that would roll back, or skip a minor version at any of `sites`."""
    if not is_k3s(release.application):
        return
    if auto_rollback:
        raise Invalid(
            "a K3s upgrade is not rolled back (K3s does not downgrade safely): a failure halts the rollout "
            "and leaves the site cordoned for a person; turn auto_rollback off",
            field="auto_rollback",
        )
    if sites is None:
        return
    versions = dict(Cluster.objects.filter(site__in=[s.pk for s in sites]).values_list("site_id", "k3s_version"))
    refused = []
    for site in sites:
        problem = upgrade_problem(versions.get(site.pk, ""), release.version)
        if problem:
            refused.append(f"{site.code}: {problem}")
    if refused:
        more = f"; and {len(refused) - _NAMED} more" if len(refused) > _NAMED else ""
        raise Invalid(
            f"K3s {release.version} cannot go to {len(refused)} of the targeted sites: "
            + "; ".join(refused[:_NAMED])
            + more,
            field="release",
        )
