/*
 * rebalance: the shard master's assignment of shards to groups after a
 * Join or Leave (sm.h, sm_rebalance). Minimal movement follows from two
 * choices: the larger shares go to the groups that already own the most,
 * and a group gives up only what exceeds its share.
 */
#include <stdlib.h>

#include "common/mem.h"
#include "common/status.h"
#include "shardmaster/sm.h"

struct share {
	size_t group; /* index into gids */
	size_t count; /* shards it owns now */
};

/* Most shards first; ties by lower gid (gids are sorted, so by index). */
static int share_cmp(const void *a, const void *b)
{
	const struct share *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->group < y->group ? -1 : x->group > y->group;
}

/* Index of `gid` in the sorted gids, or n when absent. */
static size_t find_gid(const uint64_t *gids, size_t n, uint64_t gid)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (gids[mid] < gid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && gids[lo] == gid ? lo : n;
}

int sm_rebalance(uint64_t *shards, uint32_t nshards, const uint64_t *gids,
		 size_t n_gids)
{
	if (n_gids == 0) {
		for (uint32_t s = 0; s < nshards; s++)
			shards[s] = 0;
		return STATUS_OK;
	}
	size_t *count = mem_calloc(n_gids, sizeof(*count));
	size_t *target = mem_calloc(n_gids, sizeof(*target));
	struct share *order = mem_calloc(n_gids, sizeof(*order));
	if (!count || !target || !order) {
		mem_free(count);
		mem_free(target);
		mem_free(order);
		return STATUS_NO_MEMORY;
	}
	for (uint32_t s = 0; s < nshards; s++) {
		size_t g = find_gid(gids, n_gids, shards[s]);
		if (g < n_gids)
			count[g]++;
	}
	for (size_t g = 0; g < n_gids; g++)
		order[g] = (struct share){ .group = g, .count = count[g] };
	qsort(order, n_gids, sizeof(*order), share_cmp);
	size_t base = nshards / n_gids, extra = nshards % n_gids;
	for (size_t r = 0; r < n_gids; r++)
		target[order[r].group] = base + (r < extra ? 1 : 0);

	/* Free what no group may keep: shards of unknown groups, and the
	 * highest-numbered shards of over-full groups. 0 marks a free
	 * shard (no group has gid 0). */
	for (uint32_t s = nshards; s-- > 0;) {
		size_t g = find_gid(gids, n_gids, shards[s]);
		if (g == n_gids) {
			shards[s] = 0;
		} else if (count[g] > target[g]) {
			count[g]--;
			shards[s] = 0;
		}
	}
	/* Fill under-full groups, lowest gid first, lowest shard first. The
	 * targets sum to nshards, so every free shard finds a group. */
	size_t g = 0;
	for (uint32_t s = 0; s < nshards; s++) {
		if (shards[s] != 0)
			continue;
		while (count[g] >= target[g])
			g++;
		shards[s] = gids[g];
		count[g]++;
	}
	mem_free(count);
	mem_free(target);
	mem_free(order);
	return STATUS_OK;
}
