"""Keras callbacks used by :func:`dnn.train` (importing this module imports keras).

Callbacks that act per batch are marked ``async_safe`` so that, on the JAX
backend, Keras dispatches them on its callback thread and the training loop is
never forced to wait for each step's loss (a per-batch host sync costs GPU
throughput).
"""

from __future__ import annotations

import math
import time

from .backend import import_keras, to_numpy

keras = import_keras()

__all__ = ["StopOnNaN", "EpochRecorder", "Progress"]


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that records where the loss first became NaN/inf, silently.

    Attributes ``diverged_epoch`` (0-based) and ``diverged_batch`` stay ``None`` until then.
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.diverged_epoch = None
        self.diverged_batch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.diverged_epoch is None:
            self.diverged_epoch, self.diverged_batch = self.epoch, batch
            self.model.stop_training = True


class EpochRecorder(keras.callbacks.Callback):
    """Times each epoch and hands ``(epoch, logs, timing)`` to ``on_epoch(...)``.

    ``train_seconds`` runs from the start of the epoch to the start of validation;
    the current step count is read back from the device there, which waits for
    queued steps to finish, so asynchronous dispatch does not flatter the timing.
    """

    def __init__(self, on_epoch):
        super().__init__()
        self._on_epoch = on_epoch
        self._t0 = self._t_train = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_train = None

    def _mark_train_end(self):
        if self._t_train is None:
            to_numpy(self.model.optimizer.iterations)  # waits for the device
            self._t_train = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._mark_train_end()

    def on_epoch_end(self, epoch, logs=None):
        self._mark_train_end()
        now = time.perf_counter()
        self._on_epoch(epoch, dict(logs or {}),
                       {"seconds": now - self._t0, "train_seconds": self._t_train - self._t0})


class Progress(keras.callbacks.Callback):
    """One tqdm bar per epoch, with the running training loss as postfix."""

    async_safe = True

    def __init__(self, epochs, steps):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            logs = logs or {}
            post = {k: f"{float(logs[k]):.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                    if k in logs}
            self.bar.set_postfix(post)
            self.bar.close()
            self.bar = None

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
