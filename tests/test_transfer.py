"""Transfer learning from a local weights file: frozen backbone, then fine-tuning; no downloads.

The "pretrained" file is made here: the weights of a MobileNetV3Small backbone initialised with
another seed, saved to a local `.weights.h5` -- exactly the shape of an ImageNet no-top file.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from _train_fixtures import tiny_split

from edgecnn import transfer
from edgecnn.runtime.errors import InputError

SIZE = 32


def _backbone(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV3Small(
        input_shape=(SIZE, SIZE, 3),
        include_top=False,
        weights=None,
        pooling="avg",
        include_preprocessing=True,
    )


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    _backbone(seed=123).save_weights(path)
    return path


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("data"), classes=2, train=12, val=4)


def _weights_snapshot(model) -> list[np.ndarray]:
    return [np.array(w) for w in transfer.backbone(model).get_weights()]


def test_weights_file_loads_into_the_backbone(weights_file):
    from edgecnn.models import build_model

    expected = _backbone(seed=123).get_weights()
    model = build_model("mobilenetv3small", 2, SIZE, weights=weights_file)
    got = transfer.backbone(model).get_weights()
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_frozen_then_fine_tuned(tmp_path, split, weights_file):
    import keras

    from edgecnn.training import lr_at, train

    train_dir, val_dir = split
    file_weights = [np.array(w) for w in _backbone(seed=123).get_weights()]
    snapshots: dict[int, list[np.ndarray]] = {}
    trainable: dict[int, bool] = {}

    class Spy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots[epoch] = _weights_snapshot(self.model)
            trainable[epoch] = transfer.backbone(self.model).trainable

    run = train(
        train_dir,
        val_dir=val_dir,
        arch="mobilenetv3small",
        img_size=SIZE,
        epochs=3,
        batch=8,
        weights=weights_file,
        out=tmp_path / "run",
        progress=False,
        patience=10,
        callbacks=[Spy()],
    )
    # epoch 1: backbone frozen -- every weight, BatchNorm statistics included, is the file's
    assert trainable == {0: False, 1: True, 2: True}
    assert all(np.array_equal(a, b) for a, b in zip(snapshots[0], file_weights))
    # epochs 2-3: fine-tuning moved the backbone's weights away from the file, while its
    # BatchNorm layers stayed frozen with the file's statistics
    net = _backbone(seed=123)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    norm_weights = {w.path for layer in norms for w in layer.weights}
    frozen = [w.path in norm_weights for w in net.weights]
    moved = [not np.array_equal(a, b) for a, b in zip(snapshots[2], file_weights)]
    assert any(m for m, f in zip(moved, frozen) if not f)
    assert not any(m for m, f in zip(moved, frozen) if f)
    # fine-tuning runs at a tenth of the scheduled learning rate
    base = 1e-3
    lrs = [row["learning_rate"] for row in run.history]
    assert lrs[0] == pytest.approx(lr_at(0, base=base, epochs=3), rel=1e-5)
    assert lrs[2] == pytest.approx(lr_at(2, base=base, epochs=3) * 0.1, rel=1e-5)
    assert run.model_path.is_file()
    assert run.contract.info["weights"] == str(weights_file)


def test_no_weights_means_no_frozen_phase():
    from edgecnn.models import build_model

    model = build_model("mobilenetv3small", 2, SIZE)
    assert transfer.frozen_epochs(model, 30, weights=None) == 0
    assert transfer.frozen_epochs(model, 30, weights="w.h5") == transfer.MAX_FROZEN_EPOCHS
    assert transfer.frozen_epochs(build_model("seed", 2, SIZE), 30, weights="w.h5") == 0
    assert transfer.phases(0, 10, 3) == [(0, 3, False), (3, 10, True)]
    assert transfer.phases(5, 10, 3) == [(5, 10, True)]


def test_weights_that_do_not_fit_are_input_errors(tmp_path, weights_file):
    from edgecnn.models import build_model

    with pytest.raises(InputError, match="not found"):
        build_model("mobilenetv3small", 2, SIZE, weights=tmp_path / "missing.weights.h5")
    with pytest.raises(InputError, match="edge"):
        build_model("edge", 2, SIZE, weights=weights_file)


def test_a_file_of_another_architecture_is_refused_in_one_line_without_keras_warnings(
    tmp_path, weights_file
):
    from edgecnn.models import build_model

    edge_file = tmp_path / "edge.weights.h5"
    build_model("edge", 2, SIZE).save_weights(edge_file)
    cases = [
        ("edge", weights_file, "does not fit architecture 'edge'"),
        ("mobilenetv3small", edge_file, "cannot load into mobilenetv3small"),
    ]
    for arch, file, refusal in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(InputError) as error:
                build_model(arch, 2, SIZE, weights=file)
        message = str(error.value)
        assert message.startswith(f"{file}: {refusal} (")
        # the count of failed layers and the first one's two shapes, not Keras' array dump
        assert re.search(r"\(\d+ layers could not be loaded; the first, \S+: shape \(", message)
        assert "in the file" in message and "in the model)" in message
        assert "\n" not in message and len(message) < 300
        assert not [w for w in caught if "Skipping" in str(w.message)]
