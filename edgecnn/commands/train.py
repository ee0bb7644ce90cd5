"""`edgecnn train DATA_DIR`: a thin layer over `edgecnn.training.train`."""

from __future__ import annotations

import argparse
import sys

STRATEGY_CHOICES = ("default", "mirrored", "multiworker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgecnn.data import CACHE_SHARE
    from edgecnn.models import ARCHITECTURES, DEFAULT_ARCH

    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-dir", metavar="DIR", help="validation folder with the same classes")
    val.add_argument(
        "--val-split",
        type=float,
        default=0.2,
        metavar="F",
        help="fraction of every class held out for validation, seeded (default 0.2)",
    )
    parser.add_argument(
        "--arch",
        default=DEFAULT_ARCH,
        choices=sorted(ARCHITECTURES),
        help=f"architecture (default {DEFAULT_ARCH})",
    )
    parser.add_argument(
        "--img-size", type=int, metavar="N", help="model input size (default per arch: edge 80)"
    )
    parser.add_argument(
        "--train-size",
        type=int,
        metavar="N",
        help="decode and augment training photos at this size and run the model at --img-size "
        "(edge only: it is fully convolutional; default: the input size)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help="maximum epochs (default per arch: edge 60, seed 25)",
    )
    parser.add_argument("--batch", type=int, default=32, metavar="N", help="batch size (32)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (0)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default runs/<data>-<arch>-<n>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing run in --out")
    parser.add_argument(
        "--strategy",
        default="default",
        choices=STRATEGY_CHOICES,
        help="tf.distribute strategy (mirrored: all local devices; multiworker: TF_CONFIG)",
    )
    parser.add_argument(
        "--weights",
        metavar="PATH|imagenet",
        help="start from a local weights file, or from ImageNet ('imagenet': the "
        "keras.applications backbones, e.g. --arch mobilenetv3small; Keras' own file, "
        "downloaded once into $KERAS_HOME/models, default ~/.keras/models)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="training compute precision (auto: float32 on every machine; bfloat16: mixed "
        "bf16, faster on CPUs with bf16 units; the saved model is float32 either way)",
    )
    _switch(
        parser,
        "flip-tta",
        on="save the model averaged over the photo's centre 85%% and its mirror image "
        "(default for edge)",
        off="save the plain model on the whole photo: half the inference cost, 1-2 points "
        "less accurate",
    )
    _switch(
        parser,
        "whiten-stem",
        on="start from a frozen first layer of the training photos' patch principal "
        "components (default for edge, unless --weights)",
        off="train the stem from its initialisation like every other layer",
    )
    parser.add_argument(
        "--cache-mb",
        type=float,
        metavar="N",
        help="memory budget in MB for the decoded photos; above it they are cached on disk "
        f"beside the run folder and streamed from there, same results (default: "
        f"{CACHE_SHARE:.0%}% of RAM)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _switch(parser: argparse.ArgumentParser, name: str, *, on: str, off: str) -> None:
    """`--NAME` / `--no-NAME`, exclusive, into one dest that stays None (the arch's default)."""
    group = parser.add_mutually_exclusive_group()
    dest = name.replace("-", "_")
    group.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=on)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=off)


def run(args: argparse.Namespace) -> int:
    from edgecnn.training import StrategyError, TrainingInterrupted, train

    try:
        result = train(
            args.data_dir,
            val_dir=args.val_dir,
            val_split=args.val_split,
            arch=args.arch,
            img_size=args.img_size,
            train_size=args.train_size,
            epochs=args.epochs,
            batch=args.batch,
            seed=args.seed,
            out=args.out,
            resume=args.resume,
            force=args.force,
            strategy=args.strategy,
            weights=args.weights,
            precision=args.precision,
            flip_tta=args.flip_tta,
            whiten_stem=args.whiten_stem,
            cache_mb=args.cache_mb,
            progress=not args.quiet,
        )
    except TrainingInterrupted as e:
        print(f"edgecnn train: {e.message}", file=sys.stderr)
        return 130
    except StrategyError as e:  # one line: TensorFlow's own messages may hold whole tensors
        print(f"edgecnn train: error: {e}", file=sys.stderr)
        return 1
    if result.chief:  # the other workers of a multi-worker job write no run
        print(result.path)
    return 0
