"""`node.replace` (throw-away): take the broken machine out of the cluster, revoke it, pre-register the
replacement, await it as long as shipping takes, join it, re-hydrate every stateful application from
its latest backup, verify the site, retire the old machine."""

import datetime as dt
from typing import Any

from django.db import transaction

from fleet.audit.choices import Source
from fleet.audit.services import audit_record
from fleet.errors import FleetError
from fleet.workflows import Done, Fail, Outcome, Wait, Workflow, WorkflowRun, register
from sites import devices, rehydration, selectors, services
from sites.choices import REPLACE_KIND, NodeState
from sites.models import Node, NodeCredential
from sites.workflows.common import (
    ACTION_LABEL,
    NODE_ID_LABEL,
    actor_of,
    cluster_of,
    db_step,
    find_node,
    io_step,
    joining_steps,
    node_name,
    now,
    parse_at,
    poll,
    replacement_node,
    site_step,
    slug,
    subject_node,
    the_replacement,
    transition,
)

REPLACE = REPLACE_KIND
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
# A restore Job runs an application team's image on a fresh, Ready, untainted replacement, pinned by
# nodeName: it needs no toleration, so it gets none.
RESTORE_TOLERATIONS: list[dict[str, str]] = []


@site_step
def replace_mark_broken(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = subject_node(run)
    if node.state in (NodeState.BROKEN, NodeState.RETIRED):
        return Done()
    transition(run, node, NodeState.BROKEN, f"being replaced: {ctx.get('reason', '')}")
    return Done()


@site_step
def replace_remove_from_cluster(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Cordon the old machine if it answers; a NotReady one is tainted out-of-service (so its pods move)
    and its Node object deleted. Its name is freed too when the replacement takes it over."""
    node = subject_node(run)
    cluster = cluster_of(node)
    found = find_node(cluster, node)
    if found is None:
        return Done({"old_node": "not in the cluster"})
    if not found.unschedulable:
        cluster.cordon(found.name)
    if found.ready is True and ctx.get("hostname") != found.name:
        return Done({"old_node": "cordoned"})
    if found.ready is not True:
        cluster.taint(found.name, key=OUT_OF_SERVICE_TAINT, value="nodeshutdown", effect="NoExecute")
    cluster.delete_node(found.name)
    return Done({"old_node": "deleted" if found.ready is not True else "deleted (name reused)"})


@site_step
def replace_revoke(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = subject_node(run)
    count = devices.node_credentials_revoke(
        node=node, actor=actor_of(run), source=Source.WORKFLOW, reason=f"replaced: {ctx.get('reason', '')}"
    )
    return Done({"credentials_revoked": count})


@site_step
def replace_record(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Pre-register the replacement's serial at the same site. Reusing the old hostname needs the old
    record retired first (hostnames are unique among a site's live machines)."""
    old = subject_node(run)
    serial = str(ctx["replacement_serial"])
    existing = Node.objects.filter(serial=serial).first()
    if existing is not None:
        if existing.pk == ctx.get("replacement_node_id") or (
            existing.site_id == old.site_id and existing.created_at >= run.created_at
        ):
            return Done({"replacement_node_id": existing.pk})  # created by an earlier attempt of this step
        return Fail(f"serial {serial} is already in use by node {existing.hostname} at {existing.site.code}")
    hostname = str(ctx.get("hostname") or old.hostname)
    try:
        with transaction.atomic():
            if hostname == old.hostname and old.state != NodeState.RETIRED:
                transition(run, old, NodeState.RETIRED, f"replaced by {serial} (shipment {ctx.get('shipment_ref')})")
            new = services.node_create(
                actor=actor_of(run),
                source=Source.WORKFLOW,
                serial=serial,
                site=old.site,
                hostname=hostname,
                mac=str(ctx["replacement_mac"]),
                role=str(ctx.get("role") or old.role),
                hardware_model=old.hardware_model,
            )
            audit_record(
                actor=actor_of(run),
                verb="record_replacement",
                obj=old,
                source=Source.WORKFLOW,
                payload={"replacement_serial": serial, "shipment_ref": ctx.get("shipment_ref", ""), "node": new.pk},
            )
    except FleetError as exc:
        return Fail(f"cannot record the replacement: {exc.message}")
    return Done({"replacement_node_id": new.pk})


@site_step
def replace_rehydrate(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Restore each application's latest reported backup onto the replacement, with a Job pinned to it.

    Which applications are restored, with which image and in which namespace, is the applications' own
    record (sites.rehydration: the rollouts app's restore targets), read when the plan is made and again
    when each Job is created; the edge only said where the backups are. The plan (which backup of which
    application) is fixed at the first pass, so a newer backup arriving meanwhile does not change it.
    """
    new = replacement_node(ctx)
    if "restores" not in ctx:
        backups = selectors.latest_backups(new.site)
        if not backups and not _has_reported(new):
            # Nothing known yet for this site (e.g. its only other machine died before reporting): the
            # replacement's first heartbeat carries the site's backup list. Wait for it, briefly.
            until = parse_at(ctx.get("report_wait_until")) or now() + dt.timedelta(seconds=10 * poll(ctx))
            ctx["report_wait_until"] = until.isoformat()
            if now() < until:
                return Wait(
                    poll(ctx), f"no backups known for {new.site.code} yet; waiting for {new.hostname} to report"
                )
        backups = selectors.latest_backups(new.site)
        targets = rehydration.restore_targets(list(backups))
        ctx["restores"] = {
            app: {
                "job": f"edgefleet-restore-{slug(app)}-{run.pk}",
                "namespace": targets[app].namespace,
                "location": backup.location,
            }
            for app, backup in backups.items()
            if app in targets
        }
        ctx["not_restorable"] = sorted(set(backups) - set(targets))
    restores: dict[str, dict[str, str]] = ctx["restores"]
    skipped = list(ctx.get("not_restorable") or [])
    if not restores:
        return Done({"restored": [], "not_restorable": skipped})
    cluster = cluster_of(new)
    current = rehydration.restore_targets(list(restores))  # read again at use: the record may have changed
    pending, failed = [], []
    for app, plan in sorted(restores.items()):
        status = cluster.job(plan["namespace"], plan["job"])
        if status is None:
            target = current.get(app)
            if target is None:
                skipped.append(app)  # no longer stateful with a restore image: nothing trusted to run
                continue
            plan["namespace"] = target.namespace
            cluster.ensure_namespace(target.namespace)
            cluster.create_job(
                namespace=target.namespace,
                name=plan["job"],
                node=node_name(ctx, new),
                image=target.image,
                env={
                    "BACKUP_LOCATION": plan["location"],
                    "BACKUP_APPLICATION": app,
                    "BACKUP_NAMESPACE": target.namespace,
                },
                labels={ACTION_LABEL: "restore", NODE_ID_LABEL: str(new.pk), "edgefleet.io/application": slug(app)},
                tolerations=RESTORE_TOLERATIONS,
            )
            pending.append(f"{app} (started)")
        elif status.failed_for_good:
            failed.append(f"{app}: {status.message}")
        elif not status.complete:
            pending.append(f"{app} (running)")
    if failed:
        return Fail(f"restore failed: {'; '.join(failed)}")
    if pending:
        return Wait(poll(ctx), f"restoring {len(pending)} of {len(restores)} application(s): {', '.join(pending)}")
    restored = sorted(app for app in restores if app not in skipped)
    return Done({"restored": restored, "not_restorable": sorted(set(skipped))})


def _has_reported(node: Node) -> bool:
    """Whether the machine has heartbeated with its current credential (a heartbeat reports backups)."""
    return NodeCredential.objects.filter(node=node, revoked_at=None, last_used_at__isnull=False).exists()


@site_step
def replace_verify_site(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    new, old = replacement_node(ctx), subject_node(run)
    nodes = cluster_of(new).nodes()
    old_name = old.hostname if old.hostname != new.hostname else None
    not_ready = [n.name for n in nodes if n.ready is not True and n.name != old_name]
    if not any(n.name == node_name(ctx, new) for n in nodes):
        not_ready.append(f"{new.hostname} (missing)")
    if not_ready:
        return Wait(poll(ctx), f"site {new.site.code} not healthy yet: not Ready: {', '.join(not_ready)}")
    return Done({"site_nodes_ready": len(nodes)})


@site_step
def replace_finish(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    new, old = replacement_node(ctx), subject_node(run)
    if old.state != NodeState.RETIRED and old.hostname != new.hostname:
        cluster_of(old).delete_node(old.hostname)  # a cordoned old machine leaves the cluster now
    transition(run, new, NodeState.ACTIVE, f"replaced {old.serial}; re-hydrated")
    transition(run, old, NodeState.RETIRED, f"replaced by {new.serial} (shipment {ctx.get('shipment_ref', '')})")
    return Done()


REPLACE_WORKFLOW = register(
    Workflow(
        kind=REPLACE,
        steps=[
            db_step("mark_broken", replace_mark_broken),
            io_step("remove_from_cluster", replace_remove_from_cluster),
            db_step("revoke_credentials", replace_revoke),
            db_step("record_replacement", replace_record),
            *joining_steps(the_replacement),
            io_step("rehydrate", replace_rehydrate),
            io_step("verify_site", replace_verify_site),
            io_step("finish", replace_finish),
        ],
        deadline=dt.timedelta(days=30),
        exclusive=True,
        description="throw-away: out of the cluster, revoke, ship a replacement, join, re-hydrate, retire",
    )
)
