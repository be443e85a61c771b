/*
 * The shard-master clerk, layer by layer:
 *   - clerk/retry: which server next and how long to wait, for a seed;
 *   - clerk/sm_core: the sans-IO clerk, driven on a virtual clock by a
 *     fake shard master in this file (no sockets, no sleeps): leader
 *     discovery, attempt timeouts, deadlines, stale replies, seq numbers
 *     and exactly-once retries, refusals, NOT_READY with backoff;
 *   - shardctl's argument checks, called directly;
 *   - smclerk and the shardctl binary over real gRPC on 127.0.0.1 against
 *     a fake shard master served by common/rpc in this process (every
 *     wait is a blocking call with a deadline).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clerk/retry.h"
#include "clerk/shardctl_args.h"
#include "clerk/sm_core.h"
#include "clerk/smclerk.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/rpc/rpc.h"
#include "common/status.h"
#include "tests/unit/cli_proc.h"

extern char **environ;

/* ================= clerk/retry ================= */

Test(clerk_retry, rotates_through_the_servers)
{
	struct clerk_retry r;
	clerk_retry_init(&r, 3, 1, 0, 0);
	cr_assert_eq(r.backoff_ms_min, 20);
	cr_assert_eq(r.backoff_ms_max, 1000);
	cr_assert_eq(clerk_retry_pick(&r), 0);
	cr_assert_eq(clerk_retry_failed(&r, 0), 0, "no wait inside a round");
	cr_assert_eq(clerk_retry_pick(&r), 1);
	cr_assert_eq(clerk_retry_failed(&r, 1), 0);
	cr_assert_eq(clerk_retry_pick(&r), 2);
	uint64_t d = clerk_retry_failed(&r, 2);
	cr_assert_leq(d, 20, "first round's backoff is at most min");
	cr_assert_eq(r.rounds, 1);
	cr_assert_eq(clerk_retry_pick(&r), 0, "wraps around");
}

Test(clerk_retry, follows_hints_and_remembers_the_leader)
{
	struct clerk_retry r;
	clerk_retry_init(&r, 5, 7, 10, 100);
	cr_assert_eq(clerk_retry_not_leader(&r, 0, 3), 0);
	cr_assert_eq(clerk_retry_pick(&r), 3, "hinted server next");
	clerk_retry_not_leader(&r, 3, (size_t)-1);
	cr_assert_eq(clerk_retry_pick(&r), 4, "no hint: the next one");
	clerk_retry_not_leader(&r, 4, 4);
	cr_assert_eq(clerk_retry_pick(&r), 1,
		     "a hint at itself is no hint: the next server not asked "
		     "in this round (0 was)");
	clerk_retry_not_leader(&r, 1, 99);
	cr_assert_eq(clerk_retry_pick(&r), 2, "a hint out of range neither");
	clerk_retry_answered(&r, 1);
	cr_assert_eq(r.leader, 1);
	cr_assert_eq(r.misses, 0);
	cr_assert_eq(r.rounds, 0);
	cr_assert_eq(clerk_retry_pick(&r), 1, "stays with the leader");
}

Test(clerk_retry, a_round_of_not_leaders_backs_off_too)
{
	/* Two servers pointing at each other (a stale hint during an
	 * election) must not be hammered. */
	struct clerk_retry r;
	clerk_retry_init(&r, 2, 3, 50, 400);
	uint64_t total = 0;
	for (int i = 0; i < 20; i++) {
		size_t s = clerk_retry_pick(&r);
		total += clerk_retry_not_leader(&r, s, 1 - s);
	}
	cr_assert_eq(r.rounds, 10);
	cr_assert_gt(total, 0);
}

Test(clerk_retry, stale_hints_back_and_forth_do_not_hide_the_others)
{
	/* Servers 0 and 1 name each other; the leader is 2. */
	struct clerk_retry r;
	clerk_retry_init(&r, 3, 5, 1, 1);
	bool reached = false;
	for (int i = 0; i < 3 && !reached; i++) {
		size_t s = clerk_retry_pick(&r);
		if (s == 2)
			reached = true;
		else
			clerk_retry_not_leader(&r, s, 1 - s);
	}
	cr_assert(reached, "server 2 never tried");
}

/* cap of round k (1-based): min * 2^(k-1), at most max. */
static uint64_t cap_of(uint64_t min, uint64_t max, int k)
{
	uint64_t c = min;
	for (int i = 1; i < k && c < max; i++)
		c *= 2;
	return c < max ? c : max;
}

Test(clerk_retry, backoff_grows_and_is_bounded_by_max)
{
	uint64_t peak_late = 0;
	for (uint64_t seed = 1; seed <= 50; seed++) {
		struct clerk_retry r;
		clerk_retry_init(&r, 1, seed, 10, 300);
		for (int k = 1; k <= 40; k++) {
			uint64_t d = clerk_retry_failed(&r, 0);
			cr_assert_leq(d, cap_of(10, 300, k),
				      "seed %lu round %d: %lu",
				      (unsigned long)seed, k, (unsigned long)d);
			if (k >= 6 && d > peak_late)
				peak_late = d;
		}
		cr_assert_eq(r.rounds, 40);
	}
	/* Late rounds reach well past the first round's cap of 10. */
	cr_assert_gt(peak_late, 200);
}

Test(clerk_retry, jitter_spreads_within_bounds)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	for (uint64_t seed = 1; seed <= 200; seed++) {
		struct clerk_retry r;
		clerk_retry_init(&r, 1, seed, 100, 1000);
		uint64_t d = clerk_retry_failed(&r, 0);
		cr_assert_leq(d, 100);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	cr_assert_lt(lo, 25, "full jitter reaches low");
	cr_assert_gt(hi, 75, "and high");
}

Test(clerk_retry, deterministic_for_a_seed)
{
	struct clerk_retry a, b, c;
	clerk_retry_init(&a, 2, 99, 10, 5000);
	clerk_retry_init(&b, 2, 99, 10, 5000);
	clerk_retry_init(&c, 2, 100, 10, 5000);
	bool differs = false;
	for (int i = 0; i < 30; i++) {
		uint64_t da = clerk_retry_failed(&a, clerk_retry_pick(&a));
		uint64_t db = clerk_retry_failed(&b, clerk_retry_pick(&b));
		uint64_t dc = clerk_retry_failed(&c, clerk_retry_pick(&c));
		cr_assert_eq(da, db);
		cr_assert_eq(clerk_retry_pick(&a), clerk_retry_pick(&b));
		differs |= da != dc;
	}
	cr_assert(differs, "another seed gives other delays");
}

Test(clerk_retry, max_below_min_is_min)
{
	struct clerk_retry r;
	clerk_retry_init(&r, 1, 5, 300, 100);
	cr_assert_eq(r.backoff_ms_max, 300);
	for (int i = 0; i < 10; i++)
		cr_assert_leq(clerk_retry_failed(&r, 0), 300);
}

/* ================= clerk/sm_core on a fake shard master ================ */

#define NS_MAX 5
#define Q_MAX 64
#define LOG_MAX 256
#define NSHARDS 4
#define GROUPS_MAX 8

enum mode {
	M_LEADER,     /* applies and answers */
	M_FOLLOWER,   /* NOT_LEADER with hint[i] */
	M_DOWN,	      /* transport failure, at once */
	M_SILENT,     /* never answers */
	M_NOT_READY,  /* NOT_READY, not_ready_left[i] times, then leader */
};

/* A reply on its way: the message with all its storage inline, so the
 * fake allocates nothing (mem failure tests count only the core). */
struct qreply {
	bool used;
	uint64_t at_ms, attempt;
	int status; /* transport */
	Skv__SmReply r;
	Skv__Config cfg;
	uint64_t shards[NSHARDS];
	Skv__Group groups[GROUPS_MAX];
	Skv__Group *gp[GROUPS_MAX];
	char srv[GROUPS_MAX][32];
	char *srvp[GROUPS_MAX];
	char error[96];
	char hint[32];
};

struct logged {
	size_t server;
	enum sm_method m;
	uint64_t client_id, seq, at_ms;
};

struct fake {
	size_t n;
	char addr[NS_MAX][48];
	const char *addrp[NS_MAX];
	enum mode mode[NS_MAX];
	const char *hint[NS_MAX];
	int not_ready_left[NS_MAX];
	int drop_replies[NS_MAX]; /* leader: apply, then lose the reply */
	uint64_t latency_ms;

	/* the replicated state, one for all servers */
	uint64_t num;
	uint64_t gids[GROUPS_MAX];
	size_t n_gids;
	uint64_t dedup_client, dedup_seq;
	int dedup_status;
	char dedup_error[96];
	uint64_t applied; /* mutations applied */

	struct logged log[LOG_MAX];
	size_t n_log;

	struct qreply q[Q_MAX];
	uint64_t now;
	struct clerk_sm_core *core;
	uint64_t deadline;
};

static void fake_init(struct fake *f, size_t n)
{
	memset(f, 0, sizeof(*f));
	f->n = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(f->addr[i], sizeof(f->addr[i]), "10.0.0.%zu:7001",
			 i + 1);
		f->addrp[i] = f->addr[i];
		f->mode[i] = M_LEADER;
	}
	f->latency_ms = 5;
}

static struct clerk_sm_core *fake_core(struct fake *f, uint64_t seed)
{
	struct clerk_sm_core_opts o = {
		.n_servers = f->n,
		.servers = f->addrp,
		.client_id = 0xc11e47,
		.seed = seed,
		.attempt_timeout_ms = 1000,
		.backoff_ms_min = 100,
		.backoff_ms_max = 800,
	};
	cr_assert_eq(clerk_sm_core_new(&o, &f->core), STATUS_OK);
	return f->core;
}

static struct qreply *q_slot(struct fake *f)
{
	for (size_t i = 0; i < Q_MAX; i++)
		if (!f->q[i].used) {
			memset(&f->q[i], 0, sizeof(f->q[i]));
			f->q[i].used = true;
			return &f->q[i];
		}
	cr_assert_fail("reply queue full");
	return NULL;
}

/* Configuration `num` with groups gids[0..n) (sorted), each with one
 * server "g<gid>:1", shards dealt round-robin. */
static void fill_config(uint64_t num, const uint64_t *gids, size_t n,
			struct qreply *q)
{
	skv__config__init(&q->cfg);
	q->cfg.num = num;
	q->cfg.n_shards = NSHARDS;
	q->cfg.shards = q->shards;
	for (size_t s = 0; s < NSHARDS; s++)
		q->shards[s] = n ? gids[s % n] : 0;
	for (size_t g = 0; g < n; g++) {
		skv__group__init(&q->groups[g]);
		q->groups[g].gid = gids[g];
		snprintf(q->srv[g], sizeof(q->srv[g]), "g%lu:1",
			 (unsigned long)gids[g]);
		q->srvp[g] = q->srv[g];
		q->groups[g].n_servers = 1;
		q->groups[g].servers = &q->srvp[g];
		q->gp[g] = &q->groups[g];
	}
	q->cfg.n_groups = n;
	q->cfg.groups = q->gp;
	q->r.config = &q->cfg;
}

static size_t gid_index(const struct fake *f, uint64_t gid)
{
	for (size_t i = 0; i < f->n_gids; i++)
		if (f->gids[i] == gid)
			return i;
	return (size_t)-1;
}

/* The leader applies a mutation (dedup by client id + seq). */
static void fake_apply(struct fake *f, enum sm_method m,
		       const ProtobufCMessage *req, uint64_t client,
		       uint64_t seq, struct qreply *q)
{
	if (client == f->dedup_client && seq <= f->dedup_seq) {
		q->r.status = seq == f->dedup_seq ? f->dedup_status : 0;
		snprintf(q->error, sizeof(q->error), "%s", f->dedup_error);
		return;
	}
	int st = STATUS_OK;
	char err[96] = "";
	if (m == SM_METHOD_JOIN) {
		const Skv__JoinRequest *r = (const Skv__JoinRequest *)req;
		for (size_t i = 0; i < r->n_groups && !st; i++)
			if (gid_index(f, r->groups[i]->gid) != (size_t)-1) {
				st = STATUS_INVALID_ARGUMENT;
				snprintf(err, sizeof(err),
					 "gid %lu has already joined",
					 (unsigned long)r->groups[i]->gid);
			}
		for (size_t i = 0; i < r->n_groups && !st; i++)
			f->gids[f->n_gids++] = r->groups[i]->gid;
	} else if (m == SM_METHOD_LEAVE) {
		const Skv__LeaveRequest *r = (const Skv__LeaveRequest *)req;
		for (size_t i = 0; i < r->n_gids && !st; i++) {
			size_t k = gid_index(f, r->gids[i]);
			if (k == (size_t)-1) {
				st = STATUS_INVALID_ARGUMENT;
				snprintf(err, sizeof(err), "unknown gid %lu",
					 (unsigned long)r->gids[i]);
				break;
			}
			f->gids[k] = f->gids[--f->n_gids];
		}
	}
	if (st == STATUS_OK) {
		f->num++;
		f->applied++;
	}
	f->dedup_client = client;
	f->dedup_seq = seq;
	f->dedup_status = st;
	snprintf(f->dedup_error, sizeof(f->dedup_error), "%s", err);
	q->r.status = st;
	snprintf(q->error, sizeof(q->error), "%s", err);
}

/* One request arrives at server s->server. */
static void fake_receive(struct fake *f, const struct clerk_sm_send *s)
{
	cr_assert_lt(s->server, f->n);
	cr_assert_gt(s->timeout_ms, 0);
	ProtobufCMessage *req = NULL;
	int rc = codec_unpack(sm_method_request(s->method), s->bytes, s->len,
			      &req);
	struct logged *l = &f->log[f->n_log < LOG_MAX ? f->n_log++ : 0];
	l->server = s->server;
	l->m = s->method;
	l->at_ms = f->now;
	l->client_id = l->seq = 0;
	if (rc == STATUS_OK && s->method == SM_METHOD_JOIN) {
		l->client_id = ((Skv__JoinRequest *)req)->client_id;
		l->seq = ((Skv__JoinRequest *)req)->seq;
	} else if (rc == STATUS_OK && s->method == SM_METHOD_LEAVE) {
		l->client_id = ((Skv__LeaveRequest *)req)->client_id;
		l->seq = ((Skv__LeaveRequest *)req)->seq;
	} else if (rc == STATUS_OK && s->method == SM_METHOD_MOVE) {
		l->client_id = ((Skv__MoveRequest *)req)->client_id;
		l->seq = ((Skv__MoveRequest *)req)->seq;
	}

	size_t i = s->server;
	if (f->mode[i] == M_SILENT) {
		codec_free(req);
		return;
	}
	struct qreply *q = q_slot(f);
	q->attempt = s->attempt;
	q->at_ms = f->now + f->latency_ms;
	skv__sm_reply__init(&q->r);
	q->r.error = q->error;
	q->r.leader_hint = q->hint;
	if (rc != STATUS_OK) {
		/* What the transport says about undecodable bytes (and
		 * what an injected allocation failure looks like). */
		q->status = STATUS_INVALID_ARGUMENT;
		return;
	}
	if (f->mode[i] == M_NOT_READY && f->not_ready_left[i]-- <= 0)
		f->mode[i] = M_LEADER;
	switch (f->mode[i]) {
	case M_DOWN:
		q->status = STATUS_UNAVAILABLE;
		q->at_ms = f->now;
		break;
	case M_FOLLOWER:
		q->r.status = SKV__STATUS__STATUS_NOT_LEADER;
		snprintf(q->hint, sizeof(q->hint), "%s",
			 f->hint[i] ? f->hint[i] : "");
		break;
	case M_NOT_READY:
		q->r.status = SKV__STATUS__STATUS_NOT_READY;
		snprintf(q->error, sizeof(q->error), "not initialized");
		break;
	case M_LEADER:
		if (s->method == SM_METHOD_QUERY)
			fill_config(f->num, f->gids, f->n_gids, q);
		else
			fake_apply(f, s->method, req, l->client_id, l->seq,
				   q);
		if (f->drop_replies[i] > 0) {
			f->drop_replies[i]--;
			q->used = false;
		}
		break;
	case M_SILENT:
		break;
	}
	codec_free(req);
}

static void pump(struct fake *f)
{
	struct clerk_sm_send s;
	while (clerk_sm_core_next_send(f->core, f->now, &s))
		fake_receive(f, &s);
}

/* Invariants of a running core, checked after every step. */
static void check_core(struct fake *f)
{
	if (!clerk_sm_core_busy(f->core))
		return;
	uint64_t w = clerk_sm_core_wake_ms(f->core);
	cr_assert_neq(w, UINT64_MAX, "a busy core always has a timer");
	cr_assert_leq(w, f->deadline, "never sleeps past the deadline");
}

/* Runs the operation to its end on the virtual clock. */
static int run_op(struct fake *f)
{
	for (int steps = 0; steps < 100000; steps++) {
		pump(f);
		check_core(f);
		int st;
		if (clerk_sm_core_done(f->core, &st, NULL, NULL))
			return st;
		uint64_t next = clerk_sm_core_wake_ms(f->core);
		for (size_t i = 0; i < Q_MAX; i++)
			if (f->q[i].used && f->q[i].at_ms < next)
				next = f->q[i].at_ms;
		if (next > f->now)
			f->now = next;
		for (size_t i = 0; i < Q_MAX; i++) {
			struct qreply *q = &f->q[i];
			if (!q->used || q->at_ms > f->now)
				continue;
			clerk_sm_core_on_reply(f->core, f->now, q->attempt,
					       q->status,
					       q->status ? NULL : &q->r);
			/* The core keeps its own copy. */
			memset(q, 0xa5, sizeof(*q));
			q->used = false;
		}
		clerk_sm_core_tick(f->core, f->now);
	}
	cr_assert_fail("operation did not end");
	return -1;
}

static int start_join(struct fake *f, uint64_t gid, uint64_t timeout_ms)
{
	char srv[] = "127.0.0.1:7101";
	char *srvs[] = {srv};
	Skv__Group g = SKV__GROUP__INIT;
	g.gid = gid;
	g.n_servers = 1;
	g.servers = srvs;
	Skv__Group *gp[] = {&g};
	Skv__JoinRequest r = SKV__JOIN_REQUEST__INIT;
	r.n_groups = 1;
	r.groups = gp;
	f->deadline = f->now + timeout_ms;
	return clerk_sm_core_start(f->core, f->now, SM_METHOD_JOIN, &r.base,
				   f->deadline);
}

static int start_leave(struct fake *f, uint64_t gid, uint64_t timeout_ms)
{
	Skv__LeaveRequest r = SKV__LEAVE_REQUEST__INIT;
	r.n_gids = 1;
	r.gids = &gid;
	f->deadline = f->now + timeout_ms;
	return clerk_sm_core_start(f->core, f->now, SM_METHOD_LEAVE, &r.base,
				   f->deadline);
}

static int start_query(struct fake *f, int64_t num, uint64_t timeout_ms)
{
	Skv__QueryRequest r = SKV__QUERY_REQUEST__INIT;
	r.num = num;
	f->deadline = f->now + timeout_ms;
	return clerk_sm_core_start(f->core, f->now, SM_METHOD_QUERY, &r.base,
				   f->deadline);
}

static void fake_fini(struct fake *f)
{
	clerk_sm_core_free(f->core);
	f->core = NULL;
}

Test(clerk_sm_core, rejects_bad_use)
{
	struct clerk_sm_core *c;
	struct clerk_sm_core_opts o = {.n_servers = 0};
	cr_assert_eq(clerk_sm_core_new(&o, &c), STATUS_INVALID_ARGUMENT);
	cr_assert_null(c);

	struct fake f;
	fake_init(&f, 3);
	fake_core(&f, 1);
	cr_assert_eq(clerk_sm_core_retry(f.core, 0, 100),
		     STATUS_INVALID_ARGUMENT, "nothing to retry yet");
	Skv__LeaveRequest wrong = SKV__LEAVE_REQUEST__INIT;
	cr_assert_eq(clerk_sm_core_start(f.core, 0, SM_METHOD_JOIN,
					 &wrong.base, 100),
		     STATUS_INVALID_ARGUMENT, "message does not match");
	cr_assert_eq(clerk_sm_core_start(f.core, 0, (enum sm_method)9,
					 &wrong.base, 100),
		     STATUS_INVALID_ARGUMENT, "no such method");
	cr_assert_eq(start_query(&f, -1, 1000), STATUS_OK);
	cr_assert(clerk_sm_core_busy(f.core));
	cr_assert_eq(start_query(&f, -1, 1000), STATUS_INVALID_ARGUMENT,
		     "one operation at a time");
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(clerk_sm_core_retry(f.core, f.now, f.now + 10),
		     STATUS_INVALID_ARGUMENT, "only a timed-out op retries");
	cr_assert_eq(clerk_sm_core_client_id(f.core), 0xc11e47);
	fake_fini(&f);
}

Test(clerk_sm_core, finds_the_leader_through_a_hint)
{
	struct fake f;
	fake_init(&f, 3);
	f.mode[0] = f.mode[1] = M_FOLLOWER;
	f.hint[0] = f.hint[1] = f.addr[2];
	fake_core(&f, 1);

	cr_assert_eq(start_join(&f, 100, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.n_log, 2, "asked server 0, then the hinted one");
	cr_assert_eq(f.log[0].server, 0);
	cr_assert_eq(f.log[1].server, 2);
	cr_assert_eq(f.log[1].at_ms, f.log[0].at_ms + f.latency_ms,
		     "redirected at once, no backoff");
	struct clerk_sm_stats st;
	clerk_sm_core_stats(f.core, &st);
	cr_assert_eq(st.attempts, 2);
	cr_assert_eq(st.not_leader, 1);
	cr_assert_eq(st.answered, 2);

	/* The next operation goes straight to the leader. */
	cr_assert_eq(start_query(&f, -1, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.n_log, 3);
	cr_assert_eq(f.log[2].server, 2);
	const Skv__SmReply *r;
	const char *err;
	int status;
	cr_assert(clerk_sm_core_done(f.core, &status, &r, &err));
	cr_assert_str_eq(err, "");
	cr_assert_not_null(r->config);
	cr_assert_eq(r->config->num, 1);
	cr_assert_eq(r->config->n_groups, 1);
	cr_assert_eq(r->config->groups[0]->gid, 100);
	cr_assert_str_eq(r->config->groups[0]->servers[0], "g100:1");
	fake_fini(&f);
}

Test(clerk_sm_core, unknown_hint_or_none_tries_the_next_server)
{
	struct fake f;
	fake_init(&f, 3);
	f.mode[0] = M_FOLLOWER;
	f.hint[0] = "192.168.9.9:7001"; /* not one of ours */
	f.mode[1] = M_FOLLOWER;		/* no hint */
	fake_core(&f, 1);
	cr_assert_eq(start_query(&f, -1, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.n_log, 3);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(f.log[i].server, i);
	fake_fini(&f);
}

Test(clerk_sm_core, a_silent_server_times_out_and_the_next_is_tried)
{
	struct fake f;
	fake_init(&f, 3);
	f.mode[0] = M_SILENT;
	f.mode[1] = M_DOWN;
	fake_core(&f, 1);
	cr_assert_eq(start_query(&f, -1, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.n_log, 3);
	cr_assert_eq(f.log[0].server, 0);
	cr_assert_eq(f.log[1].server, 1);
	cr_assert_eq(f.log[1].at_ms, 1000, "after the attempt timeout");
	cr_assert_eq(f.log[2].server, 2);
	cr_assert_eq(f.log[2].at_ms, 1000, "a refused call moves on at once");
	struct clerk_sm_stats st;
	clerk_sm_core_stats(f.core, &st);
	cr_assert_eq(st.timed_out, 1);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(st.last_failure, STATUS_UNAVAILABLE);
	cr_assert_eq(st.last_failure_server, 1);
	fake_fini(&f);
}

Test(clerk_sm_core, the_deadline_gives_timeout)
{
	struct fake f;
	fake_init(&f, 3);
	f.mode[0] = f.mode[1] = f.mode[2] = M_SILENT;
	fake_core(&f, 4);
	cr_assert_eq(start_join(&f, 100, 4500), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_TIMEOUT);
	cr_assert_eq(f.now, 4500, "ends exactly at the deadline");
	cr_assert_not(clerk_sm_core_busy(f.core));
	cr_assert_eq(clerk_sm_core_wake_ms(f.core), UINT64_MAX);
	const Skv__SmReply *r = (void *)1;
	const char *err;
	int st;
	cr_assert(clerk_sm_core_done(f.core, &st, &r, &err));
	cr_assert_null(r);
	cr_assert(strstr(err, "no answer"), "%s", err);
	struct clerk_sm_stats s;
	clerk_sm_core_stats(f.core, &s);
	cr_assert_eq(s.answered, 0);
	cr_assert_geq(s.timed_out, 4);
	/* Every attempt's own timeout lies within the deadline. */
	for (size_t i = 0; i < f.n_log; i++)
		cr_assert_lt(f.log[i].at_ms, 4500);
	fake_fini(&f);
}

Test(clerk_sm_core, no_leader_anywhere_is_a_timeout_with_answers)
{
	struct fake f;
	fake_init(&f, 3);
	f.mode[0] = f.mode[1] = f.mode[2] = M_FOLLOWER;
	fake_core(&f, 5);
	cr_assert_eq(start_query(&f, -1, 3000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_TIMEOUT);
	struct clerk_sm_stats s;
	clerk_sm_core_stats(f.core, &s);
	cr_assert_gt(s.answered, 0);
	cr_assert_eq(s.not_leader, s.answered);
	const char *err;
	clerk_sm_core_done(f.core, NULL, NULL, &err);
	cr_assert(strstr(err, "no leader"), "%s", err);
	/* Backoff between rounds: far fewer attempts than a busy loop. */
	cr_assert_lt(s.attempts, 3000 / f.latency_ms / 2);
	fake_fini(&f);
}

Test(clerk_sm_core, stale_replies_are_ignored)
{
	struct fake f;
	fake_init(&f, 2);
	fake_core(&f, 1);
	cr_assert_eq(start_query(&f, -1, 10000), STATUS_OK);
	struct clerk_sm_send s1, s2, s3;
	cr_assert(clerk_sm_core_next_send(f.core, 0, &s1));
	cr_assert_not(clerk_sm_core_next_send(f.core, 0, &s2),
		      "one attempt at a time");
	cr_assert_eq(clerk_sm_core_wake_ms(f.core), 1000);
	clerk_sm_core_tick(f.core, 1000);
	cr_assert(clerk_sm_core_next_send(f.core, 1000, &s2));
	cr_assert_gt(s2.attempt, s1.attempt);
	cr_assert_eq(s2.server, 1);

	/* The first attempt's reply arrives late: ignored. */
	Skv__SmReply ok = SKV__SM_REPLY__INIT;
	Skv__Config cfg = SKV__CONFIG__INIT;
	cfg.num = 7;
	ok.config = &cfg;
	clerk_sm_core_on_reply(f.core, 1001, s1.attempt, STATUS_OK, &ok);
	cr_assert(clerk_sm_core_busy(f.core));
	cr_assert_not(clerk_sm_core_done(f.core, NULL, NULL, NULL));
	/* So is a failure report for it. */
	clerk_sm_core_on_reply(f.core, 1002, s1.attempt, STATUS_UNAVAILABLE,
			       NULL);
	cr_assert(clerk_sm_core_busy(f.core));
	cr_assert_not(clerk_sm_core_next_send(f.core, 1002, &s3));

	cfg.num = 8;
	clerk_sm_core_on_reply(f.core, 1003, s2.attempt, STATUS_OK, &ok);
	const Skv__SmReply *r;
	int st;
	cr_assert(clerk_sm_core_done(f.core, &st, &r, NULL));
	cr_assert_eq(st, STATUS_OK);
	cr_assert_eq(r->config->num, 8);
	/* A duplicate of the answer, after the end: ignored. */
	cfg.num = 9;
	clerk_sm_core_on_reply(f.core, 1004, s2.attempt, STATUS_OK, &ok);
	cr_assert(clerk_sm_core_done(f.core, &st, &r, NULL));
	cr_assert_eq(r->config->num, 8);

	/* Replies to the old operation do not end a new one. */
	cr_assert_eq(start_query(&f, -1, 10000), STATUS_OK);
	f.now = 1005;
	cr_assert(clerk_sm_core_next_send(f.core, 1005, &s3));
	cr_assert_gt(s3.attempt, s2.attempt);
	clerk_sm_core_on_reply(f.core, 1006, s2.attempt, STATUS_OK, &ok);
	clerk_sm_core_on_reply(f.core, 1006, s1.attempt, STATUS_OK, &ok);
	cr_assert(clerk_sm_core_busy(f.core));
	fake_fini(&f);
}

Test(clerk_sm_core, seq_grows_per_operation_and_stays_on_retries)
{
	struct fake f;
	fake_init(&f, 3);
	f.mode[0] = M_FOLLOWER;
	f.hint[0] = f.addr[1];
	f.mode[1] = M_NOT_READY;
	f.not_ready_left[1] = 2;
	fake_core(&f, 2);

	cr_assert_eq(start_join(&f, 100, 20000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_geq(f.n_log, 3, "several attempts");
	for (size_t i = 0; i < f.n_log; i++) {
		cr_assert_eq(f.log[i].seq, 1, "attempt %zu", i);
		cr_assert_eq(f.log[i].client_id, 0xc11e47);
	}
	size_t first = f.n_log;
	cr_assert_eq(start_query(&f, -1, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.log[first].seq, 0, "a query carries no seq");
	first = f.n_log;
	cr_assert_eq(start_leave(&f, 100, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.log[first].seq, 2, "the next mutation: seq 2");
	cr_assert_eq(f.applied, 2);
	fake_fini(&f);
}

Test(clerk_sm_core, retry_after_timeout_reuses_the_seq_exactly_once)
{
	struct fake f;
	fake_init(&f, 3);
	/* The leader applies the join but its replies are lost until the
	 * deadline; then the network heals. */
	f.drop_replies[0] = 1000;
	f.mode[1] = f.mode[2] = M_FOLLOWER;
	f.hint[1] = f.hint[2] = f.addr[0];
	fake_core(&f, 3);
	cr_assert_eq(start_join(&f, 100, 3000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_TIMEOUT);
	cr_assert_eq(f.applied, 1, "applied, but the clerk cannot know");
	f.drop_replies[0] = 0;
	size_t first = f.n_log;
	f.deadline = f.now + 5000;
	cr_assert_eq(clerk_sm_core_retry(f.core, f.now, f.deadline),
		     STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK, "the stored outcome");
	cr_assert_eq(f.log[first].seq, 1, "same seq as the first run");
	cr_assert_eq(f.applied, 1, "exactly once");
	cr_assert_eq(f.num, 1);

	/* A new operation after the retry gets the next seq. */
	first = f.n_log;
	cr_assert_eq(start_join(&f, 101, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.log[first].seq, 2);
	cr_assert_eq(f.applied, 2);
	fake_fini(&f);
}

Test(clerk_sm_core, invalid_argument_ends_the_operation_with_the_reason)
{
	struct fake f;
	fake_init(&f, 3);
	fake_core(&f, 1);
	cr_assert_eq(start_join(&f, 100, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	size_t before = f.n_log;
	cr_assert_eq(start_join(&f, 100, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_INVALID_ARGUMENT);
	cr_assert_eq(f.n_log, before + 1, "no retry of a refusal");
	const Skv__SmReply *r;
	const char *err;
	int st;
	cr_assert(clerk_sm_core_done(f.core, &st, &r, &err));
	cr_assert_eq(st, STATUS_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "gid 100 has already joined");
	cr_assert_not_null(r, "the reply is kept");
	cr_assert_str_eq(r->error, "gid 100 has already joined");

	cr_assert_eq(start_leave(&f, 555, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_INVALID_ARGUMENT);
	clerk_sm_core_done(f.core, NULL, NULL, &err);
	cr_assert_str_eq(err, "unknown gid 555");
	fake_fini(&f);
}

Test(clerk_sm_core, not_ready_is_retried_with_backoff)
{
	const uint64_t seed = 42;
	struct fake f;
	fake_init(&f, 3);
	f.latency_ms = 0;
	for (size_t i = 0; i < 3; i++) {
		f.mode[i] = M_NOT_READY;
		f.not_ready_left[i] = 1;
	}
	fake_core(&f, seed);
	/* The delay the policy must take after the first full round. */
	struct clerk_retry shadow;
	clerk_retry_init(&shadow, 3, seed, 100, 800);
	clerk_retry_failed(&shadow, 0);
	clerk_retry_failed(&shadow, 1);
	uint64_t d = clerk_retry_failed(&shadow, 2);
	cr_assert_gt(d, 0, "pick a seed with a visible delay");

	cr_assert_eq(start_query(&f, -1, 5000), STATUS_OK);
	cr_assert_eq(run_op(&f), STATUS_OK);
	cr_assert_eq(f.n_log, 4);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(f.log[i].at_ms, 0, "within a round: at once");
	cr_assert_eq(f.log[3].at_ms, d, "then the backoff");
	cr_assert_eq(f.log[3].server, 0);
	struct clerk_sm_stats s;
	clerk_sm_core_stats(f.core, &s);
	cr_assert_eq(s.not_ready, 3);
	fake_fini(&f);
}

Test(clerk_sm_core, reply_statuses_unavailable_and_shutdown_retry)
{
	struct fake f;
	fake_init(&f, 2);
	fake_core(&f, 1);
	cr_assert_eq(start_query(&f, -1, 5000), STATUS_OK);
	struct clerk_sm_send s;
	Skv__SmReply r = SKV__SM_REPLY__INIT;
	r.status = SKV__STATUS__STATUS_SHUTDOWN;
	cr_assert(clerk_sm_core_next_send(f.core, 0, &s));
	clerk_sm_core_on_reply(f.core, 1, s.attempt, STATUS_OK, &r);
	cr_assert(clerk_sm_core_busy(f.core));
	cr_assert(clerk_sm_core_next_send(f.core, 1, &s));
	cr_assert_eq(s.server, 1);
	r.status = SKV__STATUS__STATUS_UNAVAILABLE;
	clerk_sm_core_on_reply(f.core, 2, s.attempt, STATUS_OK, &r);
	cr_assert(clerk_sm_core_busy(f.core));
	/* A reply status outside the retry set ends the operation. */
	uint64_t w = clerk_sm_core_wake_ms(f.core);
	clerk_sm_core_tick(f.core, w);
	cr_assert(clerk_sm_core_next_send(f.core, w, &s));
	r.status = SKV__STATUS__STATUS_WRONG_GROUP;
	clerk_sm_core_on_reply(f.core, w, s.attempt, STATUS_OK, &r);
	int st;
	const char *err;
	cr_assert(clerk_sm_core_done(f.core, &st, NULL, &err));
	cr_assert_eq(st, STATUS_WRONG_GROUP);
	cr_assert_str_eq(err, status_str(STATUS_WRONG_GROUP),
			 "no text from the server: the status's own");
	fake_fini(&f);
}

Test(clerk_sm_core, survives_allocation_failures)
{
	int completed = 0;
	for (long n = 1; n <= 80; n++) {
		struct fake f;
		fake_init(&f, 3);
		f.mode[0] = M_FOLLOWER;
		f.hint[0] = f.addr[1];
		mem_fail_after(n);
		struct clerk_sm_core_opts o = {
			.n_servers = 3,
			.servers = f.addrp,
			.client_id = 1,
			.seed = 1,
		};
		int rc = clerk_sm_core_new(&o, &f.core);
		if (rc) {
			mem_fail_reset();
			cr_assert_eq(rc, STATUS_NO_MEMORY);
			cr_assert_null(f.core);
			continue;
		}
		rc = start_join(&f, 100, 3000);
		if (rc == STATUS_OK) {
			rc = run_op(&f);
			cr_assert(rc == STATUS_OK || rc == STATUS_NO_MEMORY ||
					  rc == STATUS_TIMEOUT,
				  "n=%ld: %s", n, status_name(rc));
			completed += rc == STATUS_OK;
		} else {
			cr_assert_eq(rc, STATUS_NO_MEMORY);
		}
		mem_fail_reset();
		fake_fini(&f);
	}
	cr_assert_gt(completed, 0, "late failure points let it finish");
}

/* ================= shardctl's arguments ================= */

static int parse_line(const char *env, struct shardctl_args *a, char *err,
		      size_t cap, ...)
{
	char *argv[32];
	va_list ap;
	va_start(ap, cap);
	int argc = cli_proc_vline(argv, 32, "shardctl", ap);
	va_end(ap);
	return shardctl_parse(argc, argv, env, a, err, cap);
}

#define M "--masters=127.0.0.1:7001,127.0.0.1:7002"

Test(shardctl_args, gids)
{
	uint64_t g;
	cr_assert(shardctl_parse_gid("1", &g) && g == 1);
	cr_assert(shardctl_parse_gid("9223372036854775807", &g) &&
		  g == INT64_MAX);
	const char *bad[] = {"0", "-1", "+1", " 1", "1 ", "abc", "0x10", "1e3",
			     "", "9223372036854775808",
			     "99999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(shardctl_parse_gid(bad[i], &g), "'%s'", bad[i]);
}

Test(shardctl_args, addresses)
{
	char why[128];
	const char *good[] = {"127.0.0.1:7001", "localhost:1", "a.b-c:65535",
			      "[::1]:7001"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(shardctl_check_addr(good[i], why, sizeof(why)),
			     STATUS_OK, "'%s': %s", good[i], why);
	const char *bad[] = {"", "host", ":7001", "h:", "h:0", "h:65536",
			     "h:80x", "h:-1", "h: 80", "a b:1", "::1:7001",
			     "[]:1", "h:0000080", "h/x:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(shardctl_check_addr(bad[i], why, sizeof(why)),
			     STATUS_INVALID_ARGUMENT, "'%s'", bad[i]);
	char **v;
	size_t n;
	char err[256];
	cr_assert_eq(shardctl_parse_addr_list("a:1,b:2", "x", &v, &n, err,
					      sizeof(err)),
		     STATUS_OK);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(v[1], "b:2");
	shardctl_free_strings(v, n);
	cr_assert_eq(shardctl_parse_addr_list("a:1,,b:2", "--masters", &v, &n,
					      err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "--masters: empty address"), "%s", err);
	cr_assert_eq(shardctl_parse_addr_list("a:1,a:1", "x", &v, &n, err,
					      sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "twice"), "%s", err);
	cr_assert_eq(shardctl_parse_addr_list("a:1,b", "group 7", &v, &n, err,
					      sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "group 7: bad address 'b' (no port)"), "%s",
		  err);
	cr_assert(strstr(err, "HOST:PORT"), "says the right form: %s", err);
}

Test(shardctl_args, parses_each_command)
{
	struct shardctl_args a;
	char err[512];
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "--json",
				"join", "100=a:1,b:2", "7=c:3", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, SHARDCTL_JOIN);
	cr_assert(a.json);
	cr_assert_eq(a.timeout_ms, SHARDCTL_TIMEOUT_MS_DEFAULT);
	cr_assert_eq(a.n_masters, 2);
	cr_assert_str_eq(a.masters[1], "127.0.0.1:7002");
	cr_assert_eq(a.n_groups, 2);
	cr_assert_eq(a.groups[0].gid, 100);
	cr_assert_eq(a.groups[0].n_servers, 2);
	cr_assert_str_eq(a.groups[0].servers[1], "b:2");
	cr_assert_eq(a.groups[1].gid, 7);
	shardctl_args_release(&a);

	/* Flags after the command; masters from the environment. */
	cr_assert_eq(parse_line("h:1,h:2", &a, err, sizeof(err), "leave", "5",
				"6", "--timeout", "250", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, SHARDCTL_LEAVE);
	cr_assert_eq(a.n_gids, 2);
	cr_assert_eq(a.gids[1], 6);
	cr_assert_eq(a.timeout_ms, 250);
	cr_assert(a.masters_from_env);
	cr_assert_str_eq(a.masters[0], "h:1");
	shardctl_args_release(&a);

	/* --masters wins over the environment. */
	cr_assert_eq(parse_line("h:1", &a, err, sizeof(err), M, "move", "3",
				"100", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, SHARDCTL_MOVE);
	cr_assert_not(a.masters_from_env);
	cr_assert_eq(a.n_masters, 2);
	cr_assert_eq(a.shard, 3);
	cr_assert_eq(a.gid, 100);
	shardctl_args_release(&a);

	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "query", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.num, -1);
	shardctl_args_release(&a);
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "query", "-1",
				NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.num, -1);
	shardctl_args_release(&a);
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "query", "12",
				NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.num, 12);
	shardctl_args_release(&a);

	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), "help", NULL),
		     STATUS_OK, "help needs no masters: %s", err);
	cr_assert_eq(a.cmd, SHARDCTL_HELP);
	shardctl_args_release(&a);
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), "--help", NULL),
		     STATUS_OK);
	cr_assert_eq(a.cmd, SHARDCTL_HELP);
	shardctl_args_release(&a);
}

Test(shardctl_args, status_takes_extra_servers)
{
	struct shardctl_args a;
	char err[512];
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "status",
				NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.cmd, SHARDCTL_STATUS);
	cr_assert_eq(a.n_addrs, 0);
	shardctl_args_release(&a);
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "status",
				"127.0.0.1:7101", "h:7102", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.n_addrs, 2);
	cr_assert_str_eq(a.addrs[0], "127.0.0.1:7101");
	cr_assert_str_eq(a.addrs[1], "h:7102");
	shardctl_args_release(&a);
	cr_assert_eq(parse_line(NULL, &a, err, sizeof(err), M, "status",
				"h:1", "h", NULL),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_eq(a.cmd, SHARDCTL_STATUS);
	cr_assert(strstr(err, "status: bad address 'h' (no port)"), "%s",
		  err);
	cr_assert_str_eq(shardctl_cmd_usage(a.cmd),
			 "usage: shardctl [FLAGS] status [ADDR ...]");
	shardctl_args_release(&a);
}

struct bad_line {
	const char *args[6];
	enum shardctl_cmd cmd;
	const char *says;
};

Test(shardctl_args, bad_lines_say_what_is_wrong)
{
	const struct bad_line cases[] = {
		{{M, NULL}, SHARDCTL_NONE, "no command"},
		{{M, "frobnicate", NULL}, SHARDCTL_NONE, "unknown command"},
		{{M, "--frob", "query", NULL}, SHARDCTL_NONE, "--frob"},
		{{M, "--timeout", "0", "query", NULL}, SHARDCTL_NONE,
		 "--timeout"},
		{{M, "--timeout", "soon", "query", NULL}, SHARDCTL_NONE,
		 "--timeout"},
		{{"query", NULL}, SHARDCTL_QUERY, "SHARDKV_MASTERS"},
		{{"--masters", "a:1,b", "query", NULL}, SHARDCTL_QUERY,
		 "--masters: bad address 'b'"},
		{{M, "join", NULL}, SHARDCTL_JOIN, "no group"},
		{{M, "join", "100", NULL}, SHARDCTL_JOIN, "GID=ADDR"},
		{{M, "join", "x=a:1", NULL}, SHARDCTL_JOIN, "bad GID 'x'"},
		{{M, "join", "0=a:1", NULL}, SHARDCTL_JOIN, "bad GID '0'"},
		{{M, "join", "100=", NULL}, SHARDCTL_JOIN, "no servers"},
		{{M, "join", "100=a:99999", NULL}, SHARDCTL_JOIN,
		 "group 100: bad address 'a:99999'"},
		{{M, "join", "1=a:1", "1=b:1", NULL}, SHARDCTL_JOIN, "twice"},
		{{M, "leave", NULL}, SHARDCTL_LEAVE, "no GID"},
		{{M, "leave", "1", "abc", NULL}, SHARDCTL_LEAVE,
		 "bad GID 'abc'"},
		{{M, "leave", "1", "1", NULL}, SHARDCTL_LEAVE, "twice"},
		{{M, "move", "1", NULL}, SHARDCTL_MOVE, "SHARD GID"},
		{{M, "move", "x", "1", NULL}, SHARDCTL_MOVE, "bad SHARD 'x'"},
		{{M, "move", "1", "0", NULL}, SHARDCTL_MOVE, "bad GID '0'"},
		{{M, "query", "1", "2", NULL}, SHARDCTL_QUERY, "at most one"},
		{{M, "query", "-2", NULL}, SHARDCTL_QUERY, "bad NUM '-2'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_line *c = &cases[i];
		char *argv[8] = {"shardctl"};
		int argc = 1;
		for (size_t j = 0; c->args[j]; j++)
			argv[argc++] = (char *)c->args[j];
		struct shardctl_args a;
		char err[512];
		int rc = shardctl_parse(argc, argv, NULL, &a, err, sizeof(err));
		cr_assert_eq(rc, STATUS_INVALID_ARGUMENT, "case %zu", i);
		cr_assert(strstr(err, c->says), "case %zu: '%s' lacks '%s'", i,
			  err, c->says);
		cr_assert_eq(a.cmd, c->cmd, "case %zu", i);
		shardctl_args_release(&a);
	}
	cr_assert_str_eq(shardctl_cmd_usage(SHARDCTL_MOVE),
			 "usage: shardctl [FLAGS] move SHARD GID");
}

/* ================= shardctl, the binary ================= */

/* Runs shardctl with `args` (NULL-terminated), env SHARDKV_MASTERS =
 * `env_masters` (or unset), and collects its output. */
static void run_shardctl(const char *env_masters, const char *const *args,
			 struct cli_proc_out *po)
{
	cli_proc_run(SHARDCTL_PATH, env_masters, args, NULL, 0, po);
}

Test(shardctl_bin, help_and_usage_errors, .timeout = 120)
{
	struct cli_proc_out po;
	run_shardctl(NULL, (const char *[]){"--help", NULL}, &po);
	cr_assert_eq(po.code, 0);
	cr_assert(strstr(po.out, "usage: shardctl"), "%s", po.out);
	cr_assert(strstr(po.out, "SHARDKV_MASTERS"), "env documented");
	run_shardctl(NULL, (const char *[]){"help", NULL}, &po);
	cr_assert_eq(po.code, 0);
	cr_assert(strstr(po.out, "exit status"));

	run_shardctl(NULL,
		     (const char *[]){"--masters", "127.0.0.1:7001", "join",
				      "abc=127.0.0.1:7101", NULL},
		     &po);
	cr_assert_eq(po.code, 2);
	cr_assert(strstr(po.err, "shardctl: join: bad GID 'abc'"), "%s",
		  po.err);
	cr_assert(strstr(po.err, "usage: shardctl [FLAGS] join GID=ADDR"),
		  "the command's usage line: %s", po.err);
	cr_assert_str_eq(po.out, "");

	run_shardctl(NULL,
		     (const char *[]){"--masters", "127.0.0.1", "query", NULL},
		     &po);
	cr_assert_eq(po.code, 2);
	cr_assert(strstr(po.err, "--masters: bad address '127.0.0.1' (no "
				 "port)"),
		  "%s", po.err);

	run_shardctl(NULL, (const char *[]){"move", "1", NULL}, &po);
	cr_assert_eq(po.code, 2);
	cr_assert(strstr(po.err, "SHARD GID"), "%s", po.err);

	run_shardctl(NULL, (const char *[]){"query", NULL}, &po);
	cr_assert_eq(po.code, 2, "no masters anywhere");
	cr_assert(strstr(po.err, "--masters") &&
			  strstr(po.err, "SHARDKV_MASTERS"),
		  "%s", po.err);

	run_shardctl(NULL,
		     (const char *[]){"--json", "--masters", "h:1", "leave",
				      "zero", NULL},
		     &po);
	cr_assert_eq(po.code, 2);
	cr_assert(strstr(po.out, "{\"ok\":false,\"status\":\"USAGE\""), "%s",
		  po.out);
}

Test(shardctl_bin, unreachable_masters_exit_3, .timeout = 120)
{
	int fd1, fd2;
	char masters[64];
	snprintf(masters, sizeof(masters), "127.0.0.1:%d,127.0.0.1:%d",
		 cli_proc_refusing_port(&fd1), cli_proc_refusing_port(&fd2));
	struct cli_proc_out po;
	run_shardctl(masters, (const char *[]){"--timeout", "600", "query",
					       NULL},
		     &po);
	cr_assert_eq(po.code, 3, "%s", po.err);
	cr_assert(strstr(po.err, "shardctl: no shard master answered at "),
		  "%s", po.err);
	cr_assert(strstr(po.err, masters), "%s", po.err);
	cr_assert(strstr(po.err, "SHARDKV_MASTERS is right"),
		  "names where the list came from: %s", po.err);
	cr_assert(strstr(po.err, "TIMEOUT after 600 ms"), "%s", po.err);
	cr_assert_eq(strchr(po.err, '\n'), po.err + strlen(po.err) - 1,
		     "one line: %s", po.err);
	close(fd1);
	close(fd2);
}

/* ================= smclerk over gRPC, against a fake ================= */

/* A shard master over common/rpc: server 0 is a follower pointing at
 * server 1, the leader; or every server answers NOT_READY. */
struct net_fake {
	pthread_mutex_t mu;
	struct rpc_server *srv[2];
	char addr[2][32];
	bool all_not_ready;
	uint64_t num;
	uint64_t gids[GROUPS_MAX];
	size_t n_gids;
	uint64_t last_client, last_seq; /* dedup of the last joiner */
	int calls[2];
};

struct net_ctx {
	struct net_fake *f;
	size_t idx;
	enum sm_method m;
};

static struct net_ctx net_ctxs[2][5];

static void net_handle(void *ctx, struct rpc_call *call, ProtobufCMessage *req)
{
	struct net_ctx *c = ctx;
	struct net_fake *f = c->f;
	struct qreply q;
	memset(&q, 0, sizeof(q));
	skv__sm_reply__init(&q.r);
	q.r.error = q.error;
	q.r.leader_hint = q.hint;
	pthread_mutex_lock(&f->mu);
	f->calls[c->idx]++;
	if (f->all_not_ready) {
		q.r.status = SKV__STATUS__STATUS_NOT_READY;
	} else if (c->idx == 0) {
		q.r.status = SKV__STATUS__STATUS_NOT_LEADER;
		snprintf(q.hint, sizeof(q.hint), "%s", f->addr[1]);
	} else if (c->m == SM_METHOD_JOIN) {
		const Skv__JoinRequest *r = (const Skv__JoinRequest *)req;
		if (r->client_id != f->last_client || r->seq > f->last_seq) {
			f->last_client = r->client_id;
			f->last_seq = r->seq;
			for (size_t i = 0; i < r->n_groups; i++)
				f->gids[f->n_gids++] = r->groups[i]->gid;
			f->num++;
		}
	} else if (c->m == SM_METHOD_MOVE) {
		q.r.status = SKV__STATUS__STATUS_INVALID_ARGUMENT;
		snprintf(q.error, sizeof(q.error), "gid %lu is not in the "
						   "configuration",
			 (unsigned long)((const Skv__MoveRequest *)req)->gid);
	} else if (c->m == SM_METHOD_QUERY) {
		fill_config(f->num, f->gids, f->n_gids, &q);
	}
	pthread_mutex_unlock(&f->mu);
	rpc_call_reply(call, &q.r.base);
	codec_free(req);
}

static void net_start(struct net_fake *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	for (size_t i = 0; i < 2; i++) {
		f->srv[i] = rpc_server_new(NULL);
		cr_assert_not_null(f->srv[i]);
		for (int m = SM_METHOD_JOIN; m <= SM_METHOD_QUERY; m++) {
			struct net_ctx *c = &net_ctxs[i][m];
			*c = (struct net_ctx){f, i, (enum sm_method)m};
			cr_assert_eq(rpc_server_add_method(
					     f->srv[i],
					     sm_method_path((enum sm_method)m),
					     sm_method_request(
						     (enum sm_method)m),
					     net_handle, c),
				     STATUS_OK);
		}
		int port;
		char err[256];
		cr_assert_eq(rpc_server_start(f->srv[i], "127.0.0.1:0", &port,
					      err, sizeof(err)),
			     STATUS_OK, "%s", err);
		snprintf(f->addr[i], sizeof(f->addr[i]), "127.0.0.1:%d", port);
	}
}

static void net_stop(struct net_fake *f)
{
	for (size_t i = 0; i < 2; i++)
		rpc_server_free(f->srv[i]);
	pthread_mutex_destroy(&f->mu);
}

Test(smclerk, redirects_joins_and_queries, .timeout = 120)
{
	struct net_fake f;
	net_start(&f);
	const char *addrs[] = {f.addr[0], f.addr[1]};
	struct smclerk *k;
	cr_assert_eq(smclerk_new(addrs, 2, NULL, &k), STATUS_OK);
	cr_assert_neq(smclerk_client_id(k), 0);

	const char *srvs[] = {"127.0.0.1:7101", "127.0.0.1:7102"};
	struct smclerk_group g = {.gid = 100, .n_servers = 2,
				  .servers = srvs};
	struct smclerk_result res;
	cr_assert_eq(smclerk_join(k, &g, 1, 20000, &res), STATUS_OK, "%s",
		     res.error);
	cr_assert_not_null(res.config, "the config after the join");
	cr_assert_eq(res.config->num, 1);
	cr_assert_eq(res.config->nshards, NSHARDS);
	cr_assert_eq(res.config->n_groups, 1);
	cr_assert_eq(res.config->groups[0].gid, 100);
	cr_assert_eq(res.config->shards[0], 100);
	sm_config_free(res.config);
	cr_assert_eq(f.calls[0], 1, "asked the follower once, then the "
				    "leader for the join and the query");

	cr_assert_eq(smclerk_query(k, -1, 20000, &res), STATUS_OK, "%s",
		     res.error);
	cr_assert_eq(res.config->num, 1);
	cr_assert_str_eq(res.config->groups[0].servers[0], "g100:1");
	sm_config_free(res.config);
	cr_assert_eq(f.calls[0], 1, "the leader is remembered");

	cr_assert_eq(smclerk_move(k, 1, 999, 20000, &res),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_null(res.config);
	cr_assert_str_eq(res.error, "gid 999 is not in the configuration");

	cr_assert_eq(smclerk_query(k, -1, 0, &res), STATUS_INVALID_ARGUMENT);
	smclerk_free(k);
	net_stop(&f);
}

struct query_thread {
	struct smclerk *k;
	int ok;
};

static void *query_loop(void *arg)
{
	struct query_thread *t = arg;
	for (int i = 0; i < 20; i++) {
		struct smclerk_result res;
		if (smclerk_query(t->k, -1, 20000, &res) == STATUS_OK &&
		    res.config)
			t->ok++;
		sm_config_free(res.config);
	}
	return NULL;
}

Test(smclerk, concurrent_callers_take_turns, .timeout = 120)
{
	struct net_fake f;
	net_start(&f);
	const char *addrs[] = {f.addr[0], f.addr[1]};
	struct smclerk *k;
	cr_assert_eq(smclerk_new(addrs, 2, NULL, &k), STATUS_OK);
	pthread_t th[4];
	struct query_thread qt[4];
	for (int i = 0; i < 4; i++) {
		qt[i] = (struct query_thread){k, 0};
		cr_assert_eq(pthread_create(&th[i], NULL, query_loop, &qt[i]),
			     0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(qt[i].ok, 20);
	}
	smclerk_free(k);
	net_stop(&f);
}

Test(smclerk, leaderless_cluster_times_out_as_reachable, .timeout = 120)
{
	struct net_fake f;
	net_start(&f);
	f.all_not_ready = true;
	const char *addrs[] = {f.addr[0], f.addr[1]};
	struct smclerk *k;
	struct smclerk_opts o = {.attempt_timeout_ms = 200,
				 .backoff_ms_min = 10,
				 .backoff_ms_max = 50};
	cr_assert_eq(smclerk_new(addrs, 2, &o, &k), STATUS_OK);
	struct smclerk_result res;
	cr_assert_eq(smclerk_query(k, -1, 500, &res), STATUS_TIMEOUT);
	cr_assert(res.answered);
	cr_assert_gt(res.stats.not_ready, 0);
	cr_assert_null(res.config);
	smclerk_free(k);

	/* And through shardctl: exit 3, "no leader" rather than
	 * "unreachable". */
	char masters[80];
	snprintf(masters, sizeof(masters), "%s,%s", f.addr[0], f.addr[1]);
	struct cli_proc_out po;
	run_shardctl(NULL,
		     (const char *[]){"--masters", masters, "--timeout", "500",
				      "--json", "leave", "100", NULL},
		     &po);
	cr_assert_eq(po.code, 3, "%s", po.err);
	cr_assert(strstr(po.err, "reachable but no leader is elected yet: "
				 "retry shortly"),
		  "%s", po.err);
	cr_assert(strstr(po.out, "\"status\":\"TIMEOUT\""), "%s", po.out);
	cr_assert(strstr(po.out, "\"reachable\":true"), "%s", po.out);

	/* One answers, one is down: say that a majority must run. */
	int fd;
	snprintf(masters, sizeof(masters), "%s,127.0.0.1:%d", f.addr[0],
		 cli_proc_refusing_port(&fd));
	run_shardctl(NULL,
		     (const char *[]){"--masters", masters, "--timeout", "500",
				      "query", NULL},
		     &po);
	cr_assert_eq(po.code, 3, "%s", po.err);
	cr_assert(strstr(po.err, "1 of the 2 shard masters at"), "%s", po.err);
	cr_assert(strstr(po.err, "a leader needs a majority"), "%s", po.err);
	close(fd);
	net_stop(&f);
}

Test(shardctl_bin, talks_to_a_shard_master, .timeout = 120)
{
	struct net_fake f;
	net_start(&f);
	char masters[80];
	snprintf(masters, sizeof(masters), "%s,%s", f.addr[0], f.addr[1]);
	struct cli_proc_out po;

	run_shardctl(masters,
		     (const char *[]){"join", "100=127.0.0.1:7101,"
					      "127.0.0.1:7102",
				      NULL},
		     &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	cr_assert(strncmp(po.out, "ok: config 1\n", 13) == 0, "%s", po.out);
	cr_assert(strstr(po.out, "    0  100\n"), "%s", po.out);
	cr_assert(strstr(po.out, "gid  shards  servers\n"
				 "100       4  127.0.0.1:7101,"
				 "127.0.0.1:7102\n") ||
			  strstr(po.out, "gid  shards  servers\n100       4  "
					 "g100:1\n"),
		  "%s", po.out);

	run_shardctl(masters, (const char *[]){"query", "--json", NULL}, &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	cr_assert_str_eq(po.out, "{\"num\":1,\"shards\":[100,100,100,100],"
				 "\"groups\":{\"100\":[\"g100:1\"]}}\n");
	cr_assert_str_eq(po.err, "");

	run_shardctl(NULL,
		     (const char *[]){"--masters", masters, "--json", "join",
				      "101=127.0.0.1:7201", NULL},
		     &po);
	cr_assert_eq(po.code, 0, "%s", po.err);
	const char *want = "{\"ok\":true,\"config\":{\"num\":2,";
	cr_assert(strncmp(po.out, want, strlen(want)) == 0, "%s", po.out);

	run_shardctl(masters, (const char *[]){"move", "2", "999", NULL}, &po);
	cr_assert_eq(po.code, 1, "refused: %s", po.err);
	cr_assert_str_eq(po.err, "shardctl: move refused by the shard "
				 "master: gid 999 is not in the "
				 "configuration\n");
	run_shardctl(masters, (const char *[]){"--json", "move", "2", "999",
					       NULL},
		     &po);
	cr_assert_eq(po.code, 1);
	cr_assert(strstr(po.out, "{\"ok\":false,\"status\":"
				 "\"INVALID_ARGUMENT\",\"error\":"),
		  "%s", po.out);
	net_stop(&f);
}
