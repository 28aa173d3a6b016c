"""Atomic file output: nothing half-written is ever left under its final name.

Usage::

    from utils_py.fileio import atomic_write, atomic_write_text

    with atomic_write("data/train/utt2spk") as f:   # text mode; "wb" for bytes
        f.write("spk1-utt1 spk1\\n")
    atomic_write_text("exp/model/config.json", json.dumps(cfg))

The file is written to ``.<name>.tmp.<pid>`` in the same directory, flushed,
fsync'ed and renamed over ``path`` only when the block ends without an
exception; on an exception the temp file is removed.
"""
import contextlib
import os

from utils_py.log import UnspeechError


def temp_name(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{base}.tmp.{os.getpid()}")


def with_filename(error: OSError, path: str) -> OSError:
    """``error`` if it names a file, else the same error naming ``path``.

    A failed ``write``/``flush`` (disk full, file too large, I/O error) raises an
    OSError without a file name; re-raise it as ``raise with_filename(e, path) from e``
    so that ``run_step`` prints ``ERROR (step): No space left on device: <path>``.
    """
    if error.filename is not None or error.errno is None:
        return error
    return OSError(error.errno, error.strerror, path)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", encoding: str = "utf-8"):
    """Context manager yielding a file object; renamed to ``path`` on success.

    Text mode writes ids read by :func:`open_text` back as the same bytes."""
    ensure_dir(os.path.dirname(os.path.abspath(path)))
    tmp = temp_name(path)
    kwargs = {} if "b" in mode else {"encoding": encoding, "errors": "surrogateescape"}
    f = open(tmp, mode, **kwargs)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # flushing the rest fails too when the disk is full
            f.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and with_filename(e, path) is not e:
            raise with_filename(e, path) from e
        raise


def remove_stale_temps(path: str) -> None:
    """Remove temps of ``path`` left by writers that were killed: the one stale-temp cleaner.

    Temps are :func:`temp_name` files of :func:`atomic_write` and the temp dirs (and
    their ``.old``) of :func:`building_dir`.  Only temps of processes that no longer
    exist are removed: a live writer is never disturbed.  Call it before rewriting
    ``path`` in a step that can be SIGKILLed (``stamp.clear`` does).
    """
    import re
    import shutil
    d, base = os.path.split(os.path.abspath(path))
    pattern = re.compile(rf"\.{re.escape(base)}\.tmp\.(\d+)(\.old)?")
    for name in os.listdir(d) if os.path.isdir(d) else ():
        m = pattern.fullmatch(name)
        if not m or _process_exists(int(m.group(1))):
            continue
        temp = os.path.join(d, name)
        if os.path.isdir(temp) and not os.path.islink(temp):
            shutil.rmtree(temp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp)


@contextlib.contextmanager
def building_dir(out_dir: str, marker: str = None):
    """Yield a fresh temp dir beside ``out_dir``; when the block succeeds it replaces ``out_dir``
    as a whole (a failed or killed build leaves the old ``out_dir`` or none, never a mix).

    Temp dirs of killed builders (their pid is gone) are removed first. With ``marker``,
    an existing non-empty ``out_dir`` without that file is refused (it is not ours to replace)::

        with building_dir("data/local/dict", marker="lexicon.txt") as tmp:
            write_files(tmp)
    """
    import shutil
    out_dir = os.path.abspath(out_dir)
    parent, base = os.path.split(out_dir)
    ensure_dir(parent)
    remove_stale_temps(out_dir)
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir):
            raise UnspeechError(f"not a directory: {out_dir}")
        if marker and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, marker)):
            raise UnspeechError(f"will not replace a non-empty directory without {marker}: {out_dir}")
    tmp = os.path.join(parent, f".{base}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = tmp + ".old"
    if os.path.lexists(out_dir):
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: str, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def read_json_or_none(path: str):
    """Parsed JSON of ``path``, or None if it is missing or unreadable (e.g. a marker
    from an older or interrupted run, which then simply counts as absent)."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_dir(path: str) -> str:
    """Create ``path`` (and parents) if needed; clear error if impossible."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UnspeechError(f"cannot create directory: {path} ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UnspeechError(f"output directory is not writable: {path}")
    return path


def require_file(path: str, what: str = "file") -> str:
    """Return ``path`` if it is a readable non-empty file, else raise UnspeechError."""
    if not os.path.isfile(path):
        raise UnspeechError(f"{what} not found: {path}")
    if not os.access(path, os.R_OK):
        raise UnspeechError(f"{what} not readable: {path}")
    if os.path.getsize(path) == 0:
        raise UnspeechError(f"{what} is empty: {path}")
    return path


@contextlib.contextmanager
def dir_lock(directory: str, step: str):
    """Hold an exclusive lock on ``directory`` while a step writes into it.

    A second run of a step into the same directory fails at once with a clear
    message instead of interleaving writes::

        with dir_lock("exp/unspeech", "train_unspeech"):
            ...

    The lock (``<dir>/.lock``, ``flock``) is released when the process exits,
    even on SIGKILL, so a crashed run never blocks the rerun.  The file names the
    holder while it runs and is empty after a finished run.  It is the same
    lock that ``steps_unspeech/lock_dir.sh`` takes in bash.
    """
    import fcntl

    ensure_dir(directory)
    path = os.path.join(directory, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UnspeechError(
                f"{directory} is in use by another run ({holder}); wait for it or stop it, then rerun") from None
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{step}, pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        if locked:  # emptied again: a finished run leaves the directory as a rerun would
            os.ftruncate(fd, 0)
        os.close(fd)


# Kaldi's ids (utterances, speakers, recordings) and tables are byte strings, not text: read them as
# UTF-8 where they are UTF-8 and keep any other byte as a surrogate, so that every id round-trips
# byte for byte (atomic_write writes it back the same way) and sorts as LC_ALL=C sorts it.
def open_text(path: str, mode: str = "r"):
    """``open`` for Kaldi tables and id lists: UTF-8 with ``surrogateescape``."""
    return open(path, mode, encoding="utf-8", errors="surrogateescape")


def kaldi_bytes(s: str) -> bytes:
    """The bytes of an id read with :func:`open_text` (its ``LC_ALL=C`` sort key)."""
    return s.encode("utf-8", "surrogateescape")


def refuse_overwrite(output: str, inputs, what: str = "output") -> None:
    """UnspeechError unless writing ``output`` leaves every one of ``inputs`` intact.

    ``output`` is a file or a directory that the step writes or replaces; it must not be
    one of the inputs (same path after symlinks, or the same file) nor a directory
    that holds one.  Empty inputs are skipped.  Call it before anything is written::

        refuse_overwrite(out_dir, [data_dir, clustered_utt2spk])
    """
    out = os.path.realpath(output)
    for inp in inputs:
        if not inp:
            continue
        real = os.path.realpath(inp)
        same = real == out or (os.path.exists(inp) and os.path.exists(output) and os.path.samefile(inp, output))
        if same or real.startswith(out.rstrip(os.sep) + os.sep):
            how = "is that input" if same else "is a directory that holds it"
            raise UnspeechError(f"refusing to write over input {inp}: {what} {output} {how}; "
                                f"choose another {what}")
