/*
 * kv_cluster: a whole shardkv deployment in the simulator: a shard master
 * of 3 replicas (sm_cluster.h), replica groups of 3 and key/value clerks,
 * all endpoints of one `struct sim`.
 *
 * Each group replica is what production runs, minus gRPC and the event
 * loop: the Raft replica shell (common/raft/replica.h) over RocksDB on its
 * own in-memory Env, hosting the shardkv service (shardkv/service.h). Its
 * outgoing calls (Query to the shard master, PullShard / DeleteShard to
 * other groups) travel the simulated network; one whose reply never comes
 * is reported TIMEOUT at its deadline. Each clerk is the production
 * key/value clerk core (clerk/kv_core.h). A crash frees everything in
 * memory and closes the store; a restart reopens it and reloads.
 *
 * Every clerk operation is recorded in a linearizability history
 * (tests/lin/lin.h): call and return in virtual ms, client = clerk index
 * (plus a multiple of the clerk count for a clerk's concurrent lanes).
 *
 * Checked after every simulated event (besides sm_cluster's own checks):
 *   - for each shard and configuration number, at most one group has an
 *     up, leading replica serving the shard in that configuration, and a
 *     replica serves a shard only if its configuration gives it the shard;
 *   - no replica's configuration number goes back, across crashes too;
 *   - configuration n, on every replica of every group that applied
 *     it, is the one the shard master made (sm_cluster_config_made).
 * At every clerk answer: the status is one a clerk may end with, and
 * nothing impossible was read (a value for a key never written, a value
 * never put on a key that only saw Puts). The first violation is kept in
 * kv_cluster_failure() and stops the run helpers.
 *
 * Ids: shard-master replicas 1..3 ("sm1".."sm3"), the admin shard-master
 * clerk SM_CLUSTER_CLERK0; group `gid` replica i (0..2) is endpoint
 * kv_cluster_server_id(gid, i), address sm_cluster_server_name(gid, i),
 * Raft id i + 1; kv clerks KV_CLUSTER_CLERK0 + 0..k-1. Groups are gids
 * KV_CLUSTER_GID0 + 0..n-1.
 */
#ifndef SKV_TESTS_SIM_KV_CLUSTER_H
#define SKV_TESTS_SIM_KV_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clerk/kv_core.h"
#include "common/buf.h"
#include "shardkv/kv.h"
#include "tests/lin/lin.h"
#include "tests/sim/sim.h"
#include "tests/sim/sm_cluster.h"

#define KV_CLUSTER_GID0 100u
#define KV_CLUSTER_GROUPS_MAX 8
#define KV_CLUSTER_REPLICAS 3
#define KV_CLUSTER_CLERK0 2000u

struct kv_cluster_opts {
	size_t n_groups; /* 1..KV_CLUSTER_GROUPS_MAX */
	size_t n_clerks;
	uint32_t nshards; /* 0 = SM_SHARDS_DEFAULT */
	/* Group replicas' Raft log bytes before compaction; 0 = never. */
	size_t maxlog;
	/* The shard master's; 0 = never. */
	size_t sm_maxlog;
	uint64_t clerk_attempt_timeout_ms; /* 0 = the core's default */
	uint64_t call_timeout_ms;	   /* replicas' calls; 0 = default */
	size_t pull_page_bytes; /* PullShard page; 0 = default */
};

/* A finished clerk operation, as kv_cluster_set_on_done reports it. The
 * pointers are borrowed for the callback. */
struct kv_cluster_done {
	size_t clerk;
	uint64_t op_id;
	enum clerk_kv_op op;
	const uint8_t *key;
	size_t klen;
	const uint8_t *value; /* Put / Append input */
	size_t vlen;
	int status;	      /* clerk_kv_result's */
	const uint8_t *out;   /* Get + OK */
	size_t outlen;
	uint64_t call_ms, ret_ms;
};

/* Called from inside a simulated event for every finished operation; it
 * may start operations and schedule actions, but not step the simulator. */
typedef void (*kv_cluster_done_fn)(void *arg,
				   const struct kv_cluster_done *d);

struct kv_cluster;

/* Adds the shard master, every group (all replicas up, no group joined
 * yet) and the clerks to `sim` (borrowed, must outlive the cluster), and
 * installs the checks as the simulator's after-step hook. NULL on
 * allocation failure or bad options. */
struct kv_cluster *kv_cluster_new(struct sim *sim,
				  const struct kv_cluster_opts *o);
/* Frees the cluster, the shard master and the history. NULL ok. */
void kv_cluster_free(struct kv_cluster *c);

/* The first violation (of this cluster or its shard master), or NULL. */
const char *kv_cluster_failure(const struct kv_cluster *c);
/* Records a failure of the test script's own (first one wins). */
void kv_cluster_fail(struct kv_cluster *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The shard master (borrowed; for its crash/restart/leader helpers). */
struct sm_cluster *kv_cluster_sm(struct kv_cluster *c);

/* ---- groups ---- */

/* Group number g's gid (KV_CLUSTER_GID0 + g). */
uint64_t kv_cluster_gid(size_t g);
/* The endpoint id of replica i of `gid`. */
uint32_t kv_cluster_server_id(uint64_t gid, size_t i);

/* Crash (all in memory lost) and restart one replica, or a whole group. */
void kv_cluster_crash(struct kv_cluster *c, uint64_t gid, size_t i);
void kv_cluster_restart(struct kv_cluster *c, uint64_t gid, size_t i);
void kv_cluster_crash_group(struct kv_cluster *c, uint64_t gid);
void kv_cluster_restart_group(struct kv_cluster *c, uint64_t gid);
bool kv_cluster_up(const struct kv_cluster *c, uint64_t gid, size_t i);
/* Cuts (or restores) every link of every replica of `gid`. */
void kv_cluster_isolate_group(struct kv_cluster *c, uint64_t gid);
void kv_cluster_connect_group(struct kv_cluster *c, uint64_t gid);

/* Replica i's state machine; NULL while it is down. Borrowed. */
const struct skv *kv_cluster_state(const struct kv_cluster *c, uint64_t gid,
				   size_t i);
/* The index of the up replica of `gid` leading in the highest term, or
 * -1. */
int kv_cluster_leader(const struct kv_cluster *c, uint64_t gid);

/* Join / leave through the shard master's admin clerk; blocking, up to
 * 60 s. STATUS_OK or the shard master's answer (a failure is recorded
 * unless OK). */
int kv_cluster_join(struct kv_cluster *c, const uint64_t *gids, size_t n);
int kv_cluster_leave(struct kv_cluster *c, const uint64_t *gids, size_t n);
/* The shard master's latest configuration number (0 if no replica is
 * up). */
uint64_t kv_cluster_sm_latest(const struct kv_cluster *c);

/* Runs until every up replica of each of `gids` has applied
 * configuration `num` (or later) and is stable (skv_stable); true then,
 * false at `deadline_ms` (absolute) or on a failure. */
bool kv_cluster_wait_config(struct kv_cluster *c, const uint64_t *gids,
			    size_t n, uint64_t num, uint64_t deadline_ms);

/* Bytes every up replica keeps: keys + values of the data, meta and
 * raft column families (the Raft log and its state included). Down
 * replicas count 0. */
uint64_t kv_cluster_stored_bytes(struct kv_cluster *c);
/* The largest Raft log (raft_log_bytes) of an up replica now, and the
 * largest seen after any event so far. */
size_t kv_cluster_max_log_bytes(struct kv_cluster *c);
size_t kv_cluster_peak_log_bytes(const struct kv_cluster *c);

/* ---- clerks (index 0..k-1) ---- */

/* Starts an operation on clerk `k` with a deadline `timeout_ms` from now
 * (key, value copied). STATUS_OK with *op_id (may be NULL), or the core's
 * refusal (INVALID_ARGUMENT, TOO_LARGE: nothing recorded). */
int kv_cluster_start(struct kv_cluster *c, size_t k, enum clerk_kv_op op,
		     const void *key, size_t klen, const void *value,
		     size_t vlen, uint64_t timeout_ms, uint64_t *op_id);
/* Operations of clerk `k` not finished yet. */
size_t kv_cluster_running(const struct kv_cluster *c, size_t k);
/* Runs until no clerk has an operation running; false at `deadline_ms`
 * or on a failure. */
bool kv_cluster_wait_idle(struct kv_cluster *c, uint64_t deadline_ms);
/* Every finished operation is reported to fn(arg, ...); NULL = none. */
void kv_cluster_set_on_done(struct kv_cluster *c, kv_cluster_done_fn fn,
			    void *arg);

/* Blocking: runs one operation on clerk `k` to its end (deadline
 * `timeout_ms` from now) and returns its status; a Get's value replaces
 * `out` (may be NULL) when OK. STATUS_INTERNAL if the simulator runs dry
 * or a failure stops the run. */
int kv_cluster_do(struct kv_cluster *c, size_t k, enum clerk_kv_op op,
		  const void *key, size_t klen, const void *value, size_t vlen,
		  uint64_t timeout_ms, struct buf *out);
/* Shorthands on C strings, with a 60 s deadline. */
int kv_cluster_put(struct kv_cluster *c, size_t k, const char *key,
		   const char *value);
int kv_cluster_append(struct kv_cluster *c, size_t k, const char *key,
		      const char *value);
/* Get: *value (mem_free; NUL-terminated) when OK, else NULL. */
int kv_cluster_get(struct kv_cluster *c, size_t k, const char *key,
		   char **value);

/* The history of every operation so far (borrowed). */
const struct lin_history *kv_cluster_history(const struct kv_cluster *c);
/* Checks the history; ILLEGAL records a failure with the explanation.
 * Returns the result and fills *r (lin_report_free) when r is not NULL. */
enum lin_result kv_cluster_check_history(struct kv_cluster *c,
					 struct lin_report *r);

/* Label of a message for the simulator's trace. */
void kv_cluster_format(void *arg, uint32_t type, const void *bytes,
		       size_t len, char *out, size_t cap);

#endif
