#!/usr/bin/env bash
# A whole shardkv cluster on this machine: a shard master of 3 and 3
# replica groups of 3 shardkv servers, all on 127.0.0.1, everything they
# keep (data, logs, pids, an env file) under one run directory.
#
#   deploy/cluster.sh [up]   install what is missing, build, start, join the
#                            groups, run the demo, print how to use it
#   deploy/cluster.sh start  start what is not running (no build, no demo)
#   deploy/cluster.sh demo   puts, gets, a group leave and join, while running
#   deploy/cluster.sh status which node leads each group, configs, shards
#   deploy/cluster.sh stop   stop every server (SIGTERM; data is kept)
#   deploy/cluster.sh wipe   stop, then delete the run directory
#
# Environment: SKV_RUN_DIR (default ./run), SKV_BUILD_DIR (default
# ./build/release), SKV_PORT_BASE (default 7000: masters on base+1..3,
# group 100 on base+101..103, group 101 on base+201..203, ...),
# SKV_GROUPS (default 3).
#
# Running it again after a stop starts the same servers on the same data:
# nothing is lost, groups already joined are not joined again.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${SKV_RUN_DIR:-$repo/run}
build_dir=${SKV_BUILD_DIR:-$repo/build/release}
port_base=${SKV_PORT_BASE:-7000}
ngroups=${SKV_GROUPS:-3}
host=127.0.0.1

sm_bin=$build_dir/shardmaster/shardmaster
kv_bin=$build_dir/shardkv/shardkv
ctl_bin=$build_dir/clerk/shardctl
cli_bin=$build_dir/clerk/kvcli

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
die() { echo "cluster: $*" >&2; exit 1; }

case "$ngroups" in
  [1-9]) ;;
  *) die "SKV_GROUPS must be 1..9, not '$ngroups'" ;;
esac
case "$port_base" in
  *[!0-9]* | '') die "SKV_PORT_BASE must be a number, not '$port_base'" ;;
esac
[ "$port_base" -ge 1024 ] && [ "$port_base" -le 55000 ] ||
  die "SKV_PORT_BASE must be in 1024..55000"

# ---- the cluster's shape ----

masters="$host:$((port_base + 1)),$host:$((port_base + 2)),$host:$((port_base + 3))"

gids() { local g; for ((g = 0; g < ngroups; g++)); do echo $((100 + g)); done; }

# group_peers GID: its three addresses, comma-separated.
group_peers() {
  local p=$((port_base + ($1 - 99) * 100))
  echo "$host:$((p + 1)),$host:$((p + 2)),$host:$((p + 3))"
}

# Every server as "name kind gid id": sm1..3, then g100-1.. per group.
servers() {
  local i g
  for i in 1 2 3; do echo "sm$i sm 0 $i"; done
  for g in $(gids); do
    for i in 1 2 3; do echo "g$g-$i kv $g $i"; done
  done
}

# ---- processes ----

pid_file() { echo "$run_dir/pids/$1.pid"; }

# running NAME: true if the pid file names a live process of ours (its
# command line holds its data directory, so a reused pid does not count).
running() {
  local f pid
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--data $run_dir/data/$1 "
}

port_in_use() {
  # /proc/net/tcp lists listening sockets (state 0A) with hex ports.
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" '$4 == "0A" && $2 ~ p"$" { f = 1 } END { exit !f }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# start_server NAME KIND GID ID
start_server() {
  local name=$1 kind=$2 gid=$3 id=$4 addr port args
  if running "$name"; then
    return 0
  fi
  if [ "$kind" = sm ]; then
    args=(--id "$id" --peers "$masters")
    addr=$(echo "$masters" | cut -d, -f"$id")
  else
    local peers
    peers=$(group_peers "$gid")
    args=(--gid "$gid" --id "$id" --peers "$peers" --masters "$masters")
    addr=$(echo "$peers" | cut -d, -f"$id")
  fi
  port=${addr##*:}
  if port_in_use "$port"; then
    die "port $port (for $name) is taken by another program; stop it or set SKV_PORT_BASE"
  fi
  local bin=$sm_bin
  [ "$kind" = kv ] && bin=$kv_bin
  mkdir -p "$run_dir/logs" "$run_dir/pids" "$run_dir/data"
  # Where this start's lines begin: the log is appended to across starts.
  local log="$run_dir/logs/$name.log"
  stat -c %s "$log" 2>/dev/null >"$run_dir/pids/$name.from" ||
    echo 0 >"$run_dir/pids/$name.from"
  # setsid: the servers outlive this shell and its terminal.
  setsid "$bin" "${args[@]}" --data "$run_dir/data/$name" \
    --cluster local </dev/null >>"$run_dir/logs/$name.log" 2>&1 &
  echo $! >"$(pid_file "$name")"
}

# wait_started NAME: until its log says "started:" (since its start), it
# exits, or 30 s.
wait_started() {
  local name=$1 log="$run_dir/logs/$1.log" i from=0
  [ -f "$run_dir/pids/$name.from" ] && from=$(cat "$run_dir/pids/$name.from")
  for ((i = 0; i < 300; i++)); do
    if ! running "$name"; then
      echo "cluster: $name exited; the end of $log:" >&2
      tail -n 5 "$log" >&2
      exit 1
    fi
    if tail -c +$((from + 1)) "$log" | grep -q "server: started:"; then
      return 0
    fi
    sleep 0.1
  done
  die "$name did not start within 30 s; see $log"
}

# ctl ARGS...: shardctl against this cluster.
ctl() { "$ctl_bin" --masters "$masters" "$@"; }
kv() { "$cli_bin" --masters "$masters" "$@"; }

# wait_for DESC SECONDS CMD...: runs CMD until it succeeds.
wait_for() {
  local desc=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "timed out after ${secs} s waiting for $desc"
}

write_env() {
  cat >"$run_dir/cluster.env" <<EOF
# source this file to use the local cluster: . $run_dir/cluster.env
export SHARDKV_MASTERS=$masters
export PATH="$build_dir/clerk:$build_dir/shardkv:$build_dir/shardmaster:\$PATH"
EOF
}

# ---- commands ----

build() {
  say "installing missing packages (deploy/deps.sh)"
  bash "$repo/deploy/deps.sh"
  say "building ($build_dir)"
  cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSKV_SANITIZE=OFF >/dev/null
  cmake --build "$build_dir" -j"$(nproc 2>/dev/null || echo 2)" \
    --target shardmaster shardkv shardctl kvcli kvbench
}

cmd_start() {
  for b in "$sm_bin" "$kv_bin" "$ctl_bin" "$cli_bin"; do
    [ -x "$b" ] || die "$b is missing: run 'deploy/cluster.sh up' (it builds)"
  done
  mkdir -p "$run_dir"
  say "starting a shard master of 3 and $ngroups replica group(s) of 3 in $run_dir"
  local name kind gid id
  while read -r name kind gid id; do
    start_server "$name" "$kind" "$gid" "$id"
  done < <(servers)
  while read -r name kind gid id; do
    wait_started "$name"
  done < <(servers)
  write_env
  wait_for "the shard master to elect a leader" 30 ctl query
  # Join the groups the latest configuration does not have yet.
  local config joins=()
  config=$(ctl --json query)
  for g in $(gids); do
    if ! echo "$config" | grep -q "\"$g\":\["; then
      joins+=("$g=$(group_peers "$g")")
    fi
  done
  if [ ${#joins[@]} -gt 0 ]; then
    say "joining groups: ${joins[*]%%=*}"
    ctl join "${joins[@]}" >/dev/null
  fi
  say "running: $(ctl query | head -n 1)"
}

cmd_stop() {
  local name kind gid id pids=() names=()
  while read -r name kind gid id; do
    if running "$name"; then
      pids+=("$(cat "$(pid_file "$name")")")
      names+=("$name")
    fi
    rm -f "$(pid_file "$name")" "$run_dir/pids/$name.from" 2>/dev/null || true
  done < <(servers)
  if [ ${#pids[@]} -eq 0 ]; then
    echo "no server of $run_dir is running"
    return 0
  fi
  say "stopping ${#pids[@]} servers"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local i alive
  for ((i = 0; i < 200; i++)); do
    alive=()
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    [ ${#alive[@]} -eq 0 ] && break
    sleep 0.1
  done
  if [ ${#alive[@]} -gt 0 ]; then
    echo "cluster: ${#alive[@]} servers did not stop in 20 s; killing them" >&2
    kill -KILL "${alive[@]}" 2>/dev/null || true
  fi
  echo "stopped; data kept in $run_dir/data (deploy/cluster.sh start to resume)"
}

cmd_status() {
  local name kind gid id up=0 down=()
  while read -r name kind gid id; do
    if running "$name"; then up=$((up + 1)); else down+=("$name"); fi
  done < <(servers)
  echo "run directory $run_dir: $up of $((3 + 3 * ngroups)) servers running${down:+ (down: ${down[*]})}"
  [ "$up" -gt 0 ] || return 0
  echo
  ctl --timeout 3000 status
}

cmd_wipe() {
  cmd_stop
  if [ -d "$run_dir" ]; then
    rm -rf "$run_dir"
    echo "removed $run_dir"
  fi
}

# The demo: writes, reads, a group leaving with its data still readable,
# and a record of every run (it survives stop and start).
cmd_demo() {
  local n=20 i v
  say "demo: put $n keys, append to one, read them back"
  for ((i = 1; i <= n; i++)); do kv put "demo:key-$i" "value-$i"; done
  kv append demo:runs "run at $(date -u +%H:%M:%S); "
  for ((i = 1; i <= n; i++)); do
    v=$(kv get "demo:key-$i")
    [ "$v" = "value-$i" ] || die "demo: demo:key-$i is '$v', not 'value-$i'"
  done
  echo "all $n keys read back; demo:runs = $(kv get demo:runs)"

  local last
  last=$(gids | tail -n 1)
  if [ "$ngroups" -gt 1 ]; then
    say "demo: group $last leaves; its shards move to the others"
    ctl leave "$last" | head -n 1
    for ((i = 1; i <= n; i++)); do
      v=$(kv --timeout 20000 get "demo:key-$i")
      [ "$v" = "value-$i" ] || die "demo: after the leave, demo:key-$i is '$v'"
    done
    echo "all $n keys still readable after group $last left"
    say "demo: group $last joins again"
    ctl join "$last=$(group_peers "$last")" | head -n 1
  fi
  say "demo: done"
  ctl query | sed -n '1p'
}

usage_hint() {
  cat <<EOF

The cluster runs in the background. To use it, first set SHARDKV_MASTERS
and PATH in your shell:

  . $run_dir/cluster.env

  kvcli put greeting hello
  kvcli get greeting; echo
  shardctl query                    # which group serves each shard
  shardctl status                   # every server: role, term, indexes, shards
  shardctl leave 102                # move group 102's shards to the others
  kvbench --clients 64 --duration 10  # load: ops/s and latency percentiles

  deploy/cluster.sh status          # the same, plus which processes run
  deploy/cluster.sh stop            # stop everything (data is kept)
  deploy/cluster.sh start           # start it again
  deploy/cluster.sh wipe            # stop and delete $run_dir

Logs: $run_dir/logs/*.log
EOF
}

cmd=${1:-up}
case "$cmd" in
  up)
    build
    cmd_start
    cmd_demo
    usage_hint
    ;;
  start) cmd_start ;;
  demo) cmd_demo ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  wipe) cmd_wipe ;;
  -h | --help | help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "cluster: unknown command '$cmd' (up, start, demo, status, stop, wipe, help)" >&2; exit 2 ;;
esac
