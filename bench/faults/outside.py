"""The experiments whose fault is outside the control plane: the edge (the sites' APIs and GitOps
agents) and the git host, one function each, registered with bench.faults.scenarios' `scenario`."""

import contextlib
import datetime as dt
import random
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.faults.experiment import Shape, run
from bench.faults.lab import Lab, Timeout, wait_until
from bench.faults.scenarios import log_count, scenario
from bench.faults.verdict import Outcome


@scenario
def edge(lab: Lab, scale: float = 1.0) -> Outcome:
    """The edge misbehaving: 20 % of API calls failing (api_error, throttle, timeout, slow: 5 % each),
    every sync delayed with a long tail (exponential), 5 % of sites offline for part of the rollout (half
    back before their site deadline, half not), one site answering garbage throughout."""
    deadline = 40
    hold = 60 * scale
    outcome = Outcome(
        "edge",
        f"20 % of calls failing, sync_delay mean 2 s, 5 % offline (half past the {deadline} s site deadline), "
        f"one site answering garbage; {hold:.0f} s",
    )
    sim = lab.sim
    dice = random.Random(3)  # noqa: S311
    chosen: dict[str, Any] = {}

    def inject(lab: Lab, rollout: Any) -> None:
        from rollouts.models import SiteRollout

        # The sites struck are among those not started yet, so their runs meet the faults.
        pending = sorted(
            SiteRollout.objects.filter(rollout=rollout, state="pending").values_list("site__code", flat=True)
        )
        offline = dice.sample(pending, max(2, lab.sites // 20))
        chosen["garbage"] = dice.choice([code for code in pending if code not in offline])
        chosen["back_soon"], chosen["gone"] = offline[: len(offline) // 2], offline[len(offline) // 2 :]
        for kind, seconds in (("api_error", None), ("throttle", 1), ("timeout", 3), ("slow", 1)):
            sim.add_fault(kind, rate=0.05, seconds=seconds)
        sim.add_fault("sync_delay", rate=1.0, seconds=2)
        sim.add_fault("garbage", site=chosen["garbage"], rate=1.0)
        for code in chosen["back_soon"]:
            sim.add_fault("offline", site=code, seconds=deadline / 2)
        chosen["gone_until"] = dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=deadline * 4)
        for code in chosen["gone"]:
            sim.add_fault("offline", site=code, seconds=deadline * 4)
        with contextlib.suppress(Timeout):
            wait_until(lambda: (rollout.refresh_from_db(), rollout.state)[1] != "running", hold, "", every=1)
        for fault in sim.faults():
            if fault["site"] is None:  # the fleet-wide faults end; the garbage site stays garbage
                sim.remove_fault(fault["id"])

    shape = Shape(site_deadline_seconds=deadline, trigger=0.2)
    run(lab, outcome, inject, shape=shape, recovery=deadline * 4 + 60)
    facts = outcome.facts
    garbage, back_soon, gone = chosen["garbage"], chosen["back_soon"], chosen["gone"]
    outcome.check(
        "garbage site not succeeded",
        facts[garbage]["state"] != "succeeded",
        f"{garbage}: {facts[garbage]['state']} {facts[garbage]['skip_reason']}: {facts[garbage]['error'][:80]}",
    )
    # A site the wave reached only after its offline time had ended is rightly done; one that started
    # with its whole deadline still offline must be skipped as unreachable.
    until, late = chosen["gone_until"], dt.timedelta(seconds=deadline)
    gone = [c for c in gone if facts[c]["started_at"] is None or facts[c]["started_at"] + late <= until]
    wrong = [c for c in gone if (facts[c]["state"], facts[c]["skip_reason"]) != ("skipped", "unreachable")]
    outcome.check(
        "offline past the deadline => skipped unreachable",
        not wrong,
        ", ".join(f"{c} {facts[c]['state']}" for c in wrong)
        or (f"{len(gone)} sites: {facts[gone[0]]['error'][:90]}" if gone else "no site started while still offline"),
    )
    returned = [c for c in back_soon if facts[c]["state"] == "succeeded"]
    outcome.check("offline for a while => deferred, then done", len(returned) == len(back_soon),
                  f"{len(returned)} of {len(back_soon)} succeeded")  # fmt: skip
    failed = [c for c, f in facts.items() if f["state"] == "failed"]
    outcome.check("no site failed as broken", not failed, ", ".join(failed[:5]))
    return outcome


# A pre-receive hook that, at the first push it sees, has "someone else" move main first (a commit adding
# other/change.txt; the first commit of main when the repository is still empty): the push under way
# then fails to update the ref, exactly as when another writer's push lands between our fetch and our
# push. The objects go to the repository itself, not the push's quarantine (dropped with the push).
SOMEONE_ELSE = """#!/bin/sh
marker="$GIT_DIR/someone-else"
[ -e "$marker" ] && exit 0
exec 2>>"$GIT_DIR/someone-else.log"
set -x
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
export GIT_INDEX_FILE="$GIT_DIR/someone-else.index" GIT_AUTHOR_NAME=someone GIT_AUTHOR_EMAIL=someone@example.invalid
export GIT_COMMITTER_NAME=someone GIT_COMMITTER_EMAIL=someone@example.invalid
zero=0000000000000000000000000000000000000000
parent=$(git rev-parse -q --verify refs/heads/main || true)
if [ -n "$parent" ]; then git read-tree "$parent"; else rm -f "$GIT_INDEX_FILE"; fi
blob=$(echo "someone else's change" | git hash-object -w --stdin)
git update-index --add --cacheinfo "100644,$blob,other/change.txt"
commit=$(git commit-tree "$(git write-tree)" ${parent:+-p "$parent"} -m "someone else's change")
git update-ref refs/heads/main "$commit" "${parent:-$zero}"
rm -f "$GIT_INDEX_FILE"
[ -n "$commit" ] && echo "$commit" > "$marker"
exit 0
"""


def someone_else_pushes_first(repo: Path) -> None:
    hook = repo / "hooks" / "pre-receive"
    hook.write_text(SOMEONE_ELSE)
    hook.chmod(0o755)


def foreign_commit(repo: Path) -> str | None:
    marker = repo / "someone-else"
    return marker.read_text().strip() if marker.exists() else None


@scenario
def git_host(lab: Lab, scale: float = 1.0) -> Outcome:
    """The git host (the simulator's, over HTTPS) offline for 2 minutes mid-wave: the sites in their
    commit wait for it, backing off, and the rollout goes on once it answers."""
    outage = 120 * scale
    outcome = Outcome("git-host", f"git host offline {outage:.0f} s mid-wave")

    def inject(lab: Lab, rollout: Any) -> None:
        lab.sim.add_fault("offline", site="githost", seconds=outage)
        time.sleep(outage)

    run(lab, outcome, inject, recovery=90)
    facts = outcome.facts
    skipped = [c for c, f in facts.items() if f["state"] != "succeeded"]
    outcome.check("no site skipped or failed for the git host's outage", not skipped, ", ".join(skipped[:5]))
    return outcome


@scenario
def push_race(lab: Lab, scale: float = 1.0) -> Outcome:
    """At a tenth of the sites not started yet, someone else's push lands on main between the control
    plane's fetch and its push (a pre-receive hook moves main first), so that push is rejected: it must be
    made again on top, the other change kept. (File transport: the simulator's git host runs no hooks.)"""
    outcome = Outcome("push-race", "someone else's push landing first at 10 % of the sites")
    sim = lab.sim
    raced: list[str] = []

    def inject(lab: Lab, rollout: Any) -> None:
        from rollouts.models import SiteRollout

        pending = SiteRollout.objects.filter(rollout=rollout, state="pending").values_list("site__code", flat=True)
        raced.extend(sorted(pending)[: max(3, lab.sites // 10)])
        for code in raced:
            someone_else_pushes_first(sim.repo_path(code))

    run(lab, outcome, inject, recovery=60)
    foreign = {code: foreign_commit(sim.repo_path(code)) for code in raced}
    kept = [code for code, sha in foreign.items() if sha and is_ancestor(sim.repo_path(code), sha)]
    outcome.check("someone else's commits kept", len(kept) == len(raced), f"{len(kept)} of {len(raced)}")
    facts = outcome.facts
    ours = [code for code in raced if facts[code]["commits"] == 1 and facts[code]["state"] == "succeeded"]
    outcome.check("our commit on top of theirs", len(ours) == len(raced), f"{len(ours)} of {len(raced)}")
    overtaken = log_count([h.log_path for h in lab.worker_hosts], b"push overtaken by another writer")
    outcome.figures["pushes rejected"] = overtaken
    outcome.check("every raced push rejected and redone", overtaken >= len(raced), f"{overtaken} rejected pushes")
    return outcome


def is_ancestor(repo: Path, sha: str) -> bool:
    found = subprocess.run(["git", "--git-dir", str(repo), "merge-base", "--is-ancestor", sha, "main"], check=False)
    return found.returncode == 0
