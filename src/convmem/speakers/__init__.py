"""Who spoke when: GE2E speaker embeddings (encoder.py), clustering offline and online
(cluster.py), diarisation of a recording (diarise.py), and Whisper transcripts (transcribe.py)."""
