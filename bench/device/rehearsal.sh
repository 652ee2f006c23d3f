#!/usr/bin/env bash
# `make gpu-rehearsal`: the GPU kit at CPU sizes on the GPU image's versions, offline.
# A Python 3.12 venv outside the clone (made once per machine, INFERTUNE_REHEARSAL_VENV) with the
# image's torch 2.11.0, triton 3.6.0, transformers 5.17.0, sentence-transformers 6.0.1 and the
# other versions of bench/device/image.txt -- numpy pinned below 2.4, because triton 3.6's CPU
# interpreter fails with numpy >= 2.4 (the GPU machine has numpy 2.5.2 and never interprets).
# Then, with the network cut off (unshare -n where it works, else pip and proxies pointed
# nowhere), bench/device/run.sh --smoke installs the bundle (.whl/) with --no-index and runs
# every step; each must end ok. A missing wheel, an import that needs the network, or code that
# breaks under those versions fails here.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${INFERTUNE_REHEARSAL_VENV:-$HOME/.cache/infertune/gpu-rehearsal-venv}
pins=(torch==2.11.0 triton==3.6.0 "numpy<2.4" transformers==5.17.0 sentence-transformers==6.0.1
      tokenizers==0.23.2 safetensors==0.8.0 accelerate==1.15.0 typer rich jinja2 nvidia-ml-py pytest pytest-xdist
      httpx prometheus-client
      packaging)
[ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null || { echo "gpu-rehearsal: no .whl/ (run make gpu-bundle)" >&2; exit 2; }
# What the carried wheels take from the image (attrs, narwhals, ...): the stand-in must hold it too.
# numpy stays below 2.4 here (see above).
mapfile -t from_image < <("${KIT_PYTHON:-.venv/bin/python}" -m bench.device.bundle --dest .whl --image-deps \
                          | grep -v '^numpy')
pins+=("${from_image[@]}")
stamp="$venv/.pins-$(printf '%s\n' "${pins[@]}" | sha1sum | cut -c1-12)"

find_python312() {
  for p in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if "$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then echo "$p"; return 0; fi
  done
  return 1
}

if [ ! -f "$stamp" ]; then
  py=$(find_python312) || { echo "gpu-rehearsal: no Python 3.12 on this machine (the GPU image's)" >&2; exit 2; }
  echo "gpu-rehearsal: making $venv with $py and the image's versions (once per machine)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  # The image's torch is PyPI's cu130 build; the machine's pip cap (/etc/xdg/pip) allows it.
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${pins[@]}"
  touch "$stamp"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
offline_env=(env "PATH=$venv/bin:$PATH" "OUT=$out" "INFERTUNE_KIT_SITE=$out/site" PIP_NO_INDEX=1
     "HTTP_PROXY=http://127.0.0.1:9" "HTTPS_PROXY=http://127.0.0.1:9" "http_proxy=http://127.0.0.1:9"
     "https_proxy=http://127.0.0.1:9" "NO_PROXY=127.0.0.1,localhost" "no_proxy=127.0.0.1,localhost" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1)
# A new network namespace starts with its loopback down; the GPU machine's is up (only the outside
# is cut off there), and the kit's serving step talks to its own server on 127.0.0.1: bring lo up.
offline() {
  if unshare -n true >/dev/null 2>&1; then
    unshare -n sh -c 'ip link set lo up 2>/dev/null || ifconfig lo up 2>/dev/null || true; exec "$@"' sh \
      "${offline_env[@]}" "$@"
  else
    "${offline_env[@]}" "$@"
  fi
}
if unshare -n true >/dev/null 2>&1; then
  echo "gpu-rehearsal: network cut off with unshare -n"
else
  echo "gpu-rehearsal: unshare -n refused here; pip and proxies pointed nowhere instead"
fi
offline bash bench/device/run.sh --smoke --budget 1500 || true  # judged by status.json below
echo "gpu-rehearsal: the offline sm_90 compile test under the image's triton"
offline env "PYTHONPATH=$out/site:$PWD" INFERTUNE_REQUIRE_SM90=1 \
  "$venv/bin/python" -m pytest -q -n 2 -p no:cacheprovider tests/test_sm90_compile.py
"$venv/bin/python" - "$out/status.json" <<'PY'
import json, sys
status = json.load(open(sys.argv[1]))
bad = [f"{s['name']}: {s['status']}" for s in status["steps"] if s["status"] != "ok"]
print("gpu-rehearsal: " + ("every step ok" if not bad else "FAILED " + ", ".join(bad)))
sys.exit(1 if bad else 0)
PY
