"""Training: a folder of labelled photos -> a run directory with a Keras model and its report.

    from edgecnn import train
    run = train("photos/", arch="edge", epochs=30)
    run.model_path            # runs/photos-edge-1/model.keras
    run.metrics["val_accuracy"]

The story of one run:

1. data   decode every image once with the shared contract (`edgecnn.data.prepare`), skipping
          and listing what cannot be used; split off validation.
2. model  `edgecnn.models.build_model(arch)` under a `tf.distribute` strategy; for `edge`, the
          stem is set from the training photos' whitened patches and frozen
          (`edgecnn.models.set_whitened_stem`).
3. fit    seeded tf.data augmentation pipeline, cosine learning-rate schedule with warm-up, early
          stopping on validation accuracy (armed for the last quarter of the schedule, where
          validation runs every epoch; before it, every `VAL_EVERY`-th epoch), balanced
          class weights when folders are imbalanced, and a checkpoint after every epoch
          (`checkpoint/`), so Ctrl-C or a crash loses at most one epoch and `resume=True`
          continues exactly where it stopped.
4. report the best epoch's weights become `model.keras` (the inference model: no augmentation,
          no optimizer; the contract is inside it as the zip entry `edgecnn.json`), plus
          `labels.txt`, `edgecnn.json`, `history.csv`, `training.png`, `metrics.json` (with
          the most-confused class pairs, `edgecnn.runtime.confusion`), `confusion.png`.
          `checkpoint/` is removed once the run is complete.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__, transfer
from edgecnn.data import Augment, Splits, eval_dataset, prepare, steps_per_epoch, train_dataset
from edgecnn.models import (
    DEFAULT_ARCH,
    IMAGENET,
    TTA_CROP,
    build_model,
    get_architecture,
    imagenet_file,
    resolve_img_size,
    resolve_train_size,
    set_whitened_stem,
    with_flip_tta,
)
from edgecnn.runtime.confusion import format_pairs
from edgecnn.runtime.contract import Contract
from edgecnn.runtime.dataset import check_seed
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.files import write_atomic
from edgecnn.runtime.formatting import duration, shown
from edgecnn.runtime.metadata import CONTRACT_FILE, LABELS_FILE

STRATEGIES = ("default", "mirrored", "multiworker")
CHECKPOINT_DIR = "checkpoint"
HISTORY_FIELDS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "epoch_seconds",
)
# `precision` choices: `auto` and `bfloat16` name Keras' policies for the user (resolve_precision)
PRECISION_CHOICES = ("auto", "float32", "bfloat16")
# Early-stopping patience is a sixth of the schedule unless given: 17 epochs of the `edge`
# recipe's 100, 5 of 30, and never less than MIN_PATIENCE.
PATIENCE_SHARE = 1 / 6
MIN_PATIENCE = 3
# Early stopping counts only epochs in the last quarter of the schedule.  Under cosine decay the
# learning rate is still above 15% of its peak before that, so validation accuracy plateaus and
# dips there are the high rate, not overfitting: on validation splits of cats-vs-dogs, patience
# 10 from the start would have stopped all eight logged 60-86 epoch runs at epochs 20-56, and
# six of them reached a better validation epoch later (+0.75 to +8.25 points).
EARLY_STOP_FROM = 0.75
# The kept epoch is the best validated one inside that window too.  An earlier one can score
# higher on a few hundred validation photos by chance, and generalises worse: trained with
# `--val-split 0.2 --seed 1` on cats-vs-dogs, one run kept epoch 25 of 60 (83.75% on its 400
# validation photos) and its int8 file scored 64.2% on pets-oxford, another source; the same
# run keeping the best epoch of the window, 49 (82.5%), scored 74.9% there (docs/edge-recipe.md).
# Before the window nothing is decided on validation, so a long run validates only every
# VAL_EVERY-th epoch there (progress to watch): on cats-vs-dogs, scoring 1,000 validation
# photos on edge's two test-time views costs ~2.3 s on 2 cores, against ~5.9 s for an epoch's
# training.
VAL_EVERY = 5
# Every ETA_EVERY-th epoch, a run with progress prints the time so far and an estimate of the
# rest (`time_left`): the default recipe runs ~100 epochs of a few seconds each.
ETA_EVERY = 10
# The run's opening lines name each class's photo count up to PLAN_CLASSES classes, and say
# what one photo is worth when validation has fewer than FEW_VALIDATION_PHOTOS.
PLAN_CLASSES = 8
FEW_VALIDATION_PHOTOS = 200
_GENERIC_FOLDER_NAMES = {"train", "training", "training_set", "data", "images", "photos"}


@dataclass(frozen=True)
class Run:
    """A finished training run: its folder, the inference model and the preprocessing contract."""

    path: Path
    model_path: Path
    contract: Contract
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)
    history: tuple[dict[str, float], ...] = field(default=(), compare=False)
    # False on the other workers of a multi-worker job: they train in step with the chief,
    # which alone writes `path` (on its own machine).
    chief: bool = True


class StrategyError(RuntimeError):
    """Training under a `tf.distribute` strategy failed (a lost peer, a TensorFlow or Keras
    error); the message is one line, the original exception is its `__cause__`."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what was saved and how to resume."""

    def __init__(self, message: str, path: Path | None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """How `train` runs: every option of `train()` and of `edgecnn train`, whose defaults and
    help read the defaults here.  Conflicting or out-of-range options raise InputError when
    the options are made, before anything is read or written.

    Attributes:
        val_dir: validation folder with the same classes; without it, a seeded stratified
            `val_split` of the training folder.
        arch: the architecture (`edgecnn.models.ARCHITECTURES`).  `img_size`, `epochs`,
            `flip_tta` and `whiten_stem` left at None take the architecture's own default.
        img_size: the model's input size; `train_size` decodes and augments the training
            photos at that size while validation, the saved model and every export run at
            `img_size` (fully convolutional nets only, e.g. `edge`; None: `img_size`).
        out: the run folder, default `runs/<data>-<arch>-<n>`; an existing run there is
            refused unless `resume` (continue its checkpoint; arch/size/seed/data come from the
            checkpoint, `epochs` may extend it) or `force` (replace it).
        strategy: `default`, `mirrored` (all local GPUs, else all logical CPUs) or
            `multiworker` (every machine runs the same call with its own TF_CONFIG; the chief
            alone writes `out`, the other workers return a `Run` with `chief=False` and write
            nothing there; no `resume`).
        weights: a local weights file, or `"imagenet"` for the `keras.applications`
            backbones (Keras' own ImageNet file from its cache, downloaded once if missing:
            `edgecnn.imagenet`; offline without it, an InputError names the file, the folder
            and the URL).
        precision: `float32`, `bfloat16` (Keras' mixed_bfloat16: bf16 compute, float32
            weights; faster on CPUs with bf16 units, emulated and slow elsewhere) or `auto`
            (float32; see `resolve_precision`); the saved model is float32 either way.
        flip_tta: save the model averaged over the photo's centre crop (`TTA_CROP`) and its
            mirror image (`edgecnn.models.with_flip_tta`: 1-2 points more accurate on a
            validation split, twice the inference cost).  Per-epoch validation figures, and so
            the epoch kept, are the model's as saved, with its two views, under every strategy.
        whiten_stem: start the net from a frozen first layer of the training photos' patch
            principal components (`edgecnn.models.set_whitened_stem`; never with `weights`).
        patience: validated epochs without a gain inside the early-stopping window (the last
            quarter of the schedule); None: `default_patience(epochs)`.
        cache_mb: the memory budget of the decoded photos (None: a quarter of the memory,
            `edgecnn.data.default_cache_mb`); above it they are decoded into a folder beside
            the run folder and streamed from disk, with the same results, and the folder is
            removed when training ends (a `resume` decodes again).
        augment: the training augmentation (None: `Augment()`, the recipe's).
        callbacks: extra Keras callbacks.
        progress: progress bars and summary lines on stderr.
    """

    val_dir: str | os.PathLike | None = None
    val_split: float = 0.2
    arch: str = DEFAULT_ARCH
    img_size: int | None = None
    train_size: int | None = None
    epochs: int | None = None
    batch: int = 32
    seed: int = 0
    out: str | os.PathLike | None = None
    resume: bool = False
    force: bool = False
    strategy: str = "default"
    weights: str | os.PathLike | None = None
    precision: str = "auto"
    flip_tta: bool | None = None
    whiten_stem: bool | None = None
    patience: int | None = None
    cache_mb: float | None = None
    augment: Augment | None = None
    callbacks: Sequence = ()
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "callbacks", tuple(self.callbacks or ()))
        epochs, batch, patience = self.epochs, self.batch, self.patience
        if self.resume and self.force:
            raise InputError("--resume and --force contradict each other; pass one")
        for flag, value in (("--epochs", epochs), ("--batch", batch), ("patience", patience)):
            if value is not None and value < 1:
                raise InputError(f"{flag} must be at least 1, got {value}")
        check_seed(self.seed)
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"unknown strategy {self.strategy!r}; choose one of {list(STRATEGIES)}"
            )
        if self.resume and self.out is None:
            raise InputError("--resume needs --out pointing at the run to continue")


@dataclass(frozen=True)
class _Config:
    """The options that define a run, resolved (the architecture's defaults filled in) and
    stored in the checkpoint, so `resume` continues the same run.  Built by `from_options`;
    every field but `data_dir` is the `TrainOptions` field of the same name."""

    data_dir: str
    val_dir: str | None
    val_split: float | None
    arch: str
    img_size: int
    batch: int
    seed: int
    weights: str | None
    patience: int
    precision: str
    flip_tta: bool = False
    train_size: int | None = None  # None (checkpoints before it existed): img_size
    whiten_stem: bool = False

    @classmethod
    def from_options(
        cls, data_dir: str | os.PathLike, options: TrainOptions, *, epochs: int
    ) -> _Config:
        """A new run's config: `options` with the architecture's defaults filled in."""
        o = options
        spec = get_architecture(o.arch)
        size = resolve_img_size(o.arch, o.img_size)
        return cls(
            data_dir=str(data_dir),
            val_dir=str(o.val_dir) if o.val_dir is not None else None,
            val_split=None if o.val_dir is not None else float(o.val_split),
            arch=spec.name,
            img_size=size,
            batch=int(o.batch),
            seed=int(o.seed),
            weights=os.fspath(o.weights) if o.weights else None,
            patience=default_patience(epochs) if o.patience is None else int(o.patience),
            precision=resolve_precision(o.precision),
            flip_tta=spec.flip_tta if o.flip_tta is None else bool(o.flip_tta),
            train_size=resolve_train_size(o.arch, size, o.train_size),
            whiten_stem=_whitens(o.arch, o.whiten_stem, o.weights),
        )

    @property
    def fit_size(self) -> int:
        """The size training photos are decoded and augmented at."""
        return self.train_size or self.img_size


def train(
    data_dir: str | os.PathLike, options: TrainOptions | None = None, **overrides: Any
) -> Run:
    """Train on the folder-per-class images in `data_dir`; returns the finished `Run`.

    `options` is a `TrainOptions`; its fields may also be given as keywords, which override
    it (`train("photos/", arch="seed", epochs=10)`).  Ctrl-C raises `TrainingInterrupted`
    after the last finished epoch is saved.

    Raises InputError for unusable data or options, before anything is written, and
    StrategyError (one line) when training under a `mirrored` or `multiworker` strategy fails.
    """
    o = replace(options, **overrides) if options is not None else TrainOptions(**overrides)
    chief = o.strategy != "multiworker" or _is_chief(_multiworker_task())
    if o.resume and o.strategy == "multiworker":
        raise InputError(
            "--resume continues a run on one machine (--strategy default or mirrored); "
            "a multi-worker job cannot resume"
        )
    out_dir = Path(o.out) if o.out is not None else _default_out(Path(data_dir), o.arch)
    state = _read_state(out_dir) if o.resume else None
    epochs = o.epochs
    if epochs is None:
        # A resumed run keeps its own epoch count (and so its learning-rate schedule).
        run_arch = state["config"]["arch"] if state is not None else o.arch
        epochs = (state or {}).get("epochs") or get_architecture(run_arch).epochs
    if state is not None:
        config = _Config(**state["config"])
    else:
        if chief:  # the other workers write nothing at out_dir
            _refuse_existing(out_dir, force=o.force)
        config = _Config.from_options(data_dir, o, epochs=epochs)
    prefer_onednn(config.precision)  # before anything imports TensorFlow
    if state is None:
        _fetch_imagenet(config)  # before decoding: offline without the file fails at once
    splits = prepare(
        config.data_dir,
        img_size=config.img_size,
        val_dir=config.val_dir,
        val_split=config.val_split or TrainOptions.val_split,
        seed=config.seed,
        progress=None if o.progress else False,  # None: a bar only on a terminal
        train_size=config.fit_size,
        cache_mb=o.cache_mb,
        cache_beside=out_dir,
    )
    _print_skipped(splits.skipped)
    _print_val_gaps(splits)
    if state is not None and state["fingerprint"] != splits.fingerprint:
        splits.close()
        raise InputError(f"{out_dir}: the data changed since this run started; cannot resume")
    if state is None and o.force and out_dir.exists() and chief:
        shutil.rmtree(out_dir)
    try:
        return _Trainer(
            config,
            splits,
            out_dir,
            epochs,
            state,
            o.strategy,
            o.progress,
            o.augment,
            list(o.callbacks),
            chief=chief,
        ).run()
    finally:
        splits.close()  # the decoded photos' folder, when they were cached on disk


def default_patience(epochs: int) -> int:
    """Early-stopping patience for an `epochs`-long schedule: a sixth of it (17 of 100)."""
    return max(MIN_PATIENCE, round(epochs * PATIENCE_SHARE))


def _fetch_imagenet(config: _Config) -> None:
    """Put Keras' ImageNet file for the run's backbone in its cache now, if the run asks for it,
    so a missing file stops the run before any photo is decoded."""
    if config.weights != IMAGENET:
        return
    from edgecnn import imagenet

    imagenet.fetch(imagenet_file(config.arch, config.img_size))


def _whitens(arch: str, whiten_stem: bool | None, weights) -> bool:
    """Whether a new run whitens its stem: the architecture's default unless told."""
    spec = get_architecture(arch)
    if whiten_stem is None:
        return spec.whiten_stem and not weights
    if whiten_stem and not spec.whiten_stem:
        raise InputError(f"--whiten-stem: {arch} has no stem to whiten")
    if whiten_stem and weights:
        raise InputError("--whiten-stem and --weights contradict each other; pass one")
    return bool(whiten_stem)


# --- run directory ----------------------------------------------------------------------------


def data_name(data_dir: str | os.PathLike) -> str:
    """A readable name for a dataset folder: its own, or its parent's for a generic 'train/'."""
    resolved = Path(data_dir).resolve()
    if resolved.name.lower() in _GENERIC_FOLDER_NAMES and resolved.parent.name:
        return resolved.parent.name
    return resolved.name


def _default_out(data_dir: Path, arch: str) -> Path:
    """runs/<data>-<arch>-<n> with the first free n."""
    name = data_name(data_dir)
    n = 1
    while (Path("runs") / f"{name}-{arch}-{n}").exists():
        n += 1
    return Path("runs") / f"{name}-{arch}-{n}"


def _is_run(path: Path) -> bool:
    return (path / CONTRACT_FILE).exists() or (path / CHECKPOINT_DIR).exists()


def _refuse_existing(out_dir: Path, *, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    if not out_dir.exists():
        _refuse_uncreatable(out_dir)
        return
    if not any(out_dir.iterdir()):
        return
    if not _is_run(out_dir):
        raise InputError(
            f"{out_dir}: folder is not empty and is not an edgecnn run; pick another --out"
        )
    if not force:
        raise InputError(
            f"{out_dir}: already holds a run; pass --resume to continue it or --force to replace it"
        )


def _refuse_uncreatable(out_dir: Path) -> None:
    """Refuse, before any work, an --out that its nearest existing parent cannot hold."""
    parent = out_dir.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{out_dir}: cannot be made, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{out_dir}: cannot be made, {parent} is not writable")


def _read_state(out_dir: Path) -> dict[str, Any]:
    path = out_dir / CHECKPOINT_DIR / "state.json"
    if not path.exists():
        why = "is a finished run" if (out_dir / CONTRACT_FILE).exists() else "has no checkpoint"
        raise InputError(f"{out_dir}: {why}; nothing to resume")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: checkpoint state is corrupt ({e})") from None


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text)


def _print_val_gaps(splits: Splits) -> None:
    """Name the classes validation has no image of (a --val-dir without their folder, or every
    one skipped): their recall cannot be measured, and metrics.json shows support 0."""
    counts = np.bincount(splits.val.targets, minlength=len(splits.classes))
    missing = [name for name, n in zip(splits.classes, counts) if n == 0]
    if missing:
        print(
            f"edgecnn train: no validation images of class(es) {missing}; their recall is not "
            "measured",
            file=sys.stderr,
        )


def _print_plan(splits: Splits, config: _Config, epochs: int, out_dir: Path) -> None:
    """Two lines before the first epoch: the photos as decoded, then the net and the run."""
    counts = np.bincount(splits.train.targets, minlength=len(splits.classes))
    if len(counts) <= PLAN_CLASSES:
        per_class = ", ".join(f"{name} {n}" for name, n in zip(splits.classes, counts))
    else:
        per_class = f"{counts.min()} to {counts.max()} a class"
    n_val = len(splits.val.targets)
    source = splits.source
    val_from = (
        f"from {source['val_dir']}"
        if "val_dir" in source
        else f"a seeded {source['val_split']:.0%} split"
    )
    print(
        f"edgecnn train: {counts.sum()} training photos of {len(counts)} classes ({per_class}), "
        f"{n_val} validation photos ({val_from})",
        file=sys.stderr,
    )
    few = ""
    if 0 < n_val < FEW_VALIDATION_PHOTOS:
        few = f"; with {n_val} validation photos, one photo is {100 / n_val:.1f} points of accuracy"
    print(
        f"edgecnn train: {config.arch} at {config.img_size}x{config.img_size} px, up to "
        f"{epochs} epoch{'s' if epochs > 1 else ''}, into {out_dir}{few}",
        file=sys.stderr,
    )


def _print_skipped(skipped: list[tuple[Path, str]]) -> None:
    if not skipped:
        return
    print(f"edgecnn train: skipped {len(skipped)} file(s):", file=sys.stderr)
    for path, reason in skipped:
        print(f"  {shown(path)}: {shown(reason)}", file=sys.stderr)


# --- training ---------------------------------------------------------------------------------


# oneDNN's instruction-set caps (`ONEDNN_MAX_CPU_ISA`, formerly `DNNL_MAX_CPU_ISA`) below
# AVX-512, where it has no bfloat16 kernels.  TensorFlow decides from the CPU itself whether to
# send bfloat16 ops to oneDNN, so on an AVX-512 CPU held to one of these, oneDNN refuses every
# bfloat16 convolution ("could not create a primitive descriptor"; TensorFlow 2.21, oneDNN 3.7).
_ONEDNN_ISAS_WITHOUT_BF16 = frozenset({"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2"})


def _onednn_isa_cap() -> tuple[str, str] | None:
    """The variable holding oneDNN to an instruction set, and that set (lower-case), if any."""
    for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        if os.environ.get(variable, "").strip():
            return variable, os.environ[variable].strip().lower()
    return None


class OneDNNOffWarning(UserWarning):
    """`train` runs where TensorFlow was imported first without its oneDNN kernels."""


def prefer_onednn(precision: str = "float32") -> None:
    """Ask TensorFlow for its oneDNN kernels on x86, unless TF_ENABLE_ONEDNN_OPTS is set.

    TensorFlow enables them by default only on x86 CPUs with AVX-512 VNNI/BF16 or AMX; elsewhere
    (AVX2-only CPUs, VMs that hide AVX-512) it trains convolutions with Eigen, ~1.4x slower for
    `edge` (13.8 vs 10.1 s an epoch on a 2-core first-generation EPYC,
    `benchmarks/train_graph.py --onednn on|off`).  TensorFlow reads the variable once, when it
    is first imported, so `train` calls this before importing it, and warns (`OneDNNOffWarning`)
    when a script imported TensorFlow (or Keras) first without them; both settings are tested on
    every machine (tests/test_precision.py).  Arm builds keep their own default.

    bfloat16 (`precision` 'mixed_bfloat16') under a oneDNN cap below AVX-512 gets Eigen's
    kernels instead, which is what TensorFlow does by itself on a CPU without AVX-512; a
    setting that cannot work (oneDNN asked for explicitly, or already running in this process)
    is refused in one line before any photo is decoded."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    cap = _onednn_isa_cap()
    if precision != "mixed_bfloat16" or cap is None or cap[1] not in _ONEDNN_ISAS_WITHOUT_BF16:
        if "TF_ENABLE_ONEDNN_OPTS" not in os.environ and _onednn_in_process() is False:
            warnings.warn(
                "TensorFlow was imported before train() and runs without its oneDNN kernels: "
                "training is slower (~1.4x on AVX2-only CPUs) and rounds unlike `edgecnn train`; "
                "set TF_ENABLE_ONEDNN_OPTS=1 before importing TensorFlow or Keras",
                OneDNNOffWarning,
                stacklevel=3,  # the caller of train()
            )
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
        return
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    asked = os.environ["TF_ENABLE_ONEDNN_OPTS"].strip().lower() in ("1", "true")
    if asked or _onednn_in_process():
        variable, isa = cap
        raise InputError(
            f"--precision bfloat16: oneDNN is held to {isa.upper()} ({variable}), where it has "
            f"no bfloat16 kernels; unset {variable}, train in float32, or run with "
            "TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow reads it when it starts)"
        )


def _onednn_in_process() -> bool | None:
    """None before TensorFlow is imported; then whether its oneDNN kernels are on (too late to
    change: TensorFlow reads TF_ENABLE_ONEDNN_OPTS when it starts)."""
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def resolve_precision(precision: str) -> str:
    """'auto' -> 'float32' on every machine; 'bfloat16' -> Keras' 'mixed_bfloat16' policy.

    bfloat16 stays opt-in: the same seed then gives the same numbers on every CPU generation
    (docs/precision.md has the comparison behind the choice)."""
    from edgecnn.models import PRECISIONS

    if precision == "bfloat16":
        precision = "mixed_bfloat16"
    if precision == "auto":
        return "float32"
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose auto, float32 or bfloat16")
    return precision


def _make_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        return _multi_worker_strategy()
    return tf.distribute.get_strategy()


def _multi_worker_strategy():
    """tf.distribute.MultiWorkerMirroredStrategy with a `reduce` that Keras 3's `fit` can use.

    Keras 3.15's TensorFlow trainer calls `strategy.reduce` in two ways this strategy refuses
    once there is more than one worker (keras-team/keras#20585): on a whole input batch, a
    tuple `(x, y[, w])`, to build the model (TensorFlow's reduce takes one value: "unsupported
    type PerReplica"), and with `axis=0` on each step's scalar metrics ("Invalid reduction
    dimension 0 for input with 0 dimensions").  Here reduce maps over a tuple, and reduces a
    scalar across replicas only, which is what both callers mean."""
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            parent = super()

            def one(v):
                local = tf.convert_to_tensor(self.experimental_local_results(v)[0])
                return parent.reduce(reduce_op, v, None if local.shape.rank == 0 else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy()


def _multiworker_task() -> tuple[str, int, dict] | None:
    """This process's (task type, index, cluster) from TF_CONFIG, checked; None without it
    (TensorFlow then trains on this machine alone)."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
        members = cluster[kind]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(
            'TF_CONFIG: expected JSON like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}} ({type(e).__name__}: {e})'
        ) from None
    if not 0 <= index < len(members):
        raise InputError(
            f"TF_CONFIG: task index {index} is outside the {len(members)} {kind!r} address(es)"
        )
    return kind, index, cluster


def _is_chief(task: tuple[str, int, dict] | None) -> bool:
    """Only the chief of a multi-worker job writes the run directory: the "chief" task if the
    cluster has one, else worker 0 (TensorFlow's convention)."""
    if task is None:
        return True
    kind, index, cluster = task
    if "chief" in cluster:
        return kind == "chief"
    return kind == "worker" and index == 0


def _one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as `Type: first line of its message`, cut to `limit` characters: TensorFlow
    errors may carry whole tensors (a batch of pixels) in their text, and start with the name
    of the graph function they came from (`{{function_node ...}}`), dropped here."""
    lines = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(error)).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def earliest_stop(epochs: int) -> int:
    """The first epoch (1-based) of the window in which early stopping counts, for `epochs`.

    A run stops once `patience` epochs inside that window have brought no gain, so the earliest
    stop is `earliest_stop(epochs) + patience - 1`."""
    return max(1, math.ceil(EARLY_STOP_FROM * epochs))


def kept_epoch_text(best_epoch: int, epochs: int) -> str:
    """How the end-of-run line names the kept epoch: from the early-stopping window only
    (`earliest_stop`), so an earlier epoch may have scored higher on validation."""
    window = earliest_stop(epochs)
    if window <= 1:
        return f"best epoch {best_epoch}"
    return f"kept epoch {best_epoch}, the best validated from epoch {window} on"


def validated_epochs(epochs: int) -> list[int]:
    """The epochs (1-based) of an `epochs`-long run that are validated: every one inside the
    early-stopping window, every `VAL_EVERY`-th before it.  Runs with fewer than
    `2 * VAL_EVERY` epochs before the window validate every epoch."""
    window = earliest_stop(epochs)
    if window <= 2 * VAL_EVERY:
        return list(range(1, epochs + 1))
    return [e for e in range(1, epochs + 1) if e >= window or e % VAL_EVERY == 0]


def time_left(history: Sequence[dict], epochs: int) -> float | None:
    """Estimated seconds for the epochs of an `epochs`-long run after the last in `history`
    (rows of `epoch` and `epoch_seconds`), if none stops it early: the median time of the
    epochs done without validation for each such epoch to come, and of those with validation
    for each validated one (`validated_epochs`); of the other kind while one has not run yet.
    The first epoch (graph tracing) does not count: None until a later one has run."""
    validated = set(validated_epochs(epochs))
    times: dict[bool, list[float]] = {False: [], True: []}
    for row in history:
        if row["epoch"] > 1:
            times[row["epoch"] in validated].append(row["epoch_seconds"])
    if not times[False] and not times[True]:
        return None
    plain = float(np.median(times[False] or times[True]))
    with_val = float(np.median(times[True] or times[False]))
    last = history[-1]["epoch"]
    return sum(with_val if e in validated else plain for e in range(last + 1, epochs + 1))


def lr_at(epoch: int, *, base: float, epochs: int, warmup: int = 1) -> float:
    """Linear warm-up for `warmup` epochs, then cosine decay to 1% of `base` at the last epoch."""
    warmup = warmup if epochs > 3 * warmup else 0
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    span = max(1, epochs - warmup - 1)
    t = min(1.0, (epoch - warmup) / span)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


def steps_per_execution(steps: int, cap: int = 16) -> int:
    """The largest divisor of `steps` up to `cap`: several train steps per tf.function call cut
    Python/dispatch overhead (a large share of a small CNN's step on a busy CPU), and a divisor
    keeps every epoch exactly `steps` batches, so the seeded per-epoch stream stays aligned."""
    return max(d for d in range(1, min(cap, steps) + 1) if steps % d == 0)


def _compile(model, arch: str, *, steps_per_call: int) -> None:
    import keras

    spec = get_architecture(arch)
    if spec.weight_decay:
        opt = keras.optimizers.AdamW(
            learning_rate=spec.learning_rate, weight_decay=spec.weight_decay
        )
    else:
        opt = keras.optimizers.Adam(learning_rate=spec.learning_rate)
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_call,
    )


class _Trainer:
    """One run from data to run directory; a class only to share the run's state across steps."""

    def __init__(
        self,
        config: _Config,
        splits: Splits,
        out_dir: Path,
        epochs: int,
        state: dict | None,
        strategy: str,
        progress: bool,
        augment: Augment | None,
        callbacks: list,
        *,
        chief: bool = True,
    ) -> None:
        self.config = config
        self.splits = splits
        self.out = out_dir
        self.ckpt = out_dir / CHECKPOINT_DIR
        self.epochs = epochs
        self.state = state or {
            "config": config.__dict__,
            "fingerprint": splits.fingerprint,
            "epochs_done": 0,
            "best_epoch": -1,
            "best_val_accuracy": -1.0,
            "best_val_loss": float("inf"),
            "stopped_early": False,
            "history": [],
            "train_seconds": 0.0,
        }
        self.state["epochs"] = epochs  # what a later --resume without --epochs continues to
        self.strategy_name = strategy
        self.single = strategy == "default"
        self.progress = progress
        self.augment = augment
        self.extra_callbacks = callbacks
        self.created_out = not out_dir.exists()
        self.chief = chief

    def run(self) -> Run:
        import keras

        keras.utils.set_random_seed(self.config.seed)
        out = self.out
        if not self.chief:
            # The other workers save every epoch as the chief does (saving reads variables that
            # may need every worker), into a folder of their own that goes when they finish.
            self.out = Path(tempfile.mkdtemp(prefix="edgecnn-worker-"))
            self.ckpt = self.out / CHECKPOINT_DIR
        try:
            model = self._trained_model()
            return self._finish(model) if self.chief else self._worker_result(out)
        finally:
            if not self.chief:
                shutil.rmtree(self.out, ignore_errors=True)

    def _trained_model(self):
        """The model after the run's remaining epochs.  Under a distribution strategy, what
        fails is raised as a one-line StrategyError (TensorFlow's own messages may hold whole
        batches of pixels)."""
        try:
            strategy = _make_strategy(self.strategy_name)
            with strategy.scope():
                model = self._model()
            if self.progress and self.chief:  # after every check of the options and weights
                _print_plan(self.splits, self.config, self.epochs, self.out)
            start = self.state["epochs_done"]
            if start < self.epochs and not self.state["stopped_early"]:
                self.ckpt.mkdir(parents=True, exist_ok=True)
                try:
                    self._fit(model, start)
                except TrainingInterrupted:
                    raise
                except KeyboardInterrupt:  # while the datasets or validation views were built
                    raise self._interrupted() from None
                except OSError:  # a full disk: a first epoch that could not be saved goes
                    if self.state["epochs_done"] == 0:
                        self._drop_unsaved()
                    raise
        except InputError:
            raise
        except Exception as e:
            if self.single:
                raise
            raise StrategyError(f"--strategy {self.strategy_name}: {_one_line(e)}") from e
        return model

    def _worker_result(self, out: Path) -> Run:
        """What a worker other than the chief returns: the run's history; the chief writes the
        run directory and its report."""
        s = self.state
        if self.progress:
            print(
                f"epochs {s['epochs_done']}/{self.epochs} done (best epoch {s['best_epoch']}); "
                "the chief worker writes the run",
                file=sys.stderr,
            )
        metrics = {
            "best_epoch": s["best_epoch"],
            "epochs_run": s["epochs_done"],
            "stopped_early": s["stopped_early"],
            "train_seconds": round(s["train_seconds"], 2),
            "strategy": self.strategy_name,
        }
        contract = self._contract()
        return Run(out, out / "model.keras", contract, metrics, tuple(s["history"]), chief=False)

    def _model(self):
        import keras

        c = self.config
        if self.state["epochs_done"] > 0:
            from edgecnn import _train_graph  # noqa: F401  (registers its layers for loading)

            return keras.models.load_model(self.ckpt / "last.keras")
        model = build_model(
            c.arch,
            len(self.splits.classes),
            c.img_size,
            weights=c.weights,
            precision=c.precision,
            any_size=c.fit_size != c.img_size,  # trains at fit_size, validates at img_size
            training_graph=True,  # same weights, less CPU; _finish saves the standard build
        )
        if c.whiten_stem and not set_whitened_stem(model, self.splits.train.pixels, seed=c.seed):
            raise InputError(f"{c.arch}: this stem cannot be whitened; pass --no-whiten-stem")
        steps = steps_per_epoch(len(self.splits.train.targets), c.batch)
        _compile(model, c.arch, steps_per_call=self._steps_per_call(steps))
        return model

    def _fit(self, model, start: int) -> None:
        import keras

        c = self.config
        train = self.splits.train
        val = eval_dataset(self.splits.val.pixels, self.splits.val.targets, batch=c.batch)
        base = get_architecture(c.arch).learning_rate
        # Transfer learning (edgecnn.transfer): a backbone loaded from --weights trains frozen
        # for the first `frozen` epochs, then everything fine-tunes at a lower learning rate.
        frozen = transfer.frozen_epochs(model, self.epochs, weights=c.weights)
        schedule = keras.callbacks.LearningRateScheduler(
            lambda e: lr_at(e, base=base, epochs=self.epochs) * transfer.lr_scale(e, frozen)
        )
        verbose = (1 if sys.stdout.isatty() else 2) if self.progress else 0
        steps = steps_per_epoch(len(train.targets), c.batch)
        # The saved model answers with its two test-time views, so the epoch it keeps is chosen
        # on them too, under every strategy: a copy of the saved model, built here outside any
        # strategy's scope, scores the validation photos on this process alone.
        views = []
        if c.flip_tta:
            classes = len(self.splits.classes)
            views = [_views_validation(c, classes, val, self.splits.val.targets, self.epochs)]
        for first, end, trainable in transfer.phases(start, self.epochs, frozen):
            if self.state["stopped_early"]:
                break
            if transfer.set_backbone_trainable(model, trainable):
                _compile(model, c.arch, steps_per_call=self._steps_per_call(steps))
            ds = train_dataset(
                train.pixels,
                train.targets,
                batch=c.batch,
                seed=c.seed,
                augment=self.augment,
                start_epoch=first,
                class_weights=self.splits.class_weights(),
            )
            try:
                model.fit(
                    ds,
                    steps_per_epoch=steps,
                    epochs=end,
                    initial_epoch=first,
                    validation_data=None if views else val,
                    validation_freq=validated_epochs(self.epochs),
                    callbacks=[*self.extra_callbacks, schedule, *views, _checkpoint_callback(self)],
                    verbose=verbose,
                    shuffle=False,  # the pipeline shuffles, seeded per epoch
                )
            except KeyboardInterrupt:
                raise self._interrupted() from None

    def _steps_per_call(self, steps: int) -> int:
        # Multi-step execution fails inside distributed iterators (Keras 3.15): one step a call.
        return steps_per_execution(steps) if self.single else 1

    def _drop_unsaved(self) -> None:
        """Remove what a run that saved no epoch made: its folder, or its checkpoint folder in
        a folder that was there before."""
        shutil.rmtree(self.out if self.created_out else self.ckpt, ignore_errors=True)

    def _interrupted(self) -> TrainingInterrupted:
        done = self.state["epochs_done"]
        if not self.chief:
            return TrainingInterrupted("interrupted; the chief worker keeps the checkpoint", None)
        if done == 0:
            self._drop_unsaved()
            return TrainingInterrupted(
                "interrupted before the first epoch finished; nothing saved", None
            )
        return TrainingInterrupted(
            f"interrupted; epoch {done}/{self.epochs} is saved in {self.ckpt}. "
            f"Continue with: edgecnn train {self.config.data_dir} --out {self.out} --resume",
            self.out,
        )

    # -- checkpointing, called by _Checkpoint after every epoch --

    def end_epoch(self, model, epoch: int, logs: dict, seconds: float) -> None:
        s = self.state
        row = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", float("nan"))),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": float(logs.get("val_loss", float("nan"))),
            "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
            "learning_rate": float(np.asarray(model.optimizer.learning_rate)),
            "epoch_seconds": round(seconds, 3),
        }
        s["history"].append(row)
        s["train_seconds"] += seconds
        in_window = epoch + 1 >= earliest_stop(self.epochs)
        better = in_window and (
            row["val_accuracy"] > s["best_val_accuracy"]
            or (
                row["val_accuracy"] == s["best_val_accuracy"]
                and row["val_loss"] < s["best_val_loss"]
            )
        )
        if better:
            s["best_epoch"] = epoch + 1
            s["best_val_accuracy"], s["best_val_loss"] = row["val_accuracy"], row["val_loss"]
            _save_weights(model, self.ckpt / "best.weights.h5")
        else:
            # epochs without a gain since the best one, counted from the window's start at most
            armed = epoch + 1 - max(s["best_epoch"], earliest_stop(self.epochs) - 1)
            if armed >= self.config.patience:
                s["stopped_early"] = True
                model.stop_training = True
        _save_model(model, self.ckpt / "last.keras")
        s["epochs_done"] = epoch + 1
        _write_text(self.ckpt / "state.json", json.dumps(s, indent=1))
        _write_history(self.out / "history.csv", s["history"])
        if s["stopped_early"] and self.progress:
            print(
                f"early stop: no val_accuracy gain for {s['epochs_done'] - s['best_epoch']} "
                f"epochs; best epoch {s['best_epoch']}",
                file=sys.stderr,
            )

    def begin_epoch(self, epoch: int) -> None:
        """Before epoch `epoch` (0-based) starts: every ETA_EVERY epochs, the time so far and an
        estimate of the rest; here rather than at the end of the previous epoch, whose line
        Keras prints after every callback's `on_epoch_end`."""
        s = self.state
        if not (self.progress and self.chief) or epoch == 0 or epoch % ETA_EVERY:
            return
        left = time_left(s["history"], self.epochs)
        if left is not None:
            print(
                f"epoch {s['epochs_done']}/{self.epochs}: "
                f"{duration(s['train_seconds'])} so far, about "
                f"{duration(left)} left (less if it stops early)",
                file=sys.stderr,
            )

    # -- final artifacts --

    def _finish(self, model) -> Run:
        c = self.config
        s = self.state
        best = self.ckpt / "best.weights.h5"
        if best.exists():
            _load_best_weights(model, best)
        net, infer = _saved_model(c, len(self.splits.classes))
        net.set_weights(model.get_weights())
        contract = self._contract()
        report = self._report(infer, contract)
        self.out.mkdir(parents=True, exist_ok=True)
        _save_inference_model(infer, self.out / "model.keras", contract)
        _write_text(self.out / LABELS_FILE, "\n".join(contract.labels) + "\n")
        _write_text(self.out / CONTRACT_FILE, contract.to_json() + "\n")
        _write_history(self.out / "history.csv", s["history"])
        _plot_history(
            self.out / "training.png", s["history"], title=f"{c.arch} on {contract.info['data']}"
        )
        _write_text(self.out / "metrics.json", json.dumps(report, indent=2) + "\n")
        from edgecnn.runtime.metrics import confusion_png, interval_text

        confusion_png(
            report["confusion_matrix"],
            contract.labels,
            self.out / "confusion.png",
            title=f"val accuracy {report['val_accuracy']:.3f}",
        )
        shutil.rmtree(self.ckpt, ignore_errors=True)
        if self.progress:
            kept = kept_epoch_text(s["best_epoch"], self.epochs)
            print(
                f"val accuracy {report['val_accuracy']:.4f} ({interval_text(report)}; {kept}); "
                f"run saved in {self.out}",
                file=sys.stderr,
            )
            print(f"most confused: {format_pairs(report['confused_pairs'])}", file=sys.stderr)
        return Run(self.out, self.out / "model.keras", contract, report, tuple(s["history"]))

    def _contract(self) -> Contract:
        import keras
        import tensorflow as tf

        c = self.config
        sp = self.splits
        return sp.contract.with_info(
            arch=c.arch,
            seed=c.seed,
            data=data_name(c.data_dir),
            data_dir=c.data_dir,
            val_dir=c.val_dir,
            val_split=c.val_split,
            data_fingerprint=sp.fingerprint,
            train_count=int(len(sp.train.targets)),
            val_count=int(len(sp.val.targets)),
            epochs=self.state["epochs_done"],
            best_epoch=self.state["best_epoch"],
            batch=c.batch,
            weights=c.weights,
            weights_file=(
                imagenet_file(c.arch, c.img_size).name if c.weights == IMAGENET else None
            ),
            training_precision=c.precision,
            flip_tta=c.flip_tta,
            tta_crop=TTA_CROP if c.flip_tta else None,
            train_size=c.fit_size,
            whiten_stem=c.whiten_stem,
            versions={
                "edgecnn": __version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "python": platform.python_version(),
            },
        )

    def _report(self, model, contract: Contract) -> dict[str, Any]:
        from edgecnn.runtime.confusion import confused_pairs
        from edgecnn.runtime.metrics import classification_report

        sp = self.splits
        probs = model.predict(eval_dataset(sp.val.pixels, sp.val.targets, batch=64), verbose=0)
        report = classification_report(sp.val.targets, np.argmax(probs, axis=1), contract.labels)
        pairs = confused_pairs(report["confusion_matrix"], contract.labels)
        s = self.state
        counts = {
            "train": _counts(sp.train.targets, contract.labels),
            "val": _counts(sp.val.targets, contract.labels),
        }
        return {
            "val_accuracy": report["accuracy"],
            **report,
            "confused_pairs": pairs,
            "best_epoch": s["best_epoch"],
            "epochs_run": s["epochs_done"],
            "stopped_early": s["stopped_early"],
            "train_seconds": round(s["train_seconds"], 2),
            "class_counts": counts,
            "class_weights": sp.class_weights(),
            "strategy": self.strategy_name,
            "skipped": [{"path": str(p), "reason": r} for p, r in sp.skipped],
        }


def _counts(targets: np.ndarray, labels: tuple[str, ...]) -> dict[str, int]:
    return {name: int(n) for name, n in zip(labels, np.bincount(targets, minlength=len(labels)))}


def _saved_model(config: _Config, classes: int):
    """`(net, saved)`: the standard build of the run's net (float32 layers, what `model.keras`
    holds) and the model as saved, `net` inside `with_flip_tta` when the run uses the views;
    setting `net`'s weights sets the saved model's."""
    net = build_model(config.arch, classes, config.img_size)
    return net, (with_flip_tta(net) if config.flip_tta else net)


def _views_validation(config: _Config, classes: int, val, targets: np.ndarray, epochs: int):
    """A Keras callback scoring the model as it is saved (`_Trainer._finish`: standard layers,
    float32, inside `with_flip_tta`) on `val` on the validated epochs, with the training
    model's weights of that epoch: the `val_loss` / `val_accuracy` that Keras' own validation
    would log for the bare training model.

    The copy is built outside any `tf.distribute` scope and predicts on this process alone, so
    the kept epoch is chosen the same way under every strategy, with no distributed predict
    inside a distributed fit; under `multiworker` every worker scores the same weights and logs
    the same figures."""
    import keras

    validated = set(validated_epochs(epochs))
    targets = np.asarray(targets)
    net, saved = _saved_model(config, classes)

    class ViewsValidation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None or epoch + 1 not in validated:
                return
            net.set_weights(self.model.get_weights())
            probs = saved.predict(val, verbose=0)
            picked = np.clip(probs[np.arange(len(targets)), targets], 1e-7, 1.0)
            logs["val_loss"] = float(-np.mean(np.log(picked)))
            logs["val_accuracy"] = float(np.mean(np.argmax(probs, axis=1) == targets))

    return ViewsValidation()


def _checkpoint_callback(trainer: _Trainer):
    """A Keras callback telling `trainer` when an epoch begins and handing it every finished
    one (`end_epoch`); defined lazily so this module imports without Keras."""
    import keras

    class Checkpoint(keras.callbacks.Callback):
        def __init__(self, trainer: _Trainer) -> None:
            super().__init__()
            self.trainer = trainer
            self.t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.trainer.begin_epoch(epoch)
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.trainer.end_epoch(self.model, epoch, logs or {}, time.perf_counter() - self.t0)

    return Checkpoint(trainer)


def _load_best_weights(model, path: Path) -> None:
    """Load the kept epoch's weights.  The file holds that epoch's optimizer state too; when
    the epoch was one of a frozen backbone's (edgecnn.transfer), the optimizer has tracked more
    variables since, and Keras warns that it skips them: only the model's weights matter here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def _save_weights(model, path: Path) -> None:
    tmp = path.with_name(f".tmp.{path.name}")
    _check_room(model, path)
    model.save_weights(tmp)
    os.replace(tmp, path)


def _check_room(model, path: Path) -> None:
    """OSError(ENOSPC) naming `path` unless its disk has room for the weights and optimizer
    state (with a margin) beside the file they replace.  HDF5 cannot close a file it ran out of
    space in: its clean-up at exit then crashes the process (a full SD card on a Pi)."""
    variables = [*model.weights, *getattr(model.optimizer, "variables", ())]
    needed = sum(int(np.prod(v.shape)) * _itemsize(v.dtype) for v in variables)
    needed = needed * 5 // 4 + (1 << 20)  # HDF5's own structures, per variable and per file
    if shutil.disk_usage(path.parent).free < needed:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _itemsize(dtype) -> int:
    try:
        return np.dtype(str(dtype)).itemsize
    except TypeError:  # bfloat16, which numpy does not know
        return 2


def _save_model(model, path: Path) -> None:
    tmp = path.with_name(f".tmp.{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def _save_inference_model(model, path: Path, contract: Contract) -> None:
    """model.keras with the contract and labels added as zip entries (readable without Keras)."""
    tmp = path.with_name(f".tmp.{path.name}")
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as zf:
        zf.writestr(CONTRACT_FILE, contract.to_json() + "\n")
        zf.writestr(LABELS_FILE, "\n".join(contract.labels) + "\n")
    os.replace(tmp, path)


def _write_history(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # an epoch without validation (see VAL_EVERY) leaves its val_* cells empty
        writer.writerow({k: _cell(row.get(k)) for k in HISTORY_FIELDS})
    _write_text(path, buf.getvalue())


def _cell(value):
    return "" if isinstance(value, float) and math.isnan(value) else value


def _plot_history(path: Path, rows: list[dict], *, title: str) -> None:
    """Loss and accuracy curves (matplotlib's Agg canvas directly: no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in rows]
    for i, metric in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(epochs, [r[metric] for r in rows], "o-", label=f"train {metric}")
        val = [(r["epoch"], r[f"val_{metric}"]) for r in rows if not math.isnan(r[f"val_{metric}"])]
        ax.plot([e for e, _ in val], [v for _, v in val], "o-", label=f"val {metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".tmp.{path.name}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
