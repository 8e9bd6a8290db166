"""The PATCH flavours on plain dicts: JSON merge patch, strategic merge, JSON patch."""

from typing import Any

import pytest

from simulator.patching import PatchError, json_patch, merge_patch, strategic_merge

DEPLOY: dict[str, Any] = {
    "metadata": {"name": "pos", "labels": {"app": "pos", "tier": "front"}},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "pos",
                        "image": "pos:1",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    },
                    {"name": "sidecar", "image": "side:1"},
                ]
            }
        }
    },
}


def test_merge_patch_replaces_lists_and_null_deletes() -> None:
    patched = merge_patch(
        DEPLOY,
        {
            "metadata": {"labels": {"tier": None, "new": "x"}},
            "spec": {"template": {"spec": {"containers": [{"name": "only"}]}}},
        },
    )
    assert patched["metadata"]["labels"] == {"app": "pos", "new": "x"}
    assert patched["spec"]["template"]["spec"]["containers"] == [{"name": "only"}]
    assert DEPLOY["metadata"]["labels"]["tier"] == "front"  # the input is not modified


def test_strategic_merge_merges_named_lists_by_key() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "pos",
                            "image": "pos:2",
                            "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                        },
                        {"name": "sidecar", "$patch": "delete"},
                    ]
                }
            }
        }
    }
    containers = strategic_merge(DEPLOY, patch)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["pos"]
    assert containers[0]["image"] == "pos:2"
    assert containers[0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]


def test_strategic_merge_ignores_kubectl_bookkeeping_and_honours_replace() -> None:
    patch = {
        "metadata": {"labels": {"$patch": "replace", "only": "this"}},
        "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "pos"}]}}},
    }
    patched = strategic_merge(DEPLOY, patch)
    assert patched["metadata"]["labels"] == {"only": "this"}
    assert "$setElementOrder/containers" not in patched["spec"]["template"]["spec"]


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2, 3]}, "c": "x"}
    patched = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 4},
            {"op": "remove", "path": "/a/b/0"},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "test", "path": "/e", "value": "y"},
            {"op": "add", "path": "/a~1b", "value": True},
        ],
    )
    assert patched == {"a": {"b": [2, 3, 4]}, "c": "y", "e": "y", "a/b": True}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/c", "value": "nope"}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/a/b/9", "value": 1}],
        [{"op": "frobnicate", "path": "/c"}],
        {"op": "add"},
    ],
)
def test_json_patch_failures(ops: object) -> None:
    with pytest.raises(PatchError):
        json_patch({"a": {"b": [1]}, "c": "x"}, ops)
