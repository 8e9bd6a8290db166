"""`manage.py dev_faults STATE_DIR`: make `make dev`'s fleet show trouble. Once the two chosen sites are
onboarded (or after --wait seconds), the simulator takes one site offline (its cluster and machines stop
answering: the site becomes unreachable) and makes another fail (its GitOps agent reports a sync
failure: the site becomes degraded, and the demo rollout fails there), then both are probed at once.

The sites are the last two codes in alphabetical order (the demo rollout reaches them in its last wave),
or --offline / --failing; `--offline ''` or `--failing ''` leaves that fault out.
"""

import json
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.audit.choices import Source
from sites import services
from sites.choices import SiteState
from sites.models import Site

ACTOR = "system:dev_faults"


class Command(BaseCommand):
    help = "Inject make dev's faults into the simulator: one site offline, one failing (see the module)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("state_dir", type=Path, help="the simulator's --state-dir")
        parser.add_argument("--offline", default=None, help="site code to take offline (default: the last code)")
        parser.add_argument("--failing", default=None, help="site code whose sync fails (default: the one before)")
        parser.add_argument("--wait", type=float, default=300, help="seconds to wait for them to be onboarded")

    def handle(
        self, *args: Any, state_dir: Path, offline: str | None, failing: str | None, wait: float, **_: Any
    ) -> None:
        codes = list(
            Site.objects.exclude(state=SiteState.DECOMMISSIONED).order_by("-code").values_list("code", flat=True)
        )
        offline = codes[0] if offline is None and codes else offline
        failing = codes[1] if failing is None and len(codes) > 1 else failing
        chosen = [code for code in (offline, failing) if code]
        if not chosen:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if Site.objects.filter(code__in=chosen, state=SiteState.ACTIVE).count() == len(chosen):
                break
            time.sleep(2)
        info = json.loads((state_dir / "simulator.json").read_text())
        token = (state_dir / "admin-token").read_text().strip()
        context = ssl.create_default_context(cafile=info["ca_cert"]) if info.get("ca_cert") else None
        for code, kind in ((offline, "offline"), (failing, "sync_failure")):
            if code:
                _post(info["base_url"], token, context, {"kind": kind, "site": code, "rate": 1.0})
                self.stdout.write(f"dev fault: {code} {kind} (the simulator's control API, /_sim/faults)")
        sites = list(Site.objects.filter(code__in=chosen))
        services.site_probe_request(sites=sites, actor=ACTOR, source=Source.COMMAND)


def _post(base_url: str, token: str, context: ssl.SSLContext | None, body: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - the simulator's own URL, from its state directory
        f"{base_url}/_sim/faults", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            response.read()
    except OSError as exc:
        raise CommandError(f"the simulator refused the fault {body}: {exc}") from exc
