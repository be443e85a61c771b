/*
 * host: the production runtime around one replicated service, shared by
 * the shard master's server and the replica group's server.
 *
 * What it owns: the event loop and the thread that runs it, the rpc
 * server (the service's methods; the owner registers more on it, e.g.
 * the Raft node's), the rpc client (on the server's gRPC thread: one
 * thread carries every message between the network and the loop), and
 * the calls held for the service
 * by token (common/held.h). The owner brings and keeps the store, the
 * service and the Raft node.
 *
 * Status: the host serves HOST_STATUS_PATH (proto/node.proto) for every
 * server; the owner's ops->status answers it on the loop.
 *
 * How a request flows: the gRPC thread decodes it and only posts it to
 * the loop; there it gets a token (its call held here) and goes to
 * ops->request; the service's answer, on the loop, goes out with
 * host_reply. Once the host stops, every request still arriving, and
 * every call still held when the loop has stopped, is answered through
 * ops->refuse (SHUTDOWN).
 *
 * Invariant: every call handed to a method is answered exactly once.
 * The ops and the turn hook run on the loop thread only (ops->stop in
 * loop_drain at the latest, ops->refuse also on the stopping thread),
 * and none of them after host_stop returns.
 *
 * Life cycle (the owner, on one thread that is not the loop's):
 *     host_new             loop, rpc server, rpc client
 *     raft_node_new        with host_node_opts: on host_loop /
 *                          host_server / host_client, with
 *                          external_turn_hook (ops->turn drives it)
 *     host_add_method ...
 *     host_start           binds the address, starts the loop thread
 *     ... running ...
 *     raft_node_stop
 *     host_stop            ops->stop on the loop; the rpc server shut
 *                          down; the loop stopped, joined and drained;
 *                          held calls refused; the rpc client freed (its
 *                          calls cancelled) and what their callbacks
 *                          posted drained
 *     raft_node_free, then the service and the store
 *     host_free            the rpc server and the loop
 * A start that failed part way takes the same road from where it got.
 */
#ifndef SKV_COMMON_HOST_H
#define SKV_COMMON_HOST_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/flags.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/raft/raft.h"
#include "common/rpc/rpc.h"
#include "proto/node.pb-c.h"

/* Where every server answers its status (proto/node.proto). */
#define HOST_STATUS_PATH "/skv.Node/Status"

struct raft_fsm_ops;
struct raft_node_opts;
struct store;

/* What both servers are told about their replica: the first member of
 * sm_server_opts and skv_server_opts. */
struct host_replica {
	/* This replica's id, 1..n_peers. */
	uint32_t id;
	/* "host:port" of replica i+1 (borrowed); n_peers in
	 * 1..RAFT_MAX_NODES. The own entry is where this replica listens,
	 * unless `listen` is set. */
	const char *peers[RAFT_MAX_NODES];
	size_t n_peers;
	/* Where to listen ("0.0.0.0:7001"; port 0 picks one); NULL = the
	 * own entry of `peers`. */
	const char *listen;
	/* The store's directory; created (with missing parents) if absent. */
	const char *data_dir;
	/* The cluster name; NULL = the server's default. */
	const char *cluster;
	/* Log compaction threshold; 0 = the server's default, SIZE_MAX =
	 * never compact. */
	size_t compaction_log_bytes_max;
	/* Raft timing; 0 = the core's defaults (300-600 ms, 100 ms). */
	uint64_t election_timeout_ms_min;
	uint64_t election_timeout_ms_max;
	uint64_t heartbeat_ms;
};

struct host_ops {
	/* Loop thread: a request of `method` (as given to
	 * host_add_method; `req` borrowed for the call) held as `token`.
	 * Answer it, now or later, with host_reply. */
	void (*request)(void *ctx, uint64_t token, int method,
			const ProtobufCMessage *req);
	/* Answers `call`, a request of `method`, with `status` (SHUTDOWN)
	 * and `msg` in that method's reply type (rpc_call_reply). The loop
	 * thread, or the stopping thread once the loop stopped. */
	void (*refuse)(void *ctx, int method, struct rpc_call *call,
		       int status, const char *msg);
	/* Loop thread: the turn hook, while not stopped (raft_node_turn,
	 * then the service). */
	void (*turn)(void *ctx);
	/* Loop thread: answers `call`, a /skv.Node/Status request, with a
	 * Skv__NodeStatusReply (host_status_fill, then the service's part),
	 * now: rpc_call_reply. Never called once stopped (the host fails
	 * such a call SHUTDOWN itself, as when this is NULL). */
	void (*status)(void *ctx, struct rpc_call *call);
	/* Loop thread (or loop_drain), once: from now on requests are
	 * refused; answer what the service holds (host_reply) and detach
	 * it from Raft. */
	void (*stop)(void *ctx);
};

struct host_opts {
	/* The module name of the host's log lines ("sm_server"). */
	const char *log_mod;
	/* This replica's id and every replica's address, for the
	 * leadership lines (copied). */
	const struct host_replica *replica;
	const struct host_ops *ops; /* borrowed; outlives the host */
	void *ctx;
};

struct host;

/* STATUS_OK and *out; NO_MEMORY (with err) and *out NULL. */
int host_new(const struct host_opts *o, struct host **out, char *err,
	     size_t cap);

/* Before host_start: serve `path` (requests decoded with `req`); the
 * requests reach ops->request with `method`. STATUS_OK, or an error with
 * err. */
int host_add_method(struct host *h, const char *path,
		    const ProtobufCMessageDescriptor *req, int method,
		    char *err, size_t cap);

/* Binds `listen` ("host:port"; port 0 picks one) and starts the loop
 * thread. STATUS_OK; UNAVAILABLE (address in use or invalid), NO_MEMORY,
 * with err. Either way host_stop and host_free follow. */
int host_start(struct host *h, const char *listen, char *err, size_t cap);

/* The bound port (after host_start). */
int host_port(const struct host *h);

/* Borrowed from the host until host_free (the client until host_stop). */
struct loop *host_loop(struct host *h);
struct rpc_server *host_server(struct host *h);
struct rpc_client *host_client(struct host *h);

/* Loop thread: milliseconds of the loop's monotonic clock, at the start
 * of the current turn. */
uint64_t host_now_ms(const struct host *h);

/* Loop thread: true once ops->stop ran. */
bool host_stopped(const struct host *h);

/* Loop thread: answers the call held as `token` with `reply` (borrowed);
 * an unknown token is logged and dropped. */
void host_reply(struct host *h, uint64_t token,
		const ProtobufCMessage *reply);

/* Loop thread: logs one INFO line whenever the leader or its term seen
 * on `r` changes (not per request). */
void host_log_leader(struct host *h, const struct raft *r);

/* Loop thread: fills the replica's part of a status reply: id, nodes,
 * address, uptime, and from `r` (the core in use; NULL = none, role
 * "stopped") role, term, leader, the indexes and the log's bytes. The
 * strings set borrow from the host and r: reply before the turn ends. */
void host_status_fill(const struct host *h, const struct raft *r,
		      Skv__NodeStatusReply *rep);

/* The ordered stop (see the life cycle); blocks until done. Idempotent.
 * Not on the loop thread. */
void host_stop(struct host *h);

/* After host_stop: frees the rpc server and the loop. NULL ok. */
void host_free(struct host *h);

/* A seed for Raft timers and retry jitter: random, mixed with `salt`. */
uint64_t host_seed(uint64_t salt);

/* ---- the servers' replica (server.c) ---- */

/* True for a non-empty "host:port" address of at most addr_max bytes,
 * the form every server address given to a server must have. */
bool host_addr_ok(const char *a, size_t addr_max);

/* Checks a replica as given to a server: 1..RAFT_MAX_NODES distinct
 * "host:port" peers of at most addr_max bytes, the id in 1..n_peers, a
 * data dir, and `cluster` (r->cluster or the server's default) a valid
 * cluster name (datadir_cluster_ok). STATUS_OK or INVALID_ARGUMENT with
 * err. */
int host_check_replica(const struct host_replica *r, const char *cluster,
		       size_t addr_max, char *err, size_t cap);

/* Where r listens: r->listen, else its own entry of r->peers
 * (borrowed from r). */
const char *host_listen_addr(const struct host_replica *r);

/* Fills all of *no for raft_node_new: replica r's node on the host's
 * loop, server and client, every peer by its address, turned by the
 * owner's hook (external_turn_hook), over `store` and `fsm` (borrowed,
 * as node.h says), with `seed`; compaction past r's threshold, or
 * `compaction_default` when that is 0. */
void host_node_opts(struct host *h, const struct host_replica *r,
		    uint64_t seed, size_t compaction_default,
		    struct store *store, const struct raft_fsm_ops *fsm,
		    void *fsm_ctx, struct raft_node_opts *no);

/* ---- the server programs (main.c) ---- */

/* Prints "<prog>: <msg>" and a pointer to --help on stderr; returns 2,
 * the usage exit status. */
int host_usage_error(const char *prog, const char *msg);

/*
 * The common front of a server's command line: flags_parse, then no
 * positional argument and a valid *level (a flag of the table, read
 * after parsing) into *lvl. Returns -1 to go on; else the exit status
 * after printing: 0 for --help (usage(flags, n, stdout)), 2 for a usage
 * error. flags_release(res) is the caller's either way.
 */
int host_parse_args(const char *prog, struct flag *flags, size_t n, int argc,
		    char **argv, struct flags_result *res,
		    void (*usage)(const struct flag *flags, size_t n,
				  FILE *out),
		    const char *const *level, enum log_level *lvl);

/* The flags both servers take, bound to their flag tables; level and
 * the defaults of cluster, compact and election set before parsing. */
struct host_args {
	uint64_t id;
	const char *peers;
	const char *listen;
	const char *data;
	const char *cluster;
	const char *level;
	uint64_t compact;  /* --compact-bytes; 0 = never */
	uint64_t election; /* --election-ms: [MS, 2*MS), heartbeat MS/3 */
};

/* The last entries of both servers' flag tables, bound to `a` (a
 * struct host_args): --cluster, --log-level, --compact-bytes,
 * --election-ms. */
#define HOST_ARGS_FLAGS(a)                                              \
	{"cluster", FLAG_STRING, &(a).cluster, "NAME",                  \
	 "cluster name, recorded in the data directory", false, 0, 0,   \
	 false},                                                        \
	{"log-level", FLAG_STRING, &(a).level, "LEVEL",                 \
	 "debug, info, warn or error", false, 0, 0, false},             \
	{"compact-bytes", FLAG_UINT, &(a).compact, "N",                 \
	 "compact the Raft log past this many bytes; 0 = never", false, \
	 0, INT64_MAX, false},                                          \
	{"election-ms", FLAG_UINT, &(a).election, "MS",                 \
	 "election timeout, randomized in [MS, 2*MS); heartbeat MS/3",  \
	 false, 30, 60000, false}

/* After host_parse_args: fills *r from a, its peers split in a copy
 * (*list, NULL on entry; the caller mem_frees it either way) and the id
 * within them. Returns -1 to go on; else the exit status after printing:
 * 1 out of memory, 2 a usage error. */
int host_replica_args(const char *prog, const struct host_args *a,
		      char **list, struct host_replica *r);

/*
 * The life of a server process, after its command line: log lines
 * tagged `node` with wall-clock times at `lvl`; SIGINT and SIGTERM
 * blocked in every thread (before start makes any) and SIGPIPE ignored;
 * start(arg, err, cap) starts the server (STATUS_OK, or an error with a
 * one-line reason in err); then sigwait takes SIGINT or SIGTERM, so
 * shutdown runs as ordinary code, never inside a signal handler ("main:
 * SIGTERM: shutting down"); stop(arg) stops and frees it ("main:
 * stopped"). Main thread, once. Returns the exit status: 0, or 1 when
 * start failed (after "<prog>: <err>" on stderr).
 */
int host_serve(const char *prog, const char *node, enum log_level lvl,
	       int (*start)(void *arg, char *err, size_t cap),
	       void (*stop)(void *arg), void *arg);

#endif
