/*
 * host: the production runtime around one replicated service, shared by
 * the shard master's server and the replica group's server.
 *
 * What it owns: the event loop and the thread that runs it, the rpc
 * server (the service's methods; the owner registers more on it, e.g.
 * the Raft node's), the rpc client, and the calls held for the service
 * by token (common/held.h). The owner brings and keeps the store, the
 * service and the Raft node.
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
 *     raft_node_new        on host_loop / host_server / host_client,
 *                          with external_turn_hook (ops->turn drives it)
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
	uint32_t id;
	const char *const *peers;
	size_t n_peers;
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

/* The ordered stop (see the life cycle); blocks until done. Idempotent.
 * Not on the loop thread. */
void host_stop(struct host *h);

/* After host_stop: frees the rpc server and the loop. NULL ok. */
void host_free(struct host *h);

/* A seed for Raft timers and retry jitter: random, mixed with `salt`. */
uint64_t host_seed(uint64_t salt);

/* Checks a replica set as given on a command line: 1..RAFT_MAX_NODES
 * distinct "host:port" entries of at most addr_max bytes, and `id` in
 * 1..n. STATUS_OK or INVALID_ARGUMENT with err. */
int host_check_peers(const char *const *peers, size_t n, uint32_t id,
		     size_t addr_max, char *err, size_t cap);

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

/* Log lines tagged `node`, with wall-clock times, at `lvl`. */
void host_log_setup(const char *node, enum log_level lvl);

/* Process-wide, main thread: block SIGINT and SIGTERM (before any
 * thread starts, so every thread inherits the mask) and ignore SIGPIPE;
 * then host_wait_signal takes one of them with sigwait, so shutdown runs
 * as ordinary code, never inside a signal handler. Returns the signal. */
void host_block_signals(void);
int host_wait_signal(void);

#endif
