#!/usr/bin/env bash
# The MSI as IT deploys it, under Wine in a fresh prefix: a silent install with the public
# properties (CALLLOG a path full of MSI formatted-text characters), the files, the Run key, the
# Start-menu shortcut's AppUserModelID and the managed config checked; Group Policy values
# (HKLM and HKCU) shown locked; sign-in, sync, the installed agent queueing a Task while sending is
# paused; an upgrade to a newer MSI that keeps IT's edit, the queue and the cache, after which the
# Task is sent exactly once; then an uninstall and what it leaves.
#
#   CALLSYNC_SIM_BIN=target/debug/callsync packaging/windows/test-msi.sh MSI1 MSI2
# MSI1, MSI2: the same product, MSI2 a newer version (build-msi.sh). CALLSYNC_SIM_BIN: a Linux
# `callsync` built with the `sim` feature, for the simulated org (the MSI has none).
# Needs wine, wine64, mingw (for the prefix's shim), curl, python3.
set -euo pipefail
MSI1=$(realpath "$1") MSI2=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
AGENT= SIM=
cleanup() {
    [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null
    [ -n "$SIM" ] && kill "$SIM" 2>/dev/null
    wineserver -k 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

. "$here/../test-lib.sh"

take_sim_bin
unset RUST_LOG DISPLAY

step "a fresh Wine prefix"
"$here/wine/prefix.sh" "$T/prefix"
export WINEPREFIX=$T/prefix WINEDEBUG=-all
C=$WINEPREFIX/drive_c
EXE='C:\Program Files\callsync\callsync.exe'
cs() { wine "$EXE" "$@" 2>>"$T/wine.log" | tr -d '\r'; }
msi() { wine msiexec "$@" /qn /l*v 'C:\msi.log' >/dev/null 2>&1; }
ini_add() { printf '%s\n' "$2" >>"$1"; }

step "simulated org"
PORT=$(free_port)
"$SIM_BIN" sim --port "$PORT" --records 300 >"$T/sim.log" 2>&1 &
SIM=$!
wait_for 20 "the simulated org" curl -sf "http://127.0.0.1:$PORT/services/data/"

step "silent install of $(basename "$MSI1") with LOGINURL, CLIENTID, REGION, CALLLOG"
# MSI formatted text treats [ ] { } as its own: the path must arrive as written.
LOG_WIN='C:\PBX [1]\{agents} calls.jsonl'
LOG_UNIX="$C/PBX [1]/{agents} calls.jsonl"
mkdir -p "$(dirname "$LOG_UNIX")"
: >"$LOG_UNIX"
start=$(date +%s.%N)
msi /i "$(winepath -w "$MSI1")" LOGINURL="http://127.0.0.1:$PORT" CLIENTID=callsync-sim-client \
    REGION=JP "CALLLOG=$LOG_WIN" || fail "install: $(tr -d '\0' <"$C/msi.log" | grep -i 'error\|return value 3' | head)"
echo "   installed in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
for f in "Program Files/callsync/callsync.exe" "Program Files/callsync/ok.ico" \
         "Program Files/callsync/attention.ico" "ProgramData/callsync/config.toml"; do
    [ -e "$C/$f" ] || fail "$f is not installed"
done
run_key=$(wine reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Run' /v callsync 2>/dev/null | tr -d '\r')
has "$run_key" '"C:\Program Files\callsync\callsync.exe" run' || fail "no Run key for the agent: $run_key"
cs --version
# The shipped build has no simulated org.
cs sim --help >/dev/null 2>&1 && fail "the installed binary has the simulated org"
managed="$C/ProgramData/callsync/config.toml"
grep -q '# callsync — machine-wide managed configuration' "$managed" || fail "the managed file lost its comments"
show=$(cs config show)
for want in "salesforce.login_url = \"http://127.0.0.1:$PORT\"" 'salesforce.client_id = "callsync-sim-client"' \
            'phone.default_region = "JP"'; do
    has "$show" "$want" || fail "config show lacks $want"
done
has "$(line_of "$show" calllog.sources)" "path = '$LOG_WIN'" \
    || fail "CALLLOG came out wrong: $(grep -A1 sources "$managed")"

step "Group Policy: HKLM and HKCU values are locked, the machine's winning"
USERCFG="$C/users/$(whoami)/AppData/Roaming/callsync/config/config.toml"
mkdir -p "$(dirname "$USERCFG")"
cat >"$USERCFG" <<CONF
[auth]
store = "file"
[sync]
interval_secs = 3600
[ui]
language = "en"
[activity]
send_interval_secs = 1
[calllog]
poll_secs = 1
[salesforce]
redirect_port = $(free_port)
CONF
wine reg add 'HKLM\Software\Policies\callsync' /v sync.interval_secs /t REG_DWORD /d 1800 /f >/dev/null 2>&1
wine reg add 'HKCU\Software\Policies\callsync' /v sync.interval_secs /t REG_DWORD /d 60 /f >/dev/null 2>&1
wine reg add 'HKCU\Software\Policies\callsync' /v ui.language /t REG_SZ /d ja /f >/dev/null 2>&1
show=$(cs config show 2>&1)
has "$(line_of "$show" 'sync.interval_secs = 1800')" locked || fail "HKLM policy not locked: $(line_of "$show" interval_secs)"
has "$(line_of "$show" 'ui.language = "ja"')" locked || fail "HKCU policy not read: $(line_of "$show" ui.language)"
wine reg delete 'HKLM\Software\Policies\callsync' /f >/dev/null 2>&1
wine reg delete 'HKCU\Software\Policies\callsync' /f >/dev/null 2>&1

step "sign in (the test plays the browser) and sync"
wine "$EXE" connect --no-browser >"$T/connect.out" 2>&1 &
CONNECT=$!
wait_for 60 "the sign-in address" grep -q '^ *http' "$T/connect.out"
URL=$(grep -m1 '^ *http' "$T/connect.out" | tr -d ' \r')
curl -sSfL -o /dev/null "$URL" 2>"$T/curl.log" || fail "the browser step ($URL): $(cat "$T/curl.log")"
wait "$CONNECT" || fail "connect: $(cat "$T/connect.out")"
cs sync >/dev/null || fail "sync"
PHONE=$(sim_phone "$PORT") || fail "no Contact phone in the simulated org"
cs lookup "$PHONE" >/dev/null || fail "lookup of $PHONE"
cs doctor >"$T/doctor.out" 2>&1 || true
grep -qi "signed in\|sign-in" "$T/doctor.out" || fail "doctor: $(cat "$T/doctor.out")"
cs support-bundle --output 'C:\support.zip' >"$T/bundle.out" 2>&1 || fail "support-bundle"
[ -s "$C/support.zip" ] || fail "no support bundle written"
python3 -c "import sys, zipfile; sys.exit(0 if zipfile.ZipFile(sys.argv[1]).namelist() else 1)" "$C/support.zip" \
    || fail "the support bundle is not a zip"

step "the installed agent (as the Run key starts it, headless); a call queued while paused"
wine "$EXE" run --headless >"$T/agent1.log" 2>&1 &
AGENT=$!
wait_for 60 "the agent" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"running\": true'"
cs agent pause >/dev/null
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '%s\r\n' \
  "{\"call_id\":\"msi-upgrade-1\",\"event\":\"ringing\",\"at\":\"$NOW\",\"direction\":\"inbound\",\"remote\":\"$PHONE\"}" \
  "{\"call_id\":\"msi-upgrade-1\",\"event\":\"ended\",\"at\":\"$NOW\",\"outcome\":\"answered\",\"duration_s\":5}" \
  >>"$LOG_UNIX"
wait_for 60 "the queued Task" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"pending\": 1'"
# What the Restart Manager does at an upgrade: ask the agent to close.
cs agent quit >/dev/null
wait "$AGENT" || fail "the agent did not stop cleanly: $(cat "$T/agent1.log")"
AGENT=

step "IT edits the managed file; upgrade to $(basename "$MSI2")"
ini_add "$managed" '# IT: edited after the install'
msi /i "$(winepath -w "$MSI2")" || fail "upgrade: $(tr -d '\0' <"$C/msi.log" | grep -i 'error\|return value 3' | head)"
v2=$(wine reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall' /s 2>/dev/null | tr -d '\r' \
    | grep -A30 'callsync' | sed -n 's/.*DisplayVersion *REG_SZ *//p' | sort -u)
[ "$v2" = "$(basename "$MSI2" .msi | sed 's/.*_//')" ] || fail "after the upgrade, installed versions: '$v2'"
grep -q '# IT: edited after the install' "$managed" || fail "the upgrade lost IT's edit"
grep -q "127.0.0.1:$PORT" "$managed" || fail "the upgrade lost the managed values"

step "the new build: the queue and the cache kept, the Task sent exactly once"
wine "$EXE" run --headless >"$T/agent2.log" 2>&1 &
AGENT=$!
wait_for 60 "the new agent" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"running\": true'"
st=$(cs status --json)
has "$st" '"pending": 1' || fail "the queued Task did not survive the upgrade: $st"
[ "$(curl -sf "http://127.0.0.1:$PORT/__sim/rows/Task" | grep -o 'msi-upgrade-1' | wc -l)" -eq 0 ] \
    || fail "a paused Task was sent"
cs agent resume >/dev/null
wait_for 60 "the Task in Salesforce" sh -c "curl -sf http://127.0.0.1:$PORT/__sim/rows/Task | grep -q msi-upgrade-1"
sleep 2
[ "$(curl -sf "http://127.0.0.1:$PORT/__sim/rows/Task" | grep -o '"CallObject":"msi-upgrade-1"' | wc -l)" -eq 1 ] \
    || fail "the Task was not sent exactly once"
cs lookup "$PHONE" >/dev/null || fail "lookup of $PHONE after the upgrade"
cs agent quit >/dev/null
wait "$AGENT" || true
AGENT=

step "uninstall"
msi /x "$(winepath -w "$MSI2")" || fail "uninstall"
[ ! -e "$C/Program Files/callsync/callsync.exe" ] || fail "uninstall left the binary"
wine reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Run' /v callsync >/dev/null 2>&1 \
    && fail "uninstall left the Run key"
[ -e "$managed" ] || fail "uninstall removed the managed configuration (it is Permanent)"
[ -d "$C/users/$(whoami)/AppData/Local/callsync/data" ] || fail "uninstall touched the user's data"
echo "msi: all checks passed"
