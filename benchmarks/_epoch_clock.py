"""Per-epoch wall and CPU seconds, taken inside Keras' `fit`, for the training benchmarks.

Time epochs with this callback, not whole `fit` calls: `fit` returns only once its input
iterator is destroyed, and that waits for the next wake-up of tf.data's autotuning thread,
whose period doubles, so a `fit` of 6.8 s of epochs returned after 10.23 s and one of 25 s
after 40.95 s (TensorFlow 2.21, Keras 3.15; none of it with the dataset's autotuning off).
"""

from __future__ import annotations

import resource
import time


def cpu_seconds() -> float:
    """This process's CPU time, all threads: steadier than wall time when others share the CPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def epoch_clock():
    """A Keras callback whose `seconds` and `cpu_seconds` gain one entry at each epoch's end."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = (time.perf_counter(), cpu_seconds())

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.seconds.append(time.perf_counter() - self._start[0])
            self.cpu_seconds.append(cpu_seconds() - self._start[1])

    return EpochClock()
