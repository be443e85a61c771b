/*
 * The shard master's state machine and rebalancing (shardmaster/sm.h),
 * without Raft: requests, refusals, dedup, loading, and a seeded property
 * test over random Join/Leave/Move sequences (SM_PROP_SEED=n replays).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/mem.h"
#include "common/status.h"
#include "shardmaster/sm.h"
#include "tests/sim/sim.h"

/* ---- building commands ---- */

struct cmd_buf {
	Skv__SmCommand cmd;
	Skv__JoinRequest join;
	Skv__LeaveRequest leave;
	Skv__MoveRequest move;
	Skv__InitRequest init;
	Skv__Group groups[8];
	Skv__Group *gp[8];
	char *servers[8][3];
	char names[8][3][32];
	uint64_t gids[8];
};

static Skv__SmCommand *mk_init(struct cmd_buf *b, uint32_t n)
{
	skv__sm_command__init(&b->cmd);
	skv__init_request__init(&b->init);
	b->init.nshards = n;
	b->cmd.op_case = SKV__SM_COMMAND__OP_INIT;
	b->cmd.init = &b->init;
	return &b->cmd;
}

static Skv__SmCommand *mk_join(struct cmd_buf *b, uint64_t client,
			       uint64_t seq, const uint64_t *gids, size_t n)
{
	skv__sm_command__init(&b->cmd);
	skv__join_request__init(&b->join);
	b->join.client_id = client;
	b->join.seq = seq;
	for (size_t i = 0; i < n; i++) {
		skv__group__init(&b->groups[i]);
		b->groups[i].gid = gids[i];
		for (int j = 0; j < 3; j++) {
			snprintf(b->names[i][j], sizeof(b->names[i][j]),
				 "g%" PRIu64 "-s%d:700%d", gids[i], j, j);
			b->servers[i][j] = b->names[i][j];
		}
		b->groups[i].n_servers = 3;
		b->groups[i].servers = b->servers[i];
		b->gp[i] = &b->groups[i];
	}
	b->join.n_groups = n;
	b->join.groups = b->gp;
	b->cmd.op_case = SKV__SM_COMMAND__OP_JOIN;
	b->cmd.join = &b->join;
	return &b->cmd;
}

static Skv__SmCommand *mk_leave(struct cmd_buf *b, uint64_t client,
				uint64_t seq, const uint64_t *gids, size_t n)
{
	skv__sm_command__init(&b->cmd);
	skv__leave_request__init(&b->leave);
	b->leave.client_id = client;
	b->leave.seq = seq;
	memcpy(b->gids, gids, n * sizeof(*gids));
	b->leave.n_gids = n;
	b->leave.gids = b->gids;
	b->cmd.op_case = SKV__SM_COMMAND__OP_LEAVE;
	b->cmd.leave = &b->leave;
	return &b->cmd;
}

static Skv__SmCommand *mk_move(struct cmd_buf *b, uint64_t client,
			       uint64_t seq, uint32_t shard, uint64_t gid)
{
	skv__sm_command__init(&b->cmd);
	skv__move_request__init(&b->move);
	b->move.client_id = client;
	b->move.seq = seq;
	b->move.shard = shard;
	b->move.gid = gid;
	b->cmd.op_case = SKV__SM_COMMAND__OP_MOVE;
	b->cmd.move = &b->move;
	return &b->cmd;
}

static struct sm_effects apply_ok(struct sm *m, const Skv__SmCommand *c)
{
	struct sm_effects fx;
	cr_assert_eq(sm_apply(m, c, &fx), STATUS_OK);
	return fx;
}

static struct sm *new_sm(uint32_t nshards)
{
	struct sm *m = sm_new();
	struct cmd_buf b;
	cr_assert(m);
	struct sm_effects fx = apply_ok(m, mk_init(&b, nshards));
	cr_assert(fx.initialized);
	return m;
}

static size_t owned_by(const struct sm_config *c, uint64_t gid)
{
	size_t n = 0;
	for (uint32_t s = 0; s < c->nshards; s++)
		n += c->shards[s] == gid;
	return n;
}

/* Every shard on a listed group; counts within one of each other. */
static void assert_balanced(const struct sm_config *c)
{
	if (c->n_groups == 0) {
		cr_assert_eq(owned_by(c, 0), c->nshards);
		return;
	}
	size_t lo = SIZE_MAX, hi = 0;
	for (size_t g = 0; g < c->n_groups; g++) {
		size_t n = owned_by(c, c->groups[g].gid);
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	cr_assert_leq(hi - lo, 1, "config %" PRIu64 ": max %zu min %zu",
		      c->num, hi, lo);
	cr_assert_eq(owned_by(c, 0), 0, "config %" PRIu64 " leaves shards "
					"unassigned", c->num);
	for (uint32_t s = 0; s < c->nshards; s++) {
		bool known = false;
		for (size_t g = 0; g < c->n_groups; g++)
			known |= c->groups[g].gid == c->shards[s];
		cr_assert(known, "shard %u on unknown gid %" PRIu64, s,
			  c->shards[s]);
	}
}

Test(sm, starts_uninitialized_and_init_counts_once)
{
	struct sm *m = sm_new();
	struct cmd_buf b;
	cr_assert_eq(sm_nshards(m), 0);
	cr_assert_null(sm_config(m, -1));
	uint64_t g = 1;
	struct sm_effects fx = apply_ok(m, mk_join(&b, 1, 1, &g, 1));
	cr_assert_eq(fx.outcome.status, STATUS_NOT_READY);
	cr_assert(!fx.dedup_changed && !fx.config_added);

	fx = apply_ok(m, mk_init(&b, 10));
	cr_assert(fx.initialized && fx.config_added);
	fx = apply_ok(m, mk_init(&b, 20));
	cr_assert(!fx.initialized && fx.duplicate);
	cr_assert_eq(sm_nshards(m), 10);
	const struct sm_config *c = sm_config(m, 0);
	cr_assert_eq(c->num, 0);
	cr_assert_eq(c->n_groups, 0);
	cr_assert_eq(owned_by(c, 0), 10);

	/* The join refused before Init applies now. */
	fx = apply_ok(m, mk_join(&b, 1, 1, &g, 1));
	cr_assert_eq(fx.outcome.status, STATUS_OK);
	cr_assert_eq(fx.outcome.config_num, 1);
	sm_free(m);
}

Test(sm, join_leave_basics)
{
	struct sm *m = new_sm(10);
	struct cmd_buf b;
	uint64_t g1[] = { 100 }, g2[] = { 101, 102 };
	apply_ok(m, mk_join(&b, 7, 1, g1, 1));
	const struct sm_config *c = sm_config(m, -1);
	cr_assert_eq(c->num, 1);
	cr_assert_eq(c->n_groups, 1);
	cr_assert_eq(owned_by(c, 100), 10);
	cr_assert_eq(c->groups[0].n_servers, 3);
	cr_assert_str_eq(c->groups[0].servers[1], "g100-s1:7001");

	apply_ok(m, mk_join(&b, 7, 2, g2, 2));
	c = sm_config(m, -1);
	cr_assert_eq(c->num, 2);
	cr_assert_eq(c->n_groups, 3);
	assert_balanced(c);
	cr_assert_eq(c->groups[2].gid, 102);
	cr_assert_str_eq(c->groups[2].servers[0], "g102-s0:7000");

	apply_ok(m, mk_leave(&b, 7, 3, g1, 1));
	c = sm_config(m, -1);
	cr_assert_eq(c->num, 3);
	cr_assert_eq(c->n_groups, 2);
	assert_balanced(c);
	cr_assert_eq(owned_by(c, 100), 0);
	/* History stays. */
	cr_assert_eq(owned_by(sm_config(m, 1), 100), 10);
	cr_assert_eq(sm_config(m, 99)->num, 3);

	apply_ok(m, mk_leave(&b, 7, 4, g2, 2));
	c = sm_config(m, -1);
	cr_assert_eq(c->n_groups, 0);
	cr_assert_eq(owned_by(c, 0), 10);
	sm_free(m);
}

Test(sm, bad_requests_change_nothing)
{
	struct sm *m = new_sm(10);
	struct cmd_buf b;
	uint64_t g1[] = { 100 }, dup[] = { 5, 5 }, zero[] = { 0 },
		 unknown[] = { 7 };
	apply_ok(m, mk_join(&b, 1, 1, g1, 1));
	uint64_t seq = 2;
	struct sm_effects fx = apply_ok(m, mk_join(&b, 1, seq++, g1, 1));
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(fx.outcome.error, "already"), "%s",
		  fx.outcome.error);
	cr_assert(!fx.config_added && fx.dedup_changed);

	fx = apply_ok(m, mk_join(&b, 1, seq++, dup, 2));
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(fx.outcome.error, "twice"), "%s", fx.outcome.error);
	fx = apply_ok(m, mk_join(&b, 1, seq++, zero, 1));
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(fx.outcome.error, "range"), "%s", fx.outcome.error);

	mk_join(&b, 1, seq++, unknown, 1);
	b.groups[0].n_servers = 0;
	fx = apply_ok(m, &b.cmd);
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(fx.outcome.error, "no servers"), "%s",
		  fx.outcome.error);
	mk_join(&b, 1, seq++, unknown, 1);
	b.servers[0][1] = "";
	fx = apply_ok(m, &b.cmd);
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);

	fx = apply_ok(m, mk_leave(&b, 1, seq++, unknown, 1));
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(fx.outcome.error, "not in the configuration"), "%s",
		  fx.outcome.error);
	fx = apply_ok(m, mk_move(&b, 1, seq++, 10, 100));
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(fx.outcome.error, "out of range"), "%s",
		  fx.outcome.error);
	fx = apply_ok(m, mk_move(&b, 1, seq++, 3, 7));
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(fx.outcome.error, "join it first"), "%s",
		  fx.outcome.error);

	cr_assert_eq(sm_latest_num(m), 1);
	cr_assert_eq(owned_by(sm_config(m, -1), 100), 10);
	cr_assert_eq(sm_config(m, -1)->n_groups, 1);
	sm_free(m);
}

Test(sm, duplicates_apply_once_and_answer_the_same)
{
	struct sm *m = new_sm(10);
	struct cmd_buf b;
	uint64_t g1[] = { 100 }, g2[] = { 101 };
	struct sm_effects fx = apply_ok(m, mk_join(&b, 42, 1, g1, 1));
	cr_assert_eq(fx.outcome.config_num, 1);
	fx = apply_ok(m, mk_join(&b, 42, 1, g1, 1));
	cr_assert(fx.duplicate && !fx.config_added && !fx.dedup_changed);
	cr_assert_eq(fx.outcome.status, STATUS_OK);
	cr_assert_eq(fx.outcome.config_num, 1);

	/* A refused request's retry is refused the same way. */
	fx = apply_ok(m, mk_leave(&b, 42, 2, g2, 1));
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	apply_ok(m, mk_join(&b, 9, 1, g2, 1));
	fx = apply_ok(m, mk_leave(&b, 42, 2, g2, 1));
	cr_assert(fx.duplicate);
	cr_assert_eq(fx.outcome.status, STATUS_INVALID_ARGUMENT);
	cr_assert_eq(sm_config(m, -1)->n_groups, 2);

	/* An older seq changes nothing. */
	fx = apply_ok(m, mk_move(&b, 42, 1, 0, 101));
	cr_assert(fx.duplicate);
	cr_assert_eq(sm_latest_num(m), 2);
	sm_free(m);
}

Test(sm, move_pins_a_shard_and_numbers_grow)
{
	struct sm *m = new_sm(10);
	struct cmd_buf b;
	uint64_t gs[] = { 100, 101 };
	apply_ok(m, mk_join(&b, 1, 1, gs, 2));
	uint64_t before = sm_latest_num(m);
	for (uint32_t s = 0; s < 10; s++) {
		uint64_t gid = gs[s % 2 == 0 ? 1 : 0];
		struct sm_effects fx =
			apply_ok(m, mk_move(&b, 1, 2 + s, s, gid));
		cr_assert_eq(fx.outcome.status, STATUS_OK);
		cr_assert_eq(sm_latest_num(m), before + 1 + s);
		cr_assert_eq(sm_config(m, -1)->shards[s], gid);
	}
	for (uint32_t s = 0; s < 10; s++)
		cr_assert_eq(sm_config(m, -1)->shards[s],
			     gs[s % 2 == 0 ? 1 : 0]);
	sm_free(m);
}

Test(sm, more_groups_than_shards)
{
	struct sm *m = new_sm(4);
	struct cmd_buf b;
	uint64_t gs[] = { 10, 11, 12, 13, 14, 15 };
	apply_ok(m, mk_join(&b, 1, 1, gs, 6));
	const struct sm_config *c = sm_config(m, -1);
	assert_balanced(c);
	size_t owners = 0;
	for (size_t g = 0; g < 6; g++)
		owners += owned_by(c, gs[g]) == 1;
	cr_assert_eq(owners, 4);
	/* Leaving a group that owns nothing moves nothing. */
	uint64_t idle = 0;
	for (size_t g = 0; g < 6; g++)
		if (owned_by(c, gs[g]) == 0)
			idle = gs[g];
	uint64_t before[4];
	memcpy(before, c->shards, sizeof(before));
	apply_ok(m, mk_leave(&b, 1, 2, &idle, 1));
	cr_assert_arr_eq(sm_config(m, -1)->shards, before, sizeof(before));
	sm_free(m);
}

/* ---- property test ---- */

/* The fewest shards any balanced assignment over `gids` must move away
 * from `prev`: nshards minus the most that can stay, where the larger
 * shares go to the groups that own the most. */
static size_t min_moves(const uint64_t *prev, uint32_t nshards,
			const struct sm_config *next)
{
	size_t n = next->n_groups;
	if (n == 0) {
		size_t moves = 0;
		for (uint32_t s = 0; s < nshards; s++)
			moves += prev[s] != 0;
		return moves;
	}
	size_t *count = calloc(n, sizeof(*count));
	for (size_t g = 0; g < n; g++)
		for (uint32_t s = 0; s < nshards; s++)
			count[g] += prev[s] == next->groups[g].gid;
	/* Sort descending (selection sort: n is small). */
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (count[j] > count[i]) {
				size_t t = count[i];
				count[i] = count[j];
				count[j] = t;
			}
	size_t stay = 0, base = nshards / n, extra = nshards % n;
	for (size_t i = 0; i < n; i++) {
		size_t target = base + (i < extra ? 1 : 0);
		stay += count[i] < target ? count[i] : target;
	}
	free(count);
	return nshards - stay;
}

static size_t moved(const uint64_t *prev, const struct sm_config *next)
{
	size_t n = 0;
	for (uint32_t s = 0; s < next->nshards; s++)
		n += prev[s] != next->shards[s];
	return n;
}

/* Both state machines hold the same configurations. */
static void assert_same(const struct sm *a, const struct sm *b)
{
	cr_assert_eq(sm_latest_num(a), sm_latest_num(b));
	for (uint64_t n = 0; n <= sm_latest_num(a); n++) {
		const struct sm_config *x = sm_config(a, (int64_t)n);
		const struct sm_config *y = sm_config(b, (int64_t)n);
		cr_assert_eq(x->num, y->num);
		cr_assert_arr_eq(x->shards, y->shards,
				 x->nshards * sizeof(*x->shards));
		cr_assert_eq(x->n_groups, y->n_groups);
		for (size_t g = 0; g < x->n_groups; g++) {
			cr_assert_eq(x->groups[g].gid, y->groups[g].gid);
			cr_assert_eq(x->groups[g].n_servers,
				     y->groups[g].n_servers);
			for (size_t i = 0; i < x->groups[g].n_servers; i++)
				cr_assert_str_eq(x->groups[g].servers[i],
						 y->groups[g].servers[i]);
		}
	}
}

/* Reloads every configuration of `m` through its stored (proto) form. */
static struct sm *reload(const struct sm *m)
{
	struct sm *r = sm_new();
	cr_assert_eq(sm_load_init(r, sm_nshards(m)), STATUS_OK);
	for (uint64_t n = 1; n <= sm_latest_num(m); n++) {
		Skv__Config pc;
		cr_assert_eq(sm_config_to_proto(sm_config(m, (int64_t)n), &pc),
			     STATUS_OK);
		char err[128];
		cr_assert_eq(sm_config_proto_check(&pc, err, sizeof(err)),
			     STATUS_OK, "%s", err);
		cr_assert_eq(sm_load_config(r, &pc), STATUS_OK);
		sm_config_proto_release(&pc);
	}
	return r;
}

static void run_property(uint64_t seed)
{
	struct sim_rng rng;
	sim_rng_seed(&rng, seed);
	uint32_t nshards = (uint32_t)sim_rng_range(&rng, 1, 24);
	struct sm *a = new_sm(nshards), *b = new_sm(nshards);
	struct cmd_buf cb;
	uint64_t live[64];
	size_t n_live = 0;
	uint64_t *prev = calloc(nshards, sizeof(*prev));
	uint64_t next_gid = 1;
	for (uint64_t step = 1; step <= 200; step++) {
		const struct sm_config *cur = sm_config(a, -1);
		memcpy(prev, cur->shards, nshards * sizeof(*prev));
		uint64_t r = sim_rng_range(&rng, 0, 10);
		Skv__SmCommand *cmd;
		enum { J, L, M } kind;
		if (n_live == 0 || (r < 5 && n_live < 40)) {
			uint64_t gids[3];
			size_t n = (size_t)sim_rng_range(&rng, 1, 4);
			for (size_t i = 0; i < n; i++)
				gids[i] = next_gid += sim_rng_range(&rng, 1,
								    5);
			cmd = mk_join(&cb, 1, step, gids, n);
			for (size_t i = 0; i < n; i++)
				live[n_live++] = gids[i];
			kind = J;
		} else if (r < 8) {
			size_t n = (size_t)sim_rng_range(&rng, 1,
							 n_live < 3 ? n_live + 1
								    : 3);
			uint64_t gids[3];
			for (size_t i = 0; i < n; i++) {
				size_t k = (size_t)sim_rng_range(&rng, 0,
								 n_live);
				gids[i] = live[k];
				live[k] = live[--n_live];
			}
			cmd = mk_leave(&cb, 1, step, gids, n);
			kind = L;
		} else {
			uint32_t s = (uint32_t)sim_rng_range(&rng, 0, nshards);
			uint64_t g = live[sim_rng_range(&rng, 0, n_live)];
			cmd = mk_move(&cb, 1, step, s, g);
			kind = M;
		}
		struct sm_effects fx = apply_ok(a, cmd);
		apply_ok(b, cmd);
		cr_assert_eq(fx.outcome.status, STATUS_OK, "seed %" PRIu64
			     " step %" PRIu64 ": %s", seed, step,
			     fx.outcome.error);
		const struct sm_config *c = sm_config(a, -1);
		cr_assert_eq(c->num, step);
		if (kind == M) {
			for (uint32_t s = 0; s < nshards; s++)
				if (s != cmd->move->shard)
					cr_assert_eq(c->shards[s], prev[s]);
			continue;
		}
		assert_balanced(c);
		size_t mv = moved(prev, c), lower = min_moves(prev, nshards,
							     c);
		cr_assert_eq(mv, lower, "seed %" PRIu64 " step %" PRIu64
			     ": moved %zu shards, %zu would do",
			     seed, step, mv, lower);
	}
	assert_same(a, b);
	struct sm *re = reload(a);
	assert_same(a, re);
	sm_free(re);
	free(prev);
	sm_free(a);
	sm_free(b);
}

Test(sm, property_random_join_leave_move)
{
	uint64_t *seeds;
	const char *one = getenv("SM_PROP_SEED");
	size_t n;
	if (one) {
		seeds = mem_alloc(sizeof(*seeds));
		seeds[0] = strtoull(one, NULL, 10);
		n = 1;
	} else {
		n = sim_seeds(200, &seeds);
	}
	for (size_t i = 0; i < n; i++) {
		cr_log_info("property seed %" PRIu64
			    " (replay: SM_PROP_SEED=%" PRIu64 ")",
			    seeds[i], seeds[i]);
		run_property(seeds[i]);
	}
	mem_free(seeds);
}

/* After joins only shards that must move move, and only to the new
 * groups; after leaves only the leaving groups' shards move. */
Test(sm, minimal_transfers)
{
	struct sm *m = new_sm(10);
	struct cmd_buf b;
	uint64_t prev[10];
	for (uint64_t gid = 1; gid <= 12; gid++) {
		memcpy(prev, sm_config(m, -1)->shards, sizeof(prev));
		apply_ok(m, mk_join(&b, 1, gid, &gid, 1));
		const struct sm_config *c = sm_config(m, -1);
		assert_balanced(c);
		for (uint32_t s = 0; s < 10; s++)
			if (c->shards[s] != prev[s])
				cr_assert(prev[s] == 0 || c->shards[s] == gid,
					  "join %" PRIu64 " moved shard %u "
					  "between old groups",
					  gid, s);
	}
	for (uint64_t gid = 1; gid <= 12; gid++) {
		memcpy(prev, sm_config(m, -1)->shards, sizeof(prev));
		apply_ok(m, mk_leave(&b, 1, 100 + gid, &gid, 1));
		const struct sm_config *c = sm_config(m, -1);
		assert_balanced(c);
		for (uint32_t s = 0; s < 10; s++)
			if (c->shards[s] != prev[s])
				cr_assert_eq(prev[s], gid,
					     "leave %" PRIu64 " moved shard "
					     "%u of group %" PRIu64,
					     gid, s, prev[s]);
	}
	sm_free(m);
}

Test(sm, rebalance_is_deterministic_and_total)
{
	uint64_t shards[7] = { 5, 5, 5, 9, 0, 3, 3 };
	uint64_t gids[] = { 3, 4, 5 };
	cr_assert_eq(sm_rebalance(shards, 7, gids, 3), STATUS_OK);
	/* 5 owned 3 (keeps 3: the largest share goes to it), 3 owned 2
	 * (keeps 2), 4 gets the free ones: shard 3 (unknown gid 9) and 4. */
	uint64_t want[7] = { 5, 5, 5, 4, 4, 3, 3 };
	cr_assert_arr_eq(shards, want, sizeof(want));
	cr_assert_eq(sm_rebalance(shards, 7, NULL, 0), STATUS_OK);
	for (int i = 0; i < 7; i++)
		cr_assert_eq(shards[i], 0);
}

Test(sm, config_check_refuses_malformed)
{
	struct sm *m = new_sm(4);
	struct cmd_buf b;
	uint64_t gs[] = { 2, 1 };
	apply_ok(m, mk_join(&b, 1, 1, gs, 2));
	Skv__Config pc;
	char err[128];
	cr_assert_eq(sm_config_to_proto(sm_config(m, -1), &pc), STATUS_OK);
	cr_assert_eq(sm_config_proto_check(&pc, err, sizeof(err)), STATUS_OK);
	uint64_t saved = pc.shards[0];
	pc.shards[0] = 77;
	cr_assert_eq(sm_config_proto_check(&pc, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "not listed"), "%s", err);
	pc.shards[0] = saved;
	Skv__Group *t = pc.groups[0];
	pc.groups[0] = pc.groups[1];
	pc.groups[1] = t;
	cr_assert_eq(sm_config_proto_check(&pc, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "sorted"), "%s", err);
	pc.groups[1] = pc.groups[0];
	pc.groups[0] = t;
	/* Loading refuses a number out of sequence. */
	struct sm *r = new_sm(4);
	pc.num = 5;
	cr_assert_eq(sm_load_config(r, &pc), STATUS_INVALID_ARGUMENT);
	sm_config_proto_release(&pc);
	sm_free(r);
	sm_free(m);
}
