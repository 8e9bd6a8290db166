"""What a revision of a site repository asks for: the objects of its root kustomization (resources: files
or directories with their own kustomization, a `namespace` override), else of every YAML file; each
checked (kind known, valid, defined once) and ordered namespaces first. Any problem is a `ManifestError`
carrying the Flux condition reason to report, so a revision is applied all or nothing."""

import posixpath
from typing import Any

import yaml

from simulator.resources import ResourceType, lookup
from simulator.validation import validate

KUSTOMIZE_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class ManifestError(Exception):
    """The revision cannot be applied; `reason` is the Flux condition reason to report."""

    def __init__(self, message: str, reason: str = "BuildFailed"):
        super().__init__(message)
        self.reason = reason


def _load_documents(path: str, content: bytes) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(content))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from exc
    objects = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"{path}: document {index} is not a mapping")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            objects += [item for item in doc["items"] if isinstance(item, dict)]
        else:
            objects.append(doc)
    return objects


def _kustomize(files: dict[str, bytes], directory: str, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Objects listed by `directory`'s kustomization (resources: files or directories with their own)."""
    name = next((f"{directory}{n}" for n in KUSTOMIZE_FILES if f"{directory}{n}" in files), None)
    if name is None:
        raise ManifestError(f"{directory or './'}: no kustomization.yaml")
    if name in seen:
        raise ManifestError(f"{name}: cycle in kustomization resources")
    seen.add(name)
    try:
        config = yaml.safe_load(files[name]) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"{name}: invalid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(config, dict):
        raise ManifestError(f"{name}: not a mapping")
    found: list[tuple[str, dict[str, Any]]] = []
    for entry in config.get("resources") or []:
        if not isinstance(entry, str):
            raise ManifestError(f"{name}: resources entries must be paths")
        path = posixpath.normpath(posixpath.join(directory, entry))
        if path.startswith(".."):
            raise ManifestError(f"{name}: resource {entry} is outside the repository")
        if path in files:
            found += [(path, obj) for obj in _load_documents(path, files[path])]
        elif any(f.startswith(path + "/") for f in files):
            found += _kustomize(files, path + "/", seen)
        else:
            raise ManifestError(f"{name}: resource {entry} not found")
    namespace = config.get("namespace")
    if isinstance(namespace, str) and namespace:
        for _, obj in found:
            rt = lookup(str(obj.get("apiVersion")), str(obj.get("kind")))
            if rt is not None and rt.namespaced:
                obj.setdefault("metadata", {})["namespace"] = namespace
    return found


def collect(files: dict[str, bytes]) -> list[tuple[ResourceType, dict[str, Any]]]:
    """The objects a revision asks for: a root kustomization's resources, else every YAML file."""
    if any(n in files for n in KUSTOMIZE_FILES):
        found = _kustomize(files, "", set())
    else:
        found = [
            (path, obj)
            for path in sorted(files)
            if path.endswith((".yaml", ".yml")) and not path.startswith(".")
            for obj in _load_documents(path, files[path])
        ]
    result: list[tuple[ResourceType, dict[str, Any]]] = []
    seen: set[tuple[str, str, str]] = set()
    for path, obj in found:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        meta = obj.get("metadata")
        if not isinstance(api_version, str) or not isinstance(kind, str) or not isinstance(meta, dict):
            raise ManifestError(f"{path}: every object needs apiVersion, kind and metadata")
        rt = lookup(api_version, kind)
        if rt is None:
            raise ManifestError(
                f"{path}: no matches for kind {kind!r} in version {api_version!r}", reason="ReconciliationFailed"
            )
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        causes = validate(rt, obj)
        if causes:
            detail = "; ".join(f"{field}: {msg}" for field, msg in causes)
            raise ManifestError(
                f"{kind}/{meta.get('name')} ({path}) is invalid: {detail}", reason="ReconciliationFailed"
            )
        key = (rt.plural, meta.get("namespace", ""), meta["name"])
        if key in seen:
            raise ManifestError(f"{kind}/{meta['name']} is defined more than once", reason="BuildFailed")
        seen.add(key)
        result.append((rt, obj))
    # Namespaces first, as kustomize orders them, so that what lives in them can be created.
    result.sort(key=lambda item: 0 if item[0].kind == "Namespace" else 1)
    return result
