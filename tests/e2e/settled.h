/*
 * settled: whether a Raft group of real server processes has settled on a
 * configuration, as its replicas' status RPC (clerk/status.h) tells:
 * what the real-process suites check once their faults and moves are
 * over.
 *
 * Ownership: the replies land in the caller's array and are the
 * caller's (node_status_results_free), so a suite can check more of
 * them; addresses and owners are borrowed for the call.
 */
#ifndef SKV_TESTS_E2E_SETTLED_H
#define SKV_TESTS_E2E_SETTLED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clerk/status.h"

/*
 * Asks the replicas addrs[0..n) (n <= NODE_STATUS_MANY_MAX) of group `gid`
 * (0: the shard master, which holds no shards) for their status, each
 * within timeout_ms, into res[0..n). True when they agree with
 * configuration `num`, whose shard owners are owners[0..nshards): every
 * replica answered, reports `num` and the first replica's applied index,
 * and holds only "serving" shards, each one `owners` gives `gid`; a
 * group's replicas serve every shard it owns. Else false with the first
 * disagreement in why[0..cap). Either way the caller frees res with
 * node_status_results_free.
 */
bool settled_status(const char *const *addrs, size_t n, uint64_t gid,
		    uint64_t num, const uint64_t *owners, uint32_t nshards,
		    uint64_t timeout_ms, struct node_status_result *res,
		    char *why, size_t cap);

#endif
