/*
 * clerk/retry: which server a clerk tries next, and how long it waits
 * first. Pure (no clock, no randomness of its own: the caller seeds it),
 * shared by the shard-master clerk and the key/value clerk.
 *
 * Policy: start with the remembered leader (server 0 at first); on
 * NOT_LEADER go to the hinted server if there is one, else the next; on a
 * failed attempt (unreachable, timeout) go to the next. Within a round a
 * server is not asked twice while another has not been asked (hints
 * included), so stale hints that point back and forth cannot keep a clerk
 * from the others. While a round
 * through the servers has not failed everywhere, retry at once; after
 * each full round without an answer wait an exponential backoff
 * (backoff_ms_min doubling up to backoff_ms_max) with full jitter, so
 * clerks do not hammer a cluster that is electing a leader.
 */
#ifndef SKV_CLERK_RETRY_H
#define SKV_CLERK_RETRY_H

#include <stddef.h>
#include <stdint.h>

struct clerk_retry {
	size_t n_servers;
	size_t leader;	     /* remembered: last server that answered */
	size_t next;	     /* server of the next attempt */
	size_t misses;	     /* attempts without an answer in this round */
	uint64_t tried;	     /* servers 0..63 asked in this round */
	uint32_t rounds;     /* full rounds without an answer, in a row */
	uint64_t backoff_ms_min, backoff_ms_max;
	uint64_t rng;	     /* splitmix64 state */
};

/* n_servers > 0; min 0 = 20 ms, max 0 = 1,000 ms. */
void clerk_retry_init(struct clerk_retry *r, size_t n_servers, uint64_t seed,
		      uint64_t backoff_ms_min, uint64_t backoff_ms_max);

/* Server index for the next attempt. */
size_t clerk_retry_pick(const struct clerk_retry *r);

/* `server` answered (OK or an application error): it is the leader. */
void clerk_retry_answered(struct clerk_retry *r, size_t server);

/* `server` is not the leader; `hint` is the leader's index, or
 * (size_t)-1 when unknown. Returns the delay before the next attempt. */
uint64_t clerk_retry_not_leader(struct clerk_retry *r, size_t server,
				size_t hint);

/* The attempt on `server` failed (unreachable, timeout, NOT_READY).
 * Returns the delay before the next attempt. */
uint64_t clerk_retry_failed(struct clerk_retry *r, size_t server);

#endif
