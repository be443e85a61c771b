/*
 * rpc: async unary RPC over the gRPC C core, messages in protobuf-c.
 *
 * A server and a client each own one completion queue and one thread that
 * drives it (gRPC makes network progress only inside that thread), unless
 * the client is made to share its server's (rpc_client_opts.server): then
 * one thread drives both, which saves a thread hand-over per message in a
 * process that serves and calls. Handlers
 * and completion callbacks run on those threads and must not block: the
 * production pattern is to wrap the call in an event and loop_post() it to
 * the owner's event loop, which answers later from its own thread.
 *
 * Ownership: a request handed to a handler and a reply handed to a `done`
 * callback belong to the callee (codec_free, common/codec.h). Messages passed in
 * (rpc_call_reply, rpc_client_call) are borrowed for the call only. A
 * `struct rpc_call` is valid from the handler until the one rpc_call_reply /
 * rpc_call_fail that answers it.
 *
 * Invariant: every handed-out call is answered exactly once, every accepted
 * client call gets exactly one `done`. gRPC statuses carry transport-level
 * failures only; application statuses (NOT_LEADER, WRONG_GROUP...) belong in
 * reply messages.
 *
 * Threads: no function here may be called from a handler or `done` callback
 * except rpc_call_reply(_bytes), rpc_call_fail, rpc_call_* accessors and
 * rpc_client_call(_bytes).
 */
#ifndef SKV_COMMON_RPC_RPC_H
#define SKV_COMMON_RPC_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/codec.h"

/* ---- server ---- */

struct rpc_server;
struct rpc_call;

struct rpc_server_opts {
	/* Largest request accepted and reply sent; 0 = 64 MiB. Bigger
	 * requests are refused with RESOURCE_EXHAUSTED (TOO_LARGE). */
	size_t max_message_bytes;
};

/* Runs on the server thread; must not block. `req` belongs to the handler;
 * `call` must be answered exactly once, now or later, from any thread. */
typedef void (*rpc_handler_fn)(void *ctx, struct rpc_call *call,
			       ProtobufCMessage *req);

/* `opts` may be NULL (defaults). Starts the server's completion-queue
 * thread (it serves nothing before rpc_server_start). Returns NULL when
 * out of memory or the thread cannot start. */
struct rpc_server *rpc_server_new(const struct rpc_server_opts *opts);

/* Before rpc_server_start. `method` is the wire path
 * ("/skv.Raft/AppendEntries", copied); `req_desc` decodes its requests.
 * Requests that fail to decode are answered INVALID_ARGUMENT here, calls to
 * unregistered methods UNIMPLEMENTED; handlers never see either.
 * Returns STATUS_OK, INVALID_ARGUMENT (started, duplicate) or NO_MEMORY. */
int rpc_server_add_method(struct rpc_server *s, const char *method,
			  const ProtobufCMessageDescriptor *req_desc,
			  rpc_handler_fn fn, void *ctx);

/* Binds `addr` ("127.0.0.1:0" picks a port, stored in *bound_port if not
 * NULL) and starts serving. The port is bound exclusively (no SO_REUSEPORT
 * sharing). Returns STATUS_OK; UNAVAILABLE when the address is in use or
 * invalid, INVALID_ARGUMENT when started before, NO_MEMORY; then errmsg
 * (may be NULL) says why and the server can only be freed. */
int rpc_server_start(struct rpc_server *s, const char *addr, int *bound_port,
		     char *errmsg, size_t errcap);

/* Stops accepting and cancels calls in flight (their clients see an
 * error). When it returns no handler runs any more; calls still held may
 * (and before rpc_server_free must) be answered: that only releases them.
 * Idempotent; not from a handler. */
void rpc_server_shutdown(struct rpc_server *s);

/* Shuts down if needed and frees everything; every handed-out call must
 * have been answered. NULL ok; not from a handler. */
void rpc_server_free(struct rpc_server *s);

/* Answer `call` with `reply` (borrowed), or fail it with an `enum status`
 * and a message (NULL ok). Any thread, exactly once; `call` is invalid
 * afterwards. */
void rpc_call_reply(struct rpc_call *call, const ProtobufCMessage *reply);
void rpc_call_fail(struct rpc_call *call, int status, const char *msg);
/* rpc_call_reply with an already encoded reply (borrowed: copied). */
void rpc_call_reply_bytes(struct rpc_call *call, const void *reply,
			  size_t len);

/* Milliseconds left before the caller's deadline (<= 0: passed); INT64_MAX
 * when the caller set none. */
int64_t rpc_call_remaining_ms(const struct rpc_call *call);

/* The caller's address ("ipv4:127.0.0.1:5555"), truncated into buf. */
void rpc_call_peer(const struct rpc_call *call, char *buf, size_t cap);

/* ---- client ---- */

struct rpc_client;

struct rpc_client_opts {
	/* Largest request sent and reply accepted; 0 = 64 MiB. */
	size_t max_message_bytes;
	/* How long one connection attempt (TCP + HTTP/2 handshake) may take;
	 * 0 = 5,000 ms. Must cover the slowest link's handshake: a refused
	 * connect fails at once whatever this is, so it does not slow the
	 * reconnect to a restarted peer (that is the 100 ms-1 s backoff). */
	uint64_t connect_timeout_ms;
	/* NULL: the client has a completion queue and thread of its own.
	 * Else its calls complete on this server's queue and thread (started
	 * or not), so `done` callbacks and that server's handlers run on one
	 * thread, one at a time. The server is borrowed: free the client
	 * first, and not from that server's handlers either. */
	struct rpc_server *server;
};

/* Runs once per accepted call on the client thread; must not block.
 * `status` is an `enum status`: OK, TIMEOUT (deadline), UNAVAILABLE (peer
 * unreachable), CANCELLED (rpc_client_free), INVALID_ARGUMENT (peer
 * refused the request or does not know the method), TOO_LARGE, INTERNAL.
 * `errmsg` is never NULL ("" on OK), valid during the callback. `reply`
 * belongs to the callee and is NULL unless status is OK. */
typedef void (*rpc_done_fn)(void *arg, int status, const char *errmsg,
			    ProtobufCMessage *reply);

/* `opts` may be NULL (defaults). Returns NULL when out of memory. */
struct rpc_client *rpc_client_new(const struct rpc_client_opts *opts);

/* Starts a unary call of `method` (wire path) on `addr` ("host:port") with
 * a deadline `timeout_ms` (> 0) from now. One channel per address is
 * created on first use and kept. Returns STATUS_OK and `done` runs exactly
 * once on the client thread (possibly before this returns), or returns
 * INVALID_ARGUMENT, NO_MEMORY, SHUTDOWN (client being freed) or INTERNAL
 * and `done` never runs. `req` is borrowed. */
int rpc_client_call(struct rpc_client *c, const char *addr, const char *method,
		    const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *reply_desc,
		    uint64_t timeout_ms, rpc_done_fn done, void *arg);

/* The same with an already encoded request (borrowed). */
int rpc_client_call_bytes(struct rpc_client *c, const char *addr,
			  const char *method, const void *req, size_t req_len,
			  const ProtobufCMessageDescriptor *reply_desc,
			  uint64_t timeout_ms, rpc_done_fn done, void *arg);

/* Cancels every outstanding call and runs its `done` (CANCELLED) before
 * returning; calls made meanwhile from `done` return SHUTDOWN. Then
 * closes the channels. NULL ok; not from a `done` callback (nor, for a
 * client sharing a server's thread, from that server's handlers). */
void rpc_client_free(struct rpc_client *c);

#endif
