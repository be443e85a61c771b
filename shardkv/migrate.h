/*
 * skv_migrate: the leader's side of reconfiguration, sans-IO. Pure: no
 * clock, no I/O; the host (shardkv/service.c) passes `now` in, performs
 * the calls it asks for, reports their outcomes, and proposes the
 * commands it emits through Raft.
 *
 * What it does while this replica leads (DESIGN.md, ShardKV):
 *   - when every shard is stable, polls the shard master every poll_ms
 *     for configuration cur+1 (clerk/sm_core.h) and emits a KvCommand
 *     carrying it;
 *   - for every PULLING shard, pulls it page by page from the group
 *     holding it (PullShard; any replica of that group may answer) and
 *     emits one InsertShard command per page, the last one carrying the
 *     dedup table;
 *   - for every GCING shard, asks the old holder to delete its copy
 *     (DeleteShard, to its leader) and then emits gc_done.
 *
 * What it owns: the shard-master clerk core, one task per moving shard
 * (server choice and backoff per clerk/retry.h, the page cursor), the
 * calls in flight and the commands not yet taken.
 *
 * Invariant: within one term of leadership a command emitted is not
 * emitted again (the leader's log keeps it); when leadership or the term
 * changes every task starts over, since what an old term proposed may be
 * lost. Commands are idempotent at apply (kv.h), so starting over is
 * always safe.
 */
#ifndef SKV_SHARDKV_MIGRATE_H
#define SKV_SHARDKV_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/buf.h"
#include "shardkv/kv.h"

/* The calls a replica makes. */
enum skv_call {
	SKV_CALL_QUERY = 1,	   /* shard master Query: QueryRequest -> SmReply */
	SKV_CALL_PULL_SHARD = 2,   /* PullShardRequest -> PullShardReply */
	SKV_CALL_DELETE_SHARD = 3, /* DeleteShardRequest -> DeleteShardReply */
};

/* "/skv.ShardMaster/Query", "/skv.ShardKV/PullShard", ...; NULL if
 * unknown. */
const char *skv_call_path(enum skv_call c);
const ProtobufCMessageDescriptor *skv_call_reply(enum skv_call c);

struct skv_migrate_opts {
	uint64_t gid;
	const char *const *masters; /* copied */
	size_t n_masters;
	uint64_t seed;
	uint64_t poll_ms;	  /* 0 = 100 */
	uint64_t call_timeout_ms; /* 0 = 1,000 */
};

/* A call to start now; addr and bytes belong to the driver until its
 * next call. */
struct skv_migrate_call {
	uint64_t id;
	const char *addr;
	enum skv_call kind;
	const uint8_t *bytes;
	size_t len;
	uint64_t timeout_ms;
};

struct skv_migrate;

/* STATUS_OK with *out, INVALID_ARGUMENT (no masters, gid 0), NO_MEMORY. */
int skv_migrate_new(const struct skv_migrate_opts *o,
		    struct skv_migrate **out);
void skv_migrate_free(struct skv_migrate *m); /* NULL ok */

/*
 * The group's state changed or time passed: `leader` and `term` are this
 * replica's, `st` its applied state. Starts, drops or keeps tasks to
 * match; a change of leadership or term drops everything in flight.
 */
void skv_migrate_update(struct skv_migrate *m, uint64_t now_ms,
			const struct skv *st, bool leader, uint64_t term);

/* The next call to start, if any (call until false after every update
 * and call_done). */
bool skv_migrate_next_call(struct skv_migrate *m, uint64_t now_ms,
			   struct skv_migrate_call *out);

/* The outcome of call `id` (stale ids ignored); `reply` borrowed, of
 * type skv_call_reply(kind) when status is OK. */
void skv_migrate_call_done(struct skv_migrate *m, uint64_t now_ms,
			   const struct skv *st, uint64_t id, int status,
			   const ProtobufCMessage *reply);

/* Moves the next packed KvCommand to propose into *out (replaced);
 * false if none. */
bool skv_migrate_next_proposal(struct skv_migrate *m, struct buf *out);

/* A proposal could not be made (not leader any more, no memory): drop
 * every task; they start over at the next update. */
void skv_migrate_reset(struct skv_migrate *m);

/* When the driver next needs skv_migrate_update; UINT64_MAX = never. */
uint64_t skv_migrate_wake_ms(const struct skv_migrate *m);

/* Calls started so far. */
uint64_t skv_migrate_calls(const struct skv_migrate *m);

#endif
