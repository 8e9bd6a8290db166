"""The plain side of bench/rollout.py: for each site what the site run does (render, SiteRepo.write, poll
the Flux status until applied, check the Deployments), with no database, no broker and no workflow rows."""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def plain_site(job: dict[str, Any]) -> float:
    """Render, write and push, poll the edge until applied, check the Deployments; seconds taken."""
    from kubernetes import config

    from sites.clusters import SiteCluster
    from sites.repos import Author, GitCredentials, SiteRepo

    started = time.perf_counter()
    # Its own clone cache, so it pays for its first clones as the orchestrated run did; the same transport
    # and credentials (token, CA) as the workers.
    repo = SiteRepo(
        job["code"],
        job["repo_url"],
        cache_dir=job["cache_dir"],
        credentials=GitCredentials.from_settings(),
        timeout=30,
        lock_timeout=30,
    )
    result = repo.write(job["files"], owned_prefix="apps/pos-bridge", message="plain", author=Author.of("bench"))
    sha = result.revision
    cluster = SiteCluster(
        config.new_client_from_config(config_file=job["kubeconfig"]), site_code=job["code"], timeout=10
    )
    try:
        while True:
            status = cluster.sync_status()
            if status is not None and sha and status.applied(sha):
                break
            time.sleep(job["poll"])
        while not all(d.healthy for d in cluster.deployments("pos")):
            time.sleep(job["poll"])
    finally:
        cluster.api_client.close()
    return time.perf_counter() - started


def plain_chunk(jobs: list[dict[str, Any]], threads: int) -> list[float]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(plain_site, jobs))
