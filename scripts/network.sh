#!/usr/bin/env bash
# Starts the small network of config/network/ — 3 directory authorities, 3 mix nodes (one per
# layer), 2 providers, 2 gateways — as separate processes on loopback, one per role as on
# separate machines, from the same templates an operator fills in for real hosts.
#
#   scripts/network.sh start DIR [PORT_BASE]   # keys, configs, logs and pids under DIR
#   scripts/network.sh stop DIR                # SIGTERM, then SIGKILL after 10 s
#
# Ports (all on 127.0.0.1): authority i at PORT_BASE+i (metrics +10), mix of layer l at
# PORT_BASE+20+l (metrics +10), provider n at PORT_BASE+40+n (metrics +10), gateway n at
# PORT_BASE+60+n (metrics +10). PORT_BASE defaults to 17000. MIXGATE_BIN picks the binary
# (default target/debug/mixgate, then target/release/mixgate); REGISTRATION (default open)
# the gateways' registration policy. `start` prints one JSON line when both gateways answer.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${MIXGATE_BIN:-}" ]; then
  mixgate=$MIXGATE_BIN
elif [ -x "$root/target/debug/mixgate" ]; then
  mixgate=$root/target/debug/mixgate
else
  mixgate=$root/target/release/mixgate
fi
templates=$root/config/network
host=127.0.0.1

usage() { echo "usage: $0 start DIR [PORT_BASE] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$2

# render TEMPLATE OUT NAME=VALUE… : replaces @NAME@ by VALUE (`\n` in a value is a newline).
render() {
  local template=$1 out=$2
  shift 2
  local args=()
  for kv in "$@"; do
    local k=${kv%%=*} v=${kv#*=}
    v=${v//\\/\\\\}; v=${v//|/\\|}; v=${v//&/\\&}; v=${v//\\\\n/\\n}
    args+=(-e "s|@$k@|$v|g")
  done
  sed "${args[@]}" "$template" > "$out"
}

start() {
  local base=${1:-17000}
  mkdir -p "$dir/etc" "$dir/data" "$dir/log" "$dir/pids"
  local data etc
  data=$(cd "$dir/data" && pwd)
  etc=$(cd "$dir/etc" && pwd)
  local -a dkey mkey pkey
  for i in 1 2 3; do dkey[i]=$("$mixgate" key "$data/directory$i.key"); done
  for l in 1 2 3; do mkey[l]=$("$mixgate" key "$data/mix$l.key"); done
  for n in 1 2; do pkey[n]=$("$mixgate" key "$data/provider$n.key"); done
  local authorities="\"${dkey[1]}\", \"${dkey[2]}\", \"${dkey[3]}\""
  local node_keys="\"${mkey[1]}\", \"${mkey[2]}\", \"${mkey[3]}\", \"${pkey[1]}\", \"${pkey[2]}\""
  local directories="\"$host:$((base + 1))\", \"$host:$((base + 2))\", \"$host:$((base + 3))\""
  local fallbacks="\"$host:$((base + 2))\", \"$host:$((base + 3))\""
  for i in 1 2 3; do
    local peers=""
    for j in 1 2 3; do
      [ "$j" = "$i" ] && continue
      peers+="[[peers]]\\naddress = \"$host:$((base + j))\"\\nkey = \"${dkey[j]}\"\\n"
    done
    render "$templates/directory.toml.in" "$etc/directory$i.toml" N=$i HOST=$host \
      PORT=$((base + i)) METRICS=$((base + 10 + i)) DATA="$data" NODE_KEYS="$node_keys" \
      PEERS="$peers"
  done
  for l in 1 2 3; do
    render "$templates/mixnode.toml.in" "$etc/mix$l.toml" LAYER=$l HOST=$host \
      PORT=$((base + 20 + l)) METRICS=$((base + 30 + l)) DATA="$data" DIR1="$host:$((base + 1))" \
      DIR_FALLBACKS="$fallbacks" AUTHORITIES="$authorities"
  done
  for n in 1 2; do
    render "$templates/provider.toml.in" "$etc/provider$n.toml" N=$n HOST=$host \
      PORT=$((base + 40 + n)) METRICS=$((base + 50 + n)) DATA="$data" DIR1="$host:$((base + 1))" \
      DIR_FALLBACKS="$fallbacks" AUTHORITIES="$authorities"
    render "$templates/gateway.toml.in" "$etc/gateway$n.toml" N=$n HOST=$host \
      PORT=$((base + 60 + n)) METRICS=$((base + 70 + n)) DATA="$data" \
      REGISTRATION="${REGISTRATION:-open}" DIRECTORIES="$directories" AUTHORITIES="$authorities"
  done
  for f in "$etc"/*.toml; do "$mixgate" config check "$f" >/dev/null; done

  launch() { # NAME ROLE FILE
    "$mixgate" "$2" --config "$3" >"$dir/log/$1.log" 2>&1 &
    echo $! >"$dir/pids/$1"
  }
  for i in 1 2 3; do launch "directory$i" directory "$etc/directory$i.toml"; done
  for l in 1 2 3; do launch "mix$l" mixnode "$etc/mix$l.toml"; done
  for n in 1 2; do launch "provider$n" provider "$etc/provider$n.toml"; done
  # Gateways join once the authorities agree on a document with 2 signatures listing the
  # nodes (a consensus round every epoch/60 s, at most 10 s).
  local agreed=""
  for _ in $(seq 1 240); do
    if curl -fsS "http://127.0.0.1:$((base + 11))/metrics" 2>/dev/null |
        grep -Eq '^mixgate_directory_signatures\{[^}]*\} ([2-9]|[1-9][0-9])$'; then
      agreed=1; break
    fi
    sleep 0.5
  done
  if [ -z "$agreed" ]; then
    echo "the authorities did not agree on a document; directory1's log:" >&2
    tail -n 30 "$dir/log/directory1.log" >&2
    exit 1
  fi
  for n in 1 2; do launch "gateway$n" gateway "$etc/gateway$n.toml"; done

  for n in 1 2; do
    local url="http://$host:$((base + 60 + n))"
    local ok=""
    for _ in $(seq 1 240); do
      if curl -fsS "$url/_matrix/client/versions" >/dev/null 2>&1; then ok=1; break; fi
      if ! kill -0 "$(cat "$dir/pids/gateway$n")" 2>/dev/null; then break; fi
      sleep 0.5
    done
    if [ -z "$ok" ]; then
      echo "gateway$n did not start; its log:" >&2
      tail -n 30 "$dir/log/gateway$n.log" >&2
      exit 1
    fi
  done
  local metrics=""
  for p in 11 12 13 31 32 33 51 52 71 72; do
    metrics+="${metrics:+,}\"http://127.0.0.1:$((base + p))\""
  done
  echo "{\"ready\":true,\"gateways\":[\"http://$host:$((base + 61))\",\"http://$host:$((base + 62))\"],\"metrics\":[$metrics]}"
}

stop() {
  [ -d "$dir/pids" ] || return 0
  local pids=()
  for f in "$dir"/pids/*; do
    [ -e "$f" ] || continue
    local pid
    pid=$(cat "$f")
    if kill -TERM "$pid" 2>/dev/null; then pids+=("$pid"); fi
    rm -f "$f"
  done
  running() { # PID: alive and not a zombie waiting to be reaped
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case $st in *Z*|"") return 1 ;; esac
  }
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do running "$pid" && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  echo "some processes needed SIGKILL" >&2
  return 1
}

case $cmd in
  start) start "${3:-17000}" ;;
  stop) stop ;;
  *) usage ;;
esac
