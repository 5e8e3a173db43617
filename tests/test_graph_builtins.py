"""Unit tests for the built-in tasks of shoal.graph (pure functions, no cluster)."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from shoal.graph import DataInstance, LabeledList
from shoal.graph.builtins import (
    LoadConfig,
    LoadDirConfig,
    MakeDirectoryConfig,
    SleepConfig,
    SliceDirectoryConfig,
    StoreConfig,
    concat,
    load,
    load_dir,
    make_directory,
    sleep,
    slice_directory,
    store,
)
from shoal.graph.builtins_execute import (
    ArgInput,
    ArgOutput,
    ExecuteConfig,
    InputMapping,
    OutputMapping,
    execute,
)
from shoal.graph.task_io import TaskCancelled, TaskFailed

# Root ignores file permissions: read-only is then checked on the mode bits alone.
IS_ROOT = os.geteuid() == 0


def write_bits(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode) & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(output_dir, scratch_dir), both existing and empty."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir()
    scratch.mkdir()
    return out, scratch


def on_disk(tmp_path: Path, name: str, data: bytes) -> DataInstance:
    p = tmp_path / name
    p.write_bytes(data)
    return DataInstance(path=p)


def run(config: ExecuteConfig, inputs: list[DataInstance] | LabeledList, dirs, **kw):
    out, scratch = dirs
    # A fresh output directory per run, as the engine gives each task.
    fresh = Path(tempfile.mkdtemp(dir=out))
    return execute(config, inputs, output_dir=fresh, scratch_dir=scratch, **kw)


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    """Run fn in a thread; the result or exception lands in the returned dict."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


# --- Concat, Sleep ----------------------------------------------------------------------


def test_concat_memory_and_disk(tmp_path: Path, dirs) -> None:
    out, _ = dirs
    result = concat([DataInstance(b"Hello "), on_disk(tmp_path, "w", b"world!")], output_dir=out)
    assert len(result) == 1
    assert result[0].get_bytes() == b"Hello world!"
    assert result[0].path is not None and result[0].path.parent == out


def test_concat_of_nothing_is_empty(dirs) -> None:
    assert concat([], output_dir=dirs[0])[0].get_bytes() == b""


def test_concat_refuses_a_dir_naming_it(tmp_path: Path, dirs) -> None:
    (tmp_path / "d").mkdir()
    inputs = LabeledList([DataInstance(b"x"), DataInstance(path=tmp_path / "d")], ["a", "dd"])
    with pytest.raises(TaskFailed, match=r"input 1 \('dd'\) is a dir"):
        concat(inputs, output_dir=dirs[0])
    assert list(dirs[0].iterdir()) == []


def test_sleep_forwards_input(tmp_path: Path, dirs) -> None:
    src = on_disk(tmp_path, "x", b"data")
    src.info.content_type = None
    result = sleep(
        SleepConfig(0.01), [DataInstance(b"[1]", content_type="json")], output_dir=dirs[0]
    )
    assert result[0].load() == [1]
    assert sleep(SleepConfig(0), [src], output_dir=dirs[0] / "..")[0].get_bytes() == b"data"


def test_sleep_is_cancelled_promptly(dirs) -> None:
    cancel = threading.Event()
    t, box = in_thread(
        sleep, SleepConfig(30), [DataInstance(b"x")], output_dir=dirs[0], cancel=cancel
    )
    cancel.set()
    t.join(timeout=5)
    assert not t.is_alive()
    assert isinstance(box["error"], TaskCancelled)


def test_sleep_rejects_bad_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        SleepConfig(-1)


# --- Load, LoadDir, Store ---------------------------------------------------------------


def test_load_copies_the_file(tmp_path: Path, dirs) -> None:
    src = tmp_path / "f.json"
    src.write_bytes(b"[1, 2]")
    result = load(LoadConfig(str(src), content_type="json"), output_dir=dirs[0])
    src.write_bytes(b"changed")  # the object is a copy, not the file
    assert result[0].load() == [1, 2]
    assert result[0].content_type == "json"


def test_load_errors(tmp_path: Path, dirs) -> None:
    with pytest.raises(TaskFailed, match="cannot read"):
        load(LoadConfig(str(tmp_path / "missing")), output_dir=dirs[0])
    with pytest.raises(TaskFailed, match="LoadDir"):
        load(LoadConfig(str(tmp_path)), output_dir=dirs[0])
    # a relative path fails the task when it runs (Rain: a TaskException at wait)
    with pytest.raises(TaskFailed, match="absolute"):
        load(LoadConfig("relative/path"), output_dir=dirs[0])


def test_load_dir(tmp_path: Path, dirs) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a").write_bytes(b"A")
    result = load_dir(LoadDirConfig(str(src)), output_dir=dirs[0])[0]
    assert result.data_type == "dir"
    assert (result.path / "sub" / "a").read_bytes() == b"A"
    with pytest.raises(TaskFailed, match="does not exist"):
        load_dir(LoadDirConfig(str(tmp_path / "nope")), output_dir=dirs[0])


def test_store_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "result"
    assert store(StoreConfig(str(target)), [DataInstance(b"one")]) == LabeledList()
    assert target.read_bytes() == b"one"
    with pytest.raises(TaskFailed, match="already exists"):
        store(StoreConfig(str(target)), [DataInstance(b"two")])
    assert target.read_bytes() == b"one"
    store(StoreConfig(str(target), overwrite=True), [DataInstance(b"two")])
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result"]


def test_store_dir_over_dir(tmp_path: Path, dirs) -> None:
    tree = make_directory(MakeDirectoryConfig(("a/x",)), [DataInstance(b"X")], output_dir=dirs[0])[
        0
    ]
    target = tmp_path / "stored"
    target.mkdir()
    (target / "old").write_bytes(b"")
    store(StoreConfig(str(target), overwrite=True), [tree])
    assert sorted(p.name for p in target.rglob("*")) == ["a", "x"]


# --- MakeDirectory, SliceDirectory ------------------------------------------------------


def test_make_and_slice_directory_round_trip(tmp_path: Path, dirs) -> None:
    out, scratch = dirs
    d = tmp_path / "d"
    d.mkdir()
    (d / "inner").write_bytes(b"in d")
    inputs = [DataInstance(b"12345"), DataInstance(path=d), on_disk(tmp_path, "b", b"67890")]
    config = MakeDirectoryConfig(("myfile.txt", "adir/", "a/deep/path/x"))
    made = make_directory(config, inputs, output_dir=out / "..")[0]
    assert made.data_type == "dir"
    root = made.path
    assert (root / "myfile.txt").read_bytes() == b"12345"
    assert (root / "adir" / "inner").read_bytes() == b"in d"
    assert (root / "a" / "deep" / "path" / "x").read_bytes() == b"67890"

    x = slice_directory(
        SliceDirectoryConfig("a/deep/path/x", content_type="text"),
        [made],
        output_dir=out,
        scratch_dir=scratch,
    )[0]
    assert (x.data_type, x.get_str()) == ("blob", "67890")
    # The same from the directory held in memory (a tar), unpacked into scratch.
    deep = slice_directory(
        SliceDirectoryConfig("a/deep/"),
        [DataInstance(made.get_bytes(), data_type="dir")],
        output_dir=out / "..",
        scratch_dir=scratch,
    )[0]
    assert deep.data_type == "dir"
    assert (deep.path / "path" / "x").read_bytes() == b"67890"
    assert list(scratch.iterdir()) == []


def test_slice_directory_errors(tmp_path: Path, dirs) -> None:
    out, scratch = dirs
    made = make_directory(MakeDirectoryConfig(("a/x",)), [DataInstance(b"X")], output_dir=out)[0]
    for path, message in [
        ("a/missing", "does not exist"),
        ("a", "end the path with '/'"),
        ("a/x/", "it is a file"),
    ]:
        with pytest.raises(TaskFailed, match=message):
            slice_directory(SliceDirectoryConfig(path), [made], output_dir=out, scratch_dir=scratch)
    with pytest.raises(TaskFailed, match="takes a dir input"):
        slice_directory(
            SliceDirectoryConfig("x"), [DataInstance(b"")], output_dir=out, scratch_dir=scratch
        )
    with pytest.raises(ValueError, match=r"\.\."):
        SliceDirectoryConfig("../etc/passwd")


def test_make_directory_config_checks() -> None:
    with pytest.raises(ValueError, match="overlap"):
        MakeDirectoryConfig(("a", "a/b"))
    with pytest.raises(ValueError, match="relative"):
        MakeDirectoryConfig(("/abs",))


# --- Execute ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_grep_example_from_the_guide(dirs) -> None:
    data = DataInstance(b"It is\nrainy day\n")
    config = ExecuteConfig(("grep", "rain", ArgInput(0)), stdout=OutputMapping("stdout"))
    result = run(config, [data], dirs)
    assert result.labels == ["stdout"]
    assert result["stdout"].get_bytes() == b"rainy day\n"
    assert list(dirs[1].iterdir()) == []  # the working directory is gone


@pytest.mark.timeout(30)
def test_tee_with_two_outputs(tmp_path: Path, dirs) -> None:
    data = on_disk(tmp_path, "data", b"tee me\n")
    config = ExecuteConfig(
        ("tee", ArgOutput("output1")),
        stdin=0,
        stdout=OutputMapping("output2", content_type="text"),
    )
    result = run(config, [data], dirs)
    assert result.labels == ["output1", "output2"]
    assert result["output1"].get_bytes() == result["output2"].get_bytes() == b"tee me\n"
    assert result["output2"].content_type == "text"


@pytest.mark.timeout(30)
def test_string_args_are_split_and_shell(dirs) -> None:
    config = ExecuteConfig("printf '%s|' 'a b' c", stdout=OutputMapping("o"))
    assert run(config, [], dirs)["o"].get_bytes() == b"a b|c|"
    config = ExecuteConfig(
        "echo one > f && echo two >> f", shell=True, output_paths=(OutputMapping("f"),)
    )
    assert run(config, [], dirs)["f"].get_bytes() == b"one\ntwo\n"
    config = ExecuteConfig(
        ("cat", ArgInput("in"), "|", "tr a-z A-Z"), shell=True, stdout=OutputMapping("o")
    )
    out = run(config, LabeledList([DataInstance(b"abc")], ["in"]), dirs)
    assert out["o"].get_bytes() == b"ABC"


@pytest.mark.timeout(30)
def test_output_paths_and_dirs(dirs) -> None:
    config = ExecuteConfig(
        "mkdir -p res/sub && echo hi > res/sub/f && echo log > log.txt",
        shell=True,
        output_paths=(
            OutputMapping("res", data_type="dir"),
            OutputMapping("log", path="log.txt", content_type="text"),
        ),
    )
    result = run(config, [], dirs)
    assert result["res"].data_type == "dir"
    assert (result["res"].path / "sub" / "f").read_bytes() == b"hi\n"
    assert result["log"].get_str() == "log\n"


@pytest.mark.timeout(30)
def test_input_paths_write_vs_link(tmp_path: Path, dirs) -> None:
    obj = on_disk(tmp_path, "obj", b"line\n")
    # write=True: a fresh writable copy; the object is unchanged.
    config = ExecuteConfig(
        "echo 'New line' >> myfile && cat myfile",
        shell=True,
        input_paths=(InputMapping("obj", path="myfile", write=True),),
        stdout=OutputMapping("o"),
    )
    result = run(config, LabeledList([obj], ["obj"]), dirs)
    assert result["o"].get_bytes() == b"line\nNew line\n"
    assert obj.get_bytes() == b"line\n"
    # By default a read-only link: the mode bits say so, checked from inside the task.
    config = ExecuteConfig(
        "stat -L -c %a myfile; test -L myfile && echo link",
        shell=True,
        input_paths=(InputMapping("obj", path="myfile"),),
        stdout=OutputMapping("o"),
    )
    mode, kind = run(config, LabeledList([obj], ["obj"]), dirs)["o"].get_str().split()
    assert kind == "link"
    assert int(mode, 8) & 0o222 == 0
    assert write_bits(obj.path) == 0
    if not IS_ROOT:
        config = ExecuteConfig(
            "echo 'New line' >> myfile", shell=True, input_paths=(InputMapping(0, path="myfile"),)
        )
        with pytest.raises(TaskFailed, match="exited with code"):
            run(config, [obj], dirs)
        assert obj.get_bytes() == b"line\n"


@pytest.mark.timeout(30)
def test_non_zero_exit_reports_code_and_stderr(dirs) -> None:
    config = ExecuteConfig("echo something broke >&2; exit 1", shell=True)
    with pytest.raises(TaskFailed, match=r"exited with code 1; stderr:\nsomething broke"):
        run(config, [], dirs)
    assert list(dirs[1].iterdir()) == []


@pytest.mark.timeout(30)
def test_missing_output_and_program(dirs) -> None:
    config = ExecuteConfig("true", output_paths=(OutputMapping("index", path="index.html"),))
    with pytest.raises(TaskFailed, match=r"output 'index'.*'index.html'"):
        run(config, [], dirs)
    with pytest.raises(TaskFailed, match="cannot run 'no-such-program-xyz'"):
        run(ExecuteConfig("no-such-program-xyz"), [], dirs)
    config = ExecuteConfig("mkdir d", output_paths=(OutputMapping("d"),))
    with pytest.raises(TaskFailed, match="is a directory, but a blob was declared"):
        run(config, [], dirs)
    assert all(list(d.iterdir()) == [] for d in dirs[0].iterdir())
    with pytest.raises(TaskFailed, match="no input labelled 'x'"):
        run(ExecuteConfig(("cat", ArgInput("x"))), [], dirs)


@pytest.mark.timeout(30)
def test_env(dirs) -> None:
    config = ExecuteConfig(
        "echo $SHOAL_TEST_VAR", shell=True, env={"SHOAL_TEST_VAR": "v"}, stdout=OutputMapping("o")
    )
    assert run(config, [], dirs)["o"].get_bytes() == b"v\n"


@pytest.mark.timeout(30)
def test_cancel_kills_the_program_promptly(dirs) -> None:
    cancel = threading.Event()
    started = time.monotonic()
    t, box = in_thread(run, ExecuteConfig("sleep 30"), [], dirs, cancel=cancel)
    cancel.set()
    t.join(timeout=10)
    assert not t.is_alive()
    assert time.monotonic() - started < 10
    assert isinstance(box["error"], TaskCancelled)
    assert list(dirs[1].iterdir()) == []


@pytest.mark.timeout(30)
def test_background_children_are_killed(tmp_path: Path, dirs) -> None:
    pid_file = tmp_path / "pid"
    run(ExecuteConfig(f"sleep 30 & echo $! > {pid_file}", shell=True), [], dirs)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        # A zombie child of init still answers kill(0); check its state.
        status = Path(f"/proc/{pid}/stat")
        if status.exists() and status.read_text().split()[2] == "Z":
            break
        threading.Event().wait(0.02)
    else:
        pytest.fail("the background sleep outlived the task")


def test_execute_config_checks() -> None:
    with pytest.raises(ValueError, match="more than one output"):
        ExecuteConfig(("x", ArgOutput("a")), output_paths=(OutputMapping("a"),))
    with pytest.raises(ValueError, match="relative"):
        ExecuteConfig("x", output_paths=(OutputMapping("a", path="/etc/a"),))
    with pytest.raises(ValueError, match="program"):
        ExecuteConfig(())
