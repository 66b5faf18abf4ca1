#!/usr/bin/env bash
# The workspace's dependency rules (DESIGN §3), checked from cargo's own resolution:
#  1. apps/shared depends on no workspace crate;
#  2. no app depends on actix-web, async-graphql or apalis;
#  4. graphql and workers never depend on each other.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

fail=0
deps_of() { cargo tree --quiet --offline -e normal --prefix none -p "$1" 2>/dev/null | awk '{print $1}' | sort -u; }

for manifest in apps/*/Cargo.toml; do
    pkg="$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)"
    [ "$pkg" = "shiftcover-testkit" ] && continue
    deps="$(deps_of "$pkg")"
    for banned in actix-web async-graphql apalis apalis-core apalis-redis; do
        if grep -qx "$banned" <<<"$deps"; then
            echo "rule 2: $pkg depends on $banned (apps are plain Rust)"; fail=1
        fi
    done
    if [ "$pkg" = "shiftcover-shared" ] && grep -q '^shiftcover-' <<<"$(grep -vx shiftcover-shared <<<"$deps")"; then
        echo "rule 1: shiftcover-shared depends on a workspace crate"; fail=1
    fi
done
grep -qx shiftcover-workers <<<"$(deps_of shiftcover-graphql)" && { echo "rule 4: graphql depends on workers"; fail=1; }
grep -qx shiftcover-graphql <<<"$(deps_of shiftcover-workers)" && { echo "rule 4: workers depends on graphql"; fail=1; }

[ "$fail" -eq 0 ] && echo "dependency rules hold"
exit "$fail"
