"""The yes/no list filters on an empty or set time (sites.admin.filters.NullFilter): drift on the site list,
open on the alert list. Each choice shows the rows it names and not the others."""

import pytest
from django.test import Client
from django.utils import timezone

from sites.choices import AlertKind
from sites.models import Alert
from tests.factories import NodeFactory, SiteFactory

pytestmark = pytest.mark.django_db


def test_the_drift_filter_tells_drifted_sites_from_those_in_sync(staff: Client) -> None:
    SiteFactory(code="TX-0001", drifted_since=timezone.now())
    SiteFactory(code="TX-0002", drifted_since=None)

    drifted = staff.get("/admin/sites/site/", {"drift": "yes"}).content.decode()
    in_sync = staff.get("/admin/sites/site/", {"drift": "no"}).content.decode()

    assert "TX-0001" in drifted and "TX-0002" not in drifted
    assert "TX-0002" in in_sync and "TX-0001" not in in_sync


def test_the_open_filter_tells_open_alerts_from_resolved_ones(staff: Client) -> None:
    node = NodeFactory()
    now = timezone.now()
    Alert.objects.create(kind=AlertKind.NODE_DOWN, site=node.site, node=node, message="still down", opened_at=now)
    Alert.objects.create(
        kind=AlertKind.NODE_DOWN, site=node.site, node=node, message="back up", opened_at=now, resolved_at=now
    )

    open_ = staff.get("/admin/sites/alert/", {"open": "yes"}).content.decode()
    resolved = staff.get("/admin/sites/alert/", {"open": "no"}).content.decode()

    assert "still down" in open_ and "back up" not in open_
    assert "back up" in resolved and "still down" not in resolved
