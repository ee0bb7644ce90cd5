"""The environment that holds this host's OpenCV, numpy and oneDNN to an AVX2-only CPU's kernels.

    python tools/avx2_only.py     # KEY=VALUE lines, for `env $(python tools/avx2_only.py) ...`
    make test-avx2                # the whole suite so

Each library picks its SIMD kernels by cpuid when a process starts, and each takes a switch to
ignore instruction sets: `ONEDNN_MAX_CPU_ISA` (TensorFlow's oneDNN), `OPENCV_CPU_DISABLE` and
`NPY_DISABLE_CPU_FEATURES`.  The two lists name only what this host has beyond AVX2 and FMA
(AVX-512 in all its generations, AVX-VNNI), so on an AVX2-only CPU they are empty and change
nothing.  LiteRT's and ONNX Runtime's kernels take no switch: tests/test_int8_kernels.py runs the
int8 files under qemu's emulation of older CPUs instead.
"""

from __future__ import annotations


def _beyond_avx2(name: str) -> bool:
    return "AVX512" in name or name in ("X86_V4", "AVX_VNNI")


def opencv_features_beyond_avx2() -> list[str]:
    """OpenCV's dispatched instruction sets beyond AVX2 that this host has, as its
    `getCPUFeaturesLine` names them (`*AVX512-SKX`; a trailing `?` marks one it lacks)."""
    import cv2

    tokens = (t.lstrip("*") for t in cv2.getCPUFeaturesLine().split())
    return [t for t in tokens if not t.endswith("?") and _beyond_avx2(t.replace("-", "_"))]


def numpy_features_beyond_avx2() -> list[str]:
    """numpy's dispatch targets beyond AVX2 that this host has (names differ between releases:
    `AVX512_SKX` in numpy 2.0, `X86_V4` since)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [n for n in __cpu_dispatch__ if _beyond_avx2(n) and __cpu_features__.get(n)]


def environment() -> dict[str, str]:
    return {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENCV_CPU_DISABLE": ",".join(opencv_features_beyond_avx2()),
        "NPY_DISABLE_CPU_FEATURES": ",".join(numpy_features_beyond_avx2()),
    }


if __name__ == "__main__":
    for key, value in environment().items():
        print(f"{key}={value}")
