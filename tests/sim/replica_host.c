/*
 * replica_host: one simulated machine running a Raft replica
 * (replica_host.h).
 */
#include "tests/sim/replica_host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/codec.h"
#include "common/mem.h"
#include "common/raft/storage.h"
#include "common/status.h"

/* Drain passes (each until no ready is left) in one event at most: the
 * service reacting to a drain may make new readies, but not forever. */
#define PASSES_MAX 64

static void host_fail(struct replica_host *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void host_fail(struct replica_host *h, const char *fmt, ...)
{
	char what[384], msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s: %s", h->name, what);
	h->o.ops->fail(h->o.arg, msg);
}

static uint64_t now_ms(const struct replica_host *h)
{
	return sim_now_ms(h->sim);
}

static void host_send(void *arg, struct raft_msg *m)
{
	struct replica_host *h = arg;
	if (m->to < 1 || m->to > h->o.raft.n_nodes) {
		host_fail(h, "Raft message to %u", m->to);
		return;
	}
	sim_send(h->sim, h->o.id, h->o.peers[m->to - 1], m->type,
		 m->bytes.data, m->bytes.len);
}

/* Processes until no ready is left. STATUS_OK, or the replica's error
 * (or STATUS_INTERNAL when readies never stop coming) with *why. */
static int drain(struct replica_host *h, const char **why)
{
	struct raft_replica_stats st;
	uint64_t before;
	int rounds = 0;
	do {
		raft_replica_stats(h->rep, &st);
		before = st.readies;
		int rc = raft_replica_process(h->rep, now_ms(h), host_send, h);
		if (rc) {
			*why = raft_replica_errmsg(h->rep);
			return rc;
		}
		raft_replica_stats(h->rep, &st);
		if (++rounds > 10000) {
			*why = "ready never settles";
			return STATUS_INTERNAL;
		}
	} while (st.readies != before);
	return STATUS_OK;
}

static void schedule(struct replica_host *h)
{
	uint64_t w = raft_next_tick_ms(raft_replica_raft(h->rep));
	if (h->o.ops->wake_ms) {
		uint64_t sw = h->o.ops->wake_ms(h->o.arg);
		w = sw < w ? sw : w;
	}
	sim_wake_at(h->sim, h->o.id, w);
}

void replica_host_process(struct replica_host *h)
{
	const struct replica_host_ops *ops = h->o.ops;
	for (int pass = 0; pass < PASSES_MAX && h->rep; pass++) {
		struct raft_replica_stats st;
		raft_replica_stats(h->rep, &st);
		uint64_t before = st.readies;
		const char *why;
		if (drain(h, &why)) {
			host_fail(h, "%s", why);
			return;
		}
		raft_replica_stats(h->rep, &st);
		if ((pass > 0 && st.readies == before) || !ops->after_drain)
			break;
		ops->after_drain(h->o.arg, now_ms(h));
	}
	if (h->rep)
		schedule(h);
}

void replica_host_boot(struct replica_host *h)
{
	const struct replica_host_ops *ops = h->o.ops;
	char err[256];
	struct store_opts so = { .path = "/replica", .create_if_missing = true,
				 .memenv = h->env,
				 .block_cache_bytes = 1 << 20 };
	if (store_open(&so, &h->store, err, sizeof(err))) {
		host_fail(h, "store: %s", err);
		return;
	}
	/* Before the service loads from the store. */
	if (raft_storage_recover(h->store, err, sizeof(err))) {
		host_fail(h, "recovery: %s", err);
		store_close(h->store);
		h->store = NULL;
		return;
	}
	const struct raft_fsm_ops *fsm;
	void *fsm_ctx;
	if (ops->open(h->o.arg, h->store, &fsm, &fsm_ctx, err, sizeof(err))) {
		host_fail(h, "service: %s", err);
		store_close(h->store);
		h->store = NULL;
		return;
	}
	struct raft_config cfg = h->o.raft;
	cfg.seed = sim_rand(h->sim);
	if (raft_replica_open(&cfg, h->store, fsm, fsm_ctx, now_ms(h), &h->rep,
			      err, sizeof(err))) {
		host_fail(h, "does not boot: %s", err);
		if (ops->close)
			ops->close(h->o.arg);
		store_close(h->store);
		h->store = NULL;
		return;
	}
	raft_replica_set_compaction(h->rep, h->o.compaction_log_bytes_max);
	if (ops->opened)
		ops->opened(h->o.arg, h->rep);
	replica_host_process(h);
}

/* A crash answers nobody: askers time out and retry. */
static void host_down(struct replica_host *h)
{
	if (h->rep && h->o.ops->close)
		h->o.ops->close(h->o.arg);
	raft_replica_free(h->rep);
	h->rep = NULL;
	store_close(h->store);
	h->store = NULL;
	h->n_reqs = 0;
}

/* ---- endpoint callbacks ---- */

static void on_message(void *ctx, uint32_t from, uint32_t type,
		       const void *bytes, size_t len)
{
	struct replica_host *h = ctx;
	if (!h->rep)
		return;
	if (type <= RAFT_MSG_SNAPSHOT_REPLY) {
		ProtobufCMessage *m;
		if (codec_unpack(raft_msg_descriptor(type), bytes, len, &m)) {
			host_fail(h, "undecodable Raft message from %u", from);
			return;
		}
		raft_step(raft_replica_raft(h->rep), now_ms(h), m);
		codec_free(m);
	} else if (h->o.ops->on_message) {
		h->o.ops->on_message(h->o.arg, from, type, bytes, len);
	} else {
		host_fail(h, "message of type %u from %u", type, from);
		return;
	}
	replica_host_process(h);
}

static void on_wake(void *ctx)
{
	struct replica_host *h = ctx;
	if (!h->rep)
		return;
	raft_tick(raft_replica_raft(h->rep), now_ms(h));
	if (h->o.ops->on_tick)
		h->o.ops->on_tick(h->o.arg, now_ms(h));
	replica_host_process(h);
}

static void on_crash(void *ctx)
{
	host_down(ctx);
}

static void on_restart(void *ctx)
{
	replica_host_boot(ctx);
}

static const struct sim_endpoint_ops host_ops = {
	.on_message = on_message,
	.on_wake = on_wake,
	.on_crash = on_crash,
	.on_restart = on_restart,
};

/* ---- life cycle ---- */

int replica_host_init(struct replica_host *h, struct sim *sim,
		      const struct replica_host_opts *o)
{
	*h = (struct replica_host){ .sim = sim, .o = *o };
	snprintf(h->name, sizeof(h->name), "%s", o->name ? o->name : "");
	h->o.name = h->name;
	h->env = store_memenv_new();
	if (!h->env)
		return STATUS_NO_MEMORY;
	return sim_endpoint_add(sim, o->id, &host_ops, h);
}

void replica_host_fini(struct replica_host *h)
{
	host_down(h);
	mem_free(h->reqs);
	h->reqs = NULL;
	h->cap_reqs = 0;
	store_memenv_free(h->env);
	h->env = NULL;
}

struct raft_replica *replica_host_replica(const struct replica_host *h)
{
	return h->rep;
}

struct raft *replica_host_raft(const struct replica_host *h)
{
	return h->rep ? raft_replica_raft(h->rep) : NULL;
}

struct store *replica_host_store(const struct replica_host *h)
{
	return h->store;
}

/* ---- requests in flight ---- */

uint64_t replica_host_request_add(struct replica_host *h, uint32_t from,
				  uint64_t attempt, uint32_t method)
{
	if (h->n_reqs == h->cap_reqs) {
		size_t cap = h->cap_reqs ? h->cap_reqs * 2 : 16;
		struct replica_host_request *v =
			mem_realloc(h->reqs, cap * sizeof(*v));
		if (!v)
			abort(); /* a test harness out of memory */
		h->reqs = v;
		h->cap_reqs = cap;
	}
	uint64_t token = ++h->next_token;
	h->reqs[h->n_reqs++] = (struct replica_host_request){
		.token = token, .from = from, .attempt = attempt,
		.method = method,
	};
	return token;
}

bool replica_host_request_take(struct replica_host *h, uint64_t token,
			       struct replica_host_request *out)
{
	for (size_t i = 0; i < h->n_reqs; i++) {
		if (h->reqs[i].token != token)
			continue;
		*out = h->reqs[i];
		h->reqs[i] = h->reqs[--h->n_reqs];
		return true;
	}
	return false;
}
