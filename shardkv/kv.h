/*
 * skv: the state machine of one replica group, without its data. Pure:
 * no clock, no I/O, no threads; the same commands in the same order give
 * the same state on every replica of the group.
 *
 * What it owns: the group's current configuration, the state of every
 * shard in this group, each shard's dedup table (client id -> last seq
 * applied and its status), and for every shard the group that holds its
 * data (the holder table). The keys and values themselves live in the
 * store; the service (service.h) reads and writes them as this state
 * machine decides.
 *
 * Shard states (DESIGN.md, ShardKV):
 *   NONE       not ours;
 *   SERVING    ours, data here, clients served;
 *   PULLING    ours in the current configuration, data still with
 *              `from_gid`; clients get NOT_READY until it arrives;
 *   BEPULLING  no longer ours: data kept, frozen, for the new owner to
 *              pull, until it asks us to delete it;
 *   GCING      ours and served; the old copy at `from_gid` is not yet
 *              known to be deleted;
 *   HELD       the configuration gives the shard to no group (gid 0, as
 *              after every group left): we keep the data, frozen, for
 *              whoever gets it next; it does not hold configurations up.
 *
 * Configurations apply one number at a time, and only when the group is
 * stable (no PULLING, BEPULLING or GCING shard), so every move of a
 * shard between two configurations completes before the next starts.
 * Shards whose owner did not change keep their state throughout.
 *
 * Who holds a shard's data is a function of the configuration history
 * alone: the last non-zero owner. Every group applies every configuration
 * in order, so every group computes the same holder table, and a new
 * owner knows whom to pull from even when the shard spent configurations
 * on gid 0 or its holder has left.
 *
 * Invariant a reader must not break: nothing here depends on hash-map
 * iteration order or pointer values; dedup tables are looked up while
 * applying, and listed (sorted by client id) only to send or store them.
 */
#ifndef SKV_SHARDKV_KV_H
#define SKV_SHARDKV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/shardkv.pb-c.h"
#include "shardmaster/sm.h"

enum skv_shard_state {
	SKV_SHARD_NONE = 0,
	SKV_SHARD_SERVING = 1,
	SKV_SHARD_PULLING = 2,
	SKV_SHARD_BEPULLING = 3,
	SKV_SHARD_GCING = 4,
	SKV_SHARD_HELD = 5,
};

/* "none", "serving", ...; "?" for anything else. */
const char *skv_shard_state_name(enum skv_shard_state st);

/* One group's view of a shard. */
struct skv_shard_info {
	enum skv_shard_state state;
	uint64_t config_num; /* configuration it entered this state in */
	uint64_t from_gid;   /* PULLING / GCING: where the data was */
	size_t n_from;
	char **from_servers; /* borrowed from the state machine */
};

struct skv;

/* A new state machine at configuration 0 (no shards known). NULL when
 * out of memory. */
struct skv *skv_new(uint64_t gid);
void skv_free(struct skv *k); /* NULL ok */
/* Back to configuration 0 (before loading a stored state). */
void skv_reset(struct skv *k);

uint64_t skv_gid(const struct skv *k);
/* 0 until the first configuration applied. */
uint32_t skv_nshards(const struct skv *k);
/* Changes whenever the configuration or a shard's state does (apply,
 * load, reset); for observers that cache what they derive from them. */
uint64_t skv_version(const struct skv *k);
/* The current configuration; NULL at configuration 0. Borrowed. */
const struct sm_config *skv_config(const struct skv *k);
uint64_t skv_config_num(const struct skv *k);

/* Requires shard < nshards; *out borrows from the state machine. */
void skv_shard(const struct skv *k, uint32_t shard,
	       struct skv_shard_info *out);
/* True for SERVING and GCING: client operations on the shard apply. */
bool skv_serves(const struct skv *k, uint32_t shard);
/* No shard PULLING, BEPULLING or GCING: the next configuration may
 * apply. */
bool skv_stable(const struct skv *k);
/* The group holding shard's data (0 = never owned); its servers as known
 * (*servers borrowed, NULL with *n 0 if unknown). */
uint64_t skv_holder(const struct skv *k, uint32_t shard,
		    const char *const **servers, size_t *n);

/* ---- client operations ---- */

enum skv_op_check {
	SKV_OP_APPLY,	    /* new: apply it, then skv_dedup_record */
	SKV_OP_DUPLICATE,   /* seq already applied: answer *status again */
	SKV_OP_WRONG_GROUP, /* not ours in the current configuration */
	SKV_OP_NOT_READY,   /* ours, but the data has not arrived */
};

/* Decides what to do with a write of client_id/seq on `shard` (shard <
 * nshards, or WRONG_GROUP). For DUPLICATE, *status is the status the
 * original got (or OK for a seq older than the last: the client has
 * moved on and ignores it). */
enum skv_op_check skv_op_check(const struct skv *k, uint32_t shard,
			       uint64_t client_id, uint64_t seq,
			       int *status);

/* Records that client_id/seq applied on `shard` with `status`. STATUS_OK
 * or NO_MEMORY (then nothing changed). */
int skv_dedup_record(struct skv *k, uint32_t shard, uint64_t client_id,
		     uint64_t seq, int status);

/* The dedup table of `shard`, sorted by client id, into a new array
 * (*out, *n; free with skv_dedup_list_free). STATUS_OK or NO_MEMORY. */
int skv_dedup_list(const struct skv *k, uint32_t shard,
		   Skv__DedupEntry ***out, size_t *n);
void skv_dedup_list_free(Skv__DedupEntry **list, size_t n);
/* Entries in the dedup table of `shard`. */
size_t skv_dedup_count(const struct skv *k, uint32_t shard);

/* ---- replicated commands ---- */

/* What a command changed, for the host to persist and act on. */
struct skv_changes {
	bool config;	  /* the configuration and holder table changed */
	uint32_t *shards; /* shards whose state changed (owned by the
			     struct; skv_changes_clear) */
	size_t n_shards, cap_shards;
	/* skv_apply_delete: the shard's data must be deleted. */
	bool delete_data;
	/* skv_apply_insert (last page): the shard's dedup table changed. */
	bool dedup;
};
void skv_changes_clear(struct skv_changes *ch); /* keeps capacity */
void skv_changes_free(struct skv_changes *ch);

/*
 * The next configuration: applies when next->num is the current number
 * + 1, the group is stable and `next` is well formed (same shard count
 * as before, every owner listed). Then, per shard, with g this group:
 *   owned by g before (SERVING/HELD): g again -> SERVING, 0 -> HELD,
 *     another -> BEPULLING;
 *   not ours: now g -> SERVING if nobody ever held it, else PULLING from
 *     its holder.
 * Returns STATUS_OK (applied), ALREADY_EXISTS (not the next number, or
 * not stable: ignored), INVALID_ARGUMENT (malformed: ignored) or
 * NO_MEMORY (unchanged: the caller must treat it as fatal, since other
 * replicas applied it).
 */
int skv_apply_config(struct skv *k, const Skv__Config *next,
		     struct skv_changes *ch);

/*
 * A page of a pulled shard arrived. Applies when the shard is PULLING in
 * configuration `config_num` (the current one); else ALREADY_EXISTS
 * (stale or repeated: the host writes nothing). The host writes the
 * page's data itself. On the last page, the dedup table is installed and
 * the shard becomes GCING (served). STATUS_OK, ALREADY_EXISTS,
 * INVALID_ARGUMENT (shard out of range) or NO_MEMORY.
 */
int skv_apply_insert(struct skv *k, const Skv__InsertShard *ins,
		     struct skv_changes *ch);

/* The new owner has the shard: a BEPULLING shard of configuration
 * `config_num` becomes NONE, its dedup table is dropped and
 * ch->delete_data set. Else ALREADY_EXISTS (nothing to do). */
int skv_apply_delete(struct skv *k, uint64_t config_num, uint32_t shard,
		     struct skv_changes *ch);

/* The old owner deleted its copy: GCING of `config_num` -> SERVING. Else
 * ALREADY_EXISTS. */
int skv_apply_gc_done(struct skv *k, uint64_t config_num, uint32_t shard,
		      struct skv_changes *ch);

/* ---- answering other groups ---- */

/*
 * May this replica hand shard `shard` of configuration `config_num` to
 * group `gid`? STATUS_OK (BEPULLING in that configuration and `gid` its
 * new owner: the data is frozen, any replica that applied the
 * configuration has the same), NOT_READY (this replica has not applied
 * that configuration yet), NOT_FOUND (the shard was handed over and
 * deleted already, or it is not this group's to give: *why says which),
 * INVALID_ARGUMENT (shard out of range).
 */
int skv_pull_check(const struct skv *k, uint64_t config_num, uint32_t shard,
		   uint64_t gid, const char **why);

/*
 * DeleteShard(config_num, shard) from `gid`: STATUS_OK with *propose true
 * (BEPULLING of that configuration, given to `gid`: propose the delete),
 * STATUS_OK with *propose false (already deleted: answer OK now),
 * NOT_READY (configuration not applied yet), INVALID_ARGUMENT.
 */
int skv_delete_check(const struct skv *k, uint64_t config_num,
		     uint32_t shard, uint64_t gid, bool *propose);

/* ---- loading the stored form ---- */

/* Each returns STATUS_OK, INVALID_ARGUMENT (malformed: the caller reports
 * corruption) or NO_MEMORY. Load the configuration and holders first. */
int skv_load_config(struct skv *k, const Skv__Config *cur,
		    const Skv__ShardHolders *holders);
int skv_load_shard(struct skv *k, uint32_t shard, const Skv__ShardState *st);
int skv_load_dedup(struct skv *k, uint32_t shard, uint64_t client_id,
		   uint64_t seq, int status);

/* The stored forms (what skv_load_* take). Release with
 * skv_holders_proto_release / skv_shard_proto_release. */
int skv_holders_to_proto(const struct skv *k, Skv__ShardHolders *out);
void skv_holders_proto_release(Skv__ShardHolders *h);
int skv_shard_to_proto(const struct skv *k, uint32_t shard,
		       Skv__ShardState *out);
void skv_shard_proto_release(Skv__ShardState *st);

#endif
