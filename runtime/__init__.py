"""The built-in inference runtime (decoder and encoder models). Not built yet: it arrives
with the runtime issue, and will launch kernels through kernels/ with configs resolved
through kernels.config_source."""
