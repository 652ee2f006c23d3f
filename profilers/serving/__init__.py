"""Load profiling of any OpenAI-compatible HTTP endpoint (vLLM, SGLang, TensorRT-LLM's
server, `infertune serve`): seeded arrival schedules and length distributions, a streaming
client that times every chunk, and the latency/throughput statistics. Imports nothing of ours;
infertune/serve_profile.py wires it to the CLI and the run directory."""
