/*
 * raft/node: the production driver of a Raft replica, on the event loop
 * (common/loop.h) and gRPC (common/rpc).
 *
 * What it is for: carrying Raft messages between the network and a
 * `struct raft_replica`. Incoming requests (the three skv.Raft methods,
 * registered on the owner's rpc_server) are decoded on the gRPC thread
 * and posted to the loop, which steps them into the core and holds the
 * call; the core emits exactly one reply per request it accepts, in order,
 * so a reply to peer P of type T answers the oldest held call of (P, T).
 * Outgoing requests go through the owner's rpc_client with a deadline;
 * their replies are posted to the loop and stepped; failures are dropped
 * (Raft retries). A loop timer drives raft_tick. Group commit: the
 * replica is processed once per loop turn (the turn hook), so every event
 * of a turn shares one synced write.
 *
 * What it owns: the replica (core + storage), the held calls, the tick
 * timer. It borrows the loop, server, client, store and state machine,
 * which must outlive it.
 *
 * Invariant: everything but raft_node_new, raft_node_stop and
 * raft_node_free runs on the loop thread. A storage error is fatal for
 * the process (log_fatal): the replica cannot continue on a guess. A
 * snapshot from a peer that fails its checks is bad input, not a storage
 * error: held calls are failed, the replica is rebuilt from the store,
 * the state machine reloaded (fsm restore) and the leader sends again.
 *
 * Life cycle:
 *     raft_node_new        before rpc_server_start and loop_run
 *     ... loop_run ...     raft_node_propose / _read_index on the loop
 *     raft_node_stop       any thread; the node stops driving Raft and
 *                          fails every held call with SHUTDOWN
 *     rpc_server_shutdown  no handler runs any more
 *     loop_stop, join the loop thread, loop_drain
 *     rpc_client_free      optional here: cancels outstanding calls, so
 *                          raft_node_free need not wait for their deadline
 *     raft_node_free       waits for outstanding client calls, frees
 */
#ifndef SKV_COMMON_RAFT_NODE_H
#define SKV_COMMON_RAFT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"
#include "common/raft/raft.h"
#include "common/raft/replica.h"
#include "common/rpc/rpc.h"
#include "common/store/store.h"

struct raft_node_opts {
	struct raft_config config; /* copied */
	/* "host:port" of config.nodes[i] (copied; this node's own entry is
	 * not used and may be NULL). */
	const char *addrs[RAFT_MAX_NODES];

	struct loop *loop;	   /* borrowed */
	struct rpc_server *server; /* borrowed; not started yet */
	struct rpc_client *client; /* borrowed */
	struct store *store;	   /* borrowed */
	const struct raft_fsm_ops *fsm; /* copied */
	void *fsm_ctx;		   /* borrowed */

	/* Deadline of an outgoing Raft RPC; 0 = 2 x the election timeout
	 * maximum. */
	uint64_t rpc_timeout_ms;
	/* raft_replica_set_compaction; 0 = never compact. */
	size_t compaction_log_bytes_max;
	/* False (default): the node installs itself as the loop's turn
	 * hook. True: the owner's own turn hook calls raft_node_turn. */
	bool external_turn_hook;
};

struct raft_node;

/*
 * Opens the replica on o->store, registers "/skv.Raft/RequestVote",
 * "/skv.Raft/AppendEntries" and "/skv.Raft/InstallSnapshot" on o->server,
 * and (through the loop) arms the tick timer. Any thread, before the
 * server starts. On STATUS_OK *out is the node for raft_node_free; else
 * *out is NULL and errmsg[0..cap) says why (errors of raft_replica_open,
 * INVALID_ARGUMENT for a missing peer address or a started server,
 * NO_MEMORY).
 */
int raft_node_new(const struct raft_node_opts *o, struct raft_node **out,
		  char *errmsg, size_t cap);

/* Any thread, idempotent, never blocks: from now on incoming calls are
 * failed with SHUTDOWN, replies are dropped, and (on the loop, or in
 * loop_drain) held calls are failed and the timer stopped. */
void raft_node_stop(struct raft_node *n);

/* After raft_node_stop, rpc_server_shutdown, and the loop stopped and
 * drained (see the life cycle above); not on the loop thread. Waits for
 * outstanding client calls (at most the RPC deadline), then frees the
 * node and its replica. NULL is a no-op. */
void raft_node_free(struct raft_node *n);

/* Loop thread. The per-turn work (process the replica once, re-arm the
 * tick timer); only for owners with external_turn_hook. */
void raft_node_turn(struct raft_node *n);

/* Loop thread: raft_propose / raft_read_index on the core (the result
 * arrives through the fsm callbacks). STATUS_SHUTDOWN once stopped. */
int raft_node_propose(struct raft_node *n, const void *data, size_t len,
		      uint64_t *index, uint64_t *term);
int raft_node_read_index(struct raft_node *n, uint64_t id);

/* Loop thread: the core (observers) and the replica. */
struct raft *raft_node_raft(struct raft_node *n);
struct raft_replica *raft_node_replica(struct raft_node *n);

#endif
