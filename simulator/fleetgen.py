"""Deterministic fleet generation: the same seed gives the same site codes, names, regions, time zones
and machines, so a test or a rehearsal can name `TX-0412` and find it again.

Secrets (API tokens, join tokens) are not derived from the seed: they are random and persisted in the
state directory's fleet.json, so restarting with the same state directory keeps them.
"""

import random
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# (state, region, IANA time zone, markets): markets are metro areas a restaurant chain groups sites by.
STATES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("TX", "south-central", "America/Chicago", ("Austin", "Dallas", "Houston", "San Antonio", "El Paso")),
    ("CA", "west", "America/Los_Angeles", ("Los Angeles", "San Diego", "Sacramento", "San Jose", "Fresno")),
    ("FL", "southeast", "America/New_York", ("Miami", "Orlando", "Tampa", "Jacksonville")),
    ("NY", "northeast", "America/New_York", ("New York", "Buffalo", "Albany", "Rochester")),
    ("IL", "midwest", "America/Chicago", ("Chicago", "Springfield", "Peoria")),
    ("GA", "southeast", "America/New_York", ("Atlanta", "Savannah", "Augusta")),
    ("OH", "midwest", "America/New_York", ("Columbus", "Cleveland", "Cincinnati")),
    ("AZ", "southwest", "America/Phoenix", ("Phoenix", "Tucson", "Mesa")),
    ("CO", "mountain", "America/Denver", ("Denver", "Colorado Springs", "Boulder")),
    ("WA", "northwest", "America/Los_Angeles", ("Seattle", "Spokane", "Tacoma")),
    ("NC", "southeast", "America/New_York", ("Charlotte", "Raleigh", "Durham")),
    ("MI", "midwest", "America/Detroit", ("Detroit", "Grand Rapids", "Lansing")),
    ("TN", "south-central", "America/Chicago", ("Nashville", "Memphis", "Knoxville")),
    ("UT", "mountain", "America/Denver", ("Salt Lake City", "Provo")),
    ("IN", "midwest", "America/Indiana/Indianapolis", ("Indianapolis", "Fort Wayne")),
    ("AK", "northwest", "America/Anchorage", ("Anchorage",)),
    ("HI", "pacific", "Pacific/Honolulu", ("Honolulu",)),
)
# Weights roughly follow where a national chain has its restaurants.
WEIGHTS = (14, 12, 10, 8, 6, 6, 5, 5, 4, 4, 4, 4, 3, 2, 2, 1, 1)
BRANDS = ("Rosa's Cantina", "Blue Ember Grill", "Harbor Burger", "Golden Wok", "Papa Nonna's", "Smoky Pines BBQ")
PLACES = ("Main St", "Mall", "Airport", "Downtown", "Riverside", "Northgate", "Westfield", "University", "Station")
HARDWARE = ("Intel NUC 11 Pro", "Intel NUC 12 Pro", "ASUS NUC 13 Pro")
K3S_VERSION = "v1.31.4+k3s1"


@dataclass
class NodeSpec:
    """One machine at a site."""

    serial: str
    hostname: str
    role: str
    mac: str


@dataclass
class SiteSpec:
    """One location: what fleet.json says about it (the api_url is filled in once the port is known)."""

    code: str
    name: str
    region: str
    market: str
    timezone: str
    token: str
    k3s_token: str
    nodes: list[NodeSpec] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def to_json(self, *, api_url: str, repo_url: str) -> dict[str, Any]:
        data = asdict(self)
        data.update(api_url=api_url, repo_url=repo_url, k3s_server_url=api_url)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SiteSpec":
        return cls(
            code=data["code"],
            name=data["name"],
            region=data["region"],
            market=data.get("market", ""),
            timezone=data["timezone"],
            token=data["token"],
            k3s_token=data.get("k3s_token") or secrets.token_hex(16),
            nodes=[NodeSpec(**{k: n[k] for k in ("serial", "hostname", "role", "mac")}) for n in data["nodes"]],
            labels=dict(data.get("labels") or {}),
        )


def node_hostname(code: str, role: str, index: int) -> str:
    return f"{code.lower()}-{'srv' if role == 'server' else 'agt'}-{index}"


def mac_address(rng: random.Random) -> str:
    # 94:c6:91 is an Intel OUI, as on the NUCs restaurants run.
    return "94:c6:91:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def serial_number(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return "G6" + "".join(rng.choice(alphabet) for _ in range(10))


def unique(draw: Callable[[random.Random], str], rng: random.Random, used: set[str]) -> str:
    """Draw until the value is new: 3000 sites draw ~7500 MACs from 2**24, so a repeat is likely
    (birthday bound), and two machines must never share a MAC or a serial. Only a repeat draws again,
    so a seed's fleet stays the same up to the first collision."""
    while True:
        value = draw(rng)
        if value not in used:
            used.add(value)
            return value


def generate(count: int, seed: int) -> list[SiteSpec]:
    """`count` sites, the same for the same seed; codes are unique."""
    rng = random.Random(seed)  # noqa: S311 - deterministic fixtures, not secrets
    sites: list[SiteSpec] = []
    used: set[str] = set()  # site codes, serials and MACs handed out so far: each must be unique
    for _ in range(count):
        state, region, tz, markets = rng.choices(STATES, weights=WEIGHTS)[0]
        while True:
            code = f"{state}-{rng.randrange(1, 10000):04d}"
            if code not in used:
                used.add(code)
                break
        market = rng.choice(markets)
        name = f"{rng.choice(BRANDS)} {market} {rng.choice(PLACES)} #{int(code[3:])}"
        agents = rng.choice((1, 2, 2))
        nodes = [
            NodeSpec(
                unique(serial_number, rng, used),
                node_hostname(code, "server", 1),
                "server",
                unique(mac_address, rng, used),
            )
        ]
        nodes += [
            NodeSpec(
                unique(serial_number, rng, used),
                node_hostname(code, "agent", i + 1),
                "agent",
                unique(mac_address, rng, used),
            )
            for i in range(agents)
        ]
        labels = {"region": region, "market": market.lower().replace(" ", "-"), "state": state}
        sites.append(
            SiteSpec(
                code=code,
                name=name,
                region=region,
                market=market,
                timezone=tz,
                token=secrets.token_urlsafe(24),
                k3s_token=secrets.token_hex(16),
                nodes=nodes,
                labels=labels,
            )
        )
    return sites


def reconcile(previous: list[SiteSpec], count: int, seed: int) -> list[SiteSpec]:
    """The fleet to serve: sites already in the state directory keep everything (tokens included);
    a larger `count` adds generated sites after them, a smaller one serves the first `count`."""
    kept = previous[:count]
    if len(kept) == count:
        return kept
    taken = {s.code for s in kept}
    extra = [s for s in generate(count + len(previous), seed) if s.code not in taken]
    return kept + extra[: count - len(kept)]
