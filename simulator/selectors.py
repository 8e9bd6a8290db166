"""Label and field selectors, parsed once per request and matched against stored objects.

Label selectors follow the Kubernetes grammar: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`,
`k` (exists), `!k` (does not exist), `k>n`, `k<n`, joined by commas. Field selectors support `=`, `==`
and `!=` on the fields the resource type declares (e.g. `spec.nodeName` for pods).
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_KEY_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_KEY_NAME}$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_SET_REQ = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_OP_REQ = re.compile(r"^(?P<key>[^!=<>\s]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<value>\S*)$")


class SelectorError(ValueError):
    """The selector text does not parse; the message says which part."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present:
            return False
        try:
            number = int(value or "")
        except ValueError:
            return False
        return number > int(self.values[0]) if self.op == ">" else number < int(self.values[0])


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parenthesis in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unbalanced parenthesis in {text!r}")
    parts.append("".join(current))
    return parts


def label_key_valid(key: str) -> bool:
    return bool(_KEY.match(key))


def label_value_valid(value: str) -> bool:
    return bool(_VALUE.match(value))


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector; an empty or missing one matches everything."""
    if not text or not text.strip():
        return ()
    requirements = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"empty requirement in selector {text!r}")
        if match := _SET_REQ.match(part):
            values = tuple(_check_value(v.strip(), text) for v in match["values"].split(",") if v.strip())
            if not values:
                raise SelectorError(f"{match['op']} needs at least one value in selector {text!r}")
            requirements.append(Requirement(_check_key(match["key"], text), match["op"], values))
        elif part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), text), "!"))
        elif match := _OP_REQ.match(part):
            op = "=" if match["op"] == "==" else match["op"]
            value = match["value"]
            if op in (">", "<"):
                if not re.fullmatch(r"-?\d+", value):
                    raise SelectorError(f"{op} needs an integer in selector {text!r}")
            else:
                _check_value(value, text)
            requirements.append(Requirement(_check_key(match["key"], text), op, (value,)))
        elif re.fullmatch(r"\S+", part):
            requirements.append(Requirement(_check_key(part, text), "exists"))
        else:
            raise SelectorError(f"unable to parse requirement {part!r} in selector {text!r}")
    return tuple(requirements)


def labels_match(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in requirements)


def parse_field_selector(text: str | None, allowed: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """Parse `field=value,field!=value`; each field must be one `allowed` for the resource type."""
    if not text or not text.strip():
        return ()
    terms = []
    for raw in text.split(","):
        part = raw.strip()
        match = re.fullmatch(r"(?P<field>[A-Za-z0-9_.\-]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^,]*)", part)
        if not match:
            raise SelectorError(f"invalid field selector term {part!r}")
        if match["field"] not in allowed:
            raise SelectorError(f"field label not supported: {match['field']}")
        terms.append((match["field"], "!=" if match["op"] == "!=" else "=", match["value"].strip()))
    return tuple(terms)


def fields_match(terms: tuple[tuple[str, str, str], ...], fields: Mapping[str, str]) -> bool:
    for name, op, value in terms:
        actual = fields.get(name, "")
        if (actual == value) != (op == "="):
            return False
    return True


def selector_from_label_selector(selector: Mapping[str, object] | None) -> Callable[[Mapping[str, str]], bool]:
    """A matcher for a `metav1.LabelSelector` object (matchLabels + matchExpressions), as workloads carry.

    An absent selector matches nothing (as Kubernetes does for PodDisruptionBudgets); an empty one everything.
    """
    if selector is None:
        return lambda labels: False
    requirements: list[Requirement] = []
    match_labels = selector.get("matchLabels") or {}
    if isinstance(match_labels, Mapping):
        requirements += [Requirement(str(k), "=", (str(v),)) for k, v in match_labels.items()]
    expressions = selector.get("matchExpressions") or []
    if isinstance(expressions, list):
        for expr in expressions:
            if not isinstance(expr, Mapping):
                continue
            op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(str(expr.get("operator")))
            if op is None:
                continue
            values = tuple(str(v) for v in (expr.get("values") or []))
            requirements.append(Requirement(str(expr.get("key")), op, values))
    frozen = tuple(requirements)
    return lambda labels: labels_match(frozen, labels)
