"""`infertune serve`: an OpenAI-compatible HTTP server over the runtime's batching engine."""

from .app import create_app

__all__ = ["create_app"]
