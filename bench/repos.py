"""Per-commit cost of `SiteRepo.write` + push to many local bare repositories, beside plain `git`.

    .venv/bin/python bench/repos.py --sites 200 --rounds 3

For N sites it times, in the same run and on the same machine:
- `SiteRepo.write` of two files (one owned directory + a root file), each round changing the content:
  round 0 also creates the working clone (first use), later rounds are the steady state;
- a baseline of plain git CLI commands doing the same work in a kept working clone per site:
  `fetch`, `reset --hard origin/main`, write the files, `add -A`, `commit`, `push` (round 0: `init`,
  `remote add`, write, `add`, `commit`, `push`);
- an idempotent re-write (no change, no commit) and `head()` (ls-remote), as the drift check uses it.

It prints milliseconds per site for each (wall clock, and CPU time: this process's own, which is the
adapter's Python, and its git children's, which hardly move with the machine's load as wall clock
does), the ratio SiteRepo / plain git, and this process's child processes and open file descriptors
before and after (a long-running worker must not collect any).
Needs no database and no Django settings.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.harness import child_processes  # noqa: E402
from sites.repo_urls import GitPolicy  # noqa: E402
from sites.repos import Author, SiteRepo  # noqa: E402

AUTHOR = Author("Bench", "bench@example.com")
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def files_for(code: str, round_no: int) -> dict[str, str]:
    return {
        "kustomization.yaml": "resources:\n  - apps/bench\n",
        "apps/bench/config.yaml": f"site: {code}\nround: {round_no}\n",
    }


def baseline_write(bare: Path, clone: Path, code: str, round_no: int) -> None:
    """What a careful shell script does: start from the remote head, write, commit, push."""
    if round_no == 0:
        git("init", "-q", "-b", "main", str(clone))
        git("remote", "add", "origin", str(bare), cwd=clone)
    else:
        git("fetch", "-q", "origin", cwd=clone)
        git("reset", "-q", "--hard", "origin/main", cwd=clone)
    for path, content in files_for(code, round_no).items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(content)
    git("add", "-A", cwd=clone)
    git("-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", "bench", cwd=clone)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=clone)


def children() -> tuple[int, int]:
    """(all child processes, git child processes) of this process."""
    names = [name for _pid, name in child_processes()]
    return len(names), sum(name.startswith("git") for name in names)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def cpu() -> tuple[float, float]:
    """CPU seconds so far: (this process, its finished children)."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def timed(label: str, codes: list[str], action: object, results: dict[str, list[tuple[float, float, float]]]) -> float:
    """Run `action` for every code; record (wall, own CPU, children's CPU) in ms per site; return the wall."""
    start, (own, kids) = time.perf_counter(), cpu()
    for code in codes:
        action(code)  # type: ignore[operator]
    per_site = (time.perf_counter() - start) * 1000 / len(codes)
    own_after, kids_after = cpu()
    results.setdefault(label, []).append(
        (per_site, (own_after - own) * 1000 / len(codes), (kids_after - kids) * 1000 / len(codes))
    )
    return per_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds after the first (clone-creating) one")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-repos-"))
    codes = [f"BN-{i:04}" for i in range(args.sites)]
    for kind in ("ours", "plain"):
        for code in codes:
            git("init", "-q", "--bare", "-b", "main", str(work / kind / "remotes" / f"{code}.git"))
    policy = GitPolicy.local(work / "ours" / "remotes")  # no settings here: the remotes are the only root
    sites = {
        code: SiteRepo(
            code, str(work / "ours" / "remotes" / f"{code}.git"), cache_dir=work / "ours" / "cache", policy=policy
        )
        for code in codes
    }
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"{args.sites} sites, 1 + {args.rounds} rounds, {git_version}, {os.cpu_count()} CPUs, work dir {work}")

    before = (children(), fds())
    results: dict[str, list[tuple[float, float, float]]] = {}
    for round_no in range(args.rounds + 1):
        phase = "first write" if round_no == 0 else "write"

        def ours(code: str, round_no: int = round_no) -> None:
            result = sites[code].write(
                files_for(code, round_no), owned_prefix="apps/bench", message="bench", author=AUTHOR
            )
            assert result.changed

        def plain(code: str, round_no: int = round_no) -> None:
            baseline_write(work / "plain" / "remotes" / f"{code}.git", work / "plain" / "cache" / code, code, round_no)

        mine = timed(f"SiteRepo {phase}", codes, ours, results)
        theirs = timed(f"plain git {phase}", codes, plain, results)
        print(f"round {round_no}: SiteRepo {mine:6.1f} ms/site  plain git {theirs:6.1f} ms/site  x{mine / theirs:.2f}")

    def rewrite(code: str) -> None:
        assert (
            not sites[code]
            .write(files_for(code, args.rounds), owned_prefix="apps/bench", message="bench", author=AUTHOR)
            .changed
        )

    timed("SiteRepo no-op rewrite", codes, rewrite, results)
    timed("SiteRepo head() (ls-remote)", codes, lambda code: sites[code].head(), results)
    after = (children(), fds())

    print()
    print(f"{'operation':34} {'ms/site (median of rounds): wall':>33} {'CPU own':>8} {'CPU git':>8}")
    for label, values in results.items():
        wall, own, kids = (statistics.median(column) for column in zip(*values, strict=True))
        print(f"{label:34} {wall:33.1f} {own:8.1f} {kids:8.1f}")
    steady_ours = statistics.median(v[0] for v in results["SiteRepo write"]) if args.rounds else float("nan")
    steady_plain = statistics.median(v[0] for v in results["plain git write"]) if args.rounds else float("nan")
    print(f"\nsteady-state write+push: SiteRepo / plain git = {steady_ours / steady_plain:.2f}")
    print(
        f"child processes (all, git) before {before[0]} after {after[0]}; open fds before {before[1]} after {after[1]}"
    )
    if args.dir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
