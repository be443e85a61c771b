/*
 * sm_cluster: a shard master of n replicas and k clerks in the simulator.
 *
 * Each replica is what production runs, minus gRPC and the event loop:
 * the Raft replica shell (common/raft/replica.h) over RocksDB on an
 * in-memory Env, hosting the shard-master service (shardmaster/service.h).
 * Each clerk is the production clerk's core (clerk/sm_core.h). Raft
 * messages, client requests and replies all travel the simulated network,
 * so drops, duplicates, delays, partitions and crashes reach every layer.
 * A request carries the clerk's attempt id; the reply carries it back.
 *
 * Checked after every simulated event: configuration n is the same on
 * every replica that has it (configurations never fork), and no replica's
 * latest configuration goes back (a crash reloads from the store). At the
 * end of each clerk operation: a configuration a clerk was told about is
 * the one every replica has under that number. The first violation is
 * kept in sm_cluster_failure() and stops the run helpers.
 *
 * Ids: replicas 1..n (also their Raft ids, addresses "sm1".."smn"),
 * clerks SM_CLUSTER_CLERK0 + 0..k-1.
 */
#ifndef SKV_TESTS_SIM_SM_CLUSTER_H
#define SKV_TESTS_SIM_SM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/shardmaster.pb-c.h"
#include "shardmaster/sm.h"
#include "tests/sim/sim.h"

#define SM_CLUSTER_CLERK0 1000u

struct sm_cluster_opts {
	size_t n_servers;      /* 3 or 5 */
	size_t n_clerks;
	uint32_t nshards;      /* 0 = SM_SHARDS_DEFAULT */
	/* Log bytes before compaction (snapshots); 0 = never. */
	size_t compaction_log_bytes_max;
	uint64_t clerk_attempt_timeout_ms; /* 0 = the core's default */
};

struct sm_cluster;

/* Adds the replicas and clerks to `sim` (borrowed, must outlive the
 * cluster) and installs the invariant check as its after-step hook. NULL
 * on allocation failure. */
struct sm_cluster *sm_cluster_new(struct sim *sim,
				  const struct sm_cluster_opts *o);
void sm_cluster_free(struct sm_cluster *c);

const char *sm_cluster_failure(const struct sm_cluster *c);

/* The invariant check sm_cluster_new installs as the simulator's
 * after-step hook (`arg` is the cluster). A host that installs a hook of
 * its own over the same simulator (kv_cluster) calls this from it. */
void sm_cluster_after_step(void *arg);

/* The packed configuration `num` (Skv__Config) as the shard master made
 * it, which every replica that has it holds (checked): *bytes borrowed
 * until the next simulated event. False if nobody has seen it yet. */
bool sm_cluster_config_made(const struct sm_cluster *c, uint64_t num,
			    const void **bytes, size_t *len);

/* Faults on replica `id` (1..n). */
void sm_cluster_crash(struct sm_cluster *c, uint32_t id);
void sm_cluster_restart(struct sm_cluster *c, uint32_t id);
bool sm_cluster_up(const struct sm_cluster *c, uint32_t id);
/* The id of an up replica leading in the highest term, or 0. */
uint32_t sm_cluster_leader(const struct sm_cluster *c);
/* Replica `id`'s state machine; NULL while crashed. */
const struct sm *sm_cluster_sm(const struct sm_cluster *c, uint32_t id);

/* ---- clerks (index 0..k-1) ---- */

/* Starts an operation on clerk `k` with a deadline `timeout_ms` from now.
 * `req` (borrowed) is the request of method `m`. STATUS_OK or the core's
 * error. */
int sm_cluster_start(struct sm_cluster *c, size_t k, enum sm_method m,
		     const ProtobufCMessage *req, uint64_t timeout_ms);
/* Starts the last operation of clerk `k` again (same seq): for an
 * operation that ended in TIMEOUT. */
int sm_cluster_retry(struct sm_cluster *c, size_t k, uint64_t timeout_ms);
bool sm_cluster_busy(const struct sm_cluster *c, size_t k);
/* Runs until no clerk is busy, or `deadline_ms` (absolute). */
bool sm_cluster_wait_idle(struct sm_cluster *c, uint64_t deadline_ms);

/* The outcome of clerk `k`'s last operation: status, and the
 * configuration of the reply (NULL if none; borrowed until the next
 * operation). */
int sm_cluster_result(const struct sm_cluster *c, size_t k,
		      const Skv__Config **config, const char **error);

/* ---- blocking helpers (clerk 0 unless said; record a failure) ---- */

/* Runs the operation to its end, retrying TIMEOUT until `deadline_ms`;
 * STATUS_OK, INVALID_ARGUMENT (refused), or TIMEOUT. */
int sm_cluster_do(struct sm_cluster *c, size_t k, enum sm_method m,
		  const ProtobufCMessage *req, uint64_t deadline_ms);

/* Join of `n` groups `gids` with servers "g<gid>-<i>:<port>" (3 each). */
int sm_cluster_join(struct sm_cluster *c, size_t k, const uint64_t *gids,
		    size_t n);
int sm_cluster_leave(struct sm_cluster *c, size_t k, const uint64_t *gids,
		     size_t n);
int sm_cluster_move(struct sm_cluster *c, size_t k, uint32_t shard,
		    uint64_t gid);
/* Query(num) through clerk `k`; the configuration is copied into *out
 * (release with sm_cluster_config_free). */
int sm_cluster_query(struct sm_cluster *c, size_t k, int64_t num,
		     Skv__Config **out);
void sm_cluster_config_free(Skv__Config *cfg);

/* The server list sm_cluster_join gives group `gid`, entry i. */
void sm_cluster_server_name(uint64_t gid, size_t i, char *out, size_t cap);

/* Label of a message for the simulator's trace. */
void sm_cluster_format(void *arg, uint32_t type, const void *bytes,
		       size_t len, char *out, size_t cap);

#endif
