#!/usr/bin/env bash
# One run, both engines: `cardvault bench` against one daemon on the embedded sled store, then
# against one daemon on PostgreSQL, then two daemons on one PostgreSQL database at once (their
# sum), then one daemon again on the grown database, with the PostgreSQL commits per token read
# from pg_stat_database (which lags by about a second: short runs under-count). The figures and how to
# read them are in docs/benchmarks.md ("Several daemons on PostgreSQL").
#
#   benches/engines.sh                      # 10 s per measurement, 32 connections
#   DURATION=20s CONNECTIONS=32 benches/engines.sh
#
# Needs: a release build (it runs `cargo build --release` first), a PostgreSQL server reachable
# as $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) with psql on the PATH.
# It creates the databases cardvault_bench_<pid> and cardvault_pgbench_<pid> and drops them at
# the end. With pgbench on the PATH it first measures the server alone (single-row INSERT
# transactions from 32 pgbench clients, the reference the issue's targets were set against), so
# figures from different machines can be compared.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. benches/pg_vault.sh
duration="${DURATION:-10s}"
conns="${CONNECTIONS:-32}"
admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="cardvault_bench_$$"
calib_db="cardvault_pgbench_$$"
url="${admin%/*}/$db"

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p cardvault-cli
bin="$root/target/release/cardvault"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$admin" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  psql "$admin" -qAtc "DROP DATABASE IF EXISTS $calib_db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_sock() { for _ in $(seq 1 300); do [ -S "$1" ] && return 0; sleep 0.1; done; echo "no socket $1" >&2; exit 1; }
commits() { psql "$admin" -qAtc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'"; }
bench() { # socket api-key-file op
  "$bin" bench --socket "$1" --api-key-file "$2" --op "$3" --connections "$conns" --duration "$duration"
}

echo "== sled (serve --dev), $conns connections, $duration each"
CARDVAULT_LOG=warn "$bin" serve --dev --log-level warn >"$work/dev.log" 2>&1 &
pids+=($!)
wait_sock /tmp/cardvault-dev/cardvault.sock
for op in tokenize reveal get; do
  echo "-- sled $op"
  bench /tmp/cardvault-dev/cardvault.sock /tmp/cardvault-dev/api-key "$op"
done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

if command -v pgbench >/dev/null; then
  echo "== the server alone: pgbench, 32 clients, one single-row INSERT per transaction, $duration"
  psql "$admin" -qAtc "CREATE DATABASE $calib_db" >/dev/null
  psql "${admin%/*}/$calib_db" -qAtc "CREATE TABLE t (k bigserial PRIMARY KEY, v bytea)" >/dev/null
  echo "INSERT INTO t (v) VALUES ('\\x$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')');" >"$work/insert.sql"
  pgbench -n -c 32 -j 2 -M prepared -T "${duration%s}" -f "$work/insert.sql" "${admin%/*}/$calib_db" 2>&1 \
    | grep -E '^(tps|latency average)'
  psql "$admin" -qAtc "DROP DATABASE $calib_db WITH (FORCE)" >/dev/null
fi

echo "== PostgreSQL ($url)"
new_pg_vault "$bin" "$admin" "$db" "$work"
kf=(--database "$url" --key-file "$work/vault.key")
start_daemon() { # name
  "$bin" serve "${kf[@]}" --socket "$work/$1.sock" --log-level warn >"$work/$1.log" 2>&1 &
  pids+=($!)
  wait_sock "$work/$1.sock"
}
start_daemon a
for op in tokenize reveal get; do
  before="$(commits)"
  echo "-- postgres, one daemon, $op"
  out="$(bench "$work/a.sock" "$work/api-key" "$op")"
  echo "$out"
  after="$(commits)"
  n="$(echo "$out" | awk '$1 == "requests" {print $2; exit}')"
  [ -n "$n" ] && [ "$n" -gt 0 ] && echo "   postgres commits: $((after - before)) for $n requests ($(awk "BEGIN{printf \"%.3f\", $((after - before))/$n}") per request)"
done

# Reveal waits for a read and then for its audit entry's group commit: at 32 connections it is
# bound by that latency, so the same op at more connections shows what the daemon can do.
for c in 64 128; do
  echo "-- postgres, one daemon, reveal at $c connections"
  "$bin" bench --socket "$work/a.sock" --api-key-file "$work/api-key" --op reveal --connections "$c" --duration "$duration"
done

echo "== postgres, two daemons on one database, tokenize at once ($conns connections each)"
start_daemon b
before="$(commits)"
bench "$work/a.sock" "$work/api-key" tokenize >"$work/a.out" &
ba=$!
bench "$work/b.sock" "$work/api-key" tokenize >"$work/b.out" &
bb=$!
wait "$ba" "$bb"
after="$(commits)"
cat "$work/a.out" "$work/b.out"
echo "   postgres commits during both: $((after - before))"

# The table grew meanwhile (a bigger index costs the server more per insert): one daemon again on
# the grown database, so "two daemons vs one" can be read against both sides of it.
echo "== postgres, one daemon again (after the two-daemon run), tokenize"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
bench "$work/a.sock" "$work/api-key" tokenize
