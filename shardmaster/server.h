/*
 * sm_server: the production host of one shard-master replica.
 *
 * What it is for: running the replicated service (service.h) on the
 * production runtime. It owns, per process: a store at the data
 * directory, an event loop and the thread that runs it, an rpc_server
 * (the four skv.ShardMaster methods and the three skv.Raft ones), an
 * rpc_client (to the other replicas), the raft_node and the sm_service.
 *
 * How a request flows: the gRPC thread decodes it and only posts it to
 * the loop; on the loop it gets a token (remembered with its call) and
 * goes to sm_service_request; the service's reply, on the loop, is sent
 * on the call of that token. The loop's turn hook runs raft_node_turn
 * (one synced write per turn), then sm_service_after_process.
 *
 * Data directory identity: the first start on an empty directory writes,
 * with a synced write before Raft starts, the key "sm/identity" in the
 * `default` column family:
 *     "kind=shardmaster\ncluster=<name>\nid=<id>\nnodes=<n>\n"
 * Every later start reads it and refuses to run (STATUS_INVALID_ARGUMENT,
 * the message names the directory, the stored identity and the given
 * one) when the kind, the cluster name, the node id or the number of
 * nodes differ, or when the directory holds anything without an
 * identity. It lives in `default`, not `meta`: installing a Raft
 * snapshot replaces all of `meta` (and `data`) with the leader's, which
 * would give this node the leader's id.
 *
 * Invariant: every call handed to a handler is answered exactly once,
 * also when it arrives during shutdown (SmReply status SHUTDOWN).
 *
 * Threads: sm_server_start and sm_server_stop_free on any one thread
 * (not the loop's); everything else inside runs on the loop thread.
 */
#ifndef SKV_SHARDMASTER_SERVER_H
#define SKV_SHARDMASTER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/host.h"

/* A cluster name: 1..SM_CLUSTER_NAME_MAX bytes of [A-Za-z0-9._-]. */
#define SM_CLUSTER_NAME_MAX 64
#define SM_CLUSTER_DEFAULT "shardkv"
/* Log bytes after which a replica compacts (the shard master's entries
 * are small: a few hundred bytes each). */
#define SM_COMPACTION_BYTES_DEFAULT (1u << 20)

struct sm_server_opts {
	/* Id, peers, listening address, data dir, cluster (NULL =
	 * SM_CLUSTER_DEFAULT), compaction (0 = SM_COMPACTION_BYTES_DEFAULT)
	 * and Raft timing (common/host.h). */
	struct host_replica replica;
	/* Shard count proposed if this replica first leads a new shard
	 * master; 0 = SM_SHARDS_DEFAULT, with no warning. Once the cluster
	 * exists its replicated count wins: a different non-zero value here
	 * is ignored, with one warning in the log. */
	uint32_t nshards;
};

struct sm_server;

/*
 * Opens the data directory (checking or writing its identity), loads the
 * state, starts the Raft node, binds the listening address and starts the
 * loop thread; logs one INFO line "started". On STATUS_OK *out is the
 * running server for sm_server_stop_free. Else *out is NULL, nothing is
 * left running and err[0..cap) holds a one-line reason:
 * INVALID_ARGUMENT (bad options, identity mismatch, a directory that is
 * not this replica's), UNAVAILABLE (address in use or invalid),
 * CORRUPTION / IO (the store), NO_MEMORY.
 */
int sm_server_start(const struct sm_server_opts *o, struct sm_server **out,
		    char *err, size_t cap);

/* The port the server listens on. */
int sm_server_port(const struct sm_server *s);

/*
 * Stops and frees, in node.h's order: Raft stops, every call held or
 * still arriving is answered (SHUTDOWN), the server stops accepting, the
 * loop stops and drains, then everything is freed and the store closed.
 * Blocks until then (at most an RPC deadline). NULL is a no-op.
 */
void sm_server_stop_free(struct sm_server *s);

#endif
