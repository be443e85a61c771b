/* The replica shell (common/raft/replica) without a network: three
 * replicas in one thread on RocksDB's in-memory env, messages passed
 * through a queue on a virtual clock. Restart without replay, catch-up by
 * snapshot after compaction, reads that wait for the applied index, a
 * corrupt snapshot that must stop the replica without writing,
 * transfers that must start over (the leader compacted past the snapshot,
 * or is asked for bytes its snapshot does not have), idle transfers
 * that must be dropped, and a snapshot larger than an install batch:
 * installed in bounded memory, and rolled forward at restart after a
 * crash in the middle of its install. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/raft/replica.h"
#include "common/status.h"
#include "common/store/store.h"

#define N 3
#define STEP_MS 5

struct fsm {
	struct store *store;
	uint64_t applies;   /* apply calls, ever (survives restarts) */
	uint64_t count;	    /* accepted entries, from the store */
	uint64_t durable;   /* last durable applied index */
	uint64_t restores;
	uint64_t read_id, read_applied;
	int read_status;
};

struct rnode {
	char path[16];
	bool up;
	struct store *store;
	struct raft_replica *rep;
	struct fsm fsm;
	struct raft_config cfg;
};

struct qmsg {
	uint32_t to;
	enum raft_msg_type type;
	struct buf bytes;
};

static struct store_memenv *env;
static struct rnode nodes[N];
static uint64_t now;
static struct qmsg *queue;
static size_t nq, capq;
static bool corrupt_snapshots;

/* ---- state machine: count in meta "n", entries in data ---- */

static void fsm_load(struct fsm *f)
{
	struct buf v;
	buf_init(&v);
	int rc = store_get(f->store, STORE_CF_META, "n", 1, &v);
	cr_assert(rc == STATUS_OK || rc == STATUS_NOT_FOUND);
	f->count = rc == STATUS_OK ? get_u64be(v.data) : 0;
	buf_free(&v);
}

static void fsm_apply(void *ctx, uint64_t index, const void *data, size_t len,
		      struct store_batch *b)
{
	struct fsm *f = ctx;
	uint8_t k[8], v[8];
	f->applies++;
	f->count++;
	put_u64be(k, index);
	store_batch_put(b, STORE_CF_DATA, k, 8, data, len);
	put_u64be(v, f->count);
	store_batch_put(b, STORE_CF_META, "n", 1, v, 8);
}

static void fsm_restore(void *ctx, uint64_t index)
{
	struct fsm *f = ctx;
	fsm_load(f);
	f->restores++;
}

static void fsm_durable(void *ctx, uint64_t applied)
{
	((struct fsm *)ctx)->durable = applied;
}

static void fsm_read_done(void *ctx, uint64_t id, int status)
{
	struct fsm *f = ctx;
	f->read_id = id;
	f->read_status = status;
	f->read_applied = f->durable;
}

static const struct raft_fsm_ops ops = {
	.apply = fsm_apply,
	.restore = fsm_restore,
	.durable = fsm_durable,
	.read_done = fsm_read_done,
};

/* ---- the cluster ---- */

static void node_open(struct rnode *n)
{
	char err[256];
	struct store_opts so = {.path = n->path,
				.create_if_missing = true,
				.memenv = env,
				.block_cache_bytes = 1 << 20};
	cr_assert_eq(store_open(&so, &n->store, err, sizeof(err)), STATUS_OK);
	cr_assert_eq(raft_storage_recover(n->store, err, sizeof(err)),
		     STATUS_OK, "%s", err);
	n->fsm.store = n->store;
	fsm_load(&n->fsm);
	int rc = raft_replica_open(&n->cfg, n->store, &ops, &n->fsm, now,
				   &n->rep, err, sizeof(err));
	cr_assert_eq(rc, STATUS_OK, "%s", err);
	n->fsm.durable = raft_replica_applied_index(n->rep);
	n->up = true;
}

static void node_crash(struct rnode *n)
{
	raft_replica_free(n->rep);
	store_close(n->store);
	n->rep = NULL;
	n->store = NULL;
	n->up = false;
}

/* Persist-before-send, checked at every send against the sender's store
 * when on: what a vote or an acknowledgement promises is durable; a
 * leader's AppendEntries may carry entries not yet durable on the leader
 * (counted). */
static bool check_sends;
static size_t early_appends, checked_sends;

static bool stored_entry(struct store *st, uint64_t index)
{
	uint8_t key[9] = { 'e' };
	struct buf v;
	buf_init(&v);
	put_u64be(key + 1, index);
	int rc = store_get(st, STORE_CF_RAFT, key, sizeof(key), &v);
	buf_free(&v);
	return rc == STATUS_OK;
}

static Skv__HardState *stored_hard_state(struct store *st)
{
	struct buf v;
	ProtobufCMessage *m = NULL;
	buf_init(&v);
	cr_assert_eq(store_get(st, STORE_CF_RAFT, "hs", 2, &v), STATUS_OK);
	cr_assert_eq(codec_unpack(&skv__hard_state__descriptor, v.data, v.len,
				  &m),
		     STATUS_OK);
	buf_free(&v);
	return (Skv__HardState *)m;
}

static void check_send(const struct raft_msg *m)
{
	struct store *st = nodes[m->from - 1].store;
	ProtobufCMessage *pm;
	cr_assert_eq(codec_unpack(raft_msg_descriptor(m->type), m->bytes.data,
				  m->bytes.len, &pm),
		     STATUS_OK);
	Skv__HardState *hs = NULL;
	switch (m->type) {
	case RAFT_MSG_APPEND_REPLY: {
		const Skv__AppendEntriesReply *r = (void *)pm;
		if (r->success && r->match_index > 0)
			cr_assert(stored_entry(st, r->match_index),
				  "node %u acknowledged entry %llu before "
				  "storing it",
				  m->from, (unsigned long long)r->match_index);
		break;
	}
	case RAFT_MSG_VOTE_REPLY: {
		const Skv__RequestVoteReply *r = (void *)pm;
		if (r->granted && !r->pre_vote) {
			hs = stored_hard_state(st);
			cr_assert(hs->term >= r->term && hs->vote == m->to,
				  "node %u granted a vote it had not stored",
				  m->from);
		}
		break;
	}
	case RAFT_MSG_VOTE_REQ: {
		const Skv__RequestVoteRequest *r = (void *)pm;
		if (!r->pre_vote) {
			hs = stored_hard_state(st);
			cr_assert(hs->term >= r->term && hs->vote == m->from,
				  "node %u campaigned before storing its vote",
				  m->from);
		}
		break;
	}
	case RAFT_MSG_APPEND_REQ: {
		const Skv__AppendEntriesRequest *r = (void *)pm;
		hs = stored_hard_state(st);
		cr_assert_geq(hs->term, r->term,
			      "leader %u sent in a term it had not stored",
			      m->from);
		if (r->n_entries > 0 &&
		    !stored_entry(st, r->entries[r->n_entries - 1]->index))
			early_appends++;
		break;
	}
	default:
		break;
	}
	checked_sends++;
	if (hs)
		codec_free(&hs->base);
	codec_free(pm);
}

static void q_send(void *arg, struct raft_msg *m)
{
	if (check_sends && m->type != RAFT_MSG_SNAPSHOT_REQ)
		check_send(m);
	if (nq == capq) {
		capq = capq ? 2 * capq : 256;
		queue = realloc(queue, capq * sizeof(*queue));
		cr_assert_not_null(queue);
	}
	struct qmsg *q = &queue[nq++];
	q->to = m->to;
	q->type = m->type;
	buf_init(&q->bytes);
	cr_assert_eq(buf_set(&q->bytes, m->bytes.data, m->bytes.len),
		     STATUS_OK);
}

static void deliver(struct qmsg *q)
{
	struct rnode *n = &nodes[q->to - 1];
	ProtobufCMessage *m;
	if (!n->up)
		return;
	cr_assert_eq(codec_unpack(raft_msg_descriptor(q->type), q->bytes.data,
				  q->bytes.len, &m),
		     STATUS_OK);
	if (q->type == RAFT_MSG_SNAPSHOT_REQ && corrupt_snapshots) {
		Skv__InstallSnapshotRequest *s =
			(Skv__InstallSnapshotRequest *)m;
		if (s->data.len > 20)
			s->data.data[20] ^= 1;
	}
	raft_step(raft_replica_raft(n->rep), now, m);
	codec_free(m);
}

/* One step: every node ticks and processes; then every message sent is
 * delivered. Returns the first process error (node index in *who). */
static int step(int *who)
{
	for (int i = 0; i < N; i++) {
		struct rnode *n = &nodes[i];
		if (!n->up)
			continue;
		raft_tick(raft_replica_raft(n->rep), now);
		int rc = raft_replica_process(n->rep, now, q_send, NULL);
		if (rc) {
			if (who)
				*who = i;
			return rc;
		}
	}
	size_t count = nq;
	for (size_t i = 0; i < count; i++)
		deliver(&queue[i]);
	for (size_t i = 0; i < count; i++)
		buf_free(&queue[i].bytes);
	if (nq > count)
		memmove(queue, queue + count, (nq - count) * sizeof(*queue));
	nq -= count;
	now += STEP_MS;
	return STATUS_OK;
}

static void steps(int k)
{
	while (k--)
		cr_assert_eq(step(NULL), STATUS_OK);
}

static struct rnode *leader(void)
{
	for (int k = 0; k < 2000; k++) {
		for (int i = 0; i < N; i++)
			if (nodes[i].up &&
			    raft_role(raft_replica_raft(nodes[i].rep)) ==
				    RAFT_LEADER)
				return &nodes[i];
		steps(1);
	}
	cr_assert_fail("no leader");
	return NULL;
}

static void propose(struct rnode *l, int k, size_t len)
{
	char data[256];
	cr_assert_leq(len, sizeof(data));
	for (int i = 0; i < k; i++) {
		memset(data, 'a' + i % 26, len);
		cr_assert_eq(raft_propose(raft_replica_raft(l->rep), data, len,
					  NULL, NULL),
			     STATUS_OK);
	}
}

/* Steps until every up node has applied (durably) the leader's last
 * index. */
static void settle(void)
{
	for (int k = 0; k < 4000; k++) {
		struct rnode *l = leader();
		uint64_t last = raft_last_index(raft_replica_raft(l->rep));
		bool all = true;
		for (int i = 0; i < N; i++)
			if (nodes[i].up && nodes[i].fsm.durable < last)
				all = false;
		if (all)
			return;
		steps(1);
	}
	cr_assert_fail("never settled");
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	env = store_memenv_new();
	cr_assert_not_null(env);
	now = 1000;
	corrupt_snapshots = false;
	for (int i = 0; i < N; i++) {
		struct rnode *n = &nodes[i];
		memset(n, 0, sizeof(*n));
		snprintf(n->path, sizeof(n->path), "/r%d", i + 1);
		n->cfg = (struct raft_config){
			.id = (uint32_t)(i + 1),
			.n_nodes = N,
			.nodes = {1, 2, 3},
			.snapshot_chunk_bytes_max = 1000,
			.seed = 7,
		};
	}
}

static void teardown(void)
{
	for (int i = 0; i < N; i++)
		if (nodes[i].rep)
			node_crash(&nodes[i]);
	for (size_t i = 0; i < nq; i++)
		buf_free(&queue[i].bytes);
	free(queue);
	queue = NULL;
	nq = capq = 0;
	store_memenv_free(env);
}

TestSuite(raft_replica, .init = setup, .fini = teardown, .timeout = 120);

static void open_all(void)
{
	for (int i = 0; i < N; i++)
		node_open(&nodes[i]);
}

/* data+meta of a store, comparable. */
static void dump(struct store *s, struct buf *out)
{
	buf_reset(out);
	for (enum store_cf cf = STORE_CF_DATA; cf <= STORE_CF_META; cf++) {
		struct store_iter *it = store_iter_new(s, cf, NULL, 0, NULL);
		for (; store_iter_valid(it); store_iter_next(it)) {
			size_t kl, vl;
			const void *k = store_iter_key(it, &kl);
			const void *v = store_iter_value(it, &vl);
			buf_append_u32be(out, (uint32_t)kl);
			buf_append(out, k, kl);
			buf_append_u32be(out, (uint32_t)vl);
			buf_append(out, v, vl);
		}
		store_iter_free(it);
	}
}

static void expect_same_state(void)
{
	struct buf a, b;
	buf_init(&a);
	buf_init(&b);
	dump(nodes[0].store, &a);
	for (int i = 1; i < N; i++) {
		dump(nodes[i].store, &b);
		cr_assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
			  "node %d's state differs from node 1's", i + 1);
	}
	buf_free(&a);
	buf_free(&b);
}

/* Votes and acknowledgements leave only once durable; a leader's
 * AppendEntries leave before its own fsync, and the group still commits
 * only what a quorum (the leader's durable log included) stored. */
Test(raft_replica, only_leader_appends_leave_before_the_write)
{
	open_all();
	check_sends = true;
	early_appends = checked_sends = 0;
	struct rnode *l = leader();
	for (int round = 0; round < 20; round++) {
		propose(l, 3, 100);
		steps(2);
	}
	settle();
	/* A new leader, elected with durable votes, does the same. */
	struct rnode *old = l;
	node_crash(old);
	l = leader();
	propose(l, 5, 100);
	settle();
	node_open(old);
	settle();
	check_sends = false;
	cr_assert_gt(checked_sends, 100);
	cr_assert_gt(early_appends, 0,
		     "no AppendEntries left before the leader's write");
	expect_same_state();
}

Test(raft_replica, replicates_and_restarts_without_replay)
{
	open_all();
	struct rnode *l = leader();
	propose(l, 100, 40);
	settle();
	for (int i = 0; i < N; i++)
		cr_assert_eq(nodes[i].fsm.count, 100);
	expect_same_state();

	/* Group commit: the 100 proposals of one step share a write. */
	struct raft_replica_stats s;
	raft_replica_stats(l->rep, &s);
	cr_assert_lt(s.writes, 20, "%llu writes", (unsigned long long)s.writes);

	/* A follower restarts: it loads its applied index and applies
	 * nothing twice. */
	struct rnode *f = &nodes[l == &nodes[2] ? 1 : 2];
	uint64_t applies = f->fsm.applies, applied = f->fsm.durable;
	node_crash(f);
	node_open(f);
	cr_assert_eq(raft_replica_applied_index(f->rep), applied);
	cr_assert_eq(f->fsm.count, 100);
	l = leader();
	propose(l, 10, 40);
	settle();
	cr_assert_eq(f->fsm.applies, applies + 10);
	cr_assert_eq(f->fsm.count, 110);
	expect_same_state();
}

/* All up, compacting past 2,000 bytes of log; a follower is down while
 * the leader commits 300 entries, so it can only catch up by snapshot.
 * Returns that follower (still down), the leader in *lp. */
static struct rnode *lag_a_follower(struct rnode **lp)
{
	open_all();
	for (int i = 0; i < N; i++)
		raft_replica_set_compaction(nodes[i].rep, 2000);
	struct rnode *l = leader();
	struct rnode *f = &nodes[l == &nodes[2] ? 1 : 2];
	node_crash(f);
	for (int round = 0; round < 10; round++) {
		propose(l, 30, 100);
		settle();
	}
	*lp = l;
	return f;
}

Test(raft_replica, lagging_node_catches_up_by_snapshot)
{
	struct rnode *l;
	struct rnode *f = lag_a_follower(&l);
	struct raft_replica_stats s;
	raft_replica_stats(l->rep, &s);
	cr_assert_gt(s.compactions, 0);
	cr_assert_gt(raft_snapshot_index(raft_replica_raft(l->rep)), 1);

	node_open(f);
	settle();
	cr_assert_geq(f->fsm.restores, 1);
	cr_assert_eq(f->fsm.count, 300);
	raft_replica_stats(l->rep, &s);
	cr_assert_gt(s.snapshot_bytes_sent, 30000);
	raft_replica_stats(f->rep, &s);
	cr_assert_eq(s.snapshots_installed, f->fsm.restores);
	expect_same_state();

	/* The installed state survives a restart. */
	node_crash(f);
	node_open(f);
	cr_assert_eq(f->fsm.count, 300);
	propose(leader(), 5, 10);
	settle();
	expect_same_state();
}

Test(raft_replica, reads_wait_for_the_applied_index)
{
	for (int i = 0; i < N; i++)
		nodes[i].cfg.apply_entries_max = 1; /* apply lags commit */
	open_all();
	struct rnode *l = leader();
	settle();
	struct raft *r = raft_replica_raft(l->rep);

	propose(l, 50, 10);
	/* Step until the entries commit but are not all applied. */
	for (int k = 0; k < 1000 && raft_commit_index(r) < raft_last_index(r);
	     k++)
		steps(1);
	uint64_t commit = raft_commit_index(r);
	cr_assert_lt(l->fsm.durable, commit, "apply should lag");
	cr_assert_eq(raft_read_index(r, 9), STATUS_OK);
	bool waited = false;
	for (int k = 0; k < 1000 && l->fsm.read_id != 9; k++) {
		steps(1);
		waited |= raft_replica_reads_waiting(l->rep) > 0;
	}
	cr_assert_eq(l->fsm.read_id, 9);
	cr_assert_eq(l->fsm.read_status, STATUS_OK);
	cr_assert_geq(l->fsm.read_applied, commit);
	cr_assert(waited);

	/* A follower answers NOT_LEADER at once. */
	struct rnode *f = &nodes[l == &nodes[0] ? 1 : 0];
	cr_assert_eq(raft_read_index(raft_replica_raft(f->rep), 10),
		     STATUS_NOT_LEADER);
}

Test(raft_replica, corrupt_snapshot_stops_the_replica_and_writes_nothing)
{
	open_all();
	for (int i = 0; i < N; i++)
		raft_replica_set_compaction(nodes[i].rep, 1000);
	struct rnode *l = leader();
	struct rnode *f = &nodes[l == &nodes[2] ? 1 : 2];
	int fi = (int)(f - nodes);
	propose(l, 3, 10); /* so the follower has a state to keep */
	settle();
	node_crash(f);
	for (int round = 0; round < 5; round++) {
		propose(l, 20, 100);
		settle();
	}
	node_open(f);
	uint64_t applied = raft_replica_applied_index(f->rep);
	struct buf before, after;
	buf_init(&before);
	buf_init(&after);
	dump(f->store, &before);

	corrupt_snapshots = true;
	int rc = STATUS_OK, who = -1;
	for (int k = 0; k < 4000 && rc == STATUS_OK; k++)
		rc = step(&who);
	cr_assert_eq(rc, STATUS_CORRUPTION, "%s", status_name(rc));
	cr_assert_eq(who, fi);
	cr_assert(strstr(raft_replica_errmsg(f->rep), "checksum"), "%s",
		  raft_replica_errmsg(f->rep));
	dump(f->store, &after);
	cr_assert_gt(before.len, 0);
	cr_assert(before.len == after.len &&
		  memcmp(before.data, after.data, before.len) == 0);

	/* The owner stops the replica; restarted, it catches up. */
	node_crash(f);
	corrupt_snapshots = false;
	node_open(f);
	cr_assert_eq(raft_replica_applied_index(f->rep), applied);
	settle();
	cr_assert_eq(f->fsm.count, 103);
	expect_same_state();
	buf_free(&before);
	buf_free(&after);
}

/* A lagging follower comes back and the leader starts streaming it a
 * snapshot; returns once part of it is staged (the leader in *lp). */
static struct rnode *catch_up_halfway(struct rnode **lp)
{
	struct rnode *l;
	struct rnode *f = lag_a_follower(&l);
	node_open(f);
	struct raft_storage *fst = raft_replica_storage(f->rep);
	for (int k = 0; k < 1000 && raft_storage_snapshot_staged(fst) < 3000;
	     k++)
		steps(1);
	cr_assert_geq(raft_storage_snapshot_staged(fst), 3000);
	cr_assert_eq(f->fsm.restores, 0, "the transfer should be halfway");
	*lp = l;
	return f;
}

Test(raft_replica, compaction_during_a_transfer_restarts_it_with_a_newer_one)
{
	struct rnode *l;
	struct rnode *f = catch_up_halfway(&l);
	struct raft *r = raft_replica_raft(l->rep);
	uint64_t snap = raft_snapshot_index(r);

	/* The leader applies more and compacts past the snapshot it is
	 * sending: that one is of no use to the follower any more. */
	for (int k = 0; k < 1000 && raft_snapshot_index(r) == snap; k++) {
		propose(l, 5, 100);
		steps(1);
	}
	cr_assert_gt(raft_snapshot_index(r), snap);
	cr_assert_eq(f->fsm.restores, 0, "the transfer should be halfway");
	settle();
	cr_assert_geq(f->fsm.restores, 1);
	cr_assert_eq(f->fsm.count, l->fsm.count);
	expect_same_state();
}

Test(raft_replica, chunk_asked_beyond_the_snapshot_restarts_the_transfer)
{
	struct rnode *l;
	struct rnode *f = catch_up_halfway(&l);
	struct raft *r = raft_replica_raft(l->rep);

	/* The follower goes away mid-transfer and a reply (of a broken
	 * follower, or about a longer stream the leader no longer has) asks
	 * for bytes past the end of the leader's snapshot. */
	node_crash(f);
	Skv__InstallSnapshotReply rep = SKV__INSTALL_SNAPSHOT_REPLY__INIT;
	rep.from = f->cfg.id;
	rep.to = l->cfg.id;
	rep.term = raft_term(r);
	rep.last_index = raft_replica_applied_index(l->rep); /* what it sends */
	rep.offset = (uint64_t)1 << 30;
	cr_assert_eq(raft_step(r, now, &rep.base), STATUS_OK);
	steps(2); /* what was in flight is lost */

	/* Back, it is sent the snapshot from the start and catches up. */
	node_open(f);
	settle();
	cr_assert_geq(f->fsm.restores, 1);
	cr_assert_eq(f->fsm.count, 300);
	expect_same_state();
}

Test(raft_replica, idle_snapshot_transfers_are_dropped)
{
	struct rnode *l;
	struct rnode *f = lag_a_follower(&l);
	node_open(f);
	settle();
	cr_assert_geq(f->fsm.restores, 1);

	/* The leader streamed tens of KB holding one chunk's worth. */
	struct raft_storage *st = raft_replica_storage(l->rep);
	struct raft_replica_stats s;
	raft_replica_stats(l->rep, &s);
	cr_assert_gt(s.snapshot_bytes_sent, 30000);
	cr_assert_eq(raft_storage_snapshot_transfers(st), 1);
	size_t held = raft_storage_snapshot_held_bytes(st);
	cr_assert_gt(held, 0);
	cr_assert_leq(held, 2 * 1000 + 1024, "%zu bytes held", held);

	/* Kept while it may still be asked for, dropped after 30 s idle
	 * (no tick: only the replica's clock moves). */
	cr_assert_eq(raft_replica_process(l->rep, now + 20000, q_send, NULL),
		     STATUS_OK);
	cr_assert_eq(raft_storage_snapshot_transfers(st), 1);
	cr_assert_eq(raft_replica_process(l->rep, now + 31000, q_send, NULL),
		     STATUS_OK);
	cr_assert_eq(raft_storage_snapshot_transfers(st), 0);
	cr_assert_eq(raft_storage_snapshot_held_bytes(st), 0);
}

/* ---- snapshots larger than an install batch ---- */

static void propose_big(struct rnode *l, int k, size_t len)
{
	char *data = malloc(len);
	cr_assert_not_null(data);
	for (int i = 0; i < k; i++) {
		memset(data, 'A' + i % 26, len);
		cr_assert_eq(raft_propose(raft_replica_raft(l->rep), data, len,
					  NULL, NULL),
			     STATUS_OK);
	}
	free(data);
}

/* 1 MiB chunks; the follower misses 6 MiB of entries the others compact
 * away; returns it (down), the leader in *lp. */
static struct rnode *miss_a_large_state(struct rnode **lp)
{
	for (int i = 0; i < N; i++)
		nodes[i].cfg.snapshot_chunk_bytes_max = 1 << 20;
	open_all();
	for (int i = 0; i < N; i++)
		raft_replica_set_compaction(nodes[i].rep, 1 << 20);
	struct rnode *l = leader();
	struct rnode *f = &nodes[l == &nodes[2] ? 1 : 2];
	propose(l, 3, 10); /* so the follower has a state to replace */
	settle();
	node_crash(f);
	for (int round = 0; round < 12; round++) {
		propose_big(l, 8, 64 << 10);
		settle();
	}
	cr_assert_gt(raft_snapshot_index(raft_replica_raft(l->rep)), 4);
	*lp = l;
	return f;
}

Test(raft_replica, a_large_snapshot_installs_in_bounded_memory)
{
	struct rnode *l;
	struct rnode *f = miss_a_large_state(&l);
	node_open(f);
	settle();
	cr_assert_geq(f->fsm.restores, 1);
	cr_assert_eq(f->fsm.count, 3 + 96);
	expect_same_state();

	struct raft_replica_stats s;
	raft_replica_stats(f->rep, &s);
	cr_assert_eq(s.snapshots_installed, f->fsm.restores);
	struct raft_storage *st = raft_replica_storage(f->rep);
	uint64_t writes, synced;
	raft_storage_snapshot_install_writes(st, &writes, &synced);
	/* Per install: the synced marker write and at least two record
	 * batches of its own, then the ready's synced write. */
	cr_assert_eq(synced, s.snapshots_installed);
	cr_assert_geq(writes, 3 * s.snapshots_installed);
	size_t peak = raft_storage_snapshot_staging_peak_bytes(st);
	cr_log_info("6 MiB snapshot: %llu own writes (%llu synced), peak %zu "
		    "bytes held",
		    (unsigned long long)writes, (unsigned long long)synced,
		    peak);
	cr_assert_lt(peak, (size_t)6 << 20, "%zu bytes held", peak);
	cr_assert_eq(raft_storage_snapshot_staging_held_bytes(st), 0);
}

Test(raft_replica, a_crash_during_a_large_install_rolls_forward_at_restart)
{
	struct rnode *l;
	struct rnode *f = miss_a_large_state(&l);
	int fi = (int)(f - nodes);
	node_open(f);
	/* The install stops after its marker and one record batch. */
	raft_storage_test_fail_install_after(2);
	int rc = STATUS_OK, who = -1;
	for (int k = 0; k < 4000 && rc == STATUS_OK; k++)
		rc = step(&who);
	raft_storage_test_fail_install_after(-1);
	cr_assert_eq(rc, STATUS_IO, "%s", status_name(rc));
	cr_assert_eq(who, fi);
	cr_assert_eq(f->fsm.restores, 0);
	node_crash(f);

	/* Half installed: unreadable until recovered. */
	char err[256];
	struct store *s;
	struct store_opts so = {.path = f->path, .memenv = env};
	cr_assert_eq(store_open(&so, &s, err, sizeof(err)), STATUS_OK);
	struct raft_storage *st;
	struct raft_boot boot;
	cr_assert_eq(raft_storage_open(s, &st, &boot, err, sizeof(err)),
		     STATUS_CORRUPTION);
	cr_assert(strstr(err, "interrupted"), "%s", err);
	store_close(s);

	/* Restarted (recovery first), it holds the snapshot at once. */
	node_open(f);
	cr_assert_gt(raft_replica_applied_index(f->rep), 4);
	cr_assert_gt(f->fsm.count, 3);
	settle();
	cr_assert_eq(f->fsm.count, 3 + 96);
	expect_same_state();
}
