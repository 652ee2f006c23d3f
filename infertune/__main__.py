"""`python -m infertune ...`: the CLI (what `profile --nsys/--ncu` re-runs under the tools)."""

from .cli import main

main()
