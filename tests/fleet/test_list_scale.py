"""What keeps the lists' cost per page flat as the fleet grows (bench/pages.py measures it at 3000 and 30000
sites): the admin's by-value filters read their choices from the column's index and offer what Django's own
filter offered, the API's multiple-choice filters on a row's own column add no DISTINCT, and the search box
has an index for every way it matches on PostgreSQL."""

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from fleet.admin_filters import distinct_values
from fleet.console.search import search
from sites.labels import LabelSelector
from sites.models import Node, Site
from sites.selectors import sites_matching
from tests.console.fleet_data import make_fleet

pytestmark = pytest.mark.django_db


def test_the_indexed_choices_are_djangos_distinct_values_in_the_same_order() -> None:
    make_fleet(6, 12)
    Site.objects.filter(code="GN-00002").update(region="")
    Node.objects.filter(pk__in=Node.objects.order_by("pk").values("pk")[:3]).update(hardware_model="NUC 13 Pro")

    for model, name in ((Site, "region"), (Site, "timezone"), (Node, "hardware_model")):
        field = model._meta.get_field(name)
        expected = list(model.objects.distinct().order_by(name).values_list(name, flat=True))
        assert distinct_values(model, field) == expected, name


def test_the_admin_lists_offer_every_region_and_model_without_reading_every_row(admin_user: Any) -> None:
    make_fleet(9, 18)
    Node.objects.filter(pk=Node.objects.order_by("pk").first().pk).update(hardware_model="NUC 13 Pro")  # type: ignore[union-attr]
    client = Client()
    client.force_login(admin_user)

    with CaptureQueriesContext(connection) as captured:
        nodes = client.get("/admin/sites/node/").content.decode()
    sites = client.get("/admin/sites/site/").content.decode()

    assert "?site__region=eu-west" in nodes and "?site__region=us-south" in nodes
    assert "?hardware_model=NUC+13+Pro" in nodes
    assert "?region=us-west" in sites and "?timezone=Europe%2FParis" in sites
    assert not [q["sql"] for q in captured.captured_queries if "SELECT DISTINCT" in q["sql"]]
    assert client.get("/admin/sites/node/?site__region=eu-west").status_code == 200


def test_a_multiple_choice_filter_on_the_rows_own_column_adds_no_distinct(admin_api: APIClient) -> None:
    make_fleet(20, 20)

    with CaptureQueriesContext(connection) as captured:
        body = admin_api.get("/api/v1/sites/?health=unreachable&health=offline").json()

    assert sorted(s["code"] for s in body["results"]) == ["GN-00008", "GN-00009", "GN-00018", "GN-00019"]
    assert not [q["sql"] for q in captured.captured_queries if "DISTINCT" in q["sql"]]
    rollout = admin_api.get("/api/v1/rollouts/").json()["results"][0]["id"]
    failed = admin_api.get(f"/api/v1/rollouts/{rollout}/sites/?state=failed").json()["results"]
    assert [s["site"] for s in failed] == ["GN-00000"]  # the canary wave's first site, as fleet_data plans it


def test_the_search_box_can_answer_from_the_trigram_indexes_on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's (sites/migrations/0010)")
    make_fleet(3, 3)
    with CaptureQueriesContext(connection) as captured:
        search("Lyon", kinds=frozenset({"site", "node"}))
    searches = [q["sql"] for q in captured.captured_queries if "LIKE" in q["sql"]]

    with connection.cursor() as cursor:
        # A table of 3 rows would be read whole anyway: ask what the plan is when reading it is not an option.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        for sql in searches:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            # Without an index for one arm of the OR the table would be read whole whatever the setting.
            assert "Seq Scan" not in plan, plan
            assert "_trgm" in plan, plan
    assert len(searches) == 2


def test_a_label_selector_reads_as_containment_on_postgresql_and_matches_alike() -> None:
    make_fleet(12, 12)
    selector = "tier=1,city in (Lyon,Austin),!legacy"

    found = sites_matching(selector)

    expected = [s.code for s in Site.objects.order_by("code") if LabelSelector.parse(selector).matches(s.labels)]
    assert [s.code for s in found.order_by("code")] == expected and expected
    if connection.vendor == "postgresql":  # estimated from the column's statistics (sites/labels.py)
        assert "@>" in str(found.query)
