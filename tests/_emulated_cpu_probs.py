"""Run under `qemu-x86_64 -cpu MODEL`: the int8 and float files' probabilities on saved pixels,
and the instruction sets this (emulated) CPU reports, as numpy's dispatcher sees them.

    python _emulated_cpu_probs.py EXPORT_DIR PIXELS.npy OUT.npz
"""

import sys

import numpy as np
from numpy._core._multiarray_umath import __cpu_features__ as cpu_features

from edgecnn.runtime import load

# the key in OUT.npz: (file, backend)
FILES = {
    "tflite": ("model_int8.tflite", "tflite"),
    "onnx": ("model_int8.onnx", "onnx"),
    "tflite_fp32": ("model_fp32.tflite", "tflite"),
    "onnx_fp32": ("model.onnx", "onnx"),
}

export_dir, pixels, out = sys.argv[1:4]
x = np.load(pixels)
probs = {
    key: load(f"{export_dir}/{file}", backend=backend, threads=1).probs_pixels(x)
    for key, (file, backend) in FILES.items()
}
features = np.array(sorted(name for name, present in cpu_features.items() if present))
np.savez(out, features=features, **probs)
