"""Rendering releases per site: the sandbox, the manifest checks and their messages."""

import pytest
import yaml

from fleet.errors import Invalid
from rollouts.models import Application
from rollouts.rendering import (
    MAX_RENDERED_CHARS,
    MAX_TEMPLATES,
    SAMPLE_SITE,
    ReleaseRenderer,
    render_site_files,
    validate_release,
)
from tests.factories import SiteFactory
from tests.rollouts.factories import TEMPLATES, VALUES, ReleaseFactory

APP = Application(name="pos", team="store", namespace="pos", extra_namespaces=["pos-data"])


def obj(kind: str = "ConfigMap", name: str = "x", namespace: str | None = "pos", api: str = "v1") -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}{ns}\n"


def check(templates: dict[str, str], app: Application = APP, values: dict | None = None) -> None:
    validate_release(application=app, version="1.0", templates=templates, values=values or {})


def test_good_templates_render_for_the_sample_site() -> None:
    check(TEMPLATES, values=VALUES)
    check({"ns.yaml": obj("Namespace", "pos", None), "more.yaml": obj(name="a") + "---\n" + obj(name="b") + "---\n"})
    check({"data.yaml": obj(namespace="pos-data")})


@pytest.mark.django_db
def test_render_for_a_site_uses_its_facts_and_writes_under_the_application_folder() -> None:
    site = SiteFactory(code="TX-0412", region="us-south", labels={"tier": "pilot"})
    release = ReleaseFactory(application__name="pos", application__namespace="pos")

    files = render_site_files(release, site)

    assert sorted(files) == ["apps/pos/configmap.yaml", "apps/pos/deployment.yaml"]
    config = yaml.safe_load(files["apps/pos/configmap.yaml"])
    assert config["data"] == {"site": "TX-0412", "region": "us-south", "greeting": "hello"}
    deployment = yaml.safe_load(files["apps/pos/deployment.yaml"])
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"pos:{release.version}")


def test_sample_site_has_any_label_asked_for() -> None:
    check({"a.yaml": obj(name="{{ site.labels.tier }}")})


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ 'x' * 100000000 }}",
        "{{ 9 ** 99999 }}",
        "{% for i in range(100000000) %}x{% endfor %}",
    ],
)
def test_sandbox_escapes_and_bombs_are_refused(template: str) -> None:
    with pytest.raises(Invalid) as caught:
        check({"evil.yaml": template})
    assert caught.value.message.startswith("evil.yaml: unsafe template")
    assert caught.value.errors == {"templates": [caught.value.message]}


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ({}, "non-empty object"),
        ({"../etc/passwd.yaml": obj()}, "not a relative path"),
        ({"/abs.yaml": obj()}, "not a relative path"),
        ({"a.txt": obj()}, "not a relative path"),
        ({"a.yaml": 42}, "a.yaml: the template must be a string"),
        ({"a.yaml": "{% if %}"}, "a.yaml: line 1: template syntax error"),
        ({"a.yaml": "{{ missing }}"}, "a.yaml: UndefinedError: 'missing' is undefined"),
        ({"a.yaml": "{{ values.nope.deeper }}"}, "a.yaml: UndefinedError"),
        ({"a.yaml": "{{ 1 / 0 }}"}, "a.yaml: render error: ZeroDivisionError"),
        ({"a.yaml": "key: [unclosed"}, "a.yaml: not valid YAML"),
        ({"a.yaml": "# only a comment\n"}, "a.yaml: renders no Kubernetes object"),
        ({"a.yaml": obj() + "---\n- a list\n"}, "a.yaml: document 1: is a list, not a Kubernetes object"),
        ({"a.yaml": "kind: ConfigMap\nmetadata: {name: x, namespace: pos}\n"}, "document 0: apiVersion is missing"),
        ({"a.yaml": "apiVersion: v1\nmetadata: {name: x, namespace: pos}\n"}, "document 0: kind is missing"),
        ({"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: pos}\n"}, "metadata.name is missing"),
        ({"a.yaml": obj(namespace=None)}, "document 0: ConfigMap 'x' has no metadata.namespace"),
        ({"a.yaml": obj(namespace="kube-system")}, "in namespace 'kube-system', outside the application's namespaces"),
        ({"a.yaml": obj("ClusterRole", namespace=None, api="rbac.authorization.k8s.io/v1")}, "is cluster-scoped"),
        ({"a.yaml": obj("Namespace", "kube-system", None)}, "Namespace 'kube-system' is not one of the application's"),
        ({"a.yaml": obj("List", namespace=None)}, "List is not accepted"),
        (
            {"a.yaml": obj(), "b.yaml": obj()},
            "b.yaml: document 0: ConfigMap pos/x is also defined in a.yaml document 0",
        ),
        ({"a.yaml": "a: &anchor [1]\nb: *anchor\n"}, "YAML aliases"),
        ({f"t{i}.yaml": obj(name=f"n{i}") for i in range(MAX_TEMPLATES + 1)}, f"at most {MAX_TEMPLATES} templates"),
        ({"big.yaml": obj() + "data:\n  x: \"{{ 'a' * 1000000 }}{{ 'b' * 100000 }}\"\n"}, "rendered output exceeds"),
    ],
)
def test_bad_templates_are_refused_naming_path_document_and_reason(templates: dict, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        check(templates)
    assert message in caught.value.message
    assert "templates" in caught.value.errors


def test_allowed_cluster_kinds_and_extra_namespaces() -> None:
    app = Application(name="mon", team="obs", namespace="mon", allowed_cluster_kinds=["ClusterRole"])
    check({"role.yaml": obj("ClusterRole", namespace=None, api="rbac.authorization.k8s.io/v1")}, app=app)
    with pytest.raises(Invalid, match="outside the application's namespaces"):
        check({"a.yaml": obj(namespace="pos-data")}, app=app)


def test_values_cannot_leak_between_sites() -> None:
    renderer = ReleaseRenderer(
        application=APP,
        version="1",
        templates={"a.yaml": "{% set _ = values.seen.append(site.code) %}" + obj(name="n{{ values.seen|length }}")},
        values={"seen": []},
    )
    first = renderer.render(SAMPLE_SITE)
    second = renderer.render(SAMPLE_SITE)
    assert first == second
    assert renderer.values == {"seen": []}


def test_output_bound_is_per_site() -> None:
    line = "{{ 'a' * " + str(MAX_RENDERED_CHARS // 2) + " }}"
    with pytest.raises(Invalid, match="exceeds"):
        check({"a.yaml": obj() + f"data:\n  a: {line}\n", "b.yaml": obj(name="y") + f"data:\n  b: {line}\n"})
