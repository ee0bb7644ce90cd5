"""What a model costs, layer by layer: parameters, MACs, weight bytes, activation memory.

    from edgecnn.profile import profile
    report = profile("runs/cvd-edge/export/model_int8.tflite")
    report["total"]["macs"], report["float_ops"], report["quant_error"]

`.tflite` files are read as flatbuffers with the schema LiteRT ships (no TensorFlow); `.onnx`
with a small protobuf reader (`edgecnn._onnx_graph`: no `onnx` package, so a device profiles the
file it runs); `.keras` with Keras.  Peak activation memory is the largest sum of
live intermediate tensors while the operators run in file order (batch 1).  For quantised files
it lists the operators left in float (the rule export checks a full-integer file with,
`edgecnn.runtime.tflite_graph`) and a per-layer quantisation error, one of two quantities:

- `export_quant_error`: what export.json recorded when the file's int8 agreement was low, its
  worst layers in export's measure (`rmse_per_scale`, RMSE in quantisation steps, for TFLite;
  `sqnr_db` for ONNX);
- `quant_error`: measured here (when export recorded nothing, or with --data) by running the
  float and int8 TFLite files side by side on a few images: `relative_rmse`, RMS(int8 - float)
  / RMS(float), of every op output both files share.

`quant_error_source` says where `quant_error` came from or why it is missing.  (Profiles written
before the split carry export's record under `quant_error`; `render` prints either.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgecnn.runtime.artifacts import MANIFEST, file_name
from edgecnn.runtime.errors import InputError, MissingDependencyError
from edgecnn.runtime.formatting import count, size, table
from edgecnn.runtime.metadata import model_kind, read_contract

QUANT_ERROR_IMAGES = 8
_ITEMSIZE = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "INT32": 4,
    "UINT8": 1,
    "INT8": 1,
    "INT64": 8,
    "BOOL": 1,
    "INT16": 2,
    "FLOAT64": 8,
    "UINT32": 4,
    "INT4": 1,
}
# Ops whose int32 constants are biases (parameters); elsewhere int32 constants are shapes/axes.
_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")


def profile(path: str | os.PathLike, *, data: str | os.PathLike | None = None) -> dict:
    """Per-layer and total cost of a model file; see the module docstring for what is in it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    kind = model_kind(path)
    if kind == "tflite":
        report = _profile_tflite(path)
    elif kind == "onnx":
        report = _profile_onnx(path)
    else:
        report = _profile_keras(path)
    report.update(model=str(path), format=kind, file_bytes=path.stat().st_size)
    layers = report["layers"]
    # a weight used by several ops (a net called twice, as in flip TTA) counts once
    unique: dict = {}
    for r in layers:
        unique.update(r.pop("_weights", None) or {(id(r), "row"): r["params"]})
    report["total"] = {
        "params": int(sum(unique.values())),
        "macs": int(sum(r["macs"] for r in layers)),
        "weight_bytes": int(report.pop("weight_bytes")),
        "peak_activation_bytes": int(report.pop("peak_activation_bytes")),
        "layers": len(layers),
    }
    if report.get("quantized"):
        report.update(_quant_error(path, data))
    return report


def resolve_profile_target(path: Path) -> Path:
    """A model file as given; for a run directory its deployment artifact (int8 TFLite first)."""
    from edgecnn.runtime.resolve import resolve_model

    return resolve_model(path)


# --- TFLite ------------------------------------------------------------------------------------


def _prod(shape) -> int:
    return int(np.prod([max(1, int(d)) for d in shape])) if len(shape) else 1


def _tflite_macs(op: str, tensors: list, inputs: list[int], outputs: list[int]) -> int:
    """Multiply-accumulates of one operator at batch 1 (0 for element-wise/other ops)."""
    if not outputs or outputs[0] < 0:
        return 0
    out = list(tensors[outputs[0]].shape)
    out_elems = _prod(out[1:]) if len(out) > 1 else _prod(out)
    w = tensors[inputs[1]].shape if len(inputs) > 1 and inputs[1] >= 0 else None
    if w is None:
        return 0
    if op == "CONV_2D":  # filter [O, KH, KW, I]
        return out_elems * int(w[1]) * int(w[2]) * int(w[3])
    if op == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, O]
        return out_elems * int(w[1]) * int(w[2])
    if op == "FULLY_CONNECTED":  # filter [O, I]
        return out_elems * int(w[-1])
    if op == "BATCH_MATMUL":
        return out_elems * int(tensors[inputs[0]].shape[-1])
    return 0


def _peak_activation(
    n_ops: int, sizes: dict[int, int], produced: dict[int, int], last_use: dict[int, int]
) -> int:
    """Largest total of intermediate tensors alive at once when ops run in order."""
    peak = 0
    for i in range(n_ops):
        live = sum(
            b for t, b in sizes.items() if produced.get(t, -1) <= i <= last_use.get(t, n_ops)
        )
        peak = max(peak, live)
    return peak


def _profile_tflite(path: Path) -> dict:
    from edgecnn.runtime.tflite_graph import Graph

    g = Graph(path.read_bytes(), where=str(path))
    tensors = g.tensors

    def elements(t: int) -> int:
        shape = tensors[t].shape
        return _prod(shape if shape is not None else [])

    def nbytes(t: int) -> int:
        return elements(t) * _ITEMSIZE.get(g.dtype(t), 4)

    const = {i for i in range(len(tensors)) if g.is_constant(i)}
    layers, produced, last_use = [], {}, {}
    quantized = any(
        g.dtype(i) in ("INT8", "UINT8", "INT16") for i in range(len(tensors)) if i not in const
    )
    for idx, name in enumerate(g.op_names):
        ins, outs = g.op_tensors(idx)
        for t in ins:
            if t not in const:
                last_use[t] = idx
        for t in outs:
            produced[t] = idx
        weights = [
            t
            for t in ins
            if t in const and (name in _WEIGHTED_OPS or g.dtype(t) not in ("INT32", "INT64"))
        ]
        # keyed by buffer: a weight shared by several ops (a net called twice) counts once
        sized = [(("t", tensors[t].buffer or t), elements(t)) for t in weights]
        out_t = tensors[outs[0]] if outs else None
        layer = {
            "index": idx,
            "name": g.tensor_name(outs[0]) if outs else "",
            "op": name,
            "output_shape": [int(d) for d in out_t.shape]
            if out_t is not None and out_t.shape is not None
            else [],
            "dtype": g.dtype(outs[0]) if outs else "",
            "params": sum(n for _, n in sized),
            "weight_bytes": sum(nbytes(t) for t in weights),
            "macs": _tflite_macs(name, tensors, ins, outs),
            "_weights": dict(sized),
        }
        layers.append(layer)
    for t in list(g.subgraph.outputs if g.subgraph.outputs is not None else []):
        last_use[int(t)] = len(layers)
    sizes = {i: nbytes(i) for i in range(len(tensors)) if i not in const}
    for t in g.subgraph.inputs if g.subgraph.inputs is not None else []:
        produced[int(t)] = -1
    return {
        "layers": layers,
        "weight_bytes": sum(nbytes(i) for i in const),
        "peak_activation_bytes": _peak_activation(len(layers), sizes, produced, last_use),
        "quantized": quantized,
        # the same rule export applies to a full-integer file (runtime/tflite_graph.py)
        "float_ops": g.float_ops() if quantized else [],
    }


# --- ONNX ----------------------------------------------------------------------------------


def _profile_onnx(path: Path) -> dict:
    from edgecnn._onnx_graph import read_graph

    g = read_graph(path)  # no `onnx` package: a device profiles the file it runs
    inits = g.initializers
    shapes = {name: list(shape) for name, shape in g.shapes.items() if shape is not None}
    producer = {o: n for n in g.nodes for o in n.outputs}
    # In a QDQ file a weight reaches its Conv/Gemm through DequantizeLinear(initializer): treat
    # that DequantizeLinear output as the weight (it is constant, not an activation).
    const_dq = {
        n.outputs[0]: n.inputs[0]
        for n in g.nodes
        if n.op_type == "DequantizeLinear" and n.inputs and n.inputs[0] in inits
    }
    weights_of = {**inits, **{o: inits[i] for o, i in const_dq.items()}}
    quantized = any(
        n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger")
        for n in g.nodes
    )
    qdq_ops = ("QuantizeLinear", "DequantizeLinear")
    layers, float_ops, produced, last_use = [], [], {}, {}
    for idx, node in enumerate(g.nodes):
        is_qdq = node.op_type in qdq_ops
        weights = (
            []
            if is_qdq
            else [i for i in node.inputs if i in weights_of and weights_of[i].dtype != np.int64]
        )
        out = node.outputs[0] if node.outputs else ""
        layers.append(
            {
                "index": idx,
                "name": node.name or out,
                "op": node.op_type,
                "output_shape": shapes.get(out, []),
                "dtype": str(g.dtypes.get(out, np.dtype(np.float32))),
                "params": int(sum(weights_of[w].size for w in weights)),
                "weight_bytes": int(sum(weights_of[w].nbytes for w in weights)),
                "macs": 0 if is_qdq else _onnx_macs(node, weights_of, shapes),
                "_weights": {("o", const_dq.get(w, w)): int(weights_of[w].size) for w in weights},
            }
        )
        for i in node.inputs:
            if i and i not in weights_of:
                last_use[i] = idx
        for o in node.outputs:
            produced[o] = idx
        if quantized and not is_qdq and node.op_type != "Constant":
            feeds = [producer.get(i) for i in node.inputs if i and i not in weights_of]
            if any(f is None or f.op_type != "DequantizeLinear" for f in feeds):
                float_ops.append(
                    {
                        "index": idx,
                        "op": node.op_type,
                        "name": node.name or out,
                        "why": "input not from DequantizeLinear",
                    }
                )
    for o in g.outputs:
        last_use[o] = len(layers)
    for i in g.inputs:
        produced[i] = -1
    sizes = {
        n: _prod(s) * g.dtypes.get(n, np.dtype(np.float32)).itemsize
        for n, s in shapes.items()
        if n not in weights_of
    }
    return {
        "layers": layers,
        "weight_bytes": int(sum(t.nbytes for t in inits.values())),
        "peak_activation_bytes": _peak_activation(len(layers), sizes, produced, last_use),
        "quantized": quantized,
        "float_ops": float_ops,
        "notes": _onnx_notes(quantized, g.unknown_ops()),
    }


def _onnx_notes(quantized: bool, unknown_ops: list[str]) -> list[str]:
    notes = []
    if quantized:
        notes.append(
            "QDQ graph as written: ONNX Runtime fuses Quantize/Dequantize pairs into int8 "
            "kernels, so real activation memory is lower"
        )
    if unknown_ops:
        notes.append(
            f"output shapes not worked out for {', '.join(unknown_ops)}: their MACs and "
            "activation memory are left out of the totals"
        )
    return notes


def _onnx_macs(node, inits: dict, shapes: dict) -> int:
    out = shapes.get(node.outputs[0], []) if node.outputs else []
    out_elems = _prod(out[1:]) if len(out) > 1 else _prod(out)
    w = inits.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if node.op_type in ("Conv", "QLinearConv", "ConvInteger") and w is not None:  # [O, I/g, KH, KW]
        return out_elems * _prod(w.dims[1:])
    if node.op_type in ("Gemm", "MatMul", "MatMulInteger") and w is not None:  # [K, N]
        transposed = node.op_type == "Gemm" and node.attrs.get("transB", 0)  # [N, K]
        return out_elems * int(w.dims[-1] if transposed else w.dims[0])
    return 0


# --- Keras ---------------------------------------------------------------------------------


def _with_graph(keras, model):
    """A model whose layers have symbolic inputs/outputs.  A Sequential loaded from a .keras file
    was built but never called, so it has none; calling its layers in order on a fresh Input gives
    each exactly one node (the functional graph Keras would have made)."""
    try:
        _ = model.output
        return model
    except AttributeError:
        pass
    x = inp = keras.Input(shape=tuple(model.input_shape[1:]))
    for layer in model.layers:
        x = layer(x)
    return keras.Model(inp, x, name=model.name)


def _profile_keras(path: Path) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
    except ImportError:
        raise MissingDependencyError("keras", "train", "profiling .keras files") from None
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive
        raise InputError(f"{path}: not a loadable Keras model ({type(e).__name__}: {e})") from None
    model = _with_graph(keras, model)
    tensor_bytes, produced, last_use = {}, {}, {}
    flatten = keras.tree.flatten
    for idx, layer in enumerate(model.layers):
        try:
            ins, outs = flatten(layer.input), flatten(layer.output)
        except (AttributeError, ValueError):  # shared layers have no single input/output
            ins, outs = [], []
        for t in ins:
            last_use[id(t)] = idx
            tensor_bytes.setdefault(id(t), _prod(t.shape[1:]) * np.dtype(t.dtype).itemsize)
            produced.setdefault(id(t), -1)
        for t in outs:
            produced[id(t)] = idx
            tensor_bytes[id(t)] = _prod(t.shape[1:]) * np.dtype(t.dtype).itemsize
    n = len(model.layers)
    for t in flatten(model.output):
        last_use[id(t)] = n
    layers = _keras_rows(keras, model)
    for i, row in enumerate(layers):
        row["index"] = i
    return {
        "layers": layers,
        "weight_bytes": int(sum(r["weight_bytes"] for r in layers)),
        "peak_activation_bytes": _peak_activation(n, tensor_bytes, produced, last_use),
        "quantized": False,
        "float_ops": [],
    }


def _keras_rows(keras, model, prefix: str = "", calls: int = 1) -> list[dict]:
    """One row per layer; a nested model (a backbone, or the net inside the flip-TTA wrapper)
    is expanded into its own layers, named `outer/inner`, with MACs counted once per call and
    parameters once."""
    rows = []
    flatten = keras.tree.flatten
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            inner = _with_graph(keras, layer)
            times = calls * max(1, len(getattr(layer, "_inbound_nodes", None) or [1]))
            rows += _keras_rows(keras, inner, f"{prefix}{layer.name}/", times)
            continue
        try:
            ins, outs = flatten(layer.input), flatten(layer.output)
        except (AttributeError, ValueError):  # shared layers have no single input/output
            ins, outs = [], []
        rows.append(
            {
                "name": prefix + layer.name,
                "op": type(layer).__name__,
                "output_shape": [
                    int(d) if d is not None else 1 for d in (outs[0].shape if outs else [])
                ],
                "dtype": str(outs[0].dtype) if outs else "",
                "params": int(layer.count_params()),
                "weight_bytes": int(
                    sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in layer.weights)
                ),
                "macs": _keras_macs(layer, ins, outs) * calls,
            }
        )
    return rows


def _keras_macs(layer, ins: list, outs: list) -> int:
    if not ins or not outs:
        return 0
    kind = type(layer).__name__
    out_elems = _prod(outs[0].shape[1:])
    in_c = int(ins[0].shape[-1] or 1)
    if kind in ("Conv2D", "Conv1D", "Conv3D"):
        return out_elems * _prod(layer.kernel_size) * in_c // max(1, getattr(layer, "groups", 1))
    if kind in ("DepthwiseConv2D", "DepthwiseConv1D"):
        return out_elems * _prod(layer.kernel_size)
    if kind in ("SeparableConv2D", "SeparableConv1D"):
        spatial = _prod(outs[0].shape[1:-1])
        return (
            spatial
            * in_c
            * layer.depth_multiplier
            * (_prod(layer.kernel_size) + int(outs[0].shape[-1]))
        )
    if kind == "Dense":
        return out_elems * in_c
    return 0


# --- quantisation error ----------------------------------------------------------------------


def _quant_error(path: Path, data: str | os.PathLike | None) -> dict:
    """The report's per-layer error fields for an int8 file (module docstring): export.json's
    record if it has one and no --data is given, else measured against the fp32 file."""
    from_export = None if data else _quant_error_from_export(path)
    if from_export is not None:
        recorded = {
            "source": f"{path.parent / MANIFEST} (worst layers)",
            "metric": _metric(from_export[0]),
            "layers": from_export,
        }
        why = f"not measured: {MANIFEST} records the worst layers (export_quant_error)"
        return {"quant_error": None, "quant_error_source": why, "export_quant_error": recorded}
    errors, source = _measured_error(path, data)
    return {"quant_error": errors, "quant_error_source": source}


def _measured_error(path: Path, data: str | os.PathLike | None) -> tuple[list[dict] | None, str]:
    """`relative_rmse` of every layer against the fp32 file beside `path`, and where from (or
    why not)."""
    if path.suffix != ".tflite":
        return None, f"not recorded in {MANIFEST} (measured only for .tflite)"
    fp32 = path.with_name(file_name("tflite-fp32"))
    if not fp32.is_file():
        return (
            None,
            f"not recorded in {MANIFEST} and no {fp32.name} beside the file to compare with",
        )
    images = _calibration_images(path, data)
    if images is None:
        return None, f"not recorded in {MANIFEST}; give --data DIR to measure it"
    try:
        errors = _measure_tflite_error(fp32, path, images)
    except MissingDependencyError as e:  # the rest of the profile stands without it
        return None, f"not measured: {e}"
    return errors, f"measured vs {fp32.name} on {len(images)} images"


_METRICS = ("relative_rmse", "rmse_per_scale", "sqnr_db", "error")


def _metric(row: dict) -> str | None:
    """Which error a per-layer row holds (see the module docstring)."""
    return next((k for k in _METRICS if k in row), None)


def _quant_error_from_export(path: Path) -> list[dict] | None:
    """export.json's per-layer int8 error for this file (export records it when int8
    agreement is low: `largest_quantization_error`, worst first), or None."""
    manifest = path.parent / MANIFEST
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    arts = doc.get("artifacts", {}) if isinstance(doc, dict) else {}
    entries = list(arts.items()) if isinstance(arts, dict) else [(None, a) for a in arts]
    for key, entry in entries:
        if not isinstance(entry, dict) or path.name not in (
            key,
            Path(str(entry.get("file") or "")).name,
        ):
            continue
        for field, value in entry.items():
            if (
                ("layer" in field or "quantization_error" in field)
                and isinstance(value, list)
                and value
            ):
                return value
    return None


def _calibration_images(path: Path, data: str | os.PathLike | None) -> np.ndarray | None:
    """A few images at model resolution: from --data, else the run's recorded data folder."""
    from edgecnn.runtime.dataset import list_dataset, load_pixels

    contract = read_contract(path)
    if contract is None:
        return None
    candidates = [data] if data else [contract.info.get(k) for k in ("val_dir", "data_dir")]
    for folder in candidates:
        if folder and Path(folder).is_dir():
            ds = list_dataset(folder, classes=contract.labels)
            ds = ds.stratified_sample(min(QUANT_ERROR_IMAGES, len(ds)), 0)
            return load_pixels(ds, contract, progress=False).pixels
    if data:
        raise InputError(f"{data}: no such folder")
    return None


def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise MissingDependencyError(
            "ai-edge-litert", "tflite", "measuring quantisation error"
        ) from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # preserve_all_tensors warns that it is for debugging: it is
        it = Interpreter(
            str(path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    it.allocate_tensors()
    return it


def _feed(it, pixels: np.ndarray) -> None:
    d = it.get_input_details()[0]
    x = pixels[None].astype(np.float32)
    scale, zero = d["quantization"]
    if d["dtype"] != np.float32 and scale:
        x = np.clip(np.round(x / scale + zero), np.iinfo(d["dtype"]).min, np.iinfo(d["dtype"]).max)
    it.set_tensor(d["index"], x.astype(d["dtype"]))
    it.invoke()


def _read(it, detail: dict) -> np.ndarray:
    x = it.get_tensor(detail["index"]).astype(np.float32)
    scale, zero = detail["quantization"]
    return (x - zero) * scale if scale else x


def _measure_tflite_error(fp32: Path, int8: Path, images: np.ndarray) -> list[dict]:
    """Relative RMS error (RMS(int8 - float) / RMS(float)) of every op output both files share."""
    f_it, q_it = _interpreter(fp32), _interpreter(int8)
    f_by_name = {d["name"]: d for d in f_it.get_tensor_details()}
    pairs = []
    for op in q_it._get_ops_details():
        for t in op["outputs"]:
            qd = q_it.get_tensor_details()[t]
            fd = f_by_name.get(qd["name"])
            if fd is not None and tuple(fd["shape"]) == tuple(qd["shape"]):
                pairs.append((op, qd, fd))
    err = {id(p[1]): [0.0, 0.0] for p in pairs}
    for img in images:
        _feed(f_it, img)
        _feed(q_it, img)
        for _, qd, fd in pairs:
            ref = _read(f_it, fd)
            diff = _read(q_it, qd) - ref
            err[id(qd)][0] += float(np.mean(diff**2))
            err[id(qd)][1] += float(np.mean(ref**2))
    out = []
    for op, qd, _ in pairs:
        num, den = err[id(qd)]
        out.append(
            {
                "index": int(op["index"]),
                "op": op["op_name"],
                "name": qd["name"],
                "relative_rmse": float(np.sqrt(num / den)) if den > 0 else 0.0,
            }
        )
    return out


# --- printing ------------------------------------------------------------------------------


def render(report: dict) -> str:
    """The profile as a terminal table plus totals, float ops and quantisation error."""
    header = ["#", "op", "name", "output", "dtype", "params", "MACs", "weights"]
    rows = [
        [
            str(r["index"]),
            r["op"],
            r["name"][:48],
            "x".join(str(d) for d in r["output_shape"]),
            r["dtype"],
            count(r["params"]),
            count(r["macs"]),
            size(r["weight_bytes"]),
        ]
        for r in report["layers"]
    ]
    lines = [table(header, rows)]
    t = report["total"]
    lines += [
        "",
        f"{report['model']} ({report['format']}, {size(report['file_bytes'])} on disk)",
        f"total: {t['layers']} layers, {t['params']:,} parameters, {t['macs']:,} MACs per image, "
        f"{size(t['weight_bytes'])} of weights, peak activations {size(t['peak_activation_bytes'])}",
    ]
    lines += [f"note: {n}" for n in report.get("notes", [])]
    if report.get("quantized"):
        compute = [f for f in report["float_ops"] if f["why"] != "input/output conversion"]
        boundary = len(report["float_ops"]) - len(compute)
        lines.append(
            f"ops left in float: {len(compute)}"
            + (f" (+{boundary} input/output conversions)" if boundary else "")
        )
        lines += [f"  #{f['index']} {f['op']} {f['name']}" for f in compute]
        recorded = report.get("export_quant_error")
        if recorded:
            source, rows = recorded["source"], recorded["layers"]
        else:
            source, rows = report.get("quant_error_source"), report.get("quant_error")
        lines.append(f"per-layer quantisation error ({source}):")
        for e in rows or []:
            metric = _metric(e)
            value = e.get(metric) if metric else None
            shown = f"{metric} {value:.4f}" if isinstance(value, (int, float)) else "-"
            name = str(e.get("name", e.get("tensor", ""))).split(";")[0][:48]
            lines.append(f"  #{e.get('index', '-')} {e.get('op', '')} {name}  {shown}")
    return "\n".join(lines)
