#!/usr/bin/env bash
# The daemon's resident memory across rounds of load: one daemon on PostgreSQL (or, with
# ENGINE=sled, on a directory vault), then ROUNDS rounds of `cardvault bench` (each a new run: it
# first tokenizes its 10,000-card pool in batches of 1,000, then runs OP for DURATION), printing
# the daemon's VmRSS after each. Figures and how to read them: docs/operations.md, "Memory".
#
#   benches/memory.sh                                   # PostgreSQL, 30 rounds of 10 s reveal
#   ROUNDS=10 ENGINE=sled OP=get benches/memory.sh
#   DAEMON_ENV="MALLOC_ARENA_MAX=2" benches/memory.sh   # the daemon under another malloc setting
#
# Needs a release build (NO_BUILD=1 skips `cargo build --release`); for PostgreSQL, a server
# reachable as $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) and psql. It
# creates the database cardvault_memory_<pid> and drops it at the end.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. benches/pg_vault.sh
rounds="${ROUNDS:-30}"
op="${OP:-reveal}"
duration="${DURATION:-10s}"
conns="${CONNECTIONS:-64}"
admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="cardvault_memory_$$"
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p cardvault-cli
bin="$root/target/release/cardvault"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  [ "${ENGINE:-postgres}" = sled ] || \
    psql "$admin" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ "${ENGINE:-postgres}" = sled ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/vault.key"; echo >>"$work/vault.key"
  chmod 600 "$work/vault.key"
  at=(--data "$work/vault" --key-file "$work/vault.key")
  "$bin" init "${at[@]}" >/dev/null
  "$bin" merchant add 890490 --name Bench "${at[@]}" >/dev/null
  "$bin" apikey create --merchant 890490 --scopes tokenize,reveal --out "$work/api-key" "${at[@]}" \
    >/dev/null 2>&1
else
  new_pg_vault "$bin" "$admin" "$db" "$work"
  at=(--database "${admin%/*}/$db" --key-file "$work/vault.key")
fi
# shellcheck disable=SC2086 # DAEMON_ENV is a list of NAME=VALUE words
env ${DAEMON_ENV:-} "$bin" serve "${at[@]}" --socket "$work/d.sock" --log-level warn \
  >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -S "$work/d.sock" ] && break; sleep 0.1; done
[ -S "$work/d.sock" ] || { echo "the daemon did not start:" >&2; cat "$work/daemon.log" >&2; exit 1; }
echo "== ${ENGINE:-postgres}, $op at $conns connections, $duration per round, ${DAEMON_ENV:-default malloc}"
for i in $(seq 1 "$rounds"); do
  rate="$("$bin" bench --socket "$work/d.sock" --api-key-file "$work/api-key" --op "$op" \
    --connections "$conns" --duration "$duration" | awk '$1 == "throughput" {print $2; exit}')"
  echo "round $i: $rate ops/s, daemon $(awk '$1 == "VmRSS:" {print $2, $3}' "/proc/$pid/status")"
done
