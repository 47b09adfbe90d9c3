"""Audio in and out: every waveform inside convmem is float32 mono at 16 kHz."""

from convmem.audio.io import SAMPLE_RATE, AudioInfo, audio_info, load_audio, resample, write_wav

__all__ = ["SAMPLE_RATE", "AudioInfo", "audio_info", "load_audio", "resample", "write_wav"]
