#include "common/raft/replica.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"

#define MOD "replica"
#define CHUNK_BYTES_DEFAULT ((size_t)1 << 20)
/* A snapshot transfer nobody asked a chunk of for this long is dropped. */
#define SNAPSHOT_IDLE_MS 30000

struct waiting_read {
	uint64_t id;
	uint64_t index;
};

struct raft_replica {
	struct raft *raft;
	struct raft_storage *st;
	struct store *store; /* borrowed */
	struct raft_fsm_ops ops;
	void *ctx; /* borrowed */

	struct store_batch *batch; /* reused by every process */
	size_t log_bytes_max;
	uint64_t synced_term;	/* term and vote known durable */
	uint32_t synced_vote;

	uint8_t *chunk; /* outgoing snapshot chunk */
	size_t chunk_cap;
	struct {
		bool used;
		uint32_t peer;
		uint64_t sent_ms; /* last chunk asked for */
	} xfers[RAFT_MAX_NODES]; /* the storage's outgoing transfers */

	struct waiting_read *reads; /* decided OK, index > applied */
	size_t n_reads, cap_reads;

	struct raft_replica_stats stats;
	char errmsg[256];
};

static int fail(struct raft_replica *rep, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct raft_replica *rep, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rep->errmsg, sizeof(rep->errmsg), fmt, ap);
	va_end(ap);
	return status;
}

int raft_replica_open(const struct raft_config *cfg, struct store *store,
		      const struct raft_fsm_ops *ops, void *fsm_ctx,
		      uint64_t now_ms, struct raft_replica **out, char *errmsg,
		      size_t cap)
{
	struct raft_boot boot;
	int rc;

	*out = NULL;
	if (!ops || !ops->apply) {
		snprintf(errmsg, cap, "replica: no state machine apply");
		return STATUS_INVALID_ARGUMENT;
	}
	struct raft_replica *rep = mem_calloc(1, sizeof(*rep));
	if (!rep) {
		snprintf(errmsg, cap, "replica: out of memory");
		return STATUS_NO_MEMORY;
	}
	rep->store = store;
	rep->ops = *ops;
	rep->ctx = fsm_ctx;

	rc = raft_storage_open(store, &rep->st, &boot, errmsg, cap);
	if (rc)
		goto err_after_alloc;
	bool fresh = boot.term == 0 && boot.vote == 0 &&
		     boot.n_entries == 0 && boot.snapshot_index == 0 &&
		     boot.applied == 0;
	rc = raft_new(cfg, fresh ? NULL : &boot, now_ms, &rep->raft, errmsg,
		      cap);
	rep->synced_term = boot.term;
	rep->synced_vote = boot.vote;
	raft_storage_boot_release(rep->st);
	if (rc)
		goto err_after_storage;
	rep->batch = store_batch_new(store);
	if (!rep->batch) {
		snprintf(errmsg, cap, "replica: %s", store_errmsg(store));
		rc = STATUS_NO_MEMORY;
		goto err_after_raft;
	}
	*out = rep;
	return STATUS_OK;

err_after_raft:
	raft_free(rep->raft);
err_after_storage:
	raft_storage_free(rep->st);
err_after_alloc:
	mem_free(rep);
	return rc;
}

void raft_replica_free(struct raft_replica *rep)
{
	if (!rep)
		return;
	store_batch_free(rep->batch);
	raft_free(rep->raft);
	raft_storage_free(rep->st);
	mem_free(rep->chunk);
	mem_free(rep->reads);
	mem_free(rep);
}

struct raft *raft_replica_raft(struct raft_replica *rep)
{
	return rep->raft;
}

struct raft_storage *raft_replica_storage(struct raft_replica *rep)
{
	return rep->st;
}

uint64_t raft_replica_applied_index(const struct raft_replica *rep)
{
	return raft_storage_applied_index(rep->st);
}

void raft_replica_set_compaction(struct raft_replica *rep,
				 size_t log_bytes_max)
{
	rep->log_bytes_max = log_bytes_max;
}

const char *raft_replica_errmsg(const struct raft_replica *rep)
{
	return rep->errmsg;
}

size_t raft_replica_reads_waiting(const struct raft_replica *rep)
{
	return rep->n_reads;
}

void raft_replica_stats(const struct raft_replica *rep,
			struct raft_replica_stats *out)
{
	*out = rep->stats;
}

/*
 * Fills an InstallSnapshot request with the chunk the core asks for, from
 * the storage's transfer to m->to (a snapshot of the store, durable:
 * messages go out after the write).
 * If that snapshot is not the one the core expects, or has no byte at the
 * offset asked for, the chunk carries our own index and term from offset
 * 0, so the follower starts over on it. A term of 0 means the core has
 * compacted its log past the snapshot being sent, which is then of no use
 * to the follower: a newer one is needed. False when the message cannot
 * be filled (it is then not sent; the core asks again).
 */
static bool fill_snapshot_chunk(struct raft_replica *rep, struct raft_msg *m)
{
	size_t cap = m->snap.chunk_bytes_max ? m->snap.chunk_bytes_max
					     : CHUNK_BYTES_DEFAULT;
	uint64_t min_index = m->snap.last_index + (m->snap.last_term == 0);
	uint64_t index, term, total;
	size_t len;
	int rc;

	if (cap > rep->chunk_cap) {
		uint8_t *p = mem_realloc(rep->chunk, cap);
		if (!p) {
			log_warn(MOD, "snapshot chunk: out of memory");
			return false;
		}
		rep->chunk = p;
		rep->chunk_cap = cap;
	}
	/* Compacted past: the chunk will be offset 0 of a newer snapshot;
	 * do not have the storage re-encode up to the old offset first. */
	if (m->snap.last_term == 0)
		m->snap.offset = 0;
	rc = raft_storage_snapshot_read(rep->st, m->to, min_index,
					m->snap.offset, rep->chunk, cap, &len,
					&index, &term, &total);
	if (m->snap.offset != 0 &&
	    (rc == STATUS_INVALID_ARGUMENT ||
	     (rc == STATUS_OK && (index != m->snap.last_index ||
				  term != m->snap.last_term)))) {
		/* The stream of this peer's transfer, from its start. */
		m->snap.offset = 0;
		rc = raft_storage_snapshot_read(rep->st, m->to, 0, 0,
						rep->chunk, cap, &len, &index,
						&term, &total);
	}
	if (rc) {
		log_warn(MOD, "snapshot chunk for %u: %s", m->to,
			 raft_storage_errmsg(rep->st));
		return false;
	}
	if (raft_snapshot_chunk_pack(m, index, term, rep->chunk, len, total)) {
		log_warn(MOD, "snapshot chunk for %u: out of memory", m->to);
		return false;
	}
	rep->stats.snapshot_bytes_sent += len;
	return true;
}

/* Notes that a chunk for `peer` was asked for at `now_ms`. */
static void xfer_touch(struct raft_replica *rep, uint32_t peer,
		       uint64_t now_ms)
{
	size_t slot = RAFT_MAX_NODES;
	for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
		if (rep->xfers[i].used && rep->xfers[i].peer == peer) {
			slot = i;
			break;
		}
		if (slot == RAFT_MAX_NODES && !rep->xfers[i].used)
			slot = i;
	}
	if (slot == RAFT_MAX_NODES) {
		/* More peers than a group has: forget the stalest. */
		slot = 0;
		for (size_t i = 1; i < RAFT_MAX_NODES; i++)
			if (rep->xfers[i].sent_ms < rep->xfers[slot].sent_ms)
				slot = i;
		raft_storage_snapshot_drop(rep->st, rep->xfers[slot].peer);
	}
	rep->xfers[slot].used = true;
	rep->xfers[slot].peer = peer;
	rep->xfers[slot].sent_ms = now_ms;
}

/* Drops the transfers no chunk was asked for in SNAPSHOT_IDLE_MS. */
static void xfers_expire(struct raft_replica *rep, uint64_t now_ms)
{
	for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
		if (!rep->xfers[i].used ||
		    now_ms <= rep->xfers[i].sent_ms + SNAPSHOT_IDLE_MS)
			continue;
		raft_storage_snapshot_drop(rep->st, rep->xfers[i].peer);
		rep->xfers[i].used = false;
	}
}

static void read_finish(struct raft_replica *rep, uint64_t id, int status)
{
	if (rep->ops.read_done)
		rep->ops.read_done(rep->ctx, id, status);
}

static void read_wait(struct raft_replica *rep, uint64_t id, uint64_t index)
{
	if (rep->n_reads == rep->cap_reads) {
		size_t cap = rep->cap_reads ? 2 * rep->cap_reads : 16;
		struct waiting_read *p = mem_realloc(rep->reads,
						     cap * sizeof(*p));
		if (!p) {
			/* The client retries, as after a lost leadership. */
			read_finish(rep, id, STATUS_NOT_LEADER);
			return;
		}
		rep->reads = p;
		rep->cap_reads = cap;
	}
	rep->reads[rep->n_reads++] = (struct waiting_read){id, index};
}

/* Answers the waiting reads the applied index has reached, in order. */
static void reads_release(struct raft_replica *rep, uint64_t applied)
{
	size_t keep = 0;
	for (size_t i = 0; i < rep->n_reads; i++) {
		if (rep->reads[i].index <= applied)
			read_finish(rep, rep->reads[i].id, STATUS_OK);
		else
			rep->reads[keep++] = rep->reads[i];
	}
	rep->n_reads = keep;
}

/* Fills the batch with everything `rd` asks to persist and apply. */
static int fill_batch(struct raft_replica *rep, const struct raft_ready *rd,
		      bool *installed, uint64_t *installed_index)
{
	struct store_batch *b = rep->batch;
	int rc;

	rc = raft_storage_save(rep->st, b, rd);
	if (rc)
		return fail(rep, rc, "replica: %s",
			    raft_storage_errmsg(rep->st));

	if (rd->has_snapshot_chunk) {
		rc = raft_storage_snapshot_stage(rep->st, b,
						 &rd->snapshot_chunk);
		if (rc)
			return fail(rep, rc, "replica: %s",
				    raft_storage_errmsg(rep->st));
		if (rd->snapshot_chunk.done) {
			/* A large snapshot writes its first phases here,
			 * before the ready's batch (storage.h, Installing);
			 * nothing is sent before that batch is durable. */
			rc = raft_storage_snapshot_install(rep->st, b,
							   installed_index,
							   NULL);
			if (rc)
				return fail(rep, rc, "replica: %s",
					    raft_storage_errmsg(rep->st));
			*installed = true;
		}
	}

	uint64_t applied = raft_storage_applied_index(rep->st);
	uint64_t applied_term = raft_storage_applied_term(rep->st);
	for (size_t i = 0; i < rd->n_committed; i++) {
		const struct raft_entry *e = &rd->committed[i];
		if (e->index <= applied)
			continue; /* in the snapshot just installed */
		assert(e->index == applied + 1);
		if (e->type == SKV__ENTRY_TYPE__ENTRY_NORMAL)
			rep->ops.apply(rep->ctx, e->index, e->data, e->len, b);
		applied = e->index;
		applied_term = e->term;
		rep->stats.entries_applied++;
	}
	if (applied != raft_storage_applied_index(rep->st))
		raft_storage_set_applied(rep->st, b, applied, applied_term);
	return STATUS_OK;
}

int raft_replica_process(struct raft_replica *rep, uint64_t now_ms,
			 raft_send_fn send, void *arg)
{
	struct raft_ready rd;
	bool installed = false;
	uint64_t installed_index = 0;
	int rc;

	xfers_expire(rep, now_ms);
	if (!raft_ready(rep->raft, &rd))
		return STATUS_OK;
	rep->stats.readies++;
	uint64_t applied_before = raft_storage_applied_index(rep->st);

	store_batch_clear(rep->batch);
	rc = fill_batch(rep, &rd, &installed, &installed_index);
	if (rc)
		return rc;
	/*
	 * Sync what Raft's safety rests on: term, vote, log entries, an
	 * installed snapshot and compaction. Applied state and the commit
	 * hint alone need no fsync: the log still holds those entries, and
	 * the WAL is ordered, so the next synced write makes them durable
	 * too (before any compaction can drop their entries).
	 */
	bool sync = rd.n_entries > 0 || rd.has_snapshot_chunk ||
		    rd.compact_index > 0 || rd.log_discard_all ||
		    (rd.hard_state_changed && (rd.term != rep->synced_term ||
					       rd.vote != rep->synced_vote));
	/*
	 * A leader's AppendEntries leave before its own write (Raft thesis
	 * 10.2.1): the leader's fsync then overlaps the followers' instead
	 * of preceding it. The core counts the leader in a commit quorum
	 * only up to what is durable here (raft_advance), so nothing commits
	 * on the strength of an unsynced leader log. Only when the term and
	 * vote they carry are already durable; every other message waits.
	 */
	bool early = !installed && !rd.has_snapshot_chunk &&
		     (!rd.hard_state_changed || (rd.term == rep->synced_term &&
						 rd.vote == rep->synced_vote));
	if (early)
		for (size_t i = 0; i < rd.n_msgs; i++) {
			if (rd.msgs[i].type != RAFT_MSG_APPEND_REQ)
				continue;
			send(arg, &rd.msgs[i]);
			rep->stats.msgs_sent++;
		}
	if (store_batch_count(rep->batch) > 0) {
		rc = store_write(rep->store, rep->batch, sync);
		if (rc)
			return fail(rep, rc, "replica: write: %s",
				    store_errmsg(rep->store));
		rep->stats.writes++;
		if (sync && rd.hard_state_changed) {
			rep->synced_term = rd.term;
			rep->synced_vote = rd.vote;
		}
	}
	rep->stats.entries_persisted += rd.n_entries;

	for (size_t i = 0; i < rd.n_msgs; i++) {
		struct raft_msg *m = &rd.msgs[i];
		if (early && m->type == RAFT_MSG_APPEND_REQ)
			continue; /* sent above */
		if (m->type == RAFT_MSG_SNAPSHOT_REQ) {
			xfer_touch(rep, m->to, now_ms);
			if (!fill_snapshot_chunk(rep, m))
				continue;
		}
		send(arg, m);
		rep->stats.msgs_sent++;
	}

	uint64_t applied = raft_storage_applied_index(rep->st);
	if (installed) {
		rep->stats.snapshots_installed++;
		if (rep->ops.restore)
			rep->ops.restore(rep->ctx, installed_index);
	}
	if (applied != applied_before && rep->ops.durable)
		rep->ops.durable(rep->ctx, applied);

	if (applied != applied_before)
		reads_release(rep, applied);
	for (size_t i = 0; i < rd.n_reads; i++) {
		const struct raft_read *rr = &rd.reads[i];
		if (rr->status != STATUS_OK)
			read_finish(rep, rr->id, rr->status);
		else if (rr->index <= applied)
			read_finish(rep, rr->id, STATUS_OK);
		else
			read_wait(rep, rr->id, rr->index);
	}

	raft_advance(rep->raft, &rd);

	if (rep->log_bytes_max &&
	    raft_log_bytes(rep->raft) > rep->log_bytes_max &&
	    applied > raft_snapshot_index(rep->raft) &&
	    raft_compact(rep->raft, applied) == STATUS_OK)
		rep->stats.compactions++;
	return STATUS_OK;
}
