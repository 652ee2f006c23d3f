"""From a model name or path and a variant to a model ready to run.

`load_model("smollm2-135m", variant, device)`: a built-in preset (its files from the model
store; a synthetic preset gets seeded random weights of its shapes and no tokenizer), a
Hugging Face directory (config.json + *.safetensors, Llama or BERT), or a .gguf file. The
variant decides dtype, weight scheme and backend; a per-layer plan overrides the scheme.
What the device cannot run is refused here, in one line, before any weight is touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kernels.device import DeviceInfo, dtype_unsupported_reason

from .errors import InvalidVariant, InvalidWorkload, UnknownModel
from .model_config import ModelConfig
from .plan import Plan
from .presets import PRESETS, get_preset
from .variant import Variant

SYNTHETIC_SEED = 0


@dataclass
class Loaded:
    name: str
    config: ModelConfig
    model: Any                    # LlamaModel or BertModel
    tokenizer: Any | None         # runtime.tokenizer.Tokenizer; None for synthetic presets
    variant: Variant
    synthetic: bool
    path: Path | None = None
    embed_settings: Any | None = None   # runtime.embed.EmbedSettings for encoders

    @property
    def family(self) -> str:
        return self.config.family


def check_variant(variant: Variant, device: DeviceInfo) -> None:
    """Refuse what this device cannot run. Raises InvalidVariant (one line)."""
    if variant.cuda_graphs and device.kind != "cuda":
        raise InvalidVariant(f"variant {variant}: CUDA graphs need a GPU; this device is {device.label}")
    if variant.uses_kernels:
        reason = dtype_unsupported_reason(variant.dtype, device)
        if reason:
            raise InvalidVariant(f"variant {variant} cannot run here: {reason}")
    if variant.weights == "fp8":
        reason = dtype_unsupported_reason("fp8", device)
        if reason:
            raise InvalidVariant(f"variant {variant} cannot run here: {reason}")


def _read(name_or_path: str):
    """(name, LoadedModel-like (config, tensors), tokenizer, synthetic, path)."""
    from . import store

    if any(p.name == name_or_path for p in PRESETS):
        preset = get_preset(name_or_path)
        if preset.synthetic:
            return preset.name, preset.config, None, None, True, None
        loaded = store.load(preset.name)
        return preset.name, loaded.config, loaded.tensors, store.load_tokenizer(preset.name), False, loaded.path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join(p.name for p in PRESETS)
        raise UnknownModel(f"unknown model {name_or_path!r}: not a built-in model ({known}) nor an existing path")
    from .tokenizer import load_tokenizer

    if path.is_file() and path.suffix == ".gguf":
        from .gguf_loader import load_gguf

        loaded = load_gguf(path)
    else:
        from .hf_loader import load_hf_dir

        loaded = load_hf_dir(path)
    # A directory of weights without tokenizer.json runs on token ids, as a synthetic model does.
    has_tokenizer = path.suffix == ".gguf" or (path / "tokenizer.json").is_file()
    return path.name, loaded.config, loaded.tensors, load_tokenizer(path) if has_tokenizer else None, False, path


def load_model(name_or_path: str, variant: Variant, device: DeviceInfo, *, plan: Plan | None = None,
               max_positions: int | None = None) -> Loaded:
    """Load and build. Raises runtime ModelError subclasses (one line): UnknownModel,
    ModelFilesMissing (not fetched), UnsupportedArchitecture, CorruptModelFile, InvalidVariant."""
    check_variant(variant, device)
    name, config, tensors, tokenizer, synthetic, path = _read(name_or_path)
    torch_device = device.torch_device
    if config.family == "llama":
        from .llama import LlamaModel, synthetic_weights

        if tensors is None:
            _check_room_for_synthetic(name, config, device)
            tensors = synthetic_weights(config, SYNTHETIC_SEED, torch_device)
        model = LlamaModel(config, tensors, variant, torch_device, plan=plan, max_positions=max_positions)
        return Loaded(name, config, model, tokenizer, variant, synthetic, path)
    from .bert import BertModel
    from .embed import EmbedSettings

    if tensors is None:
        raise UnknownModel(f"{name}: no synthetic encoder weights")
    layer_plan = plan.resolve([f"layers.{i}.{r}" for i in range(config.layers) for r in ("qkv", "o", "up", "down")],
                              variant.scheme or "none") if plan is not None else None
    model = BertModel(config, tensors, variant, torch_device, plan=layer_plan)
    settings = EmbedSettings.from_dir(path) if path is not None and path.is_dir() else EmbedSettings()
    del tensors
    return Loaded(name, config, model, tokenizer, variant, synthetic, path, settings)


def free_memory_bytes(device: DeviceInfo) -> int | None:
    """Free memory where the weights will live: the GPU's, else the host's (None: unknown)."""
    if device.kind == "cuda":
        free, _ = torch.cuda.mem_get_info(device.torch_device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _check_room_for_synthetic(name: str, config: ModelConfig, device: DeviceInfo) -> None:
    # Synthetic weights are drawn in fp32 (the master copy quantizers start from), then cast:
    # llama-3-8b needs ~32 GB for that alone. Refuse in one line rather than be OOM-killed.
    from .llama import weight_shapes

    need = 4 * sum(math.prod(shape) for shape in weight_shapes(config).values())
    free = free_memory_bytes(device)
    if free is not None and need > 0.9 * free:
        raise InvalidWorkload(f"{name}: its synthetic fp32 weights need {need / 2**30:.1f} GiB and {device.label} has "
                              f"{free / 2**30:.1f} GiB free; use a smaller preset (llama-3.2-1b, smollm2-135m)")


def default_variant_text(device: DeviceInfo) -> str:
    """bf16 on the triton backend on a GPU; fp32 on the torch backend elsewhere (the CPU runs
    bf16 matmuls slowly and the interpreter runs our kernels at seconds a launch)."""
    return "bf16" if device.kind == "cuda" else "fp32"


def torch_dtype(variant: Variant) -> torch.dtype:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[variant.dtype]
