# Shell helpers of the package tests (linux/test-deb.sh, windows/test-msi.sh, windows/test-tray.sh):
# sourced, not run.
# `fail` prints the tail of every log and output file in $T.
step() { echo "== $*"; }
fail() {
    echo "FAIL: $*" >&2
    for f in "$T"/*.log "$T"/*.out; do [ -e "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
    exit 1
}
wait_for() { # seconds, description, command…
    local n=$(( $1 * 10 )) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ "$n" -gt 0 ] || fail "timed out waiting for $what"; sleep 0.1
    done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
# Does TEXT hold STRING? (No pipe: with pipefail, `echo "$big" | grep -q` can fail by SIGPIPE.)
has() { grep -qF -- "$2" <<<"$1"; }
# The line of TEXT holding KEY.
line_of() { grep -F -- "$2" <<<"$1" || true; }
# A phone number of a Contact in the simulated org on port $1.
sim_phone() {
    curl -sf "http://127.0.0.1:$1/__sim/rows/Contact" | python3 -c \
        'import json, sys; print(next(r["Phone"] for r in json.load(sys.stdin) if r.get("Phone")))'
}
# The Linux `callsync` with the simulated org ($CALLSYNC_SIM_BIN) into SIM_BIN; then no
# CALLSYNC_* variable of the caller's reaches the programs under test.
take_sim_bin() {
    SIM_BIN=${CALLSYNC_SIM_BIN:-}
    [ -x "$SIM_BIN" ] || fail "CALLSYNC_SIM_BIN must name a callsync binary built with the sim feature"
    for v in $(env | sed -n 's/^\(CALLSYNC_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
}
