"""Objects move between agents through the controller when agents cannot reach each
other (here: neither agent runs a data server, as behind NAT): the graph code
opens channels as always and the Channel takes the controller's relay (issue 14,
test 3). Mid-size objects (held in the producer's memory) and big ones (files)
both travel, and a client reads an object only an agent holds."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from processes import Controller, add_user, free_port, start_agent, stop_all
from scraped import metric_value
from shoal import LocalCluster, RemoteClient
from shoal.graph import Client, DataInstance, OutputDir, remote
from test_tls import trusted_certificate


# Agents report os.cpu_count() cpus: a producer that takes them all has a node to itself.
@remote(outputs=("data", "mid", "digest"), cpus=os.cpu_count() or 1)
def produce(ctx, seed):
    data = hashlib.sha256(seed.encode()).digest() * 40_000  # 1.28 MB: a file
    mid = data[:300_000]  # over the inline limit, under the memory limit: in memory
    return {"data": data, "mid": mid, "digest": hashlib.sha256(data + mid).hexdigest()}


@remote()
def digests(ctx, first, first_mid, second, second_mid):
    pairs = ((first, first_mid), (second, second_mid))
    return " ".join(hashlib.sha256(d.get_bytes() + m.get_bytes()).hexdigest() for d, m in pairs)


@remote(outputs=OutputDir("tree"), cpus=os.cpu_count() or 1)
def tree(ctx):
    folder = Path("tree")
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "big").write_bytes(hashlib.sha256(b"tree").digest() * 50_000)  # 1.6 MB
    (folder / "small").write_text("small")
    (folder / "link").symlink_to("small")
    return DataInstance(path=folder, data_type="dir")


@remote(cpus=os.cpu_count() or 1)
def bigger(ctx):
    return b"b" * 4_000_000  # more than the tree: the reader goes to its node


@remote()
def read_tree(ctx, first, second):
    root = Path("copy")
    first.write(root)
    assert (root / "link").is_symlink() and (root / "link").read_text() == "small"
    big = (root / "sub" / "big").read_bytes()
    return f"{len(big)} {hashlib.sha256(big).hexdigest()} {len(second.get_bytes())}"


@pytest.mark.timeout(120)
def test_objects_travel_through_the_controller_when_agents_cannot_meet(monkeypatch) -> None:
    monkeypatch.setenv("SHOAL_DATA_SERVER", "0")
    with LocalCluster(["nat-1", "nat-2"]) as cluster:
        monkeypatch.delenv("SHOAL_DATA_SERVER")
        with (
            Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
            c.new_session() as session,
        ):
            # Each producer takes a whole node, so they run on different nodes,
            # and the consumer needs the data of both.
            a = produce("a")
            b = produce("b")
            both = digests(a.outputs["data"], a.outputs["mid"], b.outputs["data"], b.outputs["mid"])
            both.output.keep()
            for t in (a, b):
                t.outputs["digest"].keep()
            a.outputs["data"].keep()
            a.outputs["mid"].keep()
            session.submit()
            expected = " ".join(t.outputs["digest"].fetch().get_str() for t in (a, b))
            assert both.output.fetch().get_str() == expected
            session.update([a, b])
            assert {a.info.node, b.info.node} == {"nat-1", "nat-2"}
            # Held by an agent only: the controller reads them over a channel too.
            data = a.outputs["data"].fetch().get_bytes()
            assert data == hashlib.sha256(b"a").digest() * 40_000
            assert a.outputs["mid"].fetch().get_bytes() == data[:300_000]
        with (
            Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
            c.new_session() as session,
        ):
            # A directory (a tar archive on the wire, past the memory limit) goes
            # through the relay too; a producer that takes a node sends the reader elsewhere.
            made = tree()
            other = bigger()
            read = read_tree(made.output, other.output)
            read.output.keep()
            session.submit()
            big = hashlib.sha256(b"tree").digest() * 50_000
            expected = f"{len(big)} {hashlib.sha256(big).hexdigest()} 4000000"
            assert read.output.fetch().get_str() == expected
            session.update([made, other, read])
            assert made.info.node != other.info.node == read.info.node


@remote(outputs=("data", "mid", "digest"))
def produce_one_cpu(ctx, seed):
    data = hashlib.sha256(seed.encode()).digest() * 40_000
    mid = data[:300_000]
    return {"data": data, "mid": mid, "digest": hashlib.sha256(data + mid).hexdigest()}


@pytest.mark.timeout(120)
def test_objects_travel_through_the_relay_when_the_controller_runs_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind TLS no agent serves plain TCP: every object goes through the relay,
    # encrypted, with the agent's node credential as the opener's token.
    cert, key = trusted_certificate(tmp_path, monkeypatch)
    db = f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}"
    add_user(db, "tls-user", "pw")
    port = free_port()
    args = ("--tls-cert", str(cert), "--tls-key", str(key))
    controller = Controller(db, port, "join", tmp_path / "controller.log", *args)
    controller.endpoint = f"https://127.0.0.1:{port}"
    agents: list[subprocess.Popen] = []
    try:
        controller.start()
        for name in ("tls-1", "tls-2"):
            log = tmp_path / f"{name}.log"
            agents.append(start_agent(controller.endpoint, "join", name, log, "--cpus", "1"))
        with RemoteClient(controller.endpoint, "tls-user", "pw") as check:
            check.wait_for_nodes(["tls-1", "tls-2"], timeout=30)
        with (
            Client(endpoint=controller.endpoint, login="tls-user", password="pw") as c,
            c.new_session() as session,
        ):
            a, b = produce_one_cpu("a"), produce_one_cpu("b")
            both = digests(a.outputs["data"], a.outputs["mid"], b.outputs["data"], b.outputs["mid"])
            both.output.keep()
            for t in (a, b):
                t.outputs["digest"].keep()
            session.submit()
            expected = " ".join(t.outputs["digest"].fetch().get_str() for t in (a, b))
            assert both.output.fetch().get_str() == expected
            session.update([a, b])
            assert {a.info.node, b.info.node} == {"tls-1", "tls-2"}
        # The relay carried ciphertext: none of it was moved in the kernel (that
        # would skip the controller's TLS).
        with RemoteClient(controller.endpoint, "tls-user", "pw") as check:
            token = check.token()
        assert metric_value(controller.endpoint, token, "shoal_channel_bytes_total") > 0
        assert metric_value(controller.endpoint, token, "shoal_channel_zero_copy_bytes_total") == 0
    finally:
        stop_all(agents)
        controller.stop()
