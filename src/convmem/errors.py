"""Error types that name what was wrong and where (file, line, field)."""


class ConvmemError(Exception):
    """Base class of every user-facing error; the CLI prints these without a traceback."""


class ManifestError(ConvmemError, ValueError):
    """A manifest (or corpus source file) is malformed; the message names file, line and field."""


class AudioError(ConvmemError, ValueError):
    """An audio file is missing, empty, corrupt or otherwise unusable; the message names the file."""


class ConfigError(ConvmemError, ValueError):
    """A config key is unknown or has the wrong type; the message names the key."""
