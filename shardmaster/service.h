/*
 * sm_service: the replicated shard-master service, independent of the
 * runtime. The production server (server.c: gRPC + event loop) and the
 * simulator (tests/sim) both host it the same way: they hand it client
 * requests with an opaque token, drive its Raft replica, and deliver the
 * replies it emits for those tokens.
 *
 * What it owns: the state machine (sm.h), loaded from the store and kept
 * in step with it; the requests waiting for their log entry to apply or
 * their read index to be confirmed. It borrows the store and, while
 * attached, the Raft core.
 *
 * How requests are answered:
 *   - Join / Leave / Move are checked on their own (sm_check_*), then
 *     proposed as an SmCommand. The answer is the outcome applied at the
 *     proposed index, sent once that applied state is durable. If another
 *     command lands at that index, or this node stops leading first, the
 *     answer is NOT_LEADER and the clerk retries: client id + seq make the
 *     retry exactly-once.
 *   - Query is linearizable without writing the log: a read index is
 *     taken and the answer comes from the state applied up to it.
 *   - A follower answers NOT_LEADER with the leader's address when known.
 *   - The first leader of an uninitialized shard master proposes Init with
 *     its own `nshards`; until Init applies, requests get NOT_READY.
 *
 * Storage (meta column family, under "sm/"):
 *   "sm/nshards"                 u32 big-endian
 *   "sm/config/" + u64 BE num    packed skv.Config
 *   "sm/client/" + u64 BE id     packed skv.SmDedup
 * written in the apply batch, so they are atomic with the applied index.
 *
 * Invariant: every token handed to sm_service_request gets exactly one
 * reply through `reply`, possibly from inside the call, unless the host
 * frees the service first (sm_service_fail_all answers the rest).
 * sm_service_request, _after_process and _fail_all are never called from
 * inside raft_replica_process (the fsm callbacks); the fsm callbacks do
 * not call into the core except its observers.
 */
#ifndef SKV_SHARDMASTER_SERVICE_H
#define SKV_SHARDMASTER_SERVICE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/raft/raft.h"
#include "common/raft/replica.h"
#include "common/store/store.h"
#include "proto/shardmaster.pb-c.h"
#include "shardmaster/sm.h"

/* Delivers the reply for `token`; `r` is borrowed for the call. */
typedef void (*sm_reply_fn)(void *arg, uint64_t token,
			    const Skv__SmReply *r);

struct sm_service_opts {
	struct store *store; /* borrowed; must outlive the service */
	uint32_t self_id;    /* this replica's Raft id */
	/* Address of Raft node i+1 for leader hints (copied; NULL = none). */
	const char *addrs[RAFT_MAX_NODES];
	size_t n_nodes;
	/* Shard count this node proposes if it first leads a new shard
	 * master (0 = SM_SHARDS_DEFAULT). */
	uint32_t nshards;
	sm_reply_fn reply;
	void *reply_arg;
};

struct sm_service;

/* Loads the state from o->store. STATUS_OK and *out; CORRUPTION (stored
 * state unreadable: errmsg names the key), NO_MEMORY or a store error,
 * with *out NULL and errmsg[0..cap) saying why. */
int sm_service_new(const struct sm_service_opts *o, struct sm_service **out,
		   char *errmsg, size_t cap);

/* Frees; pending requests get no reply (call sm_service_fail_all first
 * if their tokens matter). NULL ok. */
void sm_service_free(struct sm_service *s);

/* The Raft state machine callbacks; ctx is the service. */
extern const struct raft_fsm_ops sm_service_fsm;

/* The core to propose and read on (the replica's, after it opened); NULL
 * detaches it: pending requests are answered UNAVAILABLE. */
void sm_service_attach(struct sm_service *s, struct raft *r);

/* A client request (borrowed; the type sm_method_request(m)). Answers at
 * once when it can (bad request, not leader) or later. */
void sm_service_request(struct sm_service *s, uint64_t token,
			enum sm_method m, const ProtobufCMessage *req);

/* After each raft_replica_process: answers NOT_LEADER to what waits on a
 * term this node no longer leads, and proposes Init when due. */
void sm_service_after_process(struct sm_service *s);

/* Answers every pending request with `status` (SHUTDOWN, UNAVAILABLE). */
void sm_service_fail_all(struct sm_service *s, int status);

/* The state machine, for observers and tests; owned by the service. */
const struct sm *sm_service_sm(const struct sm_service *s);

/* Requests waiting for an answer. */
size_t sm_service_pending(const struct sm_service *s);

#endif
