"""`infertune serve`: an OpenAI-compatible HTTP server over the runtime (continuous batching
for decoders, dynamic batching for encoders)."""

from __future__ import annotations

import typer

from ..problems import given, given_db
from ..serving import create_app
from ..serving.server import bind, url_of, uvicorn_server
from ..serving_setup import open_target
from ..settings import Settings
from .common import user_errors


@user_errors
def serve(
    model: str = typer.Option("smollm2-135m", "--model", help="Built-in model (`infertune models`), an HF directory or a .gguf file."),
    variant: str = typer.Option(None, "--variant", help="e.g. bf16, bf16+w8, fp16:torch "
                                "(default: bf16 on a GPU, fp32 on the torch backend elsewhere)."),
    db: str = typer.Option(None, "--db", help="Tuned config database (default INFERTUNE_DB, else per-user)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0: a free one)."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Decode slots: requests generating at once."),
    max_queue: int = typer.Option(64, "--max-queue", min=1,
                                  help="Requests waiting for a slot; beyond it the server answers 429."),
    max_len: int = typer.Option(None, "--max-len", min=2,
                                help="Positions per request, prompt + generated (default min(1024, the model's context))."),
    prefill_budget: int = typer.Option(None, "--prefill-budget", min=1,
                                       help="Prompt tokens prefilled between two decode steps (default 2048)."),
) -> None:
    """Serve MODEL over HTTP: /v1/completions, /v1/chat/completions, /v1/embeddings, /v1/models,
    /health, /metrics. Ctrl-C stops it."""
    for value, flag in ((variant, "--variant"), (model, "--model"), (host, "--host")):
        given(value, flag)
    given_db(db)
    sock = bind(host, port)  # before loading: a port in use is known at once
    try:
        target = open_target(model, variant, db or Settings.from_env().db, max_batch=max_batch, max_queue=max_queue, max_len=max_len,
                             prefill_budget=prefill_budget)
        app = create_app(target)
        server = uvicorn_server(app)
        typer.echo(f"infertune serve: {url_of(sock)}/v1 (model {target.name}, variant {target.variant}, "
                   f"{target.device}, max batch {max_batch}, max len {target.max_len}); Ctrl-C stops")
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down for: the expected end
            pass
        finally:
            target.stop()  # the lifespan stopped it, unless a second Ctrl-C forced the exit
    finally:
        sock.close()
