"""`/metrics`: Prometheus text with counts by state and queue lengths, behind a token (always in production)."""

import pytest
from django.test import Client

from sites.choices import NodeState
from tests.factories import NodeFactory

pytestmark = pytest.mark.django_db


@pytest.mark.integration
def test_metrics_count_nodes_by_state_and_show_queues(redis_url: str, settings: object) -> None:
    settings.REDIS_URL = redis_url  # type: ignore[attr-defined]
    NodeFactory.create_batch(3, state=NodeState.ACTIVE)
    NodeFactory(state=NodeState.BROKEN)

    body = Client().get("/metrics").content.decode()

    assert 'edgefleet_nodes{state="active"} 3.0' in body
    assert 'edgefleet_nodes{state="broken"} 1.0' in body
    assert 'edgefleet_sites{state="active"} 4.0' in body
    assert 'edgefleet_node_health{state="not_seen"} 4.0' in body  # never probed
    assert 'edgefleet_site_health{state="offline"} 4.0' in body  # made by the factory, around the services
    assert 'edgefleet_queue_length{queue="io"}' in body


def test_metrics_token_is_enforced_when_set(settings: object) -> None:
    settings.METRICS_TOKEN = "scrape-me"  # type: ignore[attr-defined]

    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_metrics_in_production_without_a_token_stay_closed(settings: object) -> None:
    # Production refuses to start without FLEET_METRICS_TOKEN (test_settings); should that ever be bypassed:
    settings.PRODUCTION = True  # type: ignore[attr-defined]
    settings.METRICS_TOKEN = ""  # type: ignore[attr-defined]

    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics_token_comparison_survives_non_ascii_headers(settings: object) -> None:
    settings.METRICS_TOKEN = "scrape-me"  # type: ignore[attr-defined]
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer sçrape").status_code == 401
