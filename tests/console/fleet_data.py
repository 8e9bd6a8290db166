"""A generated fleet for the console's page tests and bench/pages.py: sites in every health, nodes in every
health and state, open alerts, failed and waiting runs, and an active rollout over every site in waves.

Rows are written with bulk_create (3000 sites and 10000 nodes in a few seconds); the pages read them as
they would read the probe's and the services' writes.
"""

import datetime as dt

from django.utils import timezone

from fleet.workflows.models import StepRun, WorkflowRun
from rollouts.choices import RolloutState, SiteRolloutState, WaveState
from rollouts.models import Application, Release, Rollout, RolloutPlan, RolloutWave, SiteRollout
from sites.choices import AlertKind, NodeHealth, NodeRole, NodeState, SiteHealth, SiteState
from sites.models import Alert, Backup, BootstrapToken, Cluster, Node, NodeCredential, Site

SITE_HEALTHS = [SiteHealth.HEALTHY] * 7 + [SiteHealth.DEGRADED, SiteHealth.UNREACHABLE, SiteHealth.OFFLINE]
NODE_HEALTHS = [NodeHealth.READY] * 8 + [NodeHealth.NOT_READY, NodeHealth.NOT_SEEN]
BATCH = 1000


def make_fleet(sites: int, nodes: int, *, prefix: str = "GN") -> list[Site]:
    """`sites` sites with `nodes` nodes spread over them, one rollout over all of them in three waves."""
    now = timezone.now()
    rows = [
        Site(
            code=f"{prefix}-{i:05d}",
            name=f"Restaurant {i} Springfield",
            region=("us-south", "us-west", "eu-west")[i % 3],
            timezone=("America/Chicago", "America/Los_Angeles", "Europe/Paris")[i % 3],
            labels={"city": ("Austin", "Fresno", "Lyon")[i % 3], "tier": str(i % 2)},
            state=SiteState.ACTIVE,
            health=SITE_HEALTHS[i % len(SITE_HEALTHS)],
            health_since=now - dt.timedelta(minutes=i % 50),
            health_reason="" if i % 10 < 7 else f"node nuc-{i} not seen since 14:02",
            drifted_since=now if i % 13 == 0 else None,
            last_heartbeat_at=now,
        )
        for i in range(sites)
    ]
    created = Site.objects.bulk_create(rows, batch_size=BATCH)
    created = list(Site.objects.filter(code__startswith=f"{prefix}-").order_by("code"))
    Cluster.objects.bulk_create(
        [Cluster(site=site, api_url=f"https://10.0.{i // 250}.{i % 250}:6443") for i, site in enumerate(created)],
        batch_size=BATCH,
    )
    node_rows = [
        Node(
            serial=f"{prefix}SN{j:06d}",
            hostname=f"nuc-{j}",
            mac=f"02:00:{(j >> 16) & 255:02x}:{(j >> 8) & 255:02x}:{j & 255:02x}:01",
            role=NodeRole.SERVER if j < sites else NodeRole.AGENT,
            site=created[j % sites],
            state=NodeState.ACTIVE,
            health=NODE_HEALTHS[j % len(NODE_HEALTHS)],
            health_since=now,
            last_seen_at=now,
        )
        for j in range(nodes)
    ]
    Node.objects.bulk_create(node_rows, batch_size=BATCH)
    down = list(Node.objects.filter(site__in=created[:50], health=NodeHealth.NOT_SEEN)[:20])
    Alert.objects.bulk_create(
        [Alert(kind=AlertKind.NODE_DOWN, site_id=n.site_id, node=n, message="down", opened_at=now) for n in down]
    )
    _device_rows(created, now, prefix)
    _runs(created, now)
    _rollout(created, now, prefix)
    return created


def _device_rows(sites: list[Site], now: dt.datetime, prefix: str) -> None:
    """A credential per machine, a bootstrap token and a backup per site: the device API's lists."""
    nodes = list(Node.objects.filter(site__in=sites).only("id", "site_id"))
    NodeCredential.objects.bulk_create(
        [NodeCredential(node_id=n.pk, prefix=f"nc{n.pk}", token_hash=f"{prefix}-nc-{n.pk}") for n in nodes],
        batch_size=BATCH,
    )
    BootstrapToken.objects.bulk_create(
        [
            BootstrapToken(site=s, prefix=f"bt{s.pk}", token_hash=f"{prefix}-bt-{s.pk}", expires_at=now, serials=[])
            for s in sites
        ],
        batch_size=BATCH,
    )
    Backup.objects.bulk_create(
        [
            Backup(
                site=s,
                application="pos",
                namespace="pos",
                taken_at=now,
                location=f"s3://b/{s.code}",
                size=1,
                reported_at=now,
            )
            for s in sites
        ],
        batch_size=BATCH,
    )


def _runs(sites: list[Site], now: dt.datetime) -> None:
    node = Node.objects.filter(site=sites[0]).first()
    waits = {
        "await_checkin": "waiting for the machine",
        "drain": "1 pod(s) blocked by a PodDisruptionBudget: pos/db-0 (budget allows 0); waiting",
        "cordon": "evicted 2 pod(s): pos/web-1, pos/web-2",
    }
    for state, step in (("failed", "drain"), ("waiting", "await_checkin"), ("waiting", "drain"), ("waiting", "cordon")):
        run = WorkflowRun.objects.create(
            kind="node.replace" if step == "await_checkin" else "node.wipe",
            subject_type="sites.node",
            subject_id=str(node.pk) if node else "",
            subject_repr=str(node),
            state=state,
            current_step=step,
            error="drain blocked" if state == "failed" else "",
            finished_at=now if state == "failed" else None,
        )
        StepRun.objects.create(run=run, step=step, state="waiting", message=waits[step], polls=3)


def _rollout(sites: list[Site], now: dt.datetime, prefix: str) -> None:
    app = Application.objects.create(name=f"pos-{prefix.lower()}", team="pos", namespace="pos")
    release = Release.objects.create(application=app, version="1.2.3", templates={"a.yaml": "kind: ConfigMap"})
    plan = RolloutPlan.objects.create(name=f"pos everywhere {prefix}", release=release, bake_seconds=300)
    rollout = Rollout.objects.create(
        plan=plan, release=release, state=RolloutState.RUNNING, current_wave=1, started_at=now, state_changed_at=now
    )
    cut = [0, max(len(sites) // 10, 1), len(sites) // 2, len(sites)]
    position = 0
    for index in range(3):
        members = sites[cut[index] : cut[index + 1]]
        wave = RolloutWave.objects.create(
            rollout=rollout,
            index=index,
            name=("canary", "early", "rest")[index],
            size=len(members),
            state=(WaveState.CLOSED, WaveState.OPEN, WaveState.PENDING)[index],
            opened_at=now if index < 2 else None,
        )
        states = []
        for i in range(len(members)):
            if index == 0:
                state = SiteRolloutState.SUCCEEDED if i % 20 else SiteRolloutState.FAILED
            elif index == 1:
                state = (SiteRolloutState.SUCCEEDED, SiteRolloutState.SYNCING, SiteRolloutState.PENDING)[i % 3]
            else:
                state = SiteRolloutState.PENDING
            states.append(state)
            position += 1
        SiteRollout.objects.bulk_create(
            [
                SiteRollout(
                    rollout=rollout,
                    wave=wave,
                    site=site,
                    position=position + i,
                    state=state,
                    revision="3f9c2e1" if state == SiteRolloutState.SUCCEEDED else "",
                    error="the edge reports: pods crash-looping" if state == SiteRolloutState.FAILED else "",
                    finished_at=now if state in (SiteRolloutState.SUCCEEDED, SiteRolloutState.FAILED) else None,
                )
                for i, (site, state) in enumerate(zip(members, states, strict=True))
            ],
            batch_size=BATCH,
        )
        counts: dict[str, int] = {}
        for state in states:
            counts[f"n_{state}"] = counts.get(f"n_{state}", 0) + 1
        RolloutWave.objects.filter(pk=wave.pk).update(**counts)
