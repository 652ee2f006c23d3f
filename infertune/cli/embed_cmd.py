"""`infertune embed`: normalized sentence embeddings from a built-in (or local) encoder, or
query-document relevance by cosine with --pairs."""

from __future__ import annotations

import typer
from rich.table import Table

from kernels.device import current_device
from runtime.embed import embed_timed
from runtime.loading import default_variant_text, load_model
from runtime.variant import parse_variant

from ..errors import UsageError
from ..inference import launch_configs
from ..problems import given, given_db
from ..settings import Settings
from .common import console, print_json, user_errors


@user_errors
def embed(
    texts: list[str] = typer.Argument(None, help="Texts to embed; with --pairs the first is the query."),
    model: str = typer.Option("minilm-l6", "--model", help="Built-in encoder (`infertune models`) or an HF directory."),
    variant: str = typer.Option(None, "--variant", help="e.g. fp32, fp16+w8:torch, bf16:triton "
                                "(default: bf16 on a GPU, fp32 on the torch backend elsewhere)."),
    pairs: bool = typer.Option(False, "--pairs", help="Score each following text's relevance to the first (cosine)."),
    batch_size: int = typer.Option(32, "--batch", "--batch-size", min=1,
                                   help="Texts per forward pass (--batch-size: the same)."),
    db: str = typer.Option(None, "--db", help="Tuned config database (default INFERTUNE_DB, else per-user)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (the vectors included)."),
) -> None:
    """Embed texts (mean pooling, L2-normalized), or rank documents against a query (--pairs)."""
    for value, flag in ((variant, "--variant"), (model, "--model")):
        given(value, flag)
    given_db(db)
    if not texts:
        raise UsageError("give at least one TEXT to embed")
    if pairs and len(texts) < 2:
        raise UsageError("--pairs needs a query and at least one document")
    device = current_device()
    chosen = parse_variant(variant or default_variant_text(device), gpu=device.kind == "cuda")
    loaded = load_model(model, chosen, device)
    if loaded.family != "bert":
        raise UsageError(f"{loaded.name} is a decoder: use `infertune generate --model {loaded.name}`")
    settings = loaded.embed_settings
    longest = max(map(len, loaded.tokenizer.encode_batch(texts)))
    seq = min(longest, settings.max_length, loaded.config.max_positions)
    with launch_configs(loaded, device, db or Settings.from_env().db, batch=min(batch_size, len(texts)), seq=seq,
                        gen=0) as report:
        vectors, timing = embed_timed(loaded.model, loaded.tokenizer, texts, batch_size, settings=settings)
    data = {"model": loaded.name, "variant": str(chosen), "device": device.label, "dimensions": vectors.shape[1],
            "embeddings_per_s": timing.embeddings_per_s, "seconds": timing.seconds,
            "configs": report.to_dict(), "interpreter": device.interpreter}
    if pairs:
        scores = (vectors[1:] @ vectors[0]).tolist()
        data["query"] = texts[0]
        data["ranking"] = sorted(({"document": d, "score": s} for d, s in zip(texts[1:], scores)),
                                 key=lambda r: -r["score"])
    else:
        data["embeddings"] = [{"text": t, "vector": v} for t, v in zip(texts, vectors.tolist())]
    if json_output:
        print_json(data)
        return
    if pairs:
        table = Table(title=f"relevance to: {texts[0]}")
        table.add_column("score", justify="right")
        table.add_column("document", overflow="fold")
        for row in data["ranking"]:
            table.add_row(f"{row['score']:.4f}", row["document"])
    else:
        table = Table(title=f"{loaded.name} embeddings ({vectors.shape[1]} dimensions, L2-normalized)")
        table.add_column("text", overflow="fold")
        table.add_column("first values", overflow="fold")
        for t, v in zip(texts, vectors.tolist()):
            table.add_row(t, " ".join(f"{x:+.4f}" for x in v[:6]) + " ...")
    console.print(table)
    console.print(f"{loaded.name} ({chosen}) on {device.label}: {len(texts)} texts in {timing.seconds:.3f} s "
                  f"({timing.embeddings_per_s:,.1f} embeddings/s)")
