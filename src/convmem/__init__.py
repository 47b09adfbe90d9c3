"""convmem: test-time memory for emotion recognition in long spoken conversations.

Kept import-light on purpose: `convmem --help` must not pay for torch/transformers.
"""

from convmem.onnx_runtime import disable_telemetry_before_import

# before anything can import onnxruntime, which reads it only then (convmem/onnx_runtime.py)
disable_telemetry_before_import()

__version__ = "0.1.0"
