/*
 * clerk/kv_core: the key/value clerk's logic, sans-IO. Many operations
 * run at once. For each it finds the key's shard (common/shard.h), the
 * group owning it in the cached configuration and that group's leader;
 * builds the request; retries across servers with backoff
 * (clerk/retry.h, one per group, so leader memory is per group);
 * refetches the configuration (Query(-1) to the shard master) on
 * WRONG_GROUP or when it has none; and ends the operation with a status
 * at its deadline at the latest. It never sends, sleeps or reads a clock:
 * the host passes `now` in, performs the sends it asks for, reports
 * replies and failures, and calls clerk_kv_core_tick at
 * clerk_kv_core_wake_ms. Two hosts drive it: the blocking production
 * clerk (clerk.h, over gRPC) and the simulator's clerks.
 *
 * Exactly-once: writes carry a client id and a sequence number. The
 * servers keep, per shard, each client id's last seq, so a client id may
 * have only one write outstanding. The core keeps a pool of sessions,
 * each with its own random client id and seq counter, and runs each
 * write on a free session; a session is busy until its operation ends.
 * Gets carry seq 0 and need no session.
 *
 * Ownership: the core copies its options and the key/value of each
 * operation; send bytes belong to the core until its next call; the
 * value of a finished Get is handed to the host (clerk_kv_result).
 */
#ifndef SKV_CLERK_KV_CORE_H
#define SKV_CLERK_KV_CORE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/shardkv.pb-c.h"
#include "proto/shardmaster.pb-c.h"

enum clerk_kv_op {
	CLERK_KV_GET = 0,
	CLERK_KV_PUT = 1,
	CLERK_KV_APPEND = 2,
	CLERK_KV_DELETE = 3,
};

struct clerk_kv_core_opts {
	size_t n_masters;	    /* > 0 */
	const char *const *masters; /* shard-master addresses (copied) */
	uint64_t seed;		    /* client ids and backoff jitter */
	uint64_t attempt_timeout_ms; /* one attempt; 0 = 1,000 */
	uint64_t backoff_ms_min, backoff_ms_max; /* 0 = 20 / 1,000 */
};

/* What the host must send now. `addr` and `bytes` belong to the core
 * (valid until its next call). For a shard-master query, `method` is
 * "/skv.ShardMaster/Query" (request QueryRequest, reply SmReply); else
 * one of "/skv.ShardKV/Get|Put|Append|Delete" (KvRequest -> KvReply). */
struct clerk_kv_send {
	uint64_t attempt; /* report the outcome with this id */
	const char *addr;
	const char *method;
	bool to_master;	  /* the reply is an SmReply, else a KvReply */
	const uint8_t *bytes;
	size_t len;
	uint64_t timeout_ms;
};

/*
 * A finished operation. Statuses (enum status):
 *   OK          done (Get: *value set; Delete: the key existed);
 *   NOT_FOUND   Get / Delete of a missing key;
 *   TIMEOUT     the deadline passed: a write may or may not have applied;
 *   TOO_LARGE   the key or value exceeds common/shard.h's limits, or an
 *               Append would make the value too long (nothing changed);
 *   INVALID_ARGUMENT  empty key, or the servers refused the request;
 *   NO_MEMORY   (a Get's value could not be kept);
 *   another status a server answered with (INTERNAL...): final.
 * On TIMEOUT `error` says what the operation met last (no configuration,
 * no group for its shard, WRONG_GROUP, no leader, no answer...).
 */
struct clerk_kv_result {
	uint64_t op_id;
	int status;
	/* Get + OK: never NULL (an empty value is a 1-byte allocation with
	 * value_len 0), owned by the receiver (mem_free); else NULL. */
	uint8_t *value;
	size_t value_len;
	char error[256]; /* one line; "" on OK */
};

struct clerk_kv_core;

/* STATUS_OK with *out, INVALID_ARGUMENT (no masters) or NO_MEMORY. */
int clerk_kv_core_new(const struct clerk_kv_core_opts *o,
		      struct clerk_kv_core **out);
/* Frees; unfinished operations are dropped without a result. NULL ok. */
void clerk_kv_core_free(struct clerk_kv_core *c);

/* Starts an operation (key/value copied; value ignored for Get/Delete)
 * with an absolute `deadline_ms`; *op_id identifies its result. A write
 * takes a free session (a new one if none is free) and its next seq.
 * STATUS_OK, or the operation ends at once with no result queued:
 * INVALID_ARGUMENT (empty key, unknown op, NULL value with vlen > 0),
 * TOO_LARGE (key or value past common/shard.h's limits), NO_MEMORY. */
int clerk_kv_core_start(struct clerk_kv_core *c, uint64_t now_ms,
			enum clerk_kv_op op, const void *key, size_t klen,
			const void *value, size_t vlen, uint64_t deadline_ms,
			uint64_t *op_id);

/* The next send to start now, if any (call until false after every
 * start, reply and tick). */
bool clerk_kv_core_next_send(struct clerk_kv_core *c, uint64_t now_ms,
			     struct clerk_kv_send *out);

/* The outcome of `attempt`: transport `status` (OK, TIMEOUT,
 * UNAVAILABLE, ...), `reply` (borrowed: SmReply or KvReply as the send
 * said) when OK. Stale attempts are ignored. */
void clerk_kv_core_on_reply(struct clerk_kv_core *c, uint64_t now_ms,
			    uint64_t attempt, int status,
			    const ProtobufCMessage *reply);

void clerk_kv_core_tick(struct clerk_kv_core *c, uint64_t now_ms);
/* UINT64_MAX = nothing scheduled. */
uint64_t clerk_kv_core_wake_ms(const struct clerk_kv_core *c);

/* Takes the next finished operation's result, if any (FIFO). */
bool clerk_kv_core_take(struct clerk_kv_core *c, struct clerk_kv_result *out);

/* Operations not finished yet. */
size_t clerk_kv_core_running(const struct clerk_kv_core *c);
/* The cached configuration's number (0 = none yet). */
uint64_t clerk_kv_core_config_num(const struct clerk_kv_core *c);
/* Sessions in the pool (busy or free); it only grows, to the largest
 * number of writes that ran at once. */
size_t clerk_kv_core_sessions(const struct clerk_kv_core *c);

#endif
