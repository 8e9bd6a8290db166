"""The edge GitOps agent of one site (`GitOpsAgent`): it follows the repository the GitRepository `site`
names, applies the manifests of a new commit all or nothing (`simulator.manifests`), prunes what it
applied before and no longer finds, and reports as Flux does (`simulator.flux_status`). How it picks
its source and reports failures: docs/ARCHITECTURE.md, "The simulator's GitOps agent"."""

import asyncio
import copy
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.errors import ApiError
from simulator.flux_status import report_kustomization, report_source_failure, revision, source_artifact_status
from simulator.githost.source import resolve, source_key
from simulator.gitrepo import RefWatch, RepoError, read_ref, read_tree
from simulator.manifests import ManifestError, collect
from simulator.resources import BY_PLURAL, ResourceType

if TYPE_CHECKING:
    from simulator.site import Site

log = logging.getLogger(__name__)

KUSTOMIZATION = ("flux-system", "site")
NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
SOURCE_RECHECK_SECONDS = 2.0  # how often credentials for the git host are checked again, as a fetch would

__all__ = ["KUSTOMIZATION", "GitOpsAgent", "ManifestError", "collect", "revision"]


class GitOpsAgent:
    """One site's agent. `poll()` is called by the fleet's ticker; it is cheap unless the ref moved."""

    def __init__(self, site: "Site", repo: Path):
        self.site = site
        self.repo = repo
        self.ref = RefWatch(repo)
        self.applied_sha: str | None = None
        self.attempted_sha: str | None = None
        self.failed = False
        self.retry = False  # the last failure was injected: try the same revision again next poll
        self.observed_generation = 0
        self.inventory: set[tuple[str, str, str]] = set()
        self.busy = False
        self.reported_missing = False
        self.syncs = 0
        self.offline_polls = 0
        self.source_refusals = 0
        self._ks_rv = -1
        self._ks_generation = 0
        self._ks_suspended = False
        self._source_rv = -1
        self._source_spec: dict[str, Any] = {}
        self._source_key: tuple[Any, ...] = ()
        self._source_remote = False
        self._source_checked = 0.0
        self._source_error: str | None = None

    def _follow_source(self) -> bool:
        """Point the agent at the repository its GitRepository names; False when it cannot read one now.

        Cheap on the common path: nothing is resolved again unless the GitRepository changed, or, for the
        git host, its Secret changed or SOURCE_RECHECK_SECONDS passed."""
        stored = self.site.store.get("gitrepositories", *KUSTOMIZATION)
        if stored is None:
            return True
        fresh = stored.rv != self._source_rv
        if fresh:
            self._source_rv = stored.rv
            self._source_spec = stored.load().get("spec") or {}
        elif not self._source_remote:
            return self._source_error is None
        now = time.monotonic()
        key = source_key(self.site, self._source_spec)
        if not fresh and key == self._source_key and now - self._source_checked < SOURCE_RECHECK_SECONDS:
            return self._source_error is None
        self._source_key, self._source_checked = key, now
        source = resolve(self.site, self._source_spec)
        self._source_remote = source.remote
        if source.error is not None:
            self.source_refusals += 1  # observable: the agent tried its source again and could not read it
            if source.error != self._source_error:
                self._source_error = source.error
                self._report_source_failure(source.error)
            return False
        recovered, self._source_error = self._source_error is not None, None
        if source.path is not None and source.path != self.repo:
            self.repo, self.ref = source.path, RefWatch(source.path)
            self.reported_missing = False
        if recovered and self.applied_sha:
            self._report_source(self.applied_sha, force=True)
        return True

    def poll(self) -> None:
        if self.site.offline():
            self.offline_polls += 1  # observable: the agent looked, and could not reach its source
            return
        if self.busy:
            return
        stored = self.site.store.get("kustomizations", *KUSTOMIZATION)
        if stored is None:
            return
        if not self._follow_source():
            return
        if stored.rv != self._ks_rv:  # parse the Kustomization only when it changed
            ks = stored.load()
            self._ks_rv = stored.rv
            self._ks_generation = int(ks["metadata"].get("generation", 1))
            self._ks_suspended = bool((ks.get("spec") or {}).get("suspend"))
        if self._ks_suspended:
            return
        generation = self._ks_generation
        sha = self.ref.head()
        if sha is None:
            if not self.reported_missing:
                self.reported_missing = True
                self._report(stored.load(), None, False, "ArtifactFailed", "Source artifact not found, retrying in 30s")
            return
        unchanged = generation == self.observed_generation
        if unchanged and sha == self.applied_sha and not self.failed:
            return
        if unchanged and sha == self.attempted_sha and self.failed and not self.retry:
            return  # the same broken revision gives the same answer; wait for a new commit
        self.busy = True
        self.site.spawn(self._sync(sha, generation))

    async def _sync(self, sha: str, generation: int) -> None:
        try:
            delay_fault = self.site.faults.roll(self.site.code, "sync_delay")
            if delay_fault is not None and delay_fault.seconds:
                mean = delay_fault.seconds
                await asyncio.sleep(min(self.site.faults.random.expovariate(1 / mean), 10 * mean))
            if self.site.offline():
                return
            self.observed_generation = generation
            self.attempted_sha = sha
            self._report_source(sha)
            ks = self.site.store.load("kustomizations", *KUSTOMIZATION)
            if ks is None:
                return
            if self.site.faults.roll(self.site.code, "sync_failure") is not None:
                self.failed, self.retry = True, True
                self._report(ks, sha, False, "ReconciliationFailed", "simulated sync failure (fault injection)")
                return
            try:
                files = await asyncio.to_thread(read_tree, self.repo, sha)
                objects = collect(files)
                self._apply(objects)
            except (ManifestError, RepoError, ApiError) as exc:
                self.failed, self.retry = True, isinstance(exc, ApiError)
                reason = getattr(exc, "reason", "ReconciliationFailed")
                if isinstance(exc, RepoError):
                    reason = "ArtifactFailed"
                message = exc.message if isinstance(exc, ApiError) else str(exc)
                self._report(ks, sha, False, reason if isinstance(reason, str) else "ReconciliationFailed", message)
                return
            self.failed, self.retry = False, False
            self.applied_sha = sha
            self.syncs += 1
            self._report(
                self.site.store.load("kustomizations", *KUSTOMIZATION) or ks,
                sha,
                True,
                "ReconciliationSucceeded",
                f"Applied revision: {revision(sha)}",
            )
        except Exception:
            log.exception("sync of %s at %s failed", self.site.code, sha)
        finally:
            self.busy = False

    def _apply(self, objects: list[tuple[ResourceType, dict[str, Any]]]) -> None:
        api = self.site.api
        wanted: set[tuple[str, str, str]] = set()
        namespaces = {obj["metadata"]["name"] for rt, obj in objects if rt.kind == "Namespace"}
        for rt, obj in objects:
            ns = obj["metadata"].get("namespace", "")
            if rt.namespaced and ns not in namespaces and self.site.store.get("namespaces", "", ns) is None:
                # Flux would fail here; the simulator creates the namespace so releases need not carry it.
                api.create(BY_PLURAL["namespaces"], None, {"metadata": {"name": ns}})
                namespaces.add(ns)
        for rt, obj in objects:
            meta = obj["metadata"]
            labels = meta.setdefault("labels", {})
            labels[NAME_LABEL], labels[NAMESPACE_LABEL] = KUSTOMIZATION[1], KUSTOMIZATION[0]
            key = (rt.plural, meta.get("namespace", "") if rt.namespaced else "", meta["name"])
            wanted.add(key)
            current = self.site.store.get(*key)
            if current is None:
                api.create(rt, key[1] or None, obj)
                continue
            old = current.load()
            new = copy.deepcopy(obj)
            new["metadata"] = {**old["metadata"], "labels": labels, "annotations": meta.get("annotations") or {}}
            if not new["metadata"]["annotations"]:
                new["metadata"].pop("annotations")
            if "status" in old:
                new["status"] = old["status"]
            api.replace(rt, key[1], key[2], new)
        for key in sorted(self.inventory - wanted):
            plural, ns, name = key
            if self.site.store.get(plural, ns, name) is not None:
                api.delete(BY_PLURAL[plural], ns, name)
        self.inventory = wanted

    def _report(self, ks: dict[str, Any], sha: str | None, ready: bool, reason: str, message: str) -> None:
        report_kustomization(ks, sha, ready, reason, message, self.inventory)
        self.site.api.write(BY_PLURAL["kustomizations"], ks)

    def _report_source(self, sha: str, *, force: bool = False) -> None:
        """The source-controller's half: the GitRepository `site` has an artifact for the new revision."""
        repo = self.site.store.load("gitrepositories", *KUSTOMIZATION)
        if repo is None:
            return
        if not force and (repo.get("status") or {}).get("artifact", {}).get("revision") == revision(sha):
            return
        repo["status"] = source_artifact_status(repo, sha)
        self.site.api.write(BY_PLURAL["gitrepositories"], repo)

    def _report_source_failure(self, message: str) -> None:
        """The source-controller cannot fetch: Ready False, GitOperationFailed; the artifact it had stays."""
        repo = self.site.store.load("gitrepositories", *KUSTOMIZATION)
        if repo is None:
            return
        report_source_failure(repo, message)
        self.site.api.write(BY_PLURAL["gitrepositories"], repo)

    def summary(self) -> dict[str, Any]:
        return {
            "source": str(self.repo),
            "source_error": self._source_error,
            "head": read_ref(self.repo),
            "applied": self.applied_sha,
            "attempted": self.attempted_sha,
            "failed": self.failed,
            "syncs": self.syncs,
            "offline_polls": self.offline_polls,
            "source_refusals": self.source_refusals,
            "objects": len(self.inventory),
        }
