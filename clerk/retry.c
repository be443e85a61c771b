/*
 * clerk/retry: see retry.h. A "round" is n_servers attempts in a row that
 * got no usable answer (failed, or NOT_LEADER); only a completed round
 * costs a backoff, so a clerk that merely has to find the leader never
 * waits, while one facing a cluster without a leader slows down.
 */
#include "clerk/retry.h"

#include <assert.h>
#include <stdbool.h>

#define BACKOFF_MS_MIN_DEFAULT 20
#define BACKOFF_MS_MAX_DEFAULT 1000

/* splitmix64: one 64-bit state, every output from one add and a mix. */
static uint64_t rng_next(struct clerk_retry *r)
{
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

void clerk_retry_init(struct clerk_retry *r, size_t n_servers, uint64_t seed,
		      uint64_t backoff_ms_min, uint64_t backoff_ms_max)
{
	assert(n_servers > 0);
	r->n_servers = n_servers;
	r->leader = 0;
	r->next = 0;
	r->misses = 0;
	r->rounds = 0;
	r->tried = 0;
	r->backoff_ms_min = backoff_ms_min ? backoff_ms_min
					   : BACKOFF_MS_MIN_DEFAULT;
	r->backoff_ms_max = backoff_ms_max ? backoff_ms_max
					   : BACKOFF_MS_MAX_DEFAULT;
	if (r->backoff_ms_max < r->backoff_ms_min)
		r->backoff_ms_max = r->backoff_ms_min;
	r->rng = seed;
}

size_t clerk_retry_pick(const struct clerk_retry *r)
{
	return r->next;
}

void clerk_retry_answered(struct clerk_retry *r, size_t server)
{
	assert(server < r->n_servers);
	r->leader = server;
	r->next = server;
	r->misses = 0;
	r->rounds = 0;
	r->tried = 0;
}

/* The ceiling of the backoff after `rounds` failed rounds (>= 1):
 * min * 2^(rounds-1), at most max. */
static uint64_t backoff_cap(const struct clerk_retry *r)
{
	uint64_t cap = r->backoff_ms_min;
	for (uint32_t i = 1; i < r->rounds && cap < r->backoff_ms_max; i++)
		cap = cap > r->backoff_ms_max / 2 ? r->backoff_ms_max : cap * 2;
	return cap < r->backoff_ms_max ? cap : r->backoff_ms_max;
}

/* Servers asked in this round: the first 64 are tracked, the others
 * always count as not yet asked. */
static bool tried(const struct clerk_retry *r, size_t server)
{
	return server < 64 && (r->tried >> server & 1);
}

static void mark_tried(struct clerk_retry *r, size_t server)
{
	if (server < 64)
		r->tried |= (uint64_t)1 << server;
}

/* The first server after `server` (cyclically) not asked in this round;
 * the one right after it when all were. */
static size_t untried_after(const struct clerk_retry *r, size_t server)
{
	for (size_t i = 1; i < r->n_servers; i++) {
		size_t s = (server + i) % r->n_servers;
		if (!tried(r, s))
			return s;
	}
	return (server + 1) % r->n_servers;
}

/* Counts an attempt without an answer; the delay before the next one. */
static uint64_t miss(struct clerk_retry *r)
{
	if (++r->misses < r->n_servers)
		return 0;
	r->misses = 0;
	r->tried = 0;
	if (r->rounds < UINT32_MAX)
		r->rounds++;
	uint64_t cap = backoff_cap(r);
	uint64_t x = rng_next(r);
	/* Full jitter: uniform in [0, cap]. */
	return cap == UINT64_MAX ? x : x % (cap + 1);
}

uint64_t clerk_retry_not_leader(struct clerk_retry *r, size_t server,
				size_t hint)
{
	assert(server < r->n_servers);
	mark_tried(r, server);
	/* A hint at a server already tried in this round is stale (two
	 * followers naming each other): try one not yet asked instead. */
	if (hint < r->n_servers && hint != server && !tried(r, hint))
		r->next = hint;
	else
		r->next = untried_after(r, server);
	return miss(r);
}

uint64_t clerk_retry_failed(struct clerk_retry *r, size_t server)
{
	assert(server < r->n_servers);
	mark_tried(r, server);
	r->next = untried_after(r, server);
	return miss(r);
}
