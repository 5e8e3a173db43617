"""The TOML inventory of a testbed's hosts: defaults, groups, hosts, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, SEED_NODES
from shoal.connectors.inventory import Host, InventoryError, load_inventory

EXAMPLE = ROOT / "examples" / "testbed" / "inventory.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_the_example_inventory_is_the_seeds_testbed() -> None:
    inventory = load_inventory(EXAMPLE)
    assert [h.node for h in inventory] == SEED_NODES
    server = inventory.host("snl-server-5")
    assert server == Host(
        address="snl-server-5.lab.example.org",
        node="snl-server-5",
        user="shoal",
        port=2222,
        key_file=Path("~/.ssh/shoal-testbed").expanduser(),
        properties={"role": "server", "room": "lab1", "cpus": 32},
        groups=("servers",),
    )
    pi = inventory.host("raspi-e4:5f:01:75:6b:2c")
    assert (pi.user, pi.jump_host, pi.workdir, pi.python, pi.port) == (
        "pi",
        "admin@gw.lab.example.org",
        "/var/lib/shoal",
        "/usr/bin/python3.11",
        22,
    )
    assert pi.properties == {"role": "raspi", "room": "lab3", "arch": "aarch64"}
    assert inventory.host("raspi-e4:5f:01:56:d8:cd").properties["room"] == "lab2"


def test_a_bare_host_gets_the_defaults(tmp_path: Path) -> None:
    (host,) = load_inventory(write(tmp_path, '[[hosts]]\naddress = "pi-7.lab.example.org"\n'))
    assert host == Host(address="pi-7.lab.example.org", node="pi-7")
    assert (host.port, host.python, host.workdir, host.user) == (
        22,
        "python3",
        "~/.shoal-agent",
        None,
    )


def test_an_ip_address_is_its_own_node_name(tmp_path: Path) -> None:
    text = '[[hosts]]\naddress = "10.0.0.5"\n[[hosts]]\naddress = "fd00::7"\n'
    assert [h.node for h in load_inventory(write(tmp_path, text))] == ["10.0.0.5", "fd00::7"]


def test_host_wins_over_groups_and_later_groups_over_earlier(tmp_path: Path) -> None:
    text = """
[defaults]
user = "d"
port = 1022
python = "python3.12"
properties = { a = "default", b = "default", c = "default" }
[groups.one]
user = "one"
port = 2022
properties = { b = "one", c = "one" }
[groups.two]
user = "two"
properties = { c = "two" }
[[hosts]]
address = "h1"
groups = ["one", "two"]
[[hosts]]
address = "h2"
groups = ["two", "one"]
user = "mine"
properties = { a = "mine" }
"""
    h1, h2 = load_inventory(write(tmp_path, text))
    assert (h1.user, h1.port, h1.python) == ("two", 2022, "python3.12")
    assert h1.properties == {"a": "default", "b": "one", "c": "two"}
    assert (h2.user, h2.port) == ("mine", 2022)
    assert h2.properties == {"a": "mine", "b": "one", "c": "one"}


def test_relative_key_files_are_from_the_inventorys_folder(tmp_path: Path) -> None:
    text = '[defaults]\nkey_file = "keys/lab"\n[[hosts]]\naddress = "h"\n'
    (host,) = load_inventory(write(tmp_path, text))
    assert host.key_file == tmp_path / "keys" / "lab"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[hosts]]\naddress = "h"\nusr = "x"\n', "host h: unknown key 'usr'"),
        (
            '[defaults]\nadress = "h"\n[[hosts]]\naddress = "h"\n',
            "[defaults]: unknown key 'adress'",
        ),
        (
            '[groups.pis]\nnode = "x"\n[[hosts]]\naddress = "h"\n',
            "[groups.pis]: unknown key 'node'",
        ),
        ('nodes = 3\n[[hosts]]\naddress = "h"\n', "unknown key 'nodes' at the top"),
        ('[[hosts]]\naddress = "h"\nport = "22"\n', "host h: port: expected an integer"),
        ('[[hosts]]\naddress = "h"\nport = true\n', "host h: port: expected an integer"),
        ('[[hosts]]\naddress = "h"\nport = 70000\n', "host h: port: 70000 is not a port"),
        (
            '[groups.pis]\nuser = 7\n[[hosts]]\naddress = "h"\n',
            "[groups.pis]: user: expected a string",
        ),
        ('[[hosts]]\naddress = "h"\ngroups = "pis"\n', "host h: groups: expected a list"),
        ('[[hosts]]\naddress = "h"\ngroups = ["pis"]\n', "host h: groups: no group 'pis'"),
        (
            '[[hosts]]\naddress = "h"\nproperties = { room = [1] }\n',
            "host h: properties: room: expected a string, number or boolean",
        ),
        ('[[hosts]]\nuser = "pi"\n', "host #1: address: missing"),
        ("[[hosts]]\naddress = 10\n", "host #1: address: expected a string"),
        ('[[hosts]]\naddress = "pi@h"\n', "host pi@h: address: 'pi@h' is not a host name"),
        ('[[hosts]]\naddress = "h:2222"\n', "the port with `port`"),
        ('[[hosts]]\naddress = "h"\nnode = ""\n', "host h: node: '' is not a usable node name"),
        ('[[hosts]]\naddress = "h"\nworkdir = " "\n', "host h: workdir: may not be empty"),
        (
            '[[hosts]]\naddress = "a.lab1"\n[[hosts]]\naddress = "a.lab2"\n',
            "host a.lab2: node: the node name 'a' is also host a.lab1's",
        ),
        ("[defaults]\nuser = 'x'\n", "no hosts"),
        ('hosts = "h"\n', "hosts must be an array of tables"),
        ('[groups]\npis = 3\n[[hosts]]\naddress = "h"\n', "[groups.pis] must be a table"),
        ("[[hosts]\n", "not valid TOML"),
    ],
)
def test_errors_name_the_host_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error(tmp_path, text)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"nowhere\.toml: cannot read the inventory"):
        load_inventory(tmp_path / "nowhere.toml")


def test_asking_for_an_unknown_node_names_the_file() -> None:
    with pytest.raises(KeyError, match="no host with node name 'nope'"):
        load_inventory(EXAMPLE).host("nope")
