"""ImageNet starts for the `keras.applications` backbones, through Keras' own cached download.

`edgecnn train DATA --arch mobilenetv3small --weights imagenet` starts the backbone from the
ImageNet "no top" weights that `keras.applications.MobileNetV3Small(weights="imagenet",
include_top=False)` would load: the same file name, from the same URL, checked against the same
hash (where Keras publishes one), kept in the same cache (`$KERAS_HOME/models`, else
`~/.keras/models`) by the same `keras.utils.get_file`.  So:

- online, the first run downloads the file once; every later run reads the cache;
- offline with the file in the cache, nothing touches the network;
- offline without it, training stops before any photo is decoded or anything is written, with
  one line naming the file, the folder to put it in and the URL to fetch it from (exit 2).

Keras reads `KERAS_HOME` once, when it is imported; `cache_home` reads it when called, so a
process (or a test) that sets it later still finds its files.  Keras' downloader takes no
timeout, so the download runs with a socket timeout of `DOWNLOAD_TIMEOUT` seconds on every
connect and read: an unreachable server fails in seconds and a stalled one does not hang the
run (resolving the host name keeps the system resolver's own timeout).  Nothing else in edgecnn
downloads, and nothing downloads unless `--weights imagenet` asks for it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from edgecnn.runtime.errors import InputError

DOWNLOAD_TIMEOUT = 15.0  # seconds for each connect and each read, not for the whole file
CACHE_SUBDIR = "models"  # where keras.applications keeps its weights under the Keras home
_V3_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
_V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
# keras.applications' md5 of each MobileNetV3 "no top" file (mobilenet_v3.WEIGHTS_HASHES)
_V3_HASHES = {
    ("small", 1.0): "d3e8ec802a04aa4fc771ee12a9a9b836",
    ("large", 1.0): "07fb09a5933dd0c8eaafa16978110389",
}
# the input sizes MobileNetV2 was trained at on ImageNet, one file each; Keras loads the 224
# file for any other size (and publishes no hash for these files)
V2_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class WeightsFile:
    """One of Keras' published ImageNet weight files: its cache name, its URL and its hash."""

    name: str
    url: str
    file_hash: str | None  # md5, as keras.applications checks it; None where Keras has none


def weights_file(application: str, *, alpha: float, img_size: int) -> WeightsFile:
    """The "no top" ImageNet file `keras.applications.<application>` loads for this width and
    input size, named as Keras names it (so a file already in the Keras cache is found)."""
    if application in ("MobileNetV3Small", "MobileNetV3Large"):
        kind = application.removeprefix("MobileNetV3").lower()
        file_hash = _V3_HASHES.get((kind, float(alpha)))
        if file_hash is None:
            raise InputError(f"{application}: no ImageNet weights for alpha {alpha}")
        name = f"weights_mobilenet_v3_{kind}_224_{float(alpha)}_float_no_top_v2.h5"
        return WeightsFile(name, _V3_URL + name, file_hash)
    if application == "MobileNetV2":
        rows = img_size if img_size in V2_SIZES else 224
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
        return WeightsFile(name, _V2_URL + name, None)
    raise InputError(f"{application}: edgecnn knows no ImageNet weights file for it")


def cache_home() -> Path:
    """Keras' home folder as of now: `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` when the
    home folder is read-only, as Keras does)."""
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def cache_folder(home: Path | None = None) -> Path:
    """The folder `keras.utils.get_file` keeps the weights in: `<home>/models`, or
    `/tmp/.keras/models` when `home` cannot be written (Keras' own fallback)."""
    home = cache_home() if home is None else home
    base = home if os.access(home, os.W_OK) else Path("/tmp") / ".keras"
    return base / CACHE_SUBDIR


def fetch(spec: WeightsFile) -> Path:
    """The local path of `spec`: from the Keras cache, else downloaded into it (once).

    Raises InputError with one line naming the file, the cache folder and the URL when the
    file is neither cached (with the right hash) nor downloadable.
    """
    import keras

    home = cache_home()
    # Keras creates its home when it is imported, and KERAS_HOME may have been set since; if it
    # cannot be created, get_file falls back to /tmp/.keras, and cache_folder says so
    with suppress(OSError):
        home.mkdir(parents=True, exist_ok=True)
    folder = cache_folder(home)
    cached = (folder / spec.name).is_file()
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT):
            path = keras.utils.get_file(
                spec.name,
                spec.url,
                file_hash=spec.file_hash,
                cache_subdir=CACHE_SUBDIR,
                cache_dir=str(home),
            )
    except Exception as e:  # Keras re-raises URL errors as a bare Exception; timeouts as OSError
        raise InputError(_unavailable(spec, folder, cached=cached, error=e)) from None
    return Path(path)


def _unavailable(spec: WeightsFile, folder: Path, *, cached: bool, error: Exception) -> str:
    """One line: what is missing, why it could not be downloaded, and how to put it in place."""
    why = _reason(error)
    if cached:
        what = (
            f"the copy of {spec.name} in {folder} did not match Keras' md5 {spec.file_hash} (an "
            f"interrupted download?) and a fresh one could not be downloaded ({why})"
        )
    else:
        what = f"{spec.name} is not in {folder} and could not be downloaded ({why})"
    return (
        f"--weights imagenet: {what}; fetch {spec.url} and put it in {folder} "
        "(the folder follows KERAS_HOME)"
    )


def _reason(error: Exception) -> str:
    """The cause in a few words: Keras' "URL fetch failure on URL: CODE -- REASON" shortened
    to the reason (with the HTTP status when there is one)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    if text.startswith("URL fetch failure") and " -- " in text:
        head, reason = text.rsplit(" -- ", 1)
        code = head.rsplit(": ", 1)[-1]
        return reason if code in ("None", "") else f"HTTP {code} {reason}"
    return text


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every blocking socket call made inside (urllib's default is to wait forever)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
