"""Training step cost of the `edge` net: the standard Keras graph vs edgecnn's training graph.

`edgecnn.train` fits `build_model(..., training_graph=True)` (fused BatchNorm, strided
depthwise convs as stride 1 + `EveryOther`; see `edgecnn/_train_graph.py`) and saves the
standard build with the same weights.  This times both graphs on the same random batches,
interleaved `--repeats` times (a shared machine drifts), and prints the median wall and CPU
seconds per epoch of `--images` images, the ratio, and the largest difference between the two
graphs' predictions from the same weights.  Then the arithmetic behind it: the multiply-adds of
one training image (`training_macs`), the rate the faster graph reaches, and this CPU's float32
matrix-multiply rate (a 2048x2048 `tf.matmul`) for scale.

    .venv/bin/python benchmarks/train_graph.py                 # edge's own size, batch 32, precision auto
    .venv/bin/python benchmarks/train_graph.py --img-size 64 --precision float32
    .venv/bin/python benchmarks/train_graph.py --onednn off    # Eigen kernels instead

`--onednn on` (the default, as `edgecnn train` sets it unless TF_ENABLE_ONEDNN_OPTS is set)
runs TensorFlow's oneDNN kernels, `off` its Eigen ones; TensorFlow's own default is on only
for CPUs with AVX-512 VNNI/BF16 or AMX.  Run both to see what oneDNN is worth on a machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

from _epoch_clock import epoch_clock

from edgecnn.models import ARCHITECTURES  # no TensorFlow: TF_ENABLE_ONEDNN_OPTS still applies


def training_macs(model) -> int:
    """Multiply-adds of one training step per image: each layer's forward product as `edgecnn
    profile` counts it, plus the weight gradient of a trainable layer and the input gradient of
    every such layer after the first (the first one's input needs none)."""
    import keras

    from edgecnn.profile import _keras_macs

    total, first = 0, True
    for layer in model.layers:
        macs = _keras_macs(layer, keras.tree.flatten(layer.input), keras.tree.flatten(layer.output))
        if macs:
            total += macs * (1 + bool(layer.trainable) + (not first))
            first = False
    return total


def matmul_rate(n: int = 2048, runs: int = 10) -> float:
    """float32 multiply-adds per second of an n x n `tf.matmul`, best of three timings."""
    import tensorflow as tf

    a = tf.random.uniform((n, n))
    product = tf.function(lambda: tf.matmul(a, a), autograph=False)
    product().numpy()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(runs):
            product().numpy()
        best = min(best, time.perf_counter() - t)
    return runs * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--img-size", type=int, default=ARCHITECTURES["edge"].img_size)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--images", type=int, default=2048, help="images per timed epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="auto", help="auto, float32 or bfloat16")
    p.add_argument("--onednn", choices=("on", "off"), default="on")
    a = p.parse_args()
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if a.onednn == "on" else "0"  # before TF loads

    import keras
    import numpy as np
    import tensorflow as tf

    from edgecnn.models import build_model
    from edgecnn.training import _compile, resolve_precision, steps_per_execution

    precision = resolve_precision(a.precision)
    steps = max(1, a.images // a.batch)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (steps * a.batch, a.img_size, a.img_size, 3)).astype(np.float32)
    y = rng.integers(0, 2, len(x))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(a.batch).repeat().prefetch(4)

    models = {}
    for name, fast in (("keras", False), ("edgecnn", True)):
        keras.utils.set_random_seed(0)
        m = build_model("edge", 2, a.img_size, precision=precision, training_graph=fast)
        _compile(m, "edge", steps_per_call=steps_per_execution(steps))  # as edgecnn.train does
        m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # trace + warm up
        models[name] = m
    models["keras"].set_weights(models["edgecnn"].get_weights())
    probe = x[: 4 * a.batch]
    diff = np.abs(
        models["keras"].predict(probe, verbose=0) - models["edgecnn"].predict(probe, verbose=0)
    ).max()

    clock = epoch_clock()  # times epochs, not whole `fit` calls (see _epoch_clock.py)
    wall: dict[str, list[float]] = {n: [] for n in models}
    cpu: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(a.repeats):
        for name, m in models.items():
            m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[clock])
            wall[name].append(clock.seconds[-1])
            cpu[name].append(clock.cpu_seconds[-1])

    print(
        f"edge {a.img_size}px, batch {a.batch}, {precision}, oneDNN {a.onednn}, "
        f"{steps * a.batch} images/epoch, "
        f"{a.repeats} interleaved repeats (medians):"
    )
    print(f"{'graph':<10}{'wall s/epoch':>14}{'CPU s/epoch':>13}")
    for name in models:
        print(
            f"{name:<10}{statistics.median(wall[name]):>14.2f}{statistics.median(cpu[name]):>13.2f}"
        )
    ratio = statistics.median(cpu["keras"]) / statistics.median(cpu["edgecnn"])
    print(f"CPU time ratio keras/edgecnn: {ratio:.2f}x; max prediction difference {diff:.2e}")
    macs = training_macs(models["keras"])
    rate = macs * steps * a.batch / statistics.median(wall["edgecnn"])
    peak = matmul_rate()
    print(
        f"{macs / 1e6:.1f}M multiply-adds a training image: edgecnn's graph {rate / 1e9:.1f} "
        f"GMAC/s, {rate / peak:.0%} of a 2048x2048 tf.matmul's {peak / 1e9:.1f} GMAC/s here"
    )
    print(
        f"command: .venv/bin/python benchmarks/train_graph.py {shlex.join(sys.argv[1:])}".rstrip()
    )


if __name__ == "__main__":
    main()
