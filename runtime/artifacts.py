"""The artifact registry: every export format, its file, its kind and how it is judged.

One table for export (what to build and how to verify it), for the runtime (which file a run
directory stands for) and for bench, profile, report and demo (what the files are called).
No TensorFlow here: the runtime resolves run directories on a device with this table.

    from edgecnn.runtime.artifacts import FORMATS, by_name, RUN_ORDER
    by_name("tflite-int8").file      # 'model_int8.tflite'
    RUN_ORDER[0]                     # 'export/model_int8.tflite': what `edgecnn run RUN` runs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

EXPORT_DIR = "export"  # a run directory's folder of exported files
MANIFEST = "export.json"  # export's record of every file in EXPORT_DIR
KERAS_FILE = "model.keras"  # the trained model, at the top of a run directory


@dataclass(frozen=True)
class Format:
    """One export format.

    `gate` is how `edgecnn export` verifies the file against the Keras model: "float" files
    must give the same answers (`min_agreement`, and `max_abs_diff` on every probability
    when set); "quantized" ones are judged by export's quantized gate (accuracy within its
    noise, confident answers kept, probabilities and classes), see `export/_verify.py`.
    `int8` marks the calibrated full-integer formats (weight schemes, calibration remedies).
    """

    name: str
    file: str
    scheme: str  # what export.json and the TFLite metadata say the file is
    gate: str  # "float" or "quantized"
    int8: bool = False
    min_agreement: float | None = None
    max_abs_diff: float | None = None

    @property
    def kind(self) -> str:
        """'tflite' or 'onnx': the file kind that picks a runtime backend."""
        return PurePosixPath(self.file).suffix[1:]

    @property
    def path(self) -> str:
        """The file's path relative to a run directory."""
        return f"{EXPORT_DIR}/{self.file}"


# In export order (also export.json's).
FORMATS: tuple[Format, ...] = (
    Format(
        "tflite-fp32",
        "model_fp32.tflite",
        scheme="float32",
        gate="float",
        min_agreement=0.999,
        max_abs_diff=1e-4,
    ),
    Format(
        "tflite-fp16",
        "model_fp16.tflite",
        scheme="float16 weights, float32 compute",
        gate="float",
        min_agreement=0.995,
    ),
    Format(
        "tflite-drq",
        "model_drq.tflite",
        scheme="dynamic range: int8 weights, float32 activations",
        gate="quantized",
    ),
    Format(
        "tflite-int8",
        "model_int8.tflite",
        scheme="full integer: int8 weights and activations (TFLITE_BUILTINS_INT8 only)",
        gate="quantized",
        int8=True,
    ),
    Format(
        "onnx",
        "model.onnx",
        scheme="float32 (tf2onnx, opset 17)",
        gate="float",
        min_agreement=0.999,
        max_abs_diff=1e-4,
    ),
    Format(
        "onnx-int8",
        "model_int8.onnx",
        scheme="static QDQ: uint8 activations, int8 weights in 7 bits (ONNX Runtime, MinMax)",
        gate="quantized",
        int8=True,
    ),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)
INT8_IO = ("int8", "uint8", "float")  # the full-integer TFLite file's input/output dtypes

# Best first: what a run directory stands for (`edgecnn run RUN`, eval, predict, profile,
# the demo's live step).  What goes onto a device first; the rest only when a partial export
# (--formats) left none of the first three.
PREFERENCE: tuple[str, ...] = (
    "tflite-int8",
    "tflite-fp32",
    "onnx",
    "tflite-fp16",
    "tflite-drq",
    "onnx-int8",
)


def by_name(name: str) -> Format:
    """The format called `name`; KeyError for an unknown one."""
    for f in FORMATS:
        if f.name == name:
            return f
    raise KeyError(name)


def file_name(name: str) -> str:
    """The file name of format `name`, e.g. 'model_int8.tflite'."""
    return by_name(name).file


# Paths relative to a run directory, best first, the Keras model last.
RUN_ORDER: tuple[str, ...] = (*(by_name(n).path for n in PREFERENCE), KERAS_FILE)


def rank(file: str) -> int:
    """Position of a model file name in RUN_ORDER (unknown names after all known ones)."""
    names = [PurePosixPath(p).name for p in RUN_ORDER]
    return names.index(file) if file in names else len(names)
