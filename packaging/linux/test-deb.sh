#!/bin/bash
# Installs callsync from DEB1 on this machine (needs root), checks the files, the managed
# configuration and the agent, upgrades to DEB2 with a queued Task and cached records present and
# checks both survive, then removes and purges it. Everything runs against the simulated org on
# 127.0.0.1, served by a development build (the package has none); the user's files live in a
# temporary HOME.
#   CALLSYNC_SIM_BIN=target/debug/callsync packaging/linux/test-deb.sh DEB1 DEB2
# No pipefail: `grep -q` and `head` end pipes early on purpose; every check tests its result.
set -eu
DEB1=$(realpath "$1")
DEB2=$(realpath "$2")
T=$(mktemp -d)
SIM= AGENT=
cleanup() {
    [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null || true
    [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
    dpkg -P callsync >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/../test-lib.sh"

# A clean user: default paths under a temporary HOME, nothing inherited.
# The simulator binary is the test's own input: kept aside before the environment is cleared.
SIM_BIN=${CALLSYNC_SIM_BIN:-}
for v in $(env | sed -n 's/^\(CALLSYNC_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset XDG_CONFIG_HOME XDG_DATA_HOME XDG_RUNTIME_DIR DISPLAY WAYLAND_DISPLAY DBUS_SESSION_BUS_ADDRESS RUST_LOG
export HOME=$T/home
mkdir -p "$HOME"
DATA=$HOME/.local/share/callsync

if dpkg-query -W callsync >/dev/null 2>&1; then
    fail "callsync is already installed on this machine; this test would remove it"
fi

step "install $(basename "$DEB1")"
dpkg -i "$DEB1" >/dev/null
/usr/bin/callsync --version
for f in /usr/bin/callsync /etc/xdg/autostart/callsync.desktop /usr/share/applications/callsync.desktop \
         /usr/lib/systemd/user/callsync.service /etc/xdg/callsync/config.toml \
         /usr/share/man/man1/callsync.1.gz /usr/share/man/man1/callsync-settings.1.gz \
         /usr/share/icons/hicolor/48x48/apps/callsync.png /usr/share/doc/callsync/config.example.toml; do
    [ -e "$f" ] || fail "$f is not installed"
done
dpkg-query -W -f='${Conffiles}\n' callsync | grep -q /etc/xdg/callsync/config.toml \
    || fail "the managed configuration is not a conffile"
man -l /usr/share/man/man1/callsync.1.gz 2>/dev/null | grep -q "callsync" || zcat /usr/share/man/man1/callsync.1.gz | grep -q '^.TH' \
    || fail "no manual page"
/usr/bin/callsync config show >/dev/null || fail "the shipped managed file does not load"

step "the simulator does not ship"
# The package is built without the `sim` feature: no `sim` or `demo` command, no simulator code.
/usr/bin/callsync sim --help >/dev/null 2>&1 && fail "the installed binary has the simulated org"
/usr/bin/callsync demo --help >/dev/null 2>&1 && fail "the installed binary has the demo"
grep -q '__sim/faults' /usr/bin/callsync && fail "the installed binary carries simulator code"

step "simulated org"
# From the development build (CALLSYNC_SIM_BIN: a `callsync` built with the default features).
[ -x "$SIM_BIN" ] || fail "CALLSYNC_SIM_BIN must name a callsync binary built with the sim feature"
PORT=$(free_port)
"$SIM_BIN" sim --port "$PORT" --records 300 >"$T/sim.log" 2>&1 &
SIM=$!
wait_for 20 "the simulated org" curl -sf "http://127.0.0.1:$PORT/services/data/"

step "IT edits the managed file; the user's file"
cat >>/etc/xdg/callsync/config.toml <<CONF

[salesforce]
login_url = "http://127.0.0.1:$PORT"
client_id = "callsync-sim-client"

[policy]
locked = ["salesforce.login_url"]
CONF
mkdir -p "$HOME/.config/callsync"
cat >"$HOME/.config/callsync/config.toml" <<CONF
[salesforce]
login_url = "https://login.salesforce.com"
redirect_port = $(free_port)
[auth]
store = "file"
[sync]
interval_secs = 3600
[calllog]
sources = [{ kind = "native", path = "~/calls.jsonl" }]
poll_secs = 1
[activity]
send_interval_secs = 1
CONF
show=$(/usr/bin/callsync config show 2>"$T/warn")
has "$(line_of "$show" "salesforce.login_url = \"http://127.0.0.1:$PORT\"")" "[locked]" \
    || fail "the managed value is not shown as locked: $(echo "$show" | grep login_url)"
grep -q "locked" "$T/warn" || fail "no warning about the user's locked key"
sed -i '/^login_url/d' "$HOME/.config/callsync/config.toml"

step "sign in (the test plays the browser) and sync"
/usr/bin/callsync connect --no-browser >"$T/connect.out" 2>&1 &
CONNECT=$!
wait_for 20 "the sign-in address" grep -q '^ *http' "$T/connect.out"
curl -sfL -o /dev/null "$(grep -m1 '^ *http' "$T/connect.out" | tr -d ' ')"
wait "$CONNECT" || fail "connect: $(cat "$T/connect.out")"
/usr/bin/callsync sync >/dev/null
PHONE=$(sim_phone "$PORT") || fail "no Contact phone in the simulated org"
[ -n "$PHONE" ] || fail "no Contact phone in the simulated org"
/usr/bin/callsync lookup "$PHONE" >/dev/null || fail "lookup of $PHONE before the upgrade"
records=$(/usr/bin/callsync status --json | grep -o '"records": [0-9]*' | awk '{s+=$2} END {print s}')
[ "${records:-0}" -gt 0 ] || fail "nothing cached"

step "the agent, started as the systemd user unit starts it; a call queued while sending is paused"
UNIT_CMD=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/user/callsync.service)
$UNIT_CMD >"$T/agent1.log" 2>&1 &
AGENT=$!
wait_for 20 "the agent" sh -c '/usr/bin/callsync status --json | grep -q "\"running\": true"'
/usr/bin/callsync agent pause >/dev/null
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '%s\n' \
  "{\"call_id\":\"deb-upgrade-1\",\"event\":\"ringing\",\"at\":\"$NOW\",\"direction\":\"inbound\",\"remote\":\"$PHONE\"}" \
  "{\"call_id\":\"deb-upgrade-1\",\"event\":\"ended\",\"at\":\"$NOW\",\"outcome\":\"answered\",\"duration_s\":5}" \
  >>"$HOME/calls.jsonl"
wait_for 20 "the queued Task" sh -c '/usr/bin/callsync status --json | grep -q "\"pending\": 1"'

step "upgrade to $(basename "$DEB2") with the agent running"
dpkg -i --force-confold "$DEB2" >/dev/null
[ "$(dpkg-query -W -f='${Version}' callsync)" = "$(dpkg-deb -f "$DEB2" Version)" ] || fail "not upgraded"
grep -q "127.0.0.1:$PORT" /etc/xdg/callsync/config.toml || fail "the upgrade lost IT's managed settings"
/usr/bin/callsync agent quit >/dev/null
wait "$AGENT" || fail "the old agent did not stop cleanly: $(cat "$T/agent1.log")"
AGENT=

step "the new build, started as the autostart entry starts it (no display: headless)"
AUTOSTART_CMD=$(sed -n 's/^Exec=//p' /etc/xdg/autostart/callsync.desktop)
$AUTOSTART_CMD >"$T/agent2.log" 2>&1 &
AGENT=$!
wait_for 20 "the new agent" sh -c '/usr/bin/callsync status --json | grep -q "\"running\": true"'
st=$(/usr/bin/callsync status --json)
has "$st" '"pending": 1' || fail "the queued Task did not survive the upgrade: $st"
after=$(echo "$st" | grep -o '"\(contacts\|accounts\|leads\)": [0-9]*' | awk '{s+=$2} END {print s}')
[ "${after:-0}" -gt 0 ] || fail "the cache did not survive the upgrade: $st"
[ "$(curl -sf "http://127.0.0.1:$PORT/__sim/rows/Task" | grep -o 'deb-upgrade-1' | wc -l)" -eq 0 ] \
    || fail "a paused Task was sent"
/usr/bin/callsync agent resume >/dev/null
wait_for 20 "the Task in Salesforce" sh -c "curl -sf http://127.0.0.1:$PORT/__sim/rows/Task | grep -q deb-upgrade-1"
[ "$(curl -sf "http://127.0.0.1:$PORT/__sim/rows/Task" | grep -o '"CallObject":"deb-upgrade-1"' | wc -l)" -eq 1 ] \
    || fail "the Task was not sent exactly once"
/usr/bin/callsync agent quit >/dev/null
wait "$AGENT" || true
AGENT=
/usr/bin/callsync lookup "$PHONE" >/dev/null || fail "lookup of $PHONE after the upgrade"

step "remove, then purge"
dpkg -r callsync >/dev/null
[ ! -e /usr/bin/callsync ] || fail "remove left the binary"
[ -e /etc/xdg/callsync/config.toml ] || fail "remove (not purge) deleted the managed configuration"
dpkg -P callsync >/dev/null
[ ! -e /etc/xdg/callsync/config.toml ] || fail "purge left the managed configuration"
[ ! -e /etc/xdg/autostart/callsync.desktop ] || fail "purge left the autostart entry"
[ -d "$DATA/outbox" ] && [ -d "$DATA/cache" ] || fail "purge deleted the user's data"
echo "deb: all checks passed"
