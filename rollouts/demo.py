"""The demo rollout (`manage.py demo_rollout`): a small sample application, `pos-bridge`, released to
every site in three waves, so a fresh `make dev` shows a rollout moving in the admin.

Idempotent: the application, the plan and the release are created once; running it again while the
demo rollout is going reports that rollout, and once it has finished it makes the next patch version
(a released version is immutable) and rolls that out.
"""

from dataclasses import dataclass

from fleet.audit.choices import Source, SystemActor
from rollouts import services
from rollouts.choices import ROLLOUT_ACTIVE_STATES
from rollouts.models import Application, Release, Rollout, RolloutPlan

APPLICATION = "pos-bridge"
PLAN = "pos-bridge demo"
ACTOR = SystemActor.DEMO

TEMPLATES = {
    "configmap.yaml": """apiVersion: v1
kind: ConfigMap
metadata:
  name: pos-bridge-config
  namespace: {{ release.namespace }}
data:
  site: "{{ site.code }}"
  region: "{{ site.region }}"
  version: "{{ release.version }}"
  upstream: "{{ values.upstream }}"
""",
    "deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: pos-bridge
  namespace: {{ release.namespace }}
  labels:
    app.kubernetes.io/name: pos-bridge
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: pos-bridge
  template:
    metadata:
      labels:
        app.kubernetes.io/name: pos-bridge
    spec:
      containers:
        - name: bridge
          image: registry.example.com/pos-bridge:{{ release.version }}
          env:
            - name: SITE_CODE
              value: "{{ site.code }}"
            - name: REGION
              value: "{{ site.region }}"
""",
}
VALUES = {"upstream": "https://pos.example.com"}
WAVES = [
    {"name": "canary", "count": 1},
    {"name": "early", "percent": 10},
    {"name": "everyone", "percent": 100},
]


@dataclass(frozen=True)
class DemoResult:
    rollout: Rollout
    started: bool


def demo_rollout_start(*, bake_seconds: int = 15, max_parallel: int = 10, respect_windows: bool = False) -> DemoResult:
    """Create what the demo needs (once) and start its rollout, unless one is already going."""
    application = Application.objects.filter(name=APPLICATION).first() or services.application_create(
        actor=ACTOR,
        source=Source.COMMAND,
        name=APPLICATION,
        team="payments",
        namespace="pos",
        description="demo: bridges the point-of-sale terminals to the cloud",
    )
    plan = RolloutPlan.objects.filter(name=PLAN).first()
    if plan is not None:
        going = plan.rollouts.filter(state__in=ROLLOUT_ACTIVE_STATES).order_by("-id").first()
        if going is not None:
            return DemoResult(rollout=going, started=False)
    release = _next_release(application)
    if plan is None:
        plan = services.rollout_plan_create(
            actor=ACTOR,
            source=Source.COMMAND,
            name=PLAN,
            release=release,
            target={"all": True},
            waves=WAVES,
            max_parallel=max_parallel,
            failure_threshold={"percent": 10},
            bake_seconds=bake_seconds,
            respect_windows=respect_windows,
            auto_rollback=True,
        )
    else:
        plan = services.rollout_plan_update(
            plan=plan,
            actor=ACTOR,
            source=Source.COMMAND,
            release=release,
            bake_seconds=bake_seconds,
            max_parallel=max_parallel,
            respect_windows=respect_windows,
        )
    rollout = services.rollout_start(
        plan=plan, actor=ACTOR, source=Source.COMMAND, reason="demo rollout (manage.py demo_rollout)"
    )
    return DemoResult(rollout=rollout, started=True)


def _next_release(application: Application) -> Release:
    """The newest release if no rollout used it yet, else the next patch version."""
    latest = application.releases.order_by("-created_at", "-id").first()
    if latest is not None and not latest.locked:
        return latest
    patch = application.releases.count()
    return services.release_create(
        actor=ACTOR,
        source=Source.COMMAND,
        application=application,
        version=f"1.0.{patch}",
        templates=TEMPLATES,
        values=VALUES,
    )
