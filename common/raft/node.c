/*
 * Implementation notes. Two kinds of heap objects cross threads, each one
 * allocation: an `incoming` (a request: gRPC thread → loop, then the FIFO
 * node of its held call) and an `outgoing` (a request we send: loop →
 * client thread → loop). `n->mu` orders "is the node stopping?" against
 * every post from a gRPC thread, so after raft_node_stop returns nothing
 * more is posted and `outstanding` only falls.
 *
 * `outstanding` is atomic, so the loop thread never takes `n->mu` while
 * running: a gRPC thread holds it across loop_post, and the loop it just
 * woke would otherwise often sleep again on that mutex at once (a futex
 * round trip per message). Only the fall to zero once stopping is set
 * takes the mutex, to wake raft_node_free; the stores and loads of
 * `stopping` and `outstanding` are sequentially consistent, so either
 * done_one sees `stopping` or raft_node_free sees the zero.
 */
#include "common/raft/node.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/codec.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/status.h"

#define MOD "raft_node"

#define container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Request types, the index of their FIFOs and methods. */
enum { REQ_VOTE, REQ_APPEND, REQ_SNAPSHOT, REQ_COUNT_ };

static const enum raft_msg_type req_types[REQ_COUNT_] = {
	RAFT_MSG_VOTE_REQ, RAFT_MSG_APPEND_REQ, RAFT_MSG_SNAPSHOT_REQ};

struct raft_node;

struct method_ctx {
	struct raft_node *n;
	int req; /* REQ_* */
};

struct incoming {
	struct loop_event ev;
	struct raft_node *n;
	int req;
	struct rpc_call *call;
	ProtobufCMessage *msg;	/* until stepped */
	struct incoming *next;	/* in its FIFO once held */
	uint64_t ready_seq;	/* readies handled before it was stepped */
};

struct fifo {
	struct incoming *head, *tail;
};

struct outgoing {
	struct loop_event ev;
	struct raft_node *n;
	ProtobufCMessage *reply;
};

struct raft_node {
	struct loop *loop;
	struct rpc_client *client;
	struct raft_replica *rep;
	struct raft *raft;
	/* What reopening the replica needs (after a corrupt snapshot). */
	struct raft_config config;
	struct store *store;
	struct raft_fsm_ops fsm;
	void *fsm_ctx;
	size_t compaction_log_bytes_max;
	uint32_t ids[RAFT_MAX_NODES];
	char *addrs[RAFT_MAX_NODES];
	size_t n_nodes;
	uint64_t rpc_timeout_ms;
	struct method_ctx methods[REQ_COUNT_];

	/* Loop thread only. */
	struct loop_timer tick;
	struct fifo held[RAFT_MAX_NODES][REQ_COUNT_];
	struct loop_event start_ev, stop_ev, kick_ev;
	bool kick_pending;
	bool stopped; /* stop_ev ran */
	bool own_turn_hook;
	uint64_t readies_seen;

	pthread_mutex_t mu;
	pthread_cond_t idle;
	atomic_bool stopping; /* raft_node_stop was called; set under mu */
	atomic_long outstanding; /* client calls and posted events not done */
};

static uint64_t now_ms(const struct raft_node *n)
{
	return loop_now_us(n->loop) / 1000;
}

static int peer_index(const struct raft_node *n, uint32_t id)
{
	for (size_t i = 0; i < n->n_nodes; i++)
		if (n->ids[i] == id)
			return (int)i;
	return -1;
}

static void done_one(struct raft_node *n)
{
	if (atomic_fetch_sub(&n->outstanding, 1) != 1 ||
	    !atomic_load(&n->stopping))
		return;
	pthread_mutex_lock(&n->mu);
	pthread_cond_broadcast(&n->idle);
	pthread_mutex_unlock(&n->mu);
}

/* ---- incoming requests ---- */

static uint32_t request_from(int req, const ProtobufCMessage *m)
{
	switch (req) {
	case REQ_VOTE:
		return ((const Skv__RequestVoteRequest *)m)->from;
	case REQ_APPEND:
		return ((const Skv__AppendEntriesRequest *)m)->from;
	default:
		return ((const Skv__InstallSnapshotRequest *)m)->from;
	}
}

static void incoming_run(struct loop_event *ev)
{
	struct incoming *in = (struct incoming *)ev;
	struct raft_node *n = in->n;
	int peer = peer_index(n, request_from(in->req, in->msg));

	if (n->stopped || loop_stopping(n->loop)) {
		rpc_call_fail(in->call, STATUS_SHUTDOWN, "raft node stopping");
		goto done;
	}
	if (peer < 0 || raft_step(n->raft, now_ms(n), in->msg) != STATUS_OK) {
		rpc_call_fail(in->call, STATUS_INVALID_ARGUMENT,
			      "raft message refused");
		goto done;
	}
	codec_free(in->msg);
	in->msg = NULL;
	struct fifo *f = &n->held[peer][in->req];
	in->next = NULL;
	in->ready_seq = n->readies_seen;
	if (f->tail)
		f->tail->next = in;
	else
		f->head = in;
	f->tail = in;
	done_one(n);
	return;
done:
	codec_free(in->msg);
	mem_free(in);
	done_one(n);
}

/* gRPC server thread: never blocks. */
static void on_request(void *ctx, struct rpc_call *call, ProtobufCMessage *req)
{
	struct method_ctx *mc = ctx;
	struct raft_node *n = mc->n;
	struct incoming *in = mem_calloc(1, sizeof(*in));

	if (!in) {
		rpc_call_fail(call, STATUS_NO_MEMORY, "out of memory");
		codec_free(req);
		return;
	}
	in->ev.fn = incoming_run;
	in->n = n;
	in->req = mc->req;
	in->call = call;
	in->msg = req;
	pthread_mutex_lock(&n->mu);
	if (atomic_load(&n->stopping)) {
		pthread_mutex_unlock(&n->mu);
		rpc_call_fail(call, STATUS_SHUTDOWN, "raft node stopping");
		codec_free(req);
		mem_free(in);
		return;
	}
	atomic_fetch_add(&n->outstanding, 1);
	loop_post(n->loop, &in->ev);
	pthread_mutex_unlock(&n->mu);
}

/* Fails every held call stepped before ready number `before` (all of them
 * with UINT64_MAX). */
static void fail_calls(struct raft_node *n, uint64_t before, int status,
		       const char *msg)
{
	for (size_t p = 0; p < n->n_nodes; p++) {
		for (int t = 0; t < REQ_COUNT_; t++) {
			struct fifo *f = &n->held[p][t];
			while (f->head && f->head->ready_seq < before) {
				struct incoming *in = f->head;
				f->head = in->next;
				rpc_call_fail(in->call, status, msg);
				mem_free(in);
			}
			if (!f->head)
				f->tail = NULL;
		}
	}
}

/* The core answers a request in the very next ready (raft.h): a call
 * stepped before the ready just handled and still held lost its reply
 * (the core ran out of memory for it). Fail it, so later replies do not
 * land on the wrong calls. */
static void fail_unanswered(struct raft_node *n, uint64_t readies)
{
	fail_calls(n, readies, STATUS_UNAVAILABLE, "raft reply lost");
}

static void fail_held(struct raft_node *n)
{
	fail_calls(n, UINT64_MAX, STATUS_SHUTDOWN, "raft node stopping");
}

/* ---- outgoing requests ---- */

static void outgoing_run(struct loop_event *ev)
{
	struct outgoing *out = (struct outgoing *)ev;
	struct raft_node *n = out->n;

	if (!n->stopped && !loop_stopping(n->loop))
		raft_step(n->raft, now_ms(n), out->reply);
	codec_free(out->reply);
	mem_free(out);
	done_one(n);
}

/* gRPC client thread: never blocks. Failures are dropped: the core
 * retries on its own schedule. */
static void on_reply(void *arg, int status, const char *errmsg,
		     ProtobufCMessage *reply)
{
	struct outgoing *out = arg;
	struct raft_node *n = out->n;

	if (status == STATUS_OK) {
		pthread_mutex_lock(&n->mu);
		if (!atomic_load(&n->stopping)) {
			out->reply = reply;
			loop_post(n->loop, &out->ev);
			pthread_mutex_unlock(&n->mu);
			return;
		}
		pthread_mutex_unlock(&n->mu);
	}
	codec_free(reply);
	mem_free(out);
	done_one(n);
}

static void send_request(struct raft_node *n, int peer,
			 const struct raft_msg *m)
{
	struct outgoing *out = mem_calloc(1, sizeof(*out));
	if (!out)
		return; /* as if lost */
	out->ev.fn = outgoing_run;
	out->n = n;
	atomic_fetch_add(&n->outstanding, 1);
	int rc = rpc_client_call_bytes(n->client, n->addrs[peer],
				       raft_msg_method(m->type), m->bytes.data,
				       m->bytes.len,
				       raft_msg_descriptor(m->type + 1),
				       n->rpc_timeout_ms, on_reply, out);
	if (rc != STATUS_OK) {
		log_debug(MOD, "%s to %u: %s", raft_msg_type_name(m->type),
			  m->to, status_str(rc));
		mem_free(out);
		done_one(n);
	}
}

static void send_reply(struct raft_node *n, int peer, const struct raft_msg *m)
{
	int req = m->type == RAFT_MSG_VOTE_REPLY     ? REQ_VOTE
		  : m->type == RAFT_MSG_APPEND_REPLY ? REQ_APPEND
						     : REQ_SNAPSHOT;
	struct fifo *f = &n->held[peer][req];
	struct incoming *in = f->head;
	if (!in) {
		log_warn(MOD, "%s to %u answers no held call; dropped",
			 raft_msg_type_name(m->type), m->to);
		return;
	}
	f->head = in->next;
	if (!f->head)
		f->tail = NULL;
	rpc_call_reply_bytes(in->call, m->bytes.data, m->bytes.len);
	mem_free(in);
}

/* raft_send_fn: runs inside raft_replica_process, after the write. */
static void send_msg(void *arg, struct raft_msg *m)
{
	struct raft_node *n = arg;
	int peer = peer_index(n, m->to);
	if (peer < 0 || !n->addrs[peer]) {
		log_warn(MOD, "%s to unknown node %u",
			 raft_msg_type_name(m->type), m->to);
		return;
	}
	if (raft_msg_method(m->type))
		send_request(n, peer, m);
	else
		send_reply(n, peer, m);
}

/* ---- the loop side ---- */

static void arm_tick(struct raft_node *n)
{
	uint64_t next = raft_next_tick_ms(n->raft), now = now_ms(n);
	uint64_t delay_us = next > now ? (next - now) * 1000 : 0;
	if (loop_timer_start(n->loop, &n->tick, delay_us) != STATUS_OK)
		log_fatal(MOD, "cannot arm the tick timer: out of memory");
}

static void on_tick(struct loop_timer *t)
{
	struct raft_node *n = container_of(t, struct raft_node, tick);
	if (!n->stopped)
		raft_tick(n->raft, now_ms(n));
}

static void on_kick(struct loop_event *ev)
{
	struct raft_node *n = container_of(ev, struct raft_node, kick_ev);
	n->kick_pending = false;
	done_one(n);
}

static void on_start(struct loop_event *ev)
{
	struct raft_node *n = container_of(ev, struct raft_node, start_ev);
	if (!n->stopped && !loop_stopping(n->loop))
		arm_tick(n);
	done_one(n);
}

/* On the loop thread, or with the loop no longer running. */
static void stop_here(struct raft_node *n)
{
	n->stopped = true;
	loop_timer_stop(n->loop, &n->tick);
	fail_held(n);
}

static void on_stop(struct loop_event *ev)
{
	struct raft_node *n = container_of(ev, struct raft_node, stop_ev);
	stop_here(n);
	done_one(n);
}

/*
 * A snapshot received from a peer failed its checks: bad input, not a
 * reason to exit. Nothing of that ready was written or sent; the core
 * already counted the snapshot installed, so it is rebuilt from storage
 * (which still lacks it) and the leader sends it again. The state
 * machine reloads from the store too (replica.h).
 */
static void reopen(struct raft_node *n)
{
	char err[256];
	uint32_t id = raft_id(n->raft);
	log_error(MOD, "node %u: %s; reloading from storage", id,
		  raft_replica_errmsg(n->rep));
	fail_held(n);
	raft_replica_free(n->rep);
	n->rep = NULL;
	n->raft = NULL;
	if (raft_replica_open(&n->config, n->store, &n->fsm, n->fsm_ctx,
			      now_ms(n), &n->rep, err, sizeof(err)))
		log_fatal(MOD, "node %u: cannot reopen: %s", id, err);
	n->raft = raft_replica_raft(n->rep);
	raft_replica_set_compaction(n->rep, n->compaction_log_bytes_max);
	n->readies_seen = 0;
	if (n->fsm.restore)
		n->fsm.restore(n->fsm_ctx, raft_replica_applied_index(n->rep));
	arm_tick(n);
}

void raft_node_turn(struct raft_node *n)
{
	struct raft_replica_stats s;

	if (n->stopped)
		return;
	int rc = raft_replica_process(n->rep, now_ms(n), send_msg, n);
	if (rc == STATUS_CORRUPTION) {
		reopen(n);
		return;
	}
	if (rc != STATUS_OK)
		log_fatal(MOD, "node %u: %s: %s", raft_id(n->raft),
			  status_name(rc), raft_replica_errmsg(n->rep));
	raft_replica_stats(n->rep, &s);
	if (s.readies != n->readies_seen)
		fail_unanswered(n, s.readies);
	/* A ready was handled: the core may hold more (entries beyond one
	 * ready's apply limit, a compaction just started). Come back next
	 * turn rather than run a second write in this one. */
	if (s.readies != n->readies_seen && !n->kick_pending) {
		n->kick_pending = true;
		atomic_fetch_add(&n->outstanding, 1);
		loop_post(n->loop, &n->kick_ev);
	}
	n->readies_seen = s.readies;
	arm_tick(n);
}

static void turn_hook(void *arg)
{
	raft_node_turn(arg);
}

/* ---- API ---- */

int raft_node_new(const struct raft_node_opts *o, struct raft_node **out,
		  char *errmsg, size_t cap)
{
	int rc;

	*out = NULL;
	struct raft_node *n = mem_calloc(1, sizeof(*n));
	if (!n) {
		snprintf(errmsg, cap, "raft node: out of memory");
		return STATUS_NO_MEMORY;
	}
	n->loop = o->loop;
	n->client = o->client;
	n->n_nodes = o->config.n_nodes;
	if (n->n_nodes > RAFT_MAX_NODES) {
		snprintf(errmsg, cap, "raft node: %zu nodes, at most %d",
			 n->n_nodes, RAFT_MAX_NODES);
		rc = STATUS_INVALID_ARGUMENT;
		goto err_after_alloc;
	}
	n->rpc_timeout_ms = o->rpc_timeout_ms;
	if (!n->rpc_timeout_ms) {
		uint64_t emax = o->config.election_timeout_ms_max;
		n->rpc_timeout_ms = 2 * (emax ? emax : 600);
	}
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->idle, NULL);
	loop_timer_init(&n->tick, on_tick);
	n->start_ev.fn = on_start;
	n->stop_ev.fn = on_stop;
	n->kick_ev.fn = on_kick;

	for (size_t i = 0; i < n->n_nodes; i++) {
		n->ids[i] = o->config.nodes[i];
		if (n->ids[i] == o->config.id)
			continue;
		if (!o->addrs[i]) {
			snprintf(errmsg, cap, "raft node: no address for node %u",
				 n->ids[i]);
			rc = STATUS_INVALID_ARGUMENT;
			goto err_after_addrs;
		}
		n->addrs[i] = mem_strdup(o->addrs[i]);
		if (!n->addrs[i]) {
			snprintf(errmsg, cap, "raft node: out of memory");
			rc = STATUS_NO_MEMORY;
			goto err_after_addrs;
		}
	}

	rc = raft_replica_open(&o->config, o->store, o->fsm, o->fsm_ctx,
			       monotime_now_ms(), &n->rep, errmsg,
			       cap);
	if (rc)
		goto err_after_addrs;
	n->raft = raft_replica_raft(n->rep);
	raft_replica_set_compaction(n->rep, o->compaction_log_bytes_max);
	n->config = o->config;
	n->store = o->store;
	n->fsm = *o->fsm;
	n->fsm_ctx = o->fsm_ctx;
	n->compaction_log_bytes_max = o->compaction_log_bytes_max;

	for (int t = 0; t < REQ_COUNT_; t++) {
		enum raft_msg_type type = req_types[t];
		n->methods[t] = (struct method_ctx){n, t};
		rc = rpc_server_add_method(o->server, raft_msg_method(type),
					   raft_msg_descriptor(type),
					   on_request, &n->methods[t]);
		if (rc) {
			snprintf(errmsg, cap,
				 "raft node: cannot register %s: %s",
				 raft_msg_method(type), status_str(rc));
			goto err_after_replica;
		}
	}
	n->own_turn_hook = !o->external_turn_hook;
	if (n->own_turn_hook)
		loop_set_turn_hook(n->loop, turn_hook, n);
	atomic_store(&n->outstanding, 1);
	loop_post(n->loop, &n->start_ev);
	*out = n;
	return STATUS_OK;

err_after_replica:
	/* Methods already registered stay on the server, which must then
	 * be freed without starting. */
	raft_replica_free(n->rep);
err_after_addrs:
	for (size_t i = 0; i < n->n_nodes; i++)
		mem_free(n->addrs[i]);
	pthread_cond_destroy(&n->idle);
	pthread_mutex_destroy(&n->mu);
err_after_alloc:
	mem_free(n);
	return rc;
}

void raft_node_stop(struct raft_node *n)
{
	pthread_mutex_lock(&n->mu);
	if (!atomic_load(&n->stopping)) {
		atomic_store(&n->stopping, true);
		atomic_fetch_add(&n->outstanding, 1);
		loop_post(n->loop, &n->stop_ev);
	}
	pthread_mutex_unlock(&n->mu);
}

void raft_node_free(struct raft_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->mu);
	bool was_stopping = atomic_load(&n->stopping);
	atomic_store(&n->stopping, true);
	pthread_mutex_unlock(&n->mu);
	/* Not stopped before: the loop is no longer running (see the life
	 * cycle), so its side of the stop happens here. */
	if (!was_stopping)
		stop_here(n);
	pthread_mutex_lock(&n->mu);
	while (atomic_load(&n->outstanding) > 0)
		pthread_cond_wait(&n->idle, &n->mu);
	pthread_mutex_unlock(&n->mu);
	assert(n->stopped);
	fail_held(n);
	if (n->own_turn_hook) /* the loop is not running */
		loop_set_turn_hook(n->loop, NULL, NULL);
	raft_replica_free(n->rep);
	for (size_t i = 0; i < n->n_nodes; i++)
		mem_free(n->addrs[i]);
	pthread_cond_destroy(&n->idle);
	pthread_mutex_destroy(&n->mu);
	mem_free(n);
}

int raft_node_propose(struct raft_node *n, const void *data, size_t len,
		      uint64_t *index, uint64_t *term)
{
	if (n->stopped)
		return STATUS_SHUTDOWN;
	return raft_propose(n->raft, data, len, index, term);
}

int raft_node_read_index(struct raft_node *n, uint64_t id)
{
	if (n->stopped)
		return STATUS_SHUTDOWN;
	return raft_read_index(n->raft, id);
}

struct raft *raft_node_raft(struct raft_node *n)
{
	return n->raft;
}

struct raft_replica *raft_node_replica(struct raft_node *n)
{
	return n->rep;
}
