"""A Python environment with netUnicorn's own packages only, and running scripts in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PACKAGES = ["netunicorn-client", "netunicorn-base", "netunicorn-library", "netunicorn-executor"]
HERE = Path(__file__).resolve().parent


def client_venv(directory: Path) -> Path:
    """A venv (not shoal's) with the four netUnicorn packages from PyPI; its python.

    Made once per directory. It is built from the interpreter running the
    tests, so the client pickles graphs for the same Python the agents run.
    """
    python = directory / "bin" / "python"
    done_marker = directory / ".netunicorn-installed"
    if done_marker.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=120)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(PACKAGES)} failed:\n{install.stderr}")
    done_marker.write_text("\n".join(PACKAGES))
    return python


def client_env(endpoint: str, **extra: str) -> dict[str, str]:
    """The environment of a netUnicorn client script pointed at a shoal controller."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SHOAL_")}
    env.update(NETUNICORN_ENDPOINT=f"{endpoint}/netunicorn", **extra)
    return env


def run_python(
    python: Path, script: Path, args: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> str:
    """Run a script with the netUnicorn venv's python; its standard output."""
    done = subprocess.run(
        [str(python), str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{script.name} {args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_script(
    python: Path, script: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[str, dict]:
    """Run a helper script of tests/ in the netUnicorn venv; its output and its summary JSON."""
    out = run_python(python, HERE / script, args, env, cwd, timeout)
    for line in reversed(out.splitlines()):
        marker, _, payload = line.partition(" ")
        if marker in ("RESULT", "SEED-SUMMARY"):
            return out, json.loads(payload)
    raise AssertionError(f"{script} printed no result:\n{out}")
