/*
 * The key/value clerk, layer by layer:
 *   - clerk/kv_core: the sans-IO clerk, driven on a virtual clock by fake
 *     replica groups and a fake shard master in this file (no sockets, no
 *     sleeps): routing by shard, WRONG_GROUP and configuration refetch,
 *     leader hints and per-group leader memory, NOT_READY, deadlines,
 *     sessions (one outstanding write per client id, seq per session),
 *     FIFO results, size limits, exactly-once under lost replies,
 *     allocation failures;
 *   - kvcli's arguments and output helpers, called directly;
 *   - the clerk library (clerk.h) and the kvcli binary over real gRPC on
 *     127.0.0.1 against a fake shard master and fake ShardKV servers
 *     served by common/rpc in this process (every wait is a blocking call
 *     with a deadline).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clerk/clerk.h"
#include "clerk/cli.h"
#include "clerk/kv_core.h"
#include "clerk/kvcli_args.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/rpc/rpc.h"
#include "common/shard.h"
#include "common/status.h"
#include "tests/port.h"
#include "tests/unit/cli_proc.h"

/* ================= kv_core against fakes on a virtual clock =========== */

#define NSHARDS 4
#define NM 3	      /* shard masters */
#define NG 3	      /* groups */
#define NS 3	      /* servers per group */
#define Q_MAX 256     /* replies on their way */
#define LOG_MAX 4096  /* requests received */
#define KEYS_MAX 128  /* the fake store */
#define VMAX 256      /* the fake's value buffer */
#define DEDUP_MAX 256 /* dedup entries */
#define RES_MAX 256   /* results taken */

enum mode {
	S_LEADER,   /* answers */
	S_FOLLOWER, /* NOT_LEADER with hint[i] (-1: none) */
	S_DOWN,	    /* transport failure, at once */
	S_SILENT,   /* never answers */
};

struct fgroup {
	uint64_t gid;
	char addr[NS][32];
	enum mode mode[NS];
	int hint[NS];
	bool serves[NSHARDS]; /* the group's own view of its shards */
	int not_ready;	      /* leader: NOT_READY this many more times */
	int wrong_group;      /* leader: WRONG_GROUP this many more times */
	int drop;	      /* leader: apply, then lose the reply */
	uint64_t latency_ms;
};

/* A reply on its way, all storage inline: the fake allocates nothing
 * through mem_* (allocation-failure tests count only the core). */
struct qreply {
	bool used;
	uint64_t at_ms, order, attempt;
	int status; /* transport */
	bool to_master;
	Skv__SmReply sm;
	Skv__Config cfg;
	uint64_t shards[NSHARDS];
	Skv__Group groups[NG];
	Skv__Group *gp[NG];
	char *srvp[NG][NS];
	Skv__KvReply kv;
	uint8_t value[VMAX];
	char error[96];
	char hint[32];
};

struct logged {
	bool to_master;
	int group, server; /* -1 for a master */
	int master;
	int op;
	uint64_t client_id, seq, cfg_num, at_ms;
	char key[64];
};

struct entry {
	bool used;
	char key[64];
	size_t klen;
	uint8_t value[VMAX];
	size_t vlen;
};

struct dedup {
	uint32_t shard;
	uint64_t client_id, seq;
	int status;
};

struct fake {
	/* shard master */
	enum mode mmode[NM];
	int mhint[NM];
	char maddr[NM][32];
	const char *maddrp[NM];
	uint64_t num;
	uint64_t owner[NSHARDS]; /* the shard master's current config */
	int n_queries;

	struct fgroup g[NG];
	size_t value_limit; /* Append past it: TOO_LARGE */

	struct entry store[KEYS_MAX];
	struct dedup dd[DEDUP_MAX];
	size_t n_dd;
	int applied; /* writes applied */

	struct logged log[LOG_MAX];
	size_t n_log;
	struct qreply q[Q_MAX];
	uint64_t q_order;

	uint64_t now;
	struct clerk_kv_core *core;
	struct clerk_kv_result res[RES_MAX];
	size_t n_res;
};

static struct fake *fake_new(void)
{
	struct fake *f = calloc(1, sizeof(*f));
	cr_assert_not_null(f);
	for (int i = 0; i < NM; i++) {
		snprintf(f->maddr[i], sizeof(f->maddr[i]), "m%d:7000", i);
		f->maddrp[i] = f->maddr[i];
		f->mmode[i] = S_LEADER;
		f->mhint[i] = -1;
	}
	for (int gi = 0; gi < NG; gi++) {
		struct fgroup *g = &f->g[gi];
		g->gid = 100 + (uint64_t)gi;
		for (int s = 0; s < NS; s++) {
			snprintf(g->addr[s], sizeof(g->addr[s]), "g%lu-%d:7100",
				 (unsigned long)g->gid, s);
			g->mode[s] = S_LEADER;
			g->hint[s] = -1;
		}
		g->latency_ms = 5;
	}
	/* Config 1: shards 0,1 on group 100, 2,3 on group 101. */
	f->num = 1;
	for (int s = 0; s < NSHARDS; s++) {
		f->owner[s] = s < 2 ? 100 : 101;
		f->g[s < 2 ? 0 : 1].serves[s] = true;
	}
	f->value_limit = VMAX;
	return f;
}

static void core_new(struct fake *f, uint64_t seed)
{
	struct clerk_kv_core_opts o = {
		.n_masters = NM,
		.masters = f->maddrp,
		.seed = seed,
		.attempt_timeout_ms = 1000,
		.backoff_ms_min = 50,
		.backoff_ms_max = 400,
	};
	cr_assert_eq(clerk_kv_core_new(&o, &f->core), STATUS_OK);
}

static void fake_free(struct fake *f)
{
	for (size_t i = 0; i < f->n_res; i++)
		mem_free(f->res[i].value);
	clerk_kv_core_free(f->core);
	free(f);
}

/* Makes the shard master's configuration: owner[s] per shard. The
 * groups' own views are set separately (they may lag). */
static void fake_config(struct fake *f, const uint64_t *owner)
{
	f->num++;
	memcpy(f->owner, owner, sizeof(f->owner));
}

static struct qreply *q_slot(struct fake *f)
{
	for (size_t i = 0; i < Q_MAX; i++)
		if (!f->q[i].used) {
			memset(&f->q[i], 0, sizeof(f->q[i]));
			f->q[i].used = true;
			f->q[i].order = ++f->q_order;
			return &f->q[i];
		}
	cr_assert_fail("reply queue full");
	return NULL;
}

static void fill_config(struct fake *f, struct qreply *q)
{
	skv__config__init(&q->cfg);
	q->cfg.num = f->num;
	q->cfg.n_shards = NSHARDS;
	q->cfg.shards = q->shards;
	memcpy(q->shards, f->owner, sizeof(q->shards));
	size_t n = 0;
	for (int gi = 0; gi < NG; gi++) {
		bool listed = false;
		for (int s = 0; s < NSHARDS; s++)
			listed |= f->owner[s] == f->g[gi].gid;
		if (!listed)
			continue;
		Skv__Group *g = &q->groups[n];
		skv__group__init(g);
		g->gid = f->g[gi].gid;
		for (int s = 0; s < NS; s++)
			q->srvp[n][s] = f->g[gi].addr[s];
		g->n_servers = NS;
		g->servers = q->srvp[n];
		q->gp[n] = g;
		n++;
	}
	q->cfg.n_groups = n;
	q->cfg.groups = q->gp;
	q->sm.config = &q->cfg;
}

static struct entry *store_find(struct fake *f, const void *key, size_t klen,
				bool create)
{
	struct entry *free_e = NULL;
	for (size_t i = 0; i < KEYS_MAX; i++) {
		struct entry *e = &f->store[i];
		if (e->used && e->klen == klen &&
		    memcmp(e->key, key, klen) == 0)
			return e;
		if (!e->used && !free_e)
			free_e = e;
	}
	if (!create)
		return NULL;
	cr_assert_not_null(free_e, "fake store full");
	cr_assert_leq(klen, sizeof(free_e->key));
	memset(free_e, 0, sizeof(*free_e));
	free_e->used = true;
	memcpy(free_e->key, key, klen);
	free_e->klen = klen;
	return free_e;
}

static struct dedup *dedup_find(struct fake *f, uint32_t shard, uint64_t cid)
{
	for (size_t i = 0; i < f->n_dd; i++)
		if (f->dd[i].shard == shard && f->dd[i].client_id == cid)
			return &f->dd[i];
	cr_assert_lt(f->n_dd, DEDUP_MAX);
	f->dd[f->n_dd] = (struct dedup){.shard = shard, .client_id = cid};
	return &f->dd[f->n_dd++];
}

/* The group's leader applies or reads. */
static void kv_apply(struct fake *f, const Skv__KvRequest *r,
		     struct qreply *q)
{
	uint32_t shard = shard_for_key(r->key.data, r->key.len, NSHARDS);
	if (r->op == SKV__OP__OP_GET) {
		struct entry *e = store_find(f, r->key.data, r->key.len, false);
		if (!e) {
			q->kv.status = SKV__STATUS__STATUS_NOT_FOUND;
			return;
		}
		memcpy(q->value, e->value, e->vlen);
		q->kv.value.data = q->value;
		q->kv.value.len = e->vlen;
		return;
	}
	cr_assert_neq(r->client_id, 0, "a write carries a client id");
	cr_assert_gt(r->seq, 0, "a write carries a seq");
	struct dedup *d = dedup_find(f, shard, r->client_id);
	if (r->seq <= d->seq) {
		q->kv.status = r->seq == d->seq ? d->status : 0;
		return;
	}
	int st = STATUS_OK;
	struct entry *e = store_find(f, r->key.data, r->key.len, false);
	switch (r->op) {
	case SKV__OP__OP_PUT:
		cr_assert_leq(r->value.len, VMAX);
		e = store_find(f, r->key.data, r->key.len, true);
		if (r->value.len)
			memcpy(e->value, r->value.data, r->value.len);
		e->vlen = r->value.len;
		break;
	case SKV__OP__OP_APPEND:
		if ((e ? e->vlen : 0) + r->value.len > f->value_limit) {
			st = STATUS_TOO_LARGE;
			snprintf(q->error, sizeof(q->error),
				 "the value would pass %zu bytes",
				 f->value_limit);
			break;
		}
		e = store_find(f, r->key.data, r->key.len, true);
		if (r->value.len)
			memcpy(e->value + e->vlen, r->value.data,
			       r->value.len);
		e->vlen += r->value.len;
		break;
	case SKV__OP__OP_DELETE:
		if (e)
			e->used = false;
		else
			st = STATUS_NOT_FOUND;
		break;
	default:
		cr_assert_fail("bad op");
	}
	if (st == STATUS_OK)
		f->applied++;
	d->seq = r->seq;
	d->status = st;
	q->kv.status = st;
}

static int master_of(const struct fake *f, const char *addr)
{
	for (int i = 0; i < NM; i++)
		if (strcmp(f->maddr[i], addr) == 0)
			return i;
	return -1;
}

static void server_of(struct fake *f, const char *addr, int *gi, int *si)
{
	for (int g = 0; g < NG; g++)
		for (int s = 0; s < NS; s++)
			if (strcmp(f->g[g].addr[s], addr) == 0) {
				*gi = g;
				*si = s;
				return;
			}
	cr_assert_fail("send to an unknown address %s", addr);
}

static void master_receive(struct fake *f, const struct clerk_kv_send *s,
			   struct logged *l)
{
	cr_assert_str_eq(s->method, "/skv.ShardMaster/Query");
	int m = master_of(f, s->addr);
	cr_assert_geq(m, 0, "unknown master %s", s->addr);
	l->master = m;
	ProtobufCMessage *req = NULL;
	int rc = codec_unpack(&skv__query_request__descriptor, s->bytes,
			      s->len, &req);
	if (f->mmode[m] == S_SILENT) {
		codec_free(req);
		return;
	}
	struct qreply *q = q_slot(f);
	q->attempt = s->attempt;
	q->to_master = true;
	q->at_ms = f->now + 5;
	skv__sm_reply__init(&q->sm);
	q->sm.error = q->error;
	q->sm.leader_hint = q->hint;
	if (rc != STATUS_OK) {
		q->status = STATUS_INVALID_ARGUMENT;
		return;
	}
	cr_assert_eq(((Skv__QueryRequest *)req)->num, -1);
	codec_free(req);
	switch (f->mmode[m]) {
	case S_DOWN:
		q->status = STATUS_UNAVAILABLE;
		q->at_ms = f->now;
		break;
	case S_FOLLOWER:
		q->sm.status = SKV__STATUS__STATUS_NOT_LEADER;
		if (f->mhint[m] >= 0)
			snprintf(q->hint, sizeof(q->hint), "%s",
				 f->maddr[f->mhint[m]]);
		break;
	default:
		f->n_queries++;
		fill_config(f, q);
		break;
	}
}

static const char *const op_paths[] = {
	"/skv.ShardKV/Get", "/skv.ShardKV/Put", "/skv.ShardKV/Append",
	"/skv.ShardKV/Delete"};

static void group_receive(struct fake *f, const struct clerk_kv_send *s,
			  struct logged *l)
{
	int gi, si;
	server_of(f, s->addr, &gi, &si);
	struct fgroup *g = &f->g[gi];
	l->group = gi;
	l->server = si;
	ProtobufCMessage *m = NULL;
	int rc = codec_unpack(&skv__kv_request__descriptor, s->bytes, s->len,
			      &m);
	const Skv__KvRequest *r = (const Skv__KvRequest *)m;
	if (rc == STATUS_OK) {
		cr_assert_str_eq(s->method, op_paths[r->op]);
		l->op = r->op;
		l->client_id = r->client_id;
		l->seq = r->seq;
		l->cfg_num = r->config_num;
		snprintf(l->key, sizeof(l->key), "%.*s", (int)r->key.len,
			 (const char *)r->key.data);
		if (r->op == SKV__OP__OP_GET)
			cr_assert_eq(r->seq, 0, "a Get carries no seq");
	}
	if (g->mode[si] == S_SILENT) {
		codec_free(m);
		return;
	}
	struct qreply *q = q_slot(f);
	q->attempt = s->attempt;
	q->at_ms = f->now + g->latency_ms;
	skv__kv_reply__init(&q->kv);
	q->kv.error = q->error;
	q->kv.leader_hint = q->hint;
	if (rc != STATUS_OK) {
		q->status = STATUS_INVALID_ARGUMENT;
		return;
	}
	uint32_t shard = shard_for_key(r->key.data, r->key.len, NSHARDS);
	switch (g->mode[si]) {
	case S_DOWN:
		q->status = STATUS_UNAVAILABLE;
		q->at_ms = f->now;
		break;
	case S_FOLLOWER:
		q->kv.status = SKV__STATUS__STATUS_NOT_LEADER;
		if (g->hint[si] >= 0)
			snprintf(q->hint, sizeof(q->hint), "%s",
				 g->addr[g->hint[si]]);
		break;
	default:
		if (g->wrong_group > 0 || !g->serves[shard]) {
			if (g->wrong_group > 0)
				g->wrong_group--;
			q->kv.status = SKV__STATUS__STATUS_WRONG_GROUP;
		} else if (g->not_ready > 0) {
			g->not_ready--;
			q->kv.status = SKV__STATUS__STATUS_NOT_READY;
		} else {
			kv_apply(f, r, q);
			if (g->drop > 0) {
				g->drop--;
				q->used = false;
			}
		}
		break;
	}
	codec_free(m);
}

static void fake_receive(struct fake *f, const struct clerk_kv_send *s)
{
	cr_assert_gt(s->timeout_ms, 0);
	cr_assert_not_null(s->addr);
	struct logged *l = &f->log[f->n_log < LOG_MAX ? f->n_log++ : 0];
	memset(l, 0, sizeof(*l));
	l->to_master = s->to_master;
	l->group = l->server = l->master = -1;
	l->at_ms = f->now;
	if (s->to_master)
		master_receive(f, s, l);
	else
		group_receive(f, s, l);
}

static void pump(struct fake *f)
{
	struct clerk_kv_send s;
	while (clerk_kv_core_next_send(f->core, f->now, &s))
		fake_receive(f, &s);
}

static void take_results(struct fake *f)
{
	struct clerk_kv_result r;
	while (clerk_kv_core_take(f->core, &r)) {
		cr_assert_lt(f->n_res, RES_MAX);
		f->res[f->n_res++] = r;
	}
}

static struct qreply *next_reply(struct fake *f)
{
	struct qreply *best = NULL;
	for (size_t i = 0; i < Q_MAX; i++) {
		struct qreply *q = &f->q[i];
		if (q->used && (!best || q->at_ms < best->at_ms ||
				(q->at_ms == best->at_ms &&
				 q->order < best->order)))
			best = q;
	}
	return best;
}

/* Runs until no operation is left (or `until_ms`), checking after every
 * step that a running core always has a timer. */
static void run(struct fake *f, uint64_t until_ms)
{
	for (int steps = 0; steps < 200000; steps++) {
		pump(f);
		take_results(f);
		if (clerk_kv_core_running(f->core) == 0)
			return;
		uint64_t w = clerk_kv_core_wake_ms(f->core);
		cr_assert_neq(w, UINT64_MAX, "a running core has a timer");
		struct qreply *q = next_reply(f);
		uint64_t next = q && q->at_ms < w ? q->at_ms : w;
		if (next >= until_ms)
			return;
		if (next > f->now)
			f->now = next;
		while ((q = next_reply(f)) && q->at_ms <= f->now) {
			const ProtobufCMessage *m =
				q->status ? NULL
				: q->to_master ? &q->sm.base
					       : &q->kv.base;
			clerk_kv_core_on_reply(f->core, f->now, q->attempt,
					       q->status, m);
			/* The core keeps its own copy. */
			memset(q, 0xa5, sizeof(*q));
			q->used = false;
		}
		clerk_kv_core_tick(f->core, f->now);
	}
	cr_assert_fail("operations did not end");
}

static uint64_t start(struct fake *f, enum clerk_kv_op op, const char *key,
		      const char *value, uint64_t timeout_ms)
{
	uint64_t id;
	int rc = clerk_kv_core_start(f->core, f->now, op, key, strlen(key),
				     value, value ? strlen(value) : 0,
				     f->now + timeout_ms, &id);
	cr_assert_eq(rc, STATUS_OK, "start: %s", status_name(rc));
	cr_assert_gt(id, 0);
	return id;
}

static const struct clerk_kv_result *result_of(struct fake *f, uint64_t id)
{
	for (size_t i = 0; i < f->n_res; i++)
		if (f->res[i].op_id == id)
			return &f->res[i];
	cr_assert_fail("no result for op %lu", (unsigned long)id);
	return NULL;
}

/* Runs one operation to its end; its status. */
static int run_one(struct fake *f, enum clerk_kv_op op, const char *key,
		   const char *value, uint64_t timeout_ms)
{
	uint64_t id = start(f, op, key, value, timeout_ms);
	run(f, UINT64_MAX);
	return result_of(f, id)->status;
}

/* A key whose shard is `shard` ("k<shard>-<n>", the n-th such). */
static const char *key_in(int shard, int n)
{
	static char keys[16][32];
	static int next;
	char *k = keys[next++ % 16];
	for (int i = 0;; i++) {
		snprintf(k, 32, "k%d-%d", shard, i);
		if ((int)shard_for_key(k, strlen(k), NSHARDS) == shard &&
		    n-- == 0)
			return k;
	}
}

static size_t count_log(const struct fake *f, bool to_master)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n_log; i++)
		n += f->log[i].to_master == to_master;
	return n;
}

Test(kv_core, rejects_bad_options_and_sizes)
{
	struct clerk_kv_core *c;
	struct clerk_kv_core_opts o = {.n_masters = 0};
	cr_assert_eq(clerk_kv_core_new(&o, &c), STATUS_INVALID_ARGUMENT);
	cr_assert_null(c);
	const char *empty[] = {""};
	o = (struct clerk_kv_core_opts){.n_masters = 1, .masters = empty};
	cr_assert_eq(clerk_kv_core_new(&o, &c), STATUS_INVALID_ARGUMENT);

	struct fake *f = fake_new();
	core_new(f, 1);
	uint64_t id = 99;
	static char big[SHARD_VALUE_BYTES_MAX + 1];
	static char key[SHARD_KEY_BYTES_MAX + 1];
	memset(key, 'k', sizeof(key));
	struct {
		enum clerk_kv_op op;
		const void *key;
		size_t klen;
		const void *value;
		size_t vlen;
		int want;
	} cases[] = {
		{CLERK_KV_GET, "", 0, NULL, 0, STATUS_INVALID_ARGUMENT},
		{CLERK_KV_GET, NULL, 0, NULL, 0, STATUS_INVALID_ARGUMENT},
		{CLERK_KV_PUT, key, sizeof(key), "v", 1, STATUS_TOO_LARGE},
		{CLERK_KV_PUT, "k", 1, big, sizeof(big), STATUS_TOO_LARGE},
		{CLERK_KV_APPEND, "k", 1, big, sizeof(big), STATUS_TOO_LARGE},
		{CLERK_KV_PUT, "k", 1, NULL, 3, STATUS_INVALID_ARGUMENT},
		{(enum clerk_kv_op)7, "k", 1, NULL, 0,
		 STATUS_INVALID_ARGUMENT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = clerk_kv_core_start(f->core, 0, cases[i].op,
					     cases[i].key, cases[i].klen,
					     cases[i].value, cases[i].vlen,
					     1000, &id);
		cr_assert_eq(rc, cases[i].want, "case %zu: %s", i,
			     status_name(rc));
	}
	cr_assert_eq(clerk_kv_core_running(f->core), 0);
	struct clerk_kv_result r;
	cr_assert_not(clerk_kv_core_take(f->core, &r), "no result queued");
	cr_assert_eq(clerk_kv_core_sessions(f->core), 0,
		     "a refused write takes no session");

	/* At the limits exactly: accepted. A Get ignores its value. */
	cr_assert_eq(clerk_kv_core_start(f->core, 0, CLERK_KV_PUT, key,
					 SHARD_KEY_BYTES_MAX, big,
					 SHARD_VALUE_BYTES_MAX, 1000, &id),
		     STATUS_OK);
	cr_assert_eq(clerk_kv_core_start(f->core, 0, CLERK_KV_GET, "k", 1,
					 big, sizeof(big), 1000, &id),
		     STATUS_OK);
	cr_assert_eq(clerk_kv_core_running(f->core), 2);
	cr_assert_eq(clerk_kv_core_config_num(f->core), 0);
	fake_free(f);
}

Test(kv_core, routes_each_key_to_its_shards_group)
{
	struct fake *f = fake_new();
	core_new(f, 1);
	/* One key per shard, all at once. */
	uint64_t ids[NSHARDS];
	char vals[NSHARDS][8];
	for (int s = 0; s < NSHARDS; s++) {
		snprintf(vals[s], sizeof(vals[s]), "v%d", s);
		ids[s] = start(f, CLERK_KV_PUT, key_in(s, 0), vals[s], 5000);
	}
	run(f, UINT64_MAX);
	for (int s = 0; s < NSHARDS; s++)
		cr_assert_eq(result_of(f, ids[s])->status, STATUS_OK);
	cr_assert_eq(count_log(f, true), 1,
		     "one Query serves every waiting operation");
	cr_assert_eq(clerk_kv_core_config_num(f->core), 1);
	for (size_t i = 0; i < f->n_log; i++) {
		const struct logged *l = &f->log[i];
		if (l->to_master)
			continue;
		int shard = (int)shard_for_key(l->key, strlen(l->key),
					       NSHARDS);
		cr_assert_eq(f->g[l->group].gid, f->owner[shard],
			     "key %s (shard %d) went to group %lu", l->key,
			     shard, (unsigned long)f->g[l->group].gid);
		cr_assert_eq(l->server, 0, "every group's server 0 leads");
		cr_assert_eq(l->cfg_num, 1, "the request names the config");
	}
	cr_assert_eq(count_log(f, false), NSHARDS, "no retries");

	/* Reads find what was written, on the right groups. */
	for (int s = 0; s < NSHARDS; s++) {
		uint64_t id = start(f, CLERK_KV_GET, key_in(s, 0), NULL, 5000);
		run(f, UINT64_MAX);
		const struct clerk_kv_result *r = result_of(f, id);
		cr_assert_eq(r->status, STATUS_OK);
		cr_assert_eq(r->value_len, strlen(vals[s]));
		cr_assert_arr_eq(r->value, vals[s], r->value_len);
		cr_assert_str_eq(r->error, "");
	}
	cr_assert_eq(count_log(f, true), 1, "the config is cached");
	fake_free(f);
}

Test(kv_core, missing_keys_and_empty_values)
{
	struct fake *f = fake_new();
	core_new(f, 2);
	cr_assert_eq(run_one(f, CLERK_KV_GET, "nope", NULL, 5000),
		     STATUS_NOT_FOUND);
	cr_assert_null(f->res[0].value);
	cr_assert_eq(run_one(f, CLERK_KV_DELETE, "nope", NULL, 5000),
		     STATUS_NOT_FOUND);
	cr_assert_eq(run_one(f, CLERK_KV_PUT, "e", "", 5000), STATUS_OK);
	uint64_t id = start(f, CLERK_KV_GET, "e", NULL, 5000);
	run(f, UINT64_MAX);
	const struct clerk_kv_result *r = result_of(f, id);
	cr_assert_eq(r->status, STATUS_OK);
	cr_assert_eq(r->value_len, 0);
	cr_assert_not_null(r->value, "an empty value is not NULL");
	cr_assert_eq(run_one(f, CLERK_KV_APPEND, "fresh", "ab", 5000),
		     STATUS_OK);
	cr_assert_eq(run_one(f, CLERK_KV_APPEND, "fresh", "cd", 5000),
		     STATUS_OK);
	id = start(f, CLERK_KV_GET, "fresh", NULL, 5000);
	run(f, UINT64_MAX);
	cr_assert_arr_eq(result_of(f, id)->value, "abcd", 4);
	cr_assert_eq(run_one(f, CLERK_KV_DELETE, "fresh", NULL, 5000),
		     STATUS_OK);
	cr_assert_eq(run_one(f, CLERK_KV_GET, "fresh", NULL, 5000),
		     STATUS_NOT_FOUND);
	fake_free(f);
}

Test(kv_core, wrong_group_refetches_the_configuration)
{
	struct fake *f = fake_new();
	core_new(f, 3);
	const char *k = key_in(0, 0);
	cr_assert_eq(run_one(f, CLERK_KV_PUT, k, "a", 5000), STATUS_OK);
	cr_assert_eq(count_log(f, true), 1);

	/* Shard 0 moves to group 102; both groups know already. */
	uint64_t owner[NSHARDS] = {102, 100, 101, 101};
	fake_config(f, owner);
	f->g[0].serves[0] = false;
	f->g[2].serves[0] = true;
	size_t first = f->n_log;
	cr_assert_eq(run_one(f, CLERK_KV_APPEND, k, "b", 5000), STATUS_OK);
	cr_assert_eq(clerk_kv_core_config_num(f->core), 2);
	cr_assert_eq(f->n_log - first, 3,
		     "old group (WRONG_GROUP), Query, new group");
	cr_assert_eq(f->log[first].group, 0);
	cr_assert(f->log[first + 1].to_master);
	cr_assert_eq(f->log[first + 2].group, 2);
	cr_assert_eq(f->log[first + 2].cfg_num, 2);
	cr_assert_eq(f->log[first + 2].at_ms, f->log[first + 1].at_ms + 5,
		     "a newer configuration is used at once, no backoff");
	cr_assert_eq(f->log[first].seq, f->log[first + 2].seq,
		     "the same write, the same seq");
	struct entry *e = store_find(f, k, strlen(k), false);
	cr_assert_eq(e->vlen, 2);
	cr_assert_arr_eq(e->value, "ab", 2);
	fake_free(f);
}

Test(kv_core, a_group_behind_the_clerk_is_retried_with_backoff)
{
	struct fake *f = fake_new();
	core_new(f, 4);
	const char *k = key_in(1, 0);
	cr_assert_eq(run_one(f, CLERK_KV_PUT, k, "a", 5000), STATUS_OK);
	/* Shard 1 moves to group 102, which has not applied that config
	 * yet: it says WRONG_GROUP a few times, then serves. */
	uint64_t owner[NSHARDS] = {100, 102, 101, 101};
	fake_config(f, owner);
	f->g[0].serves[1] = false;
	f->g[2].serves[1] = true;
	f->g[2].wrong_group = 4;
	size_t first = f->n_log;
	cr_assert_eq(run_one(f, CLERK_KV_GET, k, NULL, 10000), STATUS_OK);
	uint64_t prev = 0;
	int tries = 0;
	uint64_t gaps = 0;
	for (size_t i = first; i < f->n_log; i++) {
		const struct logged *l = &f->log[i];
		if (l->to_master || l->group != 2)
			continue;
		if (tries++)
			gaps += l->at_ms - prev - 5;
		prev = l->at_ms;
	}
	cr_assert_eq(tries, 5, "4 WRONG_GROUP, then served");
	cr_assert_gt(gaps, 0, "backed off between them");
	/* Each WRONG_GROUP asks the shard master again (the group may be
	 * ahead instead); still one Query per wait, not a storm. */
	size_t queries = 0;
	for (size_t i = first; i < f->n_log; i++)
		queries += f->log[i].to_master;
	cr_assert_geq(queries, 2);
	cr_assert_leq(queries, 6);
	fake_free(f);
}

Test(kv_core, a_shard_without_a_group_waits_until_the_deadline)
{
	struct fake *f = fake_new();
	core_new(f, 5);
	uint64_t owner[NSHARDS] = {0, 0, 0, 0};
	memcpy(f->owner, owner, sizeof(owner));
	f->num = 0;
	uint64_t id = start(f, CLERK_KV_PUT, "x", "1", 3000);
	run(f, UINT64_MAX);
	const struct clerk_kv_result *r = result_of(f, id);
	cr_assert_eq(r->status, STATUS_TIMEOUT);
	cr_assert_eq(f->now, 3000, "ends exactly at the deadline");
	cr_assert(strstr(r->error, "has no group in configuration 0"), "%s",
		  r->error);
	cr_assert_eq(count_log(f, false), 0, "no group asked");
	size_t q = count_log(f, true);
	cr_assert_geq(q, 3, "refetched");
	cr_assert_leq(q, 3000 / 50, "with backoff: %zu queries", q);

	/* The shard gets a group: the next operation goes through. */
	uint64_t owner2[NSHARDS] = {100, 100, 100, 100};
	fake_config(f, owner2);
	for (int s = 0; s < NSHARDS; s++)
		f->g[0].serves[s] = true;
	cr_assert_eq(run_one(f, CLERK_KV_PUT, "x", "1", 3000), STATUS_OK);
	fake_free(f);
}

Test(kv_core, not_leader_hints_and_leader_memory_per_group)
{
	struct fake *f = fake_new();
	/* Group 100: server 2 leads; 0 points at it, 1 knows nothing. */
	f->g[0].mode[0] = S_FOLLOWER;
	f->g[0].hint[0] = 2;
	f->g[0].mode[1] = S_FOLLOWER;
	/* Group 101: server 1 leads; 0 has no hint. */
	f->g[1].mode[0] = S_FOLLOWER;
	f->g[1].mode[2] = S_FOLLOWER;
	f->g[1].hint[2] = 1;
	core_new(f, 6);
	const char *k100 = key_in(0, 0), *k101 = key_in(2, 0);
	size_t first = f->n_log;
	cr_assert_eq(run_one(f, CLERK_KV_PUT, k100, "a", 5000), STATUS_OK);
	/* Query, server 0 (hint 2), server 2. */
	cr_assert_eq(f->n_log - first, 3);
	cr_assert_eq(f->log[first + 1].server, 0);
	cr_assert_eq(f->log[first + 2].server, 2);
	cr_assert_eq(f->log[first + 2].at_ms, f->log[first + 1].at_ms + 5,
		     "redirected at once");

	first = f->n_log;
	cr_assert_eq(run_one(f, CLERK_KV_PUT, k101, "b", 5000), STATUS_OK);
	cr_assert_eq(f->n_log - first, 2, "group 101: server 0, then 1");
	cr_assert_eq(f->log[first].server, 0);
	cr_assert_eq(f->log[first + 1].server, 1);

	/* Both groups' leaders are remembered, each for its group. */
	first = f->n_log;
	cr_assert_eq(run_one(f, CLERK_KV_GET, k100, NULL, 5000), STATUS_OK);
	cr_assert_eq(run_one(f, CLERK_KV_GET, k101, NULL, 5000), STATUS_OK);
	cr_assert_eq(f->n_log - first, 2);
	cr_assert_eq(f->log[first].group, 0);
	cr_assert_eq(f->log[first].server, 2);
	cr_assert_eq(f->log[first + 1].group, 1);
	cr_assert_eq(f->log[first + 1].server, 1);

	/* A configuration that keeps a group's servers keeps its memory. */
	uint64_t owner[NSHARDS] = {100, 100, 101, 102};
	fake_config(f, owner);
	f->g[1].serves[3] = false;
	f->g[2].serves[3] = true;
	first = f->n_log;
	cr_assert_eq(run_one(f, CLERK_KV_GET, key_in(3, 0), NULL, 5000),
		     STATUS_NOT_FOUND);
	cr_assert_eq(clerk_kv_core_config_num(f->core), 2);
	cr_assert_eq(run_one(f, CLERK_KV_GET, k100, NULL, 5000), STATUS_OK);
	cr_assert_eq(f->log[f->n_log - 1].server, 2, "still remembered");
	fake_free(f);
}

Test(kv_core, shard_master_hints_and_failures)
{
	struct fake *f = fake_new();
	f->mmode[0] = S_FOLLOWER;
	f->mhint[0] = 2;
	f->mmode[2] = S_DOWN; /* the hint is stale: 2 is down */
	core_new(f, 7);
	cr_assert_eq(run_one(f, CLERK_KV_PUT, "a", "1", 5000), STATUS_OK);
	cr_assert(f->log[0].to_master && f->log[0].master == 0);
	cr_assert(f->log[1].to_master && f->log[1].master == 2);
	cr_assert(f->log[2].to_master && f->log[2].master == 1);
	cr_assert_eq(f->n_queries, 1);
	fake_free(f);
}

Test(kv_core, not_ready_and_unreachable_servers_are_retried)
{
	struct fake *f = fake_new();
	f->g[0].not_ready = 2;
	f->g[1].mode[0] = S_DOWN;
	f->g[1].mode[1] = S_SILENT;
	core_new(f, 8);
	uint64_t a = start(f, CLERK_KV_PUT, key_in(0, 0), "x", 10000);
	uint64_t b = start(f, CLERK_KV_PUT, key_in(2, 0), "y", 10000);
	run(f, UINT64_MAX);
	cr_assert_eq(result_of(f, a)->status, STATUS_OK);
	cr_assert_eq(result_of(f, b)->status, STATUS_OK);
	int to_g0 = 0, to_g1[NS] = {0};
	uint64_t at_g1[NS] = {0};
	for (size_t i = 0; i < f->n_log; i++) {
		const struct logged *l = &f->log[i];
		if (l->group == 0)
			to_g0++;
		if (l->group == 1) {
			to_g1[l->server]++;
			at_g1[l->server] = l->at_ms;
		}
	}
	cr_assert_geq(to_g0, 3, "NOT_READY twice, then OK");
	cr_assert_eq(to_g1[0], 1);
	cr_assert_eq(to_g1[1], 1);
	cr_assert_eq(to_g1[2], 1);
	cr_assert_eq(at_g1[2] - at_g1[1], 1000, "after the attempt timeout");
	fake_free(f);
}

Test(kv_core, the_deadline_ends_an_operation_with_timeout)
{
	struct fake *f = fake_new();
	for (int s = 0; s < NS; s++)
		f->g[0].mode[s] = S_SILENT;
	core_new(f, 9);
	uint64_t id = start(f, CLERK_KV_APPEND, key_in(0, 0), "x", 4500);
	run(f, UINT64_MAX);
	const struct clerk_kv_result *r = result_of(f, id);
	cr_assert_eq(r->status, STATUS_TIMEOUT);
	cr_assert_eq(f->now, 4500);
	cr_assert_null(r->value);
	cr_assert(strstr(r->error, "no answer from group 100"), "%s",
		  r->error);
	cr_assert(strstr(r->error, "timed out"), "%s", r->error);
	cr_assert_eq(clerk_kv_core_wake_ms(f->core), UINT64_MAX,
		     "nothing left to do");
	for (size_t i = 0; i < f->n_log; i++)
		cr_assert_lt(f->log[i].at_ms, 4500);

	/* No shard master at all. */
	struct fake *g = fake_new();
	for (int m = 0; m < NM; m++)
		g->mmode[m] = S_DOWN;
	core_new(g, 9);
	id = start(g, CLERK_KV_GET, "k", NULL, 2000);
	run(g, UINT64_MAX);
	r = result_of(g, id);
	cr_assert_eq(r->status, STATUS_TIMEOUT);
	cr_assert(strstr(r->error, "no configuration yet: no shard master "
				   "answered (last: UNAVAILABLE from m"),
		  "%s", r->error);
	cr_assert_lt(count_log(g, true), 100, "backed off: %zu",
		     count_log(g, true));
	fake_free(g);

	/* The deadline comes while the first attempt still waits. */
	struct fake *h = fake_new();
	for (int s = 0; s < NS; s++)
		h->g[0].mode[s] = S_SILENT;
	core_new(h, 9);
	id = start(h, CLERK_KV_PUT, key_in(0, 0), "x", 500);
	run(h, UINT64_MAX);
	r = result_of(h, id);
	cr_assert_eq(r->status, STATUS_TIMEOUT);
	cr_assert_str_eq(r->error, "no answer before the deadline (1 attempt)");
	fake_free(h);

	/* Shard masters without a leader. */
	g = fake_new();
	for (int m = 0; m < NM; m++)
		g->mmode[m] = S_FOLLOWER;
	core_new(g, 9);
	id = start(g, CLERK_KV_GET, "k", NULL, 2000);
	run(g, UINT64_MAX);
	cr_assert(strstr(result_of(g, id)->error, "have no leader"), "%s",
		  result_of(g, id)->error);
	fake_free(g);
	fake_free(f);
}

Test(kv_core, refusals_end_the_operation_with_the_reason)
{
	struct fake *f = fake_new();
	f->value_limit = 4;
	core_new(f, 10);
	const char *k = key_in(0, 0);
	cr_assert_eq(run_one(f, CLERK_KV_PUT, k, "abc", 5000), STATUS_OK);
	size_t first = f->n_log;
	uint64_t id = start(f, CLERK_KV_APPEND, k, "de", 5000);
	run(f, UINT64_MAX);
	const struct clerk_kv_result *r = result_of(f, id);
	cr_assert_eq(r->status, STATUS_TOO_LARGE);
	cr_assert_str_eq(r->error, "the value would pass 4 bytes");
	cr_assert_eq(f->n_log, first + 1, "no retry of a refusal");
	struct entry *e = store_find(f, k, strlen(k), false);
	cr_assert_eq(e->vlen, 3, "nothing changed");
	fake_free(f);
}

Test(kv_core, concurrent_writes_each_have_their_own_session)
{
	struct fake *f = fake_new();
	f->g[0].latency_ms = 30;
	f->g[1].latency_ms = 7;
	core_new(f, 11);
	enum { N = 20 };
	char keys[N][16];
	uint64_t ids[N];
	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof(keys[i]), "w%d", i);
		ids[i] = start(f, i % 3 ? CLERK_KV_APPEND : CLERK_KV_PUT,
			       keys[i], "v", 5000);
	}
	cr_assert_eq(clerk_kv_core_running(f->core), N);
	cr_assert_eq(clerk_kv_core_sessions(f->core), N,
		     "every running write on its own session");
	run(f, UINT64_MAX);
	uint64_t cid[N] = {0}, seq[N] = {0};
	for (size_t i = 0; i < f->n_log; i++) {
		const struct logged *l = &f->log[i];
		if (l->to_master)
			continue;
		int k = atoi(l->key + 1);
		if (!cid[k]) {
			cid[k] = l->client_id;
			seq[k] = l->seq;
		}
		cr_assert_eq(l->client_id, cid[k], "one op, one client id");
		cr_assert_eq(l->seq, seq[k], "one op, one seq");
	}
	for (int i = 0; i < N; i++) {
		cr_assert_eq(result_of(f, ids[i])->status, STATUS_OK);
		cr_assert_eq(seq[i], 1);
		for (int j = 0; j < i; j++)
			cr_assert_neq(cid[i], cid[j],
				      "ops %d and %d ran at once on client "
				      "id %lx",
				      i, j, (unsigned long)cid[i]);
	}

	/* Results come in the order operations finished: the fast group's
	 * first. */
	size_t first_slow = f->n_res;
	for (size_t i = 0; i < f->n_res; i++) {
		const char *key = NULL;
		for (int j = 0; j < N; j++)
			if (ids[j] == f->res[i].op_id)
				key = keys[j];
		uint32_t s = shard_for_key(key, strlen(key), NSHARDS);
		bool slow = f->owner[s] == 100;
		if (slow && first_slow == f->n_res)
			first_slow = i;
		if (!slow)
			cr_assert_lt(i, first_slow,
				     "a fast result after a slow one");
	}

	/* A second wave reuses the sessions, each with its next seq. */
	size_t first = f->n_log;
	for (int i = 0; i < N; i++)
		ids[i] = start(f, CLERK_KV_PUT, keys[i], "z", 5000);
	cr_assert_eq(clerk_kv_core_sessions(f->core), N, "reused");
	run(f, UINT64_MAX);
	for (size_t i = first; i < f->n_log; i++) {
		const struct logged *l = &f->log[i];
		if (l->to_master)
			continue;
		bool known = false;
		for (int j = 0; j < N; j++)
			known |= cid[j] == l->client_id;
		cr_assert(known, "a session of the first wave");
		cr_assert_eq(l->seq, 2);
	}
	fake_free(f);
}

Test(kv_core, one_session_counts_seq_up_and_gets_carry_none)
{
	struct fake *f = fake_new();
	core_new(f, 12);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(run_one(f, CLERK_KV_APPEND, key_in(i % NSHARDS, 0),
				     "x", 5000),
			     STATUS_OK);
		cr_assert_eq(run_one(f, CLERK_KV_GET, "g", NULL, 5000),
			     STATUS_NOT_FOUND);
	}
	cr_assert_eq(clerk_kv_core_sessions(f->core), 1);
	uint64_t cid = 0, want = 1;
	for (size_t i = 0; i < f->n_log; i++) {
		const struct logged *l = &f->log[i];
		if (l->to_master)
			continue;
		if (l->op == SKV__OP__OP_GET) {
			cr_assert_eq(l->seq, 0);
			continue;
		}
		if (!cid)
			cid = l->client_id;
		cr_assert_eq(l->client_id, cid);
		cr_assert_eq(l->seq, want++);
	}
	cr_assert_eq(want, 6);
	fake_free(f);
}

Test(kv_core, a_lost_reply_is_retried_and_applies_once)
{
	struct fake *f = fake_new();
	/* The leader applies, but its replies are lost twice; the clerk
	 * times out each attempt and tries the others (which point back). */
	f->g[0].drop = 2;
	f->g[0].mode[1] = f->g[0].mode[2] = S_FOLLOWER;
	f->g[0].hint[1] = f->g[0].hint[2] = 0;
	core_new(f, 13);
	const char *k = key_in(0, 0);
	cr_assert_eq(run_one(f, CLERK_KV_APPEND, k, "x", 20000), STATUS_OK);
	struct entry *e = store_find(f, k, strlen(k), false);
	cr_assert_eq(e->vlen, 1, "applied exactly once");
	cr_assert_eq(f->applied, 1);

	/* A write that timed out leaves its session to the next seq; a
	 * late copy of the old one is then dropped by the dedup. */
	f->g[0].drop = 1000;
	uint64_t id = start(f, CLERK_KV_APPEND, k, "y", 1500);
	run(f, UINT64_MAX);
	cr_assert_eq(result_of(f, id)->status, STATUS_TIMEOUT);
	cr_assert_eq(f->applied, 2, "it did apply");
	f->g[0].drop = 0;
	cr_assert_eq(run_one(f, CLERK_KV_APPEND, k, "z", 5000), STATUS_OK);
	e = store_find(f, k, strlen(k), false);
	cr_assert_eq(e->vlen, 3);
	cr_assert_arr_eq(e->value, "xyz", 3);
	uint64_t last_seq = f->log[f->n_log - 1].seq;
	cr_assert_eq(last_seq, 3, "seq 1, 2 (timed out), 3");
	fake_free(f);
}

Test(kv_core, stale_and_mismatched_replies_are_ignored)
{
	struct fake *f = fake_new();
	core_new(f, 14);
	uint64_t id = start(f, CLERK_KV_GET, "k", NULL, 10000);
	struct clerk_kv_send q, s1, s2;
	cr_assert(clerk_kv_core_next_send(f->core, 0, &q));
	cr_assert(q.to_master);
	cr_assert_str_eq(q.method, "/skv.ShardMaster/Query");
	cr_assert_not(clerk_kv_core_next_send(f->core, 0, &s1),
		      "the op waits for the configuration");
	/* A reply of the wrong type counts as a failed attempt. */
	Skv__KvReply wrong = SKV__KV_REPLY__INIT;
	clerk_kv_core_on_reply(f->core, 1, q.attempt, STATUS_OK, &wrong.base);
	cr_assert_eq(clerk_kv_core_config_num(f->core), 0);
	cr_assert(clerk_kv_core_next_send(f->core, 1, &q), "next master");
	struct qreply *cfg = q_slot(f);
	skv__sm_reply__init(&cfg->sm);
	fill_config(f, cfg);
	clerk_kv_core_on_reply(f->core, 2, q.attempt, STATUS_OK,
			       &cfg->sm.base);
	cr_assert_eq(clerk_kv_core_config_num(f->core), 1);
	/* A duplicate of it changes nothing. */
	clerk_kv_core_on_reply(f->core, 2, q.attempt, STATUS_OK,
			       &cfg->sm.base);
	cr_assert(clerk_kv_core_next_send(f->core, 2, &s1));
	cr_assert_not(s1.to_master);
	cr_assert_str_eq(s1.method, "/skv.ShardKV/Get");
	cr_assert_eq(clerk_kv_core_wake_ms(f->core), 1002);
	clerk_kv_core_tick(f->core, 1002);
	cr_assert(clerk_kv_core_next_send(f->core, 1002, &s2));
	cr_assert_gt(s2.attempt, s1.attempt);
	cr_assert_neq(strcmp(s1.addr, s2.addr), 0, "the next server");
	Skv__KvReply ok = SKV__KV_REPLY__INIT;
	ok.value.data = (uint8_t *)"old";
	ok.value.len = 3;
	clerk_kv_core_on_reply(f->core, 1003, s1.attempt, STATUS_OK, &ok.base);
	cr_assert_eq(clerk_kv_core_running(f->core), 1, "stale: ignored");
	ok.value.data = (uint8_t *)"new";
	clerk_kv_core_on_reply(f->core, 1004, s2.attempt, STATUS_OK, &ok.base);
	cr_assert_eq(clerk_kv_core_running(f->core), 0);
	take_results(f);
	cr_assert_eq(result_of(f, id)->status, STATUS_OK);
	cr_assert_arr_eq(result_of(f, id)->value, "new", 3);
	/* Replies after the end: ignored. */
	clerk_kv_core_on_reply(f->core, 1005, s2.attempt, STATUS_OK, &ok.base);
	cr_assert_not(clerk_kv_core_take(f->core, &f->res[RES_MAX - 1]));
	fake_free(f);
}

Test(kv_core, unfinished_operations_are_freed_with_the_core)
{
	struct fake *f = fake_new();
	for (int s = 0; s < NS; s++)
		f->g[1].mode[s] = S_SILENT;
	core_new(f, 15);
	start(f, CLERK_KV_PUT, key_in(0, 0), "1", 5000);
	start(f, CLERK_KV_GET, key_in(0, 0), NULL, 5000);
	start(f, CLERK_KV_PUT, key_in(2, 0), "2", 5000);
	run(f, 20);
	cr_assert_eq(f->n_res, 2, "two finished (and taken)");
	cr_assert_eq(clerk_kv_core_running(f->core), 1, "one runs");
	/* One more ends at once (no time), its result left untaken. */
	start(f, CLERK_KV_PUT, "late", "3", 0);
	pump(f);
	cr_assert_eq(clerk_kv_core_running(f->core), 1);
	fake_free(f); /* ASan checks that nothing leaks */
}

Test(kv_core, survives_allocation_failures)
{
	int completed = 0;
	for (long n = 1; n <= 120; n++) {
		struct fake *f = fake_new();
		f->g[0].mode[0] = S_FOLLOWER;
		f->g[0].hint[0] = 1;
		mem_fail_after(n);
		struct clerk_kv_core_opts o = {
			.n_masters = NM,
			.masters = f->maddrp,
			.seed = (uint64_t)n,
		};
		int rc = clerk_kv_core_new(&o, &f->core);
		if (rc) {
			mem_fail_reset();
			cr_assert_eq(rc, STATUS_NO_MEMORY);
			cr_assert_null(f->core);
			free(f);
			continue;
		}
		uint64_t ids[3];
		int started = 0;
		const char *keys[3] = {key_in(0, 0), key_in(1, 0), "g"};
		for (int i = 0; i < 3; i++) {
			uint64_t id;
			rc = clerk_kv_core_start(
				f->core, f->now,
				i == 2 ? CLERK_KV_GET : CLERK_KV_APPEND,
				keys[i], strlen(keys[i]), "v", 1, 3000, &id);
			cr_assert(rc == STATUS_OK || rc == STATUS_NO_MEMORY,
				  "n=%ld: %s", n, status_name(rc));
			if (rc == STATUS_OK)
				ids[started++] = id;
		}
		run(f, UINT64_MAX);
		for (int i = 0; i < started; i++) {
			int st = result_of(f, ids[i])->status;
			cr_assert(st == STATUS_OK || st == STATUS_NO_MEMORY ||
					  st == STATUS_TIMEOUT ||
					  st == STATUS_NOT_FOUND,
				  "n=%ld: %s", n, status_name(st));
			completed += st == STATUS_OK;
		}
		mem_fail_reset();
		fake_free(f);
	}
	cr_assert_gt(completed, 0, "late failure points let it finish");
}

/* Many seeds, random faults: every operation ends by its deadline, with
 * a status it may have, and the invariants hold at every step. */
Test(kv_core, random_faults_never_break_the_invariants)
{
	uint64_t seed0 = 1;
	const char *env = getenv("SKV_SEED");
	if (env)
		seed0 = strtoull(env, NULL, 10);
	int seeds = env ? 1 : 30;
	for (uint64_t seed = seed0; seed < seed0 + (uint64_t)seeds; seed++) {
		cr_log_info("kv_core random: seed %lu (replay: SKV_SEED=%lu)",
			    (unsigned long)seed, (unsigned long)seed);
		uint64_t x = seed * 0x9e3779b97f4a7c15u;
		struct fake *f = fake_new();
		for (int g = 0; g < NG; g++)
			for (int s = 0; s < NS; s++) {
				x = x * 6364136223846793005u + 1;
				f->g[g].mode[s] = (enum mode)(x >> 33) % 4;
				f->g[g].hint[s] = (int)((x >> 40) % 4) - 1;
			}
		f->g[0].mode[0] = S_LEADER;
		f->g[1].not_ready = (int)(seed % 3);
		f->g[0].drop = (int)(seed % 2);
		core_new(f, seed);
		uint64_t ids[12];
		for (int i = 0; i < 12; i++)
			ids[i] = start(f, (enum clerk_kv_op)(i % 4),
				       key_in(i % NSHARDS, i / NSHARDS), "v",
				       1000 + 500 * (uint64_t)(i % 5));
		run(f, UINT64_MAX);
		for (int i = 0; i < 12; i++) {
			const struct clerk_kv_result *r = result_of(f, ids[i]);
			cr_assert(r->status == STATUS_OK ||
					  r->status == STATUS_NOT_FOUND ||
					  r->status == STATUS_TIMEOUT,
				  "seed %lu op %d: %s", (unsigned long)seed, i,
				  status_name(r->status));
			cr_assert_eq(r->status == STATUS_OK &&
					     i % 4 == CLERK_KV_GET,
				     r->value != NULL);
		}
		cr_assert_leq(f->now, 1000 + 500 * 4, "seed %lu",
			      (unsigned long)seed);
		fake_free(f);
	}
}

/* ================= kvcli's arguments and output helpers =============== */

static int parse_line(const char *env, struct kvcli_args *a, char *err,
		      size_t cap, ...)
{
	char *argv[32];
	va_list ap;
	va_start(ap, cap);
	int argc = cli_proc_vline(argv, 32, "kvcli", ap);
	va_end(ap);
	return kvcli_parse(argc, argv, env, a, err, cap);
}

#define M "--masters=127.0.0.1:7001,127.0.0.1:7002"

Test(kvcli_args, parses_each_command)
{
	struct kvcli_args a;
	char err[512];
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "get", "k1",
				NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, KVCLI_GET);
	cr_assert_str_eq(a.key, "k1");
	cr_assert_eq(a.klen, 2);
	cr_assert_eq(a.timeout_ms, KVCLI_TIMEOUT_MS_DEFAULT);
	cr_assert_not(a.json);
	cr_assert_str_eq(a.masters, "127.0.0.1:7001,127.0.0.1:7002");
	cr_assert_not(a.masters_from_env);
	kvcli_args_release(&a);

	/* Flags after the command; masters from the environment. */
	cr_assert_eq(parse_line("h:1,h:2", &a, err, sizeof(err), "put", "k",
				"hello world", "--timeout", "250", "--json",
				NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, KVCLI_PUT);
	cr_assert_str_eq(a.value, "hello world");
	cr_assert_eq(a.vlen, 11);
	cr_assert_eq(a.timeout_ms, 250);
	cr_assert(a.json);
	cr_assert(a.masters_from_env);
	cr_assert_str_eq(a.masters, "h:1,h:2");
	kvcli_args_release(&a);

	/* --masters wins over the environment. */
	cr_assert_eq(parse_line("h:1", &a, err, sizeof(err), "append", "k",
				M, NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, KVCLI_APPEND);
	cr_assert_null(a.value, "no VALUE: stdin");
	cr_assert_not(a.masters_from_env);
	kvcli_args_release(&a);

	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "put", "k", "-",
				NULL),
		     STATUS_OK, "%s", err);
	cr_assert_null(a.value, "\"-\": stdin");
	kvcli_args_release(&a);

	/* "--" lets a value (or key) start with a dash. */
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "put", "--",
				"-k", "--v", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_str_eq(a.key, "-k");
	cr_assert_str_eq(a.value, "--v");
	kvcli_args_release(&a);

	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "delete", "k",
				NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, KVCLI_DELETE);
	kvcli_args_release(&a);

	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), "help", NULL),
		     STATUS_OK, "help needs no masters: %s", err);
	cr_assert_eq(a.cmd, KVCLI_HELP);
	kvcli_args_release(&a);
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), "get", "--help",
				NULL),
		     STATUS_OK);
	cr_assert_eq(a.cmd, KVCLI_HELP);
	kvcli_args_release(&a);
}

struct bad_line {
	const char *args[6];
	enum kvcli_cmd cmd;
	const char *says;
};

Test(kvcli_args, bad_lines_say_what_is_wrong)
{
	const struct bad_line cases[] = {
		{{M, NULL}, KVCLI_NONE, "no command"},
		{{M, "frobnicate", "k", NULL}, KVCLI_NONE, "unknown command"},
		{{M, "--frob", "get", "k", NULL}, KVCLI_NONE, "--frob"},
		{{M, "--timeout", "0", "get", "k", NULL}, KVCLI_NONE,
		 "--timeout"},
		{{M, "--timeout", "soon", "get", "k", NULL}, KVCLI_NONE,
		 "--timeout"},
		{{M, "get", "k", "--timeout", NULL}, KVCLI_NONE,
		 "missing its value"},
		{{"get", "k", NULL}, KVCLI_GET, "SHARDKV_MASTERS"},
		{{"--masters", "a:1,b", "get", "k", NULL}, KVCLI_GET,
		 "--masters: bad address 'b' (no port)"},
		{{"--masters", "a:1,,b:2", "get", "k", NULL}, KVCLI_GET,
		 "empty"},
		{{"--masters", "a:1,a:1", "get", "k", NULL}, KVCLI_GET,
		 "twice"},
		{{"--masters", "a:0", "get", "k", NULL}, KVCLI_GET,
		 "port '0'"},
		{{M, "get", NULL}, KVCLI_GET, "no KEY"},
		{{M, "get", "", NULL}, KVCLI_GET, "KEY is empty"},
		{{M, "get", "a", "b", NULL}, KVCLI_GET, "expected KEY,"},
		{{M, "delete", "a", "b", NULL}, KVCLI_DELETE, "expected KEY"},
		{{M, "put", "a", "b", "c", NULL}, KVCLI_PUT,
		 "expected KEY [VALUE], got 3"},
		{{M, "append", NULL}, KVCLI_APPEND, "no KEY"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_line *c = &cases[i];
		char *argv[8] = {"kvcli"};
		int argc = 1;
		for (size_t j = 0; c->args[j]; j++)
			argv[argc++] = (char *)c->args[j];
		struct kvcli_args a;
		char err[512];
		int rc = kvcli_parse(argc, argv, NULL, &a, err, sizeof(err));
		cr_assert_eq(rc, STATUS_INVALID_ARGUMENT, "case %zu", i);
		cr_assert(strstr(err, c->says), "case %zu: '%s' lacks '%s'", i,
			  err, c->says);
		cr_assert_eq(a.cmd, c->cmd, "case %zu", i);
		kvcli_args_release(&a);
	}
	cr_assert_str_eq(kvcli_cmd_usage(KVCLI_PUT),
			 "usage: kvcli [FLAGS] put KEY [VALUE|-]");
	char why[256];
	cr_assert_eq(cli_check_masters("[::1]:7001,h.example:65535", why,
					 sizeof(why)),
		     STATUS_OK, "%s", why);
	cr_assert_eq(cli_check_masters("::1:7001", why, sizeof(why)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_eq(cli_check_masters("h:123456", why, sizeof(why)),
		     STATUS_INVALID_ARGUMENT);
}

Test(kvcli_args, exit_codes)
{
	cr_assert_eq(kvcli_exit_code(KV_OK), 0);
	cr_assert_eq(kvcli_exit_code(KV_NOT_FOUND), 1);
	cr_assert_eq(kvcli_exit_code(KV_TIMEOUT), 3);
	cr_assert_eq(kvcli_exit_code(KV_UNAVAILABLE), 3);
	cr_assert_eq(kvcli_exit_code(KV_NO_MEMORY), 3);
	cr_assert_eq(kvcli_exit_code(KV_INTERNAL), 3);
	cr_assert_eq(kvcli_exit_code(KV_TOO_LARGE), 4);
	cr_assert_eq(kvcli_exit_code(KV_INVALID_ARGUMENT), 4);
	for (int s = KV_OK; s <= KV_INTERNAL; s++) {
		cr_assert_str_neq(kv_strerror((enum kv_status)s),
				  "unknown status");
		cr_assert_str_neq(kv_status_name((enum kv_status)s),
				  "UNKNOWN");
	}
}

/* What `fn` writes, as a string. */
static void capture(char *buf, size_t cap,
		    void (*fn)(FILE *, const void *, size_t), const void *b,
		    size_t n)
{
	FILE *f = fmemopen(buf, cap, "w");
	cr_assert_not_null(f);
	fn(f, b, n);
	fclose(f);
}

Test(kvcli_args, json_strings_and_base64)
{
	char out[256];
	capture(out, sizeof(out), kvcli_json_string, "a\"b\\c\n\t\x01\x7f", 9);
	cr_assert_str_eq(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\"");
	capture(out, sizeof(out), kvcli_json_string, "h\xc3\xa9!", 4);
	cr_assert_str_eq(out, "\"h\xc3\xa9!\"", "UTF-8 as is");
	capture(out, sizeof(out), kvcli_json_string, "x\xff" "y", 3);
	cr_assert_str_eq(out, "\"x\\ufffdy\"");
	capture(out, sizeof(out), kvcli_json_string, "a\0b", 3);
	cr_assert_str_eq(out, "\"a\\u0000b\"");

	cr_assert(kvcli_utf8_valid("h\xc3\xa9", 3));
	cr_assert(kvcli_utf8_valid("\xf0\x9f\x98\x80", 4));
	cr_assert_not(kvcli_utf8_valid("\xc3", 1), "truncated");
	cr_assert_not(kvcli_utf8_valid("\xc0\xaf", 2), "overlong");
	cr_assert_not(kvcli_utf8_valid("\xed\xa0\x80", 3), "surrogate");
	cr_assert_not(kvcli_utf8_valid("\xff", 1));

	const struct {
		const char *in, *out;
	} b64[] = {{"", "\"\""},	 {"f", "\"Zg==\""},
		   {"fo", "\"Zm8=\""},	 {"foo", "\"Zm9v\""},
		   {"foob", "\"Zm9vYg==\""}, {"fooba", "\"Zm9vYmE=\""},
		   {"foobar", "\"Zm9vYmFy\""}};
	for (size_t i = 0; i < sizeof(b64) / sizeof(b64[0]); i++) {
		capture(out, sizeof(out), kvcli_json_base64, b64[i].in,
			strlen(b64[i].in));
		cr_assert_str_eq(out, b64[i].out);
	}
	capture(out, sizeof(out), kvcli_json_base64, "\xff\x00\xfe", 3);
	cr_assert_str_eq(out, "\"/wD+\"");
}

/* ================= fake cluster over gRPC ================= */

/* A shard master answering Query with one configuration, and two
 * groups: 100 (server 0 a follower pointing at server 1, the leader)
 * owning shards 0-1, and 101 (one server) owning shards 2-3. One store
 * for all; dedup per client id; checks that a client id's writes come in
 * seq order (a retry repeats its seq, never goes back). */
#define NET_KEYS 64
#define NET_CIDS 64

struct net_entry {
	char key[64];
	size_t klen;
	uint8_t *value; /* malloc'd */
	size_t vlen;
};

struct net_cid {
	uint64_t client_id, seq;
	int status;
};

struct net {
	pthread_mutex_t mu;
	struct rpc_server *master;
	struct rpc_server *kv[3];
	char master_addr[32];
	char kv_addr[3][32];
	bool wrong_group_once; /* server 2 says WRONG_GROUP first */

	struct net_entry store[NET_KEYS];
	size_t n_store;
	struct net_cid cids[NET_CIDS];
	size_t n_cids;
	int seq_violations;
	int queries, requests[3];
};

struct net_ctx {
	struct net *n;
	int server;
	int op;
};

static struct net_ctx net_ctxs[3][4];

static uint32_t net_owner(uint32_t shard)
{
	return shard < 2 ? 100 : 101;
}

static void net_query(void *ctx, struct rpc_call *call, ProtobufCMessage *req)
{
	struct net *n = ctx;
	codec_free(req);
	pthread_mutex_lock(&n->mu);
	n->queries++;
	pthread_mutex_unlock(&n->mu);
	uint64_t shards[NSHARDS];
	for (uint32_t s = 0; s < NSHARDS; s++)
		shards[s] = net_owner(s);
	char *s100[] = {n->kv_addr[0], n->kv_addr[1]};
	char *s101[] = {n->kv_addr[2]};
	Skv__Group g[2] = {SKV__GROUP__INIT, SKV__GROUP__INIT};
	g[0].gid = 100;
	g[0].n_servers = 2;
	g[0].servers = s100;
	g[1].gid = 101;
	g[1].n_servers = 1;
	g[1].servers = s101;
	Skv__Group *gp[] = {&g[0], &g[1]};
	Skv__Config cfg = SKV__CONFIG__INIT;
	cfg.num = 1;
	cfg.n_shards = NSHARDS;
	cfg.shards = shards;
	cfg.n_groups = 2;
	cfg.groups = gp;
	Skv__SmReply r = SKV__SM_REPLY__INIT;
	r.config = &cfg;
	rpc_call_reply(call, &r.base);
}

static struct net_entry *net_find(struct net *n, const ProtobufCBinaryData *k,
				  bool create)
{
	for (size_t i = 0; i < n->n_store; i++)
		if (n->store[i].klen == k->len &&
		    memcmp(n->store[i].key, k->data, k->len) == 0)
			return &n->store[i];
	if (!create || n->n_store == NET_KEYS || k->len > 64)
		return NULL;
	struct net_entry *e = &n->store[n->n_store++];
	memcpy(e->key, k->data, k->len);
	e->klen = k->len;
	e->value = NULL;
	e->vlen = 0;
	return e;
}

static void net_kv(void *ctx, struct rpc_call *call, ProtobufCMessage *req)
{
	struct net_ctx *c = ctx;
	struct net *n = c->n;
	const Skv__KvRequest *r = (const Skv__KvRequest *)req;
	Skv__KvReply rep = SKV__KV_REPLY__INIT;
	char hint[32] = "";
	uint8_t *copy = NULL;
	pthread_mutex_lock(&n->mu);
	n->requests[c->server]++;
	uint32_t shard = shard_for_key(r->key.data, r->key.len, NSHARDS);
	uint32_t gid = c->server < 2 ? 100 : 101;
	if (c->server == 0) {
		rep.status = SKV__STATUS__STATUS_NOT_LEADER;
		snprintf(hint, sizeof(hint), "%s", n->kv_addr[1]);
		rep.leader_hint = hint;
		goto out;
	}
	if (net_owner(shard) != gid ||
	    (c->server == 2 && n->wrong_group_once)) {
		n->wrong_group_once = false;
		rep.status = SKV__STATUS__STATUS_WRONG_GROUP;
		goto out;
	}
	if ((int)r->op != c->op) {
		rep.status = SKV__STATUS__STATUS_INVALID_ARGUMENT;
		goto out;
	}
	struct net_entry *e = net_find(n, &r->key, false);
	if (r->op == SKV__OP__OP_GET) {
		if (!e) {
			rep.status = SKV__STATUS__STATUS_NOT_FOUND;
		} else {
			copy = malloc(e->vlen + 1);
			memcpy(copy, e->value ? e->value : (uint8_t *)"",
			       e->vlen);
			rep.value.data = copy;
			rep.value.len = e->vlen;
		}
		goto out;
	}
	struct net_cid *d = NULL;
	for (size_t i = 0; i < n->n_cids; i++)
		if (n->cids[i].client_id == r->client_id)
			d = &n->cids[i];
	if (!d && n->n_cids < NET_CIDS) {
		d = &n->cids[n->n_cids++];
		*d = (struct net_cid){.client_id = r->client_id};
	}
	if (!d || r->seq < d->seq) {
		n->seq_violations++;
		rep.status = SKV__STATUS__STATUS_INTERNAL;
		goto out;
	}
	if (r->seq == d->seq) {
		rep.status = d->status;
		goto out;
	}
	int st = STATUS_OK;
	if (r->op == SKV__OP__OP_DELETE) {
		if (!e) {
			st = STATUS_NOT_FOUND;
		} else {
			free(e->value);
			*e = n->store[--n->n_store];
		}
	} else {
		if (!e)
			e = net_find(n, &r->key, true);
		size_t base = r->op == SKV__OP__OP_APPEND ? e->vlen : 0;
		if (base + r->value.len > SHARD_VALUE_BYTES_MAX) {
			st = STATUS_TOO_LARGE;
		} else {
			e->value = realloc(e->value, base + r->value.len + 1);
			if (r->value.len)
				memcpy(e->value + base, r->value.data,
				       r->value.len);
			e->vlen = base + r->value.len;
		}
	}
	d->seq = r->seq;
	d->status = st;
	rep.status = st;
out:
	pthread_mutex_unlock(&n->mu);
	rpc_call_reply(call, &rep.base);
	free(copy);
	codec_free(req);
}

static void net_start(struct net *n)
{
	memset(n, 0, sizeof(*n));
	pthread_mutex_init(&n->mu, NULL);
	char err[256];
	int port;
	for (int i = 0; i < 3; i++) {
		n->kv[i] = rpc_server_new(NULL);
		cr_assert_not_null(n->kv[i]);
		for (int op = 0; op < 4; op++) {
			net_ctxs[i][op] = (struct net_ctx){n, i, op};
			cr_assert_eq(rpc_server_add_method(
					     n->kv[i], op_paths[op],
					     &skv__kv_request__descriptor,
					     net_kv, &net_ctxs[i][op]),
				     STATUS_OK);
		}
		cr_assert_eq(rpc_server_start(n->kv[i], "127.0.0.1:0", &port,
					      err, sizeof(err)),
			     STATUS_OK, "%s", err);
		snprintf(n->kv_addr[i], sizeof(n->kv_addr[i]), "127.0.0.1:%d",
			 port);
	}
	n->master = rpc_server_new(NULL);
	cr_assert_eq(rpc_server_add_method(n->master, "/skv.ShardMaster/Query",
					   &skv__query_request__descriptor,
					   net_query, n),
		     STATUS_OK);
	cr_assert_eq(rpc_server_start(n->master, "127.0.0.1:0", &port, err,
				      sizeof(err)),
		     STATUS_OK, "%s", err);
	snprintf(n->master_addr, sizeof(n->master_addr), "127.0.0.1:%d", port);
}

static void net_stop(struct net *n)
{
	rpc_server_free(n->master);
	for (int i = 0; i < 3; i++)
		rpc_server_free(n->kv[i]);
	for (size_t i = 0; i < n->n_store; i++)
		free(n->store[i].value);
	pthread_mutex_destroy(&n->mu);
}

/* ================= the clerk library over gRPC ================= */

Test(clerk, open_rejects_bad_masters)
{
	struct kv_clerk *kv = (void *)1;
	char err[256];
	cr_assert_eq(kv_clerk_open("", NULL, &kv, err, sizeof(err)),
		     KV_INVALID_ARGUMENT);
	cr_assert_null(kv);
	cr_assert(strstr(err, "no shard masters"), "%s", err);
	cr_assert_eq(kv_clerk_open("a:1,,b:2", NULL, &kv, err, sizeof(err)),
		     KV_INVALID_ARGUMENT);
	cr_assert(strstr(err, "bad shard master address ''"), "%s", err);
	cr_assert_eq(kv_clerk_open("nohost", NULL, &kv, NULL, 0),
		     KV_INVALID_ARGUMENT);
	kv_clerk_close(NULL);
}

Test(clerk, operations_over_grpc, .timeout = 60)
{
	struct net n;
	net_start(&n);
	n.wrong_group_once = true;
	struct kv_clerk *kv;
	char err[256];
	cr_assert_eq(kv_clerk_open(n.master_addr, NULL, &kv, err, sizeof(err)),
		     KV_OK, "%s", err);
	const char *k100 = key_in(0, 0), *k101 = key_in(2, 0);
	cr_assert_eq(kv_put(kv, k100, strlen(k100), "a", 1, 10000), KV_OK);
	cr_assert_eq(kv_append(kv, k100, strlen(k100), "b", 1, 10000), KV_OK);
	cr_assert_eq(kv_put(kv, k101, strlen(k101), "\0\xff", 2, 10000), KV_OK,
		     "group 101 says WRONG_GROUP once, then serves");
	void *v;
	size_t vlen;
	cr_assert_eq(kv_get(kv, k100, strlen(k100), &v, &vlen, 10000), KV_OK);
	cr_assert_eq(vlen, 2);
	cr_assert_arr_eq(v, "ab", 2);
	kv_free(v);
	cr_assert_eq(kv_get(kv, k101, strlen(k101), &v, &vlen, 0), KV_OK);
	cr_assert_eq(vlen, 2);
	cr_assert_arr_eq(v, "\0\xff", 2, "binary-safe");
	kv_free(v);
	cr_assert_eq(kv_get(kv, "missing", 7, &v, &vlen, 10000), KV_NOT_FOUND);
	cr_assert_null(v);
	cr_assert_eq(vlen, 0);
	cr_assert_eq(kv_delete(kv, k100, strlen(k100), 10000), KV_OK);
	cr_assert_eq(kv_delete(kv, k100, strlen(k100), 10000), KV_NOT_FOUND);
	cr_assert_eq(kv_put(kv, "e", 1, "", 0, 10000), KV_OK);
	cr_assert_eq(kv_get(kv, "e", 1, &v, &vlen, 10000), KV_OK);
	cr_assert_not_null(v, "an empty value is not NULL");
	cr_assert_eq(vlen, 0);
	kv_free(v);

	/* Refused before anything is sent. */
	cr_assert_eq(kv_get(kv, "", 0, &v, &vlen, 1000), KV_INVALID_ARGUMENT);
	static char big[KV_VALUE_BYTES_MAX + 1];
	cr_assert_eq(kv_do(kv, KV_OP_PUT, "k", 1, big, sizeof(big), 1000, NULL,
			   NULL, err, sizeof(err)),
		     KV_TOO_LARGE);
	cr_assert_str_eq(err, "the value is 1048577 bytes; at most 1048576");
	pthread_mutex_lock(&n.mu);
	cr_assert_eq(n.queries, 2, "first config, and once for WRONG_GROUP");
	cr_assert_eq(n.requests[0], 1, "the follower was asked once");
	cr_assert_eq(n.seq_violations, 0);
	pthread_mutex_unlock(&n.mu);

	/* Shut down: later calls return KV_CLOSED at once. */
	kv_clerk_shutdown(kv);
	cr_assert_eq(kv_put(kv, "k", 1, "v", 1, 1000), KV_CLOSED);
	kv_clerk_close(kv);
	net_stop(&n);
}

struct worker {
	struct kv_clerk *kv;
	int idx, ops;
	int failures;
};

enum { WORKERS = 6, WORKER_OPS = 30 };

static void *work(void *arg)
{
	struct worker *w = arg;
	char own[16];
	snprintf(own, sizeof(own), "own%d", w->idx);
	for (int i = 0; i < w->ops; i++) {
		char c = (char)('a' + i % 26);
		if (kv_append(w->kv, own, strlen(own), &c, 1, 20000) != KV_OK)
			w->failures++;
		if (i % 2 == 0 &&
		    kv_append(w->kv, "shared", 6, "x", 1, 20000) != KV_OK)
			w->failures++;
		void *v;
		size_t n;
		if (kv_get(w->kv, own, strlen(own), &v, &n, 20000) != KV_OK ||
		    n != (size_t)i + 1 || ((char *)v)[i] != c)
			w->failures++;
		kv_free(v);
	}
	return NULL;
}

Test(clerk, many_threads_at_once, .timeout = 60)
{
	struct net n;
	net_start(&n);
	struct kv_clerk *kv;
	char err[256];
	struct kv_clerk_opts o = {.attempt_timeout_ms = 2000};
	cr_assert_eq(kv_clerk_open(n.master_addr, &o, &kv, err, sizeof(err)),
		     KV_OK, "%s", err);
	pthread_t th[WORKERS];
	struct worker w[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){kv, i, WORKER_OPS, 0};
		cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].failures, 0, "worker %d", i);
	}
	void *v;
	size_t len;
	cr_assert_eq(kv_get(kv, "shared", 6, &v, &len, 10000), KV_OK);
	cr_assert_eq(len, WORKERS * ((WORKER_OPS + 1) / 2),
		     "every append exactly once");
	kv_free(v);
	pthread_mutex_lock(&n.mu);
	cr_assert_eq(n.seq_violations, 0);
	cr_assert_leq(n.n_cids, WORKERS,
		      "sessions are reused: at most one per concurrent "
		      "writer");
	cr_assert_eq(n.queries, 1, "one configuration for all");
	pthread_mutex_unlock(&n.mu);
	kv_clerk_close(kv);
	net_stop(&n);
}

Test(clerk, unreachable_masters_time_out, .timeout = 60)
{
	int fd;
	char masters[32];
	snprintf(masters, sizeof(masters), "127.0.0.1:%d",
		 cli_proc_refusing_port(&fd));
	struct kv_clerk *kv;
	struct kv_clerk_opts o = {.timeout_ms = 400};
	cr_assert_eq(kv_clerk_open(masters, &o, &kv, NULL, 0), KV_OK);
	char err[256];
	cr_assert_eq(kv_do(kv, KV_OP_GET, "k", 1, NULL, 0, 0, NULL, NULL, err,
			   sizeof(err)),
		     KV_TIMEOUT);
	cr_assert(strstr(err, "no shard master answered"), "%s", err);
	/* Shutdown wakes a caller that waits. */
	kv_clerk_close(kv);
	close(fd);
}

struct blocked {
	struct kv_clerk *kv;
	enum kv_status st;
};

static void *blocked_get(void *arg)
{
	struct blocked *b = arg;
	void *v;
	size_t n;
	b->st = kv_get(b->kv, "k", 1, &v, &n, 60000);
	return NULL;
}

Test(clerk, shutdown_wakes_waiting_callers, .timeout = 60)
{
	int fd;
	char masters[32];
	snprintf(masters, sizeof(masters), "127.0.0.1:%d",
		 cli_proc_refusing_port(&fd));
	struct kv_clerk *kv;
	cr_assert_eq(kv_clerk_open(masters, NULL, &kv, NULL, 0), KV_OK);
	struct blocked b = {kv, KV_OK};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, blocked_get, &b), 0);
	kv_clerk_shutdown(kv);
	pthread_join(th, NULL);
	cr_assert(b.st == KV_CLOSED, "%s", kv_status_name(b.st));
	kv_clerk_close(kv);
	close(fd);
}

/* ================= kvcli, the binary ================= */

/* Runs kvcli with `args` (NULL-terminated), SHARDKV_MASTERS =
 * `env_masters` (or unset), feeding `in[0..in_len)` to its stdin. */
static void run_kvcli(const char *env_masters, const char *const *args,
		      const void *in, size_t in_len, struct cli_proc_out *po)
{
	cli_proc_run(KVCLI_PATH, env_masters, args, in, in_len, po);
}

Test(kvcli_bin, help_and_usage_errors, .timeout = 60)
{
	struct cli_proc_out po;
	run_kvcli(NULL, (const char *[]){"--help", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 0);
	cr_assert(strstr(po.out, "usage: kvcli"), "%s", po.out);
	cr_assert(strstr(po.out, "SHARDKV_MASTERS"), "env documented");
	cr_assert(strstr(po.out, "exit status"));

	run_kvcli("h:1", (const char *[]){"get", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 2);
	cr_assert_str_eq(po.err, "kvcli: get: no KEY given\n"
				 "usage: kvcli [FLAGS] get KEY\n");
	cr_assert_str_eq(po.out, "");

	run_kvcli(NULL, (const char *[]){"get", "k", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 2, "no masters anywhere");
	cr_assert(strstr(po.err, "--masters") &&
			  strstr(po.err, "SHARDKV_MASTERS"),
		  "%s", po.err);

	run_kvcli(NULL,
		  (const char *[]){"--json", "--masters", "h", "get", "k",
				   NULL},
		  NULL, 0, &po);
	cr_assert_eq(po.code, 2);
	cr_assert(strstr(po.out, "{\"ok\":false,\"status\":\"USAGE\""), "%s",
		  po.out);
	cr_assert(strstr(po.err, "kvcli: --masters: bad address 'h' (no "
				 "port)"),
		  "%s", po.err);

	run_kvcli("h:1", (const char *[]){"rm", "k", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 2);
	cr_assert(strstr(po.err, "unknown command 'rm'"), "%s", po.err);
}

Test(kvcli_bin, unreachable_masters_exit_3, .timeout = 60)
{
	int fd;
	char masters[32];
	snprintf(masters, sizeof(masters), "127.0.0.1:%d",
		 cli_proc_refusing_port(&fd));
	struct cli_proc_out po;
	run_kvcli(masters,
		  (const char *[]){"--timeout", "500", "put", "k", "v", NULL},
		  NULL, 0, &po);
	cr_assert_eq(po.code, 3, "%s", po.err);
	cr_assert(strstr(po.err, "kvcli: put 'k': no answer in time (TIMEOUT "
				 "after 500 ms): no configuration yet: no "
				 "shard master answered"),
		  "%s", po.err);
	cr_assert(strstr(po.err, masters), "%s", po.err);
	cr_assert(strstr(po.err, "from $SHARDKV_MASTERS"), "%s", po.err);
	cr_assert_eq(strchr(po.err, '\n'), po.err + strlen(po.err) - 1,
		     "one line: %s", po.err);
	cr_assert_str_eq(po.out, "");
	close(fd);
}

Test(kvcli_bin, talks_to_a_cluster, .timeout = 60)
{
	struct net n;
	net_start(&n);
	const char *m = n.master_addr;
	struct cli_proc_out po;

	run_kvcli(m, (const char *[]){"put", "greeting", "hello", NULL}, NULL,
		  0, &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	cr_assert_eq(po.out_len, 0, "a put prints nothing");
	cr_assert_str_eq(po.err, "");
	run_kvcli(NULL,
		  (const char *[]){"--masters", m, "append", "greeting",
				   "--", "-world", NULL},
		  NULL, 0, &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	run_kvcli(m, (const char *[]){"get", "greeting", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	cr_assert_eq(po.out_len, 11);
	cr_assert_str_eq(po.out, "hello-world", "exactly the bytes");
	run_kvcli(m, (const char *[]){"get", "--json", "greeting", NULL},
		  NULL, 0, &po);
	cr_assert_str_eq(po.out, "{\"ok\":true,\"value\":\"hello-world\"}\n");

	/* A binary value from stdin, back byte for byte. */
	uint8_t bin[3000];
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 7 + (i >> 8));
	bin[0] = 0;
	bin[1] = 0xff;
	run_kvcli(m, (const char *[]){"put", "blob", NULL}, bin, sizeof(bin),
		  &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	run_kvcli(m, (const char *[]){"get", "blob", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	cr_assert_eq(po.out_len, sizeof(bin));
	cr_assert_arr_eq(po.out, bin, sizeof(bin));
	run_kvcli(m, (const char *[]){"--json", "get", "blob", NULL}, NULL, 0,
		  &po);
	cr_assert(strncmp(po.out, "{\"ok\":true,\"value_base64\":\"AP8", 30) ==
			  0,
		  "%s", po.out);
	run_kvcli(m, (const char *[]){"append", "blob", "-", NULL}, "!", 1,
		  &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	run_kvcli(m, (const char *[]){"put", "empty", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 0, "an empty stdin is an empty value: %s",
		     po.err);
	run_kvcli(m, (const char *[]){"get", "empty", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	cr_assert_eq(po.out_len, 0);

	/* Not found: exit 1. */
	run_kvcli(m, (const char *[]){"get", "nope", NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 1);
	cr_assert_str_eq(po.err, "kvcli: get: key 'nope' not found\n");
	cr_assert_eq(po.out_len, 0);
	run_kvcli(m, (const char *[]){"--json", "delete", "nope", NULL}, NULL,
		  0, &po);
	cr_assert_eq(po.code, 1);
	cr_assert(strstr(po.out, "\"status\":\"NOT_FOUND\""), "%s", po.out);
	run_kvcli(m, (const char *[]){"delete", "greeting", "--json", NULL},
		  NULL, 0, &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	cr_assert_str_eq(po.out, "{\"ok\":true}\n");

	/* Too large: exit 4, nothing sent. */
	size_t big_len = SHARD_VALUE_BYTES_MAX + 10;
	char *big = malloc(big_len);
	memset(big, 'b', big_len);
	run_kvcli(m, (const char *[]){"put", "big", NULL}, big, big_len, &po);
	cr_assert_eq(po.code, 4, "%s", po.err);
	cr_assert(strstr(po.err, "longer than 1048576 bytes"), "%s", po.err);
	free(big);
	char long_key[SHARD_KEY_BYTES_MAX + 2];
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	run_kvcli(m, (const char *[]){"get", long_key, NULL}, NULL, 0, &po);
	cr_assert_eq(po.code, 4, "%s", po.err);
	cr_assert(strstr(po.err, "refused: the key is 4097 bytes; at most "
				 "4096"),
		  "%s", po.err);
	pthread_mutex_lock(&n.mu);
	cr_assert_eq(n.seq_violations, 0);
	pthread_mutex_unlock(&n.mu);
	net_stop(&n);
}
