"""`edgecnn train DATA_DIR`: a thin layer over `edgecnn.training.train`.

The flags are `edgecnn.training.TrainOptions`' fields (`--quiet` is `progress=False`); their
defaults and the numbers in their help come from it and from the architecture registry.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgecnn.data import CACHE_SHARE
    from edgecnn.models import ARCHITECTURES, TTA_CROP
    from edgecnn.training import PRECISION_CHOICES, STRATEGIES, TrainOptions

    default = TrainOptions()
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-dir", metavar="DIR", help="validation folder with the same classes")
    val.add_argument(
        "--val-split",
        type=float,
        default=default.val_split,
        metavar="F",
        help=f"fraction of every class held out for validation, seeded (default {default.val_split})",
    )
    parser.add_argument(
        "--arch",
        default=default.arch,
        choices=sorted(ARCHITECTURES),
        help=f"architecture (default {default.arch})",
    )
    parser.add_argument(
        "--img-size",
        type=int,
        metavar="N",
        help=f"model input size (default per arch: {_per_arch('img_size', default.arch)})",
    )
    parser.add_argument(
        "--train-size",
        type=int,
        metavar="N",
        help="decode and augment training photos at this size and run the model at --img-size "
        f"(fully convolutional nets only: {_archs('any_size')}; default: the input size)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"maximum epochs (default per arch: {_per_arch('epochs', default.arch)})",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=default.batch,
        metavar="N",
        help=f"batch size ({default.batch})",
    )
    parser.add_argument(
        "--seed", type=int, default=default.seed, metavar="N", help=f"random seed ({default.seed})"
    )
    parser.add_argument("--out", metavar="DIR", help="run folder (default runs/<data>-<arch>-<n>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing run in --out")
    parser.add_argument(
        "--strategy",
        default=default.strategy,
        choices=STRATEGIES,
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
        default=default.precision,
        choices=PRECISION_CHOICES,
        help="training compute precision (auto: float32 on every machine; bfloat16: mixed "
        "bf16, faster on CPUs with bf16 units; the saved model is float32 either way)",
    )
    _switch(
        parser,
        "flip-tta",
        on=f"save the model averaged over the photo's centre {TTA_CROP:.0%}% and its mirror "
        f"image (default for {_archs('flip_tta')})",
        off="save the plain model on the whole photo: half the inference cost, 1-2 points "
        "less accurate",
    )
    _switch(
        parser,
        "whiten-stem",
        on="start from a frozen first layer of the training photos' patch principal "
        f"components (default for {_archs('whiten_stem')}, unless --weights)",
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


def _per_arch(attribute: str, first: str) -> str:
    """'edge 60, seed 25, ...': each architecture's default `attribute`, `first` first."""
    from edgecnn.models import ARCHITECTURES

    names = [first, *(name for name in ARCHITECTURES if name != first)]
    return ", ".join(f"{name} {getattr(ARCHITECTURES[name], attribute)}" for name in names)


def _archs(flag: str) -> str:
    """The architectures whose `flag` is set, e.g. 'edge'."""
    from edgecnn.models import ARCHITECTURES

    return ", ".join(name for name, spec in ARCHITECTURES.items() if getattr(spec, flag))


def _switch(parser: argparse.ArgumentParser, name: str, *, on: str, off: str) -> None:
    """`--NAME` / `--no-NAME`, exclusive, into one dest that stays None (the arch's default)."""
    group = parser.add_mutually_exclusive_group()
    dest = name.replace("-", "_")
    group.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=on)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=off)


def options(args: argparse.Namespace):
    """The `TrainOptions` the parsed flags ask for."""
    from edgecnn.training import TrainOptions

    names = {f.name for f in dataclasses.fields(TrainOptions)}
    given = {name: value for name, value in vars(args).items() if name in names}
    return TrainOptions(**given, progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    from edgecnn.training import StrategyError, TrainingInterrupted, train

    try:
        result = train(args.data_dir, options(args))
    except TrainingInterrupted as e:
        print(f"edgecnn train: {e.message}", file=sys.stderr)
        return 130
    except StrategyError as e:  # one line: TensorFlow's own messages may hold whole tensors
        print(f"edgecnn train: error: {e}", file=sys.stderr)
        return 1
    if result.chief:  # the other workers of a multi-worker job write no run
        print(result.path)
    return 0
