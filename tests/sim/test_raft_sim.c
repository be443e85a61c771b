/*
 * Raft scenarios of TESTPLAN.md in the simulator, each over many seeds.
 *
 * Every scenario builds a cluster (tests/sim/raft_cluster.h), whose
 * invariants are checked after every simulated event, injects its faults
 * and asserts its property. Times are virtual; ET is the election
 * timeout's upper bound (600 ms with the core's defaults: heartbeat
 * 100 ms, election timeout 300-600 ms).
 *
 * Seeds: SIM_SEEDS=k runs seeds 1..k per scenario (default: a few, sized
 * for CI); SIM_SEED=n replays seed n with a trace of every message.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/mem.h"
#include "common/status.h"
#include "tests/sim/raft_cluster.h"
#include "tests/sim/sim.h"

#define ET 600
#define HB 100

struct t {
	struct sim *sim;
	struct raft_cluster *c;
	uint64_t seed;
	bool failed;
	char err[768];
	uint64_t next_value;
};

static void t_fail(struct t *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void t_fail(struct t *t, const char *fmt, ...)
{
	if (t->failed)
		return;
	t->failed = true;
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(t->err, sizeof(t->err), "[%" PRIu64 " ms] ",
			 sim_now_ms(t->sim));
	vsnprintf(t->err + n, sizeof(t->err) - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Stops the scenario on a failed check or a broken invariant. */
#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (t->c && raft_cluster_failure(t->c))                   \
			return;                                           \
		if (!(cond)) {                                            \
			t_fail(t, __VA_ARGS__);                           \
			return;                                           \
		}                                                         \
	} while (0)

/* Set by the *_store scenarios: nodes run the production replica over
 * RocksDB (in-memory Env) instead of the disk model. */
static bool use_store;

static void cluster(struct t *t, size_t n, uint64_t snapshot_every)
{
	struct raft_cluster_opts o = {
		.n_nodes = n,
		.snapshot_every = snapshot_every,
		/* Small chunks, so every snapshot goes in several. */
		.snapshot_chunk_bytes_max = snapshot_every ? 256 : 0,
		.store_backend = use_store,
	};
	t->c = raft_cluster_new(t->sim, &o);
	cr_assert(t->c != NULL);
}

static uint64_t now(struct t *t) { return sim_now_ms(t->sim); }
static void run(struct t *t, uint64_t ms) { sim_run_for(t->sim, ms); }

/* Commands are unique 8-byte values. */
static uint64_t value(struct t *t) { return ++t->next_value * 1000 + 7; }

static uint64_t one(struct t *t, uint64_t v, size_t expected, bool retry)
{
	uint8_t b[8];
	put_u64be(b, v);
	return raft_cluster_one(t->c, b, sizeof(b), expected, retry);
}

static int propose(struct t *t, uint32_t id, uint64_t v, uint64_t *index,
		   uint64_t *term)
{
	uint8_t b[8];
	put_u64be(b, v);
	return raft_cluster_propose(t->c, id, b, sizeof(b), index, term);
}

static uint32_t leader(struct t *t)
{
	return raft_cluster_wait_leader(t->c, now(t) + 10 * ET);
}

static size_t n_leaders_connected(struct t *t, size_t n)
{
	size_t k = 0;
	for (uint32_t id = 1; id <= n; id++) {
		struct raft *r = raft_cluster_raft(t->c, id);
		if (r && raft_cluster_connected(t->c, id) &&
		    raft_role(r) == RAFT_LEADER)
			k++;
	}
	return k;
}

static uint64_t requests_sent(struct t *t)
{
	struct sim_stats s = sim_stats(t->sim);
	return s.sent_by_type[RAFT_MSG_VOTE_REQ] +
	       s.sent_by_type[RAFT_MSG_APPEND_REQ] +
	       s.sent_by_type[RAFT_MSG_SNAPSHOT_REQ];
}

static bool applied_anywhere(struct t *t, uint64_t v);

typedef void (*scenario_fn)(struct t *t);

static void run_seeds(const char *name, uint64_t default_seeds, scenario_fn fn)
{
	uint64_t *seeds;
	size_t n = sim_seeds(default_seeds, &seeds);
	for (size_t i = 0; i < n; i++) {
		struct t t = { .seed = seeds[i] };
		t.sim = sim_new(seeds[i]);
		cr_assert(t.sim != NULL);
		if (sim_seed_replay()) {
			sim_set_trace(t.sim, true);
			sim_log_attach(t.sim);
		}
		fn(&t);
		if (sim_seed_replay()) {
			struct sim_stats st = sim_stats(t.sim);
			fprintf(stderr,
				"%s seed %" PRIu64 ": %" PRIu64 " ms virtual, %"
				PRIu64 " events, %" PRIu64 " messages\n",
				name, t.seed, sim_now_ms(t.sim), st.events,
				st.sent);
		}
		const char *inv = t.c ? raft_cluster_failure(t.c) : NULL;
		char msg[1400];
		bool bad = inv || t.failed;
		if (bad)
			snprintf(msg, sizeof(msg), "%s: %s", name,
				 inv ? inv : t.err);
		raft_cluster_free(t.c);
		sim_free(t.sim);
		if (bad) {
			uint64_t seed = seeds[i];
			sim_seed_banner("test_raft_sim", "raft_sim", name, seed);
			mem_free(seeds);
			cr_assert_fail("seed %" PRIu64 ": %s", seed, msg);
		}
	}
	mem_free(seeds);
}

#define SCENARIO(name, default_seeds)                                   \
	static void sc_##name(struct t *t);                             \
	Test(raft_sim, name, .timeout = 600)                            \
	{                                                               \
		run_seeds(#name, default_seeds, sc_##name);             \
	}                                                               \
	static void sc_##name(struct t *t)

/* ---- elections ---- */

SCENARIO(initial_election, 50)
{
	cluster(t, 3, 0);
	uint32_t l = leader(t);
	CHECK(l != 0, "no leader within 10 ET");
	uint64_t term = raft_term(raft_cluster_raft(t->c, l));
	CHECK(term >= 1, "leader in term 0");
	/* With no faults, the term stays put. */
	run(t, 2000);
	CHECK(raft_cluster_leader_now(t->c) == l, "leadership moved");
	for (uint32_t id = 1; id <= 3; id++)
		CHECK(raft_term(raft_cluster_raft(t->c, id)) == term,
		      "term of %u changed from %" PRIu64, id, term);
}

SCENARIO(reelection, 50)
{
	cluster(t, 3, 0);
	uint32_t l1 = leader(t);
	CHECK(l1, "no first leader");

	raft_cluster_disconnect(t->c, l1);
	uint32_t l2 = leader(t);
	CHECK(l2 && l2 != l1, "no new leader after the leader left");
	uint64_t term2 = raft_term(raft_cluster_raft(t->c, l2));

	/* The old leader returns: it must not disturb the new one. */
	raft_cluster_connect(t->c, l1);
	run(t, 2 * ET);
	CHECK(raft_cluster_leader_now(t->c) == l2 &&
		      raft_term(raft_cluster_raft(t->c, l2)) == term2,
	      "returning old leader disturbed the new one");

	/* Without a quorum, nobody leads. */
	uint32_t other = l2 % 3 + 1;
	raft_cluster_disconnect(t->c, l2);
	raft_cluster_disconnect(t->c, other);
	run(t, 4 * ET);
	CHECK(n_leaders_connected(t, 3) == 0, "a leader without a quorum");

	raft_cluster_connect(t->c, other);
	CHECK(leader(t), "no leader after a quorum came back");
	raft_cluster_connect(t->c, l2);
	CHECK(leader(t), "no leader after all came back");
}

SCENARIO(many_elections, 30)
{
	const size_t n = 7;
	cluster(t, n, 0);
	CHECK(leader(t), "no first leader");
	for (int round = 0; round < 10; round++) {
		uint32_t cut[3];
		for (int k = 0; k < 3; k++)
			cut[k] = (uint32_t)sim_rand_range(t->sim, 1, n + 1);
		for (int k = 0; k < 3; k++)
			raft_cluster_disconnect(t->c, cut[k]);
		CHECK(leader(t), "round %d: no leader with 4 of 7", round);
		for (int k = 0; k < 3; k++)
			raft_cluster_connect(t->c, cut[k]);
	}
	CHECK(leader(t), "no final leader");
}

SCENARIO(pre_vote, 50)
{
	cluster(t, 3, 0);
	uint32_t l = leader(t);
	CHECK(l, "no leader");
	CHECK(one(t, value(t), 3, false), "no agreement");
	uint64_t term = raft_term(raft_cluster_raft(t->c, l));
	uint32_t lonely = l % 3 + 1;
	raft_cluster_disconnect(t->c, lonely);
	run(t, 30 * ET); /* many election timeouts alone */
	CHECK(raft_term(raft_cluster_raft(t->c, lonely)) == term,
	      "an isolated node raised its term (pre-vote failed)");
	raft_cluster_connect(t->c, lonely);
	run(t, 5 * ET);
	CHECK(raft_cluster_leader_now(t->c) == l &&
		      raft_term(raft_cluster_raft(t->c, l)) == term,
	      "the rejoining node disturbed the leader");
	CHECK(one(t, value(t), 3, false), "no agreement after rejoin");
}

/* ---- agreement ---- */

SCENARIO(basic_agree, 50)
{
	cluster(t, 3, 0);
	CHECK(leader(t), "no leader");
	/* Index 1 holds the first leader's no-op. */
	uint64_t expect = 2;
	for (int i = 0; i < 3; i++) {
		CHECK(raft_cluster_n_applied(t->c, expect, NULL, NULL) == 0,
		      "something applied at %" PRIu64 " before any proposal",
		      expect);
		uint64_t idx = one(t, value(t), 3, false);
		CHECK(idx == expect, "got index %" PRIu64 ", expected %" PRIu64,
		      idx, expect);
		expect++;
	}
}

SCENARIO(bytes, 50)
{
	cluster(t, 3, 0);
	CHECK(leader(t), "no leader");
	CHECK(one(t, value(t), 3, false), "no agreement");
	uint64_t before = sim_stats(t->sim).sent_bytes;
	uint8_t payload[5000];
	size_t total = 0;
	for (int i = 0; i < 10; i++) {
		for (size_t k = 0; k < sizeof(payload); k++)
			payload[k] = (uint8_t)sim_rand(t->sim);
		CHECK(raft_cluster_one(t->c, payload, sizeof(payload), 3, false),
		      "no agreement on entry %d", i);
		total += sizeof(payload);
	}
	uint64_t sent = sim_stats(t->sim).sent_bytes - before;
	CHECK(sent <= 3 * total + 50000,
	      "sent %" PRIu64 " bytes for %zu bytes of entries", sent, total);
}

SCENARIO(fail_agree, 50)
{
	cluster(t, 3, 0);
	CHECK(one(t, value(t), 3, false), "no agreement");
	uint32_t l = leader(t);
	uint32_t f = l % 3 + 1;
	raft_cluster_disconnect(t->c, f);
	CHECK(one(t, value(t), 2, false), "majority does not agree");
	CHECK(one(t, value(t), 2, false), "majority does not agree");
	run(t, ET);
	CHECK(one(t, value(t), 2, false), "majority does not agree");
	raft_cluster_connect(t->c, f);
	CHECK(one(t, value(t), 3, true), "returning node does not catch up");
	CHECK(one(t, value(t), 3, true), "no agreement after rejoin");
}

SCENARIO(fail_no_agree, 50)
{
	cluster(t, 5, 0);
	CHECK(one(t, value(t), 5, false), "no agreement");
	uint32_t l = leader(t);
	for (uint32_t k = 1; k <= 3; k++)
		raft_cluster_disconnect(t->c, (l + k - 1) % 5 + 1);
	uint64_t index;
	CHECK(propose(t, l, value(t), &index, NULL) == STATUS_OK,
	      "leader refused a proposal");
	run(t, 2 * ET);
	CHECK(raft_cluster_n_applied(t->c, index, NULL, NULL) == 0,
	      "committed without a majority");
	for (uint32_t k = 1; k <= 3; k++)
		raft_cluster_connect(t->c, (l + k - 1) % 5 + 1);
	CHECK(leader(t), "no leader after heal");
	CHECK(one(t, value(t), 5, true), "no agreement after heal");
}

SCENARIO(leader_follower_failure, 50)
{
	cluster(t, 3, 0);
	CHECK(one(t, value(t), 3, false), "no agreement");
	uint32_t l1 = leader(t);
	raft_cluster_disconnect(t->c, l1);
	CHECK(one(t, value(t), 2, true), "no agreement without old leader");
	uint32_t l2 = leader(t);
	CHECK(l2 && l2 != l1, "no second leader");
	/* Now a single node is connected: nothing may commit. */
	raft_cluster_disconnect(t->c, l2);
	uint64_t before = raft_cluster_max_applied(t->c);
	for (uint32_t id = 1; id <= 3; id++)
		propose(t, id, value(t), NULL, NULL);
	run(t, 4 * ET);
	CHECK(raft_cluster_max_applied(t->c) == before,
	      "an entry committed without a majority");
}

SCENARIO(concurrent_proposals, 50)
{
	cluster(t, 3, 0);
	for (int attempt = 0; attempt < 5; attempt++) {
		uint32_t l = leader(t);
		CHECK(l, "no leader");
		uint64_t term0 = raft_term(raft_cluster_raft(t->c, l));
		uint64_t idx[5], vals[5];
		bool ok = true;
		for (int i = 0; i < 5 && ok; i++) {
			vals[i] = value(t);
			ok = propose(t, l, vals[i], &idx[i], NULL) == STATUS_OK;
		}
		if (!ok)
			continue;
		for (int i = 0; i < 5 && ok; i++)
			ok = raft_cluster_wait_applied(t->c, idx[i], 3,
						       now(t) + 2000);
		struct raft *r = raft_cluster_raft(t->c, l);
		if (!ok || raft_term(r) != term0)
			continue; /* a leader change got in the way */
		for (int i = 0; i < 5; i++) {
			const void *d;
			size_t len;
			raft_cluster_n_applied(t->c, idx[i], &d, &len);
			CHECK(len == 8 && get_u64be(d) == vals[i],
			      "proposal %d not applied at its index", i);
		}
		return;
	}
	CHECK(false, "five concurrent proposals never committed in one term");
}

SCENARIO(rejoin, 50)
{
	cluster(t, 3, 0);
	CHECK(one(t, value(t), 3, true), "no agreement");
	uint32_t l1 = leader(t);
	raft_cluster_disconnect(t->c, l1);
	/* The partitioned leader appends entries nobody else sees. */
	uint64_t stale_idx, stale_val = value(t);
	CHECK(propose(t, l1, stale_val, &stale_idx, NULL) == STATUS_OK,
	      "old leader refused");
	propose(t, l1, value(t), NULL, NULL);
	propose(t, l1, value(t), NULL, NULL);
	CHECK(one(t, value(t), 2, true), "no agreement without old leader");
	uint32_t l2 = leader(t);
	raft_cluster_disconnect(t->c, l2);
	raft_cluster_connect(t->c, l1);
	CHECK(one(t, value(t), 2, true), "old leader and follower disagree");
	raft_cluster_connect(t->c, l2);
	CHECK(one(t, value(t), 3, true), "no agreement after heal");
	(void)stale_idx;
	CHECK(!applied_anywhere(t, stale_val),
	      "an uncommitted entry of the old leader survived");
}

SCENARIO(backup, 30)
{
	const size_t n = 5;
	cluster(t, n, 0);
	CHECK(one(t, value(t), n, true), "no agreement");
	for (int twice = 0; twice < 2; twice++) {
		uint32_t l1 = leader(t);
		CHECK(l1, "no leader");
		uint32_t ids[5];
		for (uint32_t k = 0; k < 5; k++)
			ids[k] = (l1 + k - 1) % 5 + 1; /* ids[0] = l1 */
		/* l1 and ids[1] in a minority get 50 entries. */
		for (int k = 2; k < 5; k++)
			raft_cluster_disconnect(t->c, ids[k]);
		for (int i = 0; i < 50; i++)
			propose(t, l1, value(t), NULL, NULL);
		run(t, ET / 2);
		raft_cluster_disconnect(t->c, ids[0]);
		raft_cluster_disconnect(t->c, ids[1]);
		for (int k = 2; k < 5; k++)
			raft_cluster_connect(t->c, ids[k]);
		/* The majority commits 50 others. */
		for (int i = 0; i < 50; i++)
			CHECK(one(t, value(t), 3, true),
			      "majority does not commit");
		uint32_t l2 = leader(t);
		CHECK(l2, "no leader in the majority");
		uint32_t other = ids[2] == l2 ? ids[3] : ids[2];
		raft_cluster_disconnect(t->c, other);
		for (int i = 0; i < 50; i++)
			propose(t, l2, value(t), NULL, NULL);
		run(t, ET / 2);
		for (uint32_t id = 1; id <= n; id++)
			raft_cluster_disconnect(t->c, id);
		raft_cluster_connect(t->c, ids[0]);
		raft_cluster_connect(t->c, ids[1]);
		raft_cluster_connect(t->c, other);
		uint64_t t0 = now(t);
		for (int i = 0; i < 50; i++)
			CHECK(one(t, value(t), 3, true),
			      "logs do not converge");
		for (uint32_t id = 1; id <= n; id++)
			raft_cluster_connect(t->c, id);
		CHECK(one(t, value(t), n, true), "no agreement of all five");
		/* Fast backtracking: converging takes a few round trips per
		 * diverging term, not one per entry. */
		CHECK(now(t) - t0 < 30000, "convergence took %" PRIu64 " ms",
		      now(t) - t0);
	}
}

/* Request messages (RPCs) only: replies answer them one to one. With a
 * 100 ms heartbeat a leader of 3 sends 20 heartbeats a second, so 1 s of
 * idling stays under 60. */
SCENARIO(message_count, 50)
{
	cluster(t, 3, 0);
	CHECK(leader(t), "no leader");
	uint64_t first = requests_sent(t);
	CHECK(first <= 30, "%" PRIu64 " requests for the first election",
	      first);
	bool ok = false;
	for (int attempt = 0; attempt < 5 && !ok; attempt++) {
		uint32_t l = leader(t);
		uint64_t term = raft_term(raft_cluster_raft(t->c, l));
		uint64_t before = requests_sent(t);
		uint64_t last = 0;
		for (int i = 0; i < 10; i++)
			propose(t, l, value(t), &last, NULL);
		if (!raft_cluster_wait_applied(t->c, last, 3, now(t) + 2000) ||
		    raft_term(raft_cluster_raft(t->c, l)) != term)
			continue;
		uint64_t used = requests_sent(t) - before;
		CHECK(used <= 42, "%" PRIu64 " requests for 10 entries", used);
		ok = true;
	}
	CHECK(ok, "no stable term to count in");
	uint64_t before = requests_sent(t);
	run(t, 1000);
	uint64_t idle = requests_sent(t) - before;
	CHECK(idle <= 60, "%" PRIu64 " requests in 1 s idle", idle);
}

/* ---- persistence ---- */

static void crash_restart(struct t *t, uint32_t id)
{
	raft_cluster_crash(t->c, id);
	raft_cluster_restart(t->c, id);
}

SCENARIO(persist1, 50)
{
	cluster(t, 3, 0);
	CHECK(one(t, value(t), 3, true), "no agreement");
	for (uint32_t id = 1; id <= 3; id++)
		raft_cluster_crash(t->c, id);
	for (uint32_t id = 1; id <= 3; id++)
		raft_cluster_restart(t->c, id);
	CHECK(one(t, value(t), 3, true), "no agreement after full restart");

	uint32_t l1 = leader(t);
	crash_restart(t, l1);
	CHECK(one(t, value(t), 3, true), "no agreement after leader restart");

	uint32_t l2 = leader(t);
	raft_cluster_crash(t->c, l2);
	CHECK(one(t, value(t), 2, true), "no agreement with leader down");
	raft_cluster_restart(t->c, l2);
	CHECK(raft_cluster_wait_applied(t->c, raft_cluster_max_applied(t->c),
					3, now(t) + 10 * ET),
	      "restarted node does not catch up");

	uint32_t l3 = leader(t);
	uint32_t f = l3 % 3 + 1;
	raft_cluster_crash(t->c, f);
	CHECK(one(t, value(t), 2, true), "no agreement with follower down");
	raft_cluster_restart(t->c, f);
	CHECK(one(t, value(t), 3, true), "no agreement after all back");
}

SCENARIO(persist2, 30)
{
	const size_t n = 5;
	cluster(t, n, 0);
	for (int iter = 0; iter < 5; iter++) {
		CHECK(one(t, value(t), n, true), "iteration %d: no agreement",
		      iter);
		uint32_t l = leader(t);
		CHECK(l, "no leader");
#define NTH(k) ((l + (k) - 1) % 5 + 1)
		raft_cluster_disconnect(t->c, NTH(1));
		raft_cluster_disconnect(t->c, NTH(2));
		CHECK(one(t, value(t), 3, true), "no agreement of 3");
		raft_cluster_disconnect(t->c, NTH(0));
		raft_cluster_disconnect(t->c, NTH(3));
		raft_cluster_disconnect(t->c, NTH(4));
		crash_restart(t, NTH(1));
		crash_restart(t, NTH(2));
		raft_cluster_connect(t->c, NTH(1));
		raft_cluster_connect(t->c, NTH(2));
		run(t, ET);
		crash_restart(t, NTH(3));
		raft_cluster_connect(t->c, NTH(3));
		CHECK(one(t, value(t), 3, true), "no agreement after restarts");
		raft_cluster_connect(t->c, NTH(4));
		raft_cluster_connect(t->c, NTH(0));
#undef NTH
	}
	CHECK(one(t, value(t), n, true), "no final agreement");
}

SCENARIO(persist3, 50)
{
	cluster(t, 3, 0);
	CHECK(one(t, value(t), 3, true), "no agreement");
	uint32_t l = leader(t);
	uint32_t a = l % 3 + 1, b = a % 3 + 1;
	raft_cluster_disconnect(t->c, b);
	CHECK(one(t, value(t), 2, true), "no agreement of 2");
	raft_cluster_crash(t->c, l);
	raft_cluster_crash(t->c, a);
	raft_cluster_connect(t->c, b);
	raft_cluster_restart(t->c, l);
	CHECK(one(t, value(t), 2, true), "no agreement after crashes");
	raft_cluster_restart(t->c, a);
	CHECK(one(t, value(t), 3, true), "no final agreement");
}

static uint32_t random_down(struct t *t, size_t n)
{
	uint32_t down[16];
	size_t k = 0;
	for (uint32_t id = 1; id <= n; id++)
		if (!raft_cluster_up(t->c, id))
			down[k++] = id;
	return k ? down[sim_rand_range(t->sim, 0, k)] : 0;
}

static size_t n_up(struct t *t, size_t n)
{
	size_t k = 0;
	for (uint32_t id = 1; id <= n; id++)
		k += raft_cluster_up(t->c, id);
	return k;
}

static void figure8_rounds(struct t *t, int rounds, bool unreliable)
{
	const size_t n = 5;
	for (int iter = 0; iter < rounds; iter++) {
		uint32_t l = 0;
		for (uint32_t id = 1; id <= n; id++) {
			if (unreliable && !raft_cluster_connected(t->c, id))
				continue;
			if (propose(t, id, value(t), NULL, NULL) == STATUS_OK)
				l = id;
		}
		if (sim_chance(t->sim, 0.1))
			run(t, sim_rand_range(t->sim, 0, ET / 2));
		else
			run(t, sim_rand_range(t->sim, 0, 13));
		if (unreliable) {
			if (l && sim_chance(t->sim, 0.5))
				raft_cluster_disconnect(t->c, l);
			size_t connected = 0;
			for (uint32_t id = 1; id <= n; id++)
				connected += raft_cluster_connected(t->c, id);
			if (connected < 3) {
				uint32_t id = (uint32_t)sim_rand_range(t->sim, 1,
								      n + 1);
				if (!raft_cluster_connected(t->c, id))
					raft_cluster_connect(t->c, id);
			}
		} else {
			if (l)
				raft_cluster_crash(t->c, l);
			if (n_up(t, n) < 3)
				raft_cluster_restart(t->c, random_down(t, n));
		}
		if (raft_cluster_failure(t->c))
			return;
	}
	for (uint32_t id = 1; id <= n; id++) {
		raft_cluster_restart(t->c, id);
		raft_cluster_connect(t->c, id);
	}
}

SCENARIO(figure8, 20)
{
	cluster(t, 5, 0);
	CHECK(one(t, value(t), 1, true), "no first agreement");
	figure8_rounds(t, 1000, false);
	CHECK(one(t, value(t), 5, true), "no final agreement");
}

SCENARIO(figure8_unreliable, 20)
{
	cluster(t, 5, 0);
	struct sim_net net = sim_net_unreliable();
	sim_net_set(t->sim, &net);
	CHECK(one(t, value(t), 1, true), "no first agreement");
	sim_net_long_reordering(&net);
	sim_net_set(t->sim, &net);
	figure8_rounds(t, 1000, true);
	net = sim_net_unreliable();
	sim_net_set(t->sim, &net);
	CHECK(one(t, value(t), 5, true), "no final agreement");
}

/*
 * Proposes every value until each is applied somewhere, through whichever
 * node leads (again after a leader change), for up to `ms`.
 */
static bool applied_anywhere(struct t *t, uint64_t v)
{
	uint64_t max = raft_cluster_max_applied(t->c);
	for (uint64_t i = max; i >= 1; i--) {
		const void *d;
		size_t len;
		if (raft_cluster_n_applied(t->c, i, &d, &len) && len == 8 &&
		    get_u64be(d) == v)
			return true;
	}
	return false;
}

static bool submit_all(struct t *t, const uint64_t *vals, size_t nv,
		       uint64_t ms)
{
	uint64_t deadline = now(t) + ms;
	uint64_t *term_sent = mem_calloc(nv, sizeof(*term_sent));
	bool *done = mem_calloc(nv, sizeof(*done));
	cr_assert(term_sent && done);
	size_t left = nv;
	while (left > 0 && now(t) < deadline && !raft_cluster_failure(t->c)) {
		uint32_t l = raft_cluster_leader_now(t->c);
		struct raft *r = l ? raft_cluster_raft(t->c, l) : NULL;
		for (size_t i = 0; i < nv; i++) {
			if (done[i] || !r || term_sent[i] == raft_term(r))
				continue;
			uint64_t term;
			if (propose(t, l, vals[i], NULL, &term) == STATUS_OK)
				term_sent[i] = term;
		}
		run(t, 50);
		for (size_t i = 0; i < nv; i++)
			if (!done[i] && applied_anywhere(t, vals[i])) {
				done[i] = true;
				left--;
			}
	}
	mem_free(term_sent);
	mem_free(done);
	return left == 0;
}

SCENARIO(unreliable_agree, 30)
{
	const size_t n = 5;
	cluster(t, n, 0);
	struct sim_net net = sim_net_unreliable();
	sim_net_set(t->sim, &net);
	for (int iter = 0; iter < 10; iter++) {
		uint64_t vals[5];
		for (int k = 0; k < 5; k++)
			vals[k] = value(t);
		CHECK(submit_all(t, vals, 5, 20000),
		      "iteration %d: concurrent proposals did not commit", iter);
	}
	CHECK(one(t, value(t), n, true), "no final agreement");
}

/* Random cuts, crashes and restarts while proposers and readers run. */
static void churn(struct t *t, bool unreliable, uint64_t snapshot_every)
{
	const size_t n = 5;
	cluster(t, n, snapshot_every);
	if (unreliable) {
		struct sim_net net = sim_net_unreliable();
		sim_net_set(t->sim, &net);
	}
	uint64_t read_id = 0;
	for (int step = 0; step < 100; step++) {
		/* Three proposers try random nodes; readers too. */
		for (int p = 0; p < 3; p++) {
			uint32_t id = (uint32_t)sim_rand_range(t->sim, 1, n + 1);
			propose(t, id, value(t), NULL, NULL);
			raft_cluster_read(t->c, id, ++read_id);
		}
		uint64_t r = sim_rand_range(t->sim, 0, 100);
		uint32_t id = (uint32_t)sim_rand_range(t->sim, 1, n + 1);
		if (r < 10)
			raft_cluster_crash(t->c, id);
		else if (r < 30)
			raft_cluster_restart(t->c, id);
		else if (r < 45)
			raft_cluster_disconnect(t->c, id);
		else if (r < 75)
			raft_cluster_connect(t->c, id);
		run(t, sim_rand_range(t->sim, 0, 200));
		if (raft_cluster_failure(t->c))
			return;
	}
	struct sim_net net = sim_net_reliable();
	sim_net_set(t->sim, &net);
	for (uint32_t id = 1; id <= n; id++) {
		raft_cluster_restart(t->c, id);
		raft_cluster_connect(t->c, id);
	}
	uint64_t last = one(t, value(t), n, true);
	CHECK(last, "no agreement after churn");
	/* Every value seen committed is in every final log (the cluster
	 * checks it is the same command everywhere). */
	CHECK(raft_cluster_wait_applied(t->c, last, n, now(t) + 10 * ET),
	      "not every node applied the final log");
}

SCENARIO(churn_reliable, 30) { churn(t, false, 0); }
SCENARIO(churn_unreliable, 30) { churn(t, true, 0); }

/* ---- reads ---- */

SCENARIO(read_index, 50)
{
	const size_t n = 5;
	cluster(t, n, 0);
	CHECK(one(t, value(t), n, true), "no agreement");
	uint32_t l1 = leader(t);
	CHECK(raft_cluster_read(t->c, l1, 1) == STATUS_OK, "leader refused");
	run(t, 2 * HB);
	uint64_t at;
	CHECK(raft_cluster_read_result(t->c, 1, &at) == STATUS_OK,
	      "healthy leader does not serve a read");

	/* The leader and one follower end up in a minority. */
	uint32_t minority[2] = { l1, l1 % n + 1 };
	sim_partition(t->sim, minority, 2);
	uint64_t id = 100;
	CHECK(raft_cluster_read(t->c, l1, ++id) == STATUS_OK,
	      "leader refused before it knew");
	uint64_t first_minority_read = id;
	/* The majority elects a leader and commits. */
	uint32_t l2 = 0;
	for (uint64_t dl = now(t) + 10 * ET; now(t) < dl && !l2;) {
		run(t, 10);
		for (uint32_t x = 1; x <= n; x++) {
			struct raft *r = raft_cluster_raft(t->c, x);
			if (x != minority[0] && x != minority[1] &&
			    raft_role(r) == RAFT_LEADER)
				l2 = x;
		}
		/* Ask the old leader for reads while it still believes. */
		if (raft_role(raft_cluster_raft(t->c, l1)) == RAFT_LEADER)
			raft_cluster_read(t->c, l1, ++id);
	}
	CHECK(l2, "the majority elected no leader");
	uint64_t v = value(t), idx;
	CHECK(propose(t, l2, v, &idx, NULL) == STATUS_OK, "new leader refused");
	CHECK(raft_cluster_wait_applied(t->c, idx, 3, now(t) + 10 * ET),
	      "majority does not commit");
	run(t, 2 * ET);
	for (uint64_t r = first_minority_read; r <= id; r++)
		CHECK(raft_cluster_read_result(t->c, r, NULL) != STATUS_OK,
		      "the partitioned old leader served read %" PRIu64, r);
	CHECK(raft_cluster_read(t->c, l2, ++id) == STATUS_OK,
	      "new leader refused");
	run(t, 2 * HB);
	CHECK(raft_cluster_read_result(t->c, id, &at) == STATUS_OK &&
		      at >= idx,
	      "new leader does not serve an up-to-date read");
	sim_heal(t->sim);
	CHECK(one(t, value(t), n, true), "no agreement after heal");
}

/* ---- snapshots ---- */

#define SNAP_EVERY 10
/* Entries kept in the log stay under a fixed bound: at most SNAP_EVERY
 * applied plus what is in flight, 8 bytes each. */
#define LOG_BYTES_MAX (8 * (3 * SNAP_EVERY + 20))

SCENARIO(snapshot_basic, 50)
{
	cluster(t, 3, SNAP_EVERY);
	for (int i = 0; i < 200; i++) {
		CHECK(one(t, value(t), 3, true), "no agreement at %d", i);
		CHECK(raft_cluster_max_log_bytes(t->c) <= LOG_BYTES_MAX,
		      "log holds %zu bytes", raft_cluster_max_log_bytes(t->c));
	}
	for (uint32_t id = 1; id <= 3; id++)
		CHECK(raft_cluster_snapshot_index(t->c, id) > 0,
		      "node %u never took a snapshot", id);
}

static void snapshot_install(struct t *t, bool unreliable, bool crash)
{
	cluster(t, 3, SNAP_EVERY);
	if (unreliable) {
		struct sim_net net = sim_net_unreliable();
		sim_net_set(t->sim, &net);
	}
	CHECK(one(t, value(t), 3, true), "no agreement");
	for (int round = 0; round < 5; round++) {
		uint32_t l = leader(t);
		CHECK(l, "no leader");
		uint32_t victim = (uint32_t)sim_rand_range(t->sim, 1, 4);
		if (crash)
			raft_cluster_crash(t->c, victim);
		else
			raft_cluster_disconnect(t->c, victim);
		for (int i = 0; i < 3 * SNAP_EVERY + 1; i++)
			CHECK(one(t, value(t), 2, true), "majority stuck");
		uint64_t snaps = sim_stats(t->sim).sent_by_type
				 [RAFT_MSG_SNAPSHOT_REQ];
		if (crash)
			raft_cluster_restart(t->c, victim);
		else
			raft_cluster_connect(t->c, victim);
		uint64_t last = one(t, value(t), 3, true);
		CHECK(last, "laggard does not catch up");
		CHECK(raft_cluster_max_log_bytes(t->c) <= LOG_BYTES_MAX,
		      "log holds %zu bytes", raft_cluster_max_log_bytes(t->c));
		if (victim != l && !unreliable)
			CHECK(sim_stats(t->sim).sent_by_type
					      [RAFT_MSG_SNAPSHOT_REQ] > snaps + 1,
			      "laggard caught up without a chunked snapshot");
	}
}

SCENARIO(snapshot_install, 50) { snapshot_install(t, false, false); }
SCENARIO(snapshot_install_unreliable, 30) { snapshot_install(t, true, false); }
SCENARIO(snapshot_install_crash, 50) { snapshot_install(t, false, true); }
SCENARIO(snapshot_install_unreliable_crash, 30)
{
	snapshot_install(t, true, true);
}

SCENARIO(snapshot_all_crash, 50)
{
	cluster(t, 3, SNAP_EVERY);
	CHECK(one(t, value(t), 3, true), "no agreement");
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < SNAP_EVERY + 1; i++)
			CHECK(one(t, value(t), 3, true), "no agreement");
		uint64_t before = raft_cluster_max_applied(t->c);
		for (uint32_t id = 1; id <= 3; id++)
			raft_cluster_crash(t->c, id);
		for (uint32_t id = 1; id <= 3; id++)
			raft_cluster_restart(t->c, id);
		uint64_t idx = one(t, value(t), 3, true);
		CHECK(idx > before, "index went back after a full restart");
		CHECK(raft_cluster_max_log_bytes(t->c) <= LOG_BYTES_MAX,
		      "log holds %zu bytes", raft_cluster_max_log_bytes(t->c));
	}
}

SCENARIO(snapshot_init, 50)
{
	cluster(t, 3, SNAP_EVERY);
	for (int i = 0; i < SNAP_EVERY + 1; i++)
		CHECK(one(t, value(t), 3, true), "no agreement");
	for (int round = 0; round < 2; round++) {
		for (uint32_t id = 1; id <= 3; id++)
			raft_cluster_crash(t->c, id);
		for (uint32_t id = 1; id <= 3; id++)
			raft_cluster_restart(t->c, id);
		/* Booted from a snapshot: applied starts there, not at 0. */
		for (uint32_t id = 1; id <= 3; id++)
			CHECK(raft_applied_index(raft_cluster_raft(t->c, id)) >=
				      raft_cluster_snapshot_index(t->c, id),
			      "node %u restarted before its snapshot", id);
		CHECK(one(t, value(t), 3, true), "no agreement after restart");
	}
}

SCENARIO(churn_snapshots, 30) { churn(t, true, SNAP_EVERY); }

/* Elections under fast crash/restart cycles: a vote or term that was not
 * durable before its reply left shows up as two leaders in one term. */
SCENARIO(election_crashes, 50)
{
	const size_t n = 3;
	/* Nearly equal timeouts: many split votes and rival candidates. */
	struct raft_cluster_opts o = { .n_nodes = n,
				       .election_timeout_ms_min = 300,
				       .election_timeout_ms_max = 310 };
	t->c = raft_cluster_new(t->sim, &o);
	cr_assert(t->c != NULL);
	struct sim_net net = sim_net_unreliable();
	sim_net_set(t->sim, &net);
	for (int round = 0; round < 300; round++) {
		uint32_t id = (uint32_t)sim_rand_range(t->sim, 1, n + 1);
		if (sim_chance(t->sim, 0.5))
			raft_cluster_crash(t->c, id);
		else
			raft_cluster_restart(t->c, id);
		propose(t, raft_cluster_leader_now(t->c), value(t), NULL, NULL);
		run(t, sim_rand_range(t->sim, 0, ET));
		if (raft_cluster_failure(t->c))
			return;
	}
	for (uint32_t id = 1; id <= n; id++)
		raft_cluster_restart(t->c, id);
	CHECK(one(t, value(t), n, true), "no final agreement");
}

/* ---- the same faults through the production storage path ---- */

SCENARIO(persist2_store, 10)
{
	use_store = true;
	sc_persist2(t);
}

SCENARIO(figure8_store, 5)
{
	use_store = true;
	sc_figure8(t);
}

SCENARIO(snapshot_install_crash_store, 10)
{
	use_store = true;
	snapshot_install(t, false, true);
}

SCENARIO(churn_snapshots_store, 10)
{
	use_store = true;
	churn(t, true, SNAP_EVERY);
}

/* ---- determinism ---- */

/* One scenario's whole trace (every send, delivery, drop, crash), hashed. */
static uint64_t traced_run(uint64_t seed, scenario_fn fn)
{
	struct t t = { .seed = seed };
	uint64_t h = SIM_TRACE_HASH_INIT;
	t.sim = sim_new(seed);
	cr_assert(t.sim != NULL);
	sim_set_trace_sink(t.sim, sim_trace_hash, &h);
	sim_set_trace(t.sim, true);
	fn(&t);
	cr_assert(!t.failed && !raft_cluster_failure(t.c), "%s", t.err);
	raft_cluster_free(t.c);
	sim_free(t.sim);
	return h;
}

/* Same seed, same run, byte for byte: what makes a seed a bug report. */
Test(raft_sim, same_seed_same_run)
{
	uint64_t a = traced_run(7, sc_churn_unreliable);
	uint64_t b = traced_run(7, sc_churn_unreliable);
	uint64_t c = traced_run(8, sc_churn_unreliable);
	cr_assert_eq(a, b, "two runs of seed 7 differ");
	cr_assert_neq(a, c, "seeds 7 and 8 gave the same run");
}

Test(raft_sim, same_seed_same_run_store)
{
	uint64_t a = traced_run(3, sc_churn_snapshots_store);
	uint64_t b = traced_run(3, sc_churn_snapshots_store);
	cr_assert_eq(a, b, "two runs of seed 3 differ");
}
