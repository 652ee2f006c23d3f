"""The autotuner and the tuned config database.

Search: `space` (a spec's space as Optuna parameters), `samplers` (tpe, random, grid, qmc),
`worker` (isolated trial execution), `precompile` (compiling proposals in parallel),
`search` (the persistent study, budgets, early stop, re-timing beside the default),
`study_view` and `owner` (what a shared study says; trials of dead tuners found and
re-queued), `result` (TuneResult and its database record), `replay` (recorded
measurements; strategies compared without a GPU).
Database: `database` (the reader the runtime imports and the writer), `db_schema`, `keys`,
`location`, `record`.
"""
