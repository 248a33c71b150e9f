#!/usr/bin/env bash
# Contract test: schemathesis, every check, against a throwaway dev daemon (`serve --dev`) on a
# loopback TCP port, driven by docs/openapi.json. Exits non-zero on any failure.
#
# Installs schemathesis (pinned) into a venv the first time (target/contract-venv, or
# $CONTRACT_VENV). Bounded: $CONTRACT_EXAMPLES cases per operation (default 30), deterministic generation
# (the same cases every run).
# `POST /admin/backup` and `POST /admin/audit/archive` are left out: they write files wherever a
# generated path points (the daemon's own tests cover their path checks).
set -euo pipefail
cd "$(dirname "$0")/.."

st_version="4.32.5"
venv="${CONTRACT_VENV:-target/contract-venv}"
examples="${CONTRACT_EXAMPLES:-30}"

if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "== installing schemathesis $st_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$st_version"
fi
# CONTRACT_INSTALL_ONLY=1: install and stop (.ci/run installs it in the background).
[ -z "${CONTRACT_INSTALL_ONLY:-}" ] || exit 0

# CONTRACT_NO_BUILD=1: the binary the workspace's tests built (.ci/run) is used as it is.
if [ -z "${CONTRACT_NO_BUILD:-}" ]; then
  echo "== building cardvault"
  cargo build --locked --quiet --bin cardvault
fi
bin="${CARGO_TARGET_DIR:-target}/debug/cardvault"
[ -x "$bin" ] || { echo "no $bin" >&2; exit 1; }
# The daemon is on loopback: never through a proxy set for pip.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sock="$tmp/run/cardvault.sock"
echo "== starting serve --dev on 127.0.0.1:$port (log: $tmp/daemon.log)"
"$bin" serve --dev --socket "$sock" --listen "127.0.0.1:$port" \
  --log-level warn >"$tmp/daemon.log" 2>&1 &
pid=$!
ready=""
for _ in $(seq 1 300); do
  if [ -s "$tmp/run/api-key" ] && python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2)' "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/daemon.log"; echo "the daemon exited"; exit 1; }
  sleep 0.1
done
[ -n "$ready" ] || { cat "$tmp/daemon.log"; echo "the daemon did not answer /health" >&2; exit 1; }
key="$(cat "$tmp/run/api-key")"
operator_key="$(cat "$tmp/run/operator-key")"

echo "== schemathesis $st_version: every check (see .ci/contract.toml), $examples examples per operation, deterministic"
start=$(date +%s)
status=0
# Run from the temporary directory: schemathesis keeps its crash files in ./.schemathesis.
repo="$(pwd)"
venv="$(cd "$venv" && pwd)"
# Two passes: the merchant key for the token, gateway and hosted-fields routes, the operator key
# for /admin (merchant keys cannot administer).
run_pass() {
  (cd "$tmp" && "$venv/bin/schemathesis" --config-file "$repo/.ci/contract.toml" run "$repo/docs/openapi.json" \
    --url "http://127.0.0.1:$port" \
    --header "Authorization: Bearer $1" \
    --exclude-path /admin/backup \
    --exclude-path /admin/audit/archive \
    --max-examples "$examples" \
    --generation-deterministic \
    --workers 1 \
    --no-color \
    --report junit --report-dir "$tmp/report-$2" "${@:3}") || status=$?
}
run_pass "$key" merchant --exclude-path-regex '^/admin/'
run_pass "$operator_key" operator --include-path-regex '^/admin/'
echo "== schemathesis finished in $(( $(date +%s) - start )) s, exit $status"
if grep -E "panicked|ERROR" "$tmp/daemon.log"; then
  echo "the daemon logged an error or a panic (above)"
  status=1
fi
exit "$status"
