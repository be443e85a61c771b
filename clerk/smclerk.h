/*
 * smclerk: the blocking, thread-safe shard-master clerk over gRPC, for
 * shardctl, servers and applications. It drives one sans-IO core
 * (clerk/sm_core.h) with the production clock and transport (common/rpc):
 * the calling thread starts the attempts the core asks for, waits until
 * the core's next timer or a reply, and ticks it; the RPC layer's `done`
 * callbacks only hand the reply over under a mutex and signal.
 *
 * What it owns: an rpc_client (one channel per shard master), the core,
 * the replies not yet handed to the core. One client id (random unless
 * given) for its whole life, so a Join/Leave/Move retried inside one call
 * applies at most once.
 *
 * Threads: any number of threads may call in; calls run one at a time in
 * arrival order of the lock (a call waits for the one before it, its own
 * timeout counting from when it starts). smclerk_free only when no call
 * runs.
 *
 * Ownership: addresses, groups and gids passed in are borrowed for the
 * call. A configuration handed out in `struct smclerk_result` belongs to
 * the caller: sm_config_free.
 */
#ifndef SKV_CLERK_SMCLERK_H
#define SKV_CLERK_SMCLERK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clerk/sm_core.h"
#include "shardmaster/sm.h"

struct smclerk_opts {
	uint64_t attempt_timeout_ms;		 /* one RPC; 0 = 1,000 */
	uint64_t backoff_ms_min, backoff_ms_max; /* 0 = 20 / 1,000 */
	uint64_t client_id; /* 0 = 64 random bits from getrandom() */
};

/* One group of a Join: its gid and its servers ("host:port"). */
struct smclerk_group {
	uint64_t gid;
	size_t n_servers;
	const char *const *servers;
};

/*
 * What one call ended with (besides its returned status):
 *   config   OK: the configuration asked for (Query), or the latest one
 *            after the change (Join/Leave/Move; it may already include
 *            later changes by other clerks). After an applied change it
 *            is NULL if reading the new configuration failed; `error`
 *            then says so. NULL on every other status. The caller's:
 *            sm_config_free.
 *   error    one line, "" on OK: the shard master's reason
 *            (INVALID_ARGUMENT), or what the clerk met (TIMEOUT).
 *   answered true when some shard master answered at all (NOT_LEADER,
 *            NOT_READY...): on TIMEOUT it tells "reachable, but no leader
 *            (yet)" from "no shard master answered".
 *   n_answered  how many distinct shard masters answered during the call
 *            (out of the clerk's n), for "2 of 3 answered".
 *   stats    the core's counts for the call's last operation.
 *   last_failure  "host:port: STATUS: detail" of the last transport
 *            failure, "" if none.
 */
struct smclerk_result {
	struct sm_config *config;
	char error[256];
	bool answered;
	size_t n_answered;
	struct clerk_sm_stats stats;
	char last_failure[320];
};

struct smclerk;

/*
 * A clerk for the shard masters addrs[0..n) (copied). STATUS_OK and *out,
 * INVALID_ARGUMENT (n is 0, an address is NULL or empty), NO_MEMORY, or
 * INTERNAL (getrandom or the RPC client failed); *out NULL then.
 */
int smclerk_new(const char *const *addrs, size_t n,
		const struct smclerk_opts *opts, struct smclerk **out);

/* Cancels what is in flight and frees. No call may run. NULL ok. */
void smclerk_free(struct smclerk *k);

uint64_t smclerk_client_id(const struct smclerk *k);

/*
 * The four operations. Each blocks for at most about timeout_ms (> 0)
 * and returns:
 *   OK                done; res->config as above;
 *   INVALID_ARGUMENT  refused by the shard master (res->error says why;
 *                     nothing changed), or bad arguments to the call;
 *   TIMEOUT           no answer in time: a change may or may not have
 *                     applied (res->answered tells unreachable from
 *                     leaderless);
 *   NO_MEMORY, INTERNAL (a reply without a usable configuration), or
 *   another status the shard master answered with.
 * `res` may be NULL; when not, it is filled in on every return.
 */
int smclerk_join(struct smclerk *k, const struct smclerk_group *groups,
		 size_t n_groups, uint64_t timeout_ms,
		 struct smclerk_result *res);
int smclerk_leave(struct smclerk *k, const uint64_t *gids, size_t n_gids,
		  uint64_t timeout_ms, struct smclerk_result *res);
int smclerk_move(struct smclerk *k, uint32_t shard, uint64_t gid,
		 uint64_t timeout_ms, struct smclerk_result *res);
/* num -1 (or past the latest) = the latest configuration. */
int smclerk_query(struct smclerk *k, int64_t num, uint64_t timeout_ms,
		  struct smclerk_result *res);

#endif
