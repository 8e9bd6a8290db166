"""The console's pages without a browser: the dashboard as the admin home, its live fragment, the search box,
the site's 360° page, the node page's buttons, the app list's order, and every page in a bounded number
of queries whatever the size of the fleet."""

from typing import Any

import pytest
from django.test import Client

from fleet.audit.models import AuditEvent
from fleet.workflows import dispatch
from fleet.workflows.models import WorkflowRun
from sites.choices import NodeState
from sites.models import Cluster, Node, Site
from tests.console.fleet_data import make_fleet
from tests.factories import NodeFactory, SiteFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "enqueue_advance", lambda *args, **kwargs: True)


def test_dashboard_is_the_home_page_with_counts_that_link_to_filtered_lists(staff: Client) -> None:
    make_fleet(20, 40)

    page = staff.get("/admin/").content.decode()

    # 20 sites: 14 healthy, 2 of each other health (SITE_HEALTHS cycles over ten).
    assert 'href="/admin/sites/site/?health__exact=healthy">14<' in page
    assert 'href="/admin/sites/site/?health__exact=unreachable">2<' in page
    assert 'href="/admin/sites/node/?down=yes">8<' in page  # 40 nodes, one in five not ready or not seen
    down = staff.get("/admin/sites/node/", {"down": "yes"}).content.decode()
    assert down.count('class="field-hostname"') == 8
    assert "pos everywhere GN" in page and "wavebar" in page  # the active rollout, its waves as bars
    assert "early (2 of 3)" not in page and "applying" in page  # what it waits for
    assert "the replacement machine to be switched on" in page  # a run waiting for a person
    assert "blocked by a PodDisruptionBudget" in page and "evicted 2 pod(s)" not in page
    assert "pods crash-looping" in page  # the last failures
    assert 'data-live-url="/admin/console/live/"' in page


def test_dashboard_shows_the_fleets_k3s_versions_and_the_sites_behind(staff: Client, settings: Any) -> None:
    settings.FLEET_K3S_TARGET_VERSION = "v1.31.4+k3s1"
    settings.FLEET_K3S_ALLOWED_MINOR_SKEW = 1
    for version, n in (("v1.31.4+k3s1", 3), ("v1.30.8+k3s1", 2), ("v1.29.9+k3s1", 1)):
        for _ in range(n):
            Cluster.objects.filter(site=SiteFactory()).update(k3s_version=version)

    page = staff.get("/admin/").content.decode()

    assert 'href="/admin/sites/site/?k3s=behind">3<' in page  # two one minor behind, one two minors behind
    assert 'href="/admin/sites/site/?k3s=flagged">1<' in page  # only v1.29 is past the allowed skew
    assert 'href="/admin/sites/site/?k3s=v1.30.8%2Bk3s1">2<' in page
    listed = staff.get("/admin/sites/site/", {"k3s": "v1.30.8+k3s1"}).content.decode()
    assert listed.count('class="field-code"') == 2


def test_dashboard_fragment_follows_the_fleet(staff: Client) -> None:
    make_fleet(10, 10)
    before = staff.get("/admin/console/live/").content.decode()
    assert 'id="nodes-down"' in before and "<html" not in before

    Node.objects.update(health="not_seen")
    after = staff.get("/admin/console/live/").content.decode()

    assert 'href="/admin/sites/node/?health__exact=not_seen">10<' in after


def test_app_list_puts_sites_nodes_rollouts_and_runs_first_and_auth_and_beat_last(staff: Client) -> None:
    page = staff.get("/admin/").content.decode()
    order = [page.index(f'class="app-{label} module') for label in ("sites", "rollouts", "workflows", "auth")]
    assert order == sorted(order)
    assert page.index("app-django_celery_beat") > page.index("app-auth")
    assert page.index('href="/admin/sites/site/"') < page.index('href="/admin/sites/node/"')


def test_search_lands_on_the_one_match_and_lists_several(staff: Client) -> None:
    make_fleet(12, 12)
    site = Site.objects.get(code="GN-00003")
    node = Node.objects.get(serial="GNSN000005")

    assert staff.get("/admin/console/search/", {"q": "gn-00003"}).url == f"/admin/sites/site/{site.pk}/change/"
    assert staff.get("/admin/console/search/", {"q": node.mac.upper()}).url == f"/admin/sites/node/{node.pk}/change/"
    assert staff.get("/admin/console/search/", {"q": "GNSN000005"}).url == f"/admin/sites/node/{node.pk}/change/"
    rollout_url = staff.get("/admin/console/search/", {"q": "rollout 1"})
    assert rollout_url.status_code in (200, 302)
    several = staff.get("/admin/console/search/", {"q": "Lyon"})
    assert several.status_code == 200 and several.content.decode().count("/admin/sites/site/") >= 4
    nothing = staff.get("/admin/console/search/", {"q": "no-such-thing"}).content.decode()
    assert "Nothing matches" in nothing


def test_site_page_is_a_360_view_with_buttons_and_edit_as_a_secondary_action(staff: Client) -> None:
    make_fleet(5, 10)
    site = Site.objects.get(code="GN-00001")

    page = staff.get(f"/admin/sites/site/{site.pk}/change/").content.decode()

    for section in ("site-nodes", "site-applications", "site-rollouts", "site-runs", "site-audit"):
        assert f'id="{section}"' in page
    assert "pos-gn" in page and "3f9c2e1" in page  # the application's release and applied revision
    assert "Probe now" in page and "Wipe…" in page and "Replace…" in page and "Revoke credentials…" in page
    assert f"/admin/sites/site/{site.pk}/change/?edit=1" in page
    assert "<time datetime=" in page and 'data-site-tz="America/Los_Angeles"' in page
    assert "SUBJECT REPR" not in page.upper().replace("SUBJECT_REPR", "")
    edit = staff.get(f"/admin/sites/site/{site.pk}/change/", {"edit": "1"}).content.decode()
    assert 'name="name"' in edit


def test_probe_button_queues_a_probe(staff: Client) -> None:
    site = SiteFactory()

    response = staff.post(f"/admin/sites/site/{site.pk}/probe/")

    assert response.status_code == 302 and response.url == f"/admin/sites/site/{site.pk}/change/"
    assert AuditEvent.objects.filter(verb="probe", object_id=str(site.pk), source="admin").count() == 1
    assert staff.get(f"/admin/sites/site/{site.pk}/probe/").status_code == 302  # a GET changes nothing
    assert AuditEvent.objects.filter(verb="probe").count() == 1


def test_node_page_wipe_button_goes_through_the_typed_confirmation(staff: Client, quiet: None) -> None:
    node = NodeFactory(hostname="nuc-7", state=NodeState.ACTIVE)
    page = staff.get(f"/admin/sites/node/{node.pk}/change/").content.decode()
    assert f"/admin/sites/node/{node.pk}/wipe/" in page and 'id="node-live"' in page

    wrong = staff.post(f"/admin/sites/node/{node.pk}/wipe/", {"confirm": "nuc-8", "reason": "sold"})
    assert wrong.status_code == 200 and not WorkflowRun.objects.exists()  # shown again, with the error

    done = staff.post(f"/admin/sites/node/{node.pk}/wipe/", {"confirm": "nuc-7", "reason": "sold"})

    assert done.status_code == 302 and done.url == f"/admin/sites/node/{node.pk}/change/"
    assert WorkflowRun.objects.filter(kind="node.wipe").count() == 1
    live = staff.get(f"/admin/sites/node/{node.pk}/live/").content.decode()
    assert "node.wipe run" in live


def test_node_buttons_need_their_permissions(client: Client, django_user_model: Any) -> None:
    node = NodeFactory()
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_node", "view_site"]))
    client.force_login(viewer)

    page = client.get(f"/admin/sites/node/{node.pk}/change/").content.decode()

    assert "/wipe/" not in page
    assert client.get(f"/admin/sites/node/{node.pk}/wipe/").status_code == 403
    assert client.post(f"/admin/sites/site/{node.site_id}/probe/").status_code == 403


PAGES = [
    "/admin/",
    "/admin/console/live/",
    "/admin/console/search/?q=Lyon",
    "/admin/sites/site/",
    "/admin/sites/site/?health__exact=unreachable",
    "/admin/sites/node/",
    "/admin/sites/alert/",
    "/admin/sites/cluster/",
    "/admin/sites/backup/",
    "/admin/sites/bootstraptoken/",
    "/admin/audit/auditevent/",
    "site",
    "node",
]
MAX_QUERIES = 30


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(("sites", "nodes"), [(15, 30), (150, 450)])
def test_pages_take_a_bounded_number_of_queries(
    staff: Client, django_assert_max_num_queries: Any, page: str, sites: int, nodes: int
) -> None:
    make_fleet(sites, nodes)
    if page == "site":
        page = f"/admin/sites/site/{Site.objects.get(code='GN-00001').pk}/change/"
    elif page == "node":
        page = f"/admin/sites/node/{Node.objects.order_by('pk').first().pk}/change/"  # type: ignore[union-attr]
    staff.get(page)  # sessions, content types and permissions cached, as on a person's second page

    with django_assert_max_num_queries(MAX_QUERIES):
        assert staff.get(page).status_code == 200


def test_errors_read_as_sentences_with_the_raw_detail_behind_a_disclosure(staff: Client) -> None:
    site = SiteFactory()
    Cluster.objects.filter(site=site).update(
        reachability="unreachable",
        last_error="cannot reach the cluster at 10.2.3.4:6443 (connection refused) since 14:02",
        last_error_detail="MaxRetryError: HTTPSConnectionPool(host='10.2.3.4', port=6443)",
    )
    cluster = Cluster.objects.get(site=site)

    for page in (
        f"/admin/sites/site/{site.pk}/change/",
        f"/admin/sites/cluster/{cluster.pk}/change/",
        "/admin/sites/site/",
    ):
        html = staff.get(page).content.decode()
        assert "<summary>raw error</summary>" in html, page
        assert html.index("MaxRetryError") > html.index("<details"), page  # never shown as the message
    assert ">Unreachable<" in staff.get("/admin/sites/cluster/").content.decode()  # the label, not the value


def test_audit_list_is_headed_for_people(staff: Client) -> None:
    AuditEvent.objects.create(actor_repr="alice", verb="wipe", object_type="sites.node", object_id="1", object_repr="n")
    page = staff.get("/admin/audit/auditevent/").content.decode()
    assert "column-who" in page and "column-what" in page
    assert "column-actor_repr" not in page and "column-object_repr" not in page and "REPR" not in page.upper()


def test_a_staff_user_without_view_permissions_sees_no_site_or_rollout_on_the_dashboard(
    client: Client, django_user_model: Any
) -> None:
    make_fleet(10, 10)
    client.force_login(django_user_model.objects.create_user("nobody", password="x", is_staff=True))

    page = client.get("/admin/").content.decode()

    assert 'id="last-failures"' not in page and 'id="active-rollouts"' not in page
    assert "GN-0000" not in page
    assert client.get("/admin/console/search/", {"q": "GN-00003"}).status_code == 200  # no kinds: no result
    assert 'id="search-results"' not in client.get("/admin/console/search/", {"q": "GN-00003"}).content.decode()


def test_site_page_runs_say_what_a_waiting_run_waits_for(staff: Client) -> None:
    make_fleet(3, 6)
    site = Site.objects.get(code="GN-00000")  # its first machine has a replacement waiting for check-in

    page = staff.get(f"/admin/sites/site/{site.pk}/change/").content.decode()

    runs = page[page.index('id="site-runs"') :]
    assert "node.replace" in runs and "await_checkin" in runs and "waiting for the machine" in runs
