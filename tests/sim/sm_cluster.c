/*
 * sm_cluster: shard-master replicas and clerks in the simulator
 * (sm_cluster.h).
 */
#include "tests/sim/sm_cluster.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clerk/sm_core.h"
#include "common/buf.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/status.h"
#include "shardmaster/service.h"
#include "tests/sim/raft_cluster.h" /* raft_cluster_format */
#include "tests/sim/replica_host.h"

/* Simulator message types besides Raft's (enum raft_msg_type). */
enum {
	MSG_REQUEST = 16, /* u64 attempt | u32 method | request */
	MSG_REPLY = 17,	  /* u64 attempt | SmReply */
};

struct server {
	struct sm_cluster *c;
	uint32_t id;
	struct replica_host host;
	struct sm_service *svc; /* while the host is up */
	uint64_t max_latest; /* highest latest config seen on it */
	uint64_t checked;    /* configs 1..checked compared with history */
};

struct clerk {
	struct sm_cluster *c;
	uint32_t id;
	struct clerk_sm_core *core;
	bool busy;
	int status;
	Skv__Config *config; /* of the last reply, owned */
	char error[256];
	/* A query for the latest configuration must see at least the
	 * newest one acknowledged before it started (linearizable). */
	bool latest_query;
	uint64_t floor;
};

struct sm_cluster {
	struct sim *sim;
	struct sm_cluster_opts o;
	struct server *srv;
	struct clerk *clerks;
	char *names[RAFT_MAX_NODES]; /* "sm1".. */
	struct buf *hist;	     /* packed config n, as first seen */
	size_t cap_hist;
	struct buf scratch;
	uint64_t acked; /* newest configuration a clerk was told about */
	char failure[512];
};

static void fail(struct sm_cluster *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct sm_cluster *c, const char *fmt, ...)
{
	if (c->failure[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->failure, sizeof(c->failure), fmt, ap);
	va_end(ap);
	sim_trace(c->sim, "FAILURE: %s", c->failure);
}

const char *sm_cluster_failure(const struct sm_cluster *c)
{
	return c->failure[0] ? c->failure : NULL;
}

/* ---- configuration history: never forks ---- */

static struct buf *hist_at(struct sm_cluster *c, uint64_t num)
{
	if (num >= c->cap_hist) {
		size_t cap = c->cap_hist ? c->cap_hist : 64;
		while (cap <= num)
			cap *= 2;
		struct buf *h = mem_realloc(c->hist, cap * sizeof(*h));
		if (!h)
			abort();
		for (size_t i = c->cap_hist; i < cap; i++)
			buf_init(&h[i]);
		c->hist = h;
		c->cap_hist = cap;
	}
	return &c->hist[num];
}

/* Compares packed configuration bytes with the history of `num`,
 * recording them if they are the first. */
static void check_history(struct sm_cluster *c, uint64_t num,
			  const void *bytes, size_t len, const char *who)
{
	struct buf *h = hist_at(c, num);
	if (h->len == 0) {
		if (buf_set(h, bytes, len))
			abort();
		return;
	}
	if (h->len != len || memcmp(h->data, bytes, len) != 0)
		fail(c, "%s: configuration %" PRIu64 " differs from the one "
			"another replica made",
		     who, num);
}

bool sm_cluster_config_made(const struct sm_cluster *c, uint64_t num,
			    const void **bytes, size_t *len)
{
	if (num >= c->cap_hist || c->hist[num].len == 0)
		return false;
	*bytes = c->hist[num].data;
	*len = c->hist[num].len;
	return true;
}

static void check_server(struct sm_cluster *c, struct server *s)
{
	if (!s->svc)
		return;
	const struct sm *m = sm_service_sm(s->svc);
	if (sm_nshards(m) == 0)
		return;
	uint64_t latest = sm_latest_num(m);
	if (latest < s->max_latest) {
		fail(c, "replica %u: latest configuration went back from "
			"%" PRIu64 " to %" PRIu64,
		     s->id, s->max_latest, latest);
		return;
	}
	s->max_latest = latest;
	char who[32];
	snprintf(who, sizeof(who), "replica %u", s->id);
	for (uint64_t n = s->checked; n <= latest; n++) {
		Skv__Config pc;
		if (sm_config_to_proto(sm_config(m, (int64_t)n), &pc) ||
		    codec_pack(&pc.base, &c->scratch))
			abort();
		sm_config_proto_release(&pc);
		check_history(c, n, c->scratch.data, c->scratch.len, who);
	}
	s->checked = latest + 1;
}

void sm_cluster_after_step(void *arg)
{
	struct sm_cluster *c = arg;
	for (size_t i = 0; i < c->o.n_servers; i++)
		check_server(c, &c->srv[i]);
}

/* ---- replicas ---- */

static void srv_reply(void *arg, uint64_t token, const Skv__SmReply *r)
{
	struct server *s = arg;
	struct sm_cluster *c = s->c;
	struct replica_host_request t;
	if (!replica_host_request_take(&s->host, token, &t)) {
		fail(c, "replica %u answered token %" PRIu64 " twice or "
			"never issued",
		     s->id, token);
		return;
	}
	struct buf out;
	buf_init(&out);
	if (buf_append_u64be(&out, t.attempt) ||
	    codec_pack_append(&r->base, &out))
		abort();
	sim_send(c->sim, s->id, t.from, MSG_REPLY, out.data, out.len);
	buf_free(&out);
}

/* ---- the hosted service (replica_host hooks) ---- */

static int srv_open(void *arg, struct store *store,
		    const struct raft_fsm_ops **fsm, void **fsm_ctx, char *err,
		    size_t cap)
{
	struct server *s = arg;
	struct sm_cluster *c = s->c;
	struct sm_service_opts svo = {
		.store = store, .self_id = s->id,
		.n_nodes = c->o.n_servers, .nshards = c->o.nshards,
		.reply = srv_reply, .reply_arg = s,
	};
	for (size_t i = 0; i < c->o.n_servers; i++)
		svo.addrs[i] = c->names[i];
	int rc = sm_service_new(&svo, &s->svc, err, cap);
	*fsm = &sm_service_fsm;
	*fsm_ctx = s->svc;
	return rc;
}

static void srv_opened(void *arg, struct raft_replica *rep)
{
	struct server *s = arg;
	sm_service_attach(s->svc, raft_replica_raft(rep));
	s->checked = 0;
}

static void srv_close(void *arg)
{
	struct server *s = arg;
	sm_service_free(s->svc);
	s->svc = NULL;
}

static void srv_after_drain(void *arg, uint64_t now_ms)
{
	struct server *s = arg;
	(void)now_ms;
	/* May answer requests or propose Init: the host drains again. */
	sm_service_after_process(s->svc);
}

static void srv_on_message(void *arg, uint32_t from, uint32_t type,
			   const void *bytes, size_t len)
{
	struct server *s = arg;
	const uint8_t *p = bytes;
	enum sm_method method = len >= 12 ? (enum sm_method)get_u32be(p + 8)
					  : 0;
	ProtobufCMessage *m;
	if (type != MSG_REQUEST || !sm_method_request(method) ||
	    codec_unpack(sm_method_request(method), p + 12, len - 12, &m)) {
		fail(s->c, "replica %u: bad request from %u", s->id, from);
		return;
	}
	uint64_t token = replica_host_request_add(&s->host, from,
						  get_u64be(p), method);
	sm_service_request(s->svc, token, method, m);
	codec_free(m);
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
	.fail = srv_fail,
};

static int srv_init(struct sm_cluster *c, struct server *s, uint32_t id)
{
	s->c = c;
	s->id = id;
	char name[32];
	snprintf(name, sizeof(name), "replica %u", id);
	struct replica_host_opts ho = {
		.id = id, .name = name,
		.raft = { .id = id, .n_nodes = c->o.n_servers },
		.compaction_log_bytes_max = c->o.compaction_log_bytes_max,
		.ops = &server_ops, .arg = s,
	};
	for (size_t i = 0; i < c->o.n_servers; i++)
		ho.raft.nodes[i] = ho.peers[i] = (uint32_t)(i + 1);
	return replica_host_init(&s->host, c->sim, &ho);
}

/* ---- clerks ---- */

static void clerk_finish(struct clerk *k)
{
	struct sm_cluster *c = k->c;
	const Skv__SmReply *rep;
	const char *err;
	if (!clerk_sm_core_done(k->core, &k->status, &rep, &err))
		return;
	k->busy = false;
	snprintf(k->error, sizeof(k->error), "%s", err ? err : "");
	sm_cluster_config_free(k->config);
	k->config = NULL;
	if (!rep || !rep->config)
		return;
	if (codec_pack(&rep->config->base, &c->scratch) ||
	    codec_unpack(&skv__config__descriptor, c->scratch.data,
			 c->scratch.len, (ProtobufCMessage **)&k->config))
		abort();
	char who[32];
	snprintf(who, sizeof(who), "clerk %u", k->id);
	check_history(c, rep->config->num, c->scratch.data, c->scratch.len,
		      who);
	if (k->status != STATUS_OK)
		return;
	if (k->latest_query && rep->config->num < k->floor)
		fail(c, "clerk %u: stale read: query of the latest "
			"configuration returned %" PRIu64 ", but %" PRIu64
			" was acknowledged before it started",
		     k->id, rep->config->num, k->floor);
	if (rep->config->num > c->acked)
		c->acked = rep->config->num;
}

static void clerk_drive(struct clerk *k)
{
	struct sm_cluster *c = k->c;
	uint64_t now = sim_now_ms(c->sim);
	struct clerk_sm_send snd;
	while (clerk_sm_core_next_send(k->core, now, &snd)) {
		struct buf out;
		buf_init(&out);
		if (buf_append_u64be(&out, snd.attempt) ||
		    buf_append_u32be(&out, (uint32_t)snd.method) ||
		    buf_append(&out, snd.bytes, snd.len))
			abort();
		sim_send(c->sim, k->id, (uint32_t)snd.server + 1, MSG_REQUEST,
			 out.data, out.len);
		buf_free(&out);
	}
	if (k->busy)
		clerk_finish(k);
	uint64_t w = clerk_sm_core_wake_ms(k->core);
	if (w != UINT64_MAX)
		sim_wake_at(c->sim, k->id, w);
	else
		sim_wake_cancel(c->sim, k->id);
}

static void clerk_on_message(void *ctx, uint32_t from, uint32_t type,
			     const void *bytes, size_t len)
{
	struct clerk *k = ctx;
	ProtobufCMessage *m;
	if (type != MSG_REPLY || len < 8 ||
	    codec_unpack(&skv__sm_reply__descriptor, (const uint8_t *)bytes + 8,
			 len - 8, &m)) {
		fail(k->c, "clerk %u: bad reply from %u", k->id, from);
		return;
	}
	clerk_sm_core_on_reply(k->core, sim_now_ms(k->c->sim),
			       get_u64be(bytes), STATUS_OK,
			       (const Skv__SmReply *)m);
	codec_free(m);
	clerk_drive(k);
}

static void clerk_on_wake(void *ctx)
{
	struct clerk *k = ctx;
	clerk_sm_core_tick(k->core, sim_now_ms(k->c->sim));
	clerk_drive(k);
}

static const struct sim_endpoint_ops clerk_ops = {
	.on_message = clerk_on_message,
	.on_wake = clerk_on_wake,
};

/* ---- life cycle ---- */

struct sm_cluster *sm_cluster_new(struct sim *sim,
				  const struct sm_cluster_opts *o)
{
	if (o->n_servers == 0 || o->n_servers > RAFT_MAX_NODES)
		return NULL;
	struct sm_cluster *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->sim = sim;
	c->o = *o;
	buf_init(&c->scratch);
	c->srv = mem_calloc(o->n_servers, sizeof(*c->srv));
	c->clerks = mem_calloc(o->n_clerks ? o->n_clerks : 1,
			       sizeof(*c->clerks));
	if (!c->srv || !c->clerks) {
		sm_cluster_free(c);
		return NULL;
	}
	for (size_t i = 0; i < o->n_servers; i++) {
		char name[32];
		snprintf(name, sizeof(name), "sm%zu", i + 1);
		c->names[i] = mem_strdup(name);
	}
	for (size_t k = 0; k < o->n_clerks; k++) {
		struct clerk *ck = &c->clerks[k];
		ck->c = c;
		ck->id = SM_CLUSTER_CLERK0 + (uint32_t)k;
		struct clerk_sm_core_opts co = {
			.n_servers = o->n_servers,
			.servers = (const char *const *)c->names,
			.client_id = sim_rand(sim),
			.seed = sim_rand(sim),
			.attempt_timeout_ms = o->clerk_attempt_timeout_ms,
		};
		if (clerk_sm_core_new(&co, &ck->core) ||
		    sim_endpoint_add(sim, ck->id, &clerk_ops, ck)) {
			sm_cluster_free(c);
			return NULL;
		}
	}
	sim_set_after_step(sim, sm_cluster_after_step, c);
	for (size_t i = 0; i < o->n_servers; i++) {
		struct server *s = &c->srv[i];
		if (srv_init(c, s, (uint32_t)(i + 1))) {
			sm_cluster_free(c);
			return NULL;
		}
		replica_host_boot(&s->host);
	}
	return c;
}

void sm_cluster_free(struct sm_cluster *c)
{
	if (!c)
		return;
	sim_set_after_step(c->sim, NULL, NULL);
	for (size_t i = 0; c->srv && i < c->o.n_servers; i++)
		replica_host_fini(&c->srv[i].host);
	for (size_t k = 0; c->clerks && k < c->o.n_clerks; k++) {
		clerk_sm_core_free(c->clerks[k].core);
		sm_cluster_config_free(c->clerks[k].config);
	}
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		mem_free(c->names[i]);
	for (size_t i = 0; i < c->cap_hist; i++)
		buf_free(&c->hist[i]);
	mem_free(c->hist);
	buf_free(&c->scratch);
	mem_free(c->srv);
	mem_free(c->clerks);
	mem_free(c);
}

/* ---- faults and observers ---- */

void sm_cluster_crash(struct sm_cluster *c, uint32_t id)
{
	sim_crash(c->sim, id);
}

void sm_cluster_restart(struct sm_cluster *c, uint32_t id)
{
	sim_restart(c->sim, id);
}

bool sm_cluster_up(const struct sm_cluster *c, uint32_t id)
{
	return id >= 1 && id <= c->o.n_servers &&
	       replica_host_replica(&c->srv[id - 1].host);
}

uint32_t sm_cluster_leader(const struct sm_cluster *c)
{
	uint32_t best = 0;
	uint64_t best_term = 0;
	for (size_t i = 0; i < c->o.n_servers; i++) {
		const struct server *s = &c->srv[i];
		struct raft *r = replica_host_raft(&s->host);
		if (r && raft_role(r) == RAFT_LEADER &&
		    raft_term(r) >= best_term) {
			best = s->id;
			best_term = raft_term(r);
		}
	}
	return best;
}

const struct sm *sm_cluster_sm(const struct sm_cluster *c, uint32_t id)
{
	if (id < 1 || id > c->o.n_servers || !c->srv[id - 1].svc)
		return NULL;
	return sm_service_sm(c->srv[id - 1].svc);
}

/* ---- clerk operations ---- */

int sm_cluster_start(struct sm_cluster *c, size_t k, enum sm_method m,
		     const ProtobufCMessage *req, uint64_t timeout_ms)
{
	struct clerk *ck = &c->clerks[k];
	uint64_t now = sim_now_ms(c->sim);
	int rc = clerk_sm_core_start(ck->core, now, m, req, now + timeout_ms);
	if (rc)
		return rc;
	ck->latest_query = m == SM_METHOD_QUERY &&
			   ((const Skv__QueryRequest *)req)->num < 0;
	ck->floor = c->acked;
	ck->busy = true;
	clerk_drive(ck);
	return STATUS_OK;
}

int sm_cluster_retry(struct sm_cluster *c, size_t k, uint64_t timeout_ms)
{
	struct clerk *ck = &c->clerks[k];
	uint64_t now = sim_now_ms(c->sim);
	int rc = clerk_sm_core_retry(ck->core, now, now + timeout_ms);
	if (rc)
		return rc;
	ck->busy = true;
	clerk_drive(ck);
	return STATUS_OK;
}

bool sm_cluster_busy(const struct sm_cluster *c, size_t k)
{
	return c->clerks[k].busy;
}

static bool all_idle(void *arg)
{
	struct sm_cluster *c = arg;
	if (c->failure[0])
		return true;
	for (size_t k = 0; k < c->o.n_clerks; k++)
		if (c->clerks[k].busy)
			return false;
	return true;
}

bool sm_cluster_wait_idle(struct sm_cluster *c, uint64_t deadline_ms)
{
	return sim_run_until(c->sim, all_idle, c, deadline_ms) &&
	       !c->failure[0];
}

int sm_cluster_result(const struct sm_cluster *c, size_t k,
		      const Skv__Config **config, const char **error)
{
	const struct clerk *ck = &c->clerks[k];
	if (config)
		*config = ck->config;
	if (error)
		*error = ck->error;
	return ck->status;
}

struct one_clerk {
	struct sm_cluster *c;
	size_t k;
};

static bool clerk_idle(void *arg)
{
	struct one_clerk *o = arg;
	return o->c->failure[0] || !o->c->clerks[o->k].busy;
}

int sm_cluster_do(struct sm_cluster *c, size_t k, enum sm_method m,
		  const ProtobufCMessage *req, uint64_t deadline_ms)
{
	uint64_t now = sim_now_ms(c->sim);
	if (deadline_ms <= now ||
	    sm_cluster_start(c, k, m, req, deadline_ms - now)) {
		fail(c, "clerk %zu: cannot start %s", k, sm_method_name(m));
		return STATUS_INTERNAL;
	}
	struct one_clerk oc = { c, k };
	for (;;) {
		if (!sim_run_until(c->sim, clerk_idle, &oc, deadline_ms) ||
		    c->failure[0])
			return STATUS_TIMEOUT;
		int st = c->clerks[k].status;
		now = sim_now_ms(c->sim);
		if (st != STATUS_TIMEOUT || now >= deadline_ms)
			return st;
		if (sm_cluster_retry(c, k, deadline_ms - now))
			return STATUS_INTERNAL;
	}
}

void sm_cluster_server_name(uint64_t gid, size_t i, char *out, size_t cap)
{
	snprintf(out, cap, "g%" PRIu64 "-%zu:%zu", gid, i, 7000 + i);
}

int sm_cluster_join(struct sm_cluster *c, size_t k, const uint64_t *gids,
		    size_t n)
{
	Skv__JoinRequest req = SKV__JOIN_REQUEST__INIT;
	Skv__Group *groups = mem_calloc(n ? n : 1, sizeof(*groups));
	Skv__Group **gp = mem_calloc(n ? n : 1, sizeof(*gp));
	char (*names)[3][48] = mem_calloc(n ? n : 1, sizeof(*names));
	char *(*ptrs)[3] = mem_calloc(n ? n : 1, sizeof(*ptrs));
	if (!groups || !gp || !names || !ptrs)
		abort();
	for (size_t i = 0; i < n; i++) {
		skv__group__init(&groups[i]);
		groups[i].gid = gids[i];
		for (size_t j = 0; j < 3; j++) {
			sm_cluster_server_name(gids[i], j, names[i][j],
					       sizeof(names[i][j]));
			ptrs[i][j] = names[i][j];
		}
		groups[i].n_servers = 3;
		groups[i].servers = ptrs[i];
		gp[i] = &groups[i];
	}
	req.n_groups = n;
	req.groups = gp;
	int rc = sm_cluster_do(c, k, SM_METHOD_JOIN, &req.base,
			       sim_now_ms(c->sim) + 60000);
	mem_free(groups);
	mem_free(gp);
	mem_free(names);
	mem_free(ptrs);
	return rc;
}

int sm_cluster_leave(struct sm_cluster *c, size_t k, const uint64_t *gids,
		     size_t n)
{
	Skv__LeaveRequest req = SKV__LEAVE_REQUEST__INIT;
	req.n_gids = n;
	req.gids = (uint64_t *)gids;
	return sm_cluster_do(c, k, SM_METHOD_LEAVE, &req.base,
			     sim_now_ms(c->sim) + 60000);
}

int sm_cluster_move(struct sm_cluster *c, size_t k, uint32_t shard,
		    uint64_t gid)
{
	Skv__MoveRequest req = SKV__MOVE_REQUEST__INIT;
	req.shard = shard;
	req.gid = gid;
	return sm_cluster_do(c, k, SM_METHOD_MOVE, &req.base,
			     sim_now_ms(c->sim) + 60000);
}

int sm_cluster_query(struct sm_cluster *c, size_t k, int64_t num,
		     Skv__Config **out)
{
	Skv__QueryRequest req = SKV__QUERY_REQUEST__INIT;
	req.num = num;
	*out = NULL;
	int rc = sm_cluster_do(c, k, SM_METHOD_QUERY, &req.base,
			       sim_now_ms(c->sim) + 60000);
	if (rc == STATUS_OK) {
		*out = c->clerks[k].config;
		c->clerks[k].config = NULL;
		if (!*out)
			fail(c, "clerk %zu: query answered without a "
				"configuration",
			     k);
	}
	return rc;
}

void sm_cluster_config_free(Skv__Config *cfg)
{
	if (cfg)
		codec_free(&cfg->base);
}

/* ---- trace ---- */

void sm_cluster_format(void *arg, uint32_t type, const void *bytes,
		       size_t len, char *out, size_t cap)
{
	const uint8_t *p = bytes;
	if (type <= RAFT_MSG_SNAPSHOT_REPLY) {
		raft_cluster_format(arg, type, bytes, len, out, cap);
	} else if (type == MSG_REQUEST && len >= 12) {
		snprintf(out, cap, "%s attempt=%" PRIu64,
			 sm_method_name((enum sm_method)get_u32be(p + 8)),
			 get_u64be(p));
	} else if (type == MSG_REPLY && len >= 8) {
		ProtobufCMessage *m;
		if (codec_unpack(&skv__sm_reply__descriptor, p + 8, len - 8,
				 &m)) {
			snprintf(out, cap, "SmReply (undecodable)");
			return;
		}
		const Skv__SmReply *r = (const Skv__SmReply *)m;
		snprintf(out, cap, "SmReply attempt=%" PRIu64 " %s config=%lld",
			 get_u64be(p), status_name((int)r->status),
			 r->config ? (long long)r->config->num : -1LL);
		codec_free(m);
	} else {
		snprintf(out, cap, "type %u", type);
	}
}
