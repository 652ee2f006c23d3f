"""Models of the real models' shapes for the GPU machine, whose files cannot travel there.

The real weights (MiniLM 87 MiB, SmolLM2 93 MB) are over what a device call carries (64 MiB
with the wheels). Speed does not depend on the weights' values, so the kit carries everything
but the weights (tokenizer, configs, sentence-transformers modules: under 1 MiB) plus the
tensors' names, dtypes and shapes, and writes seeded random weights of those shapes there.

    python -m bench.device.models pack minilm-l6 DEST     # here: DEST/minilm-l6/ from the fetched files
    python -m bench.device.models unpack SRC              # there: into the model cache (INFERTUNE_MODELS)

Results made on such a model say so: its outputs are not the real model's.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from runtime import store

# Files of the model directory that nothing loads: left behind.
SKIP = {".gitattributes", "README.md", "data_config.json"}
MANIFEST = "weights.json"
SEED = 0
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def pack(name: str, dest: Path) -> Path:
    """Copy the model's files but its weights into dest/name, with a manifest of the tensors."""
    src = store.require(name)
    if not src.is_dir():
        raise SystemExit(f"{name}: pack takes a model directory, {src} is a file")
    out = dest / name
    if out.exists():
        shutil.rmtree(out)
    manifest: dict[str, dict] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or rel.name in SKIP:
            continue
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as f:
                manifest[str(rel)] = {key: {"dtype": str(f.get_slice(key).get_dtype()),
                                            "shape": list(f.get_slice(key).get_shape())} for key in f.keys()}
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / rel)
    (out / MANIFEST).write_text(json.dumps({"model": name, "files": manifest}, indent=1) + "\n")
    return out


def random_tensor(key: str, dtype: str, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    """BERT-style init: norms at 1 and 0, position ids counting, the rest N(0, 0.02)."""
    if dtype == "I64":
        return torch.arange(shape[-1], dtype=torch.int64).expand(*shape).contiguous()
    torch_dtype = _DTYPES[dtype]
    if "LayerNorm" in key or "norm" in key.lower():
        fill = 1.0 if key.endswith("weight") else 0.0
        return torch.full(shape, fill, dtype=torch_dtype)
    return (torch.randn(shape, generator=gen) * 0.02).to(torch_dtype)


def unpack(src: Path) -> Path:
    """Write src (a packed model) into the model cache with seeded random weights."""
    info = json.loads((src / MANIFEST).read_text())
    name = info["model"]
    target = store.package_target(name)
    # The layout the store looks for: <package target>/<module>/<path in the package>.
    module, rel = store.package_files(name)
    model_dir = target / module / rel
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(src, model_dir, ignore=shutil.ignore_patterns(MANIFEST))
    gen = torch.Generator().manual_seed(SEED)
    for file, tensors in info["files"].items():
        weights = {key: random_tensor(key, t["dtype"], t["shape"], gen) for key, t in tensors.items()}
        save_file(weights, str(model_dir / file), metadata={"format": "pt", "infertune": "synthetic"})
    found = store.model_path(name)
    if found is None or found.resolve() != model_dir.resolve():
        raise SystemExit(f"{name}: unpacked to {model_dir}, but the store finds {found}")
    return model_dir


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 3 and argv[0] == "pack":
        print(pack(argv[1], Path(argv[2])))
        return 0
    if len(argv) == 2 and argv[0] == "unpack":
        if not Path(argv[1]).is_dir():
            print(f"no packed models in {argv[1]}: the runs that need them skip")
            return 0
        for src in sorted(Path(argv[1]).iterdir()) if not (Path(argv[1]) / MANIFEST).exists() else [Path(argv[1])]:
            if (src / MANIFEST).exists():
                print(f"{src.name}: synthetic weights in {unpack(src)}")
        return 0
    print("usage: python -m bench.device.models pack NAME DEST | unpack SRC", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
