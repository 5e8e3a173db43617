"""Graph data stays with its user (issue 15, test 4): real controller, real agents.

Two users, alice and bob, share two one-cpu agents that run with --isolate-users
(when the tests run as root, as CI does). Bob's task cannot read alice's object
from the agent's disk, and a node that holds a capability of bob's cannot use it
(nor an expired one, nor a guessed id) to open a channel to alice's object on
a node, directly or through the controller's relay. Alice's objects still move
from node to node.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from msgspec.structs import replace

from probe_node import ProbeNode
from processes import SHOAL, Controller, free_port, start_agent, stop_all
from shoal import RemoteClient
from shoal.agent.isolation import account_name
from shoal.agent.object_store import receive_object
from shoal.channel import ChannelError, open_channel
from shoal.graph import Client, remote
from shoal.protocol import (
    Welcome,
)
from shoal.protocol.capabilities import ChannelClaim, sign_channel
from shoal.protocol.channel_messages import ChannelGrant
from shoal.protocol.graph_messages import GraphRun, object_endpoint
from waiting import wait_until

NODES = ["node-a", "node-b"]
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
TTL = 5.0  # seconds a capability lives on this controller
ISOLATED = os.geteuid() == 0


@dataclass
class Shoal:
    endpoint: str
    token: str
    root: Path  # agents' workdirs are root / "agents" / NAME

    def client(self, login: str) -> Client:
        return Client(endpoint=self.endpoint, login=login, password=USERS[login])

    def object_path(self, node: str, session: int, obj: int) -> Path:
        return self.root / "agents" / node / "graph" / "objects" / str(session) / str(obj)


@pytest.fixture(scope="module")
def shoal_ctl() -> Iterator[Shoal]:
    existing = {name for name in map(account_name, USERS) if _os_user(name) is not None}
    # Isolated task workers must be able to pass through to their folders: the
    # pytest tmp_path lies below a 0700 folder, so a folder of our own is used.
    root = Path(tempfile.mkdtemp(prefix="shoal-trust-graph-"))
    os.chmod(root, 0o711)
    token = secrets.token_urlsafe(16)
    saved = {k: os.environ.get(k) for k in ("SHOAL_BOOTSTRAP_USERS", "SHOAL_GRAPH_CAPABILITY_TTL")}
    os.environ["SHOAL_BOOTSTRAP_USERS"] = json.dumps([[u, p] for u, p in USERS.items()])
    os.environ["SHOAL_GRAPH_CAPABILITY_TTL"] = str(TTL)
    controller = Controller(
        f"sqlite+aiosqlite:///{root / 'shoal.db'}", free_port(), token, root / "controller.log"
    )
    agents: list[subprocess.Popen] = []
    try:
        controller.start()
        for name in NODES:
            extra = ["--workdir", str(root / "agents" / name), "--cpus", "1", "-v"]
            if ISOLATED:
                extra.append("--isolate-users")
            agents.append(
                start_agent(controller.endpoint, token, name, root / f"{name}.log", *extra)
            )
        with RemoteClient(controller.endpoint, "alice", USERS["alice"]) as check:
            check.wait_for_nodes(NODES, 60)
        yield Shoal(controller.endpoint, token, root)
    finally:
        stop_all(agents)
        controller.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)
        for name in map(account_name, USERS):
            if name not in existing and _os_user(name) is not None:
                subprocess.run(["userdel", name], check=False, capture_output=True)


def _os_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


# --- remote functions ----------------------------------------------------------------


@remote()
def secret(ctx, seed, times=40_000):
    # 1.28 MB by default: a file on its agent; 320 KB (10_000): in the agent's memory
    return hashlib.sha256(seed.encode()).digest() * times


@remote(cpus=2)
def wants_two_cpus(ctx, data):
    return str(len(data.get_bytes()))


@remote(outputs=("data", "digest"))
def produce(ctx, seed):
    data = hashlib.sha256(seed.encode()).digest() * 40_000  # 1.28 MB
    return {"data": data, "digest": hashlib.sha256(data).hexdigest()}


@remote()
def digests(ctx, first, second):
    return " ".join(hashlib.sha256(d.get_bytes()).hexdigest() for d in (first, second))


@remote()
def snoop(ctx, target):
    """Bob's attempt on alice's files: what could he read or list?"""
    found = {"uid": os.getuid()}
    for what, attempt in (
        ("object", lambda: len(open(target, "rb").read())),  # noqa: SIM115
        ("session folder", lambda: os.listdir(os.path.dirname(target))),
        ("objects folder", lambda: os.listdir(os.path.dirname(os.path.dirname(target)))),
    ):
        try:
            found[what] = f"read {attempt()!r}"
        except OSError as exc:
            found[what] = f"refused: {type(exc).__name__}"
    return json.dumps(found)


# --- a node that asks data servers for objects itself --------------------------------


def fetch(grant: ChannelGrant, endpoint: str = "", token: str = "") -> bytes:
    """The object a channel opened with ``grant`` brings (``token``: the opener's
    credential, for the relay path); raises ChannelError when refused."""
    received = bytearray()

    async def receive(_data_type: str, _size: int, batches: AsyncIterator[list[bytes]]) -> None:
        async for batch in batches:
            for data in batch:
                received.extend(data)

    async def run() -> None:
        channel = await open_channel(grant, controller=endpoint, token=token)
        await receive_object(channel, receive)

    asyncio.run(run())
    return bytes(received)


def refused(grant: ChannelGrant, endpoint: str = "", token: str = "") -> str:
    with pytest.raises(ChannelError) as caught:
        fetch(grant, endpoint, token)
    return str(caught.value)


# --- tests ---------------------------------------------------------------------------


def test_the_agent_says_when_users_share_its_os_user() -> None:
    shown = subprocess.run([*SHOAL, "agent", "--help"], capture_output=True, text=True, check=True)
    text = " ".join(shown.stdout.split())
    assert "--isolate-users" in text and "--data-address" in text
    assert "share this agent's OS user" in text


@pytest.mark.timeout(120)
def test_alices_objects_still_move_between_nodes(shoal_ctl: Shoal) -> None:
    with shoal_ctl.client("alice") as c, c.new_session() as session:
        # One cpu per node: the two producers run on different nodes, and the
        # consumer reads the data of both, so at least one object travels.
        a, b = produce("a"), produce("b")
        both = digests(a.outputs["data"], b.outputs["data"])
        both.output.keep()
        for t in (a, b):
            t.outputs["digest"].keep()
        session.submit()
        expected = " ".join(t.outputs["digest"].fetch().get_str() for t in (a, b))
        assert both.output.fetch().get_str() == expected
        session.update([a, b])
        assert {a.info.node, b.info.node} == set(NODES)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not ISOLATED, reason="--isolate-users needs the agents to run as root")
def test_bobs_task_cannot_read_alices_object_from_disk(shoal_ctl: Shoal) -> None:
    with shoal_ctl.client("alice") as alice, alice.new_session() as mine:
        kept = secret("alice's")
        kept.output.keep()
        mine.submit()
        mine.wait_all()
        mine.update([kept])
        path = shoal_ctl.object_path(kept.info.node, mine.session_id, kept.output.id.id)
        folder = path.parent.stat()
        alice_uid = pwd.getpwnam(account_name("alice")).pw_uid
        assert (folder.st_uid, stat.S_IMODE(folder.st_mode)) == (alice_uid, 0o700)
        assert path.stat().st_size == 1_280_000

        with shoal_ctl.client("bob") as bob, bob.new_session() as his:
            attempt = snoop(str(path))
            attempt.output.keep()
            his.submit()
            found = json.loads(attempt.output.fetch().get_str())
    assert found["uid"] == pwd.getpwnam(account_name("bob")).pw_uid
    assert found["object"] == "refused: PermissionError", found
    assert found["session folder"] == "refused: PermissionError", found
    assert found["objects folder"] == "refused: PermissionError", found


@pytest.mark.timeout(120)
def test_a_capability_opens_one_object_for_one_reader_for_a_short_time(shoal_ctl: Shoal) -> None:
    with (
        shoal_ctl.client("alice") as alice,
        alice.new_session() as hers,
        shoal_ctl.client("bob") as bob,
        bob.new_session() as his,
    ):
        with hers.bind_only():
            x = secret("alice's")
            x.output.keep()
            hers.submit()
            hers.wait_all()
        with his.bind_only():
            y = secret("bob's", 10_000)  # served from memory
            y.output.keep()
            his.submit()
            his.wait_all()
        alice_sid, x_id = hers.session_id, x.output.id.id
        bob_sid, y_id = his.session_id, y.output.id.id

        probe = ProbeNode(shoal_ctl.endpoint, shoal_ctl.token)
        try:
            welcome = probe.next_of(Welcome)
            assert isinstance(welcome, Welcome) and welcome.data_key
            # Only the probe has two cpus: these tasks are sent there, each with
            # a capability to fetch its input from the node that holds it.
            with his.bind_only():
                wants_two_cpus(y)
                his.submit()
            run = probe.next_of(GraphRun)
            assert isinstance(run, GraphRun)
            (bobs,) = run.tasks[0].inputs[0].holders
            with hers.bind_only():
                wants_two_cpus(x)
                hers.submit()
            run = probe.next_of(GraphRun)
            assert isinstance(run, GraphRun)
            (alices,) = run.tasks[0].inputs[0].holders
            assert run.tasks[0].owner == "alice"

            mine = bobs.grant
            assert mine.direct and mine.opener == "node:probe"
            # Bob's own grant opens his object, on the node it names...
            assert len(fetch(mine)) == 320_000
            # ...but not alice's object, on any node,
            alices_object = object_endpoint(alice_sid, x_id)
            for holder in (bobs, alices):
                why = refused(
                    replace(holder.grant, capability=mine.capability, endpoint=alices_object)
                )
                assert "capability is for" in why, why
            # nor with another reader, endpoint or expiry written in (the signature),
            forged_claims = [
                replace(mine, opener="node:node-a"),
                replace(mine, endpoint=alices_object),
                replace(mine, endpoint=object_endpoint(1, y_id)),  # a guessed session
                replace(mine, endpoint=object_endpoint(bob_sid, y_id + 1)),  # the next object
            ]
            for forged in forged_claims:
                assert "capability is for" in refused(forged)
            claim = ChannelClaim(
                mine.channel, mine.opener, mine.node, mine.endpoint, mine.expires + 3600
            )
            later = sign_channel(b"x" * 32, claim)
            assert "bad signature" in refused(replace(mine, capability=later))
            # and the probe's own key opens nothing on another node.
            claim = ChannelClaim(
                alices.grant.channel, "node:probe", alices.node, alices_object, mine.expires
            )
            forged_cap = sign_channel(welcome.data_key, claim)
            assert "bad signature" in refused(replace(alices.grant, capability=forged_cap))
            assert alice_sid > 2**32 and bob_sid > 2**32  # not counted from 1

            # A channel server that got garbage answers the next opener all the same.
            host, _, port = alices.grant.addresses[0].rpartition(":")
            with socket.create_connection((host, int(port)), timeout=10) as garbage:
                garbage.sendall(b"\xff" * 64)
            assert len(fetch(alices.grant)) == 1_280_000

            # Through the controller's relay (the holder not reachable): the probe's
            # node credential stands for node:probe and for no other node.
            relayed = replace(alices.grant, direct=False, addresses=[])
            credential = welcome.credential
            assert credential
            assert len(fetch(relayed, shoal_ctl.endpoint, credential)) == 1_280_000
            why = refused(replace(relayed, opener="node:node-a"), shoal_ctl.endpoint, credential)
            assert "stands for node:probe, not node:node-a" in why, why
            assert "valid bearer token" in refused(relayed, shoal_ctl.endpoint, "not-a-token")

            # Once expired, even the right grant is refused.
            expires = mine.expires
            wait_until(lambda: time.time() > expires + 0.2, TTL + 30, "the capability to expire")
            assert "expired" in refused(mine)
        finally:
            probe.close()
