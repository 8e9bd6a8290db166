"""Label and field selector parsing and matching (pure functions, no server)."""

import pytest

from simulator.selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector,
)

LABELS = {"app": "pos", "tier": "front", "version": "3"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=pos", True),
        ("app==pos", True),
        ("app!=pos", False),
        ("app!=kds", True),
        ("missing!=x", True),
        ("app in (pos, kds)", True),
        ("app notin (pos,kds)", False),
        ("tier notin (back)", True),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("app=pos,tier in (front),!missing", True),
        ("app=pos,tier=back", False),
        ("version>2", True),
        ("version<2", False),
        ("", True),
    ],
)
def test_label_selector_operators(selector: str, expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), LABELS) is expected


@pytest.mark.parametrize("selector", ["app=", "app in (", "app in ()", "=pos", "a b c", "app=p@s", "version>x", ",,"])
def test_bad_label_selectors_are_refused(selector: str) -> None:
    if selector == "app=":
        # An empty value is valid in Kubernetes ("label present with an empty value").
        assert not labels_match(parse_label_selector(selector), LABELS)
        return
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_field_selector_only_allows_declared_fields() -> None:
    terms = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", ("spec.nodeName", "status.phase"))
    assert fields_match(terms, {"spec.nodeName": "n1", "status.phase": "Running"})
    assert not fields_match(terms, {"spec.nodeName": "n2", "status.phase": "Running"})
    assert not fields_match(terms, {"spec.nodeName": "n1", "status.phase": "Failed"})
    with pytest.raises(SelectorError, match="not supported"):
        parse_field_selector("spec.replicas=1", ("metadata.name",))


def test_label_selector_objects_match_expressions() -> None:
    match = selector_from_label_selector(
        {"matchLabels": {"app": "pos"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}
    )
    assert match(LABELS)
    assert not match({"app": "pos", "tier": "back"})
    assert not selector_from_label_selector(None)(LABELS)
    assert selector_from_label_selector({})(LABELS)
