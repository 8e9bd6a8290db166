"""Request bodies and objects as the API server reads them: decoding (JSON, or YAML where allowed),
checking kind and apiVersion against the resource, Secret `stringData`, the patch media types and
applying a patch of one of them, and the small copies and views the writes need."""

import base64
import json
import random
from typing import Any

import yaml

from simulator import errors
from simulator.errors import ApiError
from simulator.patching import PatchError, json_patch, merge_patch, strategic_merge
from simulator.resources import ResourceType

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}


def random_suffix(length: int = 5) -> str:
    # Kubernetes' generateName avoids vowels to keep words out of names; any suffix works here.
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=length))  # noqa: S311


def parse_body(data: bytes, *, yaml_allowed: bool) -> Any:
    """Decode a request body as JSON (or YAML, a superset of it, where the API accepts YAML)."""
    if not data.strip():
        raise errors.bad_request("the request body is empty")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if not yaml_allowed:
            raise errors.bad_request(f"the body of the request was in an unknown format: {exc}") from exc
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"error converting YAML to JSON: {exc}") from exc


def apply_patch(kind: str, target: dict[str, Any], body: Any) -> Any:
    """`target` patched by `body`, a patch of `kind` (json, merge or strategic); a bad patch is an ApiError."""
    try:
        if kind == "json":
            return json_patch(target, body)
        if not isinstance(body, dict):
            raise errors.bad_request("a merge patch must be a JSON object")
        return merge_patch(target, body) if kind == "merge" else strategic_merge(target, body)
    except PatchError as exc:
        raise ApiError(exc.code, f"the patch could not be applied: {exc}") from exc


def check_body(rt: ResourceType, body: Any) -> dict[str, Any]:
    """A copy of `body` as an object of `rt`: kind and apiVersion checked and filled in."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a Kubernetes object (a JSON/YAML mapping)")
    obj = clone(body)
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind is not None and kind != rt.kind:
        raise errors.bad_request(f"the kind {kind!r} does not match the resource {rt.plural} (kind {rt.kind})")
    if api_version is not None and api_version != rt.api_version:
        raise errors.bad_request(f"the apiVersion {api_version!r} does not match {rt.api_version!r}")
    obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
    if rt.kind == "Secret":
        _secret_string_data(obj)
    return obj


def _secret_string_data(obj: dict[str, Any]) -> None:
    """As the API server: a Secret's write-only `stringData` is merged into `data` (base64), type Opaque."""
    obj.setdefault("type", "Opaque")
    string_data = obj.get("stringData")
    if isinstance(string_data, dict) and all(isinstance(v, str) for v in string_data.values()):
        data: dict[str, Any] = obj["data"] if isinstance(obj.get("data"), dict) else {}
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()})
        obj["data"] = data
        del obj["stringData"]


def clone(obj: Any) -> Any:
    """A deep copy of JSON data; a JSON round trip is several times faster than copy.deepcopy."""
    return json.loads(json.dumps(obj))


def spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: a change here is a new generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
