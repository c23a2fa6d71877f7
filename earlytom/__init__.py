"""EarlyTom: training-free visual token compression inside the vision encoder of Video-LLMs.

`import earlytom` stays light: transformers, PyAV and the optional TensorRT / ONNX Runtime
packages are imported by the modules that need them.
"""

from earlytom.config import PRESETS, EarlyTomConfig, preset
from earlytom.errors import EarlyTomError

__version__ = "0.1.0"
__all__ = ["PRESETS", "EarlyTomConfig", "EarlyTomError", "__version__", "preset"]
