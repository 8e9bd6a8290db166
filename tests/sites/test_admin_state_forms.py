"""The site and node edit forms (fleet.admin_forms.StateServiceForm): the state's help text says what a
person may do from here, and a new object's form has none."""

import pytest
from django.test import Client

from tests.factories import NodeFactory, SiteFactory

pytestmark = pytest.mark.django_db


def test_the_node_form_lists_the_states_a_person_may_set(staff: Client) -> None:
    node = NodeFactory(state="active")

    page = staff.get(f"/admin/sites/node/{node.pk}/change/").content.decode()

    assert "from active you may set: broken, cordoned;" in page
    assert "you may set" not in staff.get("/admin/sites/node/add/").content.decode()


def test_the_site_form_points_to_the_decommission_button(staff: Client) -> None:
    site = SiteFactory()

    page = staff.get(f"/admin/sites/site/{site.pk}/change/", {"edit": "1"}).content.decode()

    assert "decommissioning is the Decommission button above" in page
    assert "Decommission button" not in staff.get("/admin/sites/site/add/").content.decode()
