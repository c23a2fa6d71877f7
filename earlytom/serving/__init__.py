"""Serving EarlyTom behind vLLM: the plugin (vllm/) and the OpenAI client helper (client.py)."""
