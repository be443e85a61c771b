#!/usr/bin/env bash
# The sans-IO cores and the pure base must not reach for threads, clocks,
# sockets, storage or randomness: time and randomness enter with events, so
# the simulator can replay any run. glibc links pthread and clock functions
# into every program, so the linker cannot enforce this; this check does.
# Add each pure module here as it lands.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"

pure=(
  common/status.c common/mem.c common/log.c common/buf.c common/shard.c
  common/flags.c common/codec.c common/raft/raft.c
  shardmaster/sm.c shardmaster/rebalance.c clerk/retry.c clerk/sm_core.c
  clerk/kv_core.c shardkv/kv.c shardkv/migrate.c tests/lin/lin.c
  common/raft/waits.c
  common/addrs.c clerk/cli.c clerk/kvbench_args.c
)

forbidden='#[[:space:]]*include[[:space:]]*<(pthread\.h|time\.h|sys/time\.h|threads\.h|grpc/|rocksdb/|sys/socket\.h|netinet/|arpa/|unistd\.h|sys/random\.h)'
calls='\b(rand|srand|random|time|clock_gettime|gettimeofday|sleep|usleep|nanosleep|pthread_[a-z_]+)[[:space:]]*\('

status=0
for f in "${pure[@]}"; do
  for h in "$f" "${f%.c}.h"; do
    [ -f "$h" ] || continue
    if grep -nE "$forbidden" "$h"; then
      echo "purity: $h includes a header pure code must not use" >&2
      status=1
    fi
    if grep -nE "$calls" "$h" | grep -vE '^\s*[0-9]+:\s*(\*|/\*)'; then
      echo "purity: $h calls a clock, thread, sleep or global PRNG" >&2
      status=1
    fi
  done
done
[ $status -eq 0 ] && echo "purity: ${#pure[@]} pure modules clean"
exit $status
