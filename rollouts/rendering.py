"""Rendering a release's manifest templates for one site, and checking what comes out.

Templates are Jinja2, rendered in a sandbox (`SandboxedEnvironment`: no attribute starting with `_`, no
unsafe methods; `StrictUndefined`: a misspelt name is an error, not an empty string), with no loader
(a template cannot include files from the server) and without autoescaping (the output is YAML, not
HTML). The context holds plain data only, never a model instance:

- `site`: code, name, region, timezone, labels
- `release`: application, namespace, version, stateful
- `values`: the release's values

Every rendered file must be YAML whose documents are Kubernetes objects (apiVersion, kind,
metadata.name) in the application's namespace or one of its extra namespaces; cluster-scoped kinds
only when the application lists them (a Namespace only for one of its own namespaces). Every failure
is fleet.errors.Invalid naming the template path, the document index and the reason, so the API
answers 400 and the admin shows it on the form.

Sizes are bounded: at most MAX_TEMPLATES templates of MAX_TEMPLATE_CHARS each, and MAX_RENDERED_CHARS
of output per site (rendering stops as soon as it is exceeded). Known limit: a template made of
nested loops that print nothing can still spend CPU; `range` is capped at MAX_RANGE per call, and the
workflow renders inside a Celery task with a time limit.

The rollout workflow writes the output of `render_site_files` under `apps/<application>/` in the site's
repository; that folder belongs to the application and nothing else writes there.
"""

import copy
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from fleet.errors import Invalid
from rollouts.models import Application, Release

MAX_TEMPLATES = 100
MAX_TEMPLATE_CHARS = 256 * 1024
MAX_RENDERED_CHARS = 1024 * 1024
MAX_RANGE = 10_000
MAX_POWER = 64
OWNED_PREFIX = "apps/{application}/"

TEMPLATE_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\.ya?ml$")

# Kinds that are not namespaced in a stock K3s cluster. Anything else is treated as namespaced and
# must name its namespace, unless the application lists it in `allowed_cluster_kinds`.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "RuntimeClass",
        "IngressClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CertificateSigningRequest",
        "FlowSchema",
        "PriorityLevelConfiguration",
        "ClusterIssuer",
    }
)


class SiteLike(Protocol):
    """A Site, or the sample site: what a template may know about where it is rendered."""

    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def labels(self) -> Any: ...


class _AnyLabels(dict[str, str]):
    """Labels of the sample site: any label asked for by name exists (value "sample")."""

    def __missing__(self, key: str) -> str:
        return "sample"


@dataclass(frozen=True)
class SampleSite:
    """The site a release is checked against at creation, before it is known where it goes."""

    code: str = "XX-0000"
    name: str = "Sample site"
    region: str = "sample"
    timezone: str = "UTC"
    labels: Mapping[str, str] = field(default_factory=_AnyLabels)


SAMPLE_SITE = SampleSite()


class _Sandbox(SandboxedEnvironment):
    """The stock sandbox, plus bounds on `*` and `**` so `{{ 'x' * 10**9 }}` cannot exhaust memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER:
                raise SecurityError(f"exponent {right} is larger than {MAX_POWER}")
            return left**right
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int):
                if len(seq) * times > MAX_RENDERED_CHARS:
                    raise SecurityError(f"repeating a sequence {times} times exceeds {MAX_RENDERED_CHARS} items")
        return left * right


def _bounded_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise SecurityError(f"range() of {len(result)} items is more than {MAX_RANGE}")
    return result


def _environment() -> SandboxedEnvironment:
    # Autoescape is off on purpose: the output is YAML, and HTML escaping would corrupt it.
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)  # noqa: S701
    env.globals["range"] = _bounded_range
    return env


def owned_prefix(application_name: str) -> str:
    """The repository folder a release of this application owns at every site."""
    return OWNED_PREFIX.format(application=application_name)


def check_template_shapes(templates: Any) -> dict[str, str]:
    """Check the `templates` object before anything is compiled: paths, count, sizes."""
    if not isinstance(templates, dict) or not templates:
        raise _invalid('templates must be a non-empty object {"<path>.yaml": "<template>"}')
    if len(templates) > MAX_TEMPLATES:
        raise _invalid(f"a release holds at most {MAX_TEMPLATES} templates, not {len(templates)}")
    for path, text in templates.items():
        if not isinstance(path, str) or len(path) > 200 or not TEMPLATE_PATH_RE.match(path) or ".." in path:
            raise _invalid(f"{path!r} is not a relative path ending in .yaml or .yml (letters, digits, . _ - /)")
        if not isinstance(text, str):
            raise _invalid(f"{path}: the template must be a string")
        if len(text) > MAX_TEMPLATE_CHARS:
            raise _invalid(f"{path}: the template is longer than {MAX_TEMPLATE_CHARS} characters")
    return templates


# (group, kind, namespace, name) of one rendered object; namespace "" for cluster-scoped kinds.
ObjectKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class RenderedSite:
    """A release rendered for one site: `{template path: text}` and the objects the files define."""

    files: dict[str, str]
    objects: tuple[ObjectKey, ...]

    def deployments(self) -> list[tuple[str, str]]:
        """(namespace, name) of every Deployment: what the rollout waits for to be available."""
        return [(ns, name) for group, kind, ns, name in self.objects if (group, kind) == ("apps", "Deployment")]


class ReleaseRenderer:
    """A release's templates compiled once, rendered and checked for any number of sites."""

    # Compiled renderers kept per process for `cached` (a rollout renders one release at every site).
    _cache: "OrderedDict[tuple[int, str], ReleaseRenderer]" = OrderedDict()
    _cache_lock = threading.Lock()
    CACHE_SIZE = 16

    def __init__(self, *, application: Application, version: str, templates: dict[str, str], values: dict[str, Any]):
        if not isinstance(values, dict):
            raise Invalid("values must be a JSON object", field="values")
        self.application = application
        self.version = version
        self.values = values
        self._environment = _environment()
        self._templates = {}
        for path, text in sorted(check_template_shapes(templates).items()):
            try:
                self._templates[path] = self._environment.from_string(text)
            except TemplateSyntaxError as exc:
                raise _invalid(f"{path}: line {exc.lineno}: template syntax error: {exc.message}") from exc
            except TemplateError as exc:
                raise _invalid(f"{path}: template error: {exc}") from exc

    @classmethod
    def for_release(cls, release: Release) -> "ReleaseRenderer":
        return cls(
            application=release.application,
            version=release.version,
            templates=release.templates,
            values=release.values,
        )

    @classmethod
    def cached(cls, release: Release) -> "ReleaseRenderer":
        """`for_release`, compiled once per process. The key is the release and a digest of everything
        rendering reads, so an edited release (or application) is never rendered from a stale copy."""
        application = release.application
        material = [
            release.version,
            release.templates,
            release.values,
            application.name,
            application.namespace,
            application.namespaces,
            sorted(application.allowed_cluster_kinds),
            application.stateful,
        ]
        digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        key = (release.pk, digest)
        with cls._cache_lock:
            renderer = cls._cache.get(key)
            if renderer is not None:
                cls._cache.move_to_end(key)
                return renderer
        renderer = cls.for_release(release)
        with cls._cache_lock:
            cls._cache[key] = renderer
            while len(cls._cache) > cls.CACHE_SIZE:
                cls._cache.popitem(last=False)
        return renderer

    def context(self, site: SiteLike) -> dict[str, Any]:
        labels = site.labels if isinstance(site.labels, _AnyLabels) else dict(site.labels or {})
        return {
            "site": {
                "code": site.code,
                "name": site.name,
                "region": site.region,
                "timezone": site.timezone,
                "labels": labels,
            },
            "release": {
                "application": self.application.name,
                "namespace": self.application.namespace,
                "version": self.version,
                "stateful": self.application.stateful,
            },
            # A copy per site: a template cannot leave changes behind for the next site.
            "values": copy.deepcopy(self.values),
        }

    def render(self, site: SiteLike) -> dict[str, str]:
        """`{path: text}` for one site, every document checked. Raises Invalid naming path and document."""
        return self.render_checked(site).files

    def render_checked(self, site: SiteLike) -> RenderedSite:
        """The files for one site and the objects they define, every document checked (see `render`)."""
        where = "" if isinstance(site, SampleSite) else f" (site {site.code})"
        context = self.context(site)
        budget = MAX_RENDERED_CHARS
        rendered: dict[str, str] = {}
        objects: dict[ObjectKey, str] = {}
        for path, template in self._templates.items():
            chunks: list[str] = []
            try:
                for chunk in template.generate(context):
                    budget -= len(chunk)
                    if budget < 0:
                        raise _invalid(f"{path}{where}: rendered output exceeds {MAX_RENDERED_CHARS} characters")
                    chunks.append(chunk)
            except Invalid:
                raise
            except SecurityError as exc:
                raise _invalid(f"{path}{where}: unsafe template: {exc}") from exc
            except TemplateError as exc:
                raise _invalid(f"{path}{where}: {type(exc).__name__}: {exc}") from exc
            except Exception as exc:  # any error a template can provoke (1/0, 'a' + 1) is the client's input
                raise _invalid(f"{path}{where}: render error: {type(exc).__name__}: {exc}") from exc
            text = "".join(chunks)
            self._check_manifests(path, where, text, objects)
            rendered[path] = text
        return RenderedSite(files=rendered, objects=tuple(objects))

    def _check_manifests(self, path: str, where: str, text: str, objects: dict[ObjectKey, str]) -> None:
        try:
            documents = list(_load_all(text))
        except yaml.YAMLError as exc:
            raise _invalid(f"{path}{where}: not valid YAML: {_one_line(exc)}") from exc
        if not any(doc is not None for doc in documents):
            raise _invalid(f"{path}{where}: renders no Kubernetes object")
        for index, doc in enumerate(documents):
            if doc is None:
                continue  # an empty document (a trailing ---) is harmless
            prefix = f"{path}{where}: document {index}"
            key = self._check_object(prefix, doc)
            if key in objects:
                raise _invalid(f"{prefix}: {key[1]} {key[2]}/{key[3]} is also defined in {objects[key]}")
            objects[key] = f"{path} document {index}"

    def _check_object(self, prefix: str, doc: Any) -> ObjectKey:
        if not isinstance(doc, dict):
            raise _invalid(f"{prefix}: is a {type(doc).__name__}, not a Kubernetes object (a mapping)")
        api_version, kind, metadata = doc.get("apiVersion"), doc.get("kind"), doc.get("metadata")
        if not isinstance(api_version, str) or not api_version:
            raise _invalid(f"{prefix}: apiVersion is missing (or not a string)")
        if not isinstance(kind, str) or not kind:
            raise _invalid(f"{prefix}: kind is missing (or not a string)")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
            raise _invalid(f"{prefix}: metadata.name is missing (or not a string)")
        if kind.endswith("List"):
            raise _invalid(f"{prefix}: {kind} is not accepted; write one document per object")
        name, namespace = metadata["name"], metadata.get("namespace")
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        allowed = self.application.namespaces
        if kind == "Namespace":
            if name not in allowed:
                raise _invalid(
                    f"{prefix}: Namespace {name!r} is not one of the application's namespaces ({', '.join(allowed)})"
                )
            return (group, kind, "", name)
        if kind in CLUSTER_SCOPED_KINDS or kind in self.application.allowed_cluster_kinds:
            if kind not in self.application.allowed_cluster_kinds:
                raise _invalid(
                    f"{prefix}: {kind} {name!r} is cluster-scoped; the application does not allow {kind} objects"
                )
            return (group, kind, "", name)
        if not isinstance(namespace, str) or not namespace:
            raise _invalid(f"{prefix}: {kind} {name!r} has no metadata.namespace; use {{{{ release.namespace }}}}")
        if namespace not in allowed:
            raise _invalid(
                f"{prefix}: {kind} {name!r} is in namespace {namespace!r}, outside the application's namespaces "
                f"({', '.join(allowed)})"
            )
        return (group, kind, namespace, name)


def validate_release(*, application: Application, version: str, templates: Any, values: Any) -> None:
    """Compile every template and render it for the sample site; raise Invalid on the first problem."""
    ReleaseRenderer(application=application, version=version, templates=templates, values=values).render(SAMPLE_SITE)


def render_site(release: Release, site: SiteLike) -> dict[str, str]:
    """The release's files for one site, `{template path: text}`, checked."""
    return ReleaseRenderer.for_release(release).render(site)


def render_site_files(release: Release, site: SiteLike) -> dict[str, str]:
    """What the rollout workflow writes into the site's repository: `{apps/<application>/<path>: text}`."""
    prefix = owned_prefix(release.application.name)
    return {prefix + path: text for path, text in render_site(release, site).items()}


class _NoAliasLoader(yaml.SafeLoader):
    """Refuses YAML aliases: a small file with nested aliases expands to gigabytes downstream."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not accepted in manifests", event.start_mark
            )
        return super().compose_node(parent, index)


def _load_all(text: str) -> Iterator[Any]:
    # Without an anchor (&) there can be no alias, so the fast C loader is safe; otherwise use the checking one.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader) if "&" not in text else _NoAliasLoader
    return yaml.load_all(text, Loader=loader)  # noqa: S506  # a safe loader in both branches


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:500]


def _invalid(message: str) -> Invalid:
    return Invalid(message, field="templates")
