"""edgecnn.export: turn a trained run into verified files for phones, Raspberry Pis and laptops.

    from edgecnn.export import export
    manifest = export("runs/cats", formats=["tflite-int8", "onnx"])

Each format is its own module (`_tflite`, `_onnx`, `_onnx_int8`); `_metadata` writes labels and
the preprocessing contract into every file, `_verify` runs each file through `edgecnn.runtime`
and compares it with the Keras model, and `_debug` explains an int8 drop layer by layer.
Files are written under a temporary name and only renamed to their final name once verified,
so a failed export never leaves a file that looks good.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.runtime import artifacts as registry
from edgecnn.runtime.dataset import check_seed
from edgecnn.runtime.env import package_versions
from edgecnn.runtime.errors import InputError, VerificationError
from edgecnn.runtime.files import temp_file, write_atomic
from edgecnn.runtime.formatting import file_size

# the formats, their files and their gates: `edgecnn.runtime.artifacts` (the registry)
FORMATS = registry.NAMES
FILENAMES = {f.name: f.file for f in registry.FORMATS}
INT8_IO = registry.INT8_IO
INT8_WEIGHTS = ("auto", "per-channel", "per-tensor")
# `auto` keeps per-tensor weights (smaller) unless they lose more agreement than this
AUTO_MAX_AGREEMENT_LOSS = 0.005
# when no int8 file passes, calibrate again on twice as many images, at most this many times
MAX_CALIBRATION_DOUBLINGS = 2
MANIFEST = registry.MANIFEST
MANIFEST_SCHEMA = "edgecnn-export/1"
# packages whose versions export.json records (the ones installed)
VERSIONS = ("edgecnn", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")

__all__ = ["FILENAMES", "FORMATS", "INT8_IO", "INT8_WEIGHTS", "MANIFEST", "export", "parse_formats"]


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate `formats` (a list or a comma-separated string) against FORMATS, in FORMATS order."""
    if formats is None:
        return FORMATS
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n and n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        what = f"unknown format(s) {', '.join(unknown)}" if unknown else "no format given"
        raise InputError(f"{what}; valid formats: {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in names)


def export(
    run_or_model_path: str | os.PathLike,
    *,
    formats: str | Iterable[str] | None = None,
    calib: str | os.PathLike | None = None,
    check: str | os.PathLike | None = None,
    int8_io: str = "uint8",
    int8_weights: str = "auto",
    calib_count: int = 300,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Export a run (or a `.keras` file) to the chosen formats, verify each, write export.json.

    Args:
        run_or_model_path: a run directory written by `edgecnn train`, or its `model.keras`.
        formats: subset of FORMATS (default: all).
        calib: folder of images (one sub-folder per class) for int8 calibration; default the
            run's training images.
        check: labelled folder every artifact is verified on; default the run's validation set.
        int8_io: dtype of the full-integer TFLite model's input/output tensors.  The default,
            uint8 with scale 1 and zero point 0, is exactly the raw 0..255 pixels (lossless)
            and is what phone task libraries accept (MediaPipe Tasks refuses int8 inputs);
            the ops inside are int8 whichever is chosen.
        int8_weights: weight scales of tflite-int8 and onnx-int8: one per tensor (smaller:
            saves a 4-byte scale and an 8-byte zero point per channel, which matters for small
            models), one per output channel (robust), or `auto` (the default): both are built and
            verified, and per-tensor is kept unless it loses more than 0.5 points of top-1
            agreement with the Keras model against per-channel.
        calib_count: size of the seeded, class-stratified calibration sample.  When no int8
            file passes verification, both are built again on twice and then four times as
            many images (as far as the calibration folder holds them) before the format is
            refused; export.json records every file tried and which one was kept.
        seed: seed of that sample.
        progress: report each step on stderr.

    Returns:
        The manifest written to `RUN/export/export.json`.

    Raises:
        InputError: bad path, corrupt model, unusable image folder, unknown format (exit 2).
        VerificationError: an artifact fails its gate (`_verify`: float files must match
            Keras, quantized ones keep its accuracy, its confident answers, its probabilities
            and its classes) after every remedy (exit 1); that artifact is not kept under its
            final name, and the message has one line per refused file.

    Example:
        >>> manifest = export("runs/cats", formats="tflite-int8,onnx", int8_io="int8")
        >>> manifest["artifacts"]["tflite-int8"]["parity"]["agreement"]
        0.996
    """
    from ._data import calibration_set, check_set
    from ._source import load_keras, resolve

    fmts = parse_formats(formats)
    if int8_io not in INT8_IO:
        raise InputError(f"--int8-io must be one of {', '.join(INT8_IO)}, got {int8_io!r}")
    if int8_weights not in INT8_WEIGHTS:
        raise InputError(
            f"--int8-weights must be one of {', '.join(INT8_WEIGHTS)}, got {int8_weights!r}"
        )
    check_seed(seed)
    say = _reporter(progress)
    bars = None if progress else False  # progress bars only on a terminal
    # Every input is validated before anything is printed or written, so bad input ends in
    # exactly one line (InputError) and no files.
    source = resolve(run_or_model_path)
    contract = source.contract
    model = load_keras(source)
    checks = check_set(contract, check=check, run_dir=source.run_dir, progress=bars)
    calibration = load_calibration = None
    if any(registry.by_name(f).int8 for f in fmts):
        load_calibration = functools.partial(
            calibration_set, contract, calib=calib, run_dir=source.run_dir, seed=seed, progress=bars
        )
        calibration = load_calibration(count=calib_count)
    say(
        f"model: {source.model_path} ({contract.num_classes} classes, "
        f"{contract.width}x{contract.height})"
    )
    say(f"check set: {len(checks)} images from {checks.source['dir']}{_skipped(checks)}")
    if calibration is not None:
        say(
            f"calibration: {len(calibration)} images from {calibration.source['dir']} "
            f"(seed {seed}, fingerprint {calibration.source['pixels_sha256']})"
            f"{_skipped(calibration)}"
        )
    int8 = _Int8(int8_io, int8_weights)
    job = _Job(source, model, checks, calibration, int8, say, load_calibration=load_calibration)
    return job.run(fmts)


@dataclass(frozen=True)
class _Int8:
    """How the full-integer formats are built."""

    io: str = "uint8"
    weights: str = "auto"

    @property
    def schemes(self) -> tuple[str, ...]:
        """The weight schemes to build, the preferred one (the smaller file) last."""
        return ("per-channel", "per-tensor") if self.weights == "auto" else (self.weights,)


@dataclass(eq=False)  # compared by identity: which of the files tried was kept
class _Built:
    """One converted and verified file, not yet placed under its final name."""

    data: bytes
    entry: dict[str, Any]
    parity: Any  # _verify.Parity
    weights: str | None = None  # int8 formats: the weight scheme
    calibration: Any = None  # int8 formats: the ImageSet it was calibrated on

    @property
    def label(self) -> str:
        """What was tried, e.g. "per-tensor weights, 300 calibration images"."""
        return f"{self.weights} weights, {len(self.calibration)} calibration images"


class _Job:
    """One export: converts, stamps, verifies and places each format, then the manifest."""

    def __init__(
        self, source, model, checks, calibration, int8: _Int8, say, *, load_calibration=None
    ) -> None:
        from ._formats import Source
        from ._verify import keras_probs

        self.source = source
        self.contract = source.contract
        self.model = model
        self.checks = checks
        # float inputs for a few images only; the full check set stays uint8 and is converted
        # batch by batch (1000 images at 224x224 would be 600 MB as float32)
        self.check_inputs = checks.inputs(self.contract, limit=64)
        self.calibration = calibration
        self.load_calibration = load_calibration  # count -> a larger sample, for the remedies
        self.int8 = int8
        self.say = say
        self.reference = keras_probs(model, checks.pixels, self.contract)
        self._float_onnx: bytes | None = None
        self.format_source = Source(model, self.contract, self.check_inputs[:2], self._onnx_float)

    def run(self, fmts: tuple[str, ...]) -> dict[str, Any]:
        out_dir = self.source.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        artifacts: dict[str, Any] = {}
        refusals: list[str] = []
        unconvertible: list[str] = []
        try:
            for i, fmt in enumerate(fmts, 1):
                self.say(f"[{i}/{len(fmts)}] {fmt}: converting")
                try:
                    if registry.by_name(fmt).int8:
                        entry = self._export_int8(fmt, out_dir / FILENAMES[fmt])
                    else:
                        entry = self._export_one(fmt, out_dir / FILENAMES[fmt])
                except InputError as e:  # this format cannot hold the model; the others may
                    (out_dir / FILENAMES[fmt]).unlink(missing_ok=True)
                    unconvertible.append(str(e))
                    self.say(f"    FAILED {FILENAMES[fmt]}: {e}")
                    continue
                artifacts[fmt] = entry
                if not entry["passed"]:
                    refusals.append(entry["refused"])
        except BaseException:  # Ctrl-C, a full disk: export.json must not vouch for new files
            self._manifest_so_far(out_dir, artifacts)
            raise
        manifest = self._manifest(artifacts)
        write_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
        self.say(f"wrote {out_dir / MANIFEST}")
        if unconvertible:
            raise InputError("; ".join(unconvertible))
        if refusals:
            raise VerificationError("\n".join(refusals))
        return manifest

    # --- one format ---------------------------------------------------------------------

    def _export_one(self, fmt: str, final: Path) -> dict[str, Any]:
        """A float or drq file: built, verified, kept if it passes."""
        from . import _refusal

        built = self._build(fmt, final)
        self._report(built, final.name)
        entry = self._place(built, final)
        if not built.parity.passed:
            entry["refused"] = _refusal.message(final.name, built.parity, fmt=fmt)
        return entry

    def _export_int8(self, fmt: str, final: Path) -> dict[str, Any]:
        """Each weight scheme asked for on the calibration sample; while none passes, the same
        again on a larger sample (the remedies); the best passing file is kept."""
        from . import _refusal
        from ._verify import DEBUG_BELOW

        tried: list[_Built] = []
        kept = None
        for calibration in self._calibration_rounds():
            built = [
                self._build(fmt, final, weights=w, calibration=calibration)
                for w in self.int8.schemes
            ]
            for b in built:
                self._report(b, f"{final.name} ({b.label})")
            tried += built
            kept = self._pick(built)
            if kept is not None:
                break
        shown = kept or _refusal.closest(tried)
        if shown.parity.agreement < DEBUG_BELOW:
            self._attach_layer_report(fmt, shown)
        entry = self._place(shown, final)
        entry["candidates"] = [_candidate(b) for b in tried]
        entry["kept"] = None if kept is None else tried.index(kept)
        entry["remedy"] = None if kept is None else self._remedy(kept, tried)
        if kept is None:
            entry["refused"] = _refusal.message(
                final.name,
                shown.parity,
                fmt=fmt,
                tried=[(b.weights, len(b.calibration)) for b in tried],
                calibration_left=self._calibration_left(tried[-1].calibration),
            )
        return entry

    def _calibration_rounds(self):
        """The calibration sample, then samples of twice the size (at most
        MAX_CALIBRATION_DOUBLINGS times) as far as the calibration folder holds images."""
        sample = self.calibration
        yield sample
        for _ in range(MAX_CALIBRATION_DOUBLINGS):
            count = min(2 * len(sample), sample.source.get("available", len(sample)))
            if self.load_calibration is None or count <= len(sample):
                return
            self.say(f"    none passed: calibrating again on {count} images")
            sample = self.load_calibration(count=count)
            yield sample

    @staticmethod
    def _calibration_left(sample) -> bool:
        return len(sample) < sample.source.get("available", len(sample))

    def _pick(self, built: list[_Built]) -> _Built | None:
        """Per-tensor (the smaller file) if it passes and agrees with Keras within
        AUTO_MAX_AGREEMENT_LOSS of per-channel, else per-channel if it passes."""
        passed = {b.weights: b for b in built if b.parity.passed}
        tensor, channel = passed.get("per-tensor"), passed.get("per-channel")
        choice = len(built) > 1
        if tensor is not None and (
            channel is None
            or tensor.parity.agreement >= channel.parity.agreement - AUTO_MAX_AGREEMENT_LOSS
        ):
            if choice:
                self.say(f"    auto: per-tensor weights kept ({file_size(len(tensor.data))})")
            return tensor
        if channel is not None and choice:
            why = "loses agreement" if tensor is not None else "refused"
            self.say(f"    auto: per-channel weights kept (per-tensor {why})")
        return channel

    def _remedy(self, kept: _Built, tried: list[_Built]) -> str | None:
        """What the kept file needed that the first choice (the preferred weight scheme on the
        requested sample) did not have; None when the first choice passed."""
        first = next(b for b in tried if b.weights == self.int8.schemes[-1])
        if first.parity.passed:
            return None
        changes = []
        if kept.weights != first.weights:
            changes.append(f"{kept.weights} weights")
        if kept.calibration is not first.calibration:
            changes.append(f"{len(kept.calibration)} calibration images")
        return " and ".join(changes)

    def _build(self, fmt: str, final: Path, *, weights=None, calibration=None) -> _Built:
        """Convert, stamp and verify one file (under a temporary name, removed again)."""
        from ._verify import artifact_probs, compare

        data, info = self._convert(fmt, weights=weights, calibration=calibration)
        fd, tmp = temp_file(final, suffix=f".partial{final.suffix}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            probs, backend = artifact_probs(tmp, self.checks.pixels)
        finally:
            tmp.unlink(missing_ok=True)
        parity = compare(
            fmt,
            probs,
            self.reference,
            self.checks.targets,
            backend=backend,
            labels=self.contract.labels,
        )
        entry = {
            "file": final.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            **info,
            "parity": parity.to_dict(),
            "passed": parity.passed,
            "summary": parity.summary(),
        }
        return _Built(data, entry, parity, weights, calibration)

    def _report(self, built: _Built, name: str) -> None:
        verdict = "ok " if built.parity.passed else "FAILED"
        self.say(f"    {verdict} {name} {file_size(len(built.data))}: {built.parity.summary()}")

    def _place(self, built: _Built, final: Path) -> dict[str, Any]:
        """Write a passing file under its final name (atomically); remove a stale one else."""
        entry = dict(built.entry)
        if built.parity.passed:
            write_atomic(final, built.data)
        else:
            final.unlink(missing_ok=True)  # a stale file must not pass for this export
            entry["file"] = None
        return entry

    def _attach_layer_report(self, fmt: str, built: _Built) -> None:
        """Per-layer quantisation error, for a file whose agreement dropped."""
        try:
            built.entry["largest_quantization_error"] = self._explain(fmt, built)
        except Exception as e:  # a diagnosis that fails must not sink the export
            built.entry["largest_quantization_error"] = f"not available: {type(e).__name__}: {e}"
            self.say(f"    per-layer report not available ({type(e).__name__}: {e})")

    def _convert(self, fmt: str, *, weights=None, calibration=None) -> tuple[bytes, dict]:
        """Serialized artifact with metadata, plus what the manifest says about it."""
        from ._formats import Options, convert

        options = Options(
            calib_inputs=calibration.inputs(self.contract) if calibration is not None else None,
            int8_io=self.int8.io,
            per_channel=weights != "per-tensor",
        )
        converted = convert(fmt, self.format_source, options)
        info = dict(converted.info)
        if calibration is not None:
            info["weights"] = weights
            info["calibration_images"] = len(calibration)
            info["calibration_pixels_sha256"] = calibration.source.get("pixels_sha256")
        return converted.data, info

    def _onnx_float(self) -> bytes:
        """The float ONNX model (with metadata), converted once and checked in ONNX Runtime."""
        from . import _onnx

        if self._float_onnx is None:
            data, notes = _onnx.float_model(self.model, self.contract, self.check_inputs[:2])
            for note in notes:
                self.say(f"    note: {note}; the file is verified below")
            self._float_onnx = data
        return self._float_onnx

    def _explain(self, fmt: str, built: _Built) -> list[dict[str, Any]]:
        """Per-layer quantisation error of an int8 artifact whose agreement dropped."""
        from . import _debug

        self.say("    int8 agreement below 99.5%: measuring per-layer quantisation error")
        if registry.by_name(fmt).kind == "tflite":
            layers = _debug.int8_layer_errors(
                self.model,
                self.contract,
                calib_inputs=built.calibration.inputs(self.contract),
                debug_inputs=self.check_inputs,
                per_channel=built.weights != "per-tensor",
            )
            self.say(_debug.format_layers(layers))
        else:
            layers = _debug.onnx_int8_layer_errors(
                self._onnx_float(), built.data, debug_inputs=self.check_inputs
            )
            self.say(_debug.format_onnx_layers(layers))
        return layers

    # --- manifest ------------------------------------------------------------------------

    def _manifest_so_far(self, out_dir: Path, artifacts: dict[str, Any]) -> None:
        """After an export stopped part-way: export.json lists the files verified so far and
        the earlier ones still unchanged (`_merge_previous` drops any this export rewrote), or
        goes if it cannot be written."""
        try:
            manifest = json.dumps(self._manifest(artifacts), indent=2).encode("utf-8")
            write_atomic(out_dir / MANIFEST, manifest)
        except Exception:  # noqa: BLE001 - the error in flight is the one to report
            (out_dir / MANIFEST).unlink(missing_ok=True)

    def _manifest(self, artifacts: dict[str, Any]) -> dict[str, Any]:
        model_bytes = self.source.model_path.read_bytes()
        return {
            "schema": MANIFEST_SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": {
                "model": str(self.source.model_path),
                "sha256": hashlib.sha256(model_bytes).hexdigest(),
            },
            "labels": list(self.contract.labels),
            "input": {
                "height": self.contract.height,
                "width": self.contract.width,
                "color": self.contract.color,
                "mean": list(self.contract.mean),
                "std": list(self.contract.std),
            },
            "int8_io": self.int8.io,
            "int8_weights": self.int8.weights,
            "calibration": self.calibration.source if self.calibration else None,
            "check": self.checks.source,
            "artifacts": _merge_previous(self.source.out_dir, artifacts, model_bytes),
            "versions": package_versions(VERSIONS),
        }


def _candidate(built: _Built) -> dict[str, Any]:
    """What export.json records of every int8 file tried."""
    keys = ("weights", "calibration_images", "calibration_pixels_sha256", "bytes", "sha256")
    return {
        **{k: built.entry.get(k) for k in keys},
        "passed": built.parity.passed,
        "summary": built.parity.summary(),
        "parity": built.parity.to_dict(),
    }


def _merge_previous(out_dir: Path, artifacts: dict[str, Any], model_bytes: bytes) -> dict:
    """Keep entries of formats not exported this time if their files are unchanged and came
    from the same model, so export.json always describes every verified file in the folder."""
    try:
        previous = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return artifacts
    if previous.get("source", {}).get("sha256") != hashlib.sha256(model_bytes).hexdigest():
        return artifacts
    merged = {}
    for fmt in FORMATS:
        if fmt in artifacts:
            merged[fmt] = artifacts[fmt]
            continue
        old = previous.get("artifacts", {}).get(fmt)
        path = out_dir / FILENAMES[fmt]
        if (
            old
            and old.get("passed")
            and path.is_file()
            and hashlib.sha256(path.read_bytes()).hexdigest() == old.get("sha256")
        ):
            merged[fmt] = old
    return merged


def _skipped(images) -> str:
    n = len(images.source["skipped"])
    return f"; {n} undecodable file(s) skipped, listed in {MANIFEST}" if n else ""


def _reporter(enabled: bool):
    def say(message: str) -> None:
        if enabled:
            print(f"export: {message}", file=sys.stderr, flush=True)

    return say
