"""One mechanism for "this output is complete and current": a stamp file, written last.

A stamp records what an output was made from -- its inputs (each file by size + mtime,
or by a hash of its content) and the options -- and is written atomically after the
output itself, so an existing stamp that matches means "complete, and made from these
very inputs with these options".  A step that rewrites an output removes the stamp
first (:func:`clear`), so a crash never leaves an old stamp beside new half-outputs::

    from utils_py import stamp

    sig = stamp.signature(files=[wav], contents=[part + "/wav.scp"], options={"compress": True})
    if stamp.is_current("fbank/raw_fbank_train.1.done", sig, outputs=[scp]):
        return                                  # nothing to do
    stamp.clear("fbank/raw_fbank_train.1.done")  # also removes temps of killed writers
    write_outputs()
    stamp.write("fbank/raw_fbank_train.1.done", sig)

The stamp is a JSON object ``{"signature": ..., **extra}``; a file that is not one
(an older format, an interrupted write) counts as absent.  Users see the stamp under
the step's documented name (``.done``, ``.extract.JOB.done``, ...).
"""
import hashlib
import json
import os

from utils_py.fileio import atomic_write_text, read_json_or_none, remove_stale_temps


def file_id(path: str) -> list:
    """``[absolute path, size, mtime in ns]`` of an existing file (None if it does not exist)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [os.path.abspath(path), None, None]
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def content_id(path: str) -> list:
    """``[absolute path, sha256 of the content]`` (None if the file does not exist)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        return [os.path.abspath(path), None]
    return [os.path.abspath(path), h.hexdigest()]


def signature(files=(), contents=(), options=None) -> dict:
    """What an output depends on: ``files`` by size + mtime, ``contents`` by hash, ``options``.

    ``options`` must be JSON-serialisable; it is compared after a JSON round trip.
    """
    return json.loads(json.dumps({"files": [file_id(p) for p in files],
                                  "contents": [content_id(p) for p in contents],
                                  "options": options}, sort_keys=True))


def read(path: str):
    """The stamp at ``path`` (a dict with ``signature``), or None if absent or not a stamp."""
    data = read_json_or_none(path)
    return data if isinstance(data, dict) and "signature" in data else None


def is_current(path: str, sig: dict, outputs=()) -> bool:
    """True if the stamp at ``path`` holds ``sig`` and every file of ``outputs`` exists."""
    data = read(path)
    return data is not None and data["signature"] == sig and all(os.path.isfile(p) for p in outputs)


def clear(path: str) -> None:
    """Remove the stamp (before an output is rewritten) and temp files of killed writers of it."""
    remove_stale_temps(path)
    if os.path.lexists(path):
        os.remove(path)


def write(path: str, sig: dict, **extra) -> None:
    """Write the stamp atomically: call it last, after every output is complete."""
    atomic_write_text(path, json.dumps(dict(extra, signature=sig), sort_keys=True) + "\n")
