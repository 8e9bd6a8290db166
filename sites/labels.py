"""Kubernetes-style label selectors over Site.labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
`k notin (a,b)`, `k` (exists) and `!k` (does not exist), joined by commas (AND).

`LabelSelector.parse` raises Invalid with the offending term, against the field the selector came in
(`labels` by default; a plan's is in `target`); `filter` turns the selector into a database query that
works on SQLite and PostgreSQL; `matches` checks a dict in memory.

A selector is bounded (MAX_SELECTOR_LENGTH characters, MAX_TERMS terms, MAX_SET_VALUES values in a set):
each term is a condition in one SQL WHERE, and 800 of them made SQLite refuse the expression tree and
PostgreSQL plan for a long time. Real selectors have a few terms.
"""

import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet

from fleet.errors import Invalid
from sites.models import Site
from sites.validators import LABEL_KEY_RE, LABEL_VALUE_RE

_SET_TERM = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")
MAX_SELECTOR_LENGTH = 4096
MAX_TERMS = 50
MAX_SET_VALUES = 200


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def q(self) -> Q:
        has_key = Q(labels__has_key=self.key)
        value_in = _value_in(self.key, self.values)
        if self.op == "in":
            return has_key & value_in
        if self.op == "notin":
            # Like Kubernetes, `k notin (..)` and `k != v` also match sites without the key.
            return ~has_key | (has_key & ~value_in)
        if self.op == "exists":
            return has_key
        return ~has_key

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "in":
            return labels.get(self.key) in self.values
        if self.op == "notin":
            return labels.get(self.key) not in self.values
        if self.op == "exists":
            return self.key in labels
        return self.key not in labels


def _value_in(key: str, values: tuple[str, ...]) -> Q:
    """The label `key` holds one of `values`. On PostgreSQL as containment (`labels @> {"tier": "1"}`), which
    the planner estimates from the column's statistics: a comparison of `labels -> 'tier'` it guesses at 0.5 %
    of the rows, so a selector that matched a sixth of 30000 sites read every site of the page's other filters
    and sorted them, instead of walking the code index to the first page. SQLite has no containment."""
    if connection.vendor != "postgresql":
        return Q(**{f"labels__{key}__in": list(values)})
    condition = Q()
    for value in values:
        condition |= Q(labels__contains={key: value})
    return condition


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str, *, field: str = "labels") -> "LabelSelector":
        """Parse a selector; Invalid against `field` when it is malformed or larger than the bounds."""
        try:
            return cls._parse(text)
        except Invalid as exc:
            raise Invalid(exc.message, field=field) from None

    @classmethod
    def _parse(cls, text: str) -> "LabelSelector":
        if len(text) > MAX_SELECTOR_LENGTH:
            raise Invalid(f"a label selector is at most {MAX_SELECTOR_LENGTH} characters, not {len(text)}")
        terms = [t for t in _split_terms(text) if t.strip()]
        if not terms:
            raise Invalid("a label selector needs at least one term, e.g. region=us-south")
        if len(terms) > MAX_TERMS:
            raise Invalid(f"a label selector has at most {MAX_TERMS} terms, not {len(terms)}")
        return cls(tuple(_parse_term(term) for term in terms))

    def filter(self, queryset: QuerySet[Site]) -> QuerySet[Site]:
        condition = Q()
        for requirement in self.requirements:
            condition &= requirement.q()
        return queryset.filter(condition)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise Invalid(f"unbalanced ')' in label selector {text!r}")
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise Invalid(f"unbalanced '(' in label selector {text!r}")
    terms.append("".join(current))
    return terms


def _parse_term(term: str) -> Requirement:
    if match := _SET_TERM.match(term):
        values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
        if not values:
            raise Invalid(f"{term.strip()!r}: a set needs at least one value")
        if len(values) > MAX_SET_VALUES:
            raise Invalid(f"{term.strip()[:60]!r}...: a set has at most {MAX_SET_VALUES} values, not {len(values)}")
        requirement = Requirement(_key(match["key"], term), match["op"], values)
    elif match := _EQ_TERM.match(term):
        requirement = Requirement(_key(match["key"], term), "notin" if match["op"] == "!=" else "in", (match["value"],))
    elif match := _EXISTS_TERM.match(term):
        requirement = Requirement(_key(match["key"], term), "!exists" if match["neg"] else "exists")
    else:
        raise Invalid(f"{term.strip()!r} is not a label selector term (k=v, k!=v, k in (a,b), k, !k)")
    for value in requirement.values:
        if not LABEL_VALUE_RE.match(value):
            raise Invalid(f"{term.strip()!r}: {value!r} is not a valid label value")
    return requirement


def _key(key: str, term: str) -> str:
    if not LABEL_KEY_RE.match(key) or "__" in key:
        raise Invalid(f"{term.strip()!r}: {key!r} is not a valid label key")
    return key
