#!/usr/bin/env bash
# Fuzz smoke test for CI: build every fuzz target with stable Rust (no cargo-fuzz, no nightly;
# the `smoke` profile of fuzz/Cargo.toml: less optimised, quicker to build)
# and run each one for a few seconds on a scratch copy of its committed seed corpus, one per core
# at a time.
#
#   .ci/fuzz-smoke.sh                    # every target, 5 s each
#   FUZZ_SECONDS=60 .ci/fuzz-smoke.sh    # longer
#   FUZZ_JOBS=1 .ci/fuzz-smoke.sh        # one target at a time (default: one per core)
#   .ci/fuzz-smoke.sh open_record        # some targets only
#   FUZZ_SKIP="a b" .ci/fuzz-smoke.sh    # all but these (known open findings, see fuzz/README.md)
#   FUZZ_BUILD_ONLY=1 .ci/fuzz-smoke.sh  # build the targets, run nothing (.ci/run, beside the tests)
#
# Fails if a target does not build, or if libFuzzer reports a crash, panic, failed assertion,
# timeout or out-of-memory. A crashing input is kept in fuzz/artifacts/<target>/ (gitignored);
# upload that directory from CI on failure. See fuzz/README.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
seconds="${FUZZ_SECONDS:-5}"
host="$(rustc -vV | sed -n 's/^host: //p')"

# The instrumentation cargo-fuzz itself passes (cargo-fuzz `src/project.rs`), minus
# AddressSanitizer (the vault is `#![forbid(unsafe_code)]`, and ASan needs `-Zsanitizer`) and
# minus `-Clink-dead-code` (only useful for coverage reports). None of these needs nightly.
# `--target` keeps them away from build scripts and proc macros, which are not linked with
# libFuzzer. Debug assertions and overflow checks stay on, as under cargo-fuzz.
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks ${RUSTFLAGS:-}"
# Lets cargo-fuzz-aware build scripts know; harmless otherwise.
export CARGO_FUZZ=1

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$fuzz_dir"/fuzz_targets/*.rs; do
        t="$(basename "$f" .rs)"
        if [[ " ${FUZZ_SKIP:-} " == *" $t "* ]]; then
            echo "==> SKIPPING $t (FUZZ_SKIP): an open finding, see fuzz/README.md" >&2
            continue
        fi
        targets+=("$t")
    done
fi

echo "==> building ${#targets[@]} fuzz targets for $host"
(
    cd "$fuzz_dir"
    cargo build --locked --profile smoke --bins --target "$host" --target-dir "$fuzz_dir/target"
)
bin_dir="$fuzz_dir/target/$host/smoke"
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then
    echo "built ${#targets[@]} fuzz targets in $bin_dir"
    exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# One target per core at a time (each libFuzzer run is single-threaded): FUZZ_JOBS overrides.
jobs="${FUZZ_JOBS:-$(nproc)}"
run_one() { # target; its log and exit status end up in $scratch
    local t="$1"
    # Fuzz a copy, so the committed corpus only grows when someone means it to.
    mkdir -p "$scratch/$t" "$fuzz_dir/artifacts/$t"
    if [ -d "$fuzz_dir/corpus/$t" ]; then
        cp -R "$fuzz_dir/corpus/$t/." "$scratch/$t/"
    fi
    local rc=0
    "$bin_dir/$t" "$scratch/$t" \
        -max_total_time="$seconds" \
        -rss_limit_mb=1024 \
        -timeout=10 \
        -print_final_stats=1 \
        -artifact_prefix="$fuzz_dir/artifacts/$t/" \
        >"$scratch/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$scratch/$t.rc"
}
echo "==> running each target for ${seconds}s, $jobs at a time"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    run_one "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
    echo "==> $t: ${seconds}s"
    if [ "$(cat "$scratch/$t.rc" 2>/dev/null)" != "0" ]; then
        tail -n 60 "$scratch/$t.log" >&2
        echo "!!! $t FAILED; reproducer(s) in fuzz/artifacts/$t/" >&2
        failed+=("$t")
    else
        grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' \
            "$scratch/$t.log" || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke passed: ${targets[*]}"
