"""Model architectures: the registry and the nets it builds.

    from edgecnn.models import ARCHITECTURES, build_model
    model = build_model("edge", num_classes=2)               # default input size for the arch
    model = build_model("seed", num_classes=5, img_size=96)   # --img-size overrides any arch

- `registry`: `Architecture`, `ARCHITECTURES`, `build_model` and the size/precision checks.
- `edge`: the default `edge` net (`build_edge`, `EdgeConfig`).
- `seed`: the textbook convnet baseline (`build_seed`).
- `backbones`: the `keras.applications` MobileNets (`BACKBONES`, `build_backbone`).
- `views`: the test-time views baked into the saved model (`with_flip_tta`).
- `whiten`: the whitened, frozen stem (`set_whitened_stem`).
- `weights`: loading a weights file into a built model.

Keras/TensorFlow are imported inside the functions, so importing this package is cheap.
"""

from edgecnn.models.backbones import BACKBONES, IMAGENET, Backbone, build_backbone, imagenet_file
from edgecnn.models.edge import BN_MOMENTUM, EdgeConfig, build_edge, sign_pairs
from edgecnn.models.registry import (
    ARCHITECTURES,
    DEFAULT_ARCH,
    MIN_IMG_SIZE,
    PRECISIONS,
    Architecture,
    build_model,
    dtype_policy,
    get_architecture,
    resolve_img_size,
    resolve_train_size,
)
from edgecnn.models.seed import build_seed
from edgecnn.models.views import TTA_CROP, with_flip_tta
from edgecnn.models.whiten import (
    WHITEN_EPS,
    WHITEN_PATCHES,
    set_whitened_stem,
    stem_whitening_kernel,
)

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "BN_MOMENTUM",
    "DEFAULT_ARCH",
    "IMAGENET",
    "MIN_IMG_SIZE",
    "PRECISIONS",
    "TTA_CROP",
    "WHITEN_EPS",
    "WHITEN_PATCHES",
    "Architecture",
    "Backbone",
    "EdgeConfig",
    "build_backbone",
    "build_edge",
    "build_model",
    "build_seed",
    "dtype_policy",
    "get_architecture",
    "imagenet_file",
    "resolve_img_size",
    "resolve_train_size",
    "set_whitened_stem",
    "sign_pairs",
    "stem_whitening_kernel",
    "with_flip_tta",
]
