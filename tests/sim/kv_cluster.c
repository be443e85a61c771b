/*
 * kv_cluster: a shard master, replica groups and key/value clerks in the
 * simulator (kv_cluster.h).
 */
#include "tests/sim/kv_cluster.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/status.h"
#include "common/store/store.h"
#include "shardkv/service.h"
#include "shardmaster/sm.h"
#include "tests/sim/replica_host.h"

/*
 * Simulator message types besides Raft's (enum raft_msg_type). 16 and 17
 * are sm_cluster's: the shard-master replicas answer a request of type 16
 * from any endpoint with a reply of type 17.
 */
enum {
	MSG_SM_REQUEST = 16, /* u64 attempt | u32 sm_method | request */
	MSG_SM_REPLY = 17,   /* u64 attempt | SmReply */
	MSG_KV_REQUEST = 18, /* u64 attempt | u32 skv_method | request */
	MSG_KV_REPLY = 19,   /* u64 attempt | u32 skv_method | reply */
};

#define SERVER_ID0 10000u

/* ---- outgoing calls of one endpoint ---- */

/*
 * A call waiting for its reply. `attempt` goes on the wire and is unique
 * in the cluster (so a reply to a call made before a crash never matches
 * a call made after it); `id` is the caller's own (the service's call id
 * or the clerk core's attempt). A call whose reply has not come by
 * `deadline` is reported with `status` (TIMEOUT, or UNAVAILABLE for an
 * address nobody has).
 */
struct call {
	uint64_t attempt;
	uint64_t id;
	uint64_t deadline;
	const ProtobufCMessageDescriptor *reply;
	int status;
};

struct calls {
	struct call *v;
	size_t n, cap;
};

static void calls_add(struct calls *cs, const struct call *call)
{
	if (cs->n == cs->cap) {
		size_t cap = cs->cap ? cs->cap * 2 : 8;
		struct call *v = mem_realloc(cs->v, cap * sizeof(*v));
		if (!v)
			abort();
		cs->v = v;
		cs->cap = cap;
	}
	cs->v[cs->n++] = *call;
}

/* Removes the call of `attempt` into *out; false if none (late or
 * duplicated reply). Order is kept: the list is scanned in call order. */
static bool calls_take(struct calls *cs, uint64_t attempt, struct call *out)
{
	for (size_t i = 0; i < cs->n; i++) {
		if (cs->v[i].attempt != attempt)
			continue;
		*out = cs->v[i];
		memmove(&cs->v[i], &cs->v[i + 1],
			(cs->n - i - 1) * sizeof(*cs->v));
		cs->n--;
		return true;
	}
	return false;
}

/* The first call (in call order) due at `now`, removed into *out. */
static bool calls_take_due(struct calls *cs, uint64_t now, struct call *out)
{
	for (size_t i = 0; i < cs->n; i++)
		if (cs->v[i].deadline <= now)
			return calls_take(cs, cs->v[i].attempt, out);
	return false;
}

static uint64_t calls_next_deadline(const struct calls *cs)
{
	uint64_t w = UINT64_MAX;
	for (size_t i = 0; i < cs->n; i++)
		if (cs->v[i].deadline < w)
			w = cs->v[i].deadline;
	return w;
}

/* ---- keys written, for the checks at clerk answers ---- */

struct key_rec {
	struct buf key;
	bool written;	/* a Put or an Append started */
	bool appended;	/* an Append started */
	struct buf *puts; /* values of the Puts started */
	size_t n_puts, cap_puts;
};

/* ---- replicas, groups, clerks ---- */

struct group;

struct server {
	struct kv_cluster *c;
	struct group *g;
	size_t idx;
	uint32_t id;
	struct replica_host host;
	struct skv_service *svc; /* while the host is up */
	struct calls calls;
	uint64_t max_num; /* highest configuration number seen, ever */
	uint64_t checked; /* configuration number last compared */
};

struct group {
	uint64_t gid;
	char *names[KV_CLUSTER_REPLICAS];
	struct server srv[KV_CLUSTER_REPLICAS];
};

/* A clerk operation not finished yet. */
struct op {
	uint64_t op_id;
	enum clerk_kv_op kind;
	struct buf key, value;
	uint64_t call_ms;
	size_t lane; /* client = clerk + n_clerks * lane in the history */
};

struct clerk {
	struct kv_cluster *c;
	size_t k;
	uint32_t id;
	struct clerk_kv_core *core;
	struct calls calls;
	struct op *ops;
	size_t n_ops, cap_ops;
	/* kv_cluster_do: the operation it waits for, and its outcome. */
	uint64_t want;
	bool want_done;
	int want_status;
	struct buf want_out;
};

struct kv_cluster {
	struct sim *sim;
	struct kv_cluster_opts o;
	struct sm_cluster *sm;
	char *masters[3];
	struct group groups[KV_CLUSTER_GROUPS_MAX];
	struct clerk *clerks;
	uint64_t next_attempt;
	struct buf scratch;
	/* Per shard, per group: the configuration number it is served in
	 * by a leader during the current check (0 = not). */
	uint64_t *serving;
	uint32_t nshards;
	size_t peak_log; /* largest Raft log seen after an event */
	struct key_rec *keys;
	size_t n_keys, cap_keys;
	struct lin_history *lin;
	kv_cluster_done_fn on_done;
	void *on_done_arg;
	char failure[2048];
};

static void fail_v(struct kv_cluster *c, const char *fmt, va_list ap)
{
	if (c->failure[0])
		return;
	vsnprintf(c->failure, sizeof(c->failure), fmt, ap);
	sim_trace(c->sim, "FAILURE: %s", c->failure);
}

static void fail(struct kv_cluster *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct kv_cluster *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(c, fmt, ap);
	va_end(ap);
}

void kv_cluster_fail(struct kv_cluster *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(c, fmt, ap);
	va_end(ap);
}

const char *kv_cluster_failure(const struct kv_cluster *c)
{
	if (c->failure[0])
		return c->failure;
	return sm_cluster_failure(c->sm);
}

struct sm_cluster *kv_cluster_sm(struct kv_cluster *c)
{
	return c->sm;
}

uint64_t kv_cluster_gid(size_t g)
{
	return KV_CLUSTER_GID0 + g;
}

uint32_t kv_cluster_server_id(uint64_t gid, size_t i)
{
	return SERVER_ID0 + (uint32_t)gid * 10 + (uint32_t)i;
}

static struct group *group_of(struct kv_cluster *c, uint64_t gid)
{
	if (gid < KV_CLUSTER_GID0 || gid - KV_CLUSTER_GID0 >= c->o.n_groups)
		return NULL;
	return &c->groups[gid - KV_CLUSTER_GID0];
}

static const struct group *group_of_c(const struct kv_cluster *c,
				      uint64_t gid)
{
	return group_of((struct kv_cluster *)c, gid);
}

/* The endpoint serving `addr`, or 0. */
static uint32_t resolve(struct kv_cluster *c, const char *addr)
{
	unsigned sm;
	uint64_t gid;
	size_t i, port;
	int end = -1;
	if (sscanf(addr, "sm%u%n", &sm, &end) == 1 && addr[end] == '\0' &&
	    sm >= 1 && sm <= 3)
		return sm;
	end = -1;
	if (sscanf(addr, "g%" SCNu64 "-%zu:%zu%n", &gid, &i, &port, &end) ==
		    3 &&
	    end > 0 && addr[end] == '\0' && group_of(c, gid) &&
	    i < KV_CLUSTER_REPLICAS)
		return kv_cluster_server_id(gid, i);
	return 0;
}

static uint64_t now_ms(const struct kv_cluster *c)
{
	return sim_now_ms(c->sim);
}

/* Makes `call` (from endpoint `from`, kept in `cs`): sends "u64 attempt |
 * u32 method | bytes" as a message of `type` to endpoint `to`. With `to`
 * 0 (nobody has the address) it ends UNAVAILABLE at the next wake-up. */
static void call_send(struct kv_cluster *c, uint32_t from, struct calls *cs,
		      struct call *call, uint32_t to, uint32_t type,
		      uint32_t method, const void *bytes, size_t len)
{
	if (!to) {
		call->deadline = now_ms(c);
		call->status = STATUS_UNAVAILABLE;
		calls_add(cs, call);
		return;
	}
	calls_add(cs, call);
	struct buf out;
	buf_init(&out);
	if (buf_append_u64be(&out, call->attempt) ||
	    buf_append_u32be(&out, method) || buf_append(&out, bytes, len))
		abort();
	sim_send(c->sim, from, to, type, out.data, out.len);
	buf_free(&out);
}

/* ---- configurations: the shard master's, everywhere ---- */

/* A group replica's configuration must be the one the shard master made
 * under its number (sm_cluster keeps those, and checks its replicas never
 * fork): the master made it before anyone could learn it. */
static void check_config(struct kv_cluster *c, struct server *s,
			 const struct sm_config *cfg)
{
	Skv__Config pc;
	if (sm_config_to_proto(cfg, &pc) || codec_pack(&pc.base, &c->scratch))
		abort();
	sm_config_proto_release(&pc);
	const void *made;
	size_t len;
	if (!sm_cluster_config_made(c->sm, cfg->num, &made, &len))
		fail(c, "gid %" PRIu64 " replica %zu: configuration %" PRIu64
			" the shard master never made",
		     s->g->gid, s->idx, cfg->num);
	else if (len != c->scratch.len ||
		 memcmp(made, c->scratch.data, len) != 0)
		fail(c, "gid %" PRIu64 " replica %zu: configuration %" PRIu64
			" differs from the shard master's",
		     s->g->gid, s->idx, cfg->num);
}

static void check_server(struct kv_cluster *c, struct server *s)
{
	const struct skv *k = skv_service_state(s->svc);
	uint64_t num = skv_config_num(k);
	if (num < s->max_num) {
		fail(c, "gid %" PRIu64 " replica %zu: configuration went back "
			"from %" PRIu64 " to %" PRIu64,
		     s->g->gid, s->idx, s->max_num, num);
		return;
	}
	s->max_num = num;
	struct raft *r = replica_host_raft(&s->host);
	size_t log = raft_log_bytes(r);
	c->peak_log = log > c->peak_log ? log : c->peak_log;
	const struct sm_config *cfg = skv_config(k);
	if (!cfg)
		return;
	if (num != s->checked) {
		check_config(c, s, cfg);
		s->checked = num;
	}
	if (raft_role(r) != RAFT_LEADER)
		return;
	uint32_t n = skv_nshards(k);
	for (uint32_t sh = 0; sh < n && sh < c->nshards; sh++) {
		if (!skv_serves(k, sh))
			continue;
		if (cfg->shards[sh] != s->g->gid) {
			fail(c, "gid %" PRIu64 " replica %zu serves shard %u "
				"but configuration %" PRIu64 " gives it to "
				"%" PRIu64,
			     s->g->gid, s->idx, sh, num, cfg->shards[sh]);
			return;
		}
		uint64_t *row = &c->serving[sh * KV_CLUSTER_GROUPS_MAX];
		for (size_t g = 0; g < c->o.n_groups; g++) {
			if (&c->groups[g] == s->g || row[g] != num)
				continue;
			fail(c, "shard %u served by leaders of gid %" PRIu64
				" and gid %" PRIu64 " in configuration "
				"%" PRIu64,
			     sh, c->groups[g].gid, s->g->gid, num);
			return;
		}
		row[s->g - c->groups] = num;
	}
}

static void after_step(void *arg)
{
	struct kv_cluster *c = arg;
	sm_cluster_after_step(c->sm);
	if (c->failure[0])
		return;
	memset(c->serving, 0,
	       (size_t)c->nshards * KV_CLUSTER_GROUPS_MAX *
		       sizeof(*c->serving));
	for (size_t g = 0; g < c->o.n_groups; g++)
		for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
			struct server *s = &c->groups[g].srv[i];
			if (s->svc && replica_host_replica(&s->host))
				check_server(c, s);
		}
}

/* ---- replicas ---- */

static void srv_reply(void *arg, uint64_t token, const ProtobufCMessage *r)
{
	struct server *s = arg;
	struct kv_cluster *c = s->c;
	struct replica_host_request t;
	if (!replica_host_request_take(&s->host, token, &t)) {
		fail(c, "gid %" PRIu64 " replica %zu answered token %" PRIu64
			" twice or never issued",
		     s->g->gid, s->idx, token);
		return;
	}
	struct buf out;
	buf_init(&out);
	if (buf_append_u64be(&out, t.attempt) ||
	    buf_append_u32be(&out, t.method) || codec_pack_append(r, &out))
		abort();
	sim_send(c->sim, s->id, t.from, MSG_KV_REPLY, out.data, out.len);
	buf_free(&out);
}

static void srv_call(void *arg, uint64_t id, const char *addr,
		     enum skv_call kind, const uint8_t *bytes, size_t len,
		     uint64_t timeout_ms)
{
	struct server *s = arg;
	struct kv_cluster *c = s->c;
	uint64_t now = now_ms(c);
	struct call call = {
		.attempt = ++c->next_attempt, .id = id,
		.deadline = now + timeout_ms, .reply = skv_call_reply(kind),
		.status = STATUS_TIMEOUT,
	};
	uint32_t to = resolve(c, addr ? addr : "");
	uint32_t type, method;
	switch (kind) {
	case SKV_CALL_QUERY:
		type = MSG_SM_REQUEST;
		method = SM_METHOD_QUERY;
		break;
	case SKV_CALL_PULL_SHARD:
		type = MSG_KV_REQUEST;
		method = SKV_METHOD_PULL_SHARD;
		break;
	case SKV_CALL_DELETE_SHARD:
		type = MSG_KV_REQUEST;
		method = SKV_METHOD_DELETE_SHARD;
		break;
	default:
		to = 0;
		type = method = 0;
	}
	if (!to || !call.reply) {
		fail(c, "gid %" PRIu64 " replica %zu: call %d to unknown "
			"address '%s'",
		     s->g->gid, s->idx, (int)kind, addr ? addr : "(null)");
		to = 0;
	}
	call_send(c, s->id, &s->calls, &call, to, type, method, bytes, len);
}

/* A reply to one of the replica's calls (type 17 or 19). */
static void srv_call_reply(struct server *s, const uint8_t *p, size_t len,
			   size_t hdr)
{
	struct kv_cluster *c = s->c;
	struct call call;
	if (len < hdr || !calls_take(&s->calls, get_u64be(p), &call))
		return; /* late, duplicated, or from before a crash */
	ProtobufCMessage *m;
	if (codec_unpack(call.reply, p + hdr, len - hdr, &m)) {
		fail(c, "gid %" PRIu64 " replica %zu: undecodable reply",
		     s->g->gid, s->idx);
		return;
	}
	skv_service_call_done(s->svc, now_ms(c), call.id, STATUS_OK, m);
	codec_free(m);
}

/* ---- the hosted service (replica_host hooks) ---- */

static int srv_open(void *arg, struct store *store,
		    const struct raft_fsm_ops **fsm, void **fsm_ctx, char *err,
		    size_t cap)
{
	struct server *s = arg;
	struct kv_cluster *c = s->c;
	struct group *g = s->g;
	struct skv_service_opts svo = {
		.store = store, .gid = g->gid,
		.self_id = (uint32_t)s->idx + 1,
		.n_nodes = KV_CLUSTER_REPLICAS,
		.masters = (const char *const *)c->masters, .n_masters = 3,
		.seed = sim_rand(c->sim),
		.call_timeout_ms = c->o.call_timeout_ms,
		.pull_page_bytes = c->o.pull_page_bytes,
		.reply = srv_reply, .reply_arg = s,
		.call = srv_call, .call_arg = s,
	};
	for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++)
		svo.addrs[i] = g->names[i];
	int rc = skv_service_new(&svo, &s->svc, err, cap);
	*fsm = &skv_service_fsm;
	*fsm_ctx = s->svc;
	return rc;
}

static void srv_opened(void *arg, struct raft_replica *rep)
{
	struct server *s = arg;
	skv_service_attach(s->svc, raft_replica_raft(rep));
	s->checked = 0;
}

static void srv_close(void *arg)
{
	struct server *s = arg;
	/* A crash answers nobody: clerks and other groups time out. */
	skv_service_free(s->svc);
	s->svc = NULL;
	s->calls.n = 0;
}

static void srv_after_drain(void *arg, uint64_t now)
{
	struct server *s = arg;
	/* It may propose, answer and call: the host drains again. */
	skv_service_after_process(s->svc, now);
}

static void srv_on_message(void *arg, uint32_t from, uint32_t type,
			   const void *bytes, size_t len)
{
	struct server *s = arg;
	struct kv_cluster *c = s->c;
	const uint8_t *p = bytes;
	if (type == MSG_KV_REQUEST) {
		enum skv_method method =
			len >= 12 ? (enum skv_method)get_u32be(p + 8) : 0;
		ProtobufCMessage *m;
		if (!skv_method_request(method) ||
		    codec_unpack(skv_method_request(method), p + 12, len - 12,
				 &m)) {
			fail(c, "gid %" PRIu64 " replica %zu: bad request "
				"from %u",
			     s->g->gid, s->idx, from);
			return;
		}
		uint64_t token = replica_host_request_add(
			&s->host, from, get_u64be(p), method);
		skv_service_request(s->svc, now_ms(c), token, method, m);
		codec_free(m);
	} else if (type == MSG_SM_REPLY) {
		srv_call_reply(s, p, len, 8);
	} else if (type == MSG_KV_REPLY) {
		srv_call_reply(s, p, len, 12);
	} else {
		fail(c, "gid %" PRIu64 " replica %zu: message of type %u",
		     s->g->gid, s->idx, type);
	}
}

static void srv_on_tick(void *arg, uint64_t now)
{
	struct server *s = arg;
	struct call call;
	while (s->svc && calls_take_due(&s->calls, now, &call))
		skv_service_call_done(s->svc, now, call.id, call.status,
				      NULL);
	if (skv_service_wake_ms(s->svc) <= now)
		skv_service_tick(s->svc, now);
}

static uint64_t srv_wake_ms(void *arg)
{
	struct server *s = arg;
	uint64_t w = skv_service_wake_ms(s->svc);
	uint64_t cw = calls_next_deadline(&s->calls);
	return cw < w ? cw : w;
}

static void srv_fail(void *arg, const char *msg)
{
	struct server *s = arg;
	fail(s->c, "%s", msg);
}

static const struct replica_host_ops server_ops = {
	.open = srv_open,
	.opened = srv_opened,
	.close = srv_close,
	.after_drain = srv_after_drain,
	.on_message = srv_on_message,
	.on_tick = srv_on_tick,
	.wake_ms = srv_wake_ms,
	.fail = srv_fail,
};

static int srv_init(struct kv_cluster *c, struct group *g, size_t idx)
{
	struct server *s = &g->srv[idx];
	s->c = c;
	s->g = g;
	s->idx = idx;
	s->id = kv_cluster_server_id(g->gid, idx);
	char name[64];
	snprintf(name, sizeof(name), "gid %" PRIu64 " replica %zu", g->gid,
		 idx);
	struct replica_host_opts ho = {
		.id = s->id, .name = name,
		.raft = { .id = (uint32_t)idx + 1,
			  .n_nodes = KV_CLUSTER_REPLICAS },
		.compaction_log_bytes_max = c->o.maxlog,
		.ops = &server_ops, .arg = s,
	};
	for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
		ho.raft.nodes[i] = (uint32_t)(i + 1);
		ho.peers[i] = kv_cluster_server_id(g->gid, i);
	}
	return replica_host_init(&s->host, c->sim, &ho);
}

/* ---- the checks at clerk answers ---- */

static struct key_rec *key_find(struct kv_cluster *c, const void *key,
				size_t klen, bool add)
{
	for (size_t i = 0; i < c->n_keys; i++)
		if (c->keys[i].key.len == klen &&
		    memcmp(c->keys[i].key.data, key, klen) == 0)
			return &c->keys[i];
	if (!add)
		return NULL;
	if (c->n_keys == c->cap_keys) {
		size_t cap = c->cap_keys ? c->cap_keys * 2 : 64;
		struct key_rec *v = mem_realloc(c->keys, cap * sizeof(*v));
		if (!v)
			abort();
		c->keys = v;
		c->cap_keys = cap;
	}
	struct key_rec *r = &c->keys[c->n_keys++];
	memset(r, 0, sizeof(*r));
	buf_init(&r->key);
	if (buf_set(&r->key, key, klen))
		abort();
	return r;
}

static void key_started(struct kv_cluster *c, enum clerk_kv_op op,
			const void *key, size_t klen, const void *value,
			size_t vlen)
{
	if (op != CLERK_KV_PUT && op != CLERK_KV_APPEND)
		return;
	struct key_rec *r = key_find(c, key, klen, true);
	r->written = true;
	if (op == CLERK_KV_APPEND) {
		r->appended = true;
		return;
	}
	for (size_t i = 0; i < r->n_puts; i++)
		if (r->puts[i].len == vlen &&
		    (vlen == 0 || memcmp(r->puts[i].data, value, vlen) == 0))
			return;
	if (r->n_puts == r->cap_puts) {
		size_t cap = r->cap_puts ? r->cap_puts * 2 : 8;
		struct buf *v = mem_realloc(r->puts, cap * sizeof(*v));
		if (!v)
			abort();
		r->puts = v;
		r->cap_puts = cap;
	}
	buf_init(&r->puts[r->n_puts]);
	if (buf_set(&r->puts[r->n_puts], value, vlen))
		abort();
	r->n_puts++;
}

static void check_answer(struct kv_cluster *c, size_t k, const struct op *o,
			 const struct clerk_kv_result *res)
{
	char kb[64];
	lin_bytes_str(o->key.data, o->key.len, kb, sizeof(kb));
	bool ok = res->status == STATUS_OK || res->status == STATUS_TIMEOUT ||
		  (res->status == STATUS_NOT_FOUND &&
		   (o->kind == CLERK_KV_GET || o->kind == CLERK_KV_DELETE));
	if (!ok) {
		fail(c, "clerk %zu: op %d on %s ended with %s: %s", k,
		     (int)o->kind, kb, status_name(res->status), res->error);
		return;
	}
	if (res->status != STATUS_OK)
		return;
	if (o->kind != CLERK_KV_GET && o->kind != CLERK_KV_DELETE)
		return;
	const struct key_rec *r = key_find(c, o->key.data, o->key.len, false);
	if (!r || !r->written) {
		fail(c, "clerk %zu: %s of %s found a key never written", k,
		     o->kind == CLERK_KV_GET ? "get" : "delete", kb);
		return;
	}
	if (o->kind != CLERK_KV_GET || r->appended)
		return;
	for (size_t i = 0; i < r->n_puts; i++)
		if (r->puts[i].len == res->value_len &&
		    (res->value_len == 0 ||
		     memcmp(r->puts[i].data, res->value, res->value_len) == 0))
			return;
	char vb[64];
	lin_bytes_str(res->value, res->value_len, vb, sizeof(vb));
	fail(c, "clerk %zu: get of %s returned %s, a value never put", k, kb,
	     vb);
}

/* ---- clerks ---- */

static void clerk_record(struct clerk *ck, const struct op *o,
			 const struct clerk_kv_result *res)
{
	struct kv_cluster *c = ck->c;
	static const enum lin_kind kinds[] = {
		[CLERK_KV_GET] = LIN_GET, [CLERK_KV_PUT] = LIN_PUT,
		[CLERK_KV_APPEND] = LIN_APPEND, [CLERK_KV_DELETE] = LIN_DELETE,
	};
	struct lin_op lo = {
		.client = ck->k + c->o.n_clerks * o->lane,
		.kind = kinds[o->kind],
		.key = o->key.data, .klen = o->key.len,
		.value = o->value.data, .vlen = o->value.len,
		.known = res->status != STATUS_TIMEOUT,
		.found = res->status == STATUS_OK,
		.out = res->value, .outlen = res->value_len,
		.call = o->call_ms, .ret = now_ms(c),
	};
	if (o->kind == CLERK_KV_GET && !lo.known)
		return; /* a Get that never answered says nothing */
	if (lin_history_add(c->lin, &lo))
		fail(c, "clerk %zu: cannot record an operation", ck->k);
}

static void clerk_finish(struct clerk *ck, struct clerk_kv_result *res)
{
	struct kv_cluster *c = ck->c;
	size_t i = 0;
	while (i < ck->n_ops && ck->ops[i].op_id != res->op_id)
		i++;
	if (i == ck->n_ops) {
		fail(c, "clerk %zu: result for unknown op %" PRIu64, ck->k,
		     res->op_id);
		mem_free(res->value);
		return;
	}
	struct op o = ck->ops[i];
	memmove(&ck->ops[i], &ck->ops[i + 1],
		(ck->n_ops - i - 1) * sizeof(*ck->ops));
	ck->n_ops--;
	check_answer(c, ck->k, &o, res);
	clerk_record(ck, &o, res);
	if (ck->want == o.op_id) {
		ck->want_done = true;
		ck->want_status = res->status;
		if (buf_set(&ck->want_out, res->value, res->value_len))
			abort();
	}
	if (c->on_done) {
		struct kv_cluster_done d = {
			.clerk = ck->k, .op_id = o.op_id, .op = o.kind,
			.key = o.key.data, .klen = o.key.len,
			.value = o.value.data, .vlen = o.value.len,
			.status = res->status, .out = res->value,
			.outlen = res->value_len, .call_ms = o.call_ms,
			.ret_ms = now_ms(c),
		};
		c->on_done(c->on_done_arg, &d);
	}
	buf_free(&o.key);
	buf_free(&o.value);
	mem_free(res->value);
}

static void clerk_drive(struct clerk *ck)
{
	struct kv_cluster *c = ck->c;
	uint64_t now = now_ms(c);
	struct clerk_kv_send snd;
	while (clerk_kv_core_next_send(ck->core, now, &snd)) {
		struct call call = {
			.attempt = ++c->next_attempt, .id = snd.attempt,
			.deadline = now + (snd.timeout_ms ? snd.timeout_ms
							  : 1000),
			.reply = snd.to_master ? &skv__sm_reply__descriptor
					       : &skv__kv_reply__descriptor,
			.status = STATUS_TIMEOUT,
		};
		uint32_t to = resolve(c, snd.addr ? snd.addr : "");
		uint32_t type = MSG_KV_REQUEST, method = 0;
		if (snd.to_master) {
			type = MSG_SM_REQUEST;
			method = SM_METHOD_QUERY;
		} else {
			for (uint32_t m = 1; m <= SKV_METHOD_COUNT; m++)
				if (strcmp(snd.method,
					   skv_method_path(m)) == 0)
					method = m;
		}
		if (!to || !method) {
			fail(c, "clerk %zu: send of %s to unknown address "
				"'%s'",
			     ck->k, snd.method ? snd.method : "(null)",
			     snd.addr ? snd.addr : "(null)");
			to = 0;
		}
		call_send(c, ck->id, &ck->calls, &call, to, type, method,
			  snd.bytes, snd.len);
	}
	struct clerk_kv_result res;
	while (clerk_kv_core_take(ck->core, &res))
		clerk_finish(ck, &res);
	/* clerk_finish may have started operations (and driven again). */
	uint64_t w = clerk_kv_core_wake_ms(ck->core);
	uint64_t cw = calls_next_deadline(&ck->calls);
	w = cw < w ? cw : w;
	if (w != UINT64_MAX)
		sim_wake_at(c->sim, ck->id, w);
	else
		sim_wake_cancel(c->sim, ck->id);
}

static void clerk_on_message(void *ctx, uint32_t from, uint32_t type,
			     const void *bytes, size_t len)
{
	struct clerk *ck = ctx;
	struct kv_cluster *c = ck->c;
	const uint8_t *p = bytes;
	size_t hdr = type == MSG_SM_REPLY ? 8 : 12;
	if ((type != MSG_SM_REPLY && type != MSG_KV_REPLY) || len < hdr) {
		fail(c, "clerk %zu: bad message from %u", ck->k, from);
		return;
	}
	struct call call;
	if (!calls_take(&ck->calls, get_u64be(p), &call))
		return; /* late or duplicated */
	ProtobufCMessage *m;
	if (codec_unpack(call.reply, p + hdr, len - hdr, &m)) {
		fail(c, "clerk %zu: undecodable reply from %u", ck->k, from);
		return;
	}
	clerk_kv_core_on_reply(ck->core, now_ms(c), call.id, STATUS_OK, m);
	codec_free(m);
	clerk_drive(ck);
}

static void clerk_on_wake(void *ctx)
{
	struct clerk *ck = ctx;
	uint64_t now = now_ms(ck->c);
	struct call call;
	while (calls_take_due(&ck->calls, now, &call))
		clerk_kv_core_on_reply(ck->core, now, call.id, call.status,
				       NULL);
	if (clerk_kv_core_wake_ms(ck->core) <= now)
		clerk_kv_core_tick(ck->core, now);
	clerk_drive(ck);
}

static const struct sim_endpoint_ops clerk_ops = {
	.on_message = clerk_on_message,
	.on_wake = clerk_on_wake,
};

/* ---- life cycle ---- */

struct kv_cluster *kv_cluster_new(struct sim *sim,
				  const struct kv_cluster_opts *o)
{
	if (o->n_groups == 0 || o->n_groups > KV_CLUSTER_GROUPS_MAX)
		return NULL;
	struct kv_cluster *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->sim = sim;
	c->o = *o;
	c->nshards = o->nshards ? o->nshards : SM_SHARDS_DEFAULT;
	buf_init(&c->scratch);
	struct sm_cluster_opts smo = {
		.n_servers = 3, .n_clerks = 1, .nshards = o->nshards,
		.compaction_log_bytes_max = o->sm_maxlog,
	};
	c->sm = sm_cluster_new(sim, &smo);
	c->clerks = mem_calloc(o->n_clerks ? o->n_clerks : 1,
			       sizeof(*c->clerks));
	c->serving = mem_calloc((size_t)c->nshards * KV_CLUSTER_GROUPS_MAX,
				sizeof(*c->serving));
	c->lin = lin_history_new();
	if (!c->sm || !c->clerks || !c->serving || !c->lin) {
		kv_cluster_free(c);
		return NULL;
	}
	for (size_t i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof(name), "sm%zu", i + 1);
		c->masters[i] = mem_strdup(name);
	}
	for (size_t k = 0; k < o->n_clerks; k++) {
		struct clerk *ck = &c->clerks[k];
		ck->c = c;
		ck->k = k;
		ck->id = KV_CLUSTER_CLERK0 + (uint32_t)k;
		buf_init(&ck->want_out);
		struct clerk_kv_core_opts co = {
			.n_masters = 3,
			.masters = (const char *const *)c->masters,
			.seed = sim_rand(sim),
			.attempt_timeout_ms = o->clerk_attempt_timeout_ms,
		};
		if (clerk_kv_core_new(&co, &ck->core) ||
		    sim_endpoint_add(sim, ck->id, &clerk_ops, ck)) {
			kv_cluster_free(c);
			return NULL;
		}
	}
	sim_set_after_step(sim, after_step, c);
	for (size_t g = 0; g < o->n_groups; g++) {
		struct group *gr = &c->groups[g];
		gr->gid = kv_cluster_gid(g);
		for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
			char name[48];
			sm_cluster_server_name(gr->gid, i, name, sizeof(name));
			gr->names[i] = mem_strdup(name);
		}
		for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
			if (srv_init(c, gr, i)) {
				kv_cluster_free(c);
				return NULL;
			}
			replica_host_boot(&gr->srv[i].host);
		}
	}
	return c;
}

void kv_cluster_free(struct kv_cluster *c)
{
	if (!c)
		return;
	sim_set_after_step(c->sim, NULL, NULL);
	for (size_t g = 0; g < KV_CLUSTER_GROUPS_MAX; g++) {
		struct group *gr = &c->groups[g];
		for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
			struct server *s = &gr->srv[i];
			replica_host_fini(&s->host);
			mem_free(s->calls.v);
			mem_free(gr->names[i]);
		}
	}
	for (size_t k = 0; c->clerks && k < c->o.n_clerks; k++) {
		struct clerk *ck = &c->clerks[k];
		clerk_kv_core_free(ck->core);
		mem_free(ck->calls.v);
		for (size_t i = 0; i < ck->n_ops; i++) {
			buf_free(&ck->ops[i].key);
			buf_free(&ck->ops[i].value);
		}
		mem_free(ck->ops);
		buf_free(&ck->want_out);
	}
	mem_free(c->clerks);
	sm_cluster_free(c->sm);
	for (size_t i = 0; i < 3; i++)
		mem_free(c->masters[i]);
	for (size_t i = 0; i < c->n_keys; i++) {
		buf_free(&c->keys[i].key);
		for (size_t j = 0; j < c->keys[i].n_puts; j++)
			buf_free(&c->keys[i].puts[j]);
		mem_free(c->keys[i].puts);
	}
	mem_free(c->keys);
	lin_history_free(c->lin);
	mem_free(c->serving);
	buf_free(&c->scratch);
	mem_free(c);
}

/* ---- faults and observers ---- */

void kv_cluster_crash(struct kv_cluster *c, uint64_t gid, size_t i)
{
	sim_crash(c->sim, kv_cluster_server_id(gid, i));
}

void kv_cluster_restart(struct kv_cluster *c, uint64_t gid, size_t i)
{
	sim_restart(c->sim, kv_cluster_server_id(gid, i));
}

void kv_cluster_crash_group(struct kv_cluster *c, uint64_t gid)
{
	for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++)
		kv_cluster_crash(c, gid, i);
}

void kv_cluster_restart_group(struct kv_cluster *c, uint64_t gid)
{
	for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++)
		kv_cluster_restart(c, gid, i);
}

bool kv_cluster_up(const struct kv_cluster *c, uint64_t gid, size_t i)
{
	const struct group *g = group_of_c(c, gid);
	return g && i < KV_CLUSTER_REPLICAS &&
	       replica_host_replica(&g->srv[i].host);
}

void kv_cluster_isolate_group(struct kv_cluster *c, uint64_t gid)
{
	for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++)
		sim_isolate(c->sim, kv_cluster_server_id(gid, i));
}

void kv_cluster_connect_group(struct kv_cluster *c, uint64_t gid)
{
	for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++)
		sim_connect(c->sim, kv_cluster_server_id(gid, i));
}

const struct skv *kv_cluster_state(const struct kv_cluster *c, uint64_t gid,
				   size_t i)
{
	const struct group *g = group_of_c(c, gid);
	if (!g || i >= KV_CLUSTER_REPLICAS || !g->srv[i].svc)
		return NULL;
	return skv_service_state(g->srv[i].svc);
}

int kv_cluster_leader(const struct kv_cluster *c, uint64_t gid)
{
	const struct group *g = group_of_c(c, gid);
	int best = -1;
	uint64_t best_term = 0;
	for (size_t i = 0; g && i < KV_CLUSTER_REPLICAS; i++) {
		struct raft *r = replica_host_raft(&g->srv[i].host);
		if (r && raft_role(r) == RAFT_LEADER &&
		    raft_term(r) >= best_term) {
			best = (int)i;
			best_term = raft_term(r);
		}
	}
	return best;
}

/* An admin operation's outcome `rc`: a failure unless OK. */
static int admin_done(struct kv_cluster *c, int rc, const char *what,
		      const uint64_t *gids, size_t n)
{
	if (rc)
		fail(c, "%s of %zu groups (gid %" PRIu64 "...): %s", what, n,
		     gids[0], status_name(rc));
	return rc;
}

int kv_cluster_join(struct kv_cluster *c, const uint64_t *gids, size_t n)
{
	return admin_done(c, sm_cluster_join(c->sm, 0, gids, n), "join", gids,
			  n);
}

int kv_cluster_leave(struct kv_cluster *c, const uint64_t *gids, size_t n)
{
	return admin_done(c, sm_cluster_leave(c->sm, 0, gids, n), "leave",
			  gids, n);
}

uint64_t kv_cluster_sm_latest(const struct kv_cluster *c)
{
	uint64_t latest = 0;
	for (uint32_t id = 1; id <= 3; id++) {
		const struct sm *m = sm_cluster_sm(c->sm, id);
		if (m && sm_nshards(m) > 0 && sm_latest_num(m) > latest)
			latest = sm_latest_num(m);
	}
	return latest;
}

struct wait_config {
	struct kv_cluster *c;
	const uint64_t *gids;
	size_t n;
	uint64_t num;
};

static bool configs_reached(void *arg)
{
	struct wait_config *w = arg;
	if (kv_cluster_failure(w->c))
		return true;
	for (size_t j = 0; j < w->n; j++)
		for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
			const struct skv *k =
				kv_cluster_state(w->c, w->gids[j], i);
			if (k && (skv_config_num(k) < w->num || !skv_stable(k)))
				return false;
		}
	return true;
}

bool kv_cluster_wait_config(struct kv_cluster *c, const uint64_t *gids,
			    size_t n, uint64_t num, uint64_t deadline_ms)
{
	struct wait_config w = { c, gids, n, num };
	return sim_run_until(c->sim, configs_reached, &w, deadline_ms) &&
	       !kv_cluster_failure(c);
}

uint64_t kv_cluster_stored_bytes(struct kv_cluster *c)
{
	static const enum store_cf cfs[] = { STORE_CF_RAFT, STORE_CF_DATA,
					     STORE_CF_META };
	uint64_t total = 0;
	for (size_t g = 0; g < c->o.n_groups; g++)
		for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
			struct store *st =
				replica_host_store(&c->groups[g].srv[i].host);
			if (!st)
				continue;
			for (size_t f = 0; f < 3; f++) {
				struct store_iter *it = store_iter_new(
					st, cfs[f], NULL, 0, NULL);
				if (!it)
					abort();
				for (; store_iter_valid(it);
				     store_iter_next(it)) {
					size_t kl, vl;
					store_iter_key(it, &kl);
					store_iter_value(it, &vl);
					total += kl + vl;
				}
				if (store_iter_status(it))
					fail(c, "gid %" PRIu64 " replica %zu: "
						"store iteration failed",
					     c->groups[g].gid, i);
				store_iter_free(it);
			}
		}
	return total;
}

size_t kv_cluster_max_log_bytes(struct kv_cluster *c)
{
	size_t max = 0;
	for (size_t g = 0; g < c->o.n_groups; g++)
		for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
			struct raft *r =
				replica_host_raft(&c->groups[g].srv[i].host);
			if (!r)
				continue;
			size_t b = raft_log_bytes(r);
			max = b > max ? b : max;
		}
	return max;
}

size_t kv_cluster_peak_log_bytes(const struct kv_cluster *c)
{
	return c->peak_log;
}

/* ---- clerk operations ---- */

int kv_cluster_start(struct kv_cluster *c, size_t k, enum clerk_kv_op op,
		     const void *key, size_t klen, const void *value,
		     size_t vlen, uint64_t timeout_ms, uint64_t *op_id)
{
	struct clerk *ck = &c->clerks[k];
	uint64_t now = now_ms(c), id;
	int rc = clerk_kv_core_start(ck->core, now, op, key, klen, value,
				     vlen, now + timeout_ms, &id);
	if (rc)
		return rc;
	if (ck->n_ops == ck->cap_ops) {
		size_t cap = ck->cap_ops ? ck->cap_ops * 2 : 8;
		struct op *v = mem_realloc(ck->ops, cap * sizeof(*v));
		if (!v)
			abort();
		ck->ops = v;
		ck->cap_ops = cap;
	}
	/* The lowest lane no running operation of this clerk uses. */
	size_t lane = 0;
	for (bool used = true; used; lane += used) {
		used = false;
		for (size_t i = 0; i < ck->n_ops; i++)
			used |= ck->ops[i].lane == lane;
	}
	struct op *o = &ck->ops[ck->n_ops++];
	*o = (struct op){ .op_id = id, .kind = op, .call_ms = now,
			  .lane = lane };
	buf_init(&o->key);
	buf_init(&o->value);
	bool has_value = op == CLERK_KV_PUT || op == CLERK_KV_APPEND;
	if (buf_set(&o->key, key, klen) ||
	    (has_value && buf_set(&o->value, value, vlen)))
		abort();
	key_started(c, op, key, klen, value, vlen);
	if (op_id)
		*op_id = id;
	clerk_drive(ck);
	return STATUS_OK;
}

size_t kv_cluster_running(const struct kv_cluster *c, size_t k)
{
	return c->clerks[k].n_ops;
}

static bool all_idle(void *arg)
{
	struct kv_cluster *c = arg;
	if (kv_cluster_failure(c))
		return true;
	for (size_t k = 0; k < c->o.n_clerks; k++)
		if (c->clerks[k].n_ops)
			return false;
	return true;
}

bool kv_cluster_wait_idle(struct kv_cluster *c, uint64_t deadline_ms)
{
	return sim_run_until(c->sim, all_idle, c, deadline_ms) &&
	       !kv_cluster_failure(c);
}

void kv_cluster_set_on_done(struct kv_cluster *c, kv_cluster_done_fn fn,
			    void *arg)
{
	c->on_done = fn;
	c->on_done_arg = arg;
}

static bool want_done(void *arg)
{
	struct clerk *ck = arg;
	return ck->want_done || kv_cluster_failure(ck->c);
}

int kv_cluster_do(struct kv_cluster *c, size_t k, enum clerk_kv_op op,
		  const void *key, size_t klen, const void *value, size_t vlen,
		  uint64_t timeout_ms, struct buf *out)
{
	struct clerk *ck = &c->clerks[k];
	uint64_t id;
	ck->want_done = false;
	ck->want = 0;
	int rc = kv_cluster_start(c, k, op, key, klen, value, vlen,
				  timeout_ms, &id);
	if (rc)
		return rc;
	/* It may have ended inside the start (clerk_drive). */
	ck->want = id;
	if (!ck->want_done) {
		/* Ended by its deadline at the latest, says the core. */
		uint64_t end = now_ms(c) + timeout_ms + 1000;
		if (!sim_run_until(c->sim, want_done, ck, end)) {
			fail(c, "clerk %zu: op %" PRIu64 " still running "
				"past its deadline",
			     k, id);
			return STATUS_INTERNAL;
		}
	}
	if (!ck->want_done)
		return STATUS_INTERNAL;
	ck->want = 0;
	if (out && ck->want_status == STATUS_OK &&
	    buf_set(out, ck->want_out.data, ck->want_out.len))
		abort();
	return ck->want_status;
}

int kv_cluster_put(struct kv_cluster *c, size_t k, const char *key,
		   const char *value)
{
	return kv_cluster_do(c, k, CLERK_KV_PUT, key, strlen(key), value,
			     strlen(value), 60000, NULL);
}

int kv_cluster_append(struct kv_cluster *c, size_t k, const char *key,
		      const char *value)
{
	return kv_cluster_do(c, k, CLERK_KV_APPEND, key, strlen(key), value,
			     strlen(value), 60000, NULL);
}

int kv_cluster_get(struct kv_cluster *c, size_t k, const char *key,
		   char **value)
{
	struct buf out;
	buf_init(&out);
	*value = NULL;
	int rc = kv_cluster_do(c, k, CLERK_KV_GET, key, strlen(key), NULL, 0,
			       60000, &out);
	if (rc == STATUS_OK) {
		*value = mem_alloc(out.len + 1);
		if (!*value)
			abort();
		if (out.len)
			memcpy(*value, out.data, out.len);
		(*value)[out.len] = '\0';
	}
	buf_free(&out);
	return rc;
}

const struct lin_history *kv_cluster_history(const struct kv_cluster *c)
{
	return c->lin;
}

enum lin_result kv_cluster_check_history(struct kv_cluster *c,
					 struct lin_report *r)
{
	struct lin_report own;
	struct lin_report *rep = r ? r : &own;
	enum lin_result res = lin_check(c->lin, NULL, rep);
	if (res == LIN_ILLEGAL)
		fail(c, "history of %zu ops is not linearizable: %s",
		     lin_history_len(c->lin),
		     rep->explain ? rep->explain : "(no explanation)");
	if (!r)
		lin_report_free(&own);
	return res;
}

/* ---- trace ---- */

void kv_cluster_format(void *arg, uint32_t type, const void *bytes,
		       size_t len, char *out, size_t cap)
{
	const uint8_t *p = bytes;
	if (type != MSG_KV_REQUEST && type != MSG_KV_REPLY) {
		sm_cluster_format(arg, type, bytes, len, out, cap);
		return;
	}
	if (len < 12) {
		snprintf(out, cap, "type %u (short)", type);
		return;
	}
	enum skv_method m = (enum skv_method)get_u32be(p + 8);
	const ProtobufCMessageDescriptor *d = type == MSG_KV_REQUEST
						      ? skv_method_request(m)
						      : skv_method_reply(m);
	ProtobufCMessage *msg;
	if (!d || codec_unpack(d, p + 12, len - 12, &msg)) {
		snprintf(out, cap, "%s %s (undecodable)", skv_method_name(m),
			 type == MSG_KV_REQUEST ? "request" : "reply");
		return;
	}
	char kb[48];
	if (type == MSG_KV_REQUEST) {
		if (m <= SKV_METHOD_DELETE) {
			const Skv__KvRequest *q = (const Skv__KvRequest *)msg;
			snprintf(out, cap,
				 "%s attempt=%" PRIu64 " key=%s seq=%" PRIu64,
				 skv_method_name(m), get_u64be(p),
				 lin_bytes_str(q->key.data, q->key.len, kb,
					       sizeof(kb)),
				 q->seq);
		} else if (m == SKV_METHOD_PULL_SHARD) {
			const Skv__PullShardRequest *q =
				(const Skv__PullShardRequest *)msg;
			snprintf(out, cap,
				 "pull_shard attempt=%" PRIu64
				 " config=%" PRIu64 " shard=%u gid=%" PRIu64,
				 get_u64be(p), q->config_num, q->shard, q->gid);
		} else {
			const Skv__DeleteShardRequest *q =
				(const Skv__DeleteShardRequest *)msg;
			snprintf(out, cap,
				 "delete_shard attempt=%" PRIu64
				 " config=%" PRIu64 " shard=%u gid=%" PRIu64,
				 get_u64be(p), q->config_num, q->shard, q->gid);
		}
	} else {
		int st;
		char more[48] = "";
		if (m <= SKV_METHOD_DELETE) {
			st = ((const Skv__KvReply *)msg)->status;
		} else if (m == SKV_METHOD_PULL_SHARD) {
			const Skv__PullShardReply *r =
				(const Skv__PullShardReply *)msg;
			st = r->status;
			snprintf(more, sizeof(more), " keys=%zu dedup=%zu%s",
				 r->n_data, r->n_dedup, r->more ? " more" : "");
		} else {
			st = ((const Skv__DeleteShardReply *)msg)->status;
		}
		snprintf(out, cap, "%s reply attempt=%" PRIu64 " %s%s",
			 skv_method_name(m), get_u64be(p), status_name(st),
			 more);
	}
	codec_free(msg);
}
