"""The preprocessing contract: what a model expects as input, written into every artifact.

The same JSON document (`edgecnn.json`) sits in the run directory, inside every `.tflite`
(as an associated file in the appended zip) and every `.onnx` (as `metadata_props["edgecnn"]`),
so any exported file can be run with no sidecar files and no TensorFlow.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InputError
from .formatting import unprintable

SCHEMA = "edgecnn/1"
RESIZE_MODES = ("stretch", "crop")
# Bounds on what a model file may claim, so a hostile file cannot make every screen, log line
# and buffer that shows or sizes its labels and input absurdly large.
MAX_CLASSES = 1000  # ImageNet-1k; eval keeps a classes x classes confusion matrix
MAX_LABEL_CHARS = 200
MAX_INPUT_SIDE = 4096


@dataclass(frozen=True)
class Contract:
    """How to turn an image into the model's input, and what its outputs mean.

    The model takes float32 NHWC RGB pixels; `model_input = (pixel - mean) / std` with pixel in
    0..255.  edgecnn's own models keep their scaling inside the graph, so mean is 0 and std 1
    and the model sees raw 0..255 values (which is also what int8 calibration must be fed).
    """

    labels: tuple[str, ...]
    height: int
    width: int
    channels: int = 3
    color: str = "RGB"
    resize: str = "stretch"
    interpolation: str = "area"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_labels(self.labels)
        if self.height < 8 or self.width < 8:
            raise InputError(f"input size {self.height}x{self.width} is too small (min 8x8)")
        if self.height > MAX_INPUT_SIDE or self.width > MAX_INPUT_SIDE:
            raise InputError(
                f"input size {self.height}x{self.width} is too large "
                f"(at most {MAX_INPUT_SIDE} pixels a side)"
            )
        if self.color not in ("RGB", "BGR"):
            raise InputError(f"colour order must be RGB or BGR, got {self.color!r}")
        if self.resize not in RESIZE_MODES:
            raise InputError(f"resize mode must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.channels != 3:
            raise InputError(f"only 3-channel models are supported, got {self.channels}")
        _check_scaling(self.mean, self.std)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def is_identity_scaling(self) -> bool:
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return {"schema": SCHEMA, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def with_info(self, **info: Any) -> Contract:
        merged = {**self.info, **info}
        return Contract(**{**self._fields(), "info": merged})

    def _fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "contract") -> Contract:
        try:
            if not isinstance(d["labels"], list):
                raise TypeError(f"labels must be a list, got {type(d['labels']).__name__}")
            return cls(
                labels=tuple(str(x) for x in d["labels"]),
                height=int(d["height"]),
                width=int(d["width"]),
                channels=int(d.get("channels", 3)),
                color=str(d.get("color", "RGB")),
                resize=str(d.get("resize", "stretch")),
                interpolation=str(d.get("interpolation", "area")),
                mean=tuple(float(x) for x in d.get("mean", (0.0, 0.0, 0.0))),
                std=tuple(float(x) for x in d.get("std", (1.0, 1.0, 1.0))),
                info=dict(d.get("info", {})),
            )
        except InputError as e:
            raise InputError(f"{source}: {e}") from None
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise InputError(f"{source}: not a valid edgecnn contract ({e!r})") from None

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "contract") -> Contract:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{source}: contract is not valid JSON ({e})") from None
        except RecursionError:
            raise InputError(f"{source}: contract JSON is nested too deeply") from None
        if not isinstance(d, dict):
            raise InputError(f"{source}: contract must be a JSON object")
        return cls.from_dict(d, source=source)

    @classmethod
    def default(cls, num_classes: int, height: int, width: int) -> Contract:
        """The contract assumed for a model file that carries none: class_0..N-1, 0..255 RGB."""
        return cls(
            labels=tuple(f"class_{i}" for i in range(num_classes)),
            height=height,
            width=width,
            info={"assumed": True},
        )


def check_labels(labels: tuple[str, ...]) -> None:
    """Refuse label lists no classifier has: fewer than 2 or more than MAX_CLASSES names, a name
    longer than MAX_LABEL_CHARS, or one with characters that would rewrite a terminal or break
    labels.txt.  Every label shown anywhere comes through here (training's folder names and
    every model file's metadata), so what is displayed later is plain, printable text; HTML
    special characters are legal in a name and are escaped where a page shows it."""
    if len(labels) < 2:
        shown = [label[:60] for label in labels]
        raise InputError(f"a classifier needs at least 2 labels, got {shown}")
    if len(labels) > MAX_CLASSES:
        raise InputError(f"{len(labels)} labels is more than the {MAX_CLASSES} supported")
    for index, label in enumerate(labels):
        if len(label) > MAX_LABEL_CHARS:
            raise InputError(
                f"label {index} is {len(label)} characters long "
                f"(at most {MAX_LABEL_CHARS}): {label[:40]!r}..."
            )
        bad = next((c for c in label if unprintable(c)), None)  # also breaks labels.txt
        if bad is not None:
            raise InputError(
                f"label {index} {label[:60]!r} contains U+{ord(bad):04X}; labels must be "
                "printable text (no control characters, line separators or direction overrides)"
            )


def _check_scaling(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Three finite means and three finite, non-zero standard deviations: one per channel."""
    if len(mean) != 3 or len(std) != 3:
        raise InputError(f"mean and std need 3 values each, got {len(mean)} and {len(std)}")
    values = (*mean, *std)
    if not all(math.isfinite(v) for v in values) or 0.0 in std:
        raise InputError(f"mean {list(mean)} / std {list(std)} must be finite, std non-zero")
