/*
 * Implementation notes. Each server and client owns a completion queue and
 * the thread that drains it; every tag is a `struct op` embedded in the
 * object it completes, and the thread just calls it. A server call has
 * exactly one batch, the answer (status, message, and the client's close),
 * so it needs no refcount: the grpc_call is unreffed when that batch
 * completes, or at once when there is nothing to send (after shutdown).
 * A client call is one six-op batch. Teardown follows GRPC_NOTES.md:
 * shutdown_and_notify + cancel_all_calls, wait for the notify tag, then
 * shut the queue down, drain it (join), destroy, grpc_shutdown.
 *
 * The server's queue and thread exist from rpc_server_new, so that a
 * client can share them (rpc_client_opts.server). gRPC's poller (epoll1:
 * one thread of the process polls at a time) reads whatever socket is
 * ready; a completion for another thread's queue then costs a hand-over
 * (that thread woken through a futex and an eventfd, and the poller role
 * passed back): two or three context switches per message on the way to
 * the event loop. With one queue and one thread per process the thread
 * that read the bytes returns the completion itself. A shared client
 * cannot join the thread to know its callbacks have returned, so it
 * counts the ones running (`in_done`).
 */
#include "common/rpc/rpc.h"

#include "common/codec.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MOD "rpc"
#define MAX_MESSAGE_BYTES_DEFAULT ((size_t)64 << 20)
#define CONNECT_TIMEOUT_MS_DEFAULT 5000

#define container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Every tag handed to gRPC is one of these, embedded in the object the
 * completion belongs to; the cq thread only calls it. */
struct op {
	void (*complete)(struct op *op, bool ok);
};

static void *cq_thread(void *arg)
{
	grpc_completion_queue *cq = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return NULL;
		struct op *op = ev.tag;
		op->complete(op, ev.success != 0);
	}
}

/* Completes the queue's pending work, then destroys it. */
/* A new queue and the thread that drives it into *cq, *thread; false
 * (nothing made) when the thread cannot start. */
static bool cq_start(grpc_completion_queue **cq, pthread_t *thread)
{
	*cq = grpc_completion_queue_create_for_next(NULL);
	if (pthread_create(thread, NULL, cq_thread, *cq) == 0)
		return true;
	grpc_completion_queue_destroy(*cq);
	*cq = NULL;
	return false;
}

static void cq_stop(grpc_completion_queue *cq, pthread_t thread)
{
	grpc_completion_queue_shutdown(cq);
	pthread_join(thread, NULL);
	grpc_completion_queue_destroy(cq);
}

static grpc_arg int_arg(const char *key, int value)
{
	grpc_arg a = {.type = GRPC_ARG_INTEGER, .key = (char *)key};
	a.value.integer = value;
	return a;
}

static int max_msg_arg(size_t bytes)
{
	if (bytes == 0)
		bytes = MAX_MESSAGE_BYTES_DEFAULT;
	return bytes > INT_MAX ? INT_MAX : (int)bytes;
}

/* A byte buffer holding `m` packed in one slice. */
static grpc_byte_buffer *pack_msg(const ProtobufCMessage *m)
{
	grpc_slice s = grpc_slice_malloc(protobuf_c_message_get_packed_size(m));
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static grpc_byte_buffer *copy_bytes(const void *p, size_t n)
{
	grpc_slice s = grpc_slice_from_copied_buffer(p, n);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* Decodes `bb` (not consumed); NULL when malformed. A message that arrived
 * in one slice (the usual case) is decoded in place; otherwise readall
 * flattens a copy. */
static ProtobufCMessage *unpack_bb(const ProtobufCMessageDescriptor *desc,
				   grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	grpc_slice *first;
	ProtobufCMessage *m;
	size_t len = grpc_byte_buffer_length(bb);

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	if (len > 0 && grpc_byte_buffer_reader_peek(&r, &first) &&
	    GRPC_SLICE_LENGTH(*first) == len) {
		codec_unpack(desc, GRPC_SLICE_START_PTR(*first), len, &m);
		grpc_byte_buffer_reader_destroy(&r);
		return m;
	}
	grpc_byte_buffer_reader_destroy(&r);
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	grpc_slice all = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	codec_unpack(desc, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all),
		     &m);
	grpc_slice_unref(all);
	return m;
}

static int status_from_grpc(grpc_status_code code)
{
	switch (code) {
	case GRPC_STATUS_OK:
		return STATUS_OK;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return STATUS_TIMEOUT;
	case GRPC_STATUS_UNAVAILABLE:
		return STATUS_UNAVAILABLE;
	case GRPC_STATUS_CANCELLED:
		return STATUS_CANCELLED;
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_UNIMPLEMENTED:
		return STATUS_INVALID_ARGUMENT;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return STATUS_TOO_LARGE;
	default:
		return STATUS_INTERNAL;
	}
}

/* Application statuses (NOT_LEADER, WRONG_GROUP) belong in replies; if one
 * is sent as a call failure anyway, it still maps to something a gRPC peer
 * understands. */
static grpc_status_code status_to_grpc(int status)
{
	switch (status) {
	case STATUS_INVALID_ARGUMENT:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case STATUS_NOT_FOUND:
		return GRPC_STATUS_NOT_FOUND;
	case STATUS_ALREADY_EXISTS:
		return GRPC_STATUS_ALREADY_EXISTS;
	case STATUS_NO_MEMORY:
	case STATUS_TOO_LARGE:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case STATUS_CORRUPTION:
		return GRPC_STATUS_DATA_LOSS;
	case STATUS_TIMEOUT:
		return GRPC_STATUS_DEADLINE_EXCEEDED;
	case STATUS_UNAVAILABLE:
	case STATUS_NOT_READY:
	case STATUS_SHUTDOWN:
		return GRPC_STATUS_UNAVAILABLE;
	case STATUS_CANCELLED:
		return GRPC_STATUS_CANCELLED;
	case STATUS_NOT_LEADER:
	case STATUS_WRONG_GROUP:
		return GRPC_STATUS_FAILED_PRECONDITION;
	case STATUS_IO:
	case STATUS_INTERNAL:
		return GRPC_STATUS_INTERNAL;
	default:
		return GRPC_STATUS_UNKNOWN;
	}
}

/* ---- server ---- */

struct method {
	char *path;
	const ProtobufCMessageDescriptor *req_desc;
	rpc_handler_fn fn;
	void *ctx;
	void *handle; /* grpc_server_register_method */
};

struct rpc_server {
	int max_msg;
	struct method *methods; /* fixed once started: slots point in */
	size_t nmethods;

	/* Set by rpc_server_start, NULL before or after a failed start. */
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t thread;
	struct op shutdown_op;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	atomic_bool stopping; /* written under mu */
	bool in_handler;      /* the cq thread runs a handler */
	bool shutdown_done;   /* gRPC completed shutdown_op */
	atomic_long unanswered; /* handed to handlers, not answered yet */
};

/* A request posted to gRPC for one registered method, or for any other
 * method when m is NULL (those get UNIMPLEMENTED). Re-posted after each
 * call; freed when the server stops taking requests. */
struct slot {
	struct op op;
	struct rpc_server *s;
	struct method *m;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_byte_buffer *payload;
	grpc_metadata_array md;
	grpc_call_details details;
};

struct rpc_call {
	struct op op; /* the one answer batch */
	struct rpc_server *s;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_byte_buffer *reply;
	grpc_slice details; /* zeroed = empty until answered */
	int cancelled;      /* RECV_CLOSE_ON_SERVER's out-argument; unused */
};

static void call_free(struct rpc_call *call)
{
	grpc_call_unref(call->call);
	if (call->reply)
		grpc_byte_buffer_destroy(call->reply);
	grpc_slice_unref(call->details);
	mem_free(call);
}

static void answer_done(struct op *op, bool ok)
{
	call_free(container_of(op, struct rpc_call, op));
}

/* Sends status (and reply, taken) in one batch that also waits for the
 * client's close, so it is the only batch on the call and completes once. */
static void answer_bb(struct rpc_call *call, grpc_status_code code,
		      const char *msg, grpc_byte_buffer *reply)
{
	grpc_op ops[4];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (reply) {
		call->reply = reply;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = call->reply;
	}
	call->details = grpc_slice_from_copied_string(msg ? msg : "");
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &call->details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &call->cancelled;
	call->op.complete = answer_done;
	grpc_call_error e = grpc_call_start_batch(call->call, ops, n,
						  &call->op, NULL);
	if (e != GRPC_CALL_OK) {
		log_warn(MOD, "answer: %s", grpc_call_error_to_string(e));
		call_free(call);
	}
}

static void answer(struct rpc_call *call, grpc_status_code code,
		   const char *msg, const ProtobufCMessage *reply)
{
	answer_bb(call, code, msg, reply ? pack_msg(reply) : NULL);
}

/* The owner's answer: after shutdown the call is only released. `reply`
 * is taken. */
static void owner_answer(struct rpc_call *call, grpc_status_code code,
			 const char *msg, grpc_byte_buffer *reply)
{
	struct rpc_server *s = call->s;
	if (atomic_load(&s->stopping)) {
		if (reply)
			grpc_byte_buffer_destroy(reply);
		call_free(call);
	} else {
		answer_bb(call, code, msg, reply);
	}
	/* After the batch is queued: rpc_server_free may then drain it. */
	atomic_fetch_sub(&s->unanswered, 1);
}

void rpc_call_reply(struct rpc_call *call, const ProtobufCMessage *reply)
{
	owner_answer(call, GRPC_STATUS_OK, NULL, pack_msg(reply));
}

void rpc_call_reply_bytes(struct rpc_call *call, const void *reply,
			  size_t len)
{
	owner_answer(call, GRPC_STATUS_OK, NULL,
		     copy_bytes(reply ? reply : "", len));
}

void rpc_call_fail(struct rpc_call *call, int status, const char *msg)
{
	owner_answer(call, status_to_grpc(status), msg, NULL);
}

int64_t rpc_call_remaining_ms(const struct rpc_call *call)
{
	gpr_timespec d = call->deadline;
	if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
		return INT64_MAX;
	gpr_timespec left = gpr_time_sub(d, gpr_now(d.clock_type));
	return left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

void rpc_call_peer(const struct rpc_call *call, char *buf, size_t cap)
{
	char *peer = grpc_call_get_peer(call->call);
	snprintf(buf, cap, "%s", peer);
	gpr_free(peer);
}

static void slot_done(struct op *op, bool ok);

static void slot_free(struct slot *sl)
{
	grpc_metadata_array_destroy(&sl->md);
	grpc_call_details_destroy(&sl->details);
	mem_free(sl);
}

static void slot_post(struct slot *sl)
{
	struct rpc_server *s = sl->s;
	grpc_call_error e;

	sl->op.complete = slot_done;
	sl->call = NULL;
	sl->payload = NULL;
	grpc_metadata_array_init(&sl->md);
	grpc_call_details_init(&sl->details);
	if (sl->m)
		e = grpc_server_request_registered_call(
			s->server, sl->m->handle, &sl->call, &sl->deadline,
			&sl->md, &sl->payload, s->cq, s->cq, &sl->op);
	else
		e = grpc_server_request_call(s->server, &sl->call, &sl->details,
					     &sl->md, s->cq, s->cq, &sl->op);
	if (e != GRPC_CALL_OK) {
		log_warn(MOD, "request call: %s", grpc_call_error_to_string(e));
		slot_free(sl);
	}
}

static int slot_new(struct rpc_server *s, struct method *m)
{
	struct slot *sl = mem_calloc(1, sizeof(*sl));
	if (!sl)
		return STATUS_NO_MEMORY;
	sl->s = s;
	sl->m = m;
	slot_post(sl);
	return STATUS_OK;
}

/* Decodes the request and runs the handler, unless the server stopped. */
static void dispatch(struct rpc_server *s, struct method *m,
		     struct rpc_call *call, grpc_byte_buffer *payload)
{
	char msg[128];
	ProtobufCMessage *req = NULL;

	if (payload) {
		req = unpack_bb(m->req_desc, payload);
		grpc_byte_buffer_destroy(payload);
	}
	if (!req) {
		snprintf(msg, sizeof(msg), "request is not a valid %s",
			 m->req_desc->name);
		answer(call, GRPC_STATUS_INVALID_ARGUMENT, msg, NULL);
		return;
	}
	pthread_mutex_lock(&s->mu);
	bool stopping = atomic_load(&s->stopping);
	s->in_handler = !stopping;
	pthread_mutex_unlock(&s->mu);
	if (stopping) {
		codec_free(req);
		call_free(call);
		return;
	}
	atomic_fetch_add(&s->unanswered, 1);
	m->fn(m->ctx, call, req);
	pthread_mutex_lock(&s->mu);
	s->in_handler = false;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

static void slot_done(struct op *op, bool ok)
{
	struct slot *sl = container_of(op, struct slot, op);
	struct rpc_server *s = sl->s;
	struct method *m = sl->m;
	grpc_byte_buffer *payload = sl->payload;
	char msg[160];

	if (!ok) { /* the server is shutting down */
		slot_free(sl);
		return;
	}
	struct rpc_call *call = mem_calloc(1, sizeof(*call));
	if (call) {
		call->s = s;
		call->call = sl->call;
		call->deadline = sl->deadline;
	} else {
		grpc_call_unref(sl->call); /* cancels it */
	}
	if (!m)
		snprintf(msg, sizeof(msg), "unknown method %.*s",
			 (int)GRPC_SLICE_LENGTH(sl->details.method),
			 (const char *)GRPC_SLICE_START_PTR(sl->details.method));
	/* Put the slot back to work before the (maybe long) decode. */
	grpc_metadata_array_destroy(&sl->md);
	grpc_call_details_destroy(&sl->details);
	if (atomic_load(&s->stopping))
		mem_free(sl);
	else
		slot_post(sl);

	if (!call) {
		if (payload)
			grpc_byte_buffer_destroy(payload);
	} else if (!m) {
		answer(call, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
	} else {
		dispatch(s, m, call, payload);
	}
}

static void shutdown_done(struct op *op, bool ok)
{
	struct rpc_server *s = container_of(op, struct rpc_server, shutdown_op);
	pthread_mutex_lock(&s->mu);
	s->shutdown_done = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

struct rpc_server *rpc_server_new(const struct rpc_server_opts *opts)
{
	struct rpc_server *s = mem_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->max_msg = max_msg_arg(opts ? opts->max_message_bytes : 0);
	s->shutdown_op.complete = shutdown_done;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	grpc_init();
	if (!cq_start(&s->cq, &s->thread)) {
		grpc_shutdown();
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->mu);
		mem_free(s);
		return NULL;
	}
	return s;
}

int rpc_server_add_method(struct rpc_server *s, const char *method,
			  const ProtobufCMessageDescriptor *req_desc,
			  rpc_handler_fn fn, void *ctx)
{
	if (s->server || !method || !req_desc || !fn)
		return STATUS_INVALID_ARGUMENT;
	for (size_t i = 0; i < s->nmethods; i++)
		if (strcmp(s->methods[i].path, method) == 0)
			return STATUS_INVALID_ARGUMENT;
	struct method *ms = mem_realloc(s->methods,
					(s->nmethods + 1) * sizeof(*ms));
	if (!ms)
		return STATUS_NO_MEMORY;
	s->methods = ms;
	char *path = mem_strdup(method);
	if (!path)
		return STATUS_NO_MEMORY;
	ms[s->nmethods++] = (struct method){path, req_desc, fn, ctx, NULL};
	return STATUS_OK;
}

int rpc_server_start(struct rpc_server *s, const char *addr, int *bound_port,
		     char *errmsg, size_t errcap)
{
	char dummy[1];
	if (!errmsg) {
		errmsg = dummy;
		errcap = sizeof(dummy);
	}
	if (s->server || atomic_load(&s->stopping) || !addr) {
		snprintf(errmsg, errcap, "no address, or started before");
		return STATUS_INVALID_ARGUMENT;
	}
	grpc_arg args[] = {
		int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, s->max_msg),
		int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, s->max_msg),
		/* Clients ping every second to detect a paused peer: allow
		 * it, even on an idle connection, and never GOAWAY for it. */
		int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
			1000),
		int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
		int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0),
		/* gRPC sets SO_REUSEPORT by default, so a second server on a
		 * port in use would silently share it. */
		int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0),
	};
	grpc_channel_args ch_args = {sizeof(args) / sizeof(args[0]), args};

	s->server = grpc_server_create(&ch_args, NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	for (size_t i = 0; i < s->nmethods; i++)
		s->methods[i].handle = grpc_server_register_method(
			s->server, s->methods[i].path, NULL,
			GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	grpc_server_credentials *creds =
		grpc_insecure_server_credentials_create();
	int port = grpc_server_add_http2_port(s->server, addr, creds);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		/* Not started and no listener: destroyable without shutdown.
		 * The queue stays until rpc_server_free (a client may share
		 * it). */
		grpc_server_destroy(s->server);
		s->server = NULL;
		snprintf(errmsg, errcap,
			 "cannot listen on %s: address in use or invalid", addr);
		return STATUS_UNAVAILABLE;
	}
	grpc_server_start(s->server);
	if (bound_port)
		*bound_port = port;

	/* One request slot per method plus one for unknown methods. The cq
	 * thread re-posts a slot before running the handler and calls that
	 * arrive meanwhile wait inside gRPC; more slots measured no faster
	 * (bench_rpc, 64 in flight). */
	int st = slot_new(s, NULL);
	for (size_t i = 0; i < s->nmethods && st == STATUS_OK; i++)
		st = slot_new(s, &s->methods[i]);
	if (st != STATUS_OK)
		snprintf(errmsg, errcap, "out of memory");
	return st;
}

void rpc_server_shutdown(struct rpc_server *s)
{
	pthread_mutex_lock(&s->mu);
	bool was_stopping = atomic_load(&s->stopping);
	atomic_store(&s->stopping, true);
	while (s->in_handler)
		pthread_cond_wait(&s->cond, &s->mu);
	pthread_mutex_unlock(&s->mu);
	if (was_stopping || !s->server)
		return;
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_op);
	/* Else calls in flight hold the shutdown for seconds. */
	grpc_server_cancel_all_calls(s->server);
}

void rpc_server_free(struct rpc_server *s)
{
	if (!s)
		return;
	rpc_server_shutdown(s);
	assert(atomic_load(&s->unanswered) == 0);
	if (s->server) {
		pthread_mutex_lock(&s->mu);
		while (!s->shutdown_done)
			pthread_cond_wait(&s->cond, &s->mu);
		pthread_mutex_unlock(&s->mu);
	}
	cq_stop(s->cq, s->thread);
	if (s->server)
		grpc_server_destroy(s->server);
	for (size_t i = 0; i < s->nmethods; i++)
		mem_free(s->methods[i].path);
	mem_free(s->methods);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mu);
	mem_free(s);
	grpc_shutdown();
}

/* ---- client ---- */

/* A method registered on one channel; gRPC wants the name kept alive. */
struct reg {
	struct reg *next;
	char *method;
	void *handle;
};

struct chan {
	struct chan *next;
	char *addr;
	grpc_channel *ch;
	struct reg *regs;
};

struct ccall {
	struct op op;
	struct rpc_client *c;
	struct ccall *prev, *next; /* in c->calls */
	grpc_call *call;
	grpc_channel *ch;
	grpc_byte_buffer *req, *reply;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code code;
	grpc_slice details;
	const ProtobufCMessageDescriptor *reply_desc;
	rpc_done_fn done;
	void *arg;
};

struct rpc_client {
	int max_msg;
	int connect_timeout_ms;
	grpc_completion_queue *cq; /* its own, or its server's */
	pthread_t thread;
	bool own_cq;

	pthread_mutex_t mu;
	pthread_cond_t idle; /* no call and no `done` left while closing */
	bool closing;
	long in_done; /* `done` callbacks running */
	struct chan *chans;
	struct ccall *calls; /* outstanding, so free can cancel them */
};

struct rpc_client *rpc_client_new(const struct rpc_client_opts *opts)
{
	struct rpc_client *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->max_msg = max_msg_arg(opts ? opts->max_message_bytes : 0);
	uint64_t ct = opts ? opts->connect_timeout_ms : 0;
	c->connect_timeout_ms = ct == 0 ? CONNECT_TIMEOUT_MS_DEFAULT
			      : ct > INT_MAX ? INT_MAX : (int)ct;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->idle, NULL);
	grpc_init();
	if (opts && opts->server) {
		c->cq = opts->server->cq;
		return c;
	}
	c->own_cq = true;
	if (!cq_start(&c->cq, &c->thread)) {
		grpc_shutdown();
		pthread_cond_destroy(&c->idle);
		pthread_mutex_destroy(&c->mu);
		mem_free(c);
		return NULL;
	}
	return c;
}

/* Under c->mu: the channel to `addr`, created on first use. */
static struct chan *chan_get(struct rpc_client *c, const char *addr)
{
	struct chan *ch;
	for (ch = c->chans; ch; ch = ch->next)
		if (strcmp(ch->addr, addr) == 0)
			return ch;
	ch = mem_calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->addr = mem_strdup(addr);
	if (!ch->addr) {
		mem_free(ch);
		return NULL;
	}
	grpc_arg args[] = {
		int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, c->max_msg),
		int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, c->max_msg),
		/* Defaults (1 s initial, x1.6, max 120 s) leave a restarted
		 * peer unreached for many seconds. */
		int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100),
		int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000),
		/* Despite its name this is the minimum time one connection
		 * attempt may take. At 100 ms a slow handshake (a loaded
		 * host, a long link, valgrind) never completes and every
		 * call fails UNAVAILABLE. */
		int_arg(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
			c->connect_timeout_ms),
		/* A paused peer keeps the connection READY: pings find it,
		 * also on an idle channel (by default gRPC stops pinging
		 * after 2 pings without data). */
		int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, 1000),
		int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000),
		int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
		int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
		/* Our own layers retry; gRPC's retry buffering costs ~15 %. */
		int_arg(GRPC_ARG_ENABLE_RETRIES, 0),
	};
	grpc_channel_args ch_args = {sizeof(args) / sizeof(args[0]), args};
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	ch->ch = grpc_channel_create(addr, creds, &ch_args);
	grpc_channel_credentials_release(creds);
	ch->next = c->chans;
	c->chans = ch;
	return ch;
}

/* Under c->mu: the registered-call handle for `method` on `ch`. */
static void *reg_get(struct chan *ch, const char *method)
{
	struct reg *r;
	for (r = ch->regs; r; r = r->next)
		if (strcmp(r->method, method) == 0)
			return r->handle;
	r = mem_calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->method = mem_strdup(method);
	if (!r->method) {
		mem_free(r);
		return NULL;
	}
	r->handle = grpc_channel_register_call(ch->ch, r->method, NULL, NULL);
	r->next = ch->regs;
	ch->regs = r;
	return r->handle;
}

static void ccall_free(struct ccall *cc)
{
	if (cc->call)
		grpc_call_unref(cc->call);
	grpc_byte_buffer_destroy(cc->req);
	if (cc->reply)
		grpc_byte_buffer_destroy(cc->reply);
	grpc_metadata_array_destroy(&cc->initial_md);
	grpc_metadata_array_destroy(&cc->trailing_md);
	grpc_slice_unref(cc->details);
	mem_free(cc);
}

/* Under c->mu. */
static void ccall_unlink(struct rpc_client *c, struct ccall *cc)
{
	if (cc->prev)
		cc->prev->next = cc->next;
	else
		c->calls = cc->next;
	if (cc->next)
		cc->next->prev = cc->prev;
}

static void ccall_done(struct op *op, bool ok)
{
	struct ccall *cc = container_of(op, struct ccall, op);
	struct rpc_client *c = cc->c;
	ProtobufCMessage *reply = NULL;
	int st = status_from_grpc(cc->code);
	char msg[512] = "";

	if (cc->code == GRPC_STATUS_OK) {
		if (cc->reply)
			reply = unpack_bb(cc->reply_desc, cc->reply);
		if (!reply) {
			st = STATUS_INTERNAL;
			snprintf(msg, sizeof(msg), "reply is not a valid %s",
				 cc->reply_desc->name);
		}
	} else {
		snprintf(msg, sizeof(msg), "%s%.*s",
			 cc->code == GRPC_STATUS_UNIMPLEMENTED ?
				 "unimplemented: " : "",
			 (int)GRPC_SLICE_LENGTH(cc->details),
			 (const char *)GRPC_SLICE_START_PTR(cc->details));
		/* Reconnect at once instead of after the backoff, so the
		 * next call reaches a restarted peer. */
		if (cc->code == GRPC_STATUS_UNAVAILABLE)
			grpc_channel_reset_connect_backoff(cc->ch);
	}
	pthread_mutex_lock(&c->mu);
	ccall_unlink(c, cc);
	c->in_done++;
	pthread_mutex_unlock(&c->mu);
	cc->done(cc->arg, st, msg, reply);
	ccall_free(cc);
	pthread_mutex_lock(&c->mu);
	if (--c->in_done == 0 && !c->calls && c->closing)
		pthread_cond_signal(&c->idle);
	pthread_mutex_unlock(&c->mu);
}

/* Takes `req` in every case. */
static int start_call(struct rpc_client *c, const char *addr,
		      const char *method, grpc_byte_buffer *req,
		      const ProtobufCMessageDescriptor *reply_desc,
		      uint64_t timeout_ms, rpc_done_fn done, void *arg)
{
	struct ccall *cc = mem_calloc(1, sizeof(*cc));
	if (!cc) {
		grpc_byte_buffer_destroy(req);
		return STATUS_NO_MEMORY;
	}
	cc->op.complete = ccall_done;
	cc->c = c;
	cc->req = req;
	/* Stays UNKNOWN (→ INTERNAL) if gRPC never fills it in. */
	cc->code = GRPC_STATUS_UNKNOWN;
	cc->reply_desc = reply_desc;
	cc->done = done;
	cc->arg = arg;
	grpc_metadata_array_init(&cc->initial_md);
	grpc_metadata_array_init(&cc->trailing_md);
	if (timeout_ms > INT32_MAX)
		timeout_ms = INT32_MAX;
	gpr_timespec deadline = gpr_time_add(
		gpr_now(GPR_CLOCK_MONOTONIC),
		gpr_time_from_millis((int64_t)timeout_ms, GPR_TIMESPAN));

	int st = STATUS_NO_MEMORY;
	pthread_mutex_lock(&c->mu);
	if (c->closing) {
		st = STATUS_SHUTDOWN;
		goto err_unlock;
	}
	struct chan *ch = chan_get(c, addr);
	void *handle = ch ? reg_get(ch, method) : NULL;
	if (!handle)
		goto err_unlock;
	cc->ch = ch->ch;
	cc->call = grpc_channel_create_registered_call(
		ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, handle, deadline,
		NULL);
	cc->next = c->calls;
	if (c->calls)
		c->calls->prev = cc;
	c->calls = cc;
	pthread_mutex_unlock(&c->mu);

	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = cc->req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata =
		&cc->initial_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &cc->reply;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &cc->trailing_md;
	ops[5].data.recv_status_on_client.status = &cc->code;
	ops[5].data.recv_status_on_client.status_details = &cc->details;
	grpc_call_error e = grpc_call_start_batch(cc->call, ops, 6, &cc->op,
						  NULL);
	if (e == GRPC_CALL_OK)
		return STATUS_OK;
	log_warn(MOD, "call %s: %s", method, grpc_call_error_to_string(e));
	st = STATUS_INTERNAL;
	pthread_mutex_lock(&c->mu);
	ccall_unlink(c, cc);
	if (!c->calls && !c->in_done && c->closing)
		pthread_cond_signal(&c->idle);
err_unlock:
	pthread_mutex_unlock(&c->mu);
	ccall_free(cc);
	return st;
}

int rpc_client_call(struct rpc_client *c, const char *addr, const char *method,
		    const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *reply_desc,
		    uint64_t timeout_ms, rpc_done_fn done, void *arg)
{
	if (!addr || !method || !req || !reply_desc || !timeout_ms || !done)
		return STATUS_INVALID_ARGUMENT;
	return start_call(c, addr, method, pack_msg(req), reply_desc,
			  timeout_ms, done, arg);
}

int rpc_client_call_bytes(struct rpc_client *c, const char *addr,
			  const char *method, const void *req, size_t req_len,
			  const ProtobufCMessageDescriptor *reply_desc,
			  uint64_t timeout_ms, rpc_done_fn done, void *arg)
{
	if (!addr || !method || (!req && req_len) || !reply_desc ||
	    !timeout_ms || !done)
		return STATUS_INVALID_ARGUMENT;
	return start_call(c, addr, method, copy_bytes(req ? req : "", req_len),
			  reply_desc, timeout_ms, done, arg);
}

void rpc_client_free(struct rpc_client *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	for (struct ccall *cc = c->calls; cc; cc = cc->next)
		grpc_call_cancel(cc->call, NULL);
	while (c->calls || c->in_done)
		pthread_cond_wait(&c->idle, &c->mu);
	pthread_mutex_unlock(&c->mu);
	/* Every `done` has returned; nothing of ours is left on the queue
	 * (a shared one goes on serving its server). */
	if (c->own_cq)
		cq_stop(c->cq, c->thread);
	while (c->chans) {
		struct chan *ch = c->chans;
		c->chans = ch->next;
		grpc_channel_destroy(ch->ch);
		while (ch->regs) {
			struct reg *r = ch->regs;
			ch->regs = r->next;
			mem_free(r->method);
			mem_free(r);
		}
		mem_free(ch->addr);
		mem_free(ch);
	}
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->mu);
	mem_free(c);
	grpc_shutdown();
}
