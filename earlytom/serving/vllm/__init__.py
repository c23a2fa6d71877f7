"""vLLM plugin: the `vllm.general_plugins` entry point registers EarlyTom's model classes.

vLLM is imported only inside `register()`, so this package imports without vLLM installed.
"""

from __future__ import annotations

ARCHITECTURE = "EarlyTomLlavaOnevisionForConditionalGeneration"
_MODEL_CLASS = "earlytom.serving.vllm.model:EarlyTomLlavaOnevisionForConditionalGeneration"


def register() -> None:
    """Register the EarlyTom architecture; idempotent (vLLM loads plugins in every process)."""
    from vllm import ModelRegistry

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, _MODEL_CLASS)
