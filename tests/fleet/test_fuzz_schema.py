"""Fuzzes every operation of the OpenAPI schema: whatever a client sends, the answer is never a 5xx.

Schemathesis reads the schema drf-spectacular generates and sends each operation generated requests
(schema examples, boundary and invalid values from its coverage phase, then random ones) through the
real WSGI application, authenticated as a superuser (the device heartbeat with a node credential, device
registration with none). The only check is `not_a_server_error`: a 400 or 404 is a fine answer to
nonsense; a 500 is a bug.

A handful of objects exist with known ids, and generated path parameters and body references are
sometimes swapped for them, so requests get past "no such object" into the serializers and services.
Each request runs in a savepoint rolled back afterwards, so a DELETE does not starve the operations
after it and a request never sees another's leftovers.

Suite run: a few examples per operation with a fixed seed (reproducible, well under a minute).
A longer hunt (docs/API.md):

    FUZZ_EXAMPLES=300 FUZZ_SEED=random pytest -p no:cacheprovider tests/fleet/test_fuzz_schema.py
"""

import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from fleet.workflows.models import WorkflowRun
from rollouts.models import Application, Release, Rollout, RolloutPlan
from sites import devices
from sites.api.device import DeviceThrottle
from sites.models import Node
from tests.factories import NodeFactory, SiteFactory, UserFactory, api_key_for
from tests.rollouts.factories import ApplicationFactory, ReleaseFactory, RolloutPlanFactory

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
# Schemathesis' coverage phase (boundary and invalid values of every parameter) finds the most and costs
# a couple of minutes: on for the long hunt, off in the suite.
COVERAGE = os.environ.get("FUZZ_COVERAGE", "0") == "1"
_SEED = os.environ.get("FUZZ_SEED", "20261202")
SEED = random.SystemRandom().getrandbits(64) if _SEED == "random" else int(_SEED)

# The first path segment after /api/v1/ -> the model whose known object stands in for `{id}`.
KNOWN_BY_SEGMENT: dict[str, type] = {
    "applications": Application,
    "releases": Release,
    "rollout-plans": RolloutPlan,
    "rollouts": Rollout,
    "nodes": Node,
    "workflow-runs": WorkflowRun,
}


# Status classes seen per operation in this run (see _report).
STATUSES: defaultdict[str, Counter[int]] = defaultdict(Counter)


class _Rollback(Exception):
    """Raised to undo a fuzzed request's writes."""


@dataclass(frozen=True)
class FuzzFleet:
    """The objects generated requests may hit, and the credentials they are sent with."""

    user_token: str
    node_token: str
    site_code: str
    ids: dict[type, int]
    bootstrap_token_id: int

    def authorization(self, path: str) -> str | None:
        if path.startswith("/api/v1/device/register"):
            return None
        if path.startswith("/api/v1/device/"):
            return f"Node {self.node_token}"
        return f"Token {self.user_token}"


@pytest.fixture
def fuzz_fleet(db: None) -> FuzzFleet:
    user = UserFactory(username="fuzzer", is_staff=True, is_superuser=True)
    site = SiteFactory(code="TX-0412")
    node = NodeFactory(site=site)
    _credential, node_token = devices.node_credentials_issue(node=node, actor="test", source="test")
    bootstrap, _plaintext = devices.bootstrap_token_issue(site=site, actor="test", source="test", any_serial=True)
    plan = RolloutPlanFactory(release=ReleaseFactory(application=ApplicationFactory()))
    rollout = Rollout.objects.create(plan=plan, release=plan.release, plan_snapshot={})
    run = WorkflowRun.objects.create(kind="node.provision", subject_type="node", subject_id=str(node.pk))
    ids = {
        Application: plan.release.application_id,
        Release: plan.release_id,
        RolloutPlan: plan.pk,
        Rollout: rollout.pk,
        Node: node.pk,
        WorkflowRun: run.pk,
    }
    return FuzzFleet(
        user_token=api_key_for(user),
        node_token=node_token,
        site_code=site.code,
        ids=ids,
        bootstrap_token_id=bootstrap.pk,
    )


@pytest.fixture
def wsgi_app() -> Iterator[WSGIHandler]:
    """Django's WSGI handler without closing the database connection at each request's start and end
    (as Django's test client does), so requests run inside the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_schema(
    request: pytest.FixtureRequest,
    fuzz_fleet: FuzzFleet,
    wsgi_app: WSGIHandler,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> Any:
    # Schemathesis 4.32 renames the test item per operation through `_nodeid`, which pytest 9 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    # The device endpoints' throttle would answer 429 to most of the requests, and auth/token/ would hash
    # each generated password a million times: neither is what this test is about.
    monkeypatch.setattr(DeviceThrottle, "THROTTLE_RATES", {"device": None})
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Straight from the generator: /api/schema/ itself may require a login.
    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": EXAMPLES,
                "database": "none",
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": COVERAGE}},
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            "suppress-health-check": ["all"],
        }
    )
    schema = schemathesis.openapi.from_dict(raw, config=config)
    schema.app = wsgi_app
    if report := os.environ.get("FUZZ_REPORT"):
        request.addfinalizer(lambda: _report(report))

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Half the time, the path names an object that exists."""
        known = _known_path_parameters(fuzz_fleet, context.operation.path, path_parameters or {})
        if not known:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, {**path_parameters, **known}])

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        """Half the time, a body's references name objects that exist."""
        if not isinstance(body, dict):
            return st.just(body)
        known = {
            key: fuzz_fleet.ids[model]
            for key, model in (("application", Application), ("release", Release))
            if key in body
        }
        if "site" in body:
            known["site"] = fuzz_fleet.site_code
        if not known:
            return st.just(body)
        return st.sampled_from([body, {**body, **known}])

    return schema


def _known_path_parameters(fleet: FuzzFleet, path: str, parameters: dict[str, Any]) -> dict[str, Any]:
    segment = path.removeprefix("/api/v1/").split("/", 1)[0]
    known: dict[str, Any] = {}
    if "code" in parameters or "site_code" in parameters:
        known = {name: fleet.site_code for name in ("code", "site_code") if name in parameters}
    if "id" in parameters:
        if "bootstrap-tokens" in path:
            known["id"] = fleet.bootstrap_token_id
        elif segment in KNOWN_BY_SEGMENT:
            known["id"] = fleet.ids[KNOWN_BY_SEGMENT[segment]]
    return known


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()
@pytest.mark.timeout(max(300, EXAMPLES * 30))  # a long hunt runs for as long as it takes
def test_no_request_gets_a_server_error(case: Any, fuzz_fleet: FuzzFleet) -> None:
    """Given any generated request, when it is sent, then the answer is not a 5xx."""
    authorization = fuzz_fleet.authorization(case.path)
    headers = {"Authorization": authorization} if authorization else {}
    try:
        with transaction.atomic():
            response = case.call(headers=headers)
            STATUSES[f"{case.method.upper()} {case.path}"][response.status_code // 100] += 1
            try:
                case.validate_response(response, headers=headers)
            except Exception as exc:
                exc.add_note(
                    f"replay the run with FUZZ_SEED={SEED} FUZZ_EXAMPLES={EXAMPLES} FUZZ_COVERAGE={int(COVERAGE)}"
                )
                raise
            raise _Rollback
    except _Rollback:
        pass


def _report(path: str) -> None:
    """FUZZ_REPORT=<file>: requests per operation by status class, to see how deep a run got."""
    total: Counter[int] = Counter()
    lines = []
    for label, counts in sorted(STATUSES.items()):
        total.update(counts)
        lines.append(f"{label}: " + " ".join(f"{k}xx={v}" for k, v in sorted(counts.items())))
    lines.append("total: " + " ".join(f"{k}xx={v}" for k, v in sorted(total.items())) + f" ({sum(total.values())})")
    lines.append(f"seed {SEED}, {EXAMPLES} examples per operation, coverage phase {'on' if COVERAGE else 'off'}")
    Path(path).write_text("\n".join(lines) + "\n")
