#include "tests/e2e/settled.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/status.h"

/* Whether r reports shard s. */
static bool holds(const Skv__NodeStatusReply *r, uint32_t s)
{
	for (size_t i = 0; i < r->n_shards; i++)
		if (r->shards[i]->shard == s)
			return true;
	return false;
}

/* The first disagreement of replica `addr` (r) with the configuration,
 * into why; false if none. */
static bool disagrees(const char *addr, const Skv__NodeStatusReply *r,
		      const Skv__NodeStatusReply *first, uint64_t gid,
		      uint64_t num, const uint64_t *owners, uint32_t nshards,
		      char *why, size_t cap)
{
	if (r->config_num != num) {
		snprintf(why, cap, "%s: config %" PRIu64 ", not %" PRIu64,
			 addr, r->config_num, num);
		return true;
	}
	if (r->applied_index != first->applied_index) {
		snprintf(why, cap,
			 "%s: applied %" PRIu64 ", the first replica %" PRIu64,
			 addr, r->applied_index, first->applied_index);
		return true;
	}
	for (size_t i = 0; i < r->n_shards; i++) {
		const Skv__ShardStatus *sh = r->shards[i];
		uint64_t owner = sh->shard < nshards ? owners[sh->shard] : 0;
		if (strcmp(sh->state, "serving") != 0 || owner != gid) {
			snprintf(why, cap,
				 "%s: shard %" PRIu32 " %s (owner %" PRIu64
				 ")",
				 addr, sh->shard, sh->state, owner);
			return true;
		}
	}
	for (uint32_t s = 0; gid && s < nshards; s++) {
		if (owners[s] == gid && !holds(r, s)) {
			snprintf(why, cap,
				 "%s: does not serve its shard %" PRIu32, addr,
				 s);
			return true;
		}
	}
	return false;
}

bool settled_status(const char *const *addrs, size_t n, uint64_t gid,
		    uint64_t num, const uint64_t *owners, uint32_t nshards,
		    uint64_t timeout_ms, struct node_status_result *res,
		    char *why, size_t cap)
{
	int rc = node_status_get_many(addrs, n, timeout_ms, res);
	if (rc != STATUS_OK) {
		snprintf(why, cap, "status: %s", status_str(rc));
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (res[i].status != STATUS_OK) {
			snprintf(why, cap, "%s: %s", addrs[i], res[i].err);
			return false;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (disagrees(addrs[i], res[i].reply, res[0].reply, gid, num,
			      owners, nshards, why, cap))
			return false;
	return true;
}
