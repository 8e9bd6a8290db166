"""`/metrics`: Prometheus figures computed at scrape time from the database and the broker.

Counts are a few GROUP BY queries, not a query per object, so a scrape stays cheap at 3000 sites.
When FLEET_METRICS_TOKEN is set, scrapers must send `Authorization: Bearer <token>`; production refuses to
start without one (fleet/settings/checks.py).
"""

import hmac
from collections.abc import Iterator

import redis
from django.apps import apps
from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

QUEUES = ("control", "io")


class FleetCollector(Collector):
    """Gauges by state for every model that has one, and the length of each Celery queue."""

    # (metric name, help, app label, model name, state field)
    STATE_GAUGES = (
        ("edgefleet_sites", "Sites by state", "sites", "Site", "state"),
        ("edgefleet_nodes", "Nodes by lifecycle state", "sites", "Node", "state"),
        ("edgefleet_clusters", "Clusters by reachability", "sites", "Cluster", "reachability"),
        ("edgefleet_site_health", "Sites by health (the label is the health)", "sites", "Site", "health"),
        ("edgefleet_node_health", "Nodes by health (the label is the health)", "sites", "Node", "health"),
        ("edgefleet_workflow_runs", "Workflow runs by state", "workflows", "WorkflowRun", "state"),
        ("edgefleet_rollouts", "Rollouts by state", "rollouts", "Rollout", "state"),
        ("edgefleet_site_rollouts", "Site rollouts by state", "rollouts", "SiteRollout", "state"),
    )

    def collect(self) -> Iterator[Metric]:
        for name, help_text, app_label, model_name, field in self.STATE_GAUGES:
            try:
                model = apps.get_model(app_label, model_name)
            except LookupError:
                continue  # that part of the system is not installed yet
            gauge = GaugeMetricFamily(name, help_text, labels=["state"])
            for row in model.objects.order_by().values(field).annotate(n=Count("pk")):
                gauge.add_metric([row[field]], row["n"])
            yield gauge
        queue = GaugeMetricFamily("edgefleet_queue_length", "Messages waiting in each Celery queue", labels=["queue"])
        try:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
            for name in QUEUES:
                queue.add_metric([name], client.llen(name))
            client.close()
        except redis.RedisError:
            pass  # an unreachable broker shows as missing queue figures (and in /healthz?deep=1)
        yield queue


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text; with FLEET_METRICS_TOKEN set (always in production) only for its bearer token."""
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token and getattr(settings, "PRODUCTION", False):
        # Settings refuse to start like this; should that check ever be bypassed, stay closed.
        return HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
    if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        return HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(FleetCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4")
