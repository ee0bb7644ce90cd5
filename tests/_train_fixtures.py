"""Shared helpers for the training tests: tiny synthetic datasets and a fast train() call."""

from __future__ import annotations

from pathlib import Path

from edgecnn.synthetic import generate_split

FAST = {"arch": "seed", "img_size": 32, "epochs": 1, "batch": 16, "progress": False}


def tiny_split(root: Path, *, classes: int = 3, train: int = 16, val: int = 6) -> tuple[Path, Path]:
    """A 32x32 train/val split small enough for a one-epoch run in a couple of seconds."""
    return generate_split(
        root, classes=classes, train_per_class=train, val_per_class=val, size=32, seed=0
    )


def interrupt_at(epoch: int):
    """A Keras callback that raises KeyboardInterrupt (what Ctrl-C does) when `epoch` starts."""
    import keras

    class InterruptAt(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            if e == epoch:
                raise KeyboardInterrupt

    return InterruptAt()
