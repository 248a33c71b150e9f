#!/usr/bin/env bash
# Supply-chain checks (SECURITY.md, "Supply chain"), for CI and by hand:
#
#   .ci/deny.sh
#
# 1. bincode must not be in Cargo.lock or fuzz/Cargo.lock (plain grep: no tool, no network).
# 2. cargo-deny licenses, bans, sources on both workspaces, offline, against deny.toml. Always run;
#    any error fails the script. cargo-deny is installed if missing (`cargo install --locked`,
#    about 13 min wall / 5 min CPU on the 2-core dev machine: cache $CARGO_HOME/bin in CI).
# 3. cargo-deny advisories, which needs the RustSec database from GitHub. If it can be fetched,
#    a finding fails the script. If not, an older copy in $CARGO_HOME/advisory-dbs is used (said
#    so); with no copy at all the step prints a loud NOT CHECKED banner and does not fail, unless
#    CARDVAULT_REQUIRE_ADVISORIES=1 (use that where GitHub is reachable, e.g. a release job).
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
    cargo install cargo-deny --locked --version "=$deny_version"
    echo "installed cargo-deny in $(( $(date +%s) - start )) s"
fi
cargo deny --version

# Crates that appear in only one of the two workspaces make "not encountered" warnings in the
# other; they are expected.
quiet=(-A license-exception-not-encountered -A license-not-encountered)

echo "==> cargo deny: licenses, bans, sources (offline)"
cargo deny --offline check "${quiet[@]}" licenses bans sources
(cd fuzz && cargo deny --offline check "${quiet[@]}" licenses bans sources)

echo "==> cargo deny: advisories"
if cargo deny fetch db; then
    db="fresh copy of the RustSec advisory database"
elif compgen -G "$cargo_home/advisory-dbs/*/crates" >/dev/null; then
    db="OLDER cached copy of the RustSec advisory database (fetch failed)"
    echo "!!! could not fetch the advisory database; using the cached copy in $cargo_home/advisory-dbs" >&2
else
    cat >&2 <<'BANNER'
############################################################################################
###  ADVISORIES NOT CHECKED: the RustSec advisory database (github.com/RustSec/advisory-db)
###  could not be fetched and no cached copy exists. Licenses, bans and sources were checked.
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
