"""Small shared helpers: atomic writes (nothing half-written survives a crash), file digests,
the exclusive lock of a directory, worker processes that die with their parent, and the base
class of errors that are the user's to fix."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

# The files of a run directory (owned by trnet.runs, which reads and writes them): here, so that
# what only checks a run's files (trnet.pretrained's SHA-256 check, `trnet models`) loads no torch.
BEST, LAST, CONFIG, LOG, DONE = "best.safetensors", "last.safetensors", "config.json", "log.csv", "done.json"


class UserError(ValueError):
    """A problem the user can fix (a wrong option, a missing or damaged file, a busy
    directory): the `trnet` command prints its message as one line and exits 2."""


class LockedError(UserError):
    """Another process holds the lock of a directory."""


class UnsafeNameError(UserError):
    """A name that becomes a file or folder name is not one safe path component, or a path
    would leave the directory it belongs to (docs/design.md §9.2)."""


# --------------------------------------------------------------------------- names and paths

NAME_MAX_BYTES = 200  # below NAME_MAX (255) with room for ".wav", ".f16" and atomic_path's ".<name>.XXXX.tmp"


def safe_component(name: object, what: str) -> str:
    """`name` if it can be one file or folder name inside a directory, else UnsafeNameError
    naming `what` ("noise name", "utterance id", ...): a non-empty string, not "." or "..", with
    no "/", "\\", NUL or other control character, not starting with "." (hidden files, and the
    ".lock" and ".<name>.*.tmp" files trnet keeps beside its own), at most NAME_MAX_BYTES bytes
    of UTF-8. Every name that becomes a path (noise names, utterance ids, system names, manifest
    names) goes through here where it enters."""
    if not isinstance(name, str) or not name:
        raise UnsafeNameError(f"{what} {name!r}: expected a non-empty name")
    shown = printable(repr(name))
    if name in (".", "..") or name.startswith("."):
        raise UnsafeNameError(f"{what} {shown}: may not start with '.' (it becomes a file or folder name)")
    bad = sorted({c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise UnsafeNameError(
            f"{what} {shown}: may not contain {' '.join(map(repr, bad))} (it becomes one file or folder name)"
        )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafeNameError(f"{what} {shown}: not valid UTF-8; rename it") from None
    if size > NAME_MAX_BYTES:
        raise UnsafeNameError(f"{what} {shown[:40]}...: {size} bytes, at most {NAME_MAX_BYTES}")
    return name


def inside(root: str | Path, path: str | Path) -> Path:
    """`path` if it lies inside the directory `root` once links and ".." are resolved (the
    proof every write and delete in a store, a run or a work directory makes first), else
    UnsafeNameError: a hostile name or a planted link must never reach a file elsewhere."""
    root_real, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([root_real, real]) != root_real or real == root_real:
        raise UnsafeNameError(f"{printable(path)} lies outside {printable(root)}; refusing to write or delete it")
    return Path(path)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask sets it, racing other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds. The
    file gets the permissions any new file gets (0666 minus the umask), whatever wrote it.
    An OSError without a file name (a full disk) is re-raised naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600, and some writers replace the file
        os.replace(tmp_path, path)
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def remove_temp_files(folder: Path, names: list[str] | None = None) -> None:
    """Delete the temp files `atomic_path` leaves in `folder` when its process is killed
    (`.<name>.*.tmp`; only those of `names` if given). Call it under the folder's lock."""
    for tmp in Path(folder).glob(".*.tmp"):
        if names is None or any(tmp.name.startswith(f".{name}.") for name in names):
            tmp.unlink(missing_ok=True)


def damaged_cache(path: str | Path, err: Exception) -> None:
    """Say on stderr that a cached result (an evaluation under a run's eval/ or transfer/) was
    unreadable and is computed again: a cache is trnet's own, so it is replaced, never trusted
    and never a reason to stop (docs/design.md §9)."""
    print(
        f"note: {printable(path)}: damaged cached result ({printable(str(err))}); computing it again", file=sys.stderr
    )


def printable(text: str | Path) -> str:
    """A path (or a message holding one) as text that can be printed: the bytes of a
    non-UTF-8 file name (which Python keeps as surrogates) become \\xNN escapes."""
    return os.fsencode(str(text)).decode("utf-8", "backslashreplace")


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks: the one digest of files that keys
    caches and checks weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- locks

_held: dict[Path, int] = {}  # lock file -> descriptor, for the locks this process holds


def _forget_locks_in_child() -> None:
    """After fork: a child shares its parent's open lock files, and a flock lives until the
    last descriptor closes; close the child's copies, so that a lock dies with its holder even
    while forked children (pool workers) live on."""
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str, wait: bool = False, remove: bool = False) -> Iterator[None]:
    """Hold an OS lock (flock) on the file `path` for the block. If another process holds it:
    raise LockedError at once, or with `wait`, say so on stderr and wait for it. The OS drops
    the lock when its holder dies, even by kill -9: a lock is never stale. `what` names the
    holder in the message ("a build of this store"). A lock this process already holds is
    re-entered (the outer block keeps it). With `remove`, the lock file is deleted when the
    block ends (a failed command leaves no trace); a lock taken on a file that was deleted
    meanwhile is retaken on the new one, so two processes never hold "the" lock at once. On a
    file system without locks (Lustre mounted without flock) the block runs unlocked, with a
    warning."""
    path = Path(path).resolve()
    if path in _held:
        yield
        return
    fd = _lock_fd(path, what, wait)
    _held[path] = fd
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        del _held[path]
        if remove:
            with contextlib.suppress(OSError):
                path.unlink()  # while still held: a waiter then retakes the lock on a new file
        os.close(fd)


def _lock_fd(path: Path, what: str, wait: bool) -> int:
    """A descriptor of `path` holding its flock (see `exclusive_lock`)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = ""
                with contextlib.suppress(OSError, ValueError, IndexError):  # empty, or not written by us
                    holder = f" (PID {int(os.pread(fd, 32, 0).decode().split()[0])})"
                if not wait:
                    raise LockedError(f"{path} is held by {what}{holder}: wait for it to finish, or stop it") from None
                print(f"{path} is held by {what}{holder}; waiting for it", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                os.close(fd)
                raise
            print(f"warning: {path}: this file system has no locks; going on without one", file=sys.stderr)
            return fd
        except BaseException:
            os.close(fd)
            raise
        try:
            now, held = os.stat(path), os.fstat(fd)
            same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # its holder removed the file after we opened it: lock the new one


# --------------------------------------------------------------------------- worker processes

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make this worker process exit when its parent `parent` dies (a pool initializer): on
    Linux the kernel kills it (PR_SET_PDEATHSIG); everywhere a daemon thread checks every
    0.5 s whether the parent is gone. So a kill -9 of the parent leaves no orphan running."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # died before the line above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing path among `path` and its parents, if it is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def check_folder_path(path: str | Path, option: str) -> None:
    """UserError unless `path` is a folder or could be made one (no file in its way)."""
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        where = "is a file" if blocker == path else f"lies under {blocker}, which is a file"
        raise UserError(f"{option} {path} {where}; expected a folder")


def check_file_path(path: str | Path, option: str) -> None:
    """UserError unless a file can be written at `path` (not a folder, no file in its way)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; expected a file name")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise UserError(f"{option} {path} lies under {blocker}, which is a file; expected a folder there")


def free_cores() -> int:
    """CPU cores this process may use (its affinity mask) that the machine's recent load leaves
    free, at least 1: the default number of worker processes, so that a build on a shared
    machine neither idles free cores nor oversubscribes busy ones."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # not available on this platform
        busy = 0
    return max(1, usable - busy)


SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned; 32 bits leave room for seed * 1000 + epoch


def check_seed(seed: object, what: str = "--seed") -> int:
    """`seed` if it is an integer in 0..SEED_MAX, else UserError naming `what`."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise UserError(f"{what}: expected an integer from 0 to {SEED_MAX}, got {seed!r}")
    return seed


@contextlib.contextmanager
def stopping(pool: Any) -> Iterator[Any]:
    """A process pool (concurrent.futures) whose workers are ended when the block is left by an
    exception: SIGTERM (`sigterm_as_exit`), Ctrl-C or an error. Leaving a `with pool:` block
    otherwise waits for every running task, which for a training pool is minutes; the work a
    killed worker was doing resumes on the next run (runs, store chunks and locks are made for
    that, docs/design.md §9.3)."""
    try:
        yield pool
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # pid -> Process
            with contextlib.suppress(Exception):
                process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise


@contextlib.contextmanager
def spawned_pool(jobs: int) -> Iterator[Any]:
    """`jobs` worker processes started fresh ("spawn": safe beside torch's threads and CUDA) that
    exit with this process (`die_with_parent`) and are ended at once when the block is left by
    an exception (`stopping`): the pool of every training stage."""
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(jobs, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)) as pool,
        stopping(pool),
    ):
        yield pool


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (kill, a scheduler's stop) raises SystemExit(143) for the block instead of ending the
    process on the spot, so that `finally` blocks run: atomic writes remove their temp file and
    locks are released, as on Ctrl-C (docs/design.md §9.3)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
