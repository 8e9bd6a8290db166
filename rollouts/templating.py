"""A release's templates compiled and rendered for one site, and what comes out checked: the work the
renderer process does (rollouts/render_child.py). Imports neither Django nor edgefleet, so that process
starts in a fraction of a second and holds nothing but the templates it renders.

Templates are Jinja2, rendered in rollouts.sandbox (no attribute starting with `_`, no unsafe methods,
bounded widths, sizes, integers and steps; StrictUndefined), with no loader (a template cannot include
files from the server). The context holds plain data only:

- `site`: code, name, region, timezone, labels
- `release`: application, namespace, version, stateful
- `values`: the release's values (a deep copy per site: a template cannot leave changes for the next site)

Every rendered file must be YAML whose documents are Kubernetes objects (apiVersion, kind,
metadata.name) in the application's namespace or one of its extra namespaces; cluster-scoped kinds
only when the application lists them (a Namespace only for one of its own namespaces). Every failure
is a TemplateProblem naming the template path, the site, the document index and the reason.

Sizes are bounded: at most MAX_TEMPLATES templates of MAX_TEMPLATE_CHARS each, and MAX_RENDERED_CHARS
of output per site (rendering stops as soon as it is exceeded).
"""

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from jinja2 import Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SecurityError

from rollouts import sandbox

MAX_TEMPLATES = 100
MAX_TEMPLATE_CHARS = 256 * 1024
MAX_RENDERED_CHARS = 1024 * 1024

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

# (group, kind, namespace, name) of one rendered object; namespace "" for cluster-scoped kinds.
ObjectKey = tuple[str, str, str, str]


class TemplateProblem(Exception):
    """A template that cannot be compiled or rendered, or renders something refused. The message names
    the template path, the site and the reason; the Django side turns it into fleet.errors.Invalid."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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


@dataclass(frozen=True)
class AppFacts:
    """What rendering needs to know of the application (a plain copy of rollouts.models.Application)."""

    name: str
    namespace: str
    namespaces: tuple[str, ...]
    allowed_cluster_kinds: tuple[str, ...] = ()
    stateful: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "namespaces": list(self.namespaces),
            "allowed_cluster_kinds": list(self.allowed_cluster_kinds),
            "stateful": self.stateful,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AppFacts":
        return cls(
            name=str(data["name"]),
            namespace=str(data["namespace"]),
            namespaces=tuple(data["namespaces"]),
            allowed_cluster_kinds=tuple(data.get("allowed_cluster_kinds") or ()),
            stateful=bool(data.get("stateful")),
        )


@dataclass(frozen=True)
class RenderedSite:
    """A release rendered for one site: `{template path: text}` and the objects the files define."""

    files: dict[str, str]
    objects: tuple[ObjectKey, ...]

    def deployments(self) -> list[tuple[str, str]]:
        """(namespace, name) of every Deployment: what the rollout waits for to be available."""
        return [(ns, name) for group, kind, ns, name in self.objects if (group, kind) == ("apps", "Deployment")]


def check_template_shapes(templates: Any) -> dict[str, str]:
    """Check the `templates` object before anything is compiled: paths, count, sizes."""
    if not isinstance(templates, dict) or not templates:
        raise TemplateProblem('templates must be a non-empty object {"<path>.yaml": "<template>"}')
    if len(templates) > MAX_TEMPLATES:
        raise TemplateProblem(f"a release holds at most {MAX_TEMPLATES} templates, not {len(templates)}")
    for path, text in templates.items():
        if not isinstance(path, str) or len(path) > 200 or not TEMPLATE_PATH_RE.match(path) or ".." in path:
            raise TemplateProblem(f"{path!r} is not a relative path ending in .yaml or .yml (letters, digits, . _ - /)")
        if not isinstance(text, str):
            raise TemplateProblem(f"{path}: the template must be a string")
        if len(text) > MAX_TEMPLATE_CHARS:
            raise TemplateProblem(f"{path}: the template is longer than {MAX_TEMPLATE_CHARS} characters")
    return templates


def site_facts(site: Any) -> dict[str, Any]:
    """The `site` of the template context: plain data from a Site, a SampleSite or such a dict."""
    if isinstance(site, Mapping):
        return dict(site)
    labels = site.labels if isinstance(site.labels, _AnyLabels) else dict(site.labels or {})
    return {"code": site.code, "name": site.name, "region": site.region, "timezone": site.timezone, "labels": labels}


class TemplateSet:
    """A release's templates compiled once, rendered and checked for any number of sites."""

    def __init__(self, *, application: AppFacts, version: str, templates: Any, values: Any):
        if not isinstance(values, dict):
            raise TemplateProblem("values must be a JSON object")
        self.application = application
        self.version = version
        self.values = values
        self._environment = sandbox.Sandbox()
        self._templates: dict[str, Template] = {}
        for path, text in sorted(check_template_shapes(templates).items()):
            try:
                self._templates[path] = self._environment.from_string(text)
            except TemplateSyntaxError as exc:
                raise TemplateProblem(f"{path}: line {exc.lineno}: template syntax error: {exc.message}") from exc
            except TemplateError as exc:
                raise TemplateProblem(f"{path}: template error: {exc}") from exc
            except MemoryError:
                raise
            except Exception as exc:  # a template nested too deep for the parser or compiler, ...
                raise TemplateProblem(f"{path}: cannot be compiled: {type(exc).__name__}: {exc}") from exc

    def context(self, site: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "site": dict(site),
            "release": {
                "application": self.application.name,
                "namespace": self.application.namespace,
                "version": self.version,
                "stateful": self.application.stateful,
            },
            "values": copy.deepcopy(self.values),
        }

    def render_checked(self, site: Mapping[str, Any], *, sample: bool = False) -> RenderedSite:
        """The files for one site and the objects they define, every document checked.

        Raises TemplateProblem naming the path, the site (unless it is the sample site) and the reason.
        MemoryError is left to the caller: it is the renderer process's limit, not the template's fault
        alone, and that process reports it as such.
        """
        where = "" if sample else f" (site {site.get('code')})"
        context = self.context(site)
        budget = MAX_RENDERED_CHARS
        rendered: dict[str, str] = {}
        objects: dict[ObjectKey, str] = {}
        for path, template in self._templates.items():
            chunks: list[str] = []
            try:
                with sandbox.rendering():
                    for chunk in template.generate(context):
                        budget -= len(chunk)
                        if budget < 0:
                            raise TemplateProblem(
                                f"{path}{where}: rendered output exceeds {MAX_RENDERED_CHARS} characters"
                            )
                        chunks.append(chunk)
            except (TemplateProblem, MemoryError):
                raise
            except SecurityError as exc:
                raise TemplateProblem(f"{path}{where}: unsafe template: {exc}") from exc
            except TemplateError as exc:
                raise TemplateProblem(f"{path}{where}: {type(exc).__name__}: {exc}") from exc
            except Exception as exc:  # any error a template can provoke (1/0, 'a' + 1) is the client's input
                raise TemplateProblem(f"{path}{where}: render error: {type(exc).__name__}: {exc}") from exc
            text = "".join(chunks)
            self._check_manifests(path, where, text, objects)
            rendered[path] = text
        return RenderedSite(files=rendered, objects=tuple(objects))

    def _check_manifests(self, path: str, where: str, text: str, objects: dict[ObjectKey, str]) -> None:
        try:
            documents = list(_load_all(text))
        except yaml.YAMLError as exc:
            raise TemplateProblem(f"{path}{where}: not valid YAML: {_one_line(exc)}") from exc
        if not any(doc is not None for doc in documents):
            raise TemplateProblem(f"{path}{where}: renders no Kubernetes object")
        for index, doc in enumerate(documents):
            if doc is None:
                continue  # an empty document (a trailing ---) is harmless
            prefix = f"{path}{where}: document {index}"
            key = self._check_object(prefix, doc)
            if key in objects:
                raise TemplateProblem(f"{prefix}: {key[1]} {key[2]}/{key[3]} is also defined in {objects[key]}")
            objects[key] = f"{path} document {index}"

    def _check_object(self, prefix: str, doc: Any) -> ObjectKey:
        if not isinstance(doc, dict):
            raise TemplateProblem(f"{prefix}: is a {type(doc).__name__}, not a Kubernetes object (a mapping)")
        api_version, kind, metadata = doc.get("apiVersion"), doc.get("kind"), doc.get("metadata")
        if not isinstance(api_version, str) or not api_version:
            raise TemplateProblem(f"{prefix}: apiVersion is missing (or not a string)")
        if not isinstance(kind, str) or not kind:
            raise TemplateProblem(f"{prefix}: kind is missing (or not a string)")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
            raise TemplateProblem(f"{prefix}: metadata.name is missing (or not a string)")
        if kind.endswith("List"):
            raise TemplateProblem(f"{prefix}: {kind} is not accepted; write one document per object")
        name, namespace = metadata["name"], metadata.get("namespace")
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        allowed = self.application.namespaces
        allowed_kinds = self.application.allowed_cluster_kinds
        if kind == "Namespace":
            if name not in allowed:
                raise TemplateProblem(
                    f"{prefix}: Namespace {name!r} is not one of the application's namespaces ({', '.join(allowed)})"
                )
            return (group, kind, "", name)
        if kind in CLUSTER_SCOPED_KINDS or kind in allowed_kinds:
            if kind not in allowed_kinds:
                raise TemplateProblem(
                    f"{prefix}: {kind} {name!r} is cluster-scoped; the application does not allow {kind} objects"
                )
            return (group, kind, "", name)
        if not isinstance(namespace, str) or not namespace:
            raise TemplateProblem(
                f"{prefix}: {kind} {name!r} has no metadata.namespace; use {{{{ release.namespace }}}}"
            )
        if namespace not in allowed:
            raise TemplateProblem(
                f"{prefix}: {kind} {name!r} is in namespace {namespace!r}, outside the application's namespaces "
                f"({', '.join(allowed)})"
            )
        return (group, kind, namespace, name)


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
