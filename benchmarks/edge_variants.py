"""Shapes of the `edge` net side by side: training cost, int8 latency, and accuracy on a split.

The default net has two budgets on a 2-core CPU, 15 minutes of training and 3 ms of int8
inference (two test-time views, batch 1, 1 thread), and a CPU without AVX-512 (float32 training
on AVX2, int8 kernels without VNNI) is where both bite.  For each named variant (`VARIANTS`)
this prints:

- `train s/epoch`: wall seconds of one training epoch of 2,048 random images at batch 32 with
  edgecnn's training graph and precision (the best of two, after a warm-up epoch);
- `int8 ms`: p50 of 300 bare LiteRT invokes at 1 thread of the full-integer model with the
  saved model's two test-time views (`with_flip_tta`), untrained weights (latency depends on
  the shapes only), and of the plain net;
- with `--train DIR`: the accuracy, with the two views, of `edgecnn.train` on a seeded 20%
  validation split of DIR (`--seeds 1,2`: one run per split), through the default recipe,
  whitened frozen stem included (`--no-whiten-stem`: trained from random initialisation).

    .venv/bin/python benchmarks/edge_variants.py                       # cost and latency, all
    .venv/bin/python benchmarks/edge_variants.py default previous --train \\
        ../shared/datasets/cats-vs-dogs/train --seeds 1,2 --out runs/variants
    # a 3x3 stem conv trained from random initialisation, on splits 1-3:
    .venv/bin/python benchmarks/edge_variants.py stem-3x3 --no-whiten-stem --train \\
        ../shared/datasets/cats-vs-dogs/train --seeds 1,2,3

Each training run takes the whole machine; on 2 cores two runs side by side with one thread
each (`TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1`) finish ~15% sooner in all.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shlex
import sys
import time
from pathlib import Path

from _epoch_clock import epoch_clock

from edgecnn.models import EdgeConfig
from edgecnn.training import prefer_onednn

prefer_onednn()  # before TensorFlow loads, as `train` does

_FUSED_64 = ((64, 2, 1),)  # one fused stage, 64 wide: the 80 px default's (`edge-80`)
# variants with a 3x3 stem conv holding both signs itself (no 1x1 signs layer)
_3 = {"stem_kernel": 3, "stem_signs": False}
# name: (input size, EdgeConfig, what it is)
VARIANTS: dict[str, tuple[int, EdgeConfig, str]] = {
    "default": (88, EdgeConfig(), "the default: 7x7 stem + 1x1 signs, fused stage 48 wide, 88 px"),
    "edge-80": (
        80,
        EdgeConfig(fused=_FUSED_64),
        "the previous default: fused stage 64 wide, 80 px",
    ),
    "stem-5x5": (
        80,
        EdgeConfig(stem_kernel=5, stem_signs=False, fused=_FUSED_64),
        "edge-80 with a 5x5 stem conv holding both signs, no signs layer",
    ),
    "stem-3x3": (
        80,
        EdgeConfig(fused=_FUSED_64, **_3),
        "edge-80 with a 3x3 stem conv holding both signs",
    ),
    "previous": (
        96,
        EdgeConfig(fused=((32, 1, 1), (64, 2, 1)), **_3),
        "a 32-channel stage at 48x48 before the 64-channel one, 96 px",
    ),
    "previous-80": (
        80,
        EdgeConfig(fused=((32, 1, 1), (64, 2, 1)), **_3),
        "the `previous` shape at 80 px",
    ),
    "default-96": (96, EdgeConfig(fused=_FUSED_64, **_3), "3x3 stem, no 48x48 stage, 96 px"),
    "narrow-96": (96, EdgeConfig(fused=((48, 2, 1),), **_3), "3x3 stem, 48 wide, 96 px"),
    # a narrower fused stage paying for a larger input (docs/edge-recipe.md, "88 px with a
    # narrower fused stage"): edge-80's 7x7 stem and signs conv
    "edge-88": (88, EdgeConfig(fused=_FUSED_64), "edge-80 at 88 px"),
    **{
        f"f{width}-{size}": (
            size,
            EdgeConfig(fused=((width, 2, 1),)),
            f"edge-80, fused stage {width} wide, {size} px",
        )
        for width, size in ((48, 96), (40, 96), (32, 104), (40, 104), (32, 112), (40, 112))
    },
    # more or less capacity in the late, low-resolution stages (docs/edge-recipe.md, "Deeper,
    # wider or narrower late stages"): the default's stem, fused stage and input size
    "sep-deep": (
        88,
        EdgeConfig(separable=((128, 2, 1), (256, 2, 2))),
        "the default with a second 256-wide block at 6x6",
    ),
    "sep-512": (
        88,
        EdgeConfig(separable=((128, 2, 1), (256, 2, 1), (512, 2, 1))),
        "the default with a 512-wide stage at 3x3",
    ),
    "sep-wide": (
        88,
        EdgeConfig(separable=((192, 2, 1), (384, 2, 1))),
        "the default with separable stages 192 and 384 wide",
    ),
    "sep-narrow": (
        88,
        EdgeConfig(separable=((96, 2, 1), (192, 2, 1))),
        "the default with separable stages 96 and 192 wide",
    ),
    "plain-stages": (
        96,
        EdgeConfig(fused=(*_FUSED_64, (128, 2, 1), (256, 2, 1)), separable=(), **_3),
        "every stage plain 3x3 (ResNet-10-like, 1.2M params), 96 px",
    ),
}


def _build(name: str, *, training_graph: bool = False, precision: str = "float32"):
    from edgecnn.models import build_edge, dtype_policy

    size, config, _ = VARIANTS[name]
    with dtype_policy(precision):
        return build_edge(2, size, config=config, training_graph=training_graph)


def epoch_seconds(name: str, images: int = 2048, batch: int = 32) -> float:
    import keras
    import numpy as np
    import tensorflow as tf

    from edgecnn.training import _compile, resolve_precision, steps_per_execution

    keras.utils.set_random_seed(0)
    size = VARIANTS[name][0]
    model = _build(name, training_graph=True, precision=resolve_precision("auto"))
    steps = images // batch
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (steps * batch, size, size, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 2, len(x))))
    ds = ds.batch(batch).repeat().prefetch(4)
    _compile(model, "edge", steps_per_call=steps_per_execution(steps))
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # trace + warm up
    clock = epoch_clock()  # times epochs, not whole `fit` calls (see _epoch_clock.py)
    model.fit(ds, steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[clock])
    return min(clock.seconds)


def int8_ms(model, runs: int = 300) -> float:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.export._tflite import convert
    from edgecnn.runtime.contract import Contract

    size = model.input_shape[1]
    rng = np.random.default_rng(0)
    contract = Contract(labels=("a", "b"), height=size, width=size)
    calib = rng.uniform(0, 255, (10, size, size, 3)).astype(np.float32)
    flatbuffer = convert(model, contract, "tflite-int8", calib_inputs=calib)  # as `export` does
    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], rng.integers(0, 256, inp["shape"], dtype=np.uint8))
    for _ in range(20):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def split_accuracy(
    name: str, data: Path, seed: int, out: Path, *, whiten_stem: bool = True
) -> tuple[float, int]:
    """(val accuracy with the two views, best epoch) of the default recipe on a 20% split."""
    from edgecnn import models
    from edgecnn.training import train

    size, config, _ = VARIANTS[name]
    spec = models.ARCHITECTURES["edge"]
    build = functools.partial(models.build_edge, config=config)
    models.ARCHITECTURES["edge"] = dataclasses.replace(spec, build=build, img_size=size)
    try:
        run = train(
            data,
            val_split=0.2,
            seed=seed,
            out=out,
            force=True,
            progress=False,
            whiten_stem=whiten_stem,
        )
    finally:
        models.ARCHITECTURES["edge"] = spec
    return run.metrics["val_accuracy"], run.metrics["best_epoch"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", help=f"default: all of {', '.join(VARIANTS)}")
    p.add_argument("--train", type=Path, metavar="DIR", help="also train on splits of DIR")
    p.add_argument("--seeds", default="1,2", help="split seeds for --train (default 1,2)")
    p.add_argument("--out", type=Path, default=Path("runs/variants"))
    p.add_argument(
        "--no-whiten-stem",
        dest="whiten_stem",
        action="store_false",
        help="--train: stems trained from random initialisation instead of whitened and frozen",
    )
    a = p.parse_args()
    unknown = sorted(set(a.variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")

    from edgecnn.models import with_flip_tta

    seeds = [int(s) for s in a.seeds.split(",")] if a.train else []
    head = f"{'variant':<14}{'size':>5}{'params':>9}{'train s/epoch':>15}{'int8 ms':>9}{'plain':>7}"
    print(head + "".join(f"{f'split {s}':>10}" for s in seeds) + "  what")
    for name in a.variants or VARIANTS:
        size, _, what = VARIANTS[name]
        plain = _build(name)
        row = (
            f"{name:<14}{size:>5}{plain.count_params() / 1e3:>8.0f}k"
            f"{epoch_seconds(name):>15.2f}{int8_ms(with_flip_tta(plain)):>9.2f}"
            f"{int8_ms(plain):>7.2f}"
        )
        for seed in seeds:
            out = a.out / f"{name}-s{seed}"
            acc, best = split_accuracy(name, a.train, seed, out, whiten_stem=a.whiten_stem)
            row += f"{acc:>9.2%} "
            print(f"  {name} split {seed}: {acc:.2%} (best epoch {best})", file=sys.stderr)
        print(f"{row}  {what}", flush=True)
    print(f"command: .venv/bin/python benchmarks/edge_variants.py {shlex.join(sys.argv[1:])}")
    print(
        f"cpu: {os.cpu_count()} cores, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}"
    )


if __name__ == "__main__":
    main()
