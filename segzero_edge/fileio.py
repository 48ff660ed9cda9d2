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
import stat
import tempfile
import threading
from collections.abc import Collection, Iterator, Sequence
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


def _check_file_dest(dest: Path) -> None:
    """``IsADirectoryError`` when ``dest`` is a folder, ``FileExistsError`` when it is something
    else that is not a regular file (a device such as ``/dev/null``, a FIFO, a socket):
    renaming a file over it would replace it."""
    if dest.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file name", str(dest))
    if os.path.lexists(dest) and not (dest.is_file() or dest.is_symlink()):
        raise FileExistsError(
            errno.EEXIST, "exists and is not a regular file (a device, FIFO or socket)", str(dest)
        )


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths``; if the block succeeds, rename them
    all into place, as one set: every destination is checked before the block and again
    before the first rename, so a bad name leaves none of the files written.

    The files get the umask's mode (0644 under 022). Raises ``ValueError`` when two of
    ``paths`` name the same file (after following symbolic links), and the errors of
    :func:`_check_file_dest` (``IsADirectoryError``, ``FileExistsError``).
    """
    dests = [Path(p) for p in paths]
    seen: dict[str, Path] = {}
    for dest in dests:
        key = os.path.realpath(dest)
        if key in seen:
            raise ValueError(f"{seen[key]} and {dest} name the same file; give distinct names")
        seen[key] = dest
    for dest in dests:
        _check_file_dest(dest)
    tmps: list[Path] = []
    try:
        for dest in dests:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp_name = tempfile.mkstemp(
                    prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent
                )
            except OSError as e:  # name the file asked for, not the temporary one
                raise type(e)(
                    e.errno, f"cannot write a file in {dest.parent} ({e.strerror})", str(dest)
                ) from None
            os.close(fd)
            tmps.append(Path(tmp_name))
        yield list(tmps)
        for dest in dests:  # something may have taken a name meanwhile: replace nothing then
            _check_file_dest(dest)
        for tmp, dest in zip(tmps, dests, strict=True):
            if os.path.isfile(tmp):
                plain_mode(tmp)
            os.replace(tmp, dest)
    finally:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    :func:`atomic_paths` for one file: the umask's mode; ``IsADirectoryError`` at once when
    ``path`` is a folder, ``FileExistsError`` when it is something else that is not a
    regular file.
    """
    with atomic_paths([path]) as tmps:
        yield tmps[0]


_HELD: dict[str, tuple[int, int]] = {}  # lock file -> (thread holding it, depth)
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on writing ``path``, or raise ``FileExistsError`` at once when
    another process or thread holds it (the thread holding it may take it again).

    The lock is ``flock`` on ``.NAME.lock`` beside ``path``; the file is removed on release.
    It is opened with ``O_NOFOLLOW``: a symbolic link planted under its name is refused
    (``FileExistsError``), never followed (which would create or lock its target).
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
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise FileExistsError(
                errno.EEXIST, f"its lock file {lock} is a symbolic link: not followed", str(dest)
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileExistsError(
                errno.EEXIST, f"its lock file {lock} is not a regular file", str(dest)
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FileExistsError(
                errno.EEXIST, "another process is writing it right now (lock held)", str(dest)
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(lock))
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
def atomic_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    owner: str | None = None,
    replaces: Collection[str] | None = None,
) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it into place if the block succeeds.

    An existing ``path`` is a ``FileExistsError`` unless ``overwrite``; it is then replaced
    only after the new folder is complete. With ``owner`` (a format id of
    :mod:`segzero_edge.owned`) the new folder is marked as the project's, and an existing
    ``path`` is replaced only when it is empty or marked with one of ``replaces`` (default:
    ``owner``), checked before the block runs and again before the swap
    (:func:`~segzero_edge.owned.check_replaceable`; ``FileExistsError`` otherwise). A second
    writer of ``path`` meanwhile gets a ``FileExistsError`` (:func:`output_lock`). The folder
    and everything in it get the umask's modes (0755 / 0644 under 022).
    """
    from .owned import check_replaceable, write_owner

    dest = Path(path)
    accept = (owner,) if replaces is None and owner is not None else tuple(replaces or ())
    with output_lock(dest):
        if os.path.lexists(dest) and not overwrite:
            raise FileExistsError(f"{dest} already exists (pass overwrite/--force to replace it)")
        if owner is not None:
            check_replaceable(dest, accept)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            yield tmp
            if owner is not None:
                write_owner(tmp, owner)
                check_replaceable(dest, accept)
            plain_modes(tmp)
            if os.path.lexists(dest):
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
