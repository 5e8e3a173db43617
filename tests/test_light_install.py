"""A node's install: shoal without the controller's extra joins a real controller.

The wheel is built from this checkout and installed into a fresh venv without
``[controller]``; the controller runs from the test environment, as it would on
another machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes import Controller, add_user, free_port, start_agent, stop_all
from shoal import Experiment, Pipeline, RemoteClient, Success, Task

ROOT = Path(__file__).resolve().parent.parent
CONTROLLER_ONLY = {"fastapi", "uvicorn", "sqlalchemy", "asyncpg", "aiosqlite"}
NODE_MODULES = [
    "shoal.cli",
    "shoal.cli_servers",
    "shoal.agent.agent",
    "shoal.agent.executor_main",
    "shoal.agent.task_worker",
    "shoal.compat.netunicorn.task",
    "shoal.client.remote",
    "shoal.connectors.inventory",
    "shoal.graph",
    "shoal.runner.execution",
    "shoal.dataflow.cli",
    "shoal.library.flags",
]


def _light_env() -> dict[str, str]:
    # Nothing of the test environment may leak into the light venv's imports.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(*args: str | Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=_light_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def light_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The python of a fresh venv with the wheel of this checkout, without extras."""
    base = tmp_path_factory.mktemp("light")
    try:
        built = _run(
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", base / "dist",
            ROOT, cwd=base, timeout=240,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        (wheel,) = (base / "dist").glob("shoal-*.whl")
        made = _run(sys.executable, "-m", "venv", base / "venv", cwd=base, timeout=120)
        assert made.returncode == 0, made.stderr
        python = base / "venv" / "bin" / "python"
        installed = _run(python, "-m", "pip", "install", "--quiet", wheel, cwd=base, timeout=300)
        assert installed.returncode == 0, installed.stderr
        yield python
    finally:
        shutil.rmtree(base, ignore_errors=True)


class WhereAmI(Task):
    """Reports the install the node runs it from."""

    def run(self) -> dict[str, object]:
        import importlib.util
        import sys

        return {"prefix": sys.prefix, "fastapi": importlib.util.find_spec("fastapi") is not None}


@pytest.mark.timeout(600)
def test_light_install_has_none_of_the_controllers_dependencies(
    light_python: Path, tmp_path: Path
) -> None:
    listed = _run(
        light_python, "-c",
        "import importlib.metadata as m, json;"
        "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))",
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    names = {name.lower().replace("_", "-") for name in json.loads(listed.stdout)}
    assert "shoal" in names
    assert not names & CONTROLLER_ONLY, names & CONTROLLER_ONLY


@pytest.mark.timeout(600)
def test_agent_help_runs_on_a_light_install(light_python: Path, tmp_path: Path) -> None:
    done = _run(light_python, "-m", "shoal", "agent", "--help", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--token-file" in done.stdout
    # What a node's processes and a client's script import, all of it, without the extra.
    imported = _run(
        light_python, "-c", f"import {', '.join(NODE_MODULES)}", cwd=tmp_path, timeout=60
    )
    assert imported.returncode == 0, imported.stderr


@pytest.mark.timeout(600)
def test_controller_on_a_light_install_says_what_to_install(
    light_python: Path, tmp_path: Path
) -> None:
    for command in (["controller"], ["up", "--nodes", "1"], ["user", "list"]):
        done = _run(light_python, "-m", "shoal", *command, cwd=tmp_path, timeout=60)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "pip install 'shoal[controller]'" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr, (command, done.stderr)


@pytest.mark.timeout(600)
def test_light_agent_joins_a_controller_and_runs_a_step(light_python: Path, tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}"
    add_user(db_url, "test", "test")
    token = "join-" + tmp_path.name
    controller = Controller(db_url, free_port(), token, tmp_path / "controller.log").start()
    agents = []
    try:
        agents.append(
            start_agent(
                controller.endpoint, token, "light-node", tmp_path / "light-node.log",
                "--property", "install=light", python=str(light_python),
            )
        )  # fmt: skip
        with RemoteClient(controller.endpoint, "test", "test") as client:
            client.wait_for_nodes(["light-node"], timeout=60)
            nodes = client.get_nodes().filter(lambda n: n.name == "light-node")
            assert [n.properties["install"] for n in nodes] == ["light"]
            experiment = Experiment().map(Pipeline().then(WhereAmI(name="where")), nodes)
            client.prepare_experiment(experiment, "light")
            client.wait("light", until="ready", timeout=60)
            client.start_execution("light")
            info = client.wait("light", timeout=60)
        steps = info.execution_result[0].result.unwrap()
        (where,) = steps["where"]
        assert isinstance(where, Success)
        ran = where.unwrap()
        assert Path(ran["prefix"]).resolve() == light_python.parent.parent.resolve(), ran
        assert ran["fastapi"] is False
    finally:
        stop_all(agents)
        controller.stop()
