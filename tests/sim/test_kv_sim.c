/*
 * The shardkv scenarios of TESTPLAN.md, in the simulator: a shard master
 * of three, replica groups of three (gids 100, 101, 102) running the
 * production service over RocksDB, clerks running the production
 * key/value clerk core, faults on the network and on the replicas.
 * Every scenario runs over many seeds (SIM_SEEDS=k; SIM_SEED=n replays
 * one with a full trace); kv_cluster checks its invariants after every
 * event and every clerk answer, and each scenario's history must pass
 * the linearizability checker (a history the checker cannot decide in
 * its budget is counted, printed, and passes).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/shard.h"
#include "common/status.h"
#include "tests/sim/kv_cluster.h"
#include "tests/sim/sim.h"
#include "tests/sim/sim_assert.h"

#define NSHARDS 10
#define G0 100
#define G1 101
#define G2 102

/* NET_ALTERNATE: reliable for odd seeds, unreliable for even ones. */
enum net { NET_RELIABLE, NET_UNRELIABLE, NET_LONG, NET_ALTERNATE };

/* ---- the environment ---- */

#define APP_CLERKS_MAX 8
#define APP_KEYS_MAX 16

/* One append of a unique token by an appender. */
struct token {
	uint32_t clerk, seq, key;
	uint64_t op_id;
	int state; /* TOK_PENDING, TOK_ACKED, TOK_UNKNOWN */
};

enum { TOK_PENDING, TOK_ACKED, TOK_UNKNOWN };

/* Clerks 0..n-1 each append tokens "<clerk>.<seq>;" to random keys (and
 * now and then read one), one operation at a time, until stopped. */
struct appenders {
	bool on;	/* the callback handles these clerks */
	bool running;	/* start a new append when one ends */
	size_t n_clerks;
	size_t n_keys;
	char keys[APP_KEYS_MAX][32];
	uint32_t next_seq[APP_CLERKS_MAX];
	uint64_t cur[APP_CLERKS_MAX];	/* op running on each clerk */
	size_t cur_tok[APP_CLERKS_MAX]; /* its token, SIZE_MAX for a Get */
	struct token *toks;
	size_t n_toks, cap_toks;
	uint64_t timeouts;
	uint64_t deadline_ms; /* per append */
};

/* Random operations of clerks 0..n-1 on a few keys (random_ops). */
struct random_ops {
	bool on, running;
	size_t n_clerks, n_keys;
	char keys[APP_KEYS_MAX][32];
	uint64_t n_done, n_timeouts;
	uint64_t deadline_ms;
	uint64_t next_value;
};

/* Results of a batch of concurrent operations, by op id. */
struct batch {
	bool on;
	size_t n;
	uint64_t op_id[64];
	int status[64];
	struct buf value[64];
};

/* n keys spread over the shards round robin, with their expected
 * values. */
struct kvset {
	size_t n;
	char key[64][32];
	struct buf val[64];
};

struct env {
	struct sim *sim;
	struct kv_cluster *c;
	struct sim_rng rng; /* the workload's own stream */
	uint64_t hash;	    /* of the trace, when hashed */
	struct kvset s;	    /* the scenario's keys (run_scenario) */
	struct appenders app;
	struct random_ops rops;
	struct batch batch;
};

static void on_done(void *arg, const struct kv_cluster_done *d);

/* `hashed`: every trace line goes into e->hash instead of stderr. */
static void setup_traced(struct env *e, uint64_t seed, enum net net,
			 const struct kv_cluster_opts *o, bool hashed)
{
	memset(e, 0, sizeof(*e));
	e->hash = SIM_TRACE_HASH_INIT;
	e->sim = sim_new(seed);
	cr_assert(e->sim);
	sim_rng_seed(&e->rng, seed * 7919 + 17);
	sim_trace_setup(e->sim, kv_cluster_format, hashed ? &e->hash : NULL);
	if (net == NET_ALTERNATE)
		net = seed % 2 ? NET_RELIABLE : NET_UNRELIABLE;
	if (net != NET_RELIABLE) {
		struct sim_net n = sim_net_unreliable();
		if (net == NET_LONG)
			sim_net_long_reordering(&n);
		sim_net_set(e->sim, &n);
	}
	struct kv_cluster_opts d = { .n_groups = 3, .n_clerks = 2 };
	struct kv_cluster_opts oo = o ? *o : d;
	/* Every scenario: 10 shards, and timeouts short enough that a lost
	 * message costs little virtual time (and retries are many). */
	oo.nshards = NSHARDS;
	if (!oo.clerk_attempt_timeout_ms)
		oo.clerk_attempt_timeout_ms = 400;
	if (!oo.call_timeout_ms)
		oo.call_timeout_ms = 400;
	e->c = kv_cluster_new(e->sim, &oo);
	cr_assert(e->c);
	for (size_t i = 0; i < 64; i++)
		buf_init(&e->batch.value[i]);
	kv_cluster_set_on_done(e->c, on_done, e);
}

static void setup(struct env *e, uint64_t seed, enum net net,
		  const struct kv_cluster_opts *o)
{
	setup_traced(e, seed, net, o, false);
}

static void teardown(struct env *e)
{
	kv_cluster_free(e->c);
	sim_free(e->sim);
	mem_free(e->app.toks);
	for (size_t i = 0; i < 64; i++)
		buf_free(&e->batch.value[i]);
	for (size_t i = 0; i < e->s.n; i++)
		buf_free(&e->s.val[i]);
}

#define FAILURE(e) kv_cluster_failure((e)->c)

#define CHECK(e, cond, ...) SIM_ASSERT_SEED(cond, (e)->sim, __VA_ARGS__)

#define NO_FAILURE(e)                                                   \
	do {                                                            \
		const char *f_ = FAILURE(e);                            \
		SIM_ASSERT_SEED(!f_, (e)->sim, "%s", f_ ? f_ : "");     \
	} while (0)

#define OK(e, expr)                                                       \
	do {                                                              \
		int rc_ = (expr);                                         \
		NO_FAILURE(e);                                            \
		SIM_ASSERT_SEED(rc_ == STATUS_OK, (e)->sim, "%s: %s",     \
				#expr, status_name(rc_));                 \
	} while (0)

static uint64_t unknown_histories;

/* The history must be linearizable; one the checker cannot decide in
 * its budget is counted and passes. */
static void check_history(struct env *e)
{
	struct lin_report r;
	enum lin_result res = kv_cluster_check_history(e->c, &r);
	if (res == LIN_ILLEGAL)
		fprintf(stderr, "%s\n", r.explain ? r.explain : "");
	if (res == LIN_UNKNOWN) {
		unknown_histories++;
		cr_log_info("seed %" PRIu64 ": history of %zu ops on %zu keys "
			    "undecided (%zu keys out of budget); %" PRIu64
			    " undecided in this test",
			    sim_seed(e->sim), r.ops, r.keys, r.unknown_keys,
			    unknown_histories);
	}
	lin_report_free(&r);
	NO_FAILURE(e);
}

static void run_for(struct env *e, uint64_t ms)
{
	sim_run_for(e->sim, ms);
	NO_FAILURE(e);
}

/* ---- keys and values ---- */

/* The j-th key of `shard` (by the clerk's hash), into out. */
static void key_for(uint32_t shard, size_t j, char *out, size_t cap)
{
	for (uint32_t n = 0;; n++) {
		snprintf(out, cap, "s%u-%zu-%u", shard, j, n);
		if (shard_for_key(out, strlen(out), NSHARDS) == shard)
			return;
	}
}

static void kvset_init(struct kvset *s, size_t n)
{
	cr_assert(n <= 64);
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		key_for((uint32_t)(i % NSHARDS), i / NSHARDS, s->key[i],
			sizeof(s->key[i]));
		buf_init(&s->val[i]);
	}
}

static void random_value(struct env *e, size_t len, struct buf *out)
{
	buf_reset(out);
	for (size_t i = 0; i < len; i++) {
		uint8_t ch = (uint8_t)('a' + sim_rng_range(&e->rng, 0, 26));
		if (buf_append(out, &ch, 1))
			abort();
	}
}

/* Puts a fresh random value of `len` bytes on every key. */
static void put_all(struct env *e, size_t k, struct kvset *s, size_t len)
{
	for (size_t i = 0; i < s->n; i++) {
		random_value(e, len, &s->val[i]);
		OK(e, kv_cluster_do(e->c, k, CLERK_KV_PUT, s->key[i],
				    strlen(s->key[i]), s->val[i].data,
				    s->val[i].len, 60000, NULL));
	}
}

/* Appends a short random suffix to every key. */
static void append_all(struct env *e, size_t k, struct kvset *s)
{
	struct buf v;
	buf_init(&v);
	for (size_t i = 0; i < s->n; i++) {
		random_value(e, 5, &v);
		OK(e, kv_cluster_do(e->c, k, CLERK_KV_APPEND, s->key[i],
				    strlen(s->key[i]), v.data, v.len, 60000,
				    NULL));
		if (buf_append(&s->val[i], v.data, v.len))
			abort();
	}
	buf_free(&v);
}

/* Starts one Get per key of `s` on clerk k at once (deadline
 * `timeout_ms`) and runs until all ended; results in e->batch. */
static void get_batch(struct env *e, size_t k, const struct kvset *s,
		      uint64_t timeout_ms)
{
	struct batch *b = &e->batch;
	b->on = true;
	b->n = s->n;
	for (size_t i = 0; i < s->n; i++) {
		b->status[i] = -1;
		OK(e, kv_cluster_start(e->c, k, CLERK_KV_GET, s->key[i],
				       strlen(s->key[i]), NULL, 0, timeout_ms,
				       &b->op_id[i]));
	}
	CHECK(e, kv_cluster_wait_idle(e->c, sim_now_ms(e->sim) + timeout_ms +
						    2000),
	      "gets do not end: %s", FAILURE(e) ? FAILURE(e) : "");
	b->on = false;
}

static bool same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len &&
	       (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Every key of `s` reads exactly its expected value. */
static void check_all(struct env *e, size_t k, const struct kvset *s)
{
	get_batch(e, k, s, 60000);
	for (size_t i = 0; i < s->n; i++) {
		const struct buf *v = &e->batch.value[i];
		CHECK(e, e->batch.status[i] == STATUS_OK,
		      "get %s: %s", s->key[i],
		      status_name(e->batch.status[i]));
		char got[64], want[64];
		CHECK(e, same(v, &s->val[i]), "get %s: %s, want %s",
		      s->key[i], lin_bytes_str(v->data, v->len, got, 64),
		      lin_bytes_str(s->val[i].data, s->val[i].len, want, 64));
	}
}

/* ---- one scenario over many seeds ---- */

/* How a scenario's env is made, per seed. */
struct scenario {
	uint64_t seeds;		  /* how many by default (SIM_SEEDS=k) */
	enum net net;
	struct kv_cluster_opts o; /* n_groups 0: 3 groups, 2 clerks */
	size_t n_keys;		  /* e->s: keys over the shards */
};

/* For each seed: an env, the scenario's body, then its history must be
 * linearizable. */
static void run_scenario(const struct scenario *sc,
			 void (*body)(struct env *e))
{
	SIM_FOR_SEEDS(sc->seeds)
	{
		struct env e;
		setup(&e, seed, sc->net, sc->o.n_groups ? &sc->o : NULL);
		kvset_init(&e.s, sc->n_keys);
		body(&e);
		check_history(&e);
		teardown(&e);
	}
	SIM_END_SEEDS();
}

/* SCENARIO(name, .seeds = n, ...) { body on `e` } */
#define SCENARIO(name, ...)                                               \
	static void sc_##name(struct env *e);                             \
	Test(kv_sim, name)                                                \
	{                                                                 \
		run_scenario(&(struct scenario){ __VA_ARGS__ }, sc_##name); \
	}                                                                 \
	static void sc_##name(struct env *e)

/* SEEDED(name, n, fn, args...): test `name` runs fn(seed, args...) for
 * each of n seeds (its args may use `seed`). */
#define SEEDED(name, n, fn, ...)                                          \
	Test(kv_sim, name)                                                \
	{                                                                 \
		SIM_FOR_SEEDS(n) fn(seed, __VA_ARGS__);                   \
		SIM_END_SEEDS();                                          \
	}

/* ---- the shard master ---- */

static Skv__Config *latest(struct env *e)
{
	Skv__Config *cfg;
	OK(e, sm_cluster_query(kv_cluster_sm(e->c), 0, -1, &cfg));
	return cfg;
}

static void join(struct env *e, uint64_t gid)
{
	OK(e, kv_cluster_join(e->c, &gid, 1));
}

static void leave(struct env *e, uint64_t gid)
{
	OK(e, kv_cluster_leave(e->c, &gid, 1));
}

/* Every up replica of `gids` reaches the shard master's latest
 * configuration and finishes its moves. */
static void settle(struct env *e, const uint64_t *gids, size_t n)
{
	uint64_t num = kv_cluster_sm_latest(e->c);
	CHECK(e, kv_cluster_wait_config(e->c, gids, n, num,
					sim_now_ms(e->sim) + 60000),
	      "groups do not reach configuration %" PRIu64 ": %s", num,
	      FAILURE(e) ? FAILURE(e) : "");
	/* Then each of their up replicas serves exactly its shards. */
	Skv__Config *cfg = latest(e);
	for (size_t j = 0; j < n; j++)
		for (size_t i = 0; i < 3; i++) {
			const struct skv *k =
				kv_cluster_state(e->c, gids[j], i);
			if (!k || skv_config_num(k) != cfg->num)
				continue;
			for (uint32_t sh = 0; sh < NSHARDS; sh++)
				CHECK(e, skv_serves(k, sh) ==
						 (cfg->shards[sh] == gids[j]),
				      "gid %" PRIu64 " replica %zu %s shard "
				      "%u of gid %" PRIu64 " in configuration "
				      "%" PRIu64,
				      gids[j], i,
				      skv_serves(k, sh) ? "serves"
							: "does not serve",
				      sh, cfg->shards[sh], cfg->num);
		}
	sm_cluster_config_free(cfg);
}

static const uint64_t all_gids[] = { G0, G1, G2 };

/* ---- the completion callback ---- */

static void app_next(struct env *e, size_t k);
static void rops_next(struct env *e, size_t k);

static void on_done(void *arg, const struct kv_cluster_done *d)
{
	struct env *e = arg;
	if (e->batch.on)
		for (size_t i = 0; i < e->batch.n; i++)
			if (e->batch.op_id[i] == d->op_id &&
			    e->batch.status[i] == -1) {
				e->batch.status[i] = d->status;
				if (buf_set(&e->batch.value[i], d->out,
					    d->outlen))
					abort();
			}
	struct appenders *a = &e->app;
	if (a->on && d->clerk < a->n_clerks && a->cur[d->clerk] == d->op_id) {
		if (a->cur_tok[d->clerk] != SIZE_MAX) {
			struct token *t = &a->toks[a->cur_tok[d->clerk]];
			t->state = d->status == STATUS_OK ? TOK_ACKED
							  : TOK_UNKNOWN;
		}
		a->timeouts += d->status == STATUS_TIMEOUT;
		if (a->running)
			app_next(e, d->clerk);
	}
	struct random_ops *r = &e->rops;
	if (r->on && d->clerk < r->n_clerks) {
		r->n_done++;
		r->n_timeouts += d->status == STATUS_TIMEOUT;
		if (r->running)
			rops_next(e, d->clerk);
	}
}

/* ---- appenders: exactly-once appends of unique tokens ---- */

static void app_next(struct env *e, size_t k)
{
	struct appenders *a = &e->app;
	if (sim_rng_chance(&e->rng, 0.25)) {
		/* A Get now and then: it checks values on the way, and it
		 * pins the order of appends for the checker. */
		const char *key = a->keys[sim_rng_range(&e->rng, 0, a->n_keys)];
		a->cur_tok[k] = SIZE_MAX;
		if (kv_cluster_start(e->c, k, CLERK_KV_GET, key, strlen(key),
				     NULL, 0, a->deadline_ms, &a->cur[k]))
			kv_cluster_fail(e->c, "appender %zu cannot start", k);
		return;
	}
	if (a->n_toks == a->cap_toks) {
		size_t cap = a->cap_toks ? a->cap_toks * 2 : 256;
		struct token *t = mem_realloc(a->toks, cap * sizeof(*t));
		if (!t)
			abort();
		a->toks = t;
		a->cap_toks = cap;
	}
	struct token *t = &a->toks[a->n_toks];
	*t = (struct token){
		.clerk = (uint32_t)k, .seq = ++a->next_seq[k],
		.key = (uint32_t)sim_rng_range(&e->rng, 0, a->n_keys),
		.state = TOK_PENDING,
	};
	char tok[32];
	snprintf(tok, sizeof(tok), "%u.%u;", t->clerk, t->seq);
	const char *key = a->keys[t->key];
	if (kv_cluster_start(e->c, k, CLERK_KV_APPEND, key, strlen(key), tok,
			     strlen(tok), a->deadline_ms, &t->op_id)) {
		kv_cluster_fail(e->c, "appender %zu cannot start", k);
		return;
	}
	a->cur[k] = t->op_id;
	a->cur_tok[k] = a->n_toks++;
}

static void app_start(struct env *e, size_t n_clerks, size_t n_keys,
		      uint64_t deadline_ms)
{
	struct appenders *a = &e->app;
	cr_assert(n_clerks <= APP_CLERKS_MAX && n_keys <= APP_KEYS_MAX);
	a->on = a->running = true;
	a->n_clerks = n_clerks;
	a->n_keys = n_keys;
	a->deadline_ms = deadline_ms;
	for (size_t i = 0; i < n_keys; i++)
		key_for((uint32_t)(i % NSHARDS), 100 + i / NSHARDS, a->keys[i],
			sizeof(a->keys[i]));
	for (size_t k = 0; k < n_clerks; k++)
		app_next(e, k);
}

static void app_stop(struct env *e)
{
	e->app.running = false;
	CHECK(e, kv_cluster_wait_idle(e->c, sim_now_ms(e->sim) +
						    e->app.deadline_ms + 5000),
	      "appends do not end: %s", FAILURE(e) ? FAILURE(e) : "");
}

/* The final value of every key: each acknowledged token exactly once,
 * each unanswered one at most once, nothing else, and one clerk's
 * acknowledged tokens in the order it appended them. */
static void app_check(struct env *e, size_t k)
{
	struct appenders *a = &e->app;
	struct kvset s;
	s.n = a->n_keys;
	for (size_t i = 0; i < a->n_keys; i++)
		memcpy(s.key[i], a->keys[i], sizeof(s.key[i]));
	get_batch(e, k, &s, 60000);
	uint8_t *seen = mem_calloc(a->n_toks ? a->n_toks : 1, 1);
	cr_assert(seen);
	for (size_t i = 0; i < a->n_keys; i++) {
		int st = e->batch.status[i];
		CHECK(e, st == STATUS_OK || st == STATUS_NOT_FOUND,
		      "final get %s: %s", a->keys[i], status_name(st));
		const struct buf *v = &e->batch.value[i];
		uint32_t last[APP_CLERKS_MAX] = { 0 };
		size_t p = 0;
		while (st == STATUS_OK && p < v->len) {
			unsigned ck, seq;
			int used = 0;
			char tmp[32];
			size_t q = p;
			while (q < v->len && v->data[q] != ';')
				q++;
			CHECK(e, q < v->len && q - p < sizeof(tmp),
			      "key %s: value ends in a torn token", a->keys[i]);
			memcpy(tmp, v->data + p, q - p);
			tmp[q - p] = '\0';
			CHECK(e, sscanf(tmp, "%u.%u%n", &ck, &seq, &used) ==
						 2 &&
					 (size_t)used == q - p &&
					 ck < a->n_clerks,
			      "key %s: garbage token '%s'", a->keys[i], tmp);
			/* Tokens are in append order per clerk. */
			size_t t = 0;
			while (t < a->n_toks && !(a->toks[t].clerk == ck &&
						       a->toks[t].seq == seq))
				t++;
			CHECK(e, t < a->n_toks && a->toks[t].key == i,
			      "key %s: token %u.%u never appended to it",
			      a->keys[i], ck, seq);
			CHECK(e, !seen[t], "key %s: token %u.%u applied twice",
			      a->keys[i], ck, seq);
			seen[t] = 1;
			if (a->toks[t].state == TOK_ACKED) {
				CHECK(e, seq > last[ck],
				      "key %s: clerk %u's token %u after %u",
				      a->keys[i], ck, seq, last[ck]);
				last[ck] = seq;
			}
			p = q + 1;
		}
	}
	size_t acked = 0;
	for (size_t t = 0; t < a->n_toks; t++) {
		const struct token *tk = &a->toks[t];
		CHECK(e, tk->state != TOK_PENDING, "token %u.%u never ended",
		      tk->clerk, tk->seq);
		if (tk->state == TOK_ACKED) {
			acked++;
			CHECK(e, seen[t],
			      "acknowledged token %u.%u lost (key %s)",
			      tk->clerk, tk->seq, a->keys[tk->key]);
		}
	}
	mem_free(seen);
	CHECK(e, acked > 0, "no append was acknowledged");
	cr_log_info("seed %" PRIu64 ": %zu appends, %zu acknowledged, %" PRIu64
		    " timed out",
		    sim_seed(e->sim), a->n_toks, acked, a->timeouts);
}

/* ---- static shards ---- */

static uint64_t owner(const Skv__Config *cfg, const char *key)
{
	return cfg->shards[shard_for_key(key, strlen(key), NSHARDS)];
}

/* With one of two groups down, exactly the other group's keys are
 * served; all of them once it is back. */
SCENARIO(static_shards, .seeds = 8, .net = NET_ALTERNATE, .n_keys = 20)
{
	join(e, G0);
	join(e, G1);
	put_all(e, 0, &e->s, 8);
	settle(e, all_gids, 2);
	check_all(e, 0, &e->s);
	Skv__Config *cfg = latest(e);
	kv_cluster_crash_group(e->c, G1);
	get_batch(e, 1, &e->s, 10000);
	size_t served = 0;
	for (size_t i = 0; i < e->s.n; i++) {
		bool mine = owner(cfg, e->s.key[i]) == G0;
		int st = e->batch.status[i];
		CHECK(e, mine ? st == STATUS_OK : st == STATUS_TIMEOUT,
		      "key %s of gid %" PRIu64 " with %d down: %s",
		      e->s.key[i], owner(cfg, e->s.key[i]), G1,
		      status_name(st));
		served += mine;
	}
	CHECK(e, served > 0 && served < e->s.n,
	      "%zu of %zu keys on gid %d", served, e->s.n, G0);
	sm_cluster_config_free(cfg);
	kv_cluster_restart_group(e->c, G1);
	check_all(e, 1, &e->s);
}

/* ---- join / leave ---- */

SCENARIO(join_leave, .seeds = 8, .net = NET_ALTERNATE, .n_keys = 20)
{
	join(e, G0);
	put_all(e, 0, &e->s, 10);
	append_all(e, 0, &e->s);
	check_all(e, 1, &e->s);
	join(e, G1);
	check_all(e, 1, &e->s);
	append_all(e, 0, &e->s);
	join(e, G2);
	leave(e, G0);
	settle(e, all_gids + 1, 2);
	/* gid 100 left: its data must have moved, it is not needed. */
	kv_cluster_crash_group(e->c, G0);
	check_all(e, 1, &e->s);
	append_all(e, 0, &e->s);
	leave(e, G1);
	settle(e, all_gids + 2, 1);
	kv_cluster_crash_group(e->c, G1);
	check_all(e, 1, &e->s);
	append_all(e, 0, &e->s);
	check_all(e, 1, &e->s);
}

/* ---- snapshot ---- */

enum { MAXLOG = 1000 };
SCENARIO(snapshot, .seeds = 6, .net = NET_RELIABLE, .n_keys = 30,
	 .o = { .n_groups = 3, .n_clerks = 2, .maxlog = MAXLOG,
		.sm_maxlog = MAXLOG })
{
	join(e, G0);
	put_all(e, 0, &e->s, 10);
	join(e, G1);
	append_all(e, 0, &e->s);
	join(e, G2);
	leave(e, G0);
	append_all(e, 0, &e->s);
	leave(e, G1);
	join(e, G0);
	append_all(e, 0, &e->s);
	check_all(e, 1, &e->s);
	settle(e, all_gids, 3);
	/* Everything down at once, shard master too, then up. */
	for (size_t g = 0; g < 3; g++)
		kv_cluster_crash_group(e->c, all_gids[g]);
	for (uint32_t id = 1; id <= 3; id++)
		sm_cluster_crash(kv_cluster_sm(e->c), id);
	run_for(e, 500);
	for (uint32_t id = 1; id <= 3; id++)
		sm_cluster_restart(kv_cluster_sm(e->c), id);
	for (size_t g = 0; g < 3; g++)
		kv_cluster_restart_group(e->c, all_gids[g]);
	check_all(e, 1, &e->s);
	append_all(e, 0, &e->s);
	check_all(e, 1, &e->s);
	size_t peak = kv_cluster_peak_log_bytes(e->c);
	CHECK(e, peak <= 8 * MAXLOG,
	      "a Raft log reached %zu bytes (maxlog %d)", peak, MAXLOG);
	cr_log_info("seed %" PRIu64 ": largest Raft log %zu bytes",
		    sim_seed(e->sim), peak);
}

/* ---- miss change ---- */

/* One server of every group is down during each reconfiguration; once
 * back it catches up (snapshots or log) to the latest configuration. */
SCENARIO(miss_change, .seeds = 6, .net = NET_ALTERNATE, .n_keys = 20,
	 .o = { .n_groups = 3, .n_clerks = 2, .maxlog = 2000 })
{
	join(e, G0);
	put_all(e, 0, &e->s, 10);
	for (size_t down = 0; down < 3; down++) {
		for (size_t g = 0; g < 3; g++)
			kv_cluster_crash(e->c, all_gids[g], down);
		if (down == 0) {
			join(e, G1);
			join(e, G2);
			leave(e, G0);
		} else if (down == 1) {
			join(e, G0);
			leave(e, G1);
		} else {
			join(e, G1);
			leave(e, G2);
		}
		append_all(e, 0, &e->s);
		check_all(e, 1, &e->s);
		for (size_t g = 0; g < 3; g++)
			kv_cluster_restart(e->c, all_gids[g], down);
	}
	/* The servers that missed changes caught up. */
	settle(e, all_gids, 3);
	uint64_t num = kv_cluster_sm_latest(e->c);
	for (size_t g = 0; g < 3; g++)
		for (size_t i = 0; i < 3; i++) {
			const struct skv *k =
				kv_cluster_state(e->c, all_gids[g], i);
			CHECK(e, k && skv_config_num(k) == num,
			      "gid %" PRIu64 " replica %zu at config "
			      "%" PRIu64 ", latest %" PRIu64,
			      all_gids[g], i,
			      k ? skv_config_num(k) : 0, num);
		}
	append_all(e, 0, &e->s);
	check_all(e, 1, &e->s);
}

/* ---- concurrent and unreliable ---- */

/* One random membership change: keeps at least one group joined. */
static void random_change(struct env *e, bool *joined)
{
	size_t n = 0;
	for (size_t g = 0; g < 3; g++)
		n += joined[g];
	size_t g = (size_t)sim_rng_range(&e->rng, 0, 3);
	if (n == 1 && joined[g])
		g = (g + 1) % 3;
	if (!joined[g] || n == 3) {
		if (joined[g] && n == 3) {
			leave(e, all_gids[g]);
			joined[g] = false;
		} else {
			join(e, all_gids[g]);
			joined[g] = true;
		}
	} else if (sim_rng_chance(&e->rng, 0.5)) {
		leave(e, all_gids[g]);
		joined[g] = false;
	} else {
		size_t h = (g + 1) % 3;
		if (!joined[h]) {
			join(e, all_gids[h]);
			joined[h] = true;
		} else {
			leave(e, all_gids[g]);
			joined[g] = false;
		}
	}
}

/*
 * Appenders run while groups join and leave (variant 1), while besides
 * whole groups crash and restart (variant 2), or while every server of
 * every group crashes and restarts at once (variant 3). Appends end
 * definitively (long deadlines), so the final values are exact.
 */
static uint64_t run_concurrent(uint64_t seed, enum net net, int variant,
			       bool hashed)
{
	struct kv_cluster_opts o = {
		.n_groups = 3, .n_clerks = 6,
		.maxlog = variant == 3 ? 4000 : 0,
		.pull_page_bytes = variant == 2 ? 128 : 0,
	};
	struct env e;
	setup_traced(&e, seed, net, &o, hashed);
	bool joined[3] = { true, false, false };
	join(&e, G0);
	app_start(&e, 5, 10, 60000);
	run_for(&e, 300);
	for (int step = 0; step < 6; step++) {
		random_change(&e, joined);
		run_for(&e, sim_rng_range(&e.rng, 100, 600));
		if (variant == 2) {
			uint64_t gid = all_gids[sim_rng_range(&e.rng, 0, 3)];
			kv_cluster_crash_group(e.c, gid);
			run_for(&e, sim_rng_range(&e.rng, 100, 1000));
			kv_cluster_restart_group(e.c, gid);
		} else if (variant == 3) {
			for (size_t g = 0; g < 3; g++)
				kv_cluster_crash_group(e.c, all_gids[g]);
			run_for(&e, sim_rng_range(&e.rng, 50, 500));
			for (size_t g = 0; g < 3; g++)
				kv_cluster_restart_group(e.c, all_gids[g]);
		}
		run_for(&e, sim_rng_range(&e.rng, 100, 500));
	}
	app_stop(&e);
	settle(&e, all_gids, 3);
	app_check(&e, 5);
	check_history(&e);
	uint64_t h = e.hash;
	teardown(&e);
	return h;
}

SEEDED(concurrent_1, 6, run_concurrent, NET_RELIABLE, 1, false)
SEEDED(concurrent_2, 6, run_concurrent, NET_RELIABLE, 2, false)
SEEDED(concurrent_3, 4, run_concurrent, NET_RELIABLE, 3, false)
SEEDED(unreliable_1, 8, run_concurrent, NET_UNRELIABLE, 1, false)
SEEDED(unreliable_2, 6, run_concurrent,
       seed % 2 ? NET_UNRELIABLE : NET_LONG, 2, false)

/* ---- random operations, checked by the linearizability checker ---- */

static void rops_next(struct env *e, size_t k)
{
	struct random_ops *r = &e->rops;
	const char *key = r->keys[sim_rng_range(&e->rng, 0, r->n_keys)];
	uint64_t x = sim_rng_range(&e->rng, 0, 100);
	enum clerk_kv_op op = x < 40   ? CLERK_KV_GET
			      : x < 65 ? CLERK_KV_PUT
			      : x < 92 ? CLERK_KV_APPEND
				       : CLERK_KV_DELETE;
	char val[32];
	snprintf(val, sizeof(val), "%zu.%" PRIu64 ";", k, ++r->next_value);
	if (kv_cluster_start(e->c, k, op, key, strlen(key), val, strlen(val),
			     r->deadline_ms, NULL))
		kv_cluster_fail(e->c, "clerk %zu cannot start an op", k);
}

/* A fault of the linearizable scenario: a replica (often a leader)
 * crashes or is cut off, a whole group crashes, or the shard master
 * loses its leader. */
static void strike(struct env *e)
{
	uint64_t gid = all_gids[sim_rng_range(&e->rng, 0, 3)];
	int lead = kv_cluster_leader(e->c, gid);
	size_t i = lead >= 0 && sim_rng_chance(&e->rng, 0.7)
			   ? (size_t)lead
			   : (size_t)sim_rng_range(&e->rng, 0, 3);
	uint64_t x = sim_rng_range(&e->rng, 0, 10);
	if (x < 4) {
		kv_cluster_crash(e->c, gid, i);
	} else if (x < 7) {
		sim_isolate(e->sim, kv_cluster_server_id(gid, i));
	} else if (x < 8) {
		kv_cluster_crash_group(e->c, gid);
	} else {
		uint32_t id = sm_cluster_leader(kv_cluster_sm(e->c));
		if (id)
			sm_cluster_crash(kv_cluster_sm(e->c), id);
	}
}

static void repair(struct env *e)
{
	sim_heal(e->sim);
	for (size_t g = 0; g < 3; g++)
		for (size_t i = 0; i < 3; i++)
			if (!kv_cluster_up(e->c, all_gids[g], i))
				kv_cluster_restart(e->c, all_gids[g], i);
	for (uint32_t id = 1; id <= 3; id++)
		if (!sm_cluster_up(kv_cluster_sm(e->c), id))
			sm_cluster_restart(kv_cluster_sm(e->c), id);
}

/*
 * Clerks run random Get / Put / Append / Delete on a few keys, several
 * at once, while groups join and leave and (with `faults`) replicas
 * crash and are cut off; then the whole history must be linearizable.
 */
static void run_random_ops(uint64_t seed, enum net net, bool faults)
{
	enum { K = 4 };
	struct kv_cluster_opts o = {
		.n_groups = 3, .n_clerks = K + 1,
		/* Snapshots and multi-page pulls while faults strike. */
		.maxlog = 1000, .pull_page_bytes = 16,
	};
	struct env e;
	setup(&e, seed, net, &o);
	struct random_ops *r = &e.rops;
	r->on = r->running = true;
	r->n_clerks = K;
	r->n_keys = 8;
	r->deadline_ms = 8000;
	/* Two keys on each of four shards: pulls take several pages. */
	for (size_t i = 0; i < r->n_keys; i++)
		key_for((uint32_t)(i % 4 * 3), 200 + i / 4, r->keys[i],
			sizeof(r->keys[i]));
	bool joined[3] = { true, false, false };
	join(&e, G0);
	for (size_t k = 0; k < K; k++)
		rops_next(&e, k);
	for (int step = 0; step < 8; step++) {
		/* One fault at a time: every group and the shard master
		 * keep a majority, so every operation can end. */
		if (faults && sim_rng_chance(&e.rng, 0.6)) {
			repair(&e);
			strike(&e);
		}
		if (sim_rng_chance(&e.rng, 0.6))
			random_change(&e, joined);
		run_for(&e, sim_rng_range(&e.rng, 200, 800));
		if (faults && sim_rng_chance(&e.rng, 0.5))
			repair(&e);
	}
	r->running = false;
	repair(&e);
	CHECK(&e, kv_cluster_wait_idle(e.c, sim_now_ms(e.sim) + 20000),
	      "ops do not end: %s", FAILURE(&e) ? FAILURE(&e) : "");
	cr_log_info("seed %" PRIu64 ": %" PRIu64 " ops, %" PRIu64
		    " timed out",
		    seed, r->n_done, r->n_timeouts);
	/* Faults repaired, every clerk can write and read every key (the
	 * network stays as it was: long reordering can starve elections
	 * for a while, so no op of the faulty phase had to succeed). */
	r->on = false;
	for (size_t k = 0; k < K; k++)
		for (size_t i = 0; i < r->n_keys; i++) {
			char val[32];
			snprintf(val, sizeof(val), "%zu.%" PRIu64 ";", k,
				 ++r->next_value);
			OK(&e, kv_cluster_do(e.c, k, CLERK_KV_APPEND,
					     r->keys[i], strlen(r->keys[i]),
					     val, strlen(val), 60000, NULL));
			OK(&e, kv_cluster_do(e.c, k, CLERK_KV_GET, r->keys[i],
					     strlen(r->keys[i]), NULL, 0,
					     60000, NULL));
		}
	check_history(&e);
	teardown(&e);
}

SEEDED(unreliable_3, 8, run_random_ops,
       seed % 2 ? NET_UNRELIABLE : NET_LONG, false)
SEEDED(linearizable, 8, run_random_ops,
       seed % 3 == 0   ? NET_LONG
       : seed % 3 == 1 ? NET_RELIABLE
		       : NET_UNRELIABLE,
       true)

/* ---- delete (GC) ---- */

/* Moved shards are freed: after join/leave cycles the replicas together
 * keep about one copy of the data per group replica, not one per move. */
SCENARIO(delete_gc, .seeds = 6, .net = NET_ALTERNATE, .n_keys = 30,
	 .o = { .n_groups = 3, .n_clerks = 2, .maxlog = 1,
		.sm_maxlog = 1000, .pull_page_bytes = 4096 })
{
	join(e, G0);
	put_all(e, 0, &e->s, 1000);
	for (int cycle = 0; cycle < 2; cycle++) {
		join(e, G1);
		join(e, G2);
		leave(e, G0);
		join(e, G0);
		leave(e, G1);
		leave(e, G2);
	}
	join(e, G1);
	join(e, G2);
	settle(e, all_gids, 3);
	check_all(e, 1, &e->s);
	uint64_t bytes = kv_cluster_stored_bytes(e->c);
	cr_log_info("seed %" PRIu64 ": %" PRIu64 " bytes stored",
		    sim_seed(e->sim), bytes);
	CHECK(e, bytes <= 117000,
	      "%" PRIu64 " bytes stored across the replicas (bound "
	      "117,000): moved shards are not freed",
	      bytes);
}

/* ---- unaffected and partial ---- */

/* Gets on every key of `s` owned by one of `gids` in `cfg`, and a Put on
 * each, must succeed within `timeout_ms`. */
static void served(struct env *e, const struct kvset *s,
		   const Skv__Config *cfg, const uint64_t *gids, size_t n,
		   uint64_t timeout_ms, size_t *count)
{
	struct kvset sub;
	sub.n = 0;
	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; j < n; j++)
			if (owner(cfg, s->key[i]) == gids[j]) {
				memcpy(sub.key[sub.n], s->key[i],
				       sizeof(sub.key[0]));
				sub.val[sub.n++] = s->val[i];
			}
	*count = sub.n;
	get_batch(e, 1, &sub, timeout_ms);
	for (size_t i = 0; i < sub.n; i++) {
		const struct buf *v = &e->batch.value[i];
		CHECK(e, e->batch.status[i] == STATUS_OK &&
				 same(v, &sub.val[i]),
		      "key %s not served: %s", sub.key[i],
		      status_name(e->batch.status[i]));
	}
}

/* Shards that stay put are served while others migrate, even though
 * the group they should come from is dead. */
SCENARIO(unaffected, .seeds = 8, .net = NET_ALTERNATE, .n_keys = 20)
{
	join(e, G0);
	put_all(e, 0, &e->s, 10);
	join(e, G1);
	settle(e, all_gids, 2);
	Skv__Config *before = latest(e);
	/* gid 100 dies; its shards can never move. */
	kv_cluster_crash_group(e->c, G0);
	leave(e, G0);
	run_for(e, 500);
	size_t n;
	uint64_t g1 = G1;
	served(e, &e->s, before, &g1, 1, 10000, &n);
	CHECK(e, n > 0, "gid %d owned nothing", G1);
	/* And writes to them too. */
	for (size_t i = 0; i < e->s.n; i++) {
		if (owner(before, e->s.key[i]) != G1)
			continue;
		OK(e, kv_cluster_do(e->c, 0, CLERK_KV_APPEND, e->s.key[i],
				     strlen(e->s.key[i]), "x", 1, 10000,
				     NULL));
		if (buf_append(&e->s.val[i], "x", 1))
			abort();
	}
	served(e, &e->s, before, &g1, 1, 10000, &n);
	const struct skv *k = kv_cluster_state(e->c, G1, 0);
	CHECK(e, k && !skv_stable(k),
	      "gid %d stable though its new shards are with a dead "
	      "group",
	      G1);
	sm_cluster_config_free(before);
}

/* Shards that did arrive are served although others never can. */
SCENARIO(partial, .seeds = 8, .net = NET_ALTERNATE, .n_keys = 20)
{
	join(e, G0);
	put_all(e, 0, &e->s, 10);
	join(e, G1);
	join(e, G2);
	settle(e, all_gids, 3);
	Skv__Config *before = latest(e);
	/* gid 100 dies; 100 and 101 leave in one configuration,
	 * so gid 102 must pull from both. */
	kv_cluster_crash_group(e->c, G0);
	uint64_t gone[] = { G0, G1 };
	OK(e, kv_cluster_leave(e->c, gone, 2));
	run_for(e, 1000);
	size_t n;
	uint64_t arrived[] = { G1, G2 };
	served(e, &e->s, before, arrived, 2, 10000, &n);
	CHECK(e, n > 0, "nothing on gids 101 and 102");
	/* What was on the dead group is not: gid 102 waits for it
	 * and answers nothing in its place. */
	struct kvset lost;
	lost.n = 0;
	for (size_t i = 0; i < e->s.n; i++)
		if (owner(before, e->s.key[i]) == G0)
			memcpy(lost.key[lost.n++], e->s.key[i],
			       sizeof(lost.key[0]));
	CHECK(e, lost.n > 0, "nothing was on gid %d", G0);
	get_batch(e, 1, &lost, 2000);
	for (size_t i = 0; i < lost.n; i++)
		CHECK(e, e->batch.status[i] == STATUS_TIMEOUT,
		      "key %s of the dead gid %d: %s", lost.key[i],
		      G0, status_name(e->batch.status[i]));
	sm_cluster_config_free(before);
}

/* ---- exactly once ---- */

/* Crashes the leader of a random group now and then, while appenders
 * retry through duplicating, dropping links and migrations. */
SCENARIO(exactly_once, .seeds = 6, .net = NET_UNRELIABLE,
	 .o = { .n_groups = 3, .n_clerks = 5,
		.clerk_attempt_timeout_ms = 150, .maxlog = 1500,
		.pull_page_bytes = 16 })
{
	struct sim_net n = sim_net_unreliable();
	n.dup = 0.3;
	if (sim_seed(e->sim) % 2 == 0)
		sim_net_long_reordering(&n);
	sim_net_set(e->sim, &n);
	bool joined[3] = { true, false, false };
	join(e, G0);
	app_start(e, 4, 6, 60000);
	for (int step = 0; step < 8; step++) {
		uint64_t gid = all_gids[sim_rng_range(&e->rng, 0, 3)];
		int lead = kv_cluster_leader(e->c, gid);
		if (lead >= 0)
			kv_cluster_crash(e->c, gid, (size_t)lead);
		if (step % 2 == 0)
			random_change(e, joined);
		run_for(e, sim_rng_range(&e->rng, 200, 700));
		if (lead >= 0)
			kv_cluster_restart(e->c, gid, (size_t)lead);
	}
	app_stop(e);
	settle(e, all_gids, 3);
	app_check(e, 4);
}

/* ---- reads from a deposed leader ---- */

/* A group leader cut off from its peers, but not from clerks, must not
 * answer a Get from its stale state once the majority has a new leader
 * and a newer value: reads go through read index, which needs a quorum. */
SCENARIO(stale_leader_serves_no_read, .seeds = 8, .net = NET_RELIABLE,
	 .o = { .n_groups = 1, .n_clerks = 2,
		.clerk_attempt_timeout_ms = 150 })
{
	static const char key[] = "stale";
	char *v = NULL;
	join(e, G0);
	OK(e, kv_cluster_put(e->c, 0, key, "old"));
	/* Clerk 1 learns who leads. */
	OK(e, kv_cluster_get(e->c, 1, key, &v));
	mem_free(v);
	int old = kv_cluster_leader(e->c, G0);
	CHECK(e, old >= 0, "no leader in gid %d", G0);
	uint32_t lid = kv_cluster_server_id(G0, (size_t)old);
	for (size_t i = 0; i < KV_CLUSTER_REPLICAS; i++) {
		uint32_t id = kv_cluster_server_id(G0, i);
		if (id == lid)
			continue;
		sim_link_set(e->sim, lid, id, false);
		sim_link_set(e->sim, id, lid, false);
	}
	OK(e, kv_cluster_put(e->c, 0, key, "new"));
	OK(e, kv_cluster_get(e->c, 1, key, &v));
	CHECK(e, strcmp(v, "new") == 0,
	      "clerk 1 read \"%s\" from the deposed leader after \"new\" "
	      "was acknowledged",
	      v);
	mem_free(v);
	sim_heal(e->sim);
}

/* ---- determinism ---- */

/* Same seed, same run, byte for byte: what makes a seed a bug report. */
Test(kv_sim, same_seed_same_run)
{
	uint64_t a = run_concurrent(3, NET_UNRELIABLE, 2, true);
	uint64_t b = run_concurrent(3, NET_UNRELIABLE, 2, true);
	cr_assert_eq(a, b, "two runs of seed 3 differ");
	cr_assert_neq(a, run_concurrent(4, NET_UNRELIABLE, 2, true),
		      "seeds 3 and 4 give the same run");
}
