/*
 * skv_service: one replica of a replica group, independent of the
 * runtime. The production server (server.c: gRPC + event loop) and the
 * simulator (tests/sim/kv_cluster.c) host it the same way: they hand it
 * requests with an opaque token and deliver the replies it emits; they
 * perform the outgoing calls it asks for (to the shard master and to
 * other groups) and report their outcomes by call id; they drive its
 * Raft replica and call skv_service_tick at skv_service_wake_ms.
 *
 * What it owns: the state machine (kv.h), loaded from the store and kept
 * in step with it; the migration driver (the leader's config polling,
 * shard pulls and deletes); the requests waiting for their log entry or
 * read index. It borrows the store and, while attached, the Raft core.
 *
 * How requests are answered:
 *   - Put / Append / Delete are proposed as a KvCommand; the answer is
 *     the outcome applied at the proposed index (WRONG_GROUP, NOT_READY,
 *     a duplicate's first answer, OK, NOT_FOUND for a Delete of a missing
 *     key, TOO_LARGE for an Append past the value limit), sent once the
 *     applied state is durable. If another command lands at that index,
 *     or this node stops leading first: NOT_LEADER, and the clerk
 *     retries; client id + seq make that exactly-once.
 *   - Get takes a read index (no log write); once applied state reaches
 *     it, the shard is checked (WRONG_GROUP / NOT_READY) and the value
 *     read from the store.
 *   - PullShard is answered by any replica that applied the
 *     configuration (a BEPULLING shard is frozen), one page at a time.
 *   - DeleteShard is proposed by the leader and answered once applied.
 *   - A follower answers client writes and reads NOT_LEADER with the
 *     leader's address when known.
 *
 * Storage: data CF key = shard (u32 BE) | key. Meta CF, under "kv/":
 *   "kv/config"                      packed skv.Config (current)
 *   "kv/holders"                     packed skv.ShardHolders
 *   "kv/shard/" + u32 BE             packed skv.ShardState
 *   "kv/dedup/" + u32 BE + u64 BE id packed skv.DedupEntry
 * all written in the apply batch, atomic with the applied index.
 *
 * Invariant: every token handed to skv_service_request gets exactly one
 * reply, possibly from inside the call, unless the host frees the
 * service first (skv_service_fail_all answers the rest); every call id
 * the service emits must be reported back once with
 * skv_service_call_done (a lost one after the host's own timeout, with
 * STATUS_TIMEOUT). Nothing here is called from inside
 * raft_replica_process except through skv_service_fsm.
 */
#ifndef SKV_SHARDKV_SERVICE_H
#define SKV_SHARDKV_SERVICE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/raft/raft.h"
#include "common/raft/replica.h"
#include "common/store/store.h"
#include "proto/shardkv.pb-c.h"
#include "shardkv/kv.h"
#include "shardkv/migrate.h" /* enum skv_call */

/* The methods a replica serves. */
enum skv_method {
	SKV_METHOD_GET = 1,
	SKV_METHOD_PUT = 2,
	SKV_METHOD_APPEND = 3,
	SKV_METHOD_DELETE = 4,
	SKV_METHOD_PULL_SHARD = 5,
	SKV_METHOD_DELETE_SHARD = 6,
};
#define SKV_METHOD_COUNT 6

/* "/skv.ShardKV/Get" ...; NULL for an unknown method. */
const char *skv_method_path(enum skv_method m);
/* Request and reply message types; NULL for an unknown method. */
const ProtobufCMessageDescriptor *skv_method_request(enum skv_method m);
const ProtobufCMessageDescriptor *skv_method_reply(enum skv_method m);
/* "get", "put", ... */
const char *skv_method_name(enum skv_method m);

/* Delivers the reply for `token` (borrowed for the call; the type
 * skv_method_reply of the request's method). */
typedef void (*skv_reply_fn)(void *arg, uint64_t token,
			     const ProtobufCMessage *reply);
/* Starts call `id`: send `bytes` (borrowed for the call: a packed request
 * of `c`) to `addr` with a deadline `timeout_ms` from now, and report its
 * outcome with skv_service_call_done. Must not call into the service. */
typedef void (*skv_call_fn)(void *arg, uint64_t id, const char *addr,
			    enum skv_call c, const uint8_t *bytes, size_t len,
			    uint64_t timeout_ms);

struct skv_service_opts {
	struct store *store; /* borrowed; must outlive the service */
	uint64_t gid;	     /* this group, > 0 */
	uint32_t self_id;    /* this replica's Raft id */
	/* Address of Raft node i+1 for leader hints (copied; NULL = none). */
	const char *addrs[RAFT_MAX_NODES];
	size_t n_nodes;
	/* The shard master's servers (copied). */
	const char *const *masters;
	size_t n_masters;
	uint64_t seed;		   /* for retry jitter */
	uint64_t poll_ms;	   /* config polling; 0 = 100 */
	uint64_t call_timeout_ms;  /* one outgoing call; 0 = 1,000 */
	size_t pull_page_bytes;	   /* PullShard page; 0 = 4 MiB */
	skv_reply_fn reply;
	void *reply_arg;
	skv_call_fn call;
	void *call_arg;
};

struct skv_service;

/* Loads the state from o->store. STATUS_OK and *out; CORRUPTION (stored
 * state unreadable: errmsg names the key), INVALID_ARGUMENT (bad
 * options), NO_MEMORY or a store error, with *out NULL and errmsg. */
int skv_service_new(const struct skv_service_opts *o,
		    struct skv_service **out, char *errmsg, size_t cap);
/* Frees; pending requests get no reply (skv_service_fail_all first if
 * their tokens matter); outstanding call ids are forgotten. NULL ok. */
void skv_service_free(struct skv_service *s);

/* The Raft state machine callbacks; ctx is the service. */
extern const struct raft_fsm_ops skv_service_fsm;

/* The core to propose and read on; NULL detaches it (pending requests
 * are answered UNAVAILABLE, migration stops). */
void skv_service_attach(struct skv_service *s, struct raft *r);

/* A request of method `m` (borrowed; type skv_method_request(m)). */
void skv_service_request(struct skv_service *s, uint64_t now_ms,
			 uint64_t token, enum skv_method m,
			 const ProtobufCMessage *req);

/* The outcome of call `id`: `status` is the transport's (OK, TIMEOUT,
 * UNAVAILABLE, ...); `reply` (borrowed; type skv_call_reply) when OK.
 * Unknown or stale ids are ignored. */
void skv_service_call_done(struct skv_service *s, uint64_t now_ms,
			   uint64_t id, int status,
			   const ProtobufCMessage *reply);

/* After each raft_replica_process: answers NOT_LEADER to what waits on a
 * term this node no longer leads, and runs the migration driver (which
 * may propose and start calls). */
void skv_service_after_process(struct skv_service *s, uint64_t now_ms);

/* Timers (polling, call timeouts, backoff); call at skv_service_wake_ms
 * or later. */
void skv_service_tick(struct skv_service *s, uint64_t now_ms);
/* UINT64_MAX = nothing scheduled. */
uint64_t skv_service_wake_ms(const struct skv_service *s);

/* Answers every pending request with `status` (SHUTDOWN, UNAVAILABLE). */
void skv_service_fail_all(struct skv_service *s, int status);

/* The state machine (observers, tests); owned by the service. */
const struct skv *skv_service_state(const struct skv_service *s);
/* Requests waiting for an answer. */
size_t skv_service_pending(const struct skv_service *s);

struct skv_service_stats {
	uint64_t configs_applied;
	uint64_t shards_inserted; /* last pages applied */
	uint64_t shards_deleted;  /* moved copies freed */
	uint64_t pulls_served;	  /* PullShard pages answered */
	uint64_t calls_started;
};
void skv_service_stats(const struct skv_service *s,
		       struct skv_service_stats *out);

#endif
