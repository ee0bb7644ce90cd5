"""The `seed` architecture: the textbook convnet the project's baseline is, layer for layer.

Conv32 3x3 + MaxPool twice, Flatten, Dense 128, then an N-way softmax where the textbook has a
sigmoid, at 64x64: the baseline the other architectures are measured against.
"""

from __future__ import annotations

from edgecnn.models.weights import load_full_weights


def build_seed(num_classes: int, img_size: int, *, weights: str | None = None):
    """The seed convnet, layer for layer, with the sigmoid head generalised to N-way softmax."""
    import keras
    from keras import layers

    model = keras.Sequential(
        [
            keras.Input((img_size, img_size, 3), name="pixels"),
            layers.Rescaling(1.0 / 255, name="scale"),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs"),
        ],
        name="seed",
    )
    load_full_weights(model, weights)
    return model
