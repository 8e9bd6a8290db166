"""The four PATCH flavours of the Kubernetes API, applied to plain JSON-like dicts.

- JSON merge patch (RFC 7386): objects merge recursively, `null` deletes, lists are replaced.
- Strategic merge patch: like merge patch, but lists of named items (containers, env, volumes,
  conditions, ...) merge item by item on their merge key, `$patch: delete|replace` directives are
  honoured and kubectl's `$setElementOrder/...` / `$retainKeys` bookkeeping keys are ignored. This
  approximates the server's schema-driven behaviour with a table of the merge keys that matter.
- JSON patch (RFC 6902): add, remove, replace, move, copy, test.
- Server-side apply is treated as a strategic merge of the applied configuration, and `drop_unapplied`
  removes what a manager applied before and applies no longer (see simulator.apiserver).
"""

import copy
from typing import Any

# Field name -> the key that identifies an item in a list of that name (Kubernetes' patchMergeKey).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "addresses": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# Lists of scalars that strategic merge treats as sets rather than replacing them.
MERGED_SCALAR_LISTS = {"finalizers"}


class PatchError(ValueError):
    """The patch cannot be applied; `code` is the HTTP status the API answers with."""

    def __init__(self, message: str, code: int = 422):
        super().__init__(message)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge patch over `target` (neither is modified)."""
    if not isinstance(patch, dict):
        if isinstance(patch, list):
            return _merge_list(target if isinstance(target, list) else [], patch, field)
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [item for item in result[name] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = strategic_merge(result.get(key), value, key)
        if merged is None and isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = merged
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(target: list[Any], patch: list[Any], field: str) -> list[Any]:
    merge_key = MERGE_KEYS.get(field)
    if field in MERGED_SCALAR_LISTS and all(not isinstance(item, dict | list) for item in patch):
        merged = list(target)
        merged += [item for item in patch if item not in merged]
        return merged
    if merge_key is None or not all(isinstance(item, dict) for item in patch):
        # A `$patch: replace` marker item (or a list without a merge key) replaces the whole list.
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and item.get("$patch"))]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if item.get("$patch") != "replace"]
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        key = item.get(merge_key)
        index = next(
            (i for i, existing in enumerate(result) if isinstance(existing, dict) and existing.get(merge_key) == key),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(strategic_merge({}, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def drop_unapplied(target: dict[str, Any], previous: dict[str, Any], current: dict[str, Any], field: str = "") -> None:
    """Remove from `target` what `previous` (a manager's last apply) set and `current` (its new apply)
    no longer sets: map keys, and items of lists merged by key (containers, env, ...)."""
    for key, before in previous.items():
        if key in ("apiVersion", "kind") or key not in target:
            continue
        if key not in current:
            del target[key]
        elif isinstance(before, dict) and isinstance(current[key], dict) and isinstance(target[key], dict):
            drop_unapplied(target[key], before, current[key], key)
        elif isinstance(before, list) and isinstance(current[key], list) and isinstance(target[key], list):
            merge_key = MERGE_KEYS.get(key)
            if merge_key is None:
                continue
            now = {i.get(merge_key): i for i in current[key] if isinstance(i, dict)}
            gone = {i.get(merge_key) for i in before if isinstance(i, dict)} - set(now)
            target[key] = [i for i in target[key] if not (isinstance(i, dict) and i.get(merge_key) in gone)]
            for item in target[key]:
                if not isinstance(item, dict):
                    continue
                was = next((i for i in before if isinstance(i, dict) and i.get(merge_key) == item.get(merge_key)), None)
                if was is not None and item.get(merge_key) in now:
                    drop_unapplied(item, was, now[item.get(merge_key)], key)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"path {path!r} does not exist")
            doc = doc[part]
        elif isinstance(doc, list):
            doc = doc[_index(doc, part, path, allow_end=False)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return doc


def _index(doc: list[Any], part: str, path: str, *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(doc)
    if not part.isdigit():
        raise PatchError(f"invalid array index {part!r} in {path!r}")
    index = int(part)
    if index > len(doc) or (index == len(doc) and not allow_end):
        raise PatchError(f"array index {index} out of range in {path!r}")
    return index


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), copy.deepcopy(value))
    else:
        raise PatchError(f"cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, path, allow_end=False))
    raise PatchError(f"path {path!r} does not exist")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; any failing operation fails the whole patch."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations", code=400)
    doc = copy.deepcopy(target)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise PatchError(f"operation {number} needs string 'op' and 'path'", code=400)
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {number} ({kind}) needs a 'value'", code=400)
        if kind == "add":
            doc = _add(doc, path, op["value"])
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            _walk(doc, _pointer(path), path)  # must exist
            doc, _ = _remove(doc, path) if _pointer(path) else (doc, None)
            doc = _add(doc, path, op["value"])
        elif kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"operation {number} ({kind}) needs 'from'", code=400)
            value = copy.deepcopy(_walk(doc, _pointer(source), source))
            if kind == "move":
                doc, _ = _remove(doc, source)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _walk(doc, _pointer(path), path) != op["value"]:
                raise PatchError(f"test operation failed at {path!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}", code=400)
    return doc
