# Shared by Scripts/up, Scripts/down and Scripts/demo: start Ferry's services as local
# processes under $FERRY_RUN (pid files, logs, data), and stop them again.
FERRY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FERRY_RUN="${FERRY_RUN:-$FERRY_ROOT/run}"
# Where the origin keeps its data, including operator.token, which `ferry publish` and
# `ferry withdraw` on this host read when FERRY_OPERATOR_TOKEN isn't set.
export FERRY_ORIGIN_DATA="${FERRY_ORIGIN_DATA:-$FERRY_RUN/origin}"

ferry_build() {
  (cd "$FERRY_ROOT" && swift build ${FERRY_BUILD_FLAGS:-} 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' | tail -5 >&2)
  FERRY_BIN="$(cd "$FERRY_ROOT" && swift build ${FERRY_BUILD_FLAGS:-} --show-bin-path)"
  export FERRY_BIN
}

# start NAME BINARY [ARGS...]: runs it in the background, output to $FERRY_RUN/logs/NAME.log
ferry_start() {
  local name="$1"; shift
  mkdir -p "$FERRY_RUN/logs" "$FERRY_RUN/pids"
  "$FERRY_BIN/$1" "${@:2}" >"$FERRY_RUN/logs/$name.log" 2>&1 &
  echo $! >"$FERRY_RUN/pids/$name.pid"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds
ferry_wait_for() {
  local limit="$1" what="$2"; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

ferry_start_stack() {
  local relays="${FERRY_RELAYS:-1}"
  # Transport security on, with keys made for this run, unless FERRY_TRANSPORT_KEYS names the
  # fleet's own keys or is set empty (plain TCP).
  export FERRY_TRANSPORT_KEYS="${FERRY_TRANSPORT_KEYS-$FERRY_RUN/keys}"
  if [ -n "$FERRY_TRANSPORT_KEYS" ]; then "$FERRY_BIN/ferry" keys fleet "$FERRY_TRANSPORT_KEYS" >/dev/null; fi
  ferry_start eventbus ferry-eventbus
  ferry_start reporter ferry-reporter --ledger "$FERRY_RUN/reporter/ledger.sqlite"
  ferry_start broker ferry-broker
  ferry_start matcher ferry-matcher
  ferry_start intake ferry-intake
  # Fulfilments are accepted only signed by the reporter: with keys, the fleet's reporter-signing
  # key; without, the key the reporter made beside its ledger.
  local reporter_key=()
  [ -n "$FERRY_TRANSPORT_KEYS" ] || reporter_key=(--reporter-key "$FERRY_RUN/reporter/reporter-signing.pub")
  ferry_start origin ferry-origin --data-dir "$FERRY_ORIGIN_DATA" "${reporter_key[@]}"
  local i
  for i in $(seq 1 "$relays"); do
    ferry_start "relay-$i" ferry-relay --bind "tcp://127.0.0.1:$((7200 + i - 1))" --data-dir "$FERRY_RUN/relay-$i" \
      --metrics-bind "127.0.0.1:$((9200 + i - 1))"
  done
  ferry_wait_for 60 "the origin" curl -sf http://127.0.0.1:7080/health
  ferry_wait_for 30 "the broker" "$FERRY_BIN/ferry" status
  ferry_wait_for 30 "$relays relay(s)" ferry_relays_registered "$relays"
}

ferry_relays_registered() {
  [ "$("$FERRY_BIN/ferry" status --json | grep -o '"endpoint"' | wc -l)" -ge "$1" ]
}

# start_agent NAME CONTROL_PORT: a device with its own data directory, control endpoint and
# metrics port (CONTROL_PORT + 2000, so 7401 serves metrics on 9401)
ferry_start_agent() {
  ferry_start "agent-$1" ferry-agent --data-dir "$FERRY_RUN/agent-$1" --output-dir "$FERRY_RUN" --control "tcp://127.0.0.1:$2" \
    --metrics-bind "127.0.0.1:$(($2 + 2000))" --origin-public-key "$(ferry_origin_key)"
}

# The origin's manifest-signing key, as an operator copies it into each device's configuration.
ferry_origin_key() {
  curl -sf http://127.0.0.1:7080/v1/origin-key | python3 -c 'import json, sys; print(json.load(sys.stdin)["publicKey"])'
}

# Every process started under $FERRY_RUN's user + system clock ticks so far (benchmarks take
# the difference across what they measure).
ferry_cpu_ticks() {
  local total=0 pidfile pid
  for pidfile in "$FERRY_RUN"/pids/*.pid; do
    pid="$(cat "$pidfile")"
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

ferry_stop_all() {
  local pidfile pid
  [ -d "$FERRY_RUN/pids" ] || return 0
  for pidfile in "$FERRY_RUN"/pids/*.pid; do
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pidfile in "$FERRY_RUN"/pids/*.pid; do
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}
