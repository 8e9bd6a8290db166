"""Heartbeats: a registered machine says it is alive, which software it runs and which backups its site
holds (`device/heartbeat/`, docs/DEVICES.md).

A backup report is an observation from an untrusted machine. Only where the backup is (`location`), its
size and when it was taken are the machine's word, and a time in the future is refused (it would make
that backup "the latest" forever). What restores it (the image), and where (the namespace), comes from
the application's record through sites.rehydration: a reported `restore_image` is ignored, the namespace
is replaced by the application's, and a backup of an application that has no restore target is not kept.
"""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from fleet.errors import Invalid
from sites import health_records, rehydration
from sites.models import Backup, Node, NodeCredential, Site

MAX_BACKUPS_PER_HEARTBEAT = 100
# A machine's clock may run a little ahead; a backup "taken" later than this is refused.
MAX_BACKUP_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class BackupReport:
    """One backup as the edge reports it in a heartbeat (`restore_image` is accepted and ignored)."""

    application: str
    namespace: str
    taken_at: dt.datetime
    location: str
    size: int
    restore_image: str = ""


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat recorded: the node as now seen, and the reported backups that were not kept
    (application -> why), so the machine's operators can tell a misconfigured application from a lost one."""

    node: Node
    backups_kept: int = 0
    backups_ignored: dict[str, str] = field(default_factory=dict)


def latest_acceptable_taken_at(now: dt.datetime) -> dt.datetime:
    """The latest `taken_at` a backup may claim at `now` (checked on report and again on restore)."""
    return now + MAX_BACKUP_CLOCK_SKEW


def device_heartbeat(
    *,
    credential: NodeCredential,
    versions: dict[str, str] | None,
    backups: list[BackupReport],
    now: dt.datetime | None = None,
) -> Heartbeat:
    """Record that a machine is alive, its software versions and the backups its site holds.

    Called ~300 times a second at fleet scale, so it is a fixed handful of queries and one upsert,
    whatever the number of backups, and not audited (it is an observation, not a change). A machine
    recorded as not seen also gets its health (and its site's) decided again: rare, a few queries more.
    Raises Invalid (and records nothing) for too many backups or one taken in the future.
    """
    if len(backups) > MAX_BACKUPS_PER_HEARTBEAT:
        raise Invalid(f"at most {MAX_BACKUPS_PER_HEARTBEAT} backups per heartbeat", field="backups")
    now = now or timezone.now()
    latest = latest_acceptable_taken_at(now)
    for index, report in enumerate(backups):
        if report.taken_at > latest:
            raise Invalid(
                f"backups: {index}: taken_at {report.taken_at.isoformat()} is in the future "
                f"(server time {now.isoformat()})",
                field="backups",
            )
    node = credential.node
    node_fields: dict[str, Any] = {"last_seen_at": now, "last_heartbeat_at": now}
    if versions is not None:
        node_fields["versions"] = versions
    # Last report wins for a repeated (application, location) in one body; PostgreSQL refuses to upsert
    # the same row twice in one statement.
    unique = {(b.application, b.location): b for b in backups}
    targets = rehydration.restore_targets({application for application, _location in unique})
    kept = [
        Backup(
            site_id=node.site_id,
            reported_by=node,
            reported_at=now,
            application=report.application,
            namespace=targets[report.application].namespace,  # the application's, whatever was reported
            taken_at=report.taken_at,
            location=report.location,
            size=report.size,
        )
        for report in unique.values()
        if report.application in targets
    ]
    ignored = {
        report.application: "no restore target: not a stateful application with a restore image"
        for report in unique.values()
        if report.application not in targets
    }
    with transaction.atomic():
        NodeCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
        Node.objects.filter(pk=node.pk).update(**node_fields)
        Site.objects.filter(pk=node.site_id).update(last_heartbeat_at=now)
        if kept:
            Backup.objects.bulk_create(
                kept,
                update_conflicts=True,
                unique_fields=["site", "application", "location"],
                update_fields=["namespace", "taken_at", "size", "reported_by", "reported_at"],
            )
    for key, value in node_fields.items():
        setattr(node, key, value)
    # A machine recorded as not seen is alive after all: its health says so before the next probe. Checked
    # on the row already loaded, so the common heartbeat costs no query for it.
    health_records.node_heard_from(node=node, now=now)
    return Heartbeat(node=node, backups_kept=len(kept), backups_ignored=ignored)
