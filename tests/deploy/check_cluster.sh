#!/usr/bin/env bash
# check_cluster.sh SRC_DIR BUILD_DIR: the README's local cluster
# (deploy/cluster.sh) on the binaries of BUILD_DIR, in a temporary run
# directory on free ports: start, demo, status, a key written, stop, start
# again with the key and the demo's record still there, wipe. Every server
# is stopped (and the directory removed) on the way out, also on failure.
# Exit status: 0 all good, 1 a check failed, 2 usage.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SRC_DIR BUILD_DIR" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
cluster=$src/deploy/cluster.sh
tmp=$(mktemp -d /tmp/skv_cluster.XXXXXX)
out=$tmp/out

export SKV_BUILD_DIR=$build
export SKV_RUN_DIR=$tmp/run

cleanup() {
  "$cluster" wipe >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "check_cluster: $*" >&2
  echo "--- last output:" >&2
  tail -n 30 "$out" >&2 || true
  for log in "$SKV_RUN_DIR"/logs/*.log; do
    [ -f "$log" ] || continue
    echo "--- $log:" >&2
    tail -n 5 "$log" >&2
  done
  exit 1
}

# run WHAT CMD...: runs CMD with its output in $out; fails the check if it
# fails.
run() {
  local what=$1
  shift
  "$@" >"$out" 2>&1 || fail "$what failed (exit $?)"
}

expect() {
  grep -q -- "$1" "$out" || fail "expected '$1' in the output of $2"
}

# A port base whose ports nothing else holds: the script refuses taken
# ports with a message naming them, so try another base then.
started=false
for try in 1 2 3 4 5 6 7 8; do
  export SKV_PORT_BASE=$((20000 + (RANDOM % 300) * 100))
  if "$cluster" start >"$out" 2>&1; then
    started=true
    break
  fi
  grep -q "is taken by another program" "$out" || fail "start failed"
  "$cluster" wipe >/dev/null 2>&1 || true
done
$started || fail "no free port base in 8 tries"
expect "joining groups: 100 101 102" "start"
expect "config 1: 10 shards, 3 groups" "start"

run demo "$cluster" demo
expect "all 20 keys read back" "demo"
expect "still readable after group 102 left" "demo"
expect "config 3: 10 shards, 3 groups" "demo"

run status "$cluster" status
expect "12 of 12 servers running" "status"
for g in 100 101 102; do
  grep -q "^group $g: .* in config 3; leader 127.0.0.1:" "$out" ||
    fail "status shows no leader of group $g in config 3"
done

# The env file is what users source.
# shellcheck source=/dev/null
. "$SKV_RUN_DIR/cluster.env"
[ -n "${SHARDKV_MASTERS:-}" ] || fail "cluster.env sets no SHARDKV_MASTERS"
run put kvcli put check:key kept
run stop "$cluster" stop
expect "stopped; data kept" "stop"
run status "$cluster" status
expect "0 of 12 servers running" "status after stop"

# Started again on the same data: nothing lost, no group joined twice.
run restart "$cluster" start
if grep -q "joining groups" "$out"; then
  fail "the restart joined groups again"
fi
run get kvcli --timeout 20000 get check:key
[ "$(cat "$out")" = "kept" ] || fail "check:key is '$(cat "$out")' after the restart, not 'kept'"
run get kvcli --timeout 20000 get demo:runs
[ "$(grep -o "run at" "$out" | wc -l)" -eq 1 ] ||
  fail "demo:runs should hold one run after the restart: $(cat "$out")"

run wipe "$cluster" wipe
[ ! -e "$SKV_RUN_DIR" ] || fail "wipe left $SKV_RUN_DIR"
echo "check_cluster: start, demo, status, stop, restart with data, wipe: ok"
