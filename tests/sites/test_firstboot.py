"""edge/firstboot.py, run as the factory image runs it (a subprocess, --dry-run) against the real control
plane served by live_server: it registers, writes the K3s config and the node token, and stops on a 403."""

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sites import devices, services
from sites.choices import NodeState
from sites.models import Node
from tests.factories import NodeFactory, SiteFactory

SCRIPT = Path(__file__).resolve().parents[2] / "edge" / "firstboot.py"
MAC = "52:54:00:aa:bb:01"

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _firstboot(tmp_path: Path, run: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the script with a fake /sys and /proc, so it reads DMI, MAC and memory as on a machine."""
    sys_root, proc_root = tmp_path / "sys", tmp_path / "proc"
    (sys_root / "class/dmi/id").mkdir(parents=True, exist_ok=True)
    (sys_root / "class/dmi/id/product_serial").write_text("SN-1\n")
    (sys_root / "class/dmi/id/product_name").write_text("NUC13ANHi5\n")
    (sys_root / "class/net/eno1/device").mkdir(parents=True, exist_ok=True)
    (sys_root / "class/net/eno1/address").write_text(MAC + "\n")
    proc_root.mkdir(exist_ok=True)
    (proc_root / "meminfo").write_text("MemTotal:       16318440 kB\nMemFree: 1 kB\n")
    (proc_root / "net").mkdir(exist_ok=True)
    (proc_root / "net/route").write_text("Iface\tDestination\tGateway\neno1\t00000000\t0101A8C0\n")
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--url",
            url,
            "--bootstrap-file",
            str(tmp_path / "bootstrap.json"),
            "--config-dir",
            str(tmp_path / run / "k3s"),
            "--state-dir",
            str(tmp_path / run / "state"),
            "--sys-root",
            str(sys_root),
            "--proc-root",
            str(proc_root),
            "--attempts",
            "2",
            "--max-backoff",
            "0.1",
            "--timeout",
            "10",
            "--dry-run",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def token_file(tmp_path: Path, live_server: Any) -> str:
    site = SiteFactory(code="TX-0412")
    services.cluster_set_join_config(
        cluster=site.cluster, actor="t", source="t", server_url="https://10.0.0.1:6443", token="k3s-join-s3cret"
    )
    NodeFactory(serial="SN-1", mac=MAC, site=site, hostname="tx-0412-a", role="server", state=NodeState.PREREGISTERED)
    _token, plaintext = devices.bootstrap_token_issue(site=site, actor="t", source="t")
    (tmp_path / "bootstrap.json").write_text(
        json.dumps({"control_plane_url": live_server.url, "bootstrap_token": plaintext})
    )
    return plaintext


def test_firstboot_registers_and_writes_the_k3s_config(tmp_path: Path, live_server: Any, token_file: str) -> None:
    result = _firstboot(tmp_path, "first", live_server.url)

    assert result.returncode == 0, result.stderr
    node = Node.objects.get(serial="SN-1")
    assert node.state == NodeState.JOINING
    assert node.facts["memory_mb"] == 16318440 // 1024
    assert node.facts["model"] == "NUC13ANHi5"
    config = (tmp_path / "first/k3s/config.yaml").read_text()
    assert 'server: "https://10.0.0.1:6443"' in config
    assert 'token: "k3s-join-s3cret"' in config
    assert 'node-name: "tx-0412-a"' in config
    assert '"edgefleet.io/site=TX-0412"' in config
    node_token = tmp_path / "first/state/node-token"
    assert stat.S_IMODE(node_token.stat().st_mode) == 0o600
    assert node.credentials.get(revoked_at__isnull=True).token_hash == devices.hash_secret(
        node_token.read_text().strip()
    )
    assert "INSTALL_K3S_SKIP_DOWNLOAD=true" in result.stdout
    assert "K3S_URL=https://10.0.0.1:6443" in result.stdout
    assert "k3s-install.sh server" in result.stdout
    assert "k3s-join-s3cret" not in result.stdout  # the dry run does not print the join token


def test_firstboot_with_a_used_token_stops_with_the_403_message(
    tmp_path: Path, live_server: Any, token_file: str
) -> None:
    assert _firstboot(tmp_path, "first", live_server.url).returncode == 0

    again = _firstboot(tmp_path, "second", live_server.url)

    assert again.returncode == 2
    assert "registration refused" in again.stderr
    assert "already used" in again.stderr
    assert not (tmp_path / "second/k3s/config.yaml").exists()


def test_firstboot_on_a_machine_the_token_was_not_issued_for_stops_with_the_403_message(
    tmp_path: Path, live_server: Any, token_file: str
) -> None:
    result = _firstboot(tmp_path, "other", live_server.url, "--serial", "SN-2")

    assert result.returncode == 2
    assert "was not issued for machine SN-2" in result.stderr
    assert not (tmp_path / "other/k3s/config.yaml").exists()
    assert Node.objects.get(serial="SN-1").state == NodeState.PREREGISTERED


def test_firstboot_after_success_does_not_register_again(tmp_path: Path, live_server: Any, token_file: str) -> None:
    assert _firstboot(tmp_path, "first", live_server.url).returncode == 0

    rerun = _firstboot(tmp_path, "first", live_server.url)

    assert rerun.returncode == 0, rerun.stderr
    assert "already registered" in rerun.stderr
    assert "K3S_URL=https://10.0.0.1:6443" in rerun.stdout


def test_firstboot_gives_up_when_nothing_answers(tmp_path: Path, db: None) -> None:
    (tmp_path / "bootstrap.json").write_text(json.dumps({"bootstrap_token": "efb_x"}))

    result = _firstboot(tmp_path, "x", "http://127.0.0.1:9")  # the discard port: connection refused

    assert result.returncode == 3
    assert "after 2 attempts" in result.stderr
