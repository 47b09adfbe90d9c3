"""The conversation engine: streams dialogues (token ids only) through a model's memory."""
