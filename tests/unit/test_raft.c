/*
 * Unit tests of the Raft core's edges: configuration and boot validation,
 * untrusted messages, a group of one, read index and compaction. The
 * protocol itself is exercised by the simulator scenarios
 * (tests/sim/test_raft_sim.c).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/raft/raft.h"
#include "common/raft/waits.h"
#include "common/status.h"

static struct raft_config cfg3(uint32_t id)
{
	struct raft_config c = { .id = id, .n_nodes = 3, .seed = 42 };
	c.nodes[0] = 1;
	c.nodes[1] = 2;
	c.nodes[2] = 3;
	return c;
}

/* Drives a core with no peers to answer: persists nothing, applies
 * everything; returns how many committed entries were handed out. */
static size_t drain(struct raft *r, size_t *n_msgs)
{
	struct raft_ready rd;
	size_t applied = 0, msgs = 0;
	for (int i = 0; i < 100 && raft_ready(r, &rd); i++) {
		applied += rd.n_committed;
		msgs += rd.n_msgs;
		raft_advance(r, &rd);
	}
	if (n_msgs)
		*n_msgs = msgs;
	return applied;
}

Test(raft, rejects_bad_configs)
{
	char err[256];
	struct raft *r;
	struct raft_config c = cfg3(4);
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "not in its own group"), "%s", err);
	c = cfg3(1);
	c.nodes[2] = 2;
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "listed twice"), "%s", err);
	c = cfg3(1);
	c.heartbeat_ms = 500;
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	c = cfg3(1);
	c.n_nodes = 0;
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	c = cfg3(0);
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
}

Test(raft, rejects_inconsistent_boot_state)
{
	char err[256];
	struct raft *r;
	struct raft_config c = cfg3(1);
	Skv__Entry e1 = SKV__ENTRY__INIT, e3 = SKV__ENTRY__INIT;
	e1.index = 1, e1.term = 1;
	e3.index = 3, e3.term = 1;
	const Skv__Entry *gap[] = { &e1, &e3 };
	struct raft_boot b = { .term = 1, .entries = gap, .n_entries = 2 };
	cr_assert_eq(raft_new(&c, &b, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "gap"), "%s", err);

	const Skv__Entry *one[] = { &e1 };
	b = (struct raft_boot){ .term = 1, .applied = 5, .entries = one,
				.n_entries = 1 };
	cr_assert_eq(raft_new(&c, &b, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "applied"), "%s", err);

	/* An entry from a term later than the stored term cannot be. */
	b = (struct raft_boot){ .term = 0, .entries = one, .n_entries = 1 };
	cr_assert_eq(raft_new(&c, &b, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);

	b = (struct raft_boot){ .term = 1, .vote = 9 };
	cr_assert_eq(raft_new(&c, &b, 0, &r, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
}

Test(raft, boots_from_snapshot_and_log)
{
	char err[256];
	struct raft *r;
	struct raft_config c = cfg3(2);
	Skv__Entry e11 = SKV__ENTRY__INIT, e12 = SKV__ENTRY__INIT;
	e11.index = 11, e11.term = 3;
	e12.index = 12, e12.term = 4;
	const Skv__Entry *log[] = { &e11, &e12 };
	struct raft_boot b = { .term = 4, .vote = 3, .commit = 12,
			       .snapshot_index = 10, .snapshot_term = 2,
			       .applied = 11, .entries = log, .n_entries = 2 };
	cr_assert_eq(raft_new(&c, &b, 0, &r, err, sizeof(err)), STATUS_OK,
		     "%s", err);
	cr_assert_eq(raft_term(r), 4);
	cr_assert_eq(raft_first_index(r), 11);
	cr_assert_eq(raft_last_index(r), 12);
	cr_assert_eq(raft_term_at(r, 10), 2);
	cr_assert_eq(raft_term_at(r, 9), 0);
	cr_assert_eq(raft_applied_index(r), 11);
	cr_assert_eq(raft_commit_index(r), 12);
	/* Entry 12 is committed but not applied: it comes out again. */
	struct raft_ready rd;
	cr_assert(raft_ready(r, &rd));
	cr_assert_eq(rd.n_committed, 1);
	cr_assert_eq(rd.committed[0].index, 12);
	cr_assert_eq(rd.n_entries, 0, "nothing to persist again");
	raft_advance(r, &rd);
	raft_free(r);
}

Test(raft, drops_messages_not_for_this_group)
{
	char err[256];
	struct raft *r;
	struct raft_config c = cfg3(1);
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)), STATUS_OK);
	Skv__AppendEntriesRequest m = SKV__APPEND_ENTRIES_REQUEST__INIT;
	m.from = 2, m.to = 3, m.term = 1;
	cr_assert_eq(raft_step(r, 0, &m.base), STATUS_INVALID_ARGUMENT,
		     "addressed to another node");
	m.from = 7, m.to = 1;
	cr_assert_eq(raft_step(r, 0, &m.base), STATUS_INVALID_ARGUMENT,
		     "from outside the group");
	m.from = 1;
	cr_assert_eq(raft_step(r, 0, &m.base), STATUS_INVALID_ARGUMENT,
		     "from itself");
	Skv__HardState hs = SKV__HARD_STATE__INIT;
	cr_assert_eq(raft_step(r, 0, &hs.base), STATUS_INVALID_ARGUMENT,
		     "not a Raft message");
	cr_assert_eq(raft_term(r), 0, "nothing changed");
	raft_free(r);
}

Test(raft, answers_a_malformed_append_with_a_rejection)
{
	char err[256];
	struct raft *r;
	struct raft_config c = cfg3(1);
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)), STATUS_OK);
	/* Entries that do not follow prev_log_index. */
	Skv__Entry e = SKV__ENTRY__INIT;
	e.index = 5, e.term = 1;
	Skv__Entry *es[] = { &e };
	Skv__AppendEntriesRequest m = SKV__APPEND_ENTRIES_REQUEST__INIT;
	m.from = 2, m.to = 1, m.term = 1, m.prev_log_index = 0;
	m.entries = es, m.n_entries = 1;
	cr_assert_eq(raft_step(r, 0, &m.base), STATUS_OK);
	struct raft_ready rd;
	cr_assert(raft_ready(r, &rd));
	cr_assert_eq(rd.n_msgs, 1, "every request gets one reply");
	cr_assert_eq(rd.msgs[0].type, RAFT_MSG_APPEND_REPLY);
	ProtobufCMessage *pm;
	cr_assert_eq(codec_unpack(&skv__append_entries_reply__descriptor,
				  rd.msgs[0].bytes.data, rd.msgs[0].bytes.len,
				  &pm),
		     STATUS_OK);
	Skv__AppendEntriesReply *rep = (Skv__AppendEntriesReply *)pm;
	cr_assert(!rep->success);
	cr_assert_eq(rd.n_entries, 0, "nothing stored");
	codec_free(pm);
	raft_advance(r, &rd);
	cr_assert_eq(raft_last_index(r), 0);
	raft_free(r);
}

Test(raft, group_of_one_commits_and_reads)
{
	char err[256];
	struct raft *r;
	struct raft_config c = { .id = 1, .n_nodes = 1, .nodes = { 1 } };
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)), STATUS_OK);
	cr_assert_eq(raft_propose(r, "x", 1, NULL, NULL), STATUS_NOT_LEADER);
	cr_assert_eq(raft_read_index(r, 1), STATUS_NOT_LEADER);
	raft_tick(r, raft_next_tick_ms(r));
	cr_assert_eq(raft_role(r), RAFT_LEADER);
	uint64_t idx, term;
	cr_assert_eq(raft_propose(r, "x", 1, &idx, &term), STATUS_OK);
	cr_assert_eq(idx, 2, "after the no-op");
	cr_assert_eq(raft_read_index(r, 7), STATUS_OK);
	size_t msgs;
	cr_assert_eq(drain(r, &msgs), 2, "no-op and entry applied");
	cr_assert_eq(msgs, 0);
	cr_assert_eq(raft_commit_index(r), 2);
	cr_assert_eq(raft_applied_index(r), 2);
	/* The read was decided on the way. */
	cr_assert_eq(raft_read_index(r, 8), STATUS_OK);
	struct raft_ready rd;
	cr_assert(raft_ready(r, &rd));
	cr_assert_eq(rd.n_reads, 1);
	cr_assert_eq(rd.reads[0].id, 8);
	cr_assert_eq(rd.reads[0].status, STATUS_OK);
	cr_assert_eq(rd.reads[0].index, 2);
	raft_advance(r, &rd);

	/* Compaction: only up to what is applied. */
	cr_assert_eq(raft_compact(r, 3), STATUS_INVALID_ARGUMENT);
	cr_assert_eq(raft_compact(r, 2), STATUS_OK);
	cr_assert_eq(raft_first_index(r), 3);
	cr_assert_eq(raft_snapshot_index(r), 2);
	cr_assert_eq(raft_term_at(r, 2), term);
	cr_assert(raft_ready(r, &rd));
	cr_assert_eq(rd.compact_index, 2);
	cr_assert_eq(rd.compact_term, term);
	raft_advance(r, &rd);
	cr_assert_eq(raft_compact(r, 1), STATUS_INVALID_ARGUMENT);
	raft_free(r);
}

Test(raft, persists_term_and_vote_before_granting)
{
	char err[256];
	struct raft *r;
	struct raft_config c = cfg3(1);
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)), STATUS_OK);
	Skv__RequestVoteRequest v = SKV__REQUEST_VOTE_REQUEST__INIT;
	v.from = 2, v.to = 1, v.term = 5;
	cr_assert_eq(raft_step(r, 1000, &v.base), STATUS_OK);
	struct raft_ready rd;
	cr_assert(raft_ready(r, &rd));
	cr_assert(rd.hard_state_changed);
	cr_assert_eq(rd.term, 5);
	cr_assert_eq(rd.vote, 2);
	cr_assert_eq(rd.n_msgs, 1);
	raft_advance(r, &rd);
	/* A rival in the same term is refused. */
	v.from = 3;
	cr_assert_eq(raft_step(r, 1001, &v.base), STATUS_OK);
	cr_assert(raft_ready(r, &rd));
	ProtobufCMessage *pm;
	cr_assert_eq(codec_unpack(&skv__request_vote_reply__descriptor,
				  rd.msgs[0].bytes.data, rd.msgs[0].bytes.len,
				  &pm),
		     STATUS_OK);
	cr_assert(!((Skv__RequestVoteReply *)pm)->granted);
	codec_free(pm);
	raft_advance(r, &rd);
	raft_free(r);
}

/* splitmix64, for the fuzz test's own reproducible stream. */
static uint64_t fuzz_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Small numbers mostly, extremes sometimes: where the edge cases are. */
static uint64_t fuzz_u64(uint64_t *s)
{
	switch (fuzz_next(s) % 8) {
	case 0: return 0;
	case 1: return fuzz_next(s) % 2 ? UINT64_MAX : RAFT_NUMBER_MAX;
	case 2: return fuzz_next(s);
	default: return fuzz_next(s) % 12;
	}
}

/*
 * Random bytes and random well-formed messages from group members, in any
 * order: the core must neither crash nor break its own bookkeeping (the
 * sanitizers watch), must answer every accepted request once, and must
 * never report a commit index beyond its log.
 */
Test(raft, survives_arbitrary_messages)
{
	uint64_t seed = 20261125;
	const char *env = getenv("RAFT_FUZZ_SEED");
	if (env)
		seed = strtoull(env, NULL, 10);
	cr_log_info("fuzz seed %llu (replay: RAFT_FUZZ_SEED=%llu)",
		    (unsigned long long)seed, (unsigned long long)seed);
	uint64_t s = seed;
	char err[256];
	struct raft *r;
	struct raft_config c = cfg3(1);
	c.snapshot_chunk_bytes_max = 16;
	cr_assert_eq(raft_new(&c, NULL, 0, &r, err, sizeof(err)), STATUS_OK);
	uint64_t now = 0;
	for (int i = 0; i < 20000; i++) {
		now += fuzz_next(&s) % 50;
		uint64_t kind = fuzz_next(&s) % 10;
		ProtobufCMessage *pm = NULL;
		uint8_t bytes[64];
		Skv__Entry ents[3], *ep[3];
		Skv__RequestVoteRequest vq = SKV__REQUEST_VOTE_REQUEST__INIT;
		Skv__RequestVoteReply vr = SKV__REQUEST_VOTE_REPLY__INIT;
		Skv__AppendEntriesRequest aq = SKV__APPEND_ENTRIES_REQUEST__INIT;
		Skv__AppendEntriesReply ar = SKV__APPEND_ENTRIES_REPLY__INIT;
		Skv__InstallSnapshotRequest sq =
			SKV__INSTALL_SNAPSHOT_REQUEST__INIT;
		Skv__InstallSnapshotReply sr = SKV__INSTALL_SNAPSHOT_REPLY__INIT;
		uint32_t from = 2 + (uint32_t)(fuzz_next(&s) % 2);
		bool request = false;
		switch (kind) {
		case 0: {
			/* Random bytes through the decoder, as off the wire. */
			size_t n = fuzz_next(&s) % sizeof(bytes);
			for (size_t k = 0; k < n; k++)
				bytes[k] = (uint8_t)fuzz_next(&s);
			enum raft_msg_type t = fuzz_next(&s) % 6;
			if (codec_unpack(raft_msg_descriptor(t), bytes, n, &pm))
				continue;
			break;
		}
		case 1:
			vq.from = from, vq.to = 1, vq.term = fuzz_u64(&s);
			vq.last_log_index = fuzz_u64(&s);
			vq.last_log_term = fuzz_u64(&s);
			vq.pre_vote = fuzz_next(&s) % 2;
			pm = &vq.base;
			request = true;
			break;
		case 2:
			vr.from = from, vr.to = 1, vr.term = fuzz_u64(&s);
			vr.granted = fuzz_next(&s) % 2;
			vr.pre_vote = fuzz_next(&s) % 2;
			pm = &vr.base;
			break;
		case 3:
		case 4: {
			aq.from = from, aq.to = 1, aq.term = fuzz_u64(&s);
			aq.prev_log_index = fuzz_u64(&s);
			aq.prev_log_term = fuzz_u64(&s);
			aq.leader_commit = fuzz_u64(&s);
			aq.n_entries = fuzz_next(&s) % 4;
			for (size_t k = 0; k < aq.n_entries; k++) {
				skv__entry__init(&ents[k]);
				bool dense = fuzz_next(&s) % 4 != 0;
				ents[k].index = dense ? aq.prev_log_index + 1 + k
						      : fuzz_u64(&s);
				ents[k].term = fuzz_next(&s) % 2
						       ? aq.term
						       : fuzz_u64(&s);
				ep[k] = &ents[k];
			}
			aq.entries = ep;
			pm = &aq.base;
			request = true;
			break;
		}
		case 5:
		case 6:
			ar.from = from, ar.to = 1, ar.term = fuzz_u64(&s);
			ar.success = fuzz_next(&s) % 2;
			ar.match_index = fuzz_u64(&s);
			ar.conflict_term = fuzz_u64(&s);
			ar.conflict_index = fuzz_u64(&s);
			ar.reject_index = fuzz_u64(&s);
			ar.read_ctx = fuzz_u64(&s);
			pm = &ar.base;
			break;
		case 7:
			sq.from = from, sq.to = 1, sq.term = fuzz_u64(&s);
			sq.last_index = fuzz_u64(&s);
			sq.last_term = fuzz_u64(&s);
			sq.offset = fuzz_u64(&s);
			sq.size_bytes = fuzz_u64(&s);
			sq.data.len = fuzz_next(&s) % 20;
			sq.data.data = bytes;
			sq.done = fuzz_next(&s) % 2;
			pm = &sq.base;
			request = true;
			break;
		case 8:
			sr.from = from, sr.to = 1, sr.term = fuzz_u64(&s);
			sr.last_index = fuzz_u64(&s);
			sr.offset = fuzz_u64(&s);
			sr.done = fuzz_next(&s) % 2;
			pm = &sr.base;
			break;
		default:
			raft_tick(r, now);
			if (raft_role(r) == RAFT_LEADER)
				raft_propose(r, "p", 1, NULL, NULL);
			if (raft_applied_index(r) > raft_snapshot_index(r))
				raft_compact(r, raft_applied_index(r));
			break;
		}
		size_t replies = 0;
		if (pm) {
			int rc = raft_step(r, now, pm);
			if (kind == 0)
				codec_free(pm);
			else if (rc == STATUS_OK && request)
				replies = 1;
		}
		struct raft_ready rd;
		if (raft_ready(r, &rd)) {
			size_t got = 0;
			for (size_t k = 0; k < rd.n_msgs; k++)
				got += rd.msgs[k].type == RAFT_MSG_VOTE_REPLY ||
				       rd.msgs[k].type == RAFT_MSG_APPEND_REPLY ||
				       rd.msgs[k].type == RAFT_MSG_SNAPSHOT_REPLY;
			cr_assert_eq(got, replies,
				     "seed %llu step %d: %zu replies to %zu "
				     "requests",
				     (unsigned long long)seed, i, got, replies);
			raft_advance(r, &rd);
			/* Settle (a leader's own entries may commit). */
			drain(r, NULL);
		} else {
			cr_assert_eq(replies, 0, "seed %llu step %d: no reply",
				     (unsigned long long)seed, i);
		}
		cr_assert_leq(raft_commit_index(r), raft_last_index(r),
			      "seed %llu step %d", (unsigned long long)seed, i);
		cr_assert_leq(raft_applied_index(r), raft_commit_index(r),
			      "seed %llu step %d", (unsigned long long)seed, i);
	}
	raft_free(r);
}

/* ---- waits (common/raft/waits.h) ---- */

struct twait {
	struct raft_wait w;
	uint64_t seq;
	int status;
};

static uint64_t seen[16];
static size_t n_seen;

static void note_token(void *arg, void *item)
{
	(void)arg;
	seen[n_seen++] = ((struct raft_wait *)item)->token;
}

static bool seq_matches(void *arg, const void *item)
{
	return ((const struct twait *)item)->seq == *(const uint64_t *)arg;
}

static void record(void *arg, void *item, bool own)
{
	(void)arg;
	((struct twait *)item)->status = own ? STATUS_OK : STATUS_NOT_LEADER;
}

static void add_wait(struct raft_waits *ws, uint64_t token, uint64_t index,
		     uint64_t term, uint64_t seq)
{
	struct twait t = { .w = { .token = token, .index = index,
				  .term = term },
			   .seq = seq };
	cr_assert_eq(raft_waits_add(ws, &t), STATUS_OK);
}

Test(waits, decided_at_apply_answered_when_durable)
{
	struct raft_waits ws;
	raft_waits_init(&ws, sizeof(struct twait));
	add_wait(&ws, 1, 5, 2, 10);
	add_wait(&ws, 2, 6, 2, 11);
	add_wait(&ws, 3, 7, 2, 12);
	/* Entry 6 applies as seq 11's command: 5 was passed over (another
	 * command there), 6 is its own, 7 still waits. */
	uint64_t seq = 11;
	raft_waits_decide(&ws, 6, seq_matches, record, &seq);
	struct twait *t = (struct twait *)ws.items;
	cr_assert(t[0].w.decided && t[1].w.decided && !t[2].w.decided);
	cr_assert_eq(t[0].status, STATUS_NOT_LEADER);
	cr_assert_eq(t[1].status, STATUS_OK);
	/* Durable up to 5 only: one answer. */
	n_seen = 0;
	raft_waits_release(&ws, 5, note_token, NULL);
	cr_assert_eq(n_seen, 1);
	cr_assert_eq(seen[0], 1);
	raft_waits_release(&ws, 7, note_token, NULL);
	cr_assert_eq(n_seen, 2, "7 is not decided yet");
	cr_assert_eq(seen[1], 2);
	cr_assert_eq(raft_waits_count(&ws), 1);
	/* The term moves on: the undecided one is answered at once. */
	raft_waits_fail_stale(&ws, true, 2, note_token, NULL);
	cr_assert_eq(raft_waits_count(&ws), 1);
	raft_waits_fail_stale(&ws, true, 3, note_token, NULL);
	cr_assert_eq(raft_waits_count(&ws), 0);
	cr_assert_eq(seen[2], 3);
	raft_waits_free(&ws);
}

Test(waits, a_follower_fails_every_undecided_wait_and_shutdown_takes_all)
{
	struct raft_waits ws;
	raft_waits_init(&ws, sizeof(struct twait));
	for (uint64_t i = 1; i <= 5; i++)
		add_wait(&ws, i, i, 1, i);
	raft_waits_decide(&ws, 2, NULL, record, NULL);
	n_seen = 0;
	raft_waits_fail_stale(&ws, false, 1, note_token, NULL);
	cr_assert_eq(n_seen, 3);
	cr_assert_eq(raft_waits_count(&ws), 2, "decided ones stay");
	/* Taken out by what it waits for (a read by its read id). */
	struct twait got;
	uint64_t seq = 2;
	cr_assert(raft_waits_take_if(&ws, seq_matches, &seq, &got));
	cr_assert_eq(got.w.token, 2);
	cr_assert_not(raft_waits_take_if(&ws, seq_matches, &seq, &got));
	cr_assert_eq(raft_waits_count(&ws), 1);
	raft_waits_take_all(&ws, note_token, NULL);
	cr_assert_eq(n_seen, 4);
	cr_assert_eq(raft_waits_count(&ws), 0);
	/* Out of memory: nothing added. */
	mem_fail_after(1);
	struct twait t = { .w = { .token = 9 } };
	cr_assert_eq(raft_waits_add(&ws, &t), STATUS_NO_MEMORY);
	mem_fail_reset();
	cr_assert_eq(raft_waits_count(&ws), 0);
	raft_waits_free(&ws);
}
