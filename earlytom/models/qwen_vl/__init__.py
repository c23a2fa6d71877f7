"""Qwen2.5-VL as an EarlyTom model family: configs, preprocessing, vision side, prompt positions."""
