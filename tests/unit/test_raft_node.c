/* Three Raft nodes over real gRPC sockets on 127.0.0.1, each with its own
 * event loop, server, client and store (RocksDB's in-memory env): they
 * agree on 1,000 entries; the leader is stopped and the other two elect a
 * new one and commit more; the old leader restarts from its store and
 * catches up (by snapshot: the logs are compacted meanwhile). Every wait
 * is a condition with a deadline, which only guards against hangs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/monotime.h"
#include "common/raft/node.h"
#include "common/rpc/rpc.h"
#include "common/status.h"
#include "common/store/store.h"
#include "tests/store_dump.h"
#include "tests/port.h"

#define N 3
#define DEADLINE_MS 30000
#define ENTRY_BYTES 100

/* One lock and condition for every node's observable state, so a wait
 * can look at all of them. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;

static void cond_setup(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&cond, &a);
	pthread_condattr_destroy(&a);
}

/* ---- the state machine ----
 *
 * Entries carry a sequence number; one is accepted only if it is the next
 * expected (a retried proposal after a leader change cannot apply twice).
 * Accepted entries are stored in `data` under their number; `meta` "fsm"
 * holds (count, FNV-1a hash of the accepted entries). */
struct fsm {
	struct store *store; /* the node's; loop thread */
	uint64_t w_count, w_hash; /* working state, loop thread */
	/* under mu: as of the last durable write */
	uint64_t applied, count, hash;
	uint64_t restores;
	uint64_t read_id;
	int read_status;
};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

static void fsm_load(struct fsm *f)
{
	struct buf v;
	buf_init(&v);
	int rc = store_get(f->store, STORE_CF_META, "fsm", 3, &v);
	if (rc == STATUS_OK && v.len == 16) {
		f->w_count = get_u64be(v.data);
		f->w_hash = get_u64be(v.data + 8);
	} else if (rc == STATUS_NOT_FOUND) {
		f->w_count = 0;
		f->w_hash = 0xcbf29ce484222325ull;
	} else {
		abort();
	}
	buf_free(&v);
}

static void fsm_apply(void *ctx, uint64_t index, const void *data, size_t len,
		      struct store_batch *b)
{
	struct fsm *f = ctx;
	unsigned seq;
	char head[16];
	if (len < 12)
		abort();
	memcpy(head, data, 12);
	head[12] = 0;
	if (sscanf(head, "seq:%8u", &seq) != 1)
		abort();
	if (seq != f->w_count)
		return;
	uint8_t key[8], v[16];
	put_u64be(key, seq);
	store_batch_put(b, STORE_CF_DATA, key, sizeof(key), data, len);
	f->w_count++;
	f->w_hash = fnv1a(f->w_hash, data, len);
	put_u64be(v, f->w_count);
	put_u64be(v + 8, f->w_hash);
	store_batch_put(b, STORE_CF_META, "fsm", 3, v, sizeof(v));
}

static void fsm_restore(void *ctx, uint64_t index)
{
	struct fsm *f = ctx;
	fsm_load(f);
	pthread_mutex_lock(&mu);
	f->restores++;
	pthread_mutex_unlock(&mu);
}

static void fsm_durable(void *ctx, uint64_t applied)
{
	struct fsm *f = ctx;
	pthread_mutex_lock(&mu);
	f->applied = applied;
	f->count = f->w_count;
	f->hash = f->w_hash;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

static void fsm_read_done(void *ctx, uint64_t id, int status)
{
	struct fsm *f = ctx;
	pthread_mutex_lock(&mu);
	f->read_id = id;
	f->read_status = status;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

static const struct raft_fsm_ops fsm_ops = {
	.apply = fsm_apply,
	.restore = fsm_restore,
	.durable = fsm_durable,
	.read_done = fsm_read_done,
};

/* ---- nodes ---- */

struct tnode {
	uint32_t id;
	int port;
	char path[32];
	bool running;
	struct store *store;
	struct loop *loop;
	pthread_t thread;
	struct rpc_server *srv;
	struct rpc_client *cli;
	struct raft_node *node;
	struct fsm fsm;
};

static struct store_memenv *env;
static struct tnode nodes[N];
static char addrs[N][32];

static void *loop_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

static void node_start(struct tnode *t)
{
	char err[256];
	struct store_opts so = {.path = t->path,
				.create_if_missing = true,
				.memenv = env,
				.block_cache_bytes = 1 << 20};
	cr_assert_eq(store_open(&so, &t->store, err, sizeof(err)), STATUS_OK,
		     "%s", err);
	cr_assert_eq(raft_storage_recover(t->store, err, sizeof(err)),
		     STATUS_OK, "%s", err);
	memset(&t->fsm, 0, sizeof(t->fsm));
	t->fsm.store = t->store;
	fsm_load(&t->fsm);
	t->loop = loop_new();
	t->srv = rpc_server_new(NULL);
	t->cli = rpc_client_new(NULL);
	cr_assert(t->loop && t->srv && t->cli);

	struct raft_node_opts o = {
		.config = {
			.id = t->id,
			.n_nodes = N,
			.election_timeout_ms_min = 400,
			.election_timeout_ms_max = 800,
			.heartbeat_ms = 100,
			.snapshot_chunk_bytes_max = 4096,
			.seed = 42,
		},
		.loop = t->loop,
		.server = t->srv,
		.client = t->cli,
		.store = t->store,
		.fsm = &fsm_ops,
		.fsm_ctx = &t->fsm,
		.compaction_log_bytes_max = 16 << 10,
	};
	for (int i = 0; i < N; i++) {
		o.config.nodes[i] = nodes[i].id;
		o.addrs[i] = addrs[i];
	}
	int rc = raft_node_new(&o, &t->node, err, sizeof(err));
	cr_assert_eq(rc, STATUS_OK, "node %u: %s", t->id, err);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
	cr_assert_eq(rpc_server_start(t->srv, addr, NULL, err, sizeof(err)),
		     STATUS_OK, "%s", err);
	cr_assert_eq(pthread_create(&t->thread, NULL, loop_thread, t->loop),
		     0);
	t->running = true;
}

static void node_stop(struct tnode *t)
{
	raft_node_stop(t->node);
	rpc_server_shutdown(t->srv);
	loop_stop(t->loop);
	pthread_join(t->thread, NULL);
	loop_drain(t->loop);
	rpc_client_free(t->cli);
	raft_node_free(t->node);
	rpc_server_free(t->srv);
	loop_free(t->loop);
	store_close(t->store);
	t->running = false;
}

/* Runs fn(arg) on t's loop thread and waits for it. */
struct on_loop {
	void (*fn)(struct tnode *t, void *arg);
	struct tnode *t;
	void *arg;
	bool done;
};

static void on_loop_run(void *p)
{
	struct on_loop *ol = p;
	ol->fn(ol->t, ol->arg);
	pthread_mutex_lock(&mu);
	ol->done = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
}

static bool wait_until_locked(bool (*pred)(void *), void *arg,
			      uint64_t timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(timeout_ms / 1000);
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while (!pred(arg))
		if (pthread_cond_timedwait(&cond, &mu, &ts) == ETIMEDOUT)
			return pred(arg);
	return true;
}

static bool ol_done(void *p)
{
	return ((struct on_loop *)p)->done;
}

static void run_on_loop(struct tnode *t, void (*fn)(struct tnode *, void *),
			void *arg)
{
	struct on_loop ol = {fn, t, arg, false};
	cr_assert_eq(loop_call(t->loop, on_loop_run, &ol), STATUS_OK);
	pthread_mutex_lock(&mu);
	bool ok = wait_until_locked(ol_done, &ol, DEADLINE_MS);
	pthread_mutex_unlock(&mu);
	cr_assert(ok, "node %u's loop did not run a call", t->id);
}

static void get_role(struct tnode *t, void *arg)
{
	struct raft *r = raft_node_raft(t->node);
	*(int *)arg = raft_role(r) == RAFT_LEADER ? (int)raft_term(r) : -1;
}

/* The running node that leads (in the highest term), waited for. */
static struct tnode *find_leader(void)
{
	uint64_t end = monotime_now_ms() + DEADLINE_MS;
	while (monotime_now_ms() < end) {
		struct tnode *best = NULL;
		int best_term = -1;
		for (int i = 0; i < N; i++) {
			int term;
			if (!nodes[i].running)
				continue;
			run_on_loop(&nodes[i], get_role, &term);
			if (term > best_term) {
				best_term = term;
				best = &nodes[i];
			}
		}
		if (best)
			return best;
		/* An election takes a timeout; look again soon. */
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("no leader within %d ms", DEADLINE_MS);
	return NULL;
}

struct proposal {
	uint64_t from, to; /* sequence numbers [from, to) */
	int status;
};

static void propose_range(struct tnode *t, void *arg)
{
	struct proposal *p = arg;
	char data[ENTRY_BYTES];
	p->status = STATUS_OK;
	for (uint64_t s = p->from; s < p->to; s++) {
		memset(data, 'x', sizeof(data));
		snprintf(data, sizeof(data), "seq:%08llu node %u",
			 (unsigned long long)s, t->id);
		data[strlen(data)] = '.';
		p->status = raft_node_propose(t->node, data, sizeof(data),
					      NULL, NULL);
		if (p->status != STATUS_OK)
			return;
	}
}

struct count_goal {
	struct tnode *t; /* NULL: every running node */
	uint64_t count;
};

static bool count_reached(void *arg)
{
	struct count_goal *g = arg;
	for (int i = 0; i < N; i++) {
		struct tnode *t = &nodes[i];
		if (!t->running || (g->t && g->t != t))
			continue;
		if (t->fsm.count < g->count)
			return false;
	}
	return true;
}

/* Commits entries until the state machines hold `target` of them. */
static void commit_until(uint64_t target)
{
	uint64_t end = monotime_now_ms() + DEADLINE_MS;
	for (;;) {
		cr_assert_lt(monotime_now_ms(), end, "never reached %llu",
			     (unsigned long long)target);
		struct tnode *l = find_leader();
		pthread_mutex_lock(&mu);
		uint64_t have = l->fsm.count;
		pthread_mutex_unlock(&mu);
		if (have >= target)
			break;
		struct proposal p = {have, target, 0};
		run_on_loop(l, propose_range, &p);
		if (p.status != STATUS_OK)
			continue; /* lost the lead meanwhile */
		struct count_goal g = {l, target};
		pthread_mutex_lock(&mu);
		bool ok = wait_until_locked(count_reached, &g, 5000);
		pthread_mutex_unlock(&mu);
		if (ok)
			break;
	}
	struct count_goal all = {NULL, target};
	pthread_mutex_lock(&mu);
	bool ok = wait_until_locked(count_reached, &all, DEADLINE_MS);
	pthread_mutex_unlock(&mu);
	cr_assert(ok, "not every node reached %llu entries",
		  (unsigned long long)target);
}

/* Every running node at the same applied index with the same state. */
static bool converged(void *arg)
{
	struct tnode *first = NULL;
	for (int i = 0; i < N; i++) {
		struct tnode *t = &nodes[i];
		if (!t->running)
			continue;
		if (!first) {
			first = t;
			continue;
		}
		if (t->fsm.applied != first->fsm.applied ||
		    t->fsm.count != first->fsm.count ||
		    t->fsm.hash != first->fsm.hash)
			return false;
	}
	return true;
}

static void expect_converged(uint64_t count)
{
	pthread_mutex_lock(&mu);
	bool ok = wait_until_locked(converged, NULL, DEADLINE_MS);
	for (int i = 0; i < N; i++)
		if (nodes[i].running)
			cr_log_info("node %u: applied %llu, count %llu",
				    nodes[i].id,
				    (unsigned long long)nodes[i].fsm.applied,
				    (unsigned long long)nodes[i].fsm.count);
	pthread_mutex_unlock(&mu);
	cr_assert(ok, "the nodes did not converge");
	for (int i = 0; i < N; i++)
		if (nodes[i].running)
			cr_assert_eq(nodes[i].fsm.count, count);
}

static void get_stats(struct tnode *t, void *arg)
{
	raft_replica_stats(raft_node_replica(t->node), arg);
}

struct read_result {
	int rc;
};

static void start_read(struct tnode *t, void *arg)
{
	((struct read_result *)arg)->rc = raft_node_read_index(t->node, 77);
}

static bool read_answered(void *arg)
{
	return ((struct tnode *)arg)->fsm.read_id == 77;
}

/* Every key and value of data+meta but Raft's own (the applied index
 * differs once a node stops and the others commit a new leader's no-op). */
static void dump(struct store *s, struct buf *out)
{
	cr_assert_eq(store_dump(s, true, out, NULL), STATUS_OK);
}

static void setup(void)
{
	cond_setup();
	log_set_level(LOG_WARN);
	env = store_memenv_new();
	cr_assert_not_null(env);
	for (int i = 0; i < N; i++) {
		nodes[i].id = (uint32_t)(i + 1);
		nodes[i].port = test_port_reserve();
		snprintf(nodes[i].path, sizeof(nodes[i].path), "/node%d",
			 i + 1);
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d",
			 nodes[i].port);
	}
}

static void teardown(void)
{
	for (int i = 0; i < N; i++)
		if (nodes[i].running)
			node_stop(&nodes[i]);
	store_memenv_free(env);
}

TestSuite(raft_node, .init = setup, .fini = teardown, .timeout = 300);

Test(raft_node, three_nodes_agree_survive_leader_loss_and_catch_up)
{
	for (int i = 0; i < N; i++)
		node_start(&nodes[i]);

	/* 1,000 entries, everywhere, with the same state. */
	commit_until(1000);
	expect_converged(1000);

	/* Group commit: proposals made in one loop turn share a write. */
	struct tnode *leader = find_leader();
	struct raft_replica_stats st;
	run_on_loop(leader, get_stats, &st);
	cr_log_info("leader %u: %llu entries persisted in %llu writes",
		    leader->id, (unsigned long long)st.entries_persisted,
		    (unsigned long long)st.writes);
	cr_assert_lt(st.writes * 2, st.entries_persisted);
	cr_assert_gt(st.compactions, 0);

	/* A linearizable read on the leader; a follower refuses at once. */
	struct read_result rr;
	run_on_loop(leader, start_read, &rr);
	cr_assert_eq(rr.rc, STATUS_OK);
	pthread_mutex_lock(&mu);
	bool ok = wait_until_locked(read_answered, leader, DEADLINE_MS);
	int read_status = leader->fsm.read_status;
	pthread_mutex_unlock(&mu);
	cr_assert(ok, "read index never answered");
	cr_assert_eq(read_status, STATUS_OK);
	struct tnode *follower = &nodes[leader == &nodes[0] ? 1 : 0];
	run_on_loop(follower, start_read, &rr);
	cr_assert_eq(rr.rc, STATUS_NOT_LEADER);

	/* The leader goes away; the two others carry on. */
	uint32_t old_id = leader->id;
	node_stop(leader);
	commit_until(1500);
	struct tnode *new_leader = find_leader();
	cr_assert_neq(new_leader->id, old_id);
	expect_converged(1500);

	/* It comes back from its store and catches up, by snapshot: the
	 * others compacted their logs past its last entry. */
	node_start(leader);
	expect_converged(1500);
	pthread_mutex_lock(&mu);
	uint64_t restores = leader->fsm.restores;
	pthread_mutex_unlock(&mu);
	cr_assert_geq(restores, 1, "caught up without a snapshot");

	/* And it takes part in new commits. */
	commit_until(1600);
	expect_converged(1600);

	/* At rest, the three stores hold the same data and meta. */
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
	struct buf want, got;
	buf_init(&want);
	buf_init(&got);
	for (int i = 0; i < N; i++) {
		struct store_opts so = {.path = nodes[i].path,
					.memenv = env,
					.block_cache_bytes = 1 << 20};
		struct store *s;
		char err[256];
		cr_assert_eq(store_open(&so, &s, err, sizeof(err)), STATUS_OK,
			     "%s", err);
		dump(s, i == 0 ? &want : &got);
		store_close(s);
		if (i > 0)
			cr_assert(want.len == got.len &&
					  memcmp(want.data, got.data,
						 want.len) == 0,
				  "node %d's store differs from node 1's",
				  i + 1);
	}
	buf_free(&want);
	buf_free(&got);
}

/* ---- one node, spoken to directly ---- */

struct vote_result {
	bool done;
	int status;
	bool has_reply;
	uint64_t term;
	bool granted;
};

static void vote_done(void *arg, int status, const char *errmsg,
		      ProtobufCMessage *reply)
{
	struct vote_result *v = arg;
	pthread_mutex_lock(&mu);
	v->status = status;
	if (reply) {
		Skv__RequestVoteReply *r = (Skv__RequestVoteReply *)reply;
		v->has_reply = true;
		v->term = r->term;
		v->granted = r->granted;
	}
	v->done = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
	codec_free(reply);
}

static bool vote_finished(void *arg)
{
	return ((struct vote_result *)arg)->done;
}

static struct vote_result request_vote(struct rpc_client *c, uint32_t from,
				       uint64_t term)
{
	Skv__RequestVoteRequest q = SKV__REQUEST_VOTE_REQUEST__INIT;
	struct vote_result v = {0};
	q.from = from;
	q.to = nodes[0].id;
	q.term = term;
	cr_assert_eq(rpc_client_call(c, addrs[0], "/skv.Raft/RequestVote",
				     &q.base,
				     &skv__request_vote_reply__descriptor,
				     DEADLINE_MS, vote_done, &v),
		     STATUS_OK);
	pthread_mutex_lock(&mu);
	bool ok = wait_until_locked(vote_finished, &v, DEADLINE_MS + 5000);
	pthread_mutex_unlock(&mu);
	cr_assert(ok, "RequestVote never finished");
	return v;
}

Test(raft_node, answers_requests_and_refuses_strangers)
{
	node_start(&nodes[0]); /* its peers never come up */
	struct rpc_client *c = rpc_client_new(NULL);
	cr_assert_not_null(c);

	struct vote_result v = request_vote(c, 2, 5);
	cr_assert_eq(v.status, STATUS_OK, "%s", status_name(v.status));
	cr_assert(v.has_reply);
	cr_assert_eq(v.term, 5);
	cr_assert(v.granted, "an empty node grants its first vote in term 5");
	v = request_vote(c, 3, 5);
	cr_assert_eq(v.status, STATUS_OK);
	cr_assert_not(v.granted, "voted for 2 already");
	/* Not a member: refused, never held. */
	v = request_vote(c, 9, 6);
	cr_assert_eq(v.status, STATUS_INVALID_ARGUMENT, "%s",
		     status_name(v.status));
	/* Stopped: refused at once. */
	raft_node_stop(nodes[0].node);
	v = request_vote(c, 2, 7);
	cr_assert_neq(v.status, STATUS_OK);

	rpc_client_free(c);
	node_stop(&nodes[0]);
}

Test(raft_node, new_refuses_bad_options)
{
	char err[256];
	struct store_opts so = {.path = "/bad",
				.create_if_missing = true,
				.memenv = env};
	struct store *s;
	cr_assert_eq(store_open(&so, &s, err, sizeof(err)), STATUS_OK);
	struct loop *l = loop_new();
	struct rpc_server *srv = rpc_server_new(NULL);
	struct rpc_client *cli = rpc_client_new(NULL);
	struct raft_node_opts o = {
		.config = {.id = 1, .n_nodes = 3, .nodes = {1, 2, 3}},
		.addrs = {NULL, addrs[1], NULL}, /* node 3's is missing */
		.loop = l,
		.server = srv,
		.client = cli,
		.store = s,
		.fsm = &fsm_ops,
	};
	struct raft_node *n = (struct raft_node *)1;
	cr_assert_eq(raft_node_new(&o, &n, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_null(n);
	cr_assert(strstr(err, "node 3"), "%s", err);

	o.addrs[2] = addrs[2];
	o.config.n_nodes = 0; /* the core refuses */
	cr_assert_eq(raft_node_new(&o, &n, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_null(n);

	rpc_client_free(cli);
	rpc_server_free(srv);
	loop_free(l);
	store_close(s);
}

static void snapshot_done(void *arg, int status, const char *errmsg,
			  ProtobufCMessage *reply)
{
	struct vote_result *v = arg;
	pthread_mutex_lock(&mu);
	v->status = status;
	v->has_reply = reply != NULL;
	v->done = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&mu);
	codec_free(reply);
}

/* A peer sends a whole snapshot that fails its checksum: bad input. The
 * node must neither exit nor install it, and must keep answering. */
Test(raft_node, survives_a_corrupt_snapshot)
{
	node_start(&nodes[0]);
	struct rpc_client *c = rpc_client_new(NULL);
	cr_assert_not_null(c);

	uint8_t junk[100];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 7 + 3);
	Skv__InstallSnapshotRequest q = SKV__INSTALL_SNAPSHOT_REQUEST__INIT;
	q.from = 2;
	q.to = nodes[0].id;
	q.term = 3;
	q.last_index = 50;
	q.last_term = 3;
	q.offset = 0;
	q.data.data = junk;
	q.data.len = sizeof(junk);
	q.size_bytes = sizeof(junk);
	q.done = true;
	struct vote_result v = {0};
	cr_assert_eq(rpc_client_call(c, addrs[0], "/skv.Raft/InstallSnapshot",
				     &q.base,
				     &skv__install_snapshot_reply__descriptor,
				     DEADLINE_MS, snapshot_done, &v),
		     STATUS_OK);
	pthread_mutex_lock(&mu);
	bool ok = wait_until_locked(vote_finished, &v, DEADLINE_MS + 5000);
	pthread_mutex_unlock(&mu);
	cr_assert(ok, "InstallSnapshot never finished");
	cr_assert_neq(v.status, STATUS_OK, "a corrupt snapshot was accepted");

	/* Still alive, still in term 3 (durable before the snapshot), and
	 * nothing of the snapshot applied. */
	struct vote_result r = request_vote(c, 3, 4);
	cr_assert_eq(r.status, STATUS_OK, "%s", status_name(r.status));
	cr_assert(r.has_reply);
	cr_assert_eq(r.term, 4);
	pthread_mutex_lock(&mu);
	uint64_t applied = nodes[0].fsm.applied;
	pthread_mutex_unlock(&mu);
	cr_assert_eq(applied, 0, "the corrupt snapshot was applied");

	rpc_client_free(c);
	node_stop(&nodes[0]);
}
