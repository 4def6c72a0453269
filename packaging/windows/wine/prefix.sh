#!/usr/bin/env bash
# A fresh 64-bit Wine prefix that runs Rust programs: Wine 8 lacks `ProcessPrng`
# (bcryptprimitives.dll), which Rust's std imports, so every Rust exe would exit with code 53.
# The shim (bcryptprimitives.c, built here with mingw) provides it. Test use only; never shipped.
#   packaging/windows/wine/prefix.sh DIR      (then: export WINEPREFIX=DIR)
set -euo pipefail
DIR=$1
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$DIR"
export WINEPREFIX=$DIR WINEARCH=win64 WINEDEBUG=-all
wine wineboot --init >/dev/null 2>&1
wineserver -w
x86_64-w64-mingw32-gcc -shared -O2 -o "$DIR/drive_c/windows/system32/bcryptprimitives.dll" \
    "$here/bcryptprimitives.c" "$here/bcryptprimitives.def" -ladvapi32
# No display here: Wine's null graphics driver still delivers window messages (WM_CLOSE).
wine reg add 'HKCU\Software\Wine\Drivers' /v Graphics /t REG_SZ /d null /f >/dev/null 2>&1
wineserver -w
