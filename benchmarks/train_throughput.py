"""Training throughput: edgecnn's input pipeline vs the seed's ImageDataGenerator pipeline.

Same data, same `seed` architecture (Conv32 + MaxPool twice, Dense 128, softmax), same batch
and input size, same validation set evaluated every epoch; only the input pipeline differs:

- seed:    `ImageDataGenerator(rescale=1/255, shear_range=0.2, zoom_range=0.2,
           horizontal_flip=True).flow_from_directory(..., target_size=(64, 64), batch_size=32)`:
           every epoch re-reads and re-decodes every JPEG and augments image by image in Python
           (SciPy affine warps), and does the same (without augmentation) for validation.
- edgecnn: `edgecnn.train(arch="seed")`: decodes once into a uint8 cache with the shared
           contract, then augments whole batches with tf ops inside tf.data.

Prints the median epoch time of each, the speed-up, and validation accuracy (last and best
epoch).  The seed's `from keras.preprocessing.image import ImageDataGenerator` no longer imports
on Keras 3; the same class lives on as `keras.src.legacy.preprocessing.image.ImageDataGenerator`
(it needs SciPy for shear/zoom).

    .venv/bin/python benchmarks/train_throughput.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _epoch_clock import epoch_clock

DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cats-vs-dogs"


def seed_model(num_classes: int, img_size: int):
    """The seed's convnet as the seed builds it: no Rescaling layer (the generator rescales)."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((img_size, img_size, 3)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _image_data_generator():
    try:
        from keras.preprocessing.image import ImageDataGenerator  # the seed's import (Keras 2)
    except ImportError:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    try:
        import scipy  # noqa: F401
    except ImportError:
        sys.exit("the seed pipeline needs SciPy for shear/zoom: pip install scipy")
    return ImageDataGenerator


def run_seed_pipeline(
    train_dir: Path, val_dir: Path, *, epochs: int, batch: int, img_size: int, seed: int
) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    idg = _image_data_generator()
    train_gen = idg(rescale=1.0 / 255, shear_range=0.2, zoom_range=0.2, horizontal_flip=True)
    test_gen = idg(rescale=1.0 / 255)
    training_set = train_gen.flow_from_directory(
        str(train_dir),
        target_size=(img_size, img_size),
        batch_size=batch,
        class_mode="sparse",
        seed=seed,
    )
    test_set = test_gen.flow_from_directory(
        str(val_dir),
        target_size=(img_size, img_size),
        batch_size=batch,
        class_mode="sparse",
        shuffle=False,
    )
    model = seed_model(training_set.num_classes, img_size)
    timer = epoch_clock()
    start = time.perf_counter()
    hist = model.fit(
        training_set,
        epochs=epochs,
        validation_data=test_set,
        callbacks=[timer],
        verbose=2,
    )
    return {
        "epoch_seconds": timer.seconds,
        "epoch_cpu_seconds": timer.cpu_seconds,
        "val_accuracy": [float(v) for v in hist.history["val_accuracy"]],
        "wall_seconds": time.perf_counter() - start,
        "setup_seconds": 0.0,
    }


def run_edgecnn_pipeline(
    train_dir: Path, val_dir: Path, *, epochs: int, batch: int, img_size: int, seed: int
) -> dict:
    from edgecnn import train

    timer = epoch_clock()
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        start = time.perf_counter()
        run = train(
            train_dir,
            val_dir=val_dir,
            arch="seed",
            img_size=img_size,
            epochs=epochs,
            batch=batch,
            seed=seed,
            out=Path(tmp) / "run",
            patience=epochs + 1,
            callbacks=[timer],
        )
        wall = time.perf_counter() - start
    seconds = timer.seconds
    return {
        "epoch_seconds": seconds,
        "epoch_cpu_seconds": timer.cpu_seconds,
        # epochs edgecnn did not validate (long runs, see edgecnn.training.VAL_EVERY) are left out
        "val_accuracy": [
            r["val_accuracy"] for r in run.history if not math.isnan(r["val_accuracy"])
        ],
        "wall_seconds": wall,
        "setup_seconds": wall - sum(seconds),  # decoding once + model build + final report
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATASET / "train", help="training folder")
    p.add_argument("--val", type=Path, default=DATASET / "test", help="validation folder")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if not args.data.is_dir() or not args.val.is_dir():
        sys.exit(f"dataset not found: {args.data} / {args.val}")
    opts = {
        "epochs": args.epochs,
        "batch": args.batch,
        "img_size": args.img_size,
        "seed": args.seed,
    }
    results = {
        "edgecnn": run_edgecnn_pipeline(args.data, args.val, **opts),
        "seed": run_seed_pipeline(args.data, args.val, **opts),
    }
    for r in results.values():
        r["median_epoch_seconds"] = statistics.median(r["epoch_seconds"])
        r["median_epoch_cpu_seconds"] = statistics.median(r["epoch_cpu_seconds"])
        r["last_val_accuracy"] = r["val_accuracy"][-1]
        r["best_val_accuracy"] = max(r["val_accuracy"])
    speedup = results["seed"]["median_epoch_seconds"] / results["edgecnn"]["median_epoch_seconds"]
    cpu_ratio = (
        results["seed"]["median_epoch_cpu_seconds"] / results["edgecnn"]["median_epoch_cpu_seconds"]
    )
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    print()
    print(f"command: {command}")
    print(
        f"data: {args.data} (val {args.val}), arch seed, {args.img_size}x{args.img_size}, "
        f"batch {args.batch}, {args.epochs} epochs each"
    )
    print(
        f"{'pipeline':<10} {'median epoch s':>14} {'median CPU s':>12} {'one-off s':>9} "
        f"{'val acc last':>12} {'val acc best':>12}  epochs s"
    )
    for name, r in results.items():
        epochs = " ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        print(
            f"{name:<10} {r['median_epoch_seconds']:>14.2f} {r['median_epoch_cpu_seconds']:>12.2f} "
            f"{r['setup_seconds']:>9.1f} {r['last_val_accuracy']:>12.4f} "
            f"{r['best_val_accuracy']:>12.4f}  {epochs}"
        )
    print(
        f"speed-up per epoch: {speedup:.1f}x wall-clock, {cpu_ratio:.1f}x CPU time (target >= 3x)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"speedup": speedup, "cpu_ratio": cpu_ratio, "command": command, **results},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
