/*
 * The replica group's state machine (shardkv/kv.h): shard states through
 * configurations, hand-over checks, dedup, the holder table for shards on
 * gid 0, the stored form, and a property test that runs whole migrations
 * between three groups over random configuration histories.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "shardkv/kv.h"
#include "tests/sim/sim.h"

#define NS 10

/* ---- building configurations ---- */

struct tcfg {
	Skv__Config c;
	uint64_t shards[SM_SHARDS_MAX];
	Skv__Group gs[8];
	Skv__Group *gp[8];
	char names[8][3][32];
	char *np[8][3];
};

/* Configuration `num` with owners[0..ns) and every distinct non-zero
 * owner listed with servers "g<gid>-<i>". */
static void tcfg_make(struct tcfg *t, uint64_t num, const uint64_t *owners,
		      uint32_t ns)
{
	memset(t, 0, sizeof(*t));
	skv__config__init(&t->c);
	t->c.num = num;
	t->c.n_shards = ns;
	t->c.shards = t->shards;
	memcpy(t->shards, owners, ns * sizeof(*owners));
	uint64_t gids[8];
	size_t n = 0;
	for (uint32_t s = 0; s < ns; s++) {
		bool seen = owners[s] == 0;
		for (size_t i = 0; i < n && !seen; i++)
			seen = gids[i] == owners[s];
		if (!seen)
			gids[n++] = owners[s];
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && gids[j - 1] > gids[j]; j--) {
			uint64_t x = gids[j];
			gids[j] = gids[j - 1];
			gids[j - 1] = x;
		}
	for (size_t i = 0; i < n; i++) {
		skv__group__init(&t->gs[i]);
		t->gs[i].gid = gids[i];
		for (int k = 0; k < 3; k++) {
			snprintf(t->names[i][k], sizeof(t->names[i][k]),
				 "g%" PRIu64 "-%d", gids[i], k + 1);
			t->np[i][k] = t->names[i][k];
		}
		t->gs[i].n_servers = 3;
		t->gs[i].servers = t->np[i];
		t->gp[i] = &t->gs[i];
	}
	t->c.n_groups = n;
	t->c.groups = t->gp;
}

static int apply(struct skv *k, uint64_t num, const uint64_t *owners)
{
	struct tcfg t;
	struct skv_changes ch = { 0 };
	tcfg_make(&t, num, owners, NS);
	int rc = skv_apply_config(k, &t.c, &ch);
	skv_changes_free(&ch);
	return rc;
}

static enum skv_shard_state state_of(const struct skv *k, uint32_t s)
{
	struct skv_shard_info in;
	skv_shard(k, s, &in);
	return in.state;
}

static void insert_last(struct skv *k, uint64_t num, uint32_t shard,
			const Skv__DedupEntry **dd, size_t n)
{
	Skv__InsertShard ins = SKV__INSERT_SHARD__INIT;
	ins.config_num = num;
	ins.shard = shard;
	ins.last = true;
	ins.dedup = (Skv__DedupEntry **)dd;
	ins.n_dedup = n;
	cr_assert_eq(skv_apply_insert(k, &ins, NULL), STATUS_OK);
}

static const uint64_t all100[NS] = { 100, 100, 100, 100, 100,
				     100, 100, 100, 100, 100 };
static const uint64_t split[NS] = { 100, 100, 100, 100, 100,
				    101, 101, 101, 101, 101 };

Test(kv, starts_with_nothing)
{
	struct skv *k = skv_new(100);
	int st;
	cr_assert_eq(skv_config_num(k), 0);
	cr_assert_null(skv_config(k));
	cr_assert(skv_stable(k));
	cr_assert_not(skv_serves(k, 0));
	cr_assert_eq(skv_op_check(k, 0, 1, 1, &st), SKV_OP_WRONG_GROUP);
	const char *why;
	cr_assert_eq(skv_pull_check(k, 1, 0, 101, &why), STATUS_NOT_READY);
	skv_free(k);
}

Test(kv, first_config_serves_fresh_shards)
{
	struct skv *a = skv_new(100), *b = skv_new(101);
	cr_assert_eq(apply(a, 1, split), STATUS_OK);
	cr_assert_eq(apply(b, 1, split), STATUS_OK);
	for (uint32_t s = 0; s < NS; s++) {
		cr_assert_eq(skv_serves(a, s), s < 5);
		cr_assert_eq(skv_serves(b, s), s >= 5);
		cr_assert_eq(state_of(a, s),
			     s < 5 ? SKV_SHARD_SERVING : SKV_SHARD_NONE);
	}
	cr_assert(skv_stable(a) && skv_stable(b));
	cr_assert_eq(skv_nshards(a), NS);
	/* Not the next number, or again: ignored. */
	cr_assert_eq(apply(a, 1, split), STATUS_ALREADY_EXISTS);
	cr_assert_eq(apply(a, 3, split), STATUS_ALREADY_EXISTS);
	skv_free(a);
	skv_free(b);
}

Test(kv, a_moved_shard_goes_through_every_state)
{
	struct skv *a = skv_new(100), *b = skv_new(101);
	cr_assert_eq(apply(a, 1, all100), STATUS_OK);
	cr_assert_eq(apply(b, 1, all100), STATUS_OK);
	cr_assert_eq(skv_dedup_record(a, 7, 42, 3, STATUS_OK), STATUS_OK);
	cr_assert_eq(apply(a, 2, split), STATUS_OK);
	cr_assert_eq(apply(b, 2, split), STATUS_OK);

	/* Old owner: keeps the data frozen, stops serving. */
	cr_assert_eq(state_of(a, 7), SKV_SHARD_BEPULLING);
	cr_assert_eq(state_of(a, 2), SKV_SHARD_SERVING);
	cr_assert_not(skv_serves(a, 7));
	cr_assert_not(skv_stable(a));
	/* New owner: pulls from gid 100's servers; not served yet. */
	struct skv_shard_info in;
	skv_shard(b, 7, &in);
	cr_assert_eq(in.state, SKV_SHARD_PULLING);
	cr_assert_eq(in.config_num, 2);
	cr_assert_eq(in.from_gid, 100);
	cr_assert_eq(in.n_from, 3);
	cr_assert_str_eq(in.from_servers[0], "g100-1");
	int st;
	cr_assert_eq(skv_op_check(b, 7, 42, 4, &st), SKV_OP_NOT_READY);
	cr_assert_eq(skv_op_check(a, 7, 42, 4, &st), SKV_OP_WRONG_GROUP);
	/* Neither advances while the move is under way. */
	cr_assert_eq(apply(a, 3, split), STATUS_ALREADY_EXISTS);
	cr_assert_eq(apply(b, 3, split), STATUS_ALREADY_EXISTS);

	/* Hand-over checks at the old owner. */
	const char *why;
	cr_assert_eq(skv_pull_check(a, 2, 7, 101, &why), STATUS_OK);
	cr_assert_eq(skv_pull_check(a, 2, 7, 102, &why), STATUS_NOT_FOUND);
	cr_assert_eq(skv_pull_check(a, 3, 7, 101, &why), STATUS_NOT_READY);
	cr_assert_eq(skv_pull_check(a, 2, 2, 101, &why), STATUS_NOT_FOUND);
	cr_assert_eq(skv_pull_check(a, 2, NS, 101, &why),
		     STATUS_INVALID_ARGUMENT);

	/* The pages arrive; the last one carries the dedup table. */
	Skv__DedupEntry **dd;
	size_t nd;
	cr_assert_eq(skv_dedup_list(a, 7, &dd, &nd), STATUS_OK);
	cr_assert_eq(nd, 1);
	Skv__InsertShard page = SKV__INSERT_SHARD__INIT;
	page.config_num = 2;
	page.shard = 7;
	cr_assert_eq(skv_apply_insert(b, &page, NULL), STATUS_OK);
	cr_assert_eq(state_of(b, 7), SKV_SHARD_PULLING);
	insert_last(b, 2, 7, (const Skv__DedupEntry **)dd, nd);
	skv_dedup_list_free(dd, nd);
	cr_assert_eq(state_of(b, 7), SKV_SHARD_GCING);
	cr_assert(skv_serves(b, 7));
	/* The moved dedup entry still recognizes the old write. */
	cr_assert_eq(skv_op_check(b, 7, 42, 3, &st), SKV_OP_DUPLICATE);
	cr_assert_eq(skv_op_check(b, 7, 42, 4, &st), SKV_OP_APPLY);
	/* A repeated or stale page changes nothing. */
	cr_assert_eq(skv_apply_insert(b, &page, NULL), STATUS_ALREADY_EXISTS);

	/* Delete at the old owner, then end of GC at the new one. */
	bool propose;
	cr_assert_eq(skv_delete_check(a, 2, 7, 101, &propose), STATUS_OK);
	cr_assert(propose);
	struct skv_changes ch = { 0 };
	cr_assert_eq(skv_apply_delete(a, 2, 7, &ch), STATUS_OK);
	cr_assert(ch.delete_data);
	cr_assert_eq(state_of(a, 7), SKV_SHARD_NONE);
	cr_assert_eq(skv_dedup_count(a, 7), 0);
	cr_assert_eq(skv_apply_delete(a, 2, 7, NULL), STATUS_ALREADY_EXISTS);
	cr_assert_eq(skv_delete_check(a, 2, 7, 101, &propose), STATUS_OK);
	cr_assert_not(propose);
	cr_assert_eq(skv_pull_check(a, 2, 7, 101, &why), STATUS_NOT_FOUND);
	skv_changes_free(&ch);

	cr_assert_eq(skv_apply_gc_done(b, 2, 7, NULL), STATUS_OK);
	cr_assert_eq(state_of(b, 7), SKV_SHARD_SERVING);
	cr_assert_eq(skv_apply_gc_done(b, 2, 7, NULL), STATUS_ALREADY_EXISTS);

	/* Other shards moved too; finish them and both move on. */
	for (uint32_t s = 5; s < NS; s++) {
		if (s == 7)
			continue;
		insert_last(b, 2, s, NULL, 0);
		cr_assert_eq(skv_apply_delete(a, 2, s, NULL), STATUS_OK);
		cr_assert_eq(skv_apply_gc_done(b, 2, s, NULL), STATUS_OK);
	}
	cr_assert(skv_stable(a) && skv_stable(b));
	cr_assert_eq(apply(a, 3, split), STATUS_OK);
	skv_free(a);
	skv_free(b);
}

Test(kv, shards_on_gid_0_stay_with_their_last_owner)
{
	static const uint64_t none[NS] = { 0 };
	static const uint64_t to102[NS] = { 102, 102, 102, 102, 102,
					    102, 102, 102, 102, 102 };
	struct skv *a = skv_new(100), *c = skv_new(102);
	cr_assert_eq(apply(a, 1, all100), STATUS_OK);
	cr_assert_eq(apply(c, 1, all100), STATUS_OK);
	/* Every group left: the data stays with gid 100, unserved, and does
	 * not hold configurations up. */
	cr_assert_eq(apply(a, 2, none), STATUS_OK);
	cr_assert_eq(apply(c, 2, none), STATUS_OK);
	cr_assert_eq(state_of(a, 3), SKV_SHARD_HELD);
	cr_assert_not(skv_serves(a, 3));
	cr_assert(skv_stable(a));
	const char *const *sv;
	size_t n;
	cr_assert_eq(skv_holder(c, 3, &sv, &n), 100);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(sv[2], "g100-3");
	cr_assert_eq(apply(a, 3, none), STATUS_OK);
	cr_assert_eq(apply(c, 3, none), STATUS_OK);
	/* Gid 102 gets everything: it pulls from 100, which is in no
	 * configuration since 1 (its servers come from the holder table). */
	cr_assert_eq(apply(a, 4, to102), STATUS_OK);
	cr_assert_eq(apply(c, 4, to102), STATUS_OK);
	struct skv_shard_info in;
	skv_shard(c, 3, &in);
	cr_assert_eq(in.state, SKV_SHARD_PULLING);
	cr_assert_eq(in.from_gid, 100);
	cr_assert_eq(in.n_from, 3);
	cr_assert_eq(state_of(a, 3), SKV_SHARD_BEPULLING);
	const char *why;
	cr_assert_eq(skv_pull_check(a, 4, 3, 102, &why), STATUS_OK);
	/* A shard that was held comes back to its holder: served at once. */
	struct skv *b = skv_new(100);
	cr_assert_eq(apply(b, 1, all100), STATUS_OK);
	cr_assert_eq(apply(b, 2, none), STATUS_OK);
	cr_assert_eq(apply(b, 3, all100), STATUS_OK);
	cr_assert_eq(state_of(b, 3), SKV_SHARD_SERVING);
	skv_free(a);
	skv_free(b);
	skv_free(c);
}

Test(kv, dedup_answers_repeats_and_lists_in_order)
{
	struct skv *k = skv_new(100);
	cr_assert_eq(apply(k, 1, all100), STATUS_OK);
	int st;
	cr_assert_eq(skv_op_check(k, 1, 9, 1, &st), SKV_OP_APPLY);
	for (uint64_t id = 50; id > 0; id--)
		cr_assert_eq(skv_dedup_record(k, 1, id * 7919, 5,
					      id % 2 ? STATUS_OK :
						       STATUS_NOT_FOUND),
			     STATUS_OK);
	cr_assert_eq(skv_op_check(k, 1, 2 * 7919, 5, &st), SKV_OP_DUPLICATE);
	cr_assert_eq(st, STATUS_NOT_FOUND);
	cr_assert_eq(skv_op_check(k, 1, 2 * 7919, 4, &st), SKV_OP_DUPLICATE);
	cr_assert_eq(st, STATUS_OK);
	cr_assert_eq(skv_op_check(k, 1, 2 * 7919, 6, &st), SKV_OP_APPLY);
	cr_assert_eq(skv_op_check(k, 2, 2 * 7919, 5, &st), SKV_OP_APPLY);
	Skv__DedupEntry **dd;
	size_t n;
	cr_assert_eq(skv_dedup_list(k, 1, &dd, &n), STATUS_OK);
	cr_assert_eq(n, 50);
	for (size_t i = 1; i < n; i++)
		cr_assert_lt(dd[i - 1]->client_id, dd[i]->client_id);
	skv_dedup_list_free(dd, n);
	skv_free(k);
}

Test(kv, malformed_configurations_are_ignored)
{
	struct skv *k = skv_new(100);
	cr_assert_eq(apply(k, 1, all100), STATUS_OK);
	struct tcfg t;
	tcfg_make(&t, 2, all100, NS - 1); /* another shard count */
	cr_assert_eq(skv_apply_config(k, &t.c, NULL), STATUS_INVALID_ARGUMENT);
	tcfg_make(&t, 2, all100, NS);
	t.c.n_groups = 0; /* owner not listed */
	cr_assert_eq(skv_apply_config(k, &t.c, NULL), STATUS_INVALID_ARGUMENT);
	cr_assert_eq(skv_config_num(k), 1);
	skv_free(k);
}

/* Stores `k` in its proto forms and loads them into a new state
 * machine. */
static struct skv *reload(const struct skv *k)
{
	struct skv *r = skv_new(skv_gid(k));
	Skv__Config pc;
	Skv__ShardHolders h;
	if (skv_config(k)) {
		cr_assert_eq(sm_config_to_proto(skv_config(k), &pc), STATUS_OK);
		cr_assert_eq(skv_holders_to_proto(k, &h), STATUS_OK);
		cr_assert_eq(skv_load_config(r, &pc, &h), STATUS_OK);
		sm_config_proto_release(&pc);
		skv_holders_proto_release(&h);
	}
	for (uint32_t s = 0; s < skv_nshards(k); s++) {
		Skv__ShardState st;
		cr_assert_eq(skv_shard_to_proto(k, s, &st), STATUS_OK);
		cr_assert_eq(skv_load_shard(r, s, &st), STATUS_OK);
		skv_shard_proto_release(&st);
		Skv__DedupEntry **dd;
		size_t n;
		cr_assert_eq(skv_dedup_list(k, s, &dd, &n), STATUS_OK);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(skv_load_dedup(r, s, dd[i]->client_id,
						    dd[i]->seq,
						    (int)dd[i]->status),
				     STATUS_OK);
		skv_dedup_list_free(dd, n);
	}
	return r;
}

/* Everything observable about two state machines is the same. */
static void assert_same(const struct skv *a, const struct skv *b)
{
	cr_assert_eq(skv_config_num(a), skv_config_num(b));
	cr_assert_eq(skv_nshards(a), skv_nshards(b));
	for (uint32_t s = 0; s < skv_nshards(a); s++) {
		struct skv_shard_info x, y;
		skv_shard(a, s, &x);
		skv_shard(b, s, &y);
		cr_assert_eq(x.state, y.state, "shard %u", s);
		cr_assert_eq(x.config_num, y.config_num);
		cr_assert_eq(x.from_gid, y.from_gid);
		cr_assert_eq(x.n_from, y.n_from);
		for (size_t i = 0; i < x.n_from; i++)
			cr_assert_str_eq(x.from_servers[i], y.from_servers[i]);
		const char *const *sa, *const *sb;
		size_t na, nb;
		cr_assert_eq(skv_holder(a, s, &sa, &na),
			     skv_holder(b, s, &sb, &nb));
		cr_assert_eq(na, nb);
		for (size_t i = 0; i < na; i++)
			cr_assert_str_eq(sa[i], sb[i]);
		cr_assert_eq(skv_dedup_count(a, s), skv_dedup_count(b, s));
	}
}

Test(kv, stored_form_round_trips)
{
	struct skv *a = skv_new(101);
	struct skv *e = reload(a);
	assert_same(a, e);
	skv_free(e);
	cr_assert_eq(apply(a, 1, all100), STATUS_OK);
	cr_assert_eq(apply(a, 2, split), STATUS_OK);
	cr_assert_eq(skv_dedup_record(a, 1, 5, 1, STATUS_OK), STATUS_OK);
	struct skv *r = reload(a);
	assert_same(a, r);
	/* The reloaded one goes on the same way. */
	insert_last(a, 2, 6, NULL, 0);
	insert_last(r, 2, 6, NULL, 0);
	assert_same(a, r);
	skv_free(a);
	skv_free(r);
}

/* ---- property: whole migrations over random histories ---- */

#define PG 3 /* groups 100..102 */

struct pworld {
	struct skv *g[PG];
	/* Per group and shard: the version of the data it holds (0 =
	 * none); a write bumps it at the group serving the shard. */
	uint64_t data[PG][NS];
	uint64_t latest[NS]; /* the newest version written */
};

static int gidx(uint64_t gid)
{
	return (int)(gid - 100);
}

/* Every replica of every group sees the same histories, so one state
 * machine per group stands for its replicas. Checks after every step. */
static void pcheck(const struct pworld *w, uint64_t seed)
{
	for (uint32_t s = 0; s < NS; s++) {
		int serving = 0;
		for (int g = 0; g < PG; g++) {
			if (!skv_serves(w->g[g], s))
				continue;
			serving++;
			cr_assert_eq(w->data[g][s], w->latest[s],
				     "seed %" PRIu64 ": gid %d serves shard %u "
				     "at version %" PRIu64 ", newest %" PRIu64,
				     seed, 100 + g, s, w->data[g][s],
				     w->latest[s]);
		}
		cr_assert_leq(serving, 1, "seed %" PRIu64 ": shard %u served "
					  "by %d groups",
			      seed, s, serving);
	}
}

/* One random migration step for group g; true if it did something. */
static bool pstep(struct pworld *w, struct sim_rng *rng, int g)
{
	struct skv *k = w->g[g];
	uint32_t s = (uint32_t)sim_rng_range(rng, 0, NS);
	if (skv_nshards(k) == 0)
		return false;
	struct skv_shard_info in;
	skv_shard(k, s, &in);
	const char *why;
	bool propose;
	if (in.state == SKV_SHARD_PULLING) {
		int from = gidx(in.from_gid);
		if (skv_pull_check(w->g[from], in.config_num, s, skv_gid(k),
				   &why) != STATUS_OK)
			return false;
		w->data[g][s] = w->data[from][s];
		insert_last(k, in.config_num, s, NULL, 0);
		return true;
	}
	if (in.state == SKV_SHARD_GCING) {
		int from = gidx(in.from_gid);
		if (skv_delete_check(w->g[from], in.config_num, s, skv_gid(k),
				     &propose) != STATUS_OK)
			return false;
		if (propose) {
			cr_assert_eq(skv_apply_delete(w->g[from],
						      in.config_num, s, NULL),
				     STATUS_OK);
			w->data[from][s] = 0;
		}
		cr_assert_eq(skv_apply_gc_done(k, in.config_num, s, NULL),
			     STATUS_OK);
		return true;
	}
	if (skv_serves(k, s)) {
		w->data[g][s] = ++w->latest[s];
		return true;
	}
	return false;
}

Test(kv, random_histories_never_lose_or_fork_a_shard)
{
	uint64_t seed0 = 1;
	size_t runs = 200;
	const char *env = getenv("KV_PROP_SEED");
	if (env) {
		seed0 = strtoull(env, NULL, 10);
		runs = 1;
	}
	for (size_t run = 0; run < runs; run++) {
		uint64_t seed = seed0 + run;
		struct sim_rng rng;
		sim_rng_seed(&rng, seed);
		struct pworld w;
		memset(&w, 0, sizeof(w));
		for (int g = 0; g < PG; g++)
			w.g[g] = skv_new(100 + (uint64_t)g);
		uint64_t num = 0;
		for (int round = 0; round < 12; round++) {
			uint64_t owners[NS];
			for (uint32_t s = 0; s < NS; s++) {
				uint64_t r = sim_rng_range(&rng, 0, PG + 1);
				owners[s] = r == PG ? 0 : 100 + r;
			}
			num++;
			/* Groups take the config in a random order, each
			 * once it is stable, migrating in between. */
			bool done[PG] = { false };
			for (int steps = 0; steps < 10000; steps++) {
				int g = (int)sim_rng_range(&rng, 0, PG);
				if (!done[g] && skv_stable(w.g[g]) &&
				    sim_rng_chance(&rng, 0.3)) {
					cr_assert_eq(apply(w.g[g], num,
							   owners),
						     STATUS_OK,
						     "seed %" PRIu64, seed);
					done[g] = true;
				} else {
					pstep(&w, &rng, g);
				}
				pcheck(&w, seed);
				if (done[0] && done[1] && done[2])
					break;
			}
			cr_assert(done[0] && done[1] && done[2],
				  "seed %" PRIu64 ": config %" PRIu64
				  " never applied everywhere (replay with "
				  "KV_PROP_SEED=%" PRIu64 ")",
				  seed, num, seed);
		}
		/* Let every move finish, then every shard with data must be
		 * held by exactly its holder. */
		for (int steps = 0; steps < 20000; steps++)
			pstep(&w, &rng, (int)sim_rng_range(&rng, 0, PG));
		for (uint32_t s = 0; s < NS; s++) {
			const char *const *sv;
			size_t n;
			uint64_t h = skv_holder(w.g[0], s, &sv, &n);
			for (int g = 0; g < PG; g++) {
				cr_assert(skv_stable(w.g[g]),
					  "seed %" PRIu64, seed);
				cr_assert_eq(skv_holder(w.g[g], s, &sv, &n),
					     h);
				bool holds = w.data[g][s] != 0;
				if (holds)
					cr_assert_eq((uint64_t)100 + g, h,
						     "seed %" PRIu64
						     ": shard %u data at "
						     "gid %d, holder %" PRIu64,
						     seed, s, 100 + g, h);
			}
			if (h && w.latest[s])
				cr_assert_eq(w.data[gidx(h)][s], w.latest[s],
					     "seed %" PRIu64 ": shard %u lost "
					     "writes",
					     seed, s);
		}
		for (int g = 0; g < PG; g++) {
			struct skv *r = reload(w.g[g]);
			assert_same(w.g[g], r);
			skv_free(r);
			skv_free(w.g[g]);
		}
	}
	cr_log_info("kv property: %zu random histories from seed %" PRIu64
		    " (replay one with KV_PROP_SEED=n)",
		    runs, seed0);
}

Test(kv, version_moves_with_shard_states_not_with_writes)
{
	struct skv *k = skv_new(100);
	uint64_t v = skv_version(k);
	cr_assert_eq(apply(k, 1, all100), STATUS_OK);
	cr_assert_neq(skv_version(k), v);
	v = skv_version(k);
	cr_assert_eq(skv_dedup_record(k, 1, 5, 1, STATUS_OK), STATUS_OK);
	cr_assert_eq(apply(k, 3, all100), STATUS_ALREADY_EXISTS);
	cr_assert_eq(skv_version(k), v, "a write or a refused config");
	cr_assert_eq(apply(k, 2, split), STATUS_OK);
	cr_assert_neq(skv_version(k), v);
	v = skv_version(k);
	cr_assert_eq(skv_apply_delete(k, 2, 7, NULL), STATUS_OK);
	cr_assert_neq(skv_version(k), v);
	skv_free(k);
}
