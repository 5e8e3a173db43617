"""``DataInstance``: the data of one object, in memory or on disk, with its metadata."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

from shoal.graph import content_types
from shoal.graph.attributes import DATA_TYPES, ObjectInfo, ObjectSpec
from shoal.graph.exceptions import ContentTypeError

__all__ = ["DataInstance", "remove_path"]

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


class DataInstance:
    """The data of a data object: a blob or a directory, held as bytes or as a path.

    What ``fetch()`` returns in the client and what a Python task gets for an input.
    A ``'dir'`` instance held in memory holds a tar archive of the directory. The
    object's metadata are ``spec`` (:class:`ObjectSpec`) and ``info``
    (:class:`ObjectInfo`); ``content_type`` is the actual type (``info``'s if set,
    else ``spec``'s; ``'dir'`` for a directory).

    >>> d = DataInstance(b'[1, 2, 3]', content_type="json")
    >>> d.get_bytes(), d.load(), d.data_type, d.content_type
    (b'[1, 2, 3]', [1, 2, 3], 'blob', 'json')
    >>> DataInstance("žluť".encode("latin2"), content_type="text-latin2").get_str()
    'žluť'

    A file or a directory on disk is read only when asked (``get_bytes()``,
    ``get_str()``, ``load()``); ``write()`` copies it and ``link()`` links it without
    reading it into memory::

        big = DataInstance(path="/data/big.bin")
        big.link("input.bin")    # a read-only symlink to /data/big.bin
        big.write("copy.bin")    # a fresh, writable copy

    ``content_type=`` sets ``info.content_type`` (the actual type), which must be a
    subtype of ``spec.content_type``; ``data_type=`` sets ``spec.data_type`` and is
    taken from ``path`` when not given (a directory is ``'dir'``).
    """

    __slots__ = ("_data", "_loaded", "_path", "info", "spec")

    def __init__(
        self,
        data: bytes | bytearray | memoryview | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        content_type: str | None = None,
        data_type: str | None = None,
        spec: ObjectSpec | None = None,
        info: ObjectInfo | None = None,
    ) -> None:
        if (data is None) == (path is None):
            raise ValueError("a DataInstance holds either data (bytes) or a path, exactly one")
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"DataInstance data must be bytes, not {type(data).__name__}; "
                "encode it first (e.g. content_types.encode(value, 'pickle'))"
            )
        if data_type is not None and data_type not in DATA_TYPES:
            raise ValueError(f"data_type must be 'blob' or 'dir', not {data_type!r}")
        self._data: bytes | None = None if data is None else bytes(data)
        self._path: Path | None = None
        if path is not None:
            self._path = Path(path).absolute()
            if not self._path.exists():
                raise FileNotFoundError(f"no file or directory at {self._path}")
            on_disk = "dir" if self._path.is_dir() else "blob"
            if data_type is not None and data_type != on_disk:
                raise ValueError(f"data_type {data_type!r} given, but {self._path} is a {on_disk}")
            data_type = on_disk
        if data_type is None:
            data_type = spec.data_type if spec is not None else "blob"
        if spec is None:
            spec = ObjectSpec(data_type=data_type)
        elif spec.data_type != data_type:
            raise ValueError(
                f"the object's spec has data_type {spec.data_type!r}, but the data is a {data_type}"
            )
        self.spec = spec
        self.info = info if info is not None else ObjectInfo()
        content_type = content_types.validate(content_type)
        previous = self.info.content_type
        if content_type is not None:
            if previous not in (None, content_type):
                raise ValueError(
                    f"content_type {content_type!r} given, but info.content_type is {previous!r}"
                )
            self.info.content_type = content_type
        try:
            self._check_content_type()
        except ValueError:
            self.info.content_type = previous  # the caller's info stays as it was given
            raise

    def _check_content_type(self) -> None:
        declared = content_types.validate(self.spec.content_type)
        actual = content_types.validate(self.info.content_type)
        if self.data_type == "dir":
            # A directory's only content type is 'dir'; anything else is a mix-up.
            for ct in (declared, actual):
                if ct not in (None, "dir"):
                    raise ValueError(f"a directory has content type 'dir', not {ct!r}")
        elif "dir" in (declared, actual):
            raise ValueError("content type 'dir' is for directories, but this data is a blob")
        # An unset actual type takes the declared one; a set one must fit it.
        if actual is not None and not content_types.is_subtype(actual, declared):
            raise ValueError(
                f"content type {actual!r} is not a subtype of the object's declared "
                f"content type {declared!r}"
            )

    # --- what the instance is ---------------------------------------------------------

    @property
    def data_type(self) -> str:
        """``'blob'`` or ``'dir'``."""
        return self.spec.data_type

    @property
    def content_type(self) -> str | None:
        """The actual content type: ``info``'s if set, else ``spec``'s; ``None`` if neither."""
        ct = content_types.resolve(self.info.content_type, self.spec.content_type)
        if ct is None and self.data_type == "dir":
            return "dir"
        return ct

    @property
    def path(self) -> Path | None:
        """The absolute path of the data on disk, or ``None`` when it is held in memory."""
        return self._path

    @property
    def size(self) -> int:
        """Size in bytes: of the blob; of the files for a directory on disk (approximate,
        as the guide allows); of the tar archive for a directory held in memory."""
        if self._data is not None:
            return len(self._data)
        assert self._path is not None
        if self.data_type == "blob":
            return self._path.stat().st_size
        total = 0
        for root, _dirs, files in os.walk(self._path):
            for name in files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    total += os.path.getsize(p)
        return total

    def _describe(self) -> str:
        spec = self.spec
        if spec.id is not None:
            return f"object {tuple(spec.id)}" + (f" ({spec.label!r})" if spec.label else "")
        return f"object {spec.label!r}" if spec.label else "this data instance"

    def __repr__(self) -> str:
        where = f"at {str(self._path)!r}" if self._path is not None else "in memory"
        ct = self.content_type
        return (
            f"<DataInstance {self.data_type}"
            + (f" {ct!r}" if ct and ct != "dir" else "")
            + (f" {self.spec.label!r}" if self.spec.label else "")
            + f" {where}>"
        )

    # --- reading ----------------------------------------------------------------------

    def get_bytes(self) -> bytes:
        """The content as bytes; for a directory, a tar archive of it."""
        if self._data is not None:
            return self._data
        assert self._path is not None
        if self.data_type == "dir":
            return _tar_directory(self._path)
        return self._path.read_bytes()

    def get_str(self) -> str:
        """The content as text, decoded by the ``text-<encoding>`` content type if it has
        one, as UTF-8 otherwise."""
        if self.data_type == "dir":
            raise ValueError(f"{self._describe()} is a directory, which has no text")
        encoding = content_types.text_encoding(self.content_type) or "utf-8"
        return self.get_bytes().decode(encoding)

    def load(self, cache: bool = False) -> Any:
        """The Python value, deserialised by the content type (see ``content_types.decode``).

        Each call decodes the data again and gives a fresh value, unless ``cache``
        (Rain's): then the value decoded by the first ``load(cache=True)`` is kept and
        given back by the next ones; it is shared, so it must not be changed.
        Raises ``ValueError`` when there is no content type to load by.

        >>> d = DataInstance(b"[1]", content_type="json")
        >>> d.load(cache=True) is d.load(cache=True), d.load() is d.load()
        (True, False)
        """
        if cache:
            try:
                return self._loaded
            except AttributeError:  # the slot is set only by a caching load
                pass
        value = self._load()
        if cache:
            self._loaded = value
        return value

    def _load(self) -> Any:
        ct = self.content_type
        if ct is None:
            raise ContentTypeError(
                f"no content type to load by: {self._describe()} has none; read it with "
                "get_bytes() or get_str(), or give it a content type"
            )
        if self.data_type == "dir":
            # decode() would say so too, without naming the object
            raise ValueError(
                f"{self._describe()} is a directory: there is no value to load; use "
                "write()/link() or get_bytes() for a tar archive"
            )
        return content_types.decode(self.get_bytes(), ct)

    # --- mapping onto the file system -------------------------------------------------

    def write(self, path: str | os.PathLike[str]) -> None:
        """Make a fresh, writable copy at ``path``: a file for a blob, a directory tree for
        a directory. Changing the copy does not change the object.

        Missing parent directories are created; ``path`` itself must not exist
        (``FileExistsError``), so that nothing is overwritten by accident. Symlinks
        inside a directory stay symlinks; unpacking a directory held as a tar refuses
        links and paths that lead out of the tree (``ValueError``).
        """
        target = _fresh_target(path)
        if self.data_type == "blob":
            if self._data is not None:
                with open(target, "xb") as f:
                    f.write(self._data)
            else:
                assert self._path is not None
                # copyfile streams and does not copy the mode: the copy is writable
                # even when the source was made read-only by link().
                shutil.copyfile(self._path, target)
            return
        if self._data is not None:
            _untar(self._data, target, self._describe())
        else:
            assert self._path is not None
            shutil.copytree(self._path, target, symlinks=True)
        _make_writable(target)

    def link(self, path: str | os.PathLike[str]) -> None:
        """Map the data at ``path`` read-only: a symlink to the data on disk.

        The linked file or directory tree loses its write permissions (objects are
        immutable; this guards against accidents, not against a determined user: root,
        or anyone who changes the permissions back, can still write). When the
        instance is held in memory there is nothing to link, and this falls back to
        :meth:`write` (a writable copy), as the guide allows.
        """
        if self._path is None:
            self.write(path)
            return
        target = _fresh_target(path)
        # Through any symlinks to the data itself: the mode to change, and the place
        # to point at, is the stored file or tree.
        source = self._path.resolve()
        _make_read_only(source)
        os.symlink(source, target, target_is_directory=self.data_type == "dir")


def _fresh_target(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target} already exists; write()/link() make a new one")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _tar_directory(root: Path) -> bytes:
    """A tar of the tree under ``root``, with paths relative to it (no ``./`` prefix)."""

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        # The owner on this node means nothing where the archive is unpacked, and
        # leaving it out makes equal trees give equal archives.
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # Entries in sorted order (tarfile sorts below each top-level entry too), so
        # that the archive does not depend on the order the file system lists them.
        for name in sorted(os.listdir(root)):
            tar.add(root / name, arcname=name, recursive=True, filter=anonymous)
    return buffer.getvalue()


def _untar(data: bytes, target: Path, what: str) -> None:
    target.mkdir()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            # The 'data' filter refuses absolute paths, '..', links that leave the tree
            # and device files: an archive made on another node cannot write outside
            # the target.
            tar.extractall(target, filter="data")
    except tarfile.TarError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ValueError(f"{what} is not a directory archive that can be unpacked: {exc}") from exc


def _walk_bottom_up(root: Path) -> list[Path]:
    paths: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        paths.extend(Path(dirpath, n) for n in filenames + dirnames)
    paths.append(root)
    return paths


def _make_writable(root: Path) -> None:
    for p in _walk_bottom_up(root):
        if p.is_symlink():
            continue
        mode = p.lstat().st_mode
        extra = stat.S_IWUSR | (stat.S_IRUSR | stat.S_IXUSR if stat.S_ISDIR(mode) else 0)
        if mode & extra != extra:
            p.chmod(stat.S_IMODE(mode) | extra)


def _make_read_only(root: Path) -> None:
    # Symlinks are skipped: Linux cannot change a link's own mode, and chmod through
    # one would reach files outside the object.
    paths = _walk_bottom_up(root) if root.is_dir() and not root.is_symlink() else [root]
    for p in paths:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & _WRITE_BITS:
            p.chmod(mode & ~_WRITE_BITS)


def remove_path(path: str | os.PathLike[str]) -> None:
    """Delete a file, a symlink or a directory tree, also one that ``link()`` made read-only.

    For the stores that own the data: a read-only directory cannot have its entries
    deleted, so write permission is given back to the directories first. A symlink
    is removed, not what it points to. A missing path is not an error.
    """
    p = Path(path)
    if p.is_symlink() or (p.exists() and not p.is_dir()):
        p.unlink()
        return
    if not p.exists():
        return
    for dirpath, dirnames, _files in os.walk(p):
        d = Path(dirpath)
        d.chmod(stat.S_IMODE(d.stat().st_mode) | stat.S_IRWXU)
        # os.walk does not descend into symlinked directories, and they need no change
        dirnames[:] = [n for n in dirnames if not (d / n).is_symlink()]
    shutil.rmtree(p)
