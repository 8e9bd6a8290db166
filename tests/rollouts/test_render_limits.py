"""The renderer's bounds, attack by attack. Each of these templates used to burn a worker for seconds to
minutes and gigabytes; each is now stopped, and the error names the limit and the site. No test times
anything: the pytest timeout is only a guard against a bound that no longer holds."""

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from fleet.errors import Invalid
from fleet.workflows.outcomes import Fail
from fleet.workflows.services import workflow_start
from rollouts import dry_runs, isolation, services
from rollouts.choices import SITE_KIND, RolloutState
from rollouts.models import Application, Release, Rollout, RolloutWave, SiteRollout
from rollouts.rendering import ReleaseRenderer
from rollouts.workflows.site import site_commit
from sites.models import Site
from tests.factories import SiteFactory
from tests.rollouts.factories import RolloutPlanFactory
from tests.rollouts.runs import run_to_end

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(300)]

APP = Application(name="pos", team="store", namespace="pos")
HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: pos\ndata:\n  a: '{body}'\n"
GOOD = {"a.yaml": HEAD.format(body="{{ site.code }}")}
# CPU without tripping a step or size bound: 10,000 loop iterations, each an `in` over a million items.
CPU_BOMB = "{% set big = range(10000)|list * 100 %}{% for i in range(10000) %}{% if -1 in big %}{% endif %}{% endfor %}"
# Memory without tripping a size bound: ten thousand different strings of a megabyte each, kept.
MEMORY_BOMB = (
    "{% set ns = namespace(l=[]) %}{% for i in range(10000) %}{% set _ = ns.l.append('x' * 1000000) %}{% endfor %}"
)


def renderer(body: str) -> ReleaseRenderer:
    return ReleaseRenderer(application=APP, version="1.0", templates={"a.yaml": HEAD.format(body=body)}, values={})


def refusal(body: str, site: Any) -> str:
    with pytest.raises(Invalid) as caught:
        renderer(body).render_checked(site)
    assert caught.value.errors == {"templates": [caught.value.message]}
    return caught.value.message


@pytest.fixture
def site() -> Site:
    return SiteFactory(code="TX-0412")  # type: ignore[return-value]  # factory_boy returns the model


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        ("{{ '%0999999999d' % 1 }}", "%-format width 999999999 is more than 1,000"),
        ("{{ '%.999999999f' % 1.5 }}", "%-format precision 999999999 is more than 1,000"),
        ("{{ '%*d' % (999999999, 1) }}", "`*` widths in %-formatting are not accepted"),
        ("{{ '%s' * 1000 % (('x' * 1000000,) * 1000) }}", "the %-formatted string would be"),
        ("{{ '%0999999999d'|format(1) }}", "%-format width 999999999 is more than 1,000"),
        ("{{ 'x'|center(999999999) }}", "center width 999,999,999 is more than 1,000"),
        ("{{ 'x'.center(999999999) }}", "center() width 999,999,999 is more than 1,000"),
        ("{{ 'x'.ljust(999999999) }}", "ljust() width"),
        ("{{ '7'.zfill(999999999) }}", "zfill() width"),
        ("{{ '{:>999999999}'.format(1) }}", "format width or precision 999999999 is more than 1,000"),
        ("{{ '{0}{0}{0}{0}'.format('x' * 1000000) }}", "the formatted string would be"),
        ("{{ 2**64**64 }}", "** would make an integer of about 4,096 bits, more than 1,024"),
        ("{{ (10**300) * (10**300) * (10**300) * (10**300) }}", "* would make an integer"),
        ("{{ 'x' * 10**8 }}", "repeating a str 100,000,000 times"),
        ("{{ [0] * 10**8 }}", "repeating a list 100,000,000 times"),
        (
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            "more than 250,000 steps (loop iterations, calls and items given to filters)",
        ),
        ("{% for a in range(10000) %}{% for b in range(10000) if false %}{% endfor %}{% endfor %}", "250,000 steps"),
        ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", "250,000 steps"),
        ("{% for i in range(100) %}{{ (range(10000)|list)|sort|first }}{% endfor %}", "250,000 steps"),
        (
            "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "the string joined with ~ would be 2,000,000 long",
        ),
        ("{{ 'x' * 1000000 + 'x' * 1000000 }}", "the sum would be 2,000,000 long"),
        ("{{ ('\\n' * 100000)|indent(1000) }}", "the indented string would be"),
        ("{{ ('x' * 100000).replace('', 'y' * 1000) }}", "the replaced string would be"),
        ("{{ ('x' * 100000)|replace('', 'y' * 1000) }}", "the replaced string would be"),
        ("{{ ('y' * 1000).join(range(2000)) }}", "the joined string would be"),
        ("{{ (1).to_bytes(999999999, 'big') }}", "to_bytes() would be 999,999,999 long"),
        ("{{ range(10)|batch(999999999, 0)|list }}", "batch width 999,999,999"),
        ("{{ range(10)|slice(999999999)|list }}", "slice width 999,999,999"),
        ("{{ {'a': 1}|tojson(999999999) }}", "tojson indent width"),
        ("{{ lipsum(999999999) }}", "lipsum() of more than 100 paragraphs"),
        (
            "{% set l = [0] * 1000000 %}{% for i in range(30) %}{% set _ = l.extend(l) %}{% endfor %}",
            "the list would be 2,000,000 long",
        ),
    ],
)
def test_the_sandbox_refuses_each_bomb_up_front_naming_the_bound_and_the_site(
    body: str, bound: str, site: Site
) -> None:
    message = refusal(body, site)

    assert message.startswith("a.yaml (site TX-0412): unsafe template: "), message
    assert bound in message


def test_what_the_bounds_allow_still_renders(site: Site) -> None:
    body = (
        "{{ '%05d'|format(42) }} {{ 'ab'|center(10) }} {{ '{:>8}'.format('x') }} {{ 2**64 }} {{ 10**300 * 10 > 0 }}"
        "{% for a in range(100) %}{% for b in range(100) %}{% endfor %}{% endfor %}{{ range(3)|join(',') }}"
        "{{ 'x' ~ 'y' }}{{ ('a b c'|replace(' ', '-'))|upper }}"
    )

    files = renderer(body).render(site)

    assert "00042" in files["a.yaml"] and "18446744073709551616" in files["a.yaml"] and "0,1,2" in files["a.yaml"]


# --- the process limits: what the sandbox does not see ---------------------------------------------------


@override_settings(FLEET_RENDER_CPU_SECONDS=1, FLEET_RENDER_TIMEOUT_SECONDS=120)
def test_a_cpu_bomb_is_stopped_at_the_cpu_limit_naming_the_site(site: Site) -> None:
    message = refusal(CPU_BOMB, site)

    assert message == "rendering for site TX-0412 exceeded the 1 s CPU limit (FLEET_RENDER_CPU_SECONDS)"


@override_settings(FLEET_RENDER_MEMORY_MB=256, FLEET_RENDER_CPU_SECONDS=30, FLEET_RENDER_TIMEOUT_SECONDS=120)
def test_a_memory_bomb_is_stopped_at_the_memory_limit_and_the_caller_carries_on(site: Site) -> None:
    before = _rss_mb(os.getpid())

    message = refusal(MEMORY_BOMB, site)
    after = ReleaseRenderer(application=APP, version="1.1", templates=GOOD, values={}).render(site)

    assert message == "rendering for site TX-0412 exceeded the 256 MB memory limit (FLEET_RENDER_MEMORY_MB)"
    assert after == {"a.yaml": HEAD.format(body="TX-0412")}  # a new renderer took the old one's place
    assert _rss_mb(os.getpid()) - before < 100  # the gigabytes were never this process's


@override_settings(FLEET_RENDER_CPU_SECONDS=600, FLEET_RENDER_TIMEOUT_SECONDS=1)
def test_a_render_past_the_wall_clock_limit_is_killed_naming_the_site(site: Site) -> None:
    message = refusal(CPU_BOMB, site)

    assert message == "rendering for site TX-0412 exceeded the 1 s time limit (FLEET_RENDER_TIMEOUT_SECONDS)"


@override_settings(FLEET_RENDER_CPU_SECONDS=600, FLEET_RENDER_TIMEOUT_SECONDS=600, FLEET_RENDER_RELEASE_SECONDS=1)
def test_a_release_check_stops_at_the_release_limit_naming_where_it_stopped() -> None:
    sites = [SiteFactory(code=f"TX-{n:04d}") for n in range(1, 4)]

    with pytest.raises(Invalid) as caught:
        renderer(CPU_BOMB).check_sites(sites)

    assert caught.value.message == (
        "rendering pos 1.0 exceeded the 1 s limit for one release (FLEET_RENDER_RELEASE_SECONDS): "
        "it stopped at site TX-0001 after 0 site(s)"
    )


def test_the_renderer_process_gets_no_secrets_and_runs_under_its_memory_limit(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_SECRET_KEY", "not-for-templates")
    isolation._POOL.close()  # the next render starts a renderer now, with this environment around it

    ReleaseRenderer(application=APP, version="3.0", templates=GOOD, values={}).render(site)
    pid = isolation._POOL._idle[-1].process.pid

    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"not-for-templates" not in environ and b"FLEET_" not in environ
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert re.search(r"Max address space\s+536870912\s+536870912 ", limits), limits
    assert re.search(r"Max core file size\s+0\s+0 ", limits), limits


def test_a_renderer_killed_from_outside_is_replaced_at_the_next_render(site: Site) -> None:
    good = ReleaseRenderer(application=APP, version="2.0", templates=GOOD, values={})
    good.render(site)
    for child in list(isolation._POOL._idle):
        child.process.kill()
        child.process.wait()

    assert good.render(site) == {"a.yaml": HEAD.format(body="TX-0412")}


# --- fine at the sample site, a bomb at one site -----------------------------------------------------


def only_at(code: str, bomb: str) -> dict[str, str]:
    return {"a.yaml": HEAD.format(body="{% if site.code == '" + code + "' %}" + bomb + "{% endif %}ok")}


@pytest.fixture
def fleet() -> list[Site]:
    """Three sites in one region with the same labels: a release's creation check renders the first."""
    return [SiteFactory(code=f"TX-{n:04d}", region="us-south", labels={"tier": "store"}) for n in range(1, 4)]


@pytest.mark.parametrize(
    ("bomb", "limit"),
    [
        ("{{ '%0999999999d' % 1 }}", "a.yaml (site TX-0002): unsafe template: %-format width 999999999"),
        (MEMORY_BOMB, "rendering for site TX-0002 exceeded the 512 MB memory limit (FLEET_RENDER_MEMORY_MB)"),
    ],
)
def test_a_template_that_bombs_at_one_site_is_refused_at_start_naming_it_and_nothing_is_written(
    fleet: list[Site], bomb: str, limit: str
) -> None:
    application = services.application_create(actor="t", source="test", name="pos", team="store", namespace="pos")
    release = services.release_create(
        actor="t", source="test", application=application, version="1.0", templates=only_at("TX-0002", bomb)
    )
    plan = RolloutPlanFactory(release=release)

    with pytest.raises(Invalid) as caught:
        services.rollout_start(plan=plan, actor="t", source="test")

    assert caught.value.message.startswith(limit), caught.value.message
    assert not Rollout.objects.exists()
    release.refresh_from_db()
    assert release.locked_at is None


def test_the_dry_run_of_such_a_release_fails_naming_the_site_and_the_limit(fleet: list[Site]) -> None:
    application = services.application_create(actor="t", source="test", name="pos", team="store", namespace="pos")
    release = services.release_create(
        actor="t", source="test", application=application, version="1.0", templates=only_at("TX-0003", MEMORY_BOMB)
    )

    dry_run = dry_runs.dry_run_start(plan=RolloutPlanFactory(release=release), actor="t", source="test")
    run = run_to_end(dry_run.run_id)
    dry_run.refresh_from_db()

    assert run.state == "failed" and dry_run.state == "failed"
    assert dry_run.error == "rendering for site TX-0003 exceeded the 512 MB memory limit (FLEET_RENDER_MEMORY_MB)"
    assert dry_run.rendered_sites < 3 and dry_run.total_sites == 3


def test_release_creation_renders_real_sites_too_and_refuses_a_bomb_at_every_real_site(fleet: list[Site]) -> None:
    application = services.application_create(actor="t", source="test", name="pos", team="store", namespace="pos")
    templates = {"a.yaml": HEAD.format(body="{% if site.code != 'XX-0000' %}{{ 'x'|center(999999999) }}{% endif %}")}

    with pytest.raises(Invalid) as caught:
        services.release_create(actor="t", source="test", application=application, version="1.0", templates=templates)

    assert caught.value.message.startswith("a.yaml (site TX-0001): unsafe template: center width")
    assert not Release.objects.exists()


def test_a_release_changed_into_a_bomb_at_every_real_site_is_refused_and_left_as_it_was(fleet: list[Site]) -> None:
    application = services.application_create(actor="t", source="test", name="pos", team="store", namespace="pos")
    release = services.release_create(actor="t", source="test", application=application, version="1.0", templates=GOOD)
    bomb = {"a.yaml": HEAD.format(body="{% if site.code != 'XX-0000' %}" + MEMORY_BOMB + "{% endif %}")}

    with pytest.raises(Invalid) as caught:
        services.release_update(release=release, actor="t", source="test", templates=bomb)

    assert caught.value.message == (
        "rendering for site TX-0001 exceeded the 512 MB memory limit (FLEET_RENDER_MEMORY_MB)"
    )
    release.refresh_from_db()
    assert release.templates == GOOD


def test_the_commit_step_renders_within_the_limits_again_and_fails_the_site_naming_it(fleet: list[Site]) -> None:
    """What start checked is checked again at use: a release changed or a site relabelled since."""
    release = Release.objects.create(
        application=Application.objects.create(name="pos", team="store", namespace="pos"),
        version="1.0",
        templates=only_at("TX-0002", MEMORY_BOMB),
    )
    plan = RolloutPlanFactory(release=release)
    rollout = Rollout.objects.create(
        plan=plan, release=release, state=RolloutState.RUNNING, plan_snapshot={}, started_at=timezone.now()
    )
    wave = RolloutWave.objects.create(rollout=rollout, index=0, name="all", size=1)
    row = SiteRollout.objects.create(rollout=rollout, wave=wave, site=fleet[1], position=0, state="committing")
    run = workflow_start(
        kind=SITE_KIND, subject=row, actor="t", source="test", deadline=timezone.now() + dt.timedelta(1)
    )

    outcome = site_commit(run, {})

    assert isinstance(outcome, Fail)
    assert outcome.reason == (
        "rendering failed: rendering for site TX-0002 exceeded the 512 MB memory limit (FLEET_RENDER_MEMORY_MB)"
    )


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
