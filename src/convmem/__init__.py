"""convmem: test-time memory for emotion recognition in long spoken conversations.

Kept import-light on purpose: `convmem --help` must not pay for torch/transformers.
"""

__version__ = "0.1.0"
