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


def train_refuses(capsys, train_dir: Path, out: Path, argv: list[str], expected: str) -> None:
    """`edgecnn train TRAIN_DIR --out OUT --quiet ARGV` exits 2 with one line holding `expected`
    on stderr, and writes nothing at OUT."""
    from edgecnn.cli import main

    assert main(["train", str(train_dir), "--out", str(out), "--quiet", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not out.exists()
