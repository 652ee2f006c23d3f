"""`python -m bench.device run [...]` on the GPU machine; `python -m bench.device ingest DIR` here."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "ingest"):
        print("usage: python -m bench.device run [--budget S] [--steps A,B] [--smoke] | ingest DIR", file=sys.stderr)
        return 2
    if argv[0] == "run":
        from .run import main as run_main
        return run_main(argv[1:])
    from .ingest import main as ingest_main
    return ingest_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
