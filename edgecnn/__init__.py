"""edgecnn: from a folder of labelled photos to a CNN classifier running live at the edge.

    from edgecnn import train                   # train(data_dir, ...) -> Run
    from edgecnn import TrainOptions            # train(data_dir, TrainOptions(...)) -> Run
    from edgecnn.export import export           # export(run, formats=...) -> manifest
    from edgecnn.runtime import load            # load(path, backend="auto") -> Classifier

Importing this package does not import TensorFlow; `train` imports it when called.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["TrainOptions", "__version__", "train"]


def __getattr__(name: str):
    # Lazy public API: keeps `import edgecnn` (and the CLI's start-up) free of TensorFlow.
    # The implementation lives in `edgecnn.training`, not `edgecnn.train`: a submodule named
    # `train` would shadow this function as soon as anything imported it.
    if name == "train":
        from edgecnn.training import train

        return train
    if name in ("Run", "TrainOptions"):
        from edgecnn import training

        return getattr(training, name)
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")
