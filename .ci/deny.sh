#!/usr/bin/env bash
# Supply-chain checks (SECURITY.md, "Supply chain"), for CI and by hand:
#
#   .ci/deny.sh
#
# 1. bincode must not be in Cargo.lock or fuzz/Cargo.lock (plain grep: no tool, no network).
# 2. cargo-deny licenses, bans, sources on both workspaces, offline, against deny.toml. Always run;
#    any error fails the script. cargo-deny is installed if missing (`cargo install --locked`,
#    unoptimised, `--debug`: about 2 CPU-minutes instead of 5, and its checks take seconds
#    either way; cache $CARGO_HOME/bin in CI).
# 3. cargo-deny advisories against the RustSec database, from the first of:
#    a. a fresh fetch from GitHub;
#    b. the snapshot in ../shared/advisory-db (beside the checkout; CARDVAULT_ADVISORY_SNAPSHOT
#       overrides the path): copied into a throwaway git repository in a temporary directory and
#       given to cargo-deny as its database URL (file://), with a temporary copy of deny.toml;
#    c. an older cached copy in $CARGO_HOME/advisory-dbs.
#    The script says which one it used (for the snapshot: its commit and date from SNAPSHOT.md).
#    Any advisory not listed in deny.toml's [advisories] ignore (each entry with a `reason`)
#    fails the script. With no database at all it prints a loud NOT CHECKED banner and does not
#    fail, unless CARDVAULT_REQUIRE_ADVISORIES=1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
deny_version="0.20.2"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

echo "==> bincode is not a dependency"
for lock in Cargo.lock fuzz/Cargo.lock; do
    if grep -q '^name = "bincode"$' "$lock"; then
        echo "!!! bincode found in $lock: the project never uses bincode (postcard is the codec)" >&2
        exit 1
    fi
done
echo "no bincode in Cargo.lock, fuzz/Cargo.lock"

if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "==> cargo-deny not found: installing cargo-deny $deny_version (slow; cache \$CARGO_HOME/bin)"
    start=$(date +%s)
    cargo install cargo-deny --locked --debug --version "=$deny_version"
    echo "installed cargo-deny in $(( $(date +%s) - start )) s"
fi
cargo deny --version

# Crates that appear in only one of the two workspaces make "not encountered" warnings in the
# other; they are expected.
quiet=(-A license-exception-not-encountered -A license-not-encountered)

# cargo-deny reads the metadata of every target's crates (Windows-only ones too), so they must be
# in the local cache: fetch them (a no-op when they are; only a note when offline).
echo "==> cargo fetch (crates of every target, for cargo metadata)"
for dir in . fuzz; do
    (cd "$dir" && cargo fetch --locked --quiet) || echo "note: cargo fetch failed in $dir; relying on the local cache" >&2
done

echo "==> cargo deny: licenses, bans, sources (offline)"
cargo deny --offline check "${quiet[@]}" licenses bans sources
(cd fuzz && cargo deny --offline check "${quiet[@]}" licenses bans sources)

echo "==> every ignored advisory in deny.toml has a reason"
unreasoned=$(awk '/^\[advisories\]/{a=1; next} /^\[/{a=0} a && /id *=/ && !/reason *=/' deny.toml)
if [ -n "$unreasoned" ]; then
    echo "!!! deny.toml ignores an advisory without a reason:" >&2
    echo "$unreasoned" >&2
    exit 1
fi
echo "ok"

echo "==> cargo deny: advisories"
snapshot="${CARDVAULT_ADVISORY_SNAPSHOT:-$root/../shared/advisory-db}"
if timeout 120 cargo deny fetch db; then
    db="fresh copy of the RustSec advisory database"
elif [ -d "$snapshot/crates" ]; then
    snapshot="$(cd "$snapshot" && pwd)"
    commit=$(grep -o -m1 'commit [0-9a-f]\{40\} of [0-9-]*' "$snapshot/SNAPSHOT.md" 2>/dev/null || echo "commit unknown")
    snap_date=$(printf '%s\n' "$commit" | grep -o '[0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}' || true)
    echo "!!! could not fetch the advisory database; using the snapshot in $snapshot ($commit)" >&2
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # The same policy, with the database directory in the temporary directory.
    awk -v path="$work/dbs" '
        { print }
        /^\[advisories\]/ { print "db-path = \"" path "\""; print "maximum-db-staleness = \"P3650D\"" }
    ' deny.toml > "$work/deny.toml"
    # Ask cargo-deny (offline, nothing there yet) which directory it reads the database from.
    probe=$(cargo deny --offline --config "$work/deny.toml" check advisories 2>&1 || true)
    dbdir=$(printf '%s\n' "$probe" | grep -o "$work/dbs/[A-Za-z0-9._-]*" | head -n 1 || true)
    if [ -z "$dbdir" ]; then
        echo "!!! could not tell where cargo-deny reads its advisory database from:" >&2
        printf '%s\n' "$probe" >&2
        exit 1
    fi
    # A throwaway git repository holding the snapshot, dated as the snapshot.
    mkdir -p "$work/dbs"
    cp -R "$snapshot" "$dbdir"
    (
        cd "$dbdir"
        git init -q
        git add -A
        export GIT_AUTHOR_DATE="${snap_date:-now}T00:00:00Z" GIT_COMMITTER_DATE="${snap_date:-now}T00:00:00Z"
        [ -n "$snap_date" ] || unset GIT_AUTHOR_DATE GIT_COMMITTER_DATE
        git -c user.name=deny.sh -c user.email=deny.sh@localhost -c commit.gpgsign=false \
            commit -q -m "RustSec advisory-db snapshot ($commit)"
    )
    cargo deny --offline --config "$work/deny.toml" check "${quiet[@]}" advisories
    (cd fuzz && cargo deny --offline --config "$work/deny.toml" check "${quiet[@]}" advisories)
    echo "supply chain ok (advisories checked against the RustSec snapshot in $snapshot, $commit; newer advisories are not covered)"
    exit 0
elif compgen -G "$cargo_home/advisory-dbs/*/crates" >/dev/null; then
    db="OLDER cached copy of the RustSec advisory database (fetch failed)"
    echo "!!! could not fetch the advisory database; using the cached copy in $cargo_home/advisory-dbs" >&2
else
    cat >&2 <<'BANNER'
############################################################################################
###  ADVISORIES NOT CHECKED: the RustSec advisory database (github.com/RustSec/advisory-db)
###  could not be fetched, and there is neither a snapshot (../shared/advisory-db) nor a cached
###  copy. Licenses, bans and sources were checked.
###  Run .ci/deny.sh where GitHub is reachable (set CARDVAULT_REQUIRE_ADVISORIES=1 there).
############################################################################################
BANNER
    if [ "${CARDVAULT_REQUIRE_ADVISORIES:-0}" = "1" ]; then
        exit 1
    fi
    echo "supply chain: bincode, licenses, bans, sources ok; advisories NOT checked"
    exit 0
fi
cargo deny --offline check "${quiet[@]}" advisories
(cd fuzz && cargo deny --offline check "${quiet[@]}" advisories)
echo "supply chain ok (advisories checked against a $db)"
