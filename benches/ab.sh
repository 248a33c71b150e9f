#!/usr/bin/env bash
# Two builds of cardvault, A and B, measured in turns on PostgreSQL: each round starts one daemon
# of each build on a fresh database of its own (init, one merchant, one API key) and runs
# `cardvault bench` against it, A then B, so that a machine whose speed drifts over minutes
# affects both alike. Prints one line per build per round.
#
#   benches/ab.sh OLD_BINARY NEW_BINARY                    # reveal, 32 connections, 8 s, 3 rounds
#   OP=mixed CONNECTIONS=64 DURATION=8s ROUNDS=4 benches/ab.sh A B
#
# Needs a PostgreSQL server reachable as $PG_ADMIN_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) and psql; creates cardvault_ab_<pid>_<a|b> and
# drops them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/pg_vault.sh"
[ $# -eq 2 ] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
op="${OP:-reveal}"
conns="${CONNECTIONS:-32}"
duration="${DURATION:-8s}"
rounds="${ROUNDS:-3}"
admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  for side in a b; do
    psql "$admin" -qAtc "DROP DATABASE IF EXISTS cardvault_ab_$$_$side WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

one() { # side binary round
  local side="$1" bin="$2" db="cardvault_ab_$$_$1"
  local url="${admin%/*}/$db" dir="$work/$side"
  rm -rf "$dir"; mkdir -p "$dir"
  psql "$admin" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  new_pg_vault "$bin" "$admin" "$db" "$dir"
  local kf=(--database "$url" --key-file "$dir/vault.key")
  "$bin" serve "${kf[@]}" --socket "$dir/d.sock" --log-level warn >"$dir/daemon.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do [ -S "$dir/d.sock" ] && break; sleep 0.1; done
  local out
  out="$("$bin" bench --socket "$dir/d.sock" --api-key-file "$dir/api-key" --op "$op" \
    --connections "$conns" --duration "$duration")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  psql "$admin" -qAtc "DROP DATABASE $db WITH (FORCE)" >/dev/null
  printf 'round %s %s: %s ops/s, p99 %s ms\n' "$3" "$side" \
    "$(echo "$out" | awk '$1 == "throughput" {print $2; exit}')" \
    "$(echo "$out" | awk '$1 == "latency" {for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1); exit}')"
}

echo "== $op, $conns connections, $duration per run, $rounds rounds (a: $1, b: $2)"
for r in $(seq 1 "$rounds"); do
  one a "$1" "$r"
  one b "$2" "$r"
done
