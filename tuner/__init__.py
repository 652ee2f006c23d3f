"""The autotuner (Optuna search over tile and quantization configs) and the tuned config
database. Not built yet: it arrives with the autotuner issue. The kernel library's
pluggable config source (kernels.config_source) is where its database will plug in."""
