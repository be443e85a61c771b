/*
 * raft: the consensus core. See raft.h for the contract and the driving
 * loop. Sections: log, messages, roles and elections, replication,
 * snapshots, reads, ready/advance.
 *
 * Memory: an allocation failure is never fatal here. A message that cannot
 * be packed is dropped (the network may drop any message anyway); entries
 * that cannot be stored make the AppendEntries fail; a proposal returns
 * NO_MEMORY.
 */
#include "common/raft/raft.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/mem.h"
#include "common/status.h"

#define INFLIGHT_CAP 64

enum progress_state { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

/* What the leader knows about one follower. */
struct progress {
	uint32_t id;
	enum progress_state state;
	uint64_t next;
	uint64_t match;
	/* PR_REPLICATE: last index of each AppendEntries in flight, oldest
	 * first (a ring). */
	uint64_t inflight[INFLIGHT_CAP];
	uint32_t inflight_head, inflight_n;
	uint64_t last_progress_ms; /* match advanced or window opened */
	bool probe_sent;	   /* PR_PROBE: one append outstanding */
	bool recent_active;	   /* heard from since the last quorum check */
	uint64_t read_ack;	   /* highest read context acknowledged */
	/* PR_SNAPSHOT */
	uint64_t snap_index;
	uint64_t snap_offset;
	uint64_t snap_sent_ms;
	/* elections */
	bool vote_granted;
};

struct pending_read {
	uint64_t id;
	uint64_t ctx; /* 0 = waiting for this term's first commit */
	uint64_t index;
};

struct raft {
	struct raft_config cfg;
	size_t quorum;
	uint64_t rng;
	uint64_t now;

	/* persistent state, as held in memory */
	uint64_t term;
	uint32_t vote;
	/* what storage holds (after the last advance) */
	uint64_t saved_term;
	uint32_t saved_vote;
	uint64_t saved_commit;

	enum raft_role role;
	uint32_t leader;
	uint64_t commit;
	uint64_t applied;

	/* log: entries snapshot_index+1 .. last, at log[head .. head+n) */
	struct raft_entry *log;
	size_t log_head, log_n, log_cap;
	size_t log_bytes;
	uint64_t snapshot_index, snapshot_term;
	uint64_t stable_index;	 /* last index durable in storage */
	uint64_t unstable_from;	 /* first index not yet handed to storage */

	/* timers */
	uint64_t election_deadline;
	uint64_t heartbeat_deadline;
	uint64_t quorum_deadline;
	uint64_t leader_contact_ms; /* last message from the current leader */

	/* leader */
	struct progress pr[RAFT_MAX_NODES]; /* index = position in cfg.nodes */
	uint64_t term_start_index;	    /* this leader's no-op */
	struct pending_read *reads;
	size_t n_reads, cap_reads;
	uint64_t read_seq;
	bool read_broadcast;
	bool append_pending; /* proposals not yet sent to followers */

	/* follower: snapshot being received */
	uint64_t recv_index, recv_term, recv_offset, recv_size;
	uint8_t *recv_chunk;
	size_t recv_chunk_cap;

	/* effects */
	struct raft_msg *msgs;
	size_t n_msgs, cap_msgs;
	struct raft_read *done_reads;
	size_t n_done_reads, cap_done_reads;
	bool has_chunk;
	struct raft_snapshot_chunk chunk;
	uint64_t compact_index, compact_term;
	bool discard_all;

	/* scratch for packing AppendEntries */
	Skv__Entry *scratch;
	Skv__Entry **scratch_ptrs;
	size_t scratch_cap;
};

/* ---- small helpers ---- */

static uint64_t rng_next(struct raft *r)
{
	/* splitmix64: enough for spreading election timeouts. */
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int node_pos(const struct raft *r, uint32_t id)
{
	for (size_t i = 0; i < r->cfg.n_nodes; i++)
		if (r->cfg.nodes[i] == id)
			return (int)i;
	return -1;
}

static uint64_t u64_max(uint64_t a, uint64_t b) { return a > b ? a : b; }
static uint64_t u64_min(uint64_t a, uint64_t b) { return a < b ? a : b; }

const char *raft_role_name(enum raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER: return "follower";
	case RAFT_PRE_CANDIDATE: return "pre-candidate";
	case RAFT_CANDIDATE: return "candidate";
	case RAFT_LEADER: return "leader";
	}
	return "?";
}

const char *raft_msg_type_name(enum raft_msg_type t)
{
	switch (t) {
	case RAFT_MSG_VOTE_REQ: return "RequestVote";
	case RAFT_MSG_VOTE_REPLY: return "RequestVoteReply";
	case RAFT_MSG_APPEND_REQ: return "AppendEntries";
	case RAFT_MSG_APPEND_REPLY: return "AppendEntriesReply";
	case RAFT_MSG_SNAPSHOT_REQ: return "InstallSnapshot";
	case RAFT_MSG_SNAPSHOT_REPLY: return "InstallSnapshotReply";
	}
	return "?";
}

const ProtobufCMessageDescriptor *raft_msg_descriptor(enum raft_msg_type t)
{
	switch (t) {
	case RAFT_MSG_VOTE_REQ: return &skv__request_vote_request__descriptor;
	case RAFT_MSG_VOTE_REPLY: return &skv__request_vote_reply__descriptor;
	case RAFT_MSG_APPEND_REQ:
		return &skv__append_entries_request__descriptor;
	case RAFT_MSG_APPEND_REPLY:
		return &skv__append_entries_reply__descriptor;
	case RAFT_MSG_SNAPSHOT_REQ:
		return &skv__install_snapshot_request__descriptor;
	case RAFT_MSG_SNAPSHOT_REPLY:
		return &skv__install_snapshot_reply__descriptor;
	}
	return NULL;
}

const char *raft_msg_method(enum raft_msg_type t)
{
	switch (t) {
	case RAFT_MSG_VOTE_REQ: return "/skv.Raft/RequestVote";
	case RAFT_MSG_APPEND_REQ: return "/skv.Raft/AppendEntries";
	case RAFT_MSG_SNAPSHOT_REQ: return "/skv.Raft/InstallSnapshot";
	default: return NULL;
	}
}

/* ---- log ---- */

static uint64_t last_index(const struct raft *r)
{
	return r->snapshot_index + r->log_n;
}

static struct raft_entry *entry_at(const struct raft *r, uint64_t index)
{
	if (index <= r->snapshot_index || index > last_index(r))
		return NULL;
	return &r->log[r->log_head + (index - r->snapshot_index - 1)];
}

static uint64_t term_at(const struct raft *r, uint64_t index)
{
	if (index == r->snapshot_index)
		return r->snapshot_term;
	const struct raft_entry *e = entry_at(r, index);
	return e ? e->term : 0;
}

static uint64_t last_term(const struct raft *r)
{
	return term_at(r, last_index(r));
}

static int log_append(struct raft *r, uint64_t term, Skv__EntryType type,
		      const void *data, size_t len)
{
	if (r->log_head + r->log_n == r->log_cap) {
		if (r->log_head > 0 && r->log_head >= r->log_n) {
			memmove(r->log, r->log + r->log_head,
				r->log_n * sizeof(*r->log));
			r->log_head = 0;
		} else {
			size_t cap = r->log_cap ? r->log_cap * 2 : 64;
			struct raft_entry *n =
				mem_realloc(r->log, cap * sizeof(*n));
			if (!n)
				return STATUS_NO_MEMORY;
			r->log = n;
			r->log_cap = cap;
		}
	}
	uint8_t *copy = NULL;
	if (len > 0) {
		copy = mem_alloc(len);
		if (!copy)
			return STATUS_NO_MEMORY;
		memcpy(copy, data, len);
	}
	struct raft_entry *e = &r->log[r->log_head + r->log_n];
	e->term = term;
	e->index = last_index(r) + 1;
	e->type = type;
	e->data = copy;
	e->len = len;
	r->log_n++;
	r->log_bytes += len;
	return STATUS_OK;
}

/* Removes entries at `from` and after. */
static void log_truncate(struct raft *r, uint64_t from)
{
	assert(from > r->commit);
	while (last_index(r) >= from) {
		struct raft_entry *e = entry_at(r, last_index(r));
		r->log_bytes -= e->len;
		mem_free(e->data);
		r->log_n--;
	}
	if (r->unstable_from > from)
		r->unstable_from = from;
	if (r->stable_index >= from)
		r->stable_index = from - 1;
}

/* Drops entries up to and including `index` (which is <= last). */
static void log_drop_prefix(struct raft *r, uint64_t index, uint64_t term)
{
	while (r->log_n > 0 && r->snapshot_index < index) {
		struct raft_entry *e = &r->log[r->log_head];
		r->log_bytes -= e->len;
		mem_free(e->data);
		r->log_head++;
		r->log_n--;
		r->snapshot_index++;
	}
	r->snapshot_index = index;
	r->snapshot_term = term;
	if (r->log_n == 0)
		r->log_head = 0;
}

static void log_clear(struct raft *r, uint64_t index, uint64_t term)
{
	while (r->log_n > 0) {
		struct raft_entry *e = &r->log[r->log_head + r->log_n - 1];
		mem_free(e->data);
		r->log_n--;
	}
	r->log_head = 0;
	r->log_bytes = 0;
	r->snapshot_index = index;
	r->snapshot_term = term;
}

/* ---- messages ---- */

static struct raft_msg *msg_new(struct raft *r, uint32_t to,
				enum raft_msg_type type)
{
	if (r->n_msgs == r->cap_msgs) {
		size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 16;
		struct raft_msg *n = mem_realloc(r->msgs, cap * sizeof(*n));
		if (!n)
			return NULL;
		for (size_t i = r->cap_msgs; i < cap; i++)
			buf_init(&n[i].bytes);
		r->msgs = n;
		r->cap_msgs = cap;
	}
	struct raft_msg *m = &r->msgs[r->n_msgs];
	m->from = r->cfg.id;
	m->to = to;
	m->type = type;
	buf_reset(&m->bytes);
	memset(&m->snap, 0, sizeof(m->snap));
	return m;
}

static void msg_send(struct raft *r, uint32_t to, enum raft_msg_type type,
		     const ProtobufCMessage *pm)
{
	struct raft_msg *m = msg_new(r, to, type);
	if (!m || codec_pack(pm, &m->bytes) != STATUS_OK)
		return; /* dropped, as the network could */
	r->n_msgs++;
}

int raft_snapshot_chunk_pack(struct raft_msg *m, uint64_t last_index_,
			     uint64_t last_term_, const void *data, size_t len,
			     uint64_t size_bytes)
{
	Skv__InstallSnapshotRequest req = SKV__INSTALL_SNAPSHOT_REQUEST__INIT;
	req.from = m->from;
	req.to = m->to;
	req.term = m->snap.term;
	req.last_index = last_index_;
	req.last_term = last_term_;
	req.offset = last_index_ == m->snap.last_index ? m->snap.offset : 0;
	req.data.data = (uint8_t *)data;
	req.data.len = len;
	req.size_bytes = size_bytes;
	req.done = req.offset + len >= size_bytes;
	return codec_pack(&req.base, &m->bytes);
}

/* ---- timers and roles ---- */

static void reset_election_timer(struct raft *r)
{
	uint64_t lo = r->cfg.election_timeout_ms_min;
	uint64_t span = r->cfg.election_timeout_ms_max - lo;
	r->election_deadline = r->now + lo + (span ? rng_next(r) % span : 0);
}

static void fail_reads(struct raft *r);

static void become_follower(struct raft *r, uint64_t term, uint32_t leader)
{
	if (r->role == RAFT_LEADER)
		fail_reads(r);
	if (term > r->term) {
		r->term = term;
		r->vote = 0;
	}
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	reset_election_timer(r);
}

static bool log_up_to_date(const struct raft *r, uint64_t lterm, uint64_t lidx)
{
	uint64_t my = last_term(r);
	return lterm > my || (lterm == my && lidx >= last_index(r));
}

/* A node that heard from a leader within the minimum election timeout
 * refuses to help anyone else get elected (check-quorum's lease). */
static bool in_lease(const struct raft *r)
{
	if (r->role == RAFT_LEADER)
		return true;
	return r->leader != 0 &&
	       r->now < r->leader_contact_ms + r->cfg.election_timeout_ms_min;
}

static void send_votes(struct raft *r, bool pre)
{
	for (size_t i = 0; i < r->cfg.n_nodes; i++) {
		uint32_t id = r->cfg.nodes[i];
		r->pr[i].vote_granted = id == r->cfg.id;
		if (id == r->cfg.id)
			continue;
		Skv__RequestVoteRequest req = SKV__REQUEST_VOTE_REQUEST__INIT;
		req.from = r->cfg.id;
		req.to = id;
		req.term = pre ? r->term + 1 : r->term;
		req.last_log_index = last_index(r);
		req.last_log_term = last_term(r);
		req.pre_vote = pre;
		msg_send(r, id, RAFT_MSG_VOTE_REQ, &req.base);
	}
}

static size_t votes_granted(const struct raft *r)
{
	size_t n = 0;
	for (size_t i = 0; i < r->cfg.n_nodes; i++)
		n += r->pr[i].vote_granted;
	return n;
}

static void become_leader(struct raft *r);

static void campaign(struct raft *r)
{
	r->role = RAFT_CANDIDATE;
	r->term++;
	r->vote = r->cfg.id;
	r->leader = 0;
	reset_election_timer(r);
	send_votes(r, false);
	if (votes_granted(r) >= r->quorum)
		become_leader(r);
}

static void pre_campaign(struct raft *r)
{
	if (r->quorum == 1) {
		campaign(r);
		return;
	}
	r->role = RAFT_PRE_CANDIDATE;
	r->leader = 0;
	reset_election_timer(r);
	send_votes(r, true);
}

static void send_append(struct raft *r, struct progress *pr, bool empty);

static void become_leader(struct raft *r)
{
	r->role = RAFT_LEADER;
	r->leader = r->cfg.id;
	r->read_seq = 0;
	r->read_broadcast = false;
	uint64_t next = last_index(r) + 1;
	for (size_t i = 0; i < r->cfg.n_nodes; i++) {
		struct progress *pr = &r->pr[i];
		uint32_t id = pr->id;
		memset(pr, 0, sizeof(*pr));
		pr->id = id;
		pr->state = PR_PROBE;
		pr->next = next;
		pr->last_progress_ms = r->now;
	}
	/* The no-op commits every entry of earlier terms (section 5.4.2)
	 * and is what read index waits for. If it cannot be stored the
	 * leader steps down rather than serve without it. */
	if (log_append(r, r->term, SKV__ENTRY_TYPE__ENTRY_NOOP, NULL, 0)) {
		become_follower(r, r->term, 0);
		return;
	}
	r->term_start_index = last_index(r);
	r->heartbeat_deadline = r->now + r->cfg.heartbeat_ms;
	r->quorum_deadline = r->now + r->cfg.election_timeout_ms_max;
	for (size_t i = 0; i < r->cfg.n_nodes; i++)
		if (r->pr[i].id != r->cfg.id)
			send_append(r, &r->pr[i], false);
}

/* ---- replication (leader) ---- */

static int scratch_reserve(struct raft *r, size_t n)
{
	if (n <= r->scratch_cap)
		return STATUS_OK;
	Skv__Entry *s = mem_realloc(r->scratch, n * sizeof(*s));
	if (!s)
		return STATUS_NO_MEMORY;
	r->scratch = s;
	Skv__Entry **p = mem_realloc(r->scratch_ptrs, n * sizeof(*p));
	if (!p)
		return STATUS_NO_MEMORY;
	r->scratch_ptrs = p;
	r->scratch_cap = n;
	return STATUS_OK;
}

static void send_snapshot(struct raft *r, struct progress *pr)
{
	struct raft_msg *m = msg_new(r, pr->id, RAFT_MSG_SNAPSHOT_REQ);
	if (!m)
		return;
	m->snap.term = r->term;
	m->snap.last_index = pr->snap_index;
	m->snap.last_term = term_at(r, pr->snap_index);
	m->snap.offset = pr->snap_offset;
	m->snap.chunk_bytes_max = r->cfg.snapshot_chunk_bytes_max;
	r->n_msgs++;
	pr->snap_sent_ms = r->now;
}

static void start_snapshot(struct raft *r, struct progress *pr)
{
	pr->state = PR_SNAPSHOT;
	pr->snap_index = r->snapshot_index;
	pr->snap_offset = 0;
	pr->inflight_n = 0;
	send_snapshot(r, pr);
}

/*
 * Sends one AppendEntries to `pr`: entries from pr->next on (unless
 * `empty`: a heartbeat, whose prev is the follower's known match so it
 * cannot fail for a log reason).
 */
static void send_append(struct raft *r, struct progress *pr, bool empty)
{
	uint64_t prev = empty ? pr->match : pr->next - 1;
	if (prev < r->snapshot_index) {
		if (!empty) {
			start_snapshot(r, pr);
			return;
		}
		prev = r->snapshot_index;
	}
	Skv__AppendEntriesRequest req = SKV__APPEND_ENTRIES_REQUEST__INIT;
	req.from = r->cfg.id;
	req.to = pr->id;
	req.term = r->term;
	req.prev_log_index = prev;
	req.prev_log_term = term_at(r, prev);
	req.read_ctx = r->read_seq;
	size_t n = 0, bytes = 0;
	if (!empty) {
		uint64_t last = last_index(r);
		while (prev + n < last && n < r->cfg.append_entries_max) {
			const struct raft_entry *e = entry_at(r, prev + n + 1);
			if (n > 0 && bytes + e->len > r->cfg.append_bytes_max)
				break;
			bytes += e->len;
			n++;
		}
		if (scratch_reserve(r, n))
			return;
		for (size_t i = 0; i < n; i++) {
			const struct raft_entry *e = entry_at(r, prev + i + 1);
			Skv__Entry *pe = &r->scratch[i];
			skv__entry__init(pe);
			pe->term = e->term;
			pe->index = e->index;
			pe->type = e->type;
			pe->data.data = e->data;
			pe->data.len = e->len;
			r->scratch_ptrs[i] = pe;
		}
		req.entries = r->scratch_ptrs;
		req.n_entries = n;
	}
	req.leader_commit = u64_min(r->commit, prev + n);
	msg_send(r, pr->id, RAFT_MSG_APPEND_REQ, &req.base);
	if (empty)
		return;
	if (pr->state == PR_PROBE) {
		pr->probe_sent = true;
	} else if (n > 0) {
		uint32_t slot = (pr->inflight_head + pr->inflight_n) %
				INFLIGHT_CAP;
		pr->inflight[slot] = prev + n;
		pr->inflight_n++;
		pr->next = prev + n + 1;
	}
}

static bool can_send(const struct raft *r, const struct progress *pr)
{
	switch (pr->state) {
	case PR_PROBE: return !pr->probe_sent;
	case PR_REPLICATE:
		return pr->inflight_n < r->cfg.inflight_max &&
		       pr->next <= last_index(r);
	case PR_SNAPSHOT: return false;
	}
	return false;
}

/* Sends what the follower may take now (flow control permitting). */
static void maybe_send(struct raft *r, struct progress *pr)
{
	while (can_send(r, pr)) {
		size_t before = pr->inflight_n;
		send_append(r, pr, false);
		if (pr->state != PR_REPLICATE || pr->inflight_n == before)
			break;
	}
}

static void broadcast_append(struct raft *r)
{
	for (size_t i = 0; i < r->cfg.n_nodes; i++)
		if (r->pr[i].id != r->cfg.id)
			maybe_send(r, &r->pr[i]);
}

static int cmp_u64_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

static void check_reads(struct raft *r);

/* Commit = the highest index stored on a quorum, if of this term. */
static void maybe_commit(struct raft *r)
{
	uint64_t m[RAFT_MAX_NODES];
	for (size_t i = 0; i < r->cfg.n_nodes; i++)
		m[i] = r->pr[i].id == r->cfg.id ? r->stable_index
						 : r->pr[i].match;
	qsort(m, r->cfg.n_nodes, sizeof(m[0]), cmp_u64_desc);
	uint64_t n = m[r->quorum - 1];
	if (n > r->commit && term_at(r, n) == r->term) {
		r->commit = n;
		check_reads(r);
	}
}

static void progress_ack(struct raft *r, struct progress *pr, uint64_t match)
{
	if (match > pr->match) {
		pr->match = match;
		pr->last_progress_ms = r->now;
	}
	if (pr->next <= pr->match)
		pr->next = pr->match + 1;
	while (pr->inflight_n > 0 &&
	       pr->inflight[pr->inflight_head] <= pr->match) {
		pr->inflight_head = (pr->inflight_head + 1) % INFLIGHT_CAP;
		pr->inflight_n--;
	}
}

static void handle_append_reply(struct raft *r, struct progress *pr,
				const Skv__AppendEntriesReply *m)
{
	pr->recent_active = true;
	if (m->read_ctx > pr->read_ack) {
		pr->read_ack = m->read_ctx;
		check_reads(r);
	}
	if (pr->state == PR_SNAPSHOT)
		return;
	if (m->success) {
		if (m->match_index > last_index(r))
			return; /* cannot be: not from this leader */
		progress_ack(r, pr, m->match_index);
		if (pr->state == PR_PROBE && pr->match + 1 >= pr->next) {
			pr->probe_sent = false;
			pr->state = PR_REPLICATE;
			pr->inflight_n = 0;
			pr->next = pr->match + 1;
		}
		maybe_commit(r);
		maybe_send(r, pr);
		return;
	}
	/* A rejection. Ignore it if it is older than what we know. */
	if (m->reject_index <= pr->match)
		return;
	if (pr->state == PR_PROBE && m->reject_index != pr->next - 1)
		return;
	uint64_t next;
	if (m->conflict_term == 0) {
		next = m->conflict_index;
	} else {
		/* Skip the follower's whole conflicting term, or jump to
		 * just after our own last entry of that term. */
		uint64_t i = u64_min(m->reject_index, last_index(r));
		while (i > r->snapshot_index && term_at(r, i) > m->conflict_term)
			i--;
		if (i > r->snapshot_index && term_at(r, i) == m->conflict_term)
			next = i + 1;
		else
			next = m->conflict_index;
	}
	next = u64_min(next, m->reject_index);
	next = u64_max(next, pr->match + 1);
	pr->state = PR_PROBE;
	pr->probe_sent = false;
	pr->inflight_n = 0;
	pr->next = next;
	maybe_send(r, pr);
}

static void heartbeat(struct raft *r)
{
	for (size_t i = 0; i < r->cfg.n_nodes; i++) {
		struct progress *pr = &r->pr[i];
		if (pr->id == r->cfg.id)
			continue;
		switch (pr->state) {
		case PR_SNAPSHOT:
			if (r->now >= pr->snap_sent_ms + r->cfg.heartbeat_ms)
				send_snapshot(r, pr);
			continue;
		case PR_PROBE:
			/* The outstanding probe may be lost: send it again;
			 * it serves as the heartbeat. */
			pr->probe_sent = false;
			maybe_send(r, pr);
			continue;
		case PR_REPLICATE:
			/* Entries in flight, no progress for a whole
			 * interval: some were lost; resend from match. */
			if (pr->inflight_n > 0 &&
			    r->now >= pr->last_progress_ms +
					      r->cfg.heartbeat_ms) {
				pr->inflight_n = 0;
				pr->next = pr->match + 1;
				pr->last_progress_ms = r->now;
				maybe_send(r, pr);
			}
			break;
		}
		send_append(r, pr, true);
	}
}

/* ---- reads ---- */

static int reads_push(struct raft *r, uint64_t id, int status, uint64_t index)
{
	if (r->n_done_reads == r->cap_done_reads) {
		size_t cap = r->cap_done_reads ? r->cap_done_reads * 2 : 16;
		struct raft_read *n =
			mem_realloc(r->done_reads, cap * sizeof(*n));
		if (!n)
			return STATUS_NO_MEMORY;
		r->done_reads = n;
		r->cap_done_reads = cap;
	}
	r->done_reads[r->n_done_reads++] =
		(struct raft_read){ .id = id, .status = status, .index = index };
	return STATUS_OK;
}

static void fail_reads(struct raft *r)
{
	for (size_t i = 0; i < r->n_reads; i++)
		reads_push(r, r->reads[i].id, STATUS_NOT_LEADER, 0);
	r->n_reads = 0;
}

/* Reads whose heartbeat round a quorum acknowledged are decided; reads
 * waiting for this term's first commit get their index and round. */
static void check_reads(struct raft *r)
{
	if (r->role != RAFT_LEADER || r->n_reads == 0)
		return;
	if (r->commit >= r->term_start_index) {
		for (size_t i = 0; i < r->n_reads; i++) {
			if (r->reads[i].ctx == 0) {
				r->reads[i].ctx = ++r->read_seq;
				r->reads[i].index = r->commit;
				r->read_broadcast = true;
			}
		}
	}
	uint64_t acks[RAFT_MAX_NODES];
	for (size_t i = 0; i < r->cfg.n_nodes; i++)
		acks[i] = r->pr[i].id == r->cfg.id ? r->read_seq
						  : r->pr[i].read_ack;
	qsort(acks, r->cfg.n_nodes, sizeof(acks[0]), cmp_u64_desc);
	uint64_t confirmed = acks[r->quorum - 1];
	size_t keep = 0;
	for (size_t i = 0; i < r->n_reads; i++) {
		struct pending_read *p = &r->reads[i];
		if (p->ctx != 0 && p->ctx <= confirmed &&
		    reads_push(r, p->id, STATUS_OK, p->index) == STATUS_OK)
			continue;
		r->reads[keep++] = *p;
	}
	r->n_reads = keep;
}

int raft_read_index(struct raft *r, uint64_t id)
{
	if (r->role != RAFT_LEADER)
		return STATUS_NOT_LEADER;
	if (r->n_reads == r->cap_reads) {
		size_t cap = r->cap_reads ? r->cap_reads * 2 : 16;
		struct pending_read *n = mem_realloc(r->reads, cap * sizeof(*n));
		if (!n)
			return STATUS_NO_MEMORY;
		r->reads = n;
		r->cap_reads = cap;
	}
	r->reads[r->n_reads++] =
		(struct pending_read){ .id = id, .ctx = 0, .index = 0 };
	check_reads(r);
	return STATUS_OK;
}

/* ---- receiving ---- */

static void reply_vote(struct raft *r, uint32_t to, uint64_t term,
		       bool granted, bool pre)
{
	Skv__RequestVoteReply rep = SKV__REQUEST_VOTE_REPLY__INIT;
	rep.from = r->cfg.id;
	rep.to = to;
	rep.term = term;
	rep.granted = granted;
	rep.pre_vote = pre;
	msg_send(r, to, RAFT_MSG_VOTE_REPLY, &rep.base);
}

static void handle_vote_req(struct raft *r, const Skv__RequestVoteRequest *m)
{
	bool up = log_up_to_date(r, m->last_log_term, m->last_log_index);
	if (m->pre_vote) {
		/* A pre-vote changes nothing here. */
		bool grant = m->term > r->term && up && !in_lease(r);
		reply_vote(r, m->from, grant ? m->term : r->term, grant, true);
		return;
	}
	if (m->term > r->term) {
		if (in_lease(r)) {
			reply_vote(r, m->from, r->term, false, false);
			return;
		}
		become_follower(r, m->term, 0);
	}
	bool grant = m->term == r->term && up &&
		     (r->vote == 0 || r->vote == m->from);
	if (grant) {
		r->vote = m->from;
		reset_election_timer(r);
	}
	reply_vote(r, m->from, r->term, grant, false);
}

static void handle_vote_reply(struct raft *r, const Skv__RequestVoteReply *m,
			      struct progress *pr)
{
	if (m->pre_vote) {
		if (r->role != RAFT_PRE_CANDIDATE)
			return;
		if (m->granted && m->term == r->term + 1) {
			pr->vote_granted = true;
			if (votes_granted(r) >= r->quorum)
				campaign(r);
		} else if (!m->granted && m->term > r->term) {
			become_follower(r, m->term, 0);
		}
		return;
	}
	if (m->term > r->term) {
		become_follower(r, m->term, 0);
		return;
	}
	if (m->term < r->term || r->role != RAFT_CANDIDATE || !m->granted)
		return;
	pr->vote_granted = true;
	if (votes_granted(r) >= r->quorum)
		become_leader(r);
}

static void reply_append(struct raft *r, const Skv__AppendEntriesRequest *m,
			 bool ok, uint64_t match, uint64_t cterm,
			 uint64_t cindex)
{
	Skv__AppendEntriesReply rep = SKV__APPEND_ENTRIES_REPLY__INIT;
	rep.from = r->cfg.id;
	rep.to = m->from;
	rep.term = r->term;
	rep.success = ok;
	rep.match_index = ok ? match : 0;
	rep.conflict_term = cterm;
	rep.conflict_index = cindex;
	rep.read_ctx = m->read_ctx;
	rep.reject_index = ok ? 0 : m->prev_log_index;
	msg_send(r, m->from, RAFT_MSG_APPEND_REPLY, &rep.base);
}

static void heard_from_leader(struct raft *r, uint32_t leader)
{
	if (r->role != RAFT_FOLLOWER || r->leader != leader)
		become_follower(r, r->term, leader);
	else
		reset_election_timer(r);
	r->leader_contact_ms = r->now;
}

static void handle_append_req(struct raft *r,
			      const Skv__AppendEntriesRequest *m)
{
	if (m->term < r->term) {
		reply_append(r, m, false, 0, 0, 0);
		return;
	}
	heard_from_leader(r, m->from);

	uint64_t prev = m->prev_log_index;
	for (size_t k = 0; k < m->n_entries; k++) {
		const Skv__Entry *e = m->entries[k];
		uint64_t before = k ? m->entries[k - 1]->term : m->prev_log_term;
		if (e->index != prev + 1 + k || e->term > m->term ||
		    e->term < before || e->term == 0 ||
		    (e->type != SKV__ENTRY_TYPE__ENTRY_NORMAL &&
		     e->type != SKV__ENTRY_TYPE__ENTRY_NOOP)) {
			/* Malformed; refuse it like a mismatch. */
			reply_append(r, m, false, 0, 0, last_index(r) + 1);
			return;
		}
	}
	size_t skip = 0;
	if (prev < r->snapshot_index) {
		/* Everything up to our snapshot is committed, so it matches
		 * the leader's log: skip that part. */
		skip = (size_t)u64_min(r->snapshot_index - prev, m->n_entries);
		prev += skip;
		if (prev < r->snapshot_index) {
			reply_append(r, m, true, r->snapshot_index, 0, 0);
			return;
		}
	} else if (prev > last_index(r)) {
		reply_append(r, m, false, 0, 0, last_index(r) + 1);
		return;
	} else if (term_at(r, prev) != m->prev_log_term) {
		uint64_t t = term_at(r, prev);
		uint64_t i = prev;
		while (i > r->snapshot_index + 1 && term_at(r, i - 1) == t)
			i--;
		reply_append(r, m, false, 0, t, i);
		return;
	}

	for (size_t k = skip; k < m->n_entries; k++) {
		const Skv__Entry *e = m->entries[k];
		const struct raft_entry *have = entry_at(r, e->index);
		if (have && have->term == e->term)
			continue;
		if (have) {
			if (e->index <= r->commit) {
				/* Would rewrite committed history: only a
				 * broken peer asks that. */
				reply_append(r, m, false, 0, 0,
					     r->commit + 1);
				return;
			}
			log_truncate(r, e->index);
		}
		if (log_append(r, e->term, e->type, e->data.data, e->data.len)) {
			reply_append(r, m, false, 0, 0, last_index(r) + 1);
			return;
		}
	}
	uint64_t match = prev + (m->n_entries - skip);
	uint64_t c = u64_min(m->leader_commit, match);
	if (c > r->commit)
		r->commit = c;
	reply_append(r, m, true, match, 0, 0);
}

static void reply_snapshot(struct raft *r, uint32_t to, uint64_t index,
			   uint64_t offset, bool done)
{
	Skv__InstallSnapshotReply rep = SKV__INSTALL_SNAPSHOT_REPLY__INIT;
	rep.from = r->cfg.id;
	rep.to = to;
	rep.term = r->term;
	rep.last_index = index;
	rep.offset = offset;
	rep.done = done;
	msg_send(r, to, RAFT_MSG_SNAPSHOT_REPLY, &rep.base);
}

static void handle_snapshot_req(struct raft *r,
				const Skv__InstallSnapshotRequest *m)
{
	if (m->term < r->term) {
		reply_snapshot(r, m->from, m->last_index, 0, false);
		return;
	}
	heard_from_leader(r, m->from);
	if (m->last_index <= r->commit) {
		/* We already have all of it. */
		reply_snapshot(r, m->from, m->last_index, m->size_bytes, true);
		return;
	}
	bool same = r->recv_index == m->last_index &&
		    r->recv_term == m->last_term;
	if (m->offset == 0 && (!same || m->size_bytes != r->recv_size)) {
		r->recv_index = m->last_index;
		r->recv_term = m->last_term;
		r->recv_size = m->size_bytes;
		r->recv_offset = 0;
		same = true;
	}
	/* Refuse chunks out of order, past the announced size, or of a
	 * transfer whose size changed: the sender starts over. */
	if (!same || m->offset != r->recv_offset || r->has_chunk ||
	    m->last_term == 0 || m->size_bytes != r->recv_size ||
	    m->data.len > m->size_bytes - m->offset) {
		reply_snapshot(r, m->from, m->last_index,
			       same ? r->recv_offset : 0, false);
		return;
	}
	if (m->data.len > r->recv_chunk_cap) {
		uint8_t *n = mem_realloc(r->recv_chunk, m->data.len);
		if (!n) {
			reply_snapshot(r, m->from, m->last_index,
				       r->recv_offset, false);
			return;
		}
		r->recv_chunk = n;
		r->recv_chunk_cap = m->data.len;
	}
	if (m->data.len)
		memcpy(r->recv_chunk, m->data.data, m->data.len);
	bool done = m->done && m->offset + m->data.len >= m->size_bytes;
	r->has_chunk = true;
	r->chunk = (struct raft_snapshot_chunk){
		.last_index = m->last_index,
		.last_term = m->last_term,
		.offset = m->offset,
		.data = r->recv_chunk,
		.len = m->data.len,
		.size_bytes = m->size_bytes,
		.done = done,
	};
	r->recv_offset += m->data.len;
	if (done) {
		/* Keep the log after the snapshot if it agrees (7). */
		const struct raft_entry *e = entry_at(r, m->last_index);
		if (e && e->term == m->last_term) {
			log_drop_prefix(r, m->last_index, m->last_term);
		} else {
			log_clear(r, m->last_index, m->last_term);
			r->discard_all = true;
			r->unstable_from = m->last_index + 1;
			r->stable_index = m->last_index;
		}
		if (r->unstable_from <= m->last_index)
			r->unstable_from = m->last_index + 1;
		if (r->stable_index < m->last_index)
			r->stable_index = m->last_index;
		r->compact_index = m->last_index;
		r->compact_term = m->last_term;
		r->commit = u64_max(r->commit, m->last_index);
		r->applied = m->last_index;
		r->recv_index = r->recv_term = r->recv_offset = 0;
		r->recv_size = 0;
	}
	reply_snapshot(r, m->from, m->last_index, m->offset + m->data.len,
		       done);
}

static void handle_snapshot_reply(struct raft *r, struct progress *pr,
				  const Skv__InstallSnapshotReply *m)
{
	pr->recent_active = true;
	if (pr->state != PR_SNAPSHOT)
		return;
	if (m->done) {
		progress_ack(r, pr, u64_min(m->last_index, r->commit));
		pr->state = PR_PROBE;
		pr->probe_sent = false;
		pr->next = pr->match + 1;
		maybe_commit(r);
		maybe_send(r, pr);
		return;
	}
	/* A reply about the chunk still outstanding (a refusal of a
	 * duplicate, a duplicated reply): the heartbeat resends if it is
	 * lost. Answering it too would multiply copies once chunks take
	 * longer than a heartbeat. */
	if (m->last_index == pr->snap_index && m->offset == pr->snap_offset)
		return;
	/* The next chunk starts where the follower is; its index tells
	 * which snapshot it is receiving (the driver may have a newer one
	 * than the core asked for). One we can no longer describe (we
	 * compacted past it) starts over with our current snapshot. */
	pr->snap_index = m->last_index;
	pr->snap_offset = m->offset;
	if (term_at(r, pr->snap_index) == 0) {
		pr->snap_index = r->snapshot_index;
		pr->snap_offset = 0;
	}
	send_snapshot(r, pr);
}

int raft_step(struct raft *r, uint64_t now_ms, const ProtobufCMessage *pm)
{
	if (now_ms > r->now)
		r->now = now_ms;
	const ProtobufCMessageDescriptor *d = pm->descriptor;
	uint32_t from, to;
	uint64_t term;
	/* Every message type starts with from, to, term. Indexes, terms
	 * and offsets past RAFT_NUMBER_MAX come only from a broken peer;
	 * refusing them keeps every `+ 1` below from wrapping. */
	uint64_t big = 0;
	if (d == &skv__request_vote_request__descriptor) {
		const Skv__RequestVoteRequest *m = (const void *)pm;
		from = m->from, to = m->to, term = m->term;
		big = m->last_log_index | m->last_log_term;
	} else if (d == &skv__request_vote_reply__descriptor) {
		const Skv__RequestVoteReply *m = (const void *)pm;
		from = m->from, to = m->to, term = m->term;
	} else if (d == &skv__append_entries_request__descriptor) {
		const Skv__AppendEntriesRequest *m = (const void *)pm;
		from = m->from, to = m->to, term = m->term;
		big = m->prev_log_index | m->prev_log_term | m->leader_commit |
		      m->read_ctx;
		for (size_t k = 0; k < m->n_entries; k++)
			big |= m->entries[k]->index | m->entries[k]->term;
	} else if (d == &skv__append_entries_reply__descriptor) {
		const Skv__AppendEntriesReply *m = (const void *)pm;
		from = m->from, to = m->to, term = m->term;
		big = m->match_index | m->conflict_term | m->conflict_index |
		      m->read_ctx | m->reject_index;
	} else if (d == &skv__install_snapshot_request__descriptor) {
		const Skv__InstallSnapshotRequest *m = (const void *)pm;
		from = m->from, to = m->to, term = m->term;
		big = m->last_index | m->last_term | m->offset | m->size_bytes;
	} else if (d == &skv__install_snapshot_reply__descriptor) {
		const Skv__InstallSnapshotReply *m = (const void *)pm;
		from = m->from, to = m->to, term = m->term;
		big = m->last_index | m->offset;
	} else {
		return STATUS_INVALID_ARGUMENT;
	}
	if ((big | term) > RAFT_NUMBER_MAX)
		return STATUS_INVALID_ARGUMENT;
	int pos = node_pos(r, from);
	if (to != r->cfg.id || pos < 0 || from == r->cfg.id)
		return STATUS_INVALID_ARGUMENT;
	struct progress *pr = &r->pr[pos];

	if (d == &skv__request_vote_request__descriptor) {
		handle_vote_req(r, (const void *)pm);
		return STATUS_OK;
	}
	if (d == &skv__request_vote_reply__descriptor) {
		handle_vote_reply(r, (const void *)pm, pr);
		return STATUS_OK;
	}
	if (d == &skv__append_entries_request__descriptor) {
		if (term > r->term)
			become_follower(r, term, from);
		handle_append_req(r, (const void *)pm);
		return STATUS_OK;
	}
	if (d == &skv__install_snapshot_request__descriptor) {
		if (term > r->term)
			become_follower(r, term, from);
		handle_snapshot_req(r, (const void *)pm);
		return STATUS_OK;
	}
	/* replies to a leader */
	if (term > r->term) {
		become_follower(r, term, 0);
		return STATUS_OK;
	}
	if (term < r->term || r->role != RAFT_LEADER)
		return STATUS_OK;
	if (d == &skv__append_entries_reply__descriptor)
		handle_append_reply(r, pr, (const void *)pm);
	else
		handle_snapshot_reply(r, pr, (const void *)pm);
	return STATUS_OK;
}

/* ---- time ---- */

static void check_quorum(struct raft *r)
{
	size_t active = 0;
	for (size_t i = 0; i < r->cfg.n_nodes; i++) {
		struct progress *pr = &r->pr[i];
		if (pr->id == r->cfg.id || pr->recent_active)
			active++;
		pr->recent_active = false;
	}
	if (active < r->quorum)
		become_follower(r, r->term, 0);
}

void raft_tick(struct raft *r, uint64_t now_ms)
{
	if (now_ms > r->now)
		r->now = now_ms;
	if (r->role == RAFT_LEADER) {
		if (r->now >= r->quorum_deadline) {
			r->quorum_deadline = r->now +
					     r->cfg.election_timeout_ms_max;
			if (r->quorum > 1)
				check_quorum(r);
			if (r->role != RAFT_LEADER)
				return;
		}
		if (r->now >= r->heartbeat_deadline) {
			r->heartbeat_deadline = r->now + r->cfg.heartbeat_ms;
			heartbeat(r);
		}
		return;
	}
	if (r->now >= r->election_deadline)
		pre_campaign(r);
}

uint64_t raft_next_tick_ms(const struct raft *r)
{
	if (r->role == RAFT_LEADER)
		return u64_min(r->heartbeat_deadline, r->quorum_deadline);
	return r->election_deadline;
}

/* ---- proposals and compaction ---- */

int raft_propose(struct raft *r, const void *data, size_t len,
		 uint64_t *index, uint64_t *term)
{
	if (r->role != RAFT_LEADER)
		return STATUS_NOT_LEADER;
	int rc = log_append(r, r->term, SKV__ENTRY_TYPE__ENTRY_NORMAL, data,
			    len);
	if (rc)
		return rc;
	if (index)
		*index = last_index(r);
	if (term)
		*term = r->term;
	/* Sent at raft_ready: every proposal of a loop turn travels in one
	 * AppendEntries per follower. */
	r->append_pending = true;
	return STATUS_OK;
}

int raft_compact(struct raft *r, uint64_t index)
{
	if (index > r->applied || index > r->stable_index ||
	    index < r->snapshot_index)
		return STATUS_INVALID_ARGUMENT;
	if (index == r->snapshot_index)
		return STATUS_OK;
	uint64_t t = term_at(r, index);
	log_drop_prefix(r, index, t);
	if (index > r->compact_index) {
		r->compact_index = index;
		r->compact_term = t;
	}
	return STATUS_OK;
}

/* ---- ready / advance ---- */

static void committed_range(const struct raft *r, uint64_t *from, size_t *n)
{
	uint64_t hi = u64_min(r->commit, last_index(r));
	*from = r->applied + 1;
	*n = 0;
	size_t bytes = 0;
	for (uint64_t i = *from; i <= hi && *n < r->cfg.apply_entries_max;
	     i++) {
		const struct raft_entry *e = entry_at(r, i);
		if (!e)
			break;
		if (*n > 0 && bytes + e->len > r->cfg.apply_bytes_max)
			break;
		bytes += e->len;
		(*n)++;
	}
}

bool raft_ready(struct raft *r, struct raft_ready *rd)
{
	if (r->append_pending) {
		r->append_pending = false;
		if (r->role == RAFT_LEADER)
			broadcast_append(r);
	}
	if (r->read_broadcast && r->role == RAFT_LEADER) {
		r->read_broadcast = false;
		for (size_t i = 0; i < r->cfg.n_nodes; i++)
			if (r->pr[i].id != r->cfg.id)
				send_append(r, &r->pr[i], true);
	}
	if (r->role == RAFT_LEADER && r->quorum == 1) {
		/* Alone: our own durable log is the quorum. */
		check_reads(r);
	}
	memset(rd, 0, sizeof(*rd));
	if (r->term != r->saved_term || r->vote != r->saved_vote ||
	    r->commit != r->saved_commit) {
		rd->hard_state_changed = true;
		rd->term = r->term;
		rd->vote = r->vote;
		rd->commit = r->commit;
	}
	if (r->unstable_from <= last_index(r)) {
		rd->entries = entry_at(r, r->unstable_from);
		rd->n_entries = last_index(r) - r->unstable_from + 1;
	}
	if (r->has_chunk) {
		rd->has_snapshot_chunk = true;
		rd->snapshot_chunk = r->chunk;
	}
	rd->compact_index = r->compact_index;
	rd->compact_term = r->compact_term;
	rd->log_discard_all = r->discard_all;
	rd->msgs = r->msgs;
	rd->n_msgs = r->n_msgs;
	uint64_t from;
	size_t n = 0;
	/* A ready that installs a snapshot applies nothing after it: the
	 * state machine reloads from the installed state (fsm restore)
	 * before it applies the next entry, in the next ready. */
	if (!(r->has_chunk && r->chunk.done))
		committed_range(r, &from, &n);
	if (n > 0) {
		rd->committed = entry_at(r, from);
		rd->n_committed = n;
	}
	rd->reads = r->done_reads;
	rd->n_reads = r->n_done_reads;
	return rd->hard_state_changed || rd->n_entries || rd->has_snapshot_chunk ||
	       rd->compact_index || rd->log_discard_all || rd->n_msgs ||
	       rd->n_committed || rd->n_reads;
}

void raft_advance(struct raft *r, struct raft_ready *rd)
{
	if (rd->hard_state_changed) {
		r->saved_term = rd->term;
		r->saved_vote = rd->vote;
		r->saved_commit = rd->commit;
	}
	if (rd->n_entries > 0) {
		uint64_t last = rd->entries[rd->n_entries - 1].index;
		r->stable_index = u64_max(r->stable_index, last);
		r->unstable_from = last + 1;
	}
	r->has_chunk = false;
	r->compact_index = r->compact_term = 0;
	r->discard_all = false;
	r->n_msgs = 0;
	r->n_done_reads = 0;
	if (rd->n_committed > 0)
		r->applied = rd->committed[rd->n_committed - 1].index;
	memset(rd, 0, sizeof(*rd));
	/* Our own entries are durable now: alone, or with enough followers
	 * already acknowledging, they may commit. */
	if (r->role == RAFT_LEADER)
		maybe_commit(r);
}

/* ---- construction ---- */

int raft_new(const struct raft_config *cfg, const struct raft_boot *boot,
	     uint64_t now_ms, struct raft **out, char *errmsg, size_t cap)
{
	*out = NULL;
#define BAD(...)                                                       \
	do {                                                           \
		snprintf(errmsg, cap, __VA_ARGS__);                    \
		goto err_after_alloc;                                  \
	} while (0)
	struct raft *r = mem_calloc(1, sizeof(*r));
	if (!r)
		return STATUS_NO_MEMORY;
	r->cfg = *cfg;
	struct raft_config *c = &r->cfg;
	if (c->election_timeout_ms_min == 0)
		c->election_timeout_ms_min = 300;
	if (c->election_timeout_ms_max == 0)
		c->election_timeout_ms_max = 2 * c->election_timeout_ms_min;
	if (c->heartbeat_ms == 0)
		c->heartbeat_ms = 100;
	if (c->inflight_max == 0)
		c->inflight_max = 16;
	if (c->inflight_max > INFLIGHT_CAP)
		c->inflight_max = INFLIGHT_CAP;
	if (c->append_entries_max == 0)
		c->append_entries_max = 1024;
	if (c->append_bytes_max == 0)
		c->append_bytes_max = 1 << 20;
	if (c->snapshot_chunk_bytes_max == 0)
		c->snapshot_chunk_bytes_max = 1 << 20;
	if (c->apply_entries_max == 0)
		c->apply_entries_max = 4096;
	if (c->apply_bytes_max == 0)
		c->apply_bytes_max = 16 << 20;
	if (c->id == 0)
		BAD("raft: node id 0 is reserved");
	if (c->n_nodes == 0 || c->n_nodes > RAFT_MAX_NODES)
		BAD("raft: %zu nodes (1..%d allowed)", c->n_nodes,
		    RAFT_MAX_NODES);
	if (c->election_timeout_ms_max <= c->election_timeout_ms_min ||
	    c->heartbeat_ms >= c->election_timeout_ms_min)
		BAD("raft: need heartbeat < election timeout min < max");
	for (size_t i = 0; i < c->n_nodes; i++) {
		if (c->nodes[i] == 0)
			BAD("raft: node id 0 is reserved");
		for (size_t j = 0; j < i; j++)
			if (c->nodes[j] == c->nodes[i])
				BAD("raft: node %u listed twice", c->nodes[i]);
		r->pr[i].id = c->nodes[i];
	}
	if (node_pos(r, c->id) < 0)
		BAD("raft: node %u is not in its own group", c->id);
	r->quorum = c->n_nodes / 2 + 1;
	r->rng = c->seed ^ ((uint64_t)c->id << 32);
	r->now = now_ms;

	if (boot) {
		r->term = r->saved_term = boot->term;
		r->vote = r->saved_vote = boot->vote;
		r->snapshot_index = boot->snapshot_index;
		r->snapshot_term = boot->snapshot_term;
		if (boot->snapshot_index > 0 && boot->snapshot_term == 0)
			BAD("raft: snapshot at %llu has term 0",
			    (unsigned long long)boot->snapshot_index);
		if (boot->vote != 0 && node_pos(r, boot->vote) < 0)
			BAD("raft: stored vote for unknown node %u", boot->vote);
		uint64_t prev_term = boot->snapshot_term;
		for (size_t i = 0; i < boot->n_entries; i++) {
			const Skv__Entry *e = boot->entries[i];
			if (e->index != boot->snapshot_index + 1 + i)
				BAD("raft: stored log has a gap at %llu",
				    (unsigned long long)(boot->snapshot_index +
							 1 + i));
			if (e->term < prev_term || e->term > boot->term)
				BAD("raft: stored entry %llu has term %llu",
				    (unsigned long long)e->index,
				    (unsigned long long)e->term);
			prev_term = e->term;
			if (log_append(r, e->term, e->type, e->data.data,
				       e->data.len)) {
				snprintf(errmsg, cap, "raft: out of memory");
				raft_free(r);
				return STATUS_NO_MEMORY;
			}
		}
		uint64_t last = last_index(r);
		if (boot->applied < boot->snapshot_index || boot->applied > last)
			BAD("raft: applied index %llu outside [%llu, %llu]",
			    (unsigned long long)boot->applied,
			    (unsigned long long)boot->snapshot_index,
			    (unsigned long long)last);
		r->applied = boot->applied;
		r->commit = u64_max(u64_min(boot->commit, last), r->applied);
		r->saved_commit = boot->commit;
	}
	r->stable_index = last_index(r);
	r->unstable_from = last_index(r) + 1;
	r->role = RAFT_FOLLOWER;
	reset_election_timer(r);
	*out = r;
	return STATUS_OK;
err_after_alloc:
	raft_free(r);
	return STATUS_INVALID_ARGUMENT;
#undef BAD
}

void raft_free(struct raft *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->log_n; i++)
		mem_free(r->log[r->log_head + i].data);
	mem_free(r->log);
	for (size_t i = 0; i < r->cap_msgs; i++)
		buf_free(&r->msgs[i].bytes);
	mem_free(r->msgs);
	mem_free(r->reads);
	mem_free(r->done_reads);
	mem_free(r->recv_chunk);
	mem_free(r->scratch);
	mem_free(r->scratch_ptrs);
	mem_free(r);
}

/* ---- observers ---- */

uint32_t raft_id(const struct raft *r) { return r->cfg.id; }
enum raft_role raft_role(const struct raft *r) { return r->role; }
uint64_t raft_term(const struct raft *r) { return r->term; }
uint32_t raft_leader(const struct raft *r) { return r->leader; }
uint64_t raft_commit_index(const struct raft *r) { return r->commit; }
uint64_t raft_applied_index(const struct raft *r) { return r->applied; }
uint64_t raft_last_index(const struct raft *r) { return last_index(r); }
uint64_t raft_first_index(const struct raft *r)
{
	return r->snapshot_index + 1;
}
uint64_t raft_snapshot_index(const struct raft *r)
{
	return r->snapshot_index;
}
size_t raft_log_bytes(const struct raft *r) { return r->log_bytes; }
uint64_t raft_term_at(const struct raft *r, uint64_t index)
{
	return term_at(r, index);
}
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
	return entry_at(r, index);
}
