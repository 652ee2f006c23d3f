"""The built-in inference runtime (decoder and encoder models).

So far: model architecture configs (`model_config`), the built-in models (`presets`) and
the list of kernel launches a model makes (`launches`), which is what `infertune autotune
--model NAME` tunes. The forward passes arrive with the runtime issue; they will launch
kernels through kernels/ with configs resolved through kernels.config_source.
"""

from .errors import InvalidModelConfig, InvalidWorkload, ModelError, UnknownModel, UnsupportedArchitecture
from .launches import KernelLaunch, kernel_launches, quant_schemes, unique_problems
from .model_config import ModelConfig
from .presets import PRESETS, Preset, get_preset

__all__ = [
    "InvalidModelConfig", "InvalidWorkload", "ModelError", "UnknownModel", "UnsupportedArchitecture",
    "KernelLaunch", "kernel_launches", "quant_schemes", "unique_problems",
    "ModelConfig", "PRESETS", "Preset", "get_preset",
]
