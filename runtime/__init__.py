"""The built-in inference runtime (decoder and encoder models).

So far: model architecture configs (`model_config`), the built-in models (`presets`) and
the list of kernel launches a model makes (`launches`), which is what `infertune autotune
--model NAME` tunes; the model files: where they live and fetching them (`store`), reading
GGUF (`gguf_loader`) and Hugging Face safetensors directories (`hf_loader`) into one tensor
naming, and tokenizers with chat templates (`tokenizer`); variants (`variant`), weights
(`linear`), the ops backends (`ops`), the decoder (`llama`, `kv_cache`, `generate`), the
encoder (`bert`, `embed`), per-layer plans (`plan`), configs decided at load (`configs`)
and `loading.load_model`. The forward passes launch kernels through kernels/ with configs
resolved through kernels.config_source (docs/ARCHITECTURE.md, Runtime).
"""

from .errors import (
    CorruptModelFile, FetchFailed, InvalidModelConfig, InvalidWorkload, ModelError, ModelFilesMissing, UnknownModel,
    UnsupportedArchitecture,
)
from .gguf_loader import load_gguf
from .hf_loader import LoadedModel, load_hf_dir
from .launches import KernelLaunch, kernel_launches, quant_schemes, unique_problems
from .model_config import ModelConfig
from .presets import PRESETS, Preset, get_preset
from .store import ModelStatus, fetch, model_dir, model_path
from .tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "InvalidModelConfig", "InvalidWorkload", "ModelError", "UnknownModel", "UnsupportedArchitecture",
    "KernelLaunch", "kernel_launches", "quant_schemes", "unique_problems",
    "ModelConfig", "PRESETS", "Preset", "get_preset",
    "CorruptModelFile", "FetchFailed", "ModelFilesMissing",
    "LoadedModel", "load_gguf", "load_hf_dir", "ModelStatus", "fetch", "model_dir", "model_path",
    "Tokenizer", "load_tokenizer",
]
