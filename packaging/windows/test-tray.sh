#!/usr/bin/env bash
# The Windows tray and screen pop, seen on screen under Wine + Xvfb: the agent (the Windows
# build) against the simulated org shows its icon in Wine's tray window; the menu, opened through
# the test hook (Wine delivers no clicks to tray icons), shows the status line, cached counts,
# pending Tasks and "Errors (N)" in English and in Japanese (checked by OCR); a click on "Pause
# sending" pauses sending (checked through the control pipe); a ringing line shows a balloon
# with the caller's name; a caller created after the last sync is named; the "Current call"
# submenu picks the other of two matches and the Task follows; a second start shows the running
# agent in a balloon. Prints the figures: start → icon visible, ringing line → balloon (p50/p99
# over RINGS rings, by the agent and on screen). Screenshots: target/wine-tray/.
#
#   CALLSYNC_SIM_BIN=target/debug/callsync packaging/windows/test-tray.sh EXE [RINGS]
# With IDLE_SECS=300 it also measures the idle agent (with its tray) over that time with 100,000
# cached records: CPU seconds per 10 minutes and private memory (the Wine process's anonymous
# resident memory, which is what Windows counts as private bytes).
# EXE: callsync.exe (x86_64-pc-windows-gnu). CALLSYNC_SIM_BIN: a Linux `callsync` built with the
# `sim` feature. Needs wine, wine64, mingw, Xvfb, xdotool, ImageMagick, tesseract (eng, jpn),
# fonts-wqy-microhei, curl, python3.
set -euo pipefail
EXE=$(realpath "$1")
RINGS=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
OUT=$repo/target/wine-tray
mkdir -p "$OUT"
T=$(mktemp -d)
AGENT= SIM= XVFB=
cleanup() {
    [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null
    [ -n "$SIM" ] && kill "$SIM" 2>/dev/null
    WINEPREFIX=$T/prefix wineserver -k 2>/dev/null || true
    [ -n "$XVFB" ] && kill "$XVFB" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

. "$here/../test-lib.sh"

take_sim_bin
unset RUST_LOG

now() { date +%s.%N; }
ms() { python3 -c "print(round(($2 - $1) * 1000))"; }
# Mean brightness (0–1) of WxH+X+Y on the screen.
brightness() { import -window root png:- 2>/dev/null | convert - -crop "$1" +repage -colorspace Gray -format '%[fx:mean]' info:; }
shot() { import -window root "$OUT/$1"; }
# OCR of an area of a screenshot, grey and then darkened (the disabled, grey status
# lines read only so), scaled three times.
ocr() { # png crop lang
    convert "$1" -crop "$2" +repage -colorspace Gray -resize 300% "$T/ocr.png"
    convert "$T/ocr.png" -gamma 0.3 "$T/ocr-bw.png"
    tesseract "$T/ocr.png" - --psm 6 -l "$3" 2>/dev/null
    tesseract "$T/ocr-bw.png" - --psm 6 -l "$3" 2>/dev/null
}
# Screen centre of the first OCR word containing $4 in area $2 of $1 (lang $3): "x y".
word_at() {
    convert "$1" -crop "$2" +repage -colorspace Gray -resize 300% "$T/ocr.png"
    local ox=${2#*+} ; local oy=${ox#*+}; ox=${ox%+*}
    tesseract "$T/ocr.png" - --psm 6 -l "$3" tsv 2>/dev/null | awk -F'\t' -v w="$4" -v ox="$ox" -v oy="$oy" \
        'NR > 1 && index($12, w) { print int(ox + ($7 + $9 / 2) / 3), int(oy + ($8 + $10 / 2) / 3); exit }'
}
percentile() { python3 -c "import sys, statistics; v = sorted(float(x) for x in sys.argv[2:]); print(round(v[min(len(v) - 1, int(len(v) * float(sys.argv[1]) / 100))]))" "$@"; }

step "a display (Xvfb), a CJK font linked for Wine, a fresh Wine prefix"
for n in $(seq 90 120); do [ -e "/tmp/.X$n-lock" ] || break; done
Xvfb ":$n" -screen 0 1024x768x24 -nolisten tcp >"$T/xvfb.log" 2>&1 &
XVFB=$!
export DISPLAY=":$n"
wait_for 10 "the display" xdpyinfo
"$here/wine/prefix.sh" "$T/prefix"
export WINEPREFIX=$T/prefix WINEDEBUG=-all
# Windows on the X display (prefix.sh chose the null driver for headless tests).
wine reg delete 'HKCU\Software\Wine\Drivers' /v Graphics /f >/dev/null 2>&1
# Japanese menus: Wine's UI fonts fall back to WenQuanYi Micro Hei for CJK characters.
for face in Tahoma "MS Shell Dlg" "MS Shell Dlg 2" "Segoe UI"; do
    wine reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\FontLink\SystemLink' /v "$face" \
        /t REG_MULTI_SZ /d 'wqy-microhei.ttc,WenQuanYi Micro Hei' /f >/dev/null 2>&1
done
wineserver -w

step "simulated org, settings, sign-in and sync"
PORT=$(free_port)
IDLE_SECS=${IDLE_SECS:-0}
RECORDS=300
[ "$IDLE_SECS" -gt 0 ] && RECORDS=100000
"$SIM_BIN" sim --port "$PORT" --records "$RECORDS" >"$T/sim.log" 2>&1 &
SIM=$!
wait_for 20 "the simulated org" curl -sf "http://127.0.0.1:$PORT/services/data/"
mkdir -p "$T/d/data"
: >"$T/d/calls.jsonl"
export CALLSYNC_DATA_DIR=$(winepath -w "$T/d/data") CALLSYNC_CONFIG=$(winepath -w "$T/d/user.toml")
export CALLSYNC_MANAGED_CONFIG=$(winepath -w "$T/d/managed.toml")
settings() { # language
    cat >"$T/d/user.toml" <<CONF
[salesforce]
login_url = "http://127.0.0.1:$PORT"
client_id = "callsync-sim-client"
redirect_port = $(free_port)
[auth]
store = "file"
[sync]
interval_secs = 3600
[activity]
send_interval_secs = 1
[calllog]
sources = [{ kind = "native", path = '$(winepath -w "$T/d/calls.jsonl")' }]
poll_secs = 1
[ui]
language = "$1"
CONF
}
settings en
cs() { wine "$EXE" "$@" 2>>"$T/wine.log" | tr -d '\r'; }
wine "$EXE" connect --no-browser >"$T/connect.out" 2>&1 &
CONNECT=$!
wait_for 60 "the sign-in address" grep -q '^ *http' "$T/connect.out"
curl -sSfL -o /dev/null "$(grep -m1 '^ *http' "$T/connect.out" | tr -d ' \r')" || fail "the browser step"
wait "$CONNECT" || fail "connect: $(cat "$T/connect.out")"
t0=$(now)
cs sync >/dev/null || fail "sync"
echo "   synced $RECORDS records in $(ms "$t0" "$(now)") ms"
PHONE=$(sim_phone "$PORT") || fail "no Contact phone in the simulated org"
NAME=$(curl -sf "http://127.0.0.1:$PORT/__sim/rows/Contact" | python3 -c \
    'import json, sys; print(next(r["Name"] for r in json.load(sys.stdin) if r.get("Phone") == sys.argv[1]))' "$PHONE")

# The tray's window and the first icon slot in it (Wine's stand-alone "Wine System Tray").
tray_geometry() { xwininfo -root -tree | sed -n 's/.*"Wine System Tray".*  \([0-9]*x[0-9]*+[0-9]*+[0-9]*\)  .*/\1/p' | head -1; }
start_agent() { # log
    CALLSYNC_TEST_HOOKS=1 wine "$EXE" run >"$T/$1" 2>&1 &
    AGENT=$!
}
icon_visible() {
    local g; g=$(tray_geometry); [ -n "$g" ] || return 1
    local x=${g#*+}; local y=${x#*+}; x=${x%+*}
    # The first slot is white until the icon is drawn in it.
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.9 else 1)" "$(brightness "16x16+$((x + 2))+$((y + 2))")"
}
quit_agent() {
    cs agent quit >/dev/null || true
    wait "$AGENT" || fail "the agent did not stop cleanly: $(tail -5 "$T/$1")"
    AGENT=
}

step "the agent with its tray (English): start → icon"
t0=$(now)
start_agent agent-en.log
wait_for 60 "the tray icon" icon_visible
t_icon=$(ms "$t0" "$(now)")
wait_for 30 "the agent's pipe" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"running\": true'"
G=$(tray_geometry)
TX=${G#*+}; TY=${TX#*+}; TX=${TX%+*}; TH=${G#*x}; TH=${TH%%+*}
shot tray-en.png
echo "   start → icon visible: $t_icon ms (tray at $G)"

step "the menu (through the test hook): status, counts, queue, errors"
MX=$((TX + 20)) MY=$((TY + TH + 3))
cs agent menu "$MX" "$MY" | grep -q ok || fail "the menu hook was refused"
sleep 1.5
shot menu-en.png
AREA="420x220+$MX+$MY"
text=$(ocr "$OUT/menu-en.png" "$AREA" eng)
for want in "Connected as" "Cached:" "contacts" "Pending Tasks: 0" "Errors (0)" "Pause sending" "Quit"; do
    has "$text" "$want" || fail "the English menu lacks \"$want\": $text"
done
echo "   English menu read: $(echo "$text" | tr '\n' '|' | tr -s '|')"

step "a click on \"Pause sending\" pauses sending (seen through the pipe)"
xy=$(word_at "$OUT/menu-en.png" "$AREA" eng Pause)
[ -n "$xy" ] || fail "\"Pause\" not found on the menu"
xdotool mousemove $xy click 1
wait_for 10 "sending paused" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"paused\": \"'"
cs agent resume >/dev/null

step "$RINGS ringing lines → balloons with the caller's name"
BALLOON="130x50+$((TX + 2))+$((TY + TH + 15))"
ring() { # call id, number
    printf '%s\r\n' "{\"call_id\":\"$1\",\"event\":\"ringing\",\"at\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"direction\":\"inbound\",\"remote\":\"$2\"}" >>"$T/d/calls.jsonl"
}
bright() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0.6 else 1)" "$(brightness "$BALLOON")"; }
dark() { ! bright; }
log=$(winepath -u "$CALLSYNC_DATA_DIR")/logs
agent_ms=() screen_ms=()
for i in $(seq 1 "$RINGS"); do
    t0=$(now)
    ring "tray-ring-$i" "$PHONE"
    wait_for 20 "pop $i by the agent" sh -c "cat '$log'/callsync.*.log | grep -q 'screen pop shown (balloon) call=tray-ring-$i\$'"
    # When the agent handed the balloon to Windows, by its own log's clock (no polling in it).
    shown=$(cat "$log"/callsync.*.log | tr -d '\r' | grep "screen pop shown (balloon) call=tray-ring-$i\$" | head -1 | cut -d' ' -f1)
    agent_ms+=("$(ms "$t0" "$(date -d "$shown" +%s.%N)")")
    # Wine hides the balloon on show and draws the new one 2 s later (BALLOON_CREATE_TIMEOUT).
    [ "$i" -eq 1 ] || wait_for 10 "the old balloon gone" dark
    wait_for 20 "balloon $i on screen" bright
    screen_ms+=("$(ms "$t0" "$(now)")")
    [ "$i" -eq 1 ] && { sleep 0.5; shot balloon-en.png; }
done
text=$(ocr "$OUT/balloon-en.png" "160x80+$TX+$((TY + TH + 5))" eng)
has "$text" "${NAME%% *}" || fail "the balloon does not name $NAME: $text"
echo "   balloon: $(echo "$text" | tr '\n' '|' | tr -s '|')"
echo "   ringing line → balloon handed to Windows (the agent's log): p50 $(percentile 50 "${agent_ms[@]}") ms, p99 $(percentile 99 "${agent_ms[@]}") ms; on screen (polled, ~0.2 s steps; Wine waits 2 s before drawing a balloon): p50 $(percentile 50 "${screen_ms[@]}") ms, p99 $(percentile 99 "${screen_ms[@]}") ms ($RINGS rings)"

step "a caller created after the last sync: \"Looking up…\", then a balloon naming them (one API call)"
FRESH_PHONE="03-4444-$(printf %04d $((RANDOM % 10000)))"
curl -sf -X POST -H 'content-type: application/json' \
    -d "{\"Name\":\"Fresh Newcomer\",\"LastName\":\"Newcomer\",\"Phone\":\"$FRESH_PHONE\"}" \
    "http://127.0.0.1:$PORT/__sim/records/Contact" >/dev/null || fail "creating the fresh Contact"
api_calls() { curl -sf "http://127.0.0.1:$PORT/__sim/state" | python3 -c 'import json, sys; print(json.load(sys.stdin)["api_calls"])'; }
calls0=$(api_calls)
wait_for 10 "the old balloon gone" dark
ring tray-fresh "$FRESH_PHONE"
# Two balloons: "Looking up…" and the answer that replaces it.
wait_for 20 "the answer's balloon" sh -c "[ \$(cat '$log'/callsync.*.log | tr -d '\r' | grep -c 'screen pop shown (balloon) call=tray-fresh\$') -ge 2 ]"
calls1=$(api_calls)
[ $((calls1 - calls0)) -eq 1 ] || fail "the refresh cost $((calls1 - calls0)) API calls, not 1"
sleep 0.5
wait_for 10 "the old balloon gone" dark
wait_for 20 "the fresh caller's balloon on screen" bright
sleep 0.5
shot balloon-fresh-en.png
text=$(ocr "$OUT/balloon-fresh-en.png" "160x80+$TX+$((TY + TH + 5))" eng)
has "$text" "Fresh New" || fail "the balloon does not name the fresh caller: $text"
echo "   fresh caller's balloon: $(echo "$text" | tr '\n' '|' | tr -s '|') (1 extra API call)"

step "two Contacts on one number: the tray's \"Current call\" submenu picks the other, the Task follows"
curl -sf -X POST -H 'content-type: application/json' \
    -d "{\"Name\":\"Second Sameline\",\"LastName\":\"Sameline\",\"Phone\":\"$FRESH_PHONE\"}" \
    "http://127.0.0.1:$PORT/__sim/records/Contact" >/dev/null || fail "creating the second Contact"
cs agent sync >/dev/null
wait_for 20 "both Contacts in the cache" sh -c "wine '$EXE' lookup '$FRESH_PHONE' 2>/dev/null | grep -q Sameline"
ring tray-pick "$FRESH_PHONE"
current() { cs status --json | python3 -c 'import json, sys; c = json.load(sys.stdin)["agent"].get("current_call") or {}; print(c.get("call_id", ""), *(m["record_id"] + "=" + m["label"].split()[0] for m in c.get("matches", [])), "chosen=" + str(c.get("chosen")))'; }
wait_for 20 "the call in the tray's \"Current call\"" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q tray-pick"
read -r _ best other chosen <<<"$(current)"
[ "$chosen" = chosen=None ] || fail "a choice before any pick: $(current)"
# Pick the match that is not the rule's winner: its Id and the first word of its name.
PICK_ID=${other%%=*} PICK_WORD=${other#*=}
[ -n "$PICK_ID" ] && [ "${best%%=*}" != "$PICK_ID" ] || fail "not two matches: $(current)"
xdotool mousemove 900 700 # off the menu: no item highlighted by a pointer left there
cs agent menu "$MX" "$MY" | grep -q ok || fail "the menu hook was refused"
sleep 1.5
shot menu-call-en.png
xy=$(word_at "$OUT/menu-call-en.png" "$AREA" eng Current)
[ -n "$xy" ] || fail "no \"Current call\" in the menu: $(ocr "$OUT/menu-call-en.png" "$AREA" eng)"
# A click on a submenu's item opens it (Win32 menus), to the right of the menu.
xdotool mousemove $xy click 1
sleep 1.5
shot current-call-en.png
SUB="700x260+$MX+$MY"
xy=$(word_at "$OUT/current-call-en.png" "$SUB" eng "$PICK_WORD")
[ -n "$xy" ] || fail "\"$PICK_WORD\" not in the Current call submenu: $(ocr "$OUT/current-call-en.png" "$SUB" eng)"
text=$(ocr "$OUT/current-call-en.png" "$SUB" eng)
has "$text" "best match" || fail "the submenu does not mark the rule's choice: $text"
xdotool mousemove $xy click 1
wait_for 20 "the pick seen through the pipe" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"chosen\": \"$PICK_ID\"'"
# Answered and ended: the Task goes on the picked record.
printf '%s\r\n' "{\"call_id\":\"tray-pick\",\"event\":\"answered\",\"at\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}" \
    "{\"call_id\":\"tray-pick\",\"event\":\"ended\",\"at\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"outcome\":\"answered\",\"duration_s\":2}" \
    >>"$T/d/calls.jsonl"
task_who() { curl -sf "http://127.0.0.1:$PORT/__sim/rows/Task" | python3 -c 'import json, sys; print(*(t.get("WhoId") for t in json.load(sys.stdin) if t.get("CallObject") == "tray-pick"))'; }
task_on_pick() { [ "$(task_who)" = "$PICK_ID" ]; }
wait_for 30 "the picked call's Task on $PICK_ID" task_on_pick
echo "   Current call submenu read (\"best match\" marked); picked $PICK_WORD ($PICK_ID); the Task's WhoId: $(task_who)"

step "a second start (the Run key at the next login, a double click) shows the running agent"
out=$(cs run 2>&1)
has "$out" "already running" || fail "a second start did not find the running agent: $out"
wait_for 10 "the old balloon gone" dark
wait_for 20 "the \"already running\" balloon" bright
sleep 0.5
shot already-running-en.png
text=$(ocr "$OUT/already-running-en.png" "420x90+$TX+$((TY + TH + 5))" eng)
has "$text" "already" || fail "the balloon does not say the agent runs: $text"
quit_agent agent-en.log

step "Japanese: the same menu in Japanese"
settings ja
start_agent agent-ja.log
wait_for 60 "the tray icon" icon_visible
wait_for 30 "the agent's pipe" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"running\": true'"
cs agent menu "$MX" "$MY" >/dev/null
sleep 1.5
shot menu-ja.png
text=$(ocr "$OUT/menu-ja.png" "420x220+$MX+$MY" jpn | tr -d ' ')
for want in "キャッシュ" "送信待ち" "エラー" "一時停止"; do
    has "$text" "$want" || fail "the Japanese menu lacks \"$want\": $text"
done
echo "   Japanese menu read: $(echo "$text" | tr '\n' '|' | tr -s '|')"
quit_agent agent-ja.log

if [ "$IDLE_SECS" -gt 0 ]; then
    step "the idle agent with its tray and $RECORDS cached records, over $IDLE_SECS s"
    settings en
    start_agent agent-idle.log
    wait_for 60 "the agent's pipe" sh -c "wine '$EXE' status --json 2>/dev/null | grep -q '\"running\": true'"
    sleep 60 # start-up done (the first sync cycle of 100,000 records included)
    # The Linux process that runs callsync.exe (not the `wine` launcher): the larger one.
    pid=$(for p in $(pgrep -f 'callsync.exe'); do echo "$(awk '/^RssAnon/ {print $2}' /proc/$p/status 2>/dev/null || echo 0) $p"; done | sort -n | tail -1 | cut -d' ' -f2)
    threads() { for t in /proc/$pid/task/*; do echo "${t##*/} $(awk '{print $14 + $15}' "$t/stat")"; done | sort; }
    threads >"$T/cpu0"
    peak=0
    for _ in $(seq 1 "$IDLE_SECS"); do
        sleep 1
        r=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
        [ "${r:-0}" -gt "$peak" ] && peak=$r
    done
    threads >"$T/cpu1"
    hz=$(getconf CLK_TCK)
    ticks=$(join "$T/cpu0" "$T/cpu1" | awk '{ s += $3 - $2 } END { print s }')
    busiest=$(join "$T/cpu0" "$T/cpu1" | awk -v hz="$hz" '$3 > $2 { printf "%s %d ms\n", $1, ($3 - $2) * 1000 / hz }' | sort -k2 -rn | head -4 | tr '\n' ',')
    # Wine copies the exe's sections into anonymous memory (mingw's 512-byte file alignment);
    # Windows maps them from the file and does not count them as private bytes.
    image_kb=$(python3 - "$EXE" "$pid" <<'PY'
import struct, sys
head = open(sys.argv[1], "rb").read(4096)
pe = struct.unpack_from("<I", head, 0x3C)[0]
base = struct.unpack_from("<Q", head, pe + 24 + 24)[0]
size = struct.unpack_from("<I", head, pe + 24 + 56)[0]
kb, inside = 0, False
for line in open(f"/proc/{sys.argv[2]}/smaps"):
    f = line.split()
    if "-" in f[0] and not f[0].endswith(":"):
        lo = int(f[0].split("-")[0], 16)
        inside = base <= lo < base + size
    elif f[0] == "Anonymous:" and inside:
        kb += int(f[1])
print(kb)
PY
)
    echo "   idle: $(python3 -c "print(round($ticks / $hz * 600 / $IDLE_SECS, 3))") s CPU per 10 min (busiest threads: $busiest); anonymous memory $((peak / 1024)) MB at most, of which the exe's image $((image_kb / 1024)) MB: private memory as Windows counts it $(((peak - image_kb) / 1024)) MB"
    quit_agent agent-idle.log
fi
echo "tray: all checks passed (screenshots in $OUT)"
