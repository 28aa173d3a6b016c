"""Helpers of tests/test_reliability.py: run steps the way a user does, break their
environment (full disk, unwritable dir, SIGKILL, a second run) and check how they fail."""
import contextlib
import importlib.util
import io
import os
import signal
import subprocess
import time

import numpy as np

from conftest import KALDI_REF, REPO, step_env
from utils_py.kaldi import datadir
from utils_py.kaldi import tables
from utils_py.log import run_step

STEPS = os.path.join(REPO, "steps_unspeech")


def step(name: str) -> str:
    """Path of ``steps_unspeech/<name>``."""
    return os.path.join(STEPS, name)


def assert_one_error(p, step_name: str, *needles) -> str:
    """``p`` (a CompletedProcess) failed with exactly one ``ERROR (step...)`` line holding
    every needle, and that line is the last line of stderr (no traceback or message after it)."""
    assert p.returncode != 0, f"exit 0, expected a failure:\n{p.stderr[-3000:]}"
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR (")]
    assert len(errors) == 1, f"want exactly one ERROR line, got {len(errors)}:\n{p.stderr[-3000:]}"
    assert lines[-1] == errors[0], f"the ERROR line is not the last line of stderr:\n{p.stderr[-3000:]}"
    assert errors[0].startswith(f"ERROR ({step_name}"), errors[0]
    for needle in needles:
        assert str(needle) in errors[0], f"{needle!r} not in: {errors[0]}"
    return errors[0]


def run(args, timeout=300, env=None):
    """Run a step (list of args) with the recipe's environment (+ ``env``)."""
    full_env = step_env()
    full_env.update(env or {})
    return subprocess.run([str(a) for a in args], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def file_size_limited(args, kib: int):
    """``args`` under ``ulimit -f kib``: any write past ``kib`` KiB fails with EFBIG, like a full
    disk (Python ignores SIGXFSZ, so the write raises OSError)."""
    return ["bash", "-c", f'ulimit -f {int(kib)} && exec "$@"', "ulimit", *[str(a) for a in args]]


def start(args, env=None):
    """Start a step in its own session (so that it can be killed with all its jobs)."""
    full_env = step_env()
    full_env.update(env or {})
    return subprocess.Popen([str(a) for a in args], cwd=REPO, env=full_env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    """Wait for a process from :func:`start`; CompletedProcess. On timeout it is killed and that fails."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        raise AssertionError(f"{proc.args[:2]} still running after {timeout} s (killed)") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_session(proc):
    """SIGKILL a process from :func:`start` and all its children; return once all are gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.time() + 30
    while time.time() < deadline:  # its jobs hold the dir lock until they are gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes of {proc.args[:2]} survived SIGKILL")


def wait_until(condition, what: str, timeout: float = 180, proc=None):
    """Poll ``condition()`` until true; fail after ``timeout`` s or if ``proc`` ended first."""
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"process ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def lock_holder(directory: str) -> str:
    """What ``<dir>/.lock`` says about the run holding it ('' if nothing yet)."""
    try:
        with open(os.path.join(directory, ".lock")) as f:
            return f.read().strip()
    except OSError:
        return ""


def blocked_dir(tmp_path) -> str:
    """An output dir that cannot be created, not even by root: its parent is a regular file."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file\n")
    return str(blocker / "out")


def tree_bytes(root: str, skip_dirs=("log",)) -> dict:
    """``{relative path: bytes}`` of every file under ``root`` (except in ``skip_dirs``)."""
    files = {}
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x not in skip_dirs]
        for name in names:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def temp_files(root: str) -> list:
    """Leftover temp files/dirs (``*.tmp.*``) under ``root``."""
    return [os.path.join(d, n) for d, dirs, names in os.walk(root) for n in names + dirs if ".tmp." in n]


def write_feats(directory, mats, ark="feats.ark", scp="feats.scp") -> str:
    """Write ``[(key, matrix), ...]`` (in the given order) as ark + scp; return the scp path."""
    directory = str(directory)
    with tables.MatrixWriter(os.path.join(directory, ark), os.path.join(directory, scp)) as w:
        for key, mat in mats:
            w.write(key, np.asarray(mat, np.float32))
    return os.path.join(directory, scp)


def data_dir_of_scp(directory, feats_scp_lines: dict) -> str:
    """Kaldi data dir: feats.scp from ``{utt: rxfilename}``, utt2spk (speaker = id up to the
    first '-'), spk2utt."""
    directory = str(directory)
    datadir.write_table(os.path.join(directory, "feats.scp"), feats_scp_lines)
    datadir.write_table(os.path.join(directory, "utt2spk"), {u: u.split("-")[0] for u in feats_scp_lines})
    datadir.write_spk2utt(directory)
    return directory


def feats_data_dir(directory, mats) -> str:
    """Kaldi data dir with real features ``[(utt, matrix), ...]`` (utt = <spk>-<...>); the ark
    is ``<parent>/feats/<name>.ark``, outside the data dir as in a recipe."""
    directory = str(directory)
    arks = os.path.join(os.path.dirname(directory), "feats")
    name = os.path.basename(directory)
    scp = write_feats(arks, sorted(mats, key=lambda km: datadir.c_key(km[0])), f"{name}.ark", f"{name}.scp")
    return data_dir_of_scp(directory, datadir.read_table(scp))


def truncate_tail(path: str, nbytes: int) -> None:
    """Cut the last ``nbytes`` of a file, as a crashed writer or a full disk leaves it."""
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - nbytes)


# ---- Kaldi-written compressed features (/work/shared/data/kaldi-reference/compressed)
COMPRESSED = os.path.join(KALDI_REF, "compressed")
# copy-feats --compression-method=N writes CM (N = 1, 2), CM2 (3, 4), CM3 (5..7)
COMPRESSION_METHODS = {1: "CM", 2: "CM", 3: "CM2", 4: "CM2", 5: "CM3"}


def _offset(ark: str, key: str) -> int:
    """Byte offset of the binary matrix of ``key`` in a Kaldi archive (``<key> \\0B...``)."""
    with open(ark, "rb") as f:
        pos = f.read().find(key.encode() + b" \0B")
    assert pos >= 0, f"{key} not in {ark}"
    return pos + len(key) + 1


def kaldi_compressed_feats() -> dict:
    """``{utt: rxfilename}`` of Kaldi-compressed 40-dim fbank matrices in the Kaldi fixtures:
    ``cm<N>-synth_{a,b}_16k`` (391 and 447 frames, methods of :data:`COMPRESSION_METHODS`) and
    ``short-synth_a_16k`` (6 rows, CM2, what Kaldi picks for short matrices)."""
    lines = {}
    for n in COMPRESSION_METHODS:
        ark = os.path.join(COMPRESSED, f"fbank40_16k.cm{n}.ark")
        for key in ("synth_a_16k", "synth_b_16k"):
            lines[f"cm{n}-{key}"] = f"{ark}:{_offset(ark, key)}"
    ark = os.path.join(COMPRESSED, "short7rows.auto.ark")
    lines["short-synth_a_16k"] = f"{ark}:{_offset(ark, 'synth_a_16k')}"
    return lines


def kaldi_decoded(utt: str, read_text_ark) -> np.ndarray:
    """What Kaldi's own ``copy-feats`` decodes utterance ``utt`` of :func:`kaldi_compressed_feats` to."""
    prefix, key = utt.split("-", 1)
    name = "short7rows.auto" if prefix == "short" else f"fbank40_16k.{prefix}"
    return read_text_ark(os.path.join(COMPRESSED, name + ".decoded.txt"))[key]


# ---- a step's main() in this process (TensorFlow loaded once for all tests)
_SCRIPTS = {}


def run_in_process(script: str, argv):
    """Run a step script's ``main(argv)`` under ``run_step`` here, as its ``__main__`` does;
    CompletedProcess with the exit code and what went to stderr."""
    if script not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location("_step_" + os.path.basename(script).replace(".", "_"), script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[script] = module
    name = os.path.splitext(os.path.basename(script))[0]
    err = io.StringIO()
    argv = [str(a) for a in argv]
    with contextlib.redirect_stderr(err):
        try:
            run_step(name, _SCRIPTS[script].main, argv)
            rc = 0
        except SystemExit as e:
            rc = e.code
    return subprocess.CompletedProcess([script] + argv, rc, "", err.getvalue())
