"""Test-time memories behind one interface: none, window, temp_lora (DPM), neural (MAL)."""
