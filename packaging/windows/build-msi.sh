#!/usr/bin/env bash
# Builds the MSI from callsync.wxs with wixl (Debian package `wixl`, WiX v3 syntax), here on
# Linux, and applies what wixl ignores or cannot read, so that the result is the MSI the source
# describes:
#   - NeverOverwrite + Permanent on the managed config component (IT's edits survive upgrades;
#     uninstall leaves the file),
#   - the Secure flag of the public properties (SecureCustomProperties),
#   - RemoveExistingProducts right after InstallInitialize (MajorUpgrade/@Schedule),
#   - the Start-menu shortcut's AppUserModelID (MsiShortcutProperty; toasts need it).
# util:CloseApplication (WiX util extension) is left out: Windows Installer's Restart Manager
# asks the agent to close with the same WM_CLOSE.
#
#   packaging/windows/build-msi.sh EXE VERSION OUT.msi
# EXE: a Windows callsync.exe built without the `sim` feature (what ships).
set -euo pipefail
EXE=$1 VERSION=$2 OUT=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/src/assets/icons" "$stage/src/packaging/linux"
cp "$EXE" "$stage/bin/callsync.exe"
cp "$repo"/assets/icons/*.ico "$stage/src/assets/icons/"
cp "$repo/packaging/linux/config.toml" "$stage/src/packaging/linux/"
# wixl reads neither ShortcutProperty nor the util extension: the same source without them.
python3 - "$here/callsync.wxs" "$stage/callsync.wxs" <<'PY'
import re, sys
s = open(sys.argv[1], encoding="utf-8").read()
s = re.sub(r"\s*<ShortcutProperty [^>]*/>", "", s)
s = re.sub(r"\s*<util:CloseApplication [^>]*/>", "", s, flags=re.S)
open(sys.argv[2], "w", encoding="utf-8").write(s)
PY
# wixl wants relative source paths.
(cd "$stage" && wixl -a x64 -D "Version=$VERSION" -D BinDir=bin/ -D SrcDir=src/ \
    -o callsync.msi callsync.wxs 2> >(grep -v 'GLib-GObject-WARNING\|^$' >&2))
msi=$stage/callsync.msi
sql() { msibuild "$msi" -q "$1"; }
# Component attributes: msidbComponentAttributes64bit 256 + NeverOverwrite 128 + Permanent 16.
# Component attributes: msidbComponentAttributes64bit 256 + NeverOverwrite 128 + Permanent 16.
sql "UPDATE Component SET Attributes=400 WHERE Component='ManagedConfig'"
table() { msiinfo export "$msi" "$1" | tr -d '\r'; }
secure=$(table Property | sed -n 's/^SecureCustomProperties\t//p')
sql "UPDATE Property SET Value='CALLLOG;CALLLOGKIND;CLIENTID;LOGINURL;REGION${secure:+;$secure}' WHERE Property='SecureCustomProperties'"
# wixl ignores MajorUpgrade/@Schedule and Custom/@After: the old product goes first, and the
# managed file is written once the files are in place (InstallFiles is 4000).
sql "UPDATE InstallExecuteSequence SET Sequence=1501 WHERE Action='RemoveExistingProducts'"
sql "UPDATE InstallExecuteSequence SET Sequence=4001 WHERE Action='WriteManagedConfig'"
sql "CREATE TABLE \`MsiShortcutProperty\` (\`MsiShortcutProperty\` CHAR(72) NOT NULL, \`Shortcut_\` CHAR(72) NOT NULL, \`PropertyKey\` CHAR(0) NOT NULL LOCALIZABLE, \`PropVariantValue\` CHAR(0) NOT NULL LOCALIZABLE PRIMARY KEY \`MsiShortcutProperty\`)"
sql "INSERT INTO \`MsiShortcutProperty\` (\`MsiShortcutProperty\`, \`Shortcut_\`, \`PropertyKey\`, \`PropVariantValue\`) VALUES ('AppUserModelId', 'StartMenuShortcut', 'System.AppUserModel.ID', 'callsync.agent')"
# Check what was applied (an msibuild that changed nothing fails here, not at install).
table Component >"$stage/c" && grep -q $'^ManagedConfig\t.*\t400\t' "$stage/c" || { echo "NeverOverwrite not applied" >&2; exit 1; }
table InstallExecuteSequence >"$stage/s" && grep -q $'^WriteManagedConfig\tNOT REMOVE\t4001' "$stage/s" || { echo "custom action not placed" >&2; exit 1; }
mv "$msi" "$OUT"
echo "$OUT: $(du -h "$OUT" | cut -f1)"
