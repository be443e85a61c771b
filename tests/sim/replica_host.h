/*
 * replica_host: one simulated machine running a Raft replica, the way a
 * production server hosts one minus gRPC and the event loop.
 *
 * The host is a simulator endpoint. Its disk is an in-memory RocksDB Env
 * that lives as long as the host; booted, it holds the store opened over
 * that Env and the Raft replica shell (common/raft/replica.h) opened over
 * the store, with a state machine the owner supplies through hooks (the
 * shard-master or shardkv service, or a plain test state machine). Raft
 * messages travel the simulated network between hosts; any other message
 * goes to the owner's hook. A crash frees the service (hook), the replica
 * and the store, and forgets the requests in flight; a restart reopens the
 * store and the replica, which reload from it.
 *
 * The host also keeps the table of client requests in flight (who asked,
 * under which attempt id), so that a service's asynchronous answer can be
 * sent back to the asker; a crash forgets it, so nobody is answered.
 *
 * Owns: the Env (from replica_host_init to replica_host_fini), and while
 * up the store, the replica and the request table. The hosted service is
 * the owner's, created and freed by its hooks.
 *
 * Invariant: the host is up (replica_host_replica() != NULL) exactly when
 * the store is open, the replica is open over it and the owner's `open`
 * hook succeeded without `close` since; and after every event the host
 * handles, every ready has been processed (the simulator has no event loop
 * to come back next turn) and its wake-up is set to the earliest of Raft's
 * next tick and the owner's `wake_ms`.
 */
#ifndef SKV_TESTS_SIM_REPLICA_HOST_H
#define SKV_TESTS_SIM_REPLICA_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/raft/raft.h"
#include "common/raft/replica.h"
#include "common/store/store.h"
#include "tests/sim/sim.h"

/* The owner's hooks; `arg` is replica_host_opts.arg. */
struct replica_host_ops {
	/* Boot, the store just opened: creates the hosted service over
	 * `store` (borrowed while up) and gives the replica's state machine
	 * in *fsm and *fsm_ctx. Nonzero with err[0..cap) filled: the boot
	 * fails (and `close` is not called). Required. */
	int (*open)(void *arg, struct store *store,
		    const struct raft_fsm_ops **fsm, void **fsm_ctx, char *err,
		    size_t cap);
	/* The replica is open, nothing processed yet (attach the service).
	 * NULL ok. */
	void (*opened)(void *arg, struct raft_replica *rep);
	/* Crash or teardown, the replica still open: frees the service.
	 * NULL ok. */
	void (*close)(void *arg);
	/* After each drain of the readies: the service reacts (answers,
	 * proposes, calls). While it makes new readies the host drains
	 * again. NULL ok. */
	void (*after_drain)(void *arg, uint64_t now_ms);
	/* A message of a type above Raft's (enum raft_msg_type), while up;
	 * `bytes` borrowed. NULL: such a message is a failure. */
	void (*on_message)(void *arg, uint32_t from, uint32_t type,
			   const void *bytes, size_t len);
	/* A wake-up, after raft_tick and before processing. NULL ok. */
	void (*on_tick)(void *arg, uint64_t now_ms);
	/* The earliest virtual time the service needs a wake-up at
	 * (UINT64_MAX: none). NULL = none. */
	uint64_t (*wake_ms)(void *arg);
	/* The host failed: `msg` ("<name>: what", borrowed for the call).
	 * Required. */
	void (*fail)(void *arg, const char *msg);
};

struct replica_host_opts {
	uint32_t id;	  /* the endpoint id */
	const char *name; /* in failures, e.g. "gid 100 replica 0"; copied */
	/* The replica's configuration; `seed` is drawn from the simulator
	 * at every boot, after the `open` hook. */
	struct raft_config raft;
	/* The endpoint of Raft id i + 1, for i < raft.n_nodes. */
	uint32_t peers[RAFT_MAX_NODES];
	/* raft_replica_set_compaction's bound; 0 = never compact. */
	size_t compaction_log_bytes_max;
	const struct replica_host_ops *ops; /* borrowed, outlives the host */
	void *arg;
};

/* A client request in flight: `attempt` and `method` are the asker's, to
 * put on the answer. */
struct replica_host_request {
	uint64_t token;
	uint32_t from;
	uint64_t attempt;
	uint32_t method;
};

/* The fields are the module's: use the functions. Lives where the owner
 * puts it (it must not move once initialized); a zeroed one may be
 * finalized. */
struct replica_host {
	struct sim *sim;
	struct replica_host_opts o;
	char name[64];
	struct store_memenv *env;
	struct store *store;
	struct raft_replica *rep;
	struct replica_host_request *reqs;
	size_t n_reqs, cap_reqs;
	uint64_t next_token;
};

/* Creates the (empty) disk and adds endpoint o->id to `sim` (borrowed,
 * must outlive the host); the host is down until replica_host_boot.
 * STATUS_OK, STATUS_NO_MEMORY, or sim_endpoint_add's error; on error
 * replica_host_fini still frees what was made. */
int replica_host_init(struct replica_host *h, struct sim *sim,
		      const struct replica_host_opts *o);
/* Brings the host down if up and frees the disk and the table. The
 * endpoint stays registered: finalize a host only when its simulator
 * will not be stepped again. */
void replica_host_fini(struct replica_host *h);

/* Boots: opens the store and the replica, and processes. A failure goes
 * to the `fail` hook and leaves the host down. The first boot is the
 * owner's call; a restart (sim_restart) boots by itself. */
void replica_host_boot(struct replica_host *h);
/* Processes readies until none is left, letting the service react after
 * each drain, then sets the wake-up. For an owner that stepped the Raft
 * core itself (proposed, read). No-op while down. */
void replica_host_process(struct replica_host *h);

/* While up: the replica, its core and its store (borrowed); NULL while
 * down. */
struct raft_replica *replica_host_replica(const struct replica_host *h);
struct raft *replica_host_raft(const struct replica_host *h);
struct store *replica_host_store(const struct replica_host *h);

/* Remembers a request from endpoint `from` and returns its token (never
 * 0, never reused by this host). */
uint64_t replica_host_request_add(struct replica_host *h, uint32_t from,
				  uint64_t attempt, uint32_t method);
/* Removes the request of `token` into *out; false if there is none
 * (answered already, never issued, or forgotten at a crash). */
bool replica_host_request_take(struct replica_host *h, uint64_t token,
			       struct replica_host_request *out);

#endif
