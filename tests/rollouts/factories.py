"""factory_boy factories for the rollouts models."""

import datetime as dt

import factory

from rollouts.models import Application, Release, Rollout, RolloutPlan

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ release.application }}-config
  namespace: {{ release.namespace }}
data:
  site: "{{ site.code }}"
  region: "{{ site.region }}"
  greeting: "{{ values.greeting }}"
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ release.application }}
  namespace: {{ release.namespace }}
  labels: {app: "{{ release.application }}", version: "{{ release.version }}"}
spec:
  replicas: {{ values.replicas }}
  selector: {matchLabels: {app: "{{ release.application }}"}}
  template:
    metadata: {labels: {app: "{{ release.application }}"}}
    spec:
      containers:
        - name: app
          image: "registry.example.com/{{ release.application }}:{{ release.version }}"
"""

TEMPLATES = {"configmap.yaml": CONFIGMAP, "deployment.yaml": DEPLOYMENT}
VALUES = {"greeting": "hello", "replicas": 1}


class ApplicationFactory(factory.django.DjangoModelFactory[Application]):
    class Meta:
        model = Application

    name = factory.Sequence(lambda n: f"app{n}")
    team = "platform"
    namespace = factory.LazyAttribute(lambda a: a.name)


class ReleaseFactory(factory.django.DjangoModelFactory[Release]):
    class Meta:
        model = Release

    application = factory.SubFactory(ApplicationFactory)
    version = factory.Sequence(lambda n: f"1.{n}.0")
    templates = factory.LazyFunction(lambda: dict(TEMPLATES))
    values = factory.LazyFunction(lambda: dict(VALUES))


class RolloutPlanFactory(factory.django.DjangoModelFactory[RolloutPlan]):
    class Meta:
        model = RolloutPlan

    name = factory.Sequence(lambda n: f"plan-{n}")
    release = factory.SubFactory(ReleaseFactory)
    target = factory.LazyFunction(lambda: {"all": True})
    waves = factory.LazyFunction(lambda: [{"percent": 10}, {"percent": 100}])
    max_parallel = 5
    failure_threshold = factory.LazyFunction(lambda: {"count": 0})
    respect_windows = False


def fleet_rollout(sites: int, *, prefix: str = "BIG") -> Rollout:
    """A rollout of `sites` new sites in three waves (10%, 30%, the rest) caught mid-way, built with bulk
    inserts (the page's query bound and bench/rollout_page.py): the first wave done (a few failed),
    the second in flight (syncing, verifying, committing, unreachable), the third pending; counters
    made exact by rollouts.services.rollout_recount."""
    from django.utils import timezone

    from rollouts import services
    from rollouts.models import RolloutWave, SiteRollout
    from sites.choices import SiteState
    from sites.models import Site

    now = timezone.now()
    Site.objects.bulk_create(
        [
            Site(code=f"{prefix}-{i:05d}", name=f"Restaurant {i}", region="eu", timezone="UTC", state=SiteState.ACTIVE)
            for i in range(sites)
        ],
        batch_size=1000,
    )
    rows = list(Site.objects.filter(code__startswith=f"{prefix}-").order_by("code"))
    plan = RolloutPlanFactory(
        waves=[{"name": "canary", "percent": 10}, {"name": "early", "percent": 40}, {"name": "rest", "percent": 100}],
        bake_seconds=600,
    )
    rollout = Rollout.objects.create(
        plan=plan,
        release=plan.release,
        state="running",
        current_wave=1,
        started_by_name="system:test",
        started_at=now - dt.timedelta(minutes=30),
        plan_snapshot={
            "max_parallel": 50,
            "bake_seconds": 600,
            "failure_threshold": {"percent": 10},
            "waves": plan.waves,
        },
    )
    bounds = [0, sites // 10, sites * 4 // 10, sites]
    RolloutWave.objects.bulk_create(
        [
            RolloutWave(
                rollout=rollout,
                index=i,
                name=name,
                size=bounds[i + 1] - bounds[i],
                state=("closed", "open", "pending")[i],
                opened_at=now - dt.timedelta(minutes=30 - 10 * i) if i < 2 else None,
                closed_at=now - dt.timedelta(minutes=15) if i == 0 else None,
                bake_until=now - dt.timedelta(minutes=5) if i == 0 else None,
            )
            for i, name in enumerate(["canary", "early", "rest"])
        ]
    )
    waves = list(RolloutWave.objects.filter(rollout=rollout).order_by("index"))
    in_flight = ["syncing", "verifying", "committing", "unreachable", "succeeded"]
    site_rows = []
    for position, site in enumerate(rows):
        index = next(i for i in range(3) if position < bounds[i + 1])
        if index == 0:
            state = "failed" if position % 25 == 0 else "succeeded"
        elif index == 1:
            state = in_flight[position % len(in_flight)]
        else:
            state = "pending"
        started = now - dt.timedelta(minutes=20) if state != "pending" else None
        site_rows.append(
            SiteRollout(
                rollout=rollout,
                wave=waves[index],
                site=site,
                position=position,
                state=state,
                started_at=started,
                finished_at=now if state in ("failed", "succeeded") else None,
                unreachable_since=now - dt.timedelta(minutes=3) if state == "unreachable" else None,
                error="deployment app: ImagePullBackOff" if state == "failed" else "",
            )
        )
    SiteRollout.objects.bulk_create(site_rows, batch_size=1000)
    services.rollout_recount(rollout=rollout)
    rollout.refresh_from_db()
    return rollout
