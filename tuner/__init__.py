"""The autotuner and the tuned config database.

Search: `space` (a spec's space as Optuna parameters), `samplers` (tpe, random, grid, qmc),
`worker` (isolated trial execution), `search` (the persistent study, budgets, early stop,
re-timing), `replay` (recorded measurements; strategies compared without a GPU).
Database: `database` (the reader the runtime imports and the writer), `db_schema`, `keys`,
`location`, `record`.
"""
