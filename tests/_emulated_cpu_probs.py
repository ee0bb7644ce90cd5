"""Run under `qemu-x86_64 -cpu MODEL`: the int8 and float files' probabilities on saved pixels,
and the instruction sets this (emulated) CPU reports, as numpy's dispatcher sees them.

    python _emulated_cpu_probs.py EXPORT_DIR PIXELS.npy OUT.npz
"""

import sys

import numpy as np
from numpy._core._multiarray_umath import __cpu_features__ as features

from edgecnn.runtime import load

export_dir, pixels, out = sys.argv[1:4]
x = np.load(pixels)
np.savez(
    out,
    tflite=load(f"{export_dir}/model_int8.tflite", backend="tflite", threads=1).probs_pixels(x),
    onnx=load(f"{export_dir}/model_int8.onnx", backend="onnx", threads=1).probs_pixels(x),
    tflite_fp32=load(f"{export_dir}/model_fp32.tflite", backend="tflite", threads=1).probs_pixels(
        x
    ),
    onnx_fp32=load(f"{export_dir}/model.onnx", backend="onnx", threads=1).probs_pixels(x),
    features=np.array(sorted(name for name, present in features.items() if present)),
)
