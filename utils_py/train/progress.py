"""Progress reporting of a training run: log lines, a tqdm bar, TensorBoard scalars, the curves plot.

    from utils_py.train.progress import Progress

    with Progress(log, model_dir, total_steps=cfg["steps"], start_step=0) as progress:
        for step in ...:
            progress.add(loss, acc, chance, wait)      # one optimisation step
            if time_to_report:
                row = progress.row(step, pairs, windows, elapsed_seconds)
                row["val_accuracy"], row["val_auc"] = ...
                progress.report(row)                  # log line, TensorBoard, bar
    plot_curves(history, "exp/unspeech/training_curves.png", "title")
"""
import contextlib
import os
import sys
import time

from utils_py.fileio import atomic_write


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


class Progress:
    """Averages over the steps since the last report; writes the log line, TensorBoard and the bar."""

    def __init__(self, log, model_dir: str, total_steps: int, start_step: int):
        self.log, self.model_dir, self.total_steps = log, model_dir, total_steps
        self.tb = _tensorboard_writer(os.path.join(model_dir, "tb"))
        self.bar = _progress_bar(total_steps, start_step)
        self._redirect = None
        self._reset()

    def _reset(self):
        self.t, self.n, self.loss, self.acc, self.chance, self.wait = time.time(), 0, 0.0, 0.0, 0.0, 0.0

    def __enter__(self):
        self._redirect = _redirect_logging(self.log, self.bar)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc):
        self._redirect.__exit__(*exc)
        if self.bar is not None:
            self.bar.close()

    def waited(self, seconds: float) -> None:
        """Time the model waited for the sampler (the input pipeline)."""
        self.wait += seconds

    def add(self, loss: float, acc: float, chance: float) -> None:
        self.n += 1
        self.loss += loss
        self.acc += acc
        self.chance += chance
        if self.bar is not None:
            self.bar.update(1)

    def row(self, step: int, pairs_per_step: int, windows_per_step: int, elapsed_seconds: float) -> dict:
        """The history row of the steps since the last report (validation fields None)."""
        dt = (time.time() - self.t) / self.n
        return {"step": step, "seconds_per_step": dt, "pairs_per_second": pairs_per_step / dt,
                "input_wait_fraction": self.wait / (dt * self.n),
                "windows_per_second": windows_per_step / dt, "loss": self.loss / self.n,
                "train_accuracy": self.acc / self.n, "train_chance": self.chance / self.n,
                "val_accuracy": None, "val_auc": None, "elapsed_hours": elapsed_seconds / 3600}

    def report(self, row: dict) -> None:
        """Log line, TensorBoard scalars and bar postfix of ``row``; starts the next window."""
        self.log.info(f"step {row['step']}/{self.total_steps} | {row['seconds_per_step']:.3f} s/step | "
                      f"{row['pairs_per_second']:.0f} pairs/s (input wait {100 * row['input_wait_fraction']:.0f}%) | "
                      f"loss {row['loss']:.4f} | "
                      f"train acc {row['train_accuracy']:.3f} (majority/chance {row['train_chance']:.3f}) | "
                      f"held-out context acc {fmt(row['val_accuracy'])} | {row['elapsed_hours']:.3f} h | "
                      f"{self.model_dir}")
        _tensorboard_write(self.tb, row)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{row['loss']:.3f}", val=fmt(row["val_accuracy"]))
        self._reset()


def plot_curves(history, path, title, final_step=None):
    """Loss and accuracies over the steps of ``history`` as a PNG (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [h["step"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(steps, [h["loss"] for h in history], label="train loss")
    a1.set_xlabel("step")
    a1.set_ylabel("loss")
    a1.legend()
    a2.plot(steps, [h["train_accuracy"] for h in history], label="train accuracy")
    a2.plot(steps, [h["train_chance"] for h in history], ":", label="train majority/chance")
    if any(h.get("val_accuracy") is not None for h in history):
        a2.plot(steps, [h.get("val_accuracy") for h in history], label="held-out context accuracy")
    if final_step is not None and final_step != steps[-1]:
        a2.axvline(final_step, color="grey", linestyle="--", label=f"final model (step {final_step})")
    a2.set_xlabel("step")
    a2.set_ylim(0, 1)
    a2.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)


def _tensorboard_writer(path):
    import tensorflow as tf
    return tf.summary.create_file_writer(path)


def _tensorboard_write(writer, row):
    """Scalars as raw Summary protos: works without the tensorboard package installed."""
    import tensorflow as tf
    values = [tf.compat.v1.Summary.Value(tag=key, simple_value=float(row[key]))
              for key in ("loss", "train_accuracy", "val_accuracy", "val_auc", "pairs_per_second")
              if row.get(key) is not None]
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(tf.compat.v1.Summary(value=values).SerializeToString(),
                                             step=row["step"])
    writer.flush()


def _progress_bar(total, initial):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


@contextlib.contextmanager
def _redirect_logging(log, bar):
    if bar is None:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm
    with logging_redirect_tqdm(loggers=[log]):
        yield
