"""The x86 side of the aarch64 check: data, a freshly trained and exported model, a clip, and the
input tensors both sides are fed.

The model is trained with the repository's own `edgecnn train` / `edgecnn export`, on real
photos when the cats-vs-dogs folder is there (a fixed subset, linked, not copied), else on the
built-in generated shapes.  It is the default `edge` net (its two test-time views included) at a
small input size: float inference under emulation costs ~10x int8, and the check runs every file
over a hundred photos on each userland.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = "tflite-int8,tflite-fp32,onnx"
FILES = ("model_int8.tflite", "model_fp32.tflite", "model.onnx")
# backends the same-pixels comparison runs each file on; `edgecnn predict/eval/run` use auto
RAW_BACKENDS = {
    "model_int8.tflite": ("tflite",),
    "model_fp32.tflite": ("tflite",),
    "model.onnx": ("onnx", "opencv"),
}
EXACT_FILES = ("model_int8.tflite",)  # integer graphs: outputs must be bit-identical


@dataclass(frozen=True)
class Recipe:
    """How the check's model is trained: a minute or two on two cores, confident answers."""

    img_size: int
    epochs: int
    batch: int
    longer_epochs: int  # a second try when the int8 file fails export's verification


PHOTOS = Recipe(img_size=40, epochs=10, batch=32, longer_epochs=20)
SHAPES = Recipe(img_size=40, epochs=20, batch=16, longer_epochs=40)
SHAPE_CLASSES = ("circle", "triangle", "cross", "stripes")


@dataclass(frozen=True)
class Data:
    """Folder-per-class image sets: `train` (and `val`, else a split of train) for the model,
    `check` for the comparisons."""

    description: str
    train: Path
    val: Path | None
    check: Path
    recipe: Recipe


def photos(dataset: Path, work: Path, *, train_per_class: int, check_per_class: int) -> Data:
    """Symbolic links to the first photos of every class: training ones from `dataset/train`,
    check ones from `dataset/test` (or the next photos of train when there is no test)."""
    train_root = dataset / "train"
    test_root = dataset / "test"
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    for name in classes:
        files = _images(train_root / name)
        _link(files[:train_per_class], work / "train" / name)
        rest = _images(test_root / name) if (test_root / name).is_dir() else files[train_per_class:]
        _link(rest[:check_per_class], work / "check" / name)
    n = len(classes)
    return Data(
        f"{train_per_class * n} {dataset.name} photos, {check_per_class * n} more to check on",
        work / "train",
        None,
        work / "check",
        PHOTOS,
    )


def _images(folder: Path) -> list[Path]:
    from edgecnn.runtime.preprocess import is_image_file

    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _link(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f.resolve())


def subset(folder: Path, dest: Path, *, per_class: int) -> Path:
    """Links to the first `per_class` images of every class folder of `folder`, in `dest`."""
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        _link(_images(cls)[:per_class], dest / cls.name)
    return dest


def shapes(work: Path, *, check_per_class: int) -> Data:
    """The demo's generated shapes: train/val at model size, check images larger, like photos."""
    from edgecnn.synthetic import generate, generate_split

    train, val = generate_split(
        work / "shapes", classes=SHAPE_CLASSES, train_per_class=150, val_per_class=60,
        size=SHAPES.img_size, seed=0,
    )  # fmt: skip
    check = generate(
        work / "shapes" / "check", classes=SHAPE_CLASSES, per_class=check_per_class, size=128,
        seed=2, formats=("png", "jpg"),
    )  # fmt: skip
    return Data(
        f"{150 * len(SHAPE_CLASSES)} generated shape images, "
        f"{check_per_class * len(SHAPE_CLASSES)} more to check on",
        train,
        val,
        check,
        SHAPES,
    )


# --- train and export with the repository's CLI ------------------------------------------------


def edgecnn_command() -> list[str]:
    """The repository's `edgecnn` (beside this interpreter), or the module when not installed."""
    script = Path(sys.executable).with_name("edgecnn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgecnn.cli"]


def train_and_export(data: Data, run: Path, *, log: Path) -> tuple[dict[str, Path], int]:
    """Train the check's model into `run` and export the three files; when export refuses the
    int8 file (the model too unsure for int8 to agree), train longer once.  Returns the files
    and the epochs trained."""
    epochs = data.recipe.epochs
    for attempt in (1, 2):
        _train(data, run, epochs=epochs, log=log)
        if _run_logged([*edgecnn_command(), "export", str(run), "--formats", FORMATS], log) == 0:
            return {name: run / "export" / name for name in FILES}, epochs
        if attempt == 1:
            epochs = data.recipe.longer_epochs
    raise RuntimeError(f"edgecnn export refused the model twice (see {log})")


def _train(data: Data, run: Path, *, epochs: int, log: Path) -> None:
    r = data.recipe
    cmd = [
        *edgecnn_command(), "train", str(data.train), "--img-size", str(r.img_size),
        "--epochs", str(epochs), "--batch", str(r.batch), "--seed", "0", "--out", str(run),
        "--force", "--quiet",
    ]  # fmt: skip
    if data.val is not None:
        cmd += ["--val-dir", str(data.val)]
    if _run_logged(cmd, log) != 0:
        raise RuntimeError(f"edgecnn train failed (see {log})")


def _run_logged(cmd: list[str], log: Path) -> int:
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


# --- what both sides are fed --------------------------------------------------------------------


def clip(check: Path, work: Path, *, images: int, frames_per_image: int) -> Path:
    """A short video of check photos: the demo's clip (a slow zoom on each, classes taking
    turns), which `edgecnn run` plays on each side."""
    from edgecnn.demo import render_clip

    path = work / "clip.mp4"
    render_clip(check, path, images=images, frames_per_image=frames_per_image, size=160)
    return path


def save_inputs(model: Path, check: Path, out: Path, *, count: int) -> int:
    """The model input tensors of `count` check photos spread over the classes, made here with
    the shared preprocessing, saved as .npy for both sides; returns how many."""
    from edgecnn.runtime import to_input, to_pixels
    from edgecnn.runtime.dataset import list_dataset
    from edgecnn.runtime.metadata import read_contract

    contract = read_contract(model)
    if contract is None:
        raise RuntimeError(f"{model}: no edgecnn contract in the file")
    paths = list_dataset(check, classes=contract.labels).paths
    picked = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))
    x = np.stack([to_input(to_pixels(paths[i], contract), contract) for i in picked])
    np.save(out, x)
    return len(x)
