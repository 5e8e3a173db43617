"""Allocation: DEFAULT_NODE, then GROUPS in order, then preference(), then least loaded."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import LocalCluster
from shoal.dataflow import AllocationError, Coordinator, NodeInfo, PythonJob, allocate, load_network

# ---------------------------------------------------------------- the rules alone


def infos() -> list[NodeInfo]:
    return [
        NodeInfo("a", groups=["ALL"], memory_free=1 << 30, jobs=2),
        NodeInfo("b", groups=["HAS_MIC", "ALL"], memory_free=2 << 30, jobs=3),
        NodeInfo("c", groups=["ALL"], memory_free=8 << 30, jobs=1),
    ]


def job(**attributes: object) -> PythonJob:
    cls = type("J", (PythonJob,), {"run": lambda self: None, **attributes})
    made = cls()
    made.id = 9
    return made


def test_groups_are_tried_in_priority_order() -> None:
    assert allocate(job(GROUPS=["HAS_MIC", "ALL"]), infos()).name == "b"
    without_mic = [n for n in infos() if n.name != "b"]
    assert allocate(job(GROUPS=["HAS_MIC", "ALL"]), without_mic).name == "c"  # least loaded
    with pytest.raises(AllocationError, match=r"job 9 \(J\).*HAS_MIC"):
        allocate(job(GROUPS="HAS_MIC"), without_mic)


def test_default_node_first_and_pinned() -> None:
    assert allocate(job(DEFAULT_NODE="a"), infos()).name == "a"
    full = [NodeInfo("a", jobs=1, max_jobs=1), NodeInfo("c")]
    assert allocate(job(DEFAULT_NODE="a"), full).name == "c"  # a is full: groups decide
    with pytest.raises(AllocationError, match=r"job 9 \(J\).*DEFAULT_NODE 'a'"):
        allocate(job(DEFAULT_NODE="a", GROUPS=[]), full)


def test_preference_picks_among_the_group() -> None:
    most_memory = job(preference=lambda self, nodes: max(nodes, key=lambda n: n.memory_free))
    assert allocate(most_memory, infos()).name == "c"
    # memory is the bytes available, as FISSION's (dispy's) NodeInfo had it
    most_free = job(preference=lambda self, nodes: max(nodes, key=lambda n: n.memory))
    assert allocate(most_free, infos()).name == "c"
    rogue = job(preference=lambda self, nodes: NodeInfo("elsewhere"))
    with pytest.raises(AllocationError, match="not one of the nodes offered"):
        allocate(rogue, infos())


# ------------------------------------------------------- on live agents, end to end

NETWORK = """
from shoal.dataflow import BaseNode, LocalJob, PicklePipe, PythonJob

SEEN = []


class Tick(PythonJob):
    {attributes}

    def run(self):
        yield from range(3)


class Drop(LocalJob):
    def run(self, value):
        pass


JOBS = [Tick(outputs=[PicklePipe(1)]), Drop(inputs=[PicklePipe(1)])]
NODES = {nodes}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    names = ["mic-node", "plain-1", "plain-2"]
    with LocalCluster(names, properties={"mic-node": {"groups": "HAS_MIC,ALL"}}) as started:
        yield started


def placed(cluster: LocalCluster, tmp_path: Path, name: str, attributes: str, nodes: str = "[]"):
    folder = tmp_path / name
    folder.mkdir()
    text = NETWORK.format(attributes=textwrap.indent(attributes, "    ").strip(), nodes=nodes)
    (folder / "config.py").write_text(text)
    network = load_network(folder)
    coordinator = Coordinator(network, cluster.client(), folder / "simulation", loopback=True)
    with coordinator:
        where = coordinator.placements()[1]
    return where, network


@pytest.mark.timeout(90)
def test_live_groups_default_node_and_preference(cluster: LocalCluster, tmp_path: Path) -> None:
    where, _ = placed(cluster, tmp_path, "alloc_mic", 'GROUPS = ["HAS_MIC", "ALL"]')
    assert where == "mic-node"
    nodes = '[BaseNode("plain-1"), BaseNode("plain-2")]'
    where, _ = placed(cluster, tmp_path, "alloc_nomic", 'GROUPS = ["HAS_MIC", "ALL"]', nodes)
    assert where in ("plain-1", "plain-2")
    where, _ = placed(cluster, tmp_path, "alloc_default", 'DEFAULT_NODE = "plain-2"')
    assert where == "plain-2"
    hook = """
def preference(self, nodes):
    chosen = max(nodes, key=lambda n: (n.memory_free or 0, n.name))
    SEEN.append((nodes, chosen))
    return chosen
"""
    where, network = placed(cluster, tmp_path, "alloc_pref", hook)
    offered, chosen = network.module.SEEN[0]
    assert {n.name for n in offered} == {"mic-node", "plain-1", "plain-2"}
    assert all(n.memory_free and n.cpus >= 1 for n in offered)
    # FISSION's meaning: cpu and memory are what is available, TQ the link
    # quality to the neighbours' nodes (only the client here, which reports none).
    assert all(n.cpu == 100 - n.cpu_used and n.memory == n.memory_free for n in offered)
    assert all(n.TQ == 255 and n.swap == 0 for n in offered)
    assert where == chosen.name


@pytest.mark.timeout(60)
def test_pinned_to_a_missing_node_raises_naming_the_job(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    with pytest.raises(AllocationError, match=r"job 1 \(Tick\)"):
        placed(cluster, tmp_path, "alloc_pinned", 'DEFAULT_NODE = "nowhere"\nGROUPS = []')
