/*
 * clerk/sm_core: one shard-master clerk's logic, sans-IO. It builds the
 * requests (client id + increasing seq for Join/Leave/Move), chooses the
 * server of each attempt (clerk/retry.h), times attempts out, backs off,
 * and reads the replies. It never sends, sleeps or reads a clock: the
 * host passes `now` in, performs the sends it asks for, reports replies
 * and failures, and calls clerk_sm_core_tick at clerk_sm_core_wake_ms.
 * Two hosts drive it: the blocking production clerk (smclerk.h, over
 * gRPC) and the simulator's clerk endpoints.
 *
 * One operation at a time. An operation ends with a status:
 *   OK                the request applied (or the query answered);
 *   INVALID_ARGUMENT  the shard master refused it (the reason is in the
 *                     error text); nothing changed;
 *   TIMEOUT           the deadline passed first. A Join/Leave/Move may or
 *                     may not have applied; retrying it through the same
 *                     core (clerk_sm_core_retry) keeps it exactly-once.
 *   other             another application status the shard master
 *                     answered with (its error text says why), or
 *                     NO_MEMORY when the reply could not be kept.
 *
 * Ownership: the core copies its options; requests passed in are
 * borrowed for the call; the reply returned by clerk_sm_core_done belongs
 * to the core until the next start, retry or free.
 */
#ifndef SKV_CLERK_SM_CORE_H
#define SKV_CLERK_SM_CORE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clerk/retry.h"
#include "common/buf.h"
#include "proto/shardmaster.pb-c.h"
#include "shardmaster/sm.h" /* enum sm_method */

struct clerk_sm_core_opts {
	size_t n_servers;	    /* > 0 */
	const char *const *servers; /* n_servers addresses, for leader hints
				       (copied) */
	uint64_t client_id;	    /* unique per clerk; random 64 bits */
	uint64_t seed;		    /* for backoff jitter */
	uint64_t attempt_timeout_ms; /* one attempt; 0 = 1,000 */
	uint64_t backoff_ms_min, backoff_ms_max; /* 0 = 20 / 1,000 */
};

/* One attempt the host must start now: send `bytes` (owned by the core,
 * valid until the next core call) as `method` to server `server`, and
 * report its outcome with `attempt`. The host may also give up on it at
 * `timeout_ms` from now (the core times it out itself in any case). */
struct clerk_sm_send {
	uint64_t attempt;
	size_t server;
	enum sm_method method;
	const uint8_t *bytes;
	size_t len;
	uint64_t timeout_ms;
};

struct clerk_sm_core;

/* STATUS_OK with *out, INVALID_ARGUMENT (no servers) or NO_MEMORY. */
int clerk_sm_core_new(const struct clerk_sm_core_opts *o,
		      struct clerk_sm_core **out);
void clerk_sm_core_free(struct clerk_sm_core *c); /* NULL ok */

/*
 * Starts an operation: `req` is a JoinRequest, LeaveRequest, MoveRequest
 * or QueryRequest matching `m`; client_id and seq are filled in here for
 * the first three. `deadline_ms` is absolute, on the host's clock.
 * STATUS_OK, INVALID_ARGUMENT (an operation is running, bad method),
 * NO_MEMORY.
 */
int clerk_sm_core_start(struct clerk_sm_core *c, uint64_t now_ms,
			enum sm_method m, const ProtobufCMessage *req,
			uint64_t deadline_ms);

/* Runs the last operation again (same seq) with a new deadline, after it
 * ended in TIMEOUT (or NO_MEMORY). STATUS_OK or INVALID_ARGUMENT (nothing
 * to retry). */
int clerk_sm_core_retry(struct clerk_sm_core *c, uint64_t now_ms,
			uint64_t deadline_ms);

/* The next attempt to start now, if any (call until false after every
 * start, reply and tick). */
bool clerk_sm_core_next_send(struct clerk_sm_core *c, uint64_t now_ms,
			     struct clerk_sm_send *out);

/* The outcome of attempt `attempt`: `status` is the transport's (enum
 * status: OK, TIMEOUT, UNAVAILABLE, ...); `reply` (borrowed) is the
 * decoded SmReply when status is OK. Replies to attempts that are no
 * longer current are ignored. */
void clerk_sm_core_on_reply(struct clerk_sm_core *c, uint64_t now_ms,
			    uint64_t attempt, int status,
			    const Skv__SmReply *reply);

/* Timers: attempt timeout, end of a backoff, the deadline. */
void clerk_sm_core_tick(struct clerk_sm_core *c, uint64_t now_ms);

/* When the core next needs clerk_sm_core_tick; UINT64_MAX = never. */
uint64_t clerk_sm_core_wake_ms(const struct clerk_sm_core *c);

/* True once the operation ended: *status as above, *reply the final
 * SmReply (NULL on TIMEOUT), *error a one-line reason ("" on OK). */
bool clerk_sm_core_done(const struct clerk_sm_core *c, int *status,
			const Skv__SmReply **reply, const char **error);

/*
 * What the current (or last) operation met, so a host can tell "no server
 * answered" from "servers answer, but none leads yet". Reset by start and
 * retry.
 */
struct clerk_sm_stats {
	uint32_t attempts;   /* attempts started */
	uint32_t answered;   /* SmReplies received, whatever their status */
	uint32_t not_leader; /* ... of which NOT_LEADER */
	uint32_t not_ready;  /* ... of which NOT_READY, UNAVAILABLE, SHUTDOWN */
	uint32_t timed_out;  /* attempts the core timed out itself */
	uint32_t failed;     /* transport failures reported by the host */
	int last_failure;    /* the last of those (enum status; OK = none) */
	size_t last_failure_server;
};

void clerk_sm_core_stats(const struct clerk_sm_core *c,
			 struct clerk_sm_stats *out);

/* True while an operation runs. */
bool clerk_sm_core_busy(const struct clerk_sm_core *c);

uint64_t clerk_sm_core_client_id(const struct clerk_sm_core *c);

#endif
