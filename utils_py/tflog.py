"""TensorFlow's own log lines, off by default; ``UNSPEECH_TF_LOG=1`` brings them back.

TensorFlow's C++ side writes lines like ``I0000 ... oneDNN custom operations are on``,
``E0000 ... remapper failed: ...`` and absl's ``WARNING: All log messages before
absl::InitializeLog() ...`` to stderr: notes for TensorFlow's developers that look like
errors in a step's log.  ``utils_py`` calls :func:`quiet_by_default` when it is imported
(before any TensorFlow import), which

- sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless it is set already (TensorFlow's own switch; it
  also quiets TensorFlow's Python warnings such as AutoGraph's), and
- drops the start-up lines that TensorFlow writes while it is imported, before that
  switch takes effect (a line-by-line filter of stderr during ``import tensorflow``;
  anything else, e.g. a fatal ``F...`` line, passes).

Our own ``INFO`` lines are not affected.  With ``UNSPEECH_TF_LOG=1`` nothing is changed:
TensorFlow logs as it does (and ``TF_CPP_MIN_LOG_LEVEL`` as set applies).
"""
import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys

ENV = "UNSPEECH_TF_LOG"
# absl/TensorFlow C++ log lines (I/W/E; F stays), absl's notice, the CPU-feature note's 2nd line
_TF_LINE = re.compile(rb"^([IWE]\d{4} [\d:.]+ +\d+ [\w.+-]+:\d+\] "
                      rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                      rb"|To enable the following instructions: .* rebuild TensorFlow with)")


def wanted() -> bool:
    """True when the user asked for TensorFlow's log lines (``UNSPEECH_TF_LOG=1``)."""
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_tf_line(line: bytes) -> bool:
    return bool(_TF_LINE.match(line))


@contextlib.contextmanager
def stderr_filtered(drop=is_tf_line):
    """While the block runs, lines written to file descriptor 2 for which ``drop(line)`` is
    true are dropped.  A forked child copies the rest to the real stderr, so that nothing
    else is lost even if this process dies inside the block."""
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: copy lines until the parent closes its end
        try:
            os.close(write_end)
            with os.fdopen(read_end, "rb") as pipe:
                for line in pipe:
                    if not drop(line):
                        os.write(2, line)
        finally:
            os._exit(0)
    os.close(read_end)
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.waitpid(pid, 0)


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder for the first ``import tensorflow``: runs it inside :func:`stderr_filtered`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)   # once; also lets the real finders answer below
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        self.loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        with stderr_filtered():
            self.loader.exec_module(module)


def quiet_by_default() -> None:
    """Quiet TensorFlow's log lines unless ``UNSPEECH_TF_LOG=1`` (call before TensorFlow is imported)."""
    if wanted():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
