"""Vendored flatc-generated TFLite Metadata schema (Apache-2.0, from the mediapipe wheel;
source, version and sha256 in README.md beside it).

Vendored so that writing the standard `TFLITE_METADATA` entry needs only the `flatbuffers`
package, not mediapipe or tflite-support (which pins protobuf < 4 and clashes with TF 2.21).
The TFLite *model* schema is TensorFlow's own `tensorflow.lite.python.schema_py_generated`
(byte-identical to the copy in the mediapipe wheel and always matching the converter that wrote
the model, so re-packing a model never drops fields it does not know).
"""
