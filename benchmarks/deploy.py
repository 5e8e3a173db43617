"""`shoal deploy` onto N SSH hosts made here (network namespaces, as in the tests).

For N = 1, 4, 8 fresh hosts (no package index: they install from wheels this
machine fetched for them once, before the timing): the time to deploy from
scratch until every agent is connected, and the time of a second deploy when
nothing changed. Beside it, netUnicorn's published preparation times for 1 to
20 nodes (57 to 130 s; its executors are Docker images or pip installs).

Needs root, `ip` and sshd (scripts/install-test-deps.sh installs them).

    python benchmarks/deploy.py [--hosts 1 4 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine

sys.path.insert(0, str(ROOT / "tests"))

from inventory_file import write_inventory
from netns import ssh_hosts, unavailable_reason
from shoal import LocalCluster
from shoal.connectors.inventory import load_inventory
from shoal.connectors.ssh import DeployOptions, deploy_async

NETUNICORN_S = (57.0, 130.0)  # preparation of 1 and of 20 nodes, from its paper


def _deploy(inventory: Path, options: DeployOptions) -> float:
    started = time.perf_counter()
    results = asyncio.run(deploy_async(load_inventory(inventory), options))
    elapsed = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit("deploy failed: " + "; ".join(str(f) for f in failed))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    if reason := unavailable_reason():
        raise SystemExit(f"cannot make SSH hosts here: {reason}")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="shoal-bench-deploy-") as tmp:
        cluster = LocalCluster(0, workdir=Path(tmp) / "cluster", host="0.0.0.0")
        with cluster:
            token = cluster.token_file.read_text().strip()
            options = DeployOptions(join_token=token, controller_port=cluster.port)
            rows = []
            for round_, n in enumerate([1, *args.hosts]):
                folder = Path(tmp) / f"hosts-{round_}"
                with ssh_hosts(n, folder) as hosts:
                    inventory = write_inventory(
                        folder / "inventory.toml",
                        hosts,
                        per_host={h.name: {"node": f"bench{round_}-{h.name}"} for h in hosts},
                    )
                    options.known_hosts = str(hosts[0].known_hosts)
                    fresh = _deploy(inventory, options)
                    again = _deploy(inventory, options)
                if round_ == 0:
                    print(f"warm-up (fetches the hosts' wheels once): 1 host in {fresh:.1f} s")
                    continue
                rows.append((n, fresh, again))
    print(f"{'hosts':>5}  {'from scratch':>12}  {'nothing changed':>15}  {'netUnicorn':>10}  ratio")
    for n, fresh, again in rows:
        theirs = netunicorn_s(n)
        ratio = theirs / fresh
        print(f"{n:>5}  {fresh:>10.1f} s  {again:>13.2f} s  {theirs:>8.0f} s  {ratio:.1f}x")
    print(
        f"netUnicorn's preparation: {NETUNICORN_S[0]:.0f} s for 1 node, {NETUNICORN_S[1]:.0f} s "
        "for 20, in between as a straight line (ratio: theirs over ours). The hosts here share "
        "this machine's cores, so their installs queue for them; real hosts install at once."
    )


def netunicorn_s(nodes: int) -> float:
    """netUnicorn's published preparation time for ``nodes`` (1 to 20), interpolated."""
    low, high = NETUNICORN_S
    return low + (high - low) * (min(max(nodes, 1), 20) - 1) / 19


if __name__ == "__main__":
    main()
