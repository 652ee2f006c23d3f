"""The GPU kit: run every headline figure on a lent GPU in one command, and ingest what comes back."""
