#!/usr/bin/env bash
# The one command on the GPU machine (no network there): install the carried wheels (.whl/) into
# a temporary target, run the project from source, and run the kit. Arguments go to
# `python -m bench.device run` (--budget SECONDS, --steps A,B, --smoke).
set -uo pipefail
cd "$(dirname "$0")/../.."
site=${INFERTUNE_KIT_SITE:-/tmp/infertune-site}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "could not install the wheels in .whl/" >&2; exit 1; }
  export PYTHONPATH="$site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
exec python3 -m bench.device run "$@"
