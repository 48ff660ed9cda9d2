"""Atomic file and folder writes (write beside the target, then rename over it); file hashes.

What these write gets the permissions a plain ``open()`` / ``mkdir()`` would give under the
process umask (0644 files and 0755 folders under umask 022), not the 0600 / 0700 of
``tempfile``, so a robot's service account can read a bundle another user exported.
Writers of one folder exclude each other with a lock file beside it (``.NAME.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way is to set it and put it back
    os.umask(mask)
    return mask


def plain_mode(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the mode a plain ``open()`` (file) or ``mkdir()`` (folder) would have."""
    full = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, full & ~current_umask())


def plain_modes(root: str | os.PathLike[str]) -> None:
    """:func:`plain_mode` for ``root`` and everything under it (links are left alone)."""
    plain_mode(root)
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                plain_mode(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The file gets the umask's mode (0644 under 022). Raises ``IsADirectoryError`` at once
    when ``path`` is a folder, ``FileExistsError`` when it is something else that is not a
    regular file (a device such as ``/dev/null``, a FIFO, a socket): renaming over it would
    replace it.
    """
    dest = Path(path)
    if dest.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file name", str(dest))
    if os.path.lexists(dest) and not (dest.is_file() or dest.is_symlink()):
        raise FileExistsError(
            errno.EEXIST, "exists and is not a regular file (a device, FIFO or socket)", str(dest)
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.isfile(tmp):
            plain_mode(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_HELD: dict[str, tuple[int, int]] = {}  # lock file -> (thread holding it, depth)
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on writing ``path``, or raise ``FileExistsError`` at once when
    another process or thread holds it (the thread holding it may take it again).

    The lock is ``flock`` on ``.NAME.lock`` beside ``path``; the file is removed on release.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = dest.with_name(f".{dest.name}.lock")
    key, me = os.path.realpath(lock), threading.get_ident()
    with _HELD_LOCK:
        owner, depth = _HELD.get(key, (me, 0))
        if depth and owner == me:
            _HELD[key] = (me, depth + 1)
    if depth and owner == me:
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD[key] = (me, _HELD[key][1] - 1)
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FileExistsError(
                errno.EEXIST, "another process is writing it right now (lock held)", str(dest)
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the lock file as we opened it: take the new one
    with _HELD_LOCK:
        _HELD[key] = (me, 1)
    try:
        yield
    finally:
        with _HELD_LOCK:
            del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it into place if the block succeeds.

    An existing ``path`` is a ``FileExistsError`` unless ``overwrite``; it is then replaced
    only after the new folder is complete. A second writer of ``path`` meanwhile gets a
    ``FileExistsError`` (:func:`output_lock`). The folder and everything in it get the
    umask's modes (0755 / 0644 under 022).
    """
    dest = Path(path)
    with output_lock(dest):
        if dest.exists() and not overwrite:
            raise FileExistsError(f"{dest} already exists (pass overwrite/--force to replace it)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            yield tmp
            plain_modes(tmp)
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
