/*
 * raft_cluster: Raft groups in the simulator, with their invariants.
 *
 * Each node is a Raft core (common/raft/raft.h) driven the way the
 * production driver drives it: step/tick, then ready -> persist -> send ->
 * apply -> advance. Its "disk" is a model kept in memory that survives a
 * crash exactly as far as the core asked it to persist: hard state, log,
 * snapshot and the state machine (which applies atomically with its
 * applied index). A crash frees the core and every unpersisted byte; a
 * restart boots a new core from the disk model. The state machine is a
 * list of applied commands; its snapshot is that list, sent in chunks.
 *
 * After every simulated event the cluster checks: at most one leader per
 * term; entries with the same index and term hold the same command and
 * follow the same term (log matching, checked as entries reach disk); a
 * new leader holds every entry applied anywhere (committed entries are
 * never lost); every node applies the same command at each index, in
 * order, and its applied index never goes back; a read served at read
 * index sees everything committed before it was asked. The first
 * violation is kept in raft_cluster_failure() and stops the run helpers.
 *
 * With `store_backend`, a node is instead the production shell
 * (common/raft/replica.h) over a RocksDB store on an in-memory Env, on a
 * simulated host (replica_host.h) like the services' replicas: its
 * log, hard state, snapshots and state machine (one key per applied
 * command in the data column family) go through common/raft/storage.c,
 * and a crash closes the store and reopens it. The in-memory Env keeps
 * unsynced writes across a close, so this mode tests the storage code
 * under faults, not the loss of unsynced writes (the disk model does
 * that). Log matching is checked in the disk-model mode only.
 *
 * Node ids are 1..n; the simulator's message type is enum raft_msg_type.
 */
#ifndef SKV_TESTS_SIM_RAFT_CLUSTER_H
#define SKV_TESTS_SIM_RAFT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/raft/raft.h"
#include "tests/sim/sim.h"

struct raft_cluster;

struct raft_cluster_opts {
	size_t n_nodes;
	/* Compact the log once this many entries were applied since the
	 * last snapshot; 0 = never. */
	uint64_t snapshot_every;
	/* Passed to every core (0 = the core's defaults). */
	size_t snapshot_chunk_bytes_max;
	uint32_t inflight_max;
	uint32_t append_entries_max;
	uint64_t election_timeout_ms_min;
	uint64_t election_timeout_ms_max;
	/* Nodes are replicas over RocksDB (see above). */
	bool store_backend;
};

/* Adds nodes 1..n to `sim` and starts them. The cluster borrows `sim`
 * (which must outlive it) and installs its invariant check as the
 * simulator's after-step hook. NULL on allocation failure. */
struct raft_cluster *raft_cluster_new(struct sim *sim,
				      const struct raft_cluster_opts *o);
void raft_cluster_free(struct raft_cluster *c);

/* The first invariant violation or harness failure, or NULL. */
const char *raft_cluster_failure(const struct raft_cluster *c);

/* The core of node `id`; NULL while it is crashed. Calls into it must be
 * followed by raft_cluster_flush (or use the helpers below). */
struct raft *raft_cluster_raft(struct raft_cluster *c, uint32_t id);
void raft_cluster_flush(struct raft_cluster *c, uint32_t id);

/* Faults. `connected` means no link to or from the node is cut. */
void raft_cluster_disconnect(struct raft_cluster *c, uint32_t id);
void raft_cluster_connect(struct raft_cluster *c, uint32_t id);
bool raft_cluster_connected(const struct raft_cluster *c, uint32_t id);
void raft_cluster_crash(struct raft_cluster *c, uint32_t id);
void raft_cluster_restart(struct raft_cluster *c, uint32_t id);
bool raft_cluster_up(const struct raft_cluster *c, uint32_t id);

/* Runs until one connected, up node leads and a majority of connected,
 * up nodes follow it in its term; returns its id, or 0 at `deadline_ms`
 * (virtual, absolute). */
uint32_t raft_cluster_wait_leader(struct raft_cluster *c,
				  uint64_t deadline_ms);
/* The ids of up nodes that believe they lead, in the highest such term. */
uint32_t raft_cluster_leader_now(struct raft_cluster *c);

/* Proposes on node `id`. STATUS_OK with *index set, or the core's error. */
int raft_cluster_propose(struct raft_cluster *c, uint32_t id, const void *data,
			 size_t len, uint64_t *index, uint64_t *term);

/* How many nodes applied `index`; `data` and `len` get the command (NULL if
 * none applied it; borrowed until the next call into the cluster). */
size_t raft_cluster_n_applied(struct raft_cluster *c, uint64_t index,
			      const void **data, size_t *len);

/* The classic agreement helper: proposes `data` on whichever connected
 * node accepts it, waits (up to 2 s) for `expected` nodes to apply it at
 * that index, and with `retry` tries again until 10 s have passed. Returns
 * the index, or 0 (and records a failure). */
uint64_t raft_cluster_one(struct raft_cluster *c, const void *data, size_t len,
			  size_t expected, bool retry);

/* Runs until every up node has applied at least `index`, or deadline. */
bool raft_cluster_wait_applied(struct raft_cluster *c, uint64_t index,
			       size_t n_nodes, uint64_t deadline_ms);

/* Read index on node `id`: queues the read; its outcome is kept. Returns
 * STATUS_OK (queued) or NOT_LEADER. */
int raft_cluster_read(struct raft_cluster *c, uint32_t id, uint64_t read_id);
/* Outcome of a read: -1 = pending, STATUS_OK = served (*served_at = the
 * applied index it was served at), STATUS_NOT_LEADER = refused,
 * STATUS_UNAVAILABLE = its node crashed first. */
int raft_cluster_read_result(const struct raft_cluster *c, uint64_t read_id,
			     uint64_t *served_at);

/* Every node's log bytes (raft_log_bytes), maximum over up nodes. */
size_t raft_cluster_max_log_bytes(const struct raft_cluster *c);
/* Highest index applied by any node. */
uint64_t raft_cluster_max_applied(const struct raft_cluster *c);
/* The highest snapshot index any node installed or took. */
uint64_t raft_cluster_snapshot_index(const struct raft_cluster *c, uint32_t id);

/* Label of a Raft message for the simulator's trace. */
void raft_cluster_format(void *arg, uint32_t type, const void *bytes,
			 size_t len, char *out, size_t cap);

#endif
