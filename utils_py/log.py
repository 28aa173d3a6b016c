"""Logging and the error convention shared by every step.

A step's ``main`` raises :class:`UnspeechError` for anything the user did wrong
(bad input, missing file, ...).  :func:`run_step` turns it into exactly one line
on stderr and a non-zero exit::

    ERROR (make_fbank): wav file not found: /data/a.wav (utterance spk1-utt3)

Usage in a step script::

    from utils_py.log import UnspeechError, get_logger, run_step

    def main(argv=None):
        args = parser.parse_args(argv)
        ...
        raise UnspeechError(f"feature dim {d} != model dim {m}: {scp}")

    if __name__ == "__main__":
        run_step("extract_unspeech", main)
"""
import logging
import sys
import traceback

_FORMAT = "%(asctime)s %(levelname)s (%(name)s) %(message)s"


class UnspeechError(Exception):
    """An error the user can fix; its message names the file or utterance."""


def get_logger(step: str) -> logging.Logger:
    """Logger that writes Kaldi-style ``LOG (step)`` lines to stderr."""
    logger = logging.getLogger(step)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def error_line(step: str, message: str) -> str:
    """The one-line error format: ``ERROR (step): message``."""
    return f"ERROR ({step}): " + " ".join(str(message).split("\n"))


def run_step(step: str, main, argv=None) -> None:
    """Run ``main(argv)``; exit 0 on success, 1 with one ``ERROR`` line otherwise.

    Unexpected exceptions also end in one ``ERROR`` line (the traceback goes
    before it, for the job log); Ctrl-C exits 130.
    """
    try:
        rc = main(argv)
    except UnspeechError as e:
        print(error_line(step, e), file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print(error_line(step, "interrupted"), file=sys.stderr, flush=True)
        sys.exit(130)
    except OSError as e:  # disk full, permission denied, ... : name the file
        traceback.print_exc(file=sys.stderr)
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(error_line(step, f"{e.strerror or e}{where}"), file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # a bug: keep the traceback, still end in one line
        traceback.print_exc(file=sys.stderr)
        print(error_line(step, f"internal error: {type(e).__name__}: {e}"), file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(int(rc or 0))
