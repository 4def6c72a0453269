#!/usr/bin/env bash
# Builds the Windows test executables (x86_64-pc-windows-gnu, cross-linked with mingw) and runs
# each under Wine in a fresh prefix. `cargo test` with a Wine runner would make assert_cmd start
# `wine` inside Wine, so the executables are run directly. Prints one line per executable and
# exits 1 if any test failed.
#   packaging/windows/wine/test.sh [PREFIX_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cd "$repo"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
start=$(date +%s)
exes=$(cargo test --locked --no-run --target x86_64-pc-windows-gnu --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
[ -n "$exes" ] || { cargo test --locked --no-run --target x86_64-pc-windows-gnu; exit 1; }
echo "windows test build: $(( $(date +%s) - start )) s"
prefix=${1:-$(mktemp -d)/prefix}
"$here/prefix.sh" "$prefix"
export WINEPREFIX=$prefix WINEDEBUG=-all
unset DISPLAY
failed=0
start=$(date +%s)
for exe in $exes; do
    name=$(basename "$exe" .exe | sed 's/-[0-9a-f]*$//')
    t0=$(date +%s)
    if out=$(wine "$exe" --test-threads 2 2>&1); then
        echo "$name: $(echo "$out" | tr -d '\r' | grep '^test result' | tail -1) ($(( $(date +%s) - t0 )) s)"
    else
        echo "$name: FAILED"
        echo "$out" | tr -d '\r' | grep -E '^test .* FAILED|panicked|^failures:' -A3 | head -40
        failed=1
    fi
done
echo "windows tests under Wine: $(( $(date +%s) - start )) s"
wineserver -k 2>/dev/null || true
exit $failed
