"""DataInstance: blobs and directories in memory and on disk, remove_path (no cluster)."""

from __future__ import annotations

import io
import os
import pickle
import stat
import tarfile
from pathlib import Path

import pytest

from shoal.graph import (
    ID,
    DataInstance,
    ObjectInfo,
    ObjectSpec,
    remove_path,
)
from shoal.graph.content_types import encode

# Root ignores file permissions: read-only is then checked on the mode bits alone.
IS_ROOT = os.geteuid() == 0
# A value of every JSON kind, accents included (as the content-type tests use).
VALUE = {"a": [1, 2.5, None, True], "b": "žluťoučký kůň", "c": {"nested": "x"}}


def write_bits(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode) & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


# --- DataInstance: blobs -------------------------------------------------------------------


def test_blob_in_memory() -> None:
    d = DataInstance(b"Hello world!")
    assert d.get_bytes() == b"Hello world!"
    assert d.get_str() == "Hello world!"
    assert d.data_type == "blob"
    assert d.content_type is None
    assert d.path is None
    assert d.size == 12
    assert repr(d) == "<DataInstance blob in memory>"
    assert DataInstance(bytearray(b"ab")).get_bytes() == b"ab"
    assert DataInstance(memoryview(b"ab")).get_bytes() == b"ab"


@pytest.mark.parametrize(
    "how", ["pickle", "cloudpickle", "json", "text", "text-utf-16", "text-latin-1"]
)
def test_load_by_content_type(how: str) -> None:
    value = "café" if how.startswith("text") else VALUE
    data, ct = encode(value, how)
    d = DataInstance(data, content_type=ct)
    assert d.content_type == how
    assert d.load() == value
    if how.startswith("text"):
        assert d.get_str() == value


def test_content_type_from_spec_and_info() -> None:
    d = DataInstance(b"[1]", spec=ObjectSpec(content_type="json"))
    assert d.content_type == "json"
    assert d.load() == [1]
    d = DataInstance(b"x", spec=ObjectSpec(content_type="text"), content_type="text-latin-1")
    assert d.content_type == "text-latin-1"
    assert d.info.content_type == "text-latin-1"
    assert d.spec.content_type == "text"
    d = DataInstance(b"x", info=ObjectInfo(content_type="text"))
    assert d.content_type == "text"


def test_content_type_conflicts_are_errors() -> None:
    with pytest.raises(ValueError, match="'json' is not a subtype of the object's declared"):
        DataInstance(b"x", spec=ObjectSpec(content_type="text"), content_type="json")
    given = ObjectInfo()
    with pytest.raises(ValueError, match="not a subtype"):
        DataInstance(b"x", spec=ObjectSpec(content_type="text"), info=given, content_type="json")
    assert given.content_type is None
    with pytest.raises(ValueError, match=r"info\.content_type is 'text'"):
        DataInstance(b"x", info=ObjectInfo(content_type="text"), content_type="json")
    with pytest.raises(ValueError, match="'dir' is for directories"):
        DataInstance(b"x", content_type="dir")
    with pytest.raises(ValueError, match="unknown content type 'jsno'"):
        DataInstance(b"x", content_type="jsno")


def test_load_without_content_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no content type to load by"):
        DataInstance(b"[1]").load()
    labelled = DataInstance(b"[1]", spec=ObjectSpec(id=ID(1, 2), label="out"))
    with pytest.raises(ValueError, match=r"no content type to load by: object \(1, 2\) \('out'\)"):
        labelled.load()


def test_get_str_uses_the_text_encoding() -> None:
    assert DataInstance("ž".encode("utf-16"), content_type="text-utf-16").get_str() == "ž"
    # other content types read as UTF-8
    assert DataInstance('"ž"'.encode(), content_type="json").get_str() == '"ž"'
    with pytest.raises(UnicodeDecodeError):
        DataInstance(b"\xff").get_str()


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DataInstance()
    with pytest.raises(ValueError, match="exactly one"):
        DataInstance(b"x", path=tmp_path)
    with pytest.raises(TypeError, match="must be bytes, not str"):
        DataInstance("text")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="missing"):
        DataInstance(path=tmp_path / "missing")
    with pytest.raises(ValueError, match=r"data_type 'blob' given, but .* is a dir"):
        DataInstance(path=tmp_path, data_type="blob")
    with pytest.raises(ValueError, match="data_type must be 'blob' or 'dir'"):
        DataInstance(b"x", data_type="file")
    with pytest.raises(ValueError, match="spec has data_type 'blob', but the data is a dir"):
        DataInstance(path=tmp_path, spec=ObjectSpec())


def test_pickled_instance_keeps_its_metadata() -> None:
    d = DataInstance(b"[1]", spec=ObjectSpec(id=ID(1, 2), label="x"), content_type="json")
    back = pickle.loads(pickle.dumps(d))
    assert back.get_bytes() == b"[1]"
    assert back.spec == d.spec
    assert back.info == d.info
    assert back.load() == [1]


def test_blob_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "data.json"
    src.write_bytes(b'{"x": 1}')
    d = DataInstance(path=src, content_type="json")
    assert d.path == src
    assert d.data_type == "blob"
    assert d.size == 8
    assert d.get_bytes() == b'{"x": 1}'
    assert d.load() == {"x": 1}
    assert repr(d) == f"<DataInstance blob 'json' at {str(src)!r}>"
    # a relative path is kept as an absolute one
    monkeypatch.chdir(tmp_path)
    assert DataInstance(path="data.json").path == src


def test_write_blob_from_memory_and_from_disk(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"on disk")
    for d, expected in (
        (DataInstance(b"in memory"), b"in memory"),
        (DataInstance(path=src), b"on disk"),
    ):
        target = tmp_path / "out" / ("m" if d.path is None else "d") / "copy.bin"
        d.write(target)  # missing parents are made
        assert not target.is_symlink()
        assert target.read_bytes() == expected
        target.write_bytes(b"changed")  # the copy is writable...
        assert d.get_bytes() == expected  # ...and changing it leaves the object alone
    with pytest.raises(FileExistsError, match="already exists"):
        DataInstance(b"x").write(src)
    assert src.read_bytes() == b"on disk"


def test_link_blob_on_disk_is_read_only(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    src = store / "obj"
    src.write_bytes(b"immutable")
    d = DataInstance(path=src)
    target = tmp_path / "work" / "input"
    d.link(target)
    assert target.is_symlink()
    assert Path(os.readlink(target)) == src.resolve()
    assert target.read_bytes() == b"immutable"
    assert write_bits(src) == 0
    if not IS_ROOT:
        with pytest.raises(PermissionError):
            target.write_bytes(b"changed")
    # a writable copy can still be made from a linked (read-only) object
    d.write(tmp_path / "copy")
    assert write_bits(tmp_path / "copy") & stat.S_IWUSR
    # linking twice is fine: the source is already read-only
    d.link(tmp_path / "work" / "input2")
    with pytest.raises(FileExistsError):
        d.link(target)
    # the store can delete it; removing the link leaves the object
    remove_path(target)
    assert src.exists()
    remove_path(src)
    assert not src.exists()


def test_link_follows_a_symlink_to_the_stored_file(tmp_path: Path) -> None:
    src = tmp_path / "obj"
    src.write_bytes(b"x")
    (tmp_path / "alias").symlink_to(src)
    DataInstance(path=tmp_path / "alias").link(tmp_path / "linked")
    assert Path(os.readlink(tmp_path / "linked")) == src.resolve()
    assert write_bits(src) == 0


def test_link_falls_back_to_write_in_memory(tmp_path: Path) -> None:
    target = tmp_path / "input"
    DataInstance(b"data").link(target)
    assert not target.is_symlink()
    assert target.read_bytes() == b"data"
    assert write_bits(target) & stat.S_IWUSR


def test_files_on_disk_are_not_read_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big"
    with open(src, "wb") as f:
        f.truncate(16 * 1024 * 1024)  # sparse: large, cheap to make

    def no_reading(*_args: object, **_kwargs: object) -> bytes:
        raise AssertionError("the file was read into memory")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    d = DataInstance(path=src)
    assert d.size == 16 * 1024 * 1024
    repr(d)
    d.write(tmp_path / "copy")
    d.link(tmp_path / "link")
    assert (tmp_path / "copy").stat().st_size == d.size
    with pytest.raises(AssertionError, match="read into memory"):
        d.get_bytes()


# --- DataInstance: directories -----------------------------------------------------------


def make_tree(root: Path) -> Path:
    (root / "a" / "deep" / "path").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "myfile.txt").write_bytes(b"12345")
    (root / "a" / "deep" / "path" / "x").write_bytes(b"67890")
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    (root / "link-to-x").symlink_to("a/deep/path/x")
    return root


def read_tree(root: Path) -> dict[str, object]:
    """Every entry under root: file contents, 'dir', or the symlink's target."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("symlink", os.readlink(p))
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = p.read_bytes()
    return out


TREE = {
    "a": "dir",
    "a/deep": "dir",
    "a/deep/path": "dir",
    "a/deep/path/x": b"67890",
    "empty": "dir",
    "link-to-x": ("symlink", "a/deep/path/x"),
    "myfile.txt": b"12345",
    "run.sh": b"#!/bin/sh\necho hi\n",
}


def test_directory_on_disk(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    d = DataInstance(path=root)
    assert d.data_type == "dir"
    assert d.content_type == "dir"
    assert d.size == 5 + 5 + len("#!/bin/sh\necho hi\n")
    assert repr(d) == f"<DataInstance dir at {str(root)!r}>"
    with pytest.raises(ValueError, match="is a directory: there is no value to load"):
        d.load()
    with pytest.raises(ValueError, match="is a directory, which has no text"):
        d.get_str()
    with pytest.raises(ValueError, match="a directory has content type 'dir', not 'json'"):
        DataInstance(path=root, content_type="json")
    assert DataInstance(path=root, content_type="dir").content_type == "dir"


def test_directory_bytes_are_a_tar_that_reads_back(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    data = DataInstance(path=root).get_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == set(TREE)  # relative names, no './' prefix
        assert tar.extractfile("myfile.txt").read() == b"12345"  # type: ignore[union-attr]
        assert members["link-to-x"].issym()
        assert members["link-to-x"].linkname == "a/deep/path/x"
        assert members["run.sh"].mode & 0o100
        assert members["empty"].isdir()
        assert all(m.uid == 0 and m.uname == "" for m in members.values())
    # the same tree gives the same archive
    assert DataInstance(path=root).get_bytes() == data


def test_directory_write_from_disk_and_from_tar(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    on_disk = DataInstance(path=root)
    in_memory = DataInstance(on_disk.get_bytes(), data_type="dir")
    assert in_memory.data_type == "dir"
    assert in_memory.content_type == "dir"
    assert in_memory.path is None
    assert in_memory.get_bytes() == on_disk.get_bytes()
    for name, d in (("from-disk", on_disk), ("from-tar", in_memory)):
        target = tmp_path / "out" / name
        d.write(target)
        assert read_tree(target) == TREE, name
        assert os.access(target / "run.sh", os.X_OK)
        # a fresh, writable copy: it can be changed and added to
        assert write_bits(target / "a" / "deep") & stat.S_IWUSR
        (target / "a" / "deep" / "path" / "x").write_bytes(b"changed")
        (target / "a" / "new").write_bytes(b"new")
    assert read_tree(root) == TREE
    with pytest.raises(FileExistsError):
        in_memory.write(tmp_path / "out" / "from-tar")


def test_directory_link_on_disk_is_read_only(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "store" / "obj")
    d = DataInstance(path=root)
    target = tmp_path / "work" / "adir"
    d.link(target)
    assert target.is_symlink()
    assert read_tree(target) == TREE
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            assert write_bits(p) == 0, p
    if not IS_ROOT:
        with pytest.raises(PermissionError):
            (target / "myfile.txt").write_bytes(b"changed")
        with pytest.raises(PermissionError):
            (target / "new-file").write_bytes(b"x")
    # a writable copy of a read-only tree is writable
    d.write(tmp_path / "copy")
    (tmp_path / "copy" / "a" / "deep" / "new").write_bytes(b"x")
    assert write_bits(tmp_path / "copy" / "myfile.txt") & stat.S_IWUSR
    # the store can delete the read-only tree
    remove_path(target)
    assert root.exists()
    remove_path(root)
    assert not root.exists()
    remove_path(root)  # gone already: no error


def test_directory_in_memory_link_falls_back_to_write(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    d = DataInstance(DataInstance(path=root).get_bytes(), spec=ObjectSpec(data_type="dir"))
    d.link(tmp_path / "linked")
    assert not (tmp_path / "linked").is_symlink()
    assert read_tree(tmp_path / "linked") == TREE


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, content in members:
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content else None)
    return buffer.getvalue()


def test_unpacking_refuses_to_leave_the_tree(tmp_path: Path) -> None:
    escaping = tarfile.TarInfo("../escaped")
    absolute_link = tarfile.TarInfo("passwd")
    absolute_link.type = tarfile.SYMTYPE
    absolute_link.linkname = "/etc/passwd"
    for bad in (tar_of((escaping, b"x")), tar_of((absolute_link, b""))):
        target = tmp_path / "out"
        with pytest.raises(ValueError, match="not a directory archive that can be unpacked"):
            DataInstance(bad, data_type="dir").write(target)
        assert not target.exists()
    assert not (tmp_path / "escaped").exists()


def test_a_dir_that_is_not_a_tar(tmp_path: Path) -> None:
    d = DataInstance(b"not a tar at all" * 100, data_type="dir")
    with pytest.raises(ValueError, match="not a directory archive"):
        d.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    d = DataInstance(path=tmp_path / "empty")
    assert d.size == 0
    DataInstance(d.get_bytes(), data_type="dir").write(tmp_path / "copy")
    assert (tmp_path / "copy").is_dir()
    assert list((tmp_path / "copy").iterdir()) == []


def test_remove_path_on_plain_things(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    remove_path(f)
    assert not f.exists()
    tree = make_tree(tmp_path / "t")
    remove_path(tree)
    assert not tree.exists()
    remove_path(tmp_path / "never-was")
