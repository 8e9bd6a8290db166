"""The fleet a simulator serves: deterministic generation, the state directory, restarts."""

import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from kubernetes import client

from simulator.cli import parse_args
from simulator.faults import FaultError, parse_cli_fault
from simulator.fleetgen import generate, reconcile
from simulator.testing import SimulatorError, running_simulator
from tests.simulator.checkout import Checkout
from tests.support import wait_until

pytestmark = pytest.mark.integration


def _public(sites: list) -> list:
    return [
        (s.code, s.name, s.region, s.timezone, [(n.serial, n.hostname, n.role, n.mac) for n in s.nodes]) for s in sites
    ]


def test_same_seed_same_fleet() -> None:
    assert _public(generate(50, seed=3)) == _public(generate(50, seed=3))
    assert _public(generate(50, seed=3)) != _public(generate(50, seed=4))
    sites = generate(300, seed=11)
    assert len({s.code for s in sites}) == 300
    for site in sites:
        assert re.fullmatch(r"[A-Z]{2}-\d{4}", site.code)
        assert ZoneInfo(site.timezone) and site.region and site.name
        roles = [n.role for n in site.nodes]
        assert roles[0] == "server" and 2 <= len(roles) <= 3 and roles.count("server") == 1
        assert all(re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", n.mac) for n in site.nodes)
    assert len({s.token for s in sites}) == 300  # secrets are random, not derived from the seed


def test_reconcile_keeps_known_sites_and_tops_up() -> None:
    first = generate(3, seed=5)
    grown = reconcile(first, 5, seed=5)
    assert [s.token for s in grown[:3]] == [s.token for s in first] and len(grown) == 5
    assert len({s.code for s in grown}) == 5
    assert reconcile(grown, 2, seed=5) == grown[:2]


def test_state_directory_and_restart(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    with running_simulator(sites=2, state_dir=state, seed=21, sync_interval=0.3) as sim:
        fleet = sim.fleet
        info = json.loads((state / "simulator.json").read_text())
        assert info["port"] > 0 and sim.base_url.endswith(f":{info['port']}")
        assert f"2 sites on {sim.base_url}" in (state / "simulator.log").read_text()
        assert (state / "admin-token").stat().st_mode & 0o077 == 0
        for site in fleet["sites"]:
            assert set(site) >= {"code", "name", "region", "timezone", "api_url", "token", "repo_url", "nodes"}
            assert site["api_url"] == f"{sim.base_url}/sites/{site['code']}"
            assert site["repo_url"] == (state / "repos" / f"{site['code']}.git").resolve().as_uri()
            assert (state / "repos" / f"{site['code']}.git" / "HEAD").exists()
            kubeconfig = yaml.safe_load(sim.kubeconfig_path(site["code"]).read_text())
            assert kubeconfig["users"][0]["user"]["token"] == site["token"]
            assert kubeconfig["clusters"][0]["cluster"]["server"] == site["api_url"]
        code = fleet["sites"][0]["code"]
        work = Checkout(fleet["sites"][0]["repo_url"], tmp_path / "work")
        work.commit({"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n"}, "m")
        wait_until(lambda: sim.summary(code)["sync"]["applied"], what="first sync")
        assert sim.stop() == 0  # SIGTERM is a clean exit

    with running_simulator(sites=2, state_dir=state, seed=21, sync_interval=0.3) as again:
        assert [(s["code"], s["token"]) for s in again.fleet["sites"]] == [
            (s["code"], s["token"]) for s in fleet["sites"]
        ]
        assert again.admin_token == sim.admin_token
        api = again.api_client(code)
        # The repository survived the restart and the agent applies it again into the fresh cluster.
        wait_until(
            lambda: any(
                c.metadata.name == "kept" for c in client.CoreV1Api(api).list_namespaced_config_map("default").items
            ),
            what="re-applied after restart",
        )
        api.close()


def test_command_line_faults() -> None:
    assert parse_cli_fault("api_error:0.05") == {"kind": "api_error", "site": None, "rate": 0.05}
    assert parse_cli_fault("slow:1:0.3@TX-0412") == {"kind": "slow", "site": "TX-0412", "rate": 1.0, "seconds": 0.3}
    config = parse_args(["--state-dir", "/tmp/x", "--fault", "node_death@tx-0412-agt-1", "--sync-latency", "2"])
    assert config.faults == [
        {"kind": "node_death", "site": None, "node": "tx-0412-agt-1"},
        {"kind": "sync_delay", "site": None, "rate": 1.0, "seconds": 2.0},
    ]
    with pytest.raises(FaultError):
        parse_cli_fault("slow:often")


def test_unknown_cli_fault_kind_stops_the_simulator(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match="unknown fault kind"):
        with running_simulator(sites=1, state_dir=tmp_path / "bad", extra_args=["--fault", "meteor:1"]):
            pass


def test_a_large_generated_fleet_has_no_repeated_mac_or_serial() -> None:
    from simulator.fleetgen import generate

    sites = generate(3000, seed=0)

    macs = [node.mac for site in sites for node in site.nodes]
    serials = [node.serial for site in sites for node in site.nodes]
    assert len(set(macs)) == len(macs)
    assert len(set(serials)) == len(serials)
