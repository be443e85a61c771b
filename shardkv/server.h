/*
 * skv_server: the production host of one replica of a replica group.
 *
 * What it is for: running the replica-group service (service.h) on the
 * production runtime. It owns, per process: a store at the data
 * directory, the host (common/host.h: event loop and its thread, the
 * rpc server with the six skv.ShardKV methods and the three skv.Raft
 * ones, the rpc client), the raft_node and the skv_service.
 *
 * How a request flows: the gRPC thread decodes it and only posts it to
 * the loop; on the loop it gets a token and goes to skv_service_request;
 * the service's reply, on the loop, is sent on the call of that token.
 * The loop's turn hook runs raft_node_turn (one synced write per turn),
 * then skv_service_after_process, then re-arms the service's timer at
 * skv_service_wake_ms. The service's clock is the loop's monotonic clock
 * in milliseconds.
 *
 * Outgoing calls (the service's Query to the shard master, PullShard and
 * DeleteShard to other groups) go out through the rpc client; each
 * outcome, and a call that could not even start, is posted to the loop
 * and reported with skv_service_call_done in a later event, never from
 * inside the service. At shutdown the rpc client cancels what is in
 * flight; those outcomes find the service stopped and are dropped.
 *
 * Data directory identity (common/datadir.h): the key "kv/identity" in
 * the `default` column family,
 *     "kind=shardkv\ncluster=<name>\ngid=<gid>\nid=<id>\nnodes=<n>\n"
 * written on the first start; a later start with another kind, cluster,
 * gid, id or node count refuses to run. It lives in `default`, not
 * `meta`, because installing a Raft snapshot replaces `meta` and `data`
 * with the leader's.
 *
 * Invariant: every call handed to a handler is answered exactly once,
 * also when it arrives during shutdown (status SHUTDOWN); every call id
 * the service emits is reported back once while it runs.
 *
 * Threads: skv_server_start and skv_server_stop_free on any one thread
 * (not the loop's); everything else inside runs on the loop thread.
 */
#ifndef SKV_SHARDKV_SERVER_H
#define SKV_SHARDKV_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "common/host.h"

/* A cluster name: 1..DATADIR_CLUSTER_MAX (64) bytes of [A-Za-z0-9._-];
 * the same default as the shard master's. */
#define SKV_SERVER_CLUSTER_DEFAULT "shardkv"
/* Log bytes after which a replica compacts: entries carry values and
 * pulled shard pages (up to 4 MiB), so the log is allowed more room
 * than the shard master's before a snapshot of the whole group state
 * replaces it. */
#define SKV_SERVER_COMPACTION_BYTES_DEFAULT ((size_t)64 << 20)
/* At most this many shard-master servers. */
#define SKV_SERVER_MASTERS_MAX 16

struct skv_server_opts {
	/* Id, peers (of the group: also what the shard master's
	 * configuration lists for it), listening address, data dir,
	 * cluster (NULL = SKV_SERVER_CLUSTER_DEFAULT), compaction (0 =
	 * SKV_SERVER_COMPACTION_BYTES_DEFAULT) and Raft timing
	 * (common/host.h). */
	struct host_replica replica;
	/* This replica group, > 0. */
	uint64_t gid;
	/* The shard master's servers (borrowed for the call); 1..
	 * SKV_SERVER_MASTERS_MAX. */
	const char *masters[SKV_SERVER_MASTERS_MAX];
	size_t n_masters;
	/* The service's configuration polling and outgoing call deadline;
	 * 0 = its defaults (100 ms, 1,000 ms). */
	uint64_t poll_ms;
	uint64_t call_timeout_ms;
};

struct skv_server;

/*
 * Opens the data directory (checking or writing its identity), loads the
 * state, starts the Raft node, binds the listening address and starts the
 * loop thread; logs one INFO line "started". On STATUS_OK *out is the
 * running server for skv_server_stop_free. Else *out is NULL, nothing is
 * left running and err[0..cap) holds a one-line reason:
 * INVALID_ARGUMENT (bad options, identity mismatch, a directory that is
 * not this replica's), UNAVAILABLE (address in use or invalid),
 * CORRUPTION / IO (the store), NO_MEMORY.
 */
int skv_server_start(const struct skv_server_opts *o, struct skv_server **out,
		     char *err, size_t cap);

/* The port the server listens on. */
int skv_server_port(const struct skv_server *s);

/*
 * Stops and frees, in node.h's order: Raft stops, every call held or
 * still arriving is answered (SHUTDOWN), the server stops accepting, the
 * loop stops and drains, outgoing calls are cancelled, then everything
 * is freed and the store closed. Blocks until then (at most an RPC
 * deadline). NULL is a no-op.
 */
void skv_server_stop_free(struct skv_server *s);

#endif
