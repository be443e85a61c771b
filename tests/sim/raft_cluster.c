/*
 * raft_cluster: see raft_cluster.h. Sections: disk model, state machine,
 * invariants, driving a node, endpoint callbacks, scenario helpers.
 */
#include "tests/sim/raft_cluster.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/raft/replica.h"
#include "common/status.h"
#include "common/store/store.h"
#include "tests/sim/replica_host.h"

struct disk_entry {
	uint64_t term;
	uint64_t index;
	Skv__EntryType type;
	uint8_t *data;
	size_t len;
};

/* One command in the state machine, with the index it was applied at. */
struct fsm_cmd {
	uint64_t index;
	uint8_t *data;
	size_t len;
};

/* What survives a crash. */
struct disk {
	uint64_t term;
	uint32_t vote;
	uint64_t commit;
	uint64_t snap_index, snap_term;
	struct buf snap_blob;
	struct disk_entry *log; /* snap_index+1 .. */
	size_t n_log, cap_log;
	uint64_t applied;
	struct fsm_cmd *fsm;
	size_t n_fsm, cap_fsm;
};

struct node {
	struct raft_cluster *c;
	uint32_t id;
	struct raft *r; /* NULL while crashed */
	struct disk disk;
	struct buf staging;	 /* snapshot being received */
	bool pending_snap;	 /* taken, persisted with the compaction */
	uint64_t pending_index;
	struct buf pending_blob;
	enum raft_role last_role;
	uint64_t max_snapshot_index;
	bool connected;
	struct replica_host host; /* store backend */
};

/* What was applied at an index, by anyone: never changes once set. */
struct gl_entry {
	bool set;
	uint64_t term;
	Skv__EntryType type;
	uint8_t *data;
	size_t len;
};

/* (index, term) -> what the entry holds, for log matching. */
struct seen {
	uint64_t index, term, prev_term, hash;
	bool used;
};

struct read {
	uint64_t id;
	uint32_t node;
	int status;
	uint64_t index;
	uint64_t min_commit; /* highest commit anywhere when asked */
	uint64_t served_at;
	bool waiting;	/* not decided, or decided but not yet applied */
	bool confirmed; /* the core gave its read index */
};

struct raft_cluster {
	struct sim *sim;
	struct raft_cluster_opts o;
	struct node *nodes; /* [0] = id 1 */
	char failure[512];
	bool failed;

	struct gl_entry *gl;
	size_t cap_gl;
	uint64_t max_applied;
	uint32_t *leader_of_term;
	size_t cap_terms;
	struct seen *seen;
	size_t cap_seen, n_seen;
	struct read *reads;
	size_t n_reads, cap_reads;
	uint32_t one_start;
	struct buf scratch; /* n_applied's answer in store mode */
};

static void fail(struct raft_cluster *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct raft_cluster *c, const char *fmt, ...)
{
	if (c->failed)
		return;
	c->failed = true;
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(c->failure, sizeof(c->failure), "[%" PRIu64 " ms] ",
			 sim_now_ms(c->sim));
	vsnprintf(c->failure + n, sizeof(c->failure) - (size_t)n, fmt, ap);
	va_end(ap);
	sim_trace(c->sim, "INVARIANT: %s", c->failure);
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	uint8_t *q = mem_realloc(p, n * size);
	if (!q)
		abort(); /* a test harness out of memory: nothing to save */
	memset(q + *cap * size, 0, (n - *cap) * size);
	*cap = n;
	return q;
}

static uint8_t *dup_bytes(const void *p, size_t n)
{
	if (n == 0)
		return NULL;
	uint8_t *q = mem_alloc(n);
	if (!q)
		abort();
	memcpy(q, p, n);
	return q;
}

static uint64_t fnv64(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static bool same_bytes(const void *a, size_t al, const void *b, size_t bl)
{
	return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* ---- disk model ---- */

static void disk_truncate(struct disk *d, uint64_t from)
{
	while (d->n_log > 0 && d->log[d->n_log - 1].index >= from)
		mem_free(d->log[--d->n_log].data);
}

static void disk_drop_prefix(struct disk *d, uint64_t upto)
{
	size_t k = 0;
	while (k < d->n_log && d->log[k].index <= upto)
		mem_free(d->log[k++].data);
	if (k > 0)
		memmove(d->log, d->log + k, (d->n_log - k) * sizeof(*d->log));
	d->n_log -= k;
}

static void fsm_clear(struct disk *d)
{
	for (size_t i = 0; i < d->n_fsm; i++)
		mem_free(d->fsm[i].data);
	d->n_fsm = 0;
}

static void disk_free(struct disk *d)
{
	disk_truncate(d, 0);
	mem_free(d->log);
	fsm_clear(d);
	mem_free(d->fsm);
	buf_free(&d->snap_blob);
}

/* Snapshot blob: u64 index, u64 term, u64 count, then per command u64
 * index, u32 len, bytes; last a u64 FNV-1a of everything before. */
static void fsm_serialize(const struct disk *d, uint64_t index, uint64_t term,
			  struct buf *out)
{
	buf_reset(out);
	buf_append_u64be(out, index);
	buf_append_u64be(out, term);
	buf_append_u64be(out, d->n_fsm);
	for (size_t i = 0; i < d->n_fsm; i++) {
		buf_append_u64be(out, d->fsm[i].index);
		buf_append_u32be(out, (uint32_t)d->fsm[i].len);
		buf_append(out, d->fsm[i].data, d->fsm[i].len);
	}
	buf_append_u64be(out, fnv64(out->data, out->len));
}

static bool fsm_deserialize(struct disk *d, const uint8_t *p, size_t n,
			    uint64_t *index, uint64_t *term)
{
	if (n < 32 || get_u64be(p + n - 8) != fnv64(p, n - 8))
		return false;
	size_t end = n - 8, off = 24;
	uint64_t count = get_u64be(p + 16);
	*index = get_u64be(p);
	*term = get_u64be(p + 8);
	fsm_clear(d);
	for (uint64_t i = 0; i < count; i++) {
		if (off + 12 > end)
			return false;
		uint64_t idx = get_u64be(p + off);
		uint32_t len = get_u32be(p + off + 8);
		off += 12;
		if (off + len > end)
			return false;
		d->fsm = grow(d->fsm, &d->cap_fsm, d->n_fsm + 1, sizeof(*d->fsm));
		d->fsm[d->n_fsm++] = (struct fsm_cmd){
			.index = idx, .data = dup_bytes(p + off, len), .len = len
		};
		off += len;
	}
	return off == end;
}

static const struct fsm_cmd *fsm_find(const struct disk *d, uint64_t index)
{
	size_t lo = 0, hi = d->n_fsm;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (d->fsm[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < d->n_fsm && d->fsm[lo].index == index ? &d->fsm[lo]
							  : NULL;
}

/* ---- invariants ---- */

static struct gl_entry *gl_at(struct raft_cluster *c, uint64_t index)
{
	c->gl = grow(c->gl, &c->cap_gl, index + 1, sizeof(*c->gl));
	return &c->gl[index];
}

/* Entries with equal index and term are equal and have equal
 * predecessors' terms: by induction, logs match up to them. */
static void check_log_matching(struct raft_cluster *c, uint32_t id,
			       const struct disk_entry *e, uint64_t prev_term)
{
	if (c->n_seen * 2 >= c->cap_seen) {
		size_t cap = c->cap_seen ? c->cap_seen * 2 : 1024;
		struct seen *n = mem_calloc(cap, sizeof(*n));
		if (!n)
			abort();
		for (size_t i = 0; i < c->cap_seen; i++) {
			if (!c->seen[i].used)
				continue;
			size_t h = (size_t)((c->seen[i].index * 31 +
					     c->seen[i].term) % cap);
			while (n[h].used)
				h = (h + 1) % cap;
			n[h] = c->seen[i];
		}
		mem_free(c->seen);
		c->seen = n;
		c->cap_seen = cap;
	}
	uint64_t hash = fnv64(e->data, e->len) ^ (uint64_t)e->type;
	size_t h = (size_t)((e->index * 31 + e->term) % c->cap_seen);
	while (c->seen[h].used) {
		struct seen *s = &c->seen[h];
		if (s->index == e->index && s->term == e->term) {
			if (s->hash != hash || s->prev_term != prev_term)
				fail(c,
				     "log matching: node %u stores a different "
				     "entry %" PRIu64 " of term %" PRIu64,
				     id, e->index, e->term);
			return;
		}
		h = (h + 1) % c->cap_seen;
	}
	c->seen[h] = (struct seen){ .index = e->index, .term = e->term,
				    .prev_term = prev_term, .hash = hash,
				    .used = true };
	c->n_seen++;
}

/* Every node applies the same command at an index. */
static void check_same_command(struct raft_cluster *c, struct node *nd,
			       const struct raft_entry *e)
{
	struct gl_entry *g = gl_at(c, e->index);
	if (!g->set) {
		*g = (struct gl_entry){ .set = true, .term = e->term,
					.type = e->type,
					.data = dup_bytes(e->data, e->len),
					.len = e->len };
	} else if (g->term != e->term || g->type != e->type ||
		   !same_bytes(g->data, g->len, e->data, e->len)) {
		fail(c,
		     "node %u applies at %" PRIu64 " a command of term %" PRIu64
		     ", others applied one of term %" PRIu64,
		     nd->id, e->index, e->term, g->term);
	}
	if (e->index > c->max_applied)
		c->max_applied = e->index;
}

static void check_applied(struct raft_cluster *c, struct node *nd,
			  const struct raft_entry *e)
{
	if (e->index != nd->disk.applied + 1)
		fail(c, "node %u applies %" PRIu64 " after %" PRIu64, nd->id,
		     e->index, nd->disk.applied);
	check_same_command(c, nd, e);
}

/* An installed snapshot must hold exactly the commands applied elsewhere
 * up to its index. */
static void check_snapshot_state(struct raft_cluster *c, struct node *nd,
				 uint64_t index)
{
	size_t k = 0;
	for (uint64_t i = 1; i <= index && !c->failed; i++) {
		if (i >= c->cap_gl || !c->gl[i].set) {
			fail(c, "node %u installs a snapshot at %" PRIu64
				" but %" PRIu64 " was never applied anywhere",
			     nd->id, index, i);
			return;
		}
		const struct gl_entry *g = &c->gl[i];
		if (g->type != SKV__ENTRY_TYPE__ENTRY_NORMAL)
			continue;
		if (k >= nd->disk.n_fsm || nd->disk.fsm[k].index != i ||
		    !same_bytes(nd->disk.fsm[k].data, nd->disk.fsm[k].len,
				g->data, g->len))
			fail(c, "node %u snapshot at %" PRIu64
				" differs from the applied command %" PRIu64,
			     nd->id, index, i);
		k++;
	}
	if (!c->failed && k != nd->disk.n_fsm)
		fail(c, "node %u snapshot has extra commands", nd->id);
}

static uint64_t max_commit(const struct raft_cluster *c)
{
	uint64_t m = c->max_applied;
	for (size_t i = 0; i < c->o.n_nodes; i++)
		if (c->nodes[i].r && raft_commit_index(c->nodes[i].r) > m)
			m = raft_commit_index(c->nodes[i].r);
	return m;
}

static void after_step(void *arg)
{
	struct raft_cluster *c = arg;
	for (size_t i = 0; i < c->o.n_nodes && !c->failed; i++) {
		struct node *nd = &c->nodes[i];
		if (!nd->r) {
			nd->last_role = RAFT_FOLLOWER;
			continue;
		}
		enum raft_role role = raft_role(nd->r);
		if (role == RAFT_LEADER) {
			uint64_t t = raft_term(nd->r);
			c->leader_of_term = grow(c->leader_of_term,
						 &c->cap_terms, t + 1,
						 sizeof(uint32_t));
			if (c->leader_of_term[t] == 0)
				c->leader_of_term[t] = nd->id;
			else if (c->leader_of_term[t] != nd->id)
				fail(c, "two leaders in term %" PRIu64
					": %u and %u",
				     t, c->leader_of_term[t], nd->id);
			if (nd->last_role != RAFT_LEADER) {
				/* Leader completeness. */
				uint64_t first = raft_first_index(nd->r);
				for (uint64_t k = first; k <= c->max_applied;
				     k++) {
					const struct raft_entry *e =
						raft_entry_at(nd->r, k);
					const struct gl_entry *g = &c->gl[k];
					if (!g->set)
						continue;
					if (!e || e->term != g->term ||
					    !same_bytes(e->data, e->len,
							g->data, g->len)) {
						fail(c,
						     "new leader %u (term "
						     "%" PRIu64 ") lacks "
						     "committed entry %" PRIu64,
						     nd->id, t, k);
						break;
					}
				}
			}
		}
		nd->last_role = role;
	}
}

/* ---- driving a node ---- */

static void persist(struct node *nd, const struct raft_ready *rd)
{
	struct raft_cluster *c = nd->c;
	struct disk *d = &nd->disk;
	if (rd->hard_state_changed) {
		d->term = rd->term;
		d->vote = rd->vote;
		d->commit = rd->commit;
	}
	if (rd->n_entries > 0) {
		disk_truncate(d, rd->entries[0].index);
		for (size_t i = 0; i < rd->n_entries; i++) {
			const struct raft_entry *e = &rd->entries[i];
			uint64_t prev_term =
				d->n_log ? d->log[d->n_log - 1].term
					 : d->snap_term;
			uint64_t want = d->n_log ? d->log[d->n_log - 1].index + 1
						 : d->snap_index + 1;
			if (e->index != want)
				fail(c, "node %u persists entry %" PRIu64
					" after %" PRIu64,
				     nd->id, e->index, want - 1);
			d->log = grow(d->log, &d->cap_log, d->n_log + 1,
				      sizeof(*d->log));
			struct disk_entry *de = &d->log[d->n_log++];
			*de = (struct disk_entry){
				.term = e->term, .index = e->index,
				.type = e->type,
				.data = dup_bytes(e->data, e->len),
				.len = e->len,
			};
			check_log_matching(c, nd->id, de, prev_term);
		}
	}
	if (rd->has_snapshot_chunk) {
		const struct raft_snapshot_chunk *ch = &rd->snapshot_chunk;
		if (ch->offset == 0)
			buf_reset(&nd->staging);
		if (ch->offset != nd->staging.len)
			fail(c, "node %u gets a chunk at %" PRIu64
				" with %zu bytes staged",
			     nd->id, ch->offset, nd->staging.len);
		buf_append(&nd->staging, ch->data, ch->len);
		if (ch->done) {
			uint64_t index, term;
			if (!fsm_deserialize(d, nd->staging.data,
					     nd->staging.len, &index, &term) ||
			    index != ch->last_index || term != ch->last_term) {
				fail(c, "node %u received a corrupt snapshot",
				     nd->id);
				return;
			}
			if (index <= d->applied)
				fail(c, "node %u installs snapshot %" PRIu64
					" at applied %" PRIu64,
				     nd->id, index, d->applied);
			d->applied = index;
			buf_set(&d->snap_blob, nd->staging.data,
				nd->staging.len);
			buf_reset(&nd->staging);
			check_snapshot_state(c, nd, index);
		}
	}
	if (rd->log_discard_all)
		disk_truncate(d, 0);
	if (rd->compact_index > 0) {
		disk_drop_prefix(d, rd->compact_index);
		if (nd->pending_snap && nd->pending_index == rd->compact_index) {
			buf_set(&d->snap_blob, nd->pending_blob.data,
				nd->pending_blob.len);
			nd->pending_snap = false;
		}
		d->snap_index = rd->compact_index;
		d->snap_term = rd->compact_term;
		if (rd->compact_index > nd->max_snapshot_index)
			nd->max_snapshot_index = rd->compact_index;
		else if (rd->compact_index < nd->max_snapshot_index)
			fail(c, "node %u snapshot index goes back to %" PRIu64,
			     nd->id, rd->compact_index);
	}
}

static void send_msg(struct node *nd, struct raft_msg *m)
{
	struct disk *d = &nd->disk;
	if (m->type == RAFT_MSG_SNAPSHOT_REQ) {
		if (d->snap_index == 0)
			return;
		uint64_t off = d->snap_index == m->snap.last_index
				       ? m->snap.offset
				       : 0;
		if (off > d->snap_blob.len)
			off = 0;
		size_t len = d->snap_blob.len - off;
		if (len > m->snap.chunk_bytes_max)
			len = m->snap.chunk_bytes_max;
		if (off != m->snap.offset && d->snap_index == m->snap.last_index)
			return;
		if (raft_snapshot_chunk_pack(m, d->snap_index, d->snap_term,
					     d->snap_blob.data + off, len,
					     d->snap_blob.len))
			return;
	}
	sim_send(nd->c->sim, nd->id, m->to, m->type, m->bytes.data,
		 m->bytes.len);
}

static void served(struct raft_cluster *c, struct read *r, uint64_t applied)
{
	r->waiting = false;
	r->status = STATUS_OK;
	r->served_at = applied;
	if (applied < r->min_commit)
		fail(c, "stale read %" PRIu64 " on node %u: applied %" PRIu64
			" but %" PRIu64 " was committed first",
		     r->id, r->node, applied, r->min_commit);
}

static struct read *find_read(const struct raft_cluster *c, uint64_t id)
{
	for (size_t i = 0; i < c->n_reads; i++)
		if (c->reads[i].id == id)
			return &c->reads[i];
	return NULL;
}

static void serve_reads(struct node *nd)
{
	struct raft_cluster *c = nd->c;
	for (size_t i = 0; i < c->n_reads; i++) {
		struct read *rd = &c->reads[i];
		if (!rd->waiting || !rd->confirmed || rd->node != nd->id ||
		    nd->disk.applied < rd->index)
			continue;
		served(c, rd, nd->disk.applied);
	}
}

/* ---- store backend: the production replica over RocksDB ---- */

static void st_apply(void *ctx, uint64_t index, const void *data, size_t len,
		     struct store_batch *b)
{
	struct node *nd = ctx;
	uint8_t key[8];
	put_u64be(key, index);
	store_batch_put(b, STORE_CF_DATA, key, sizeof(key), data, len);
	/* Observers are safe inside a ready: they change nothing. */
	struct raft_entry e = {
		.term = raft_term_at(nd->r, index), .index = index,
		.type = SKV__ENTRY_TYPE__ENTRY_NORMAL,
		.data = (uint8_t *)data, .len = len,
	};
	check_same_command(nd->c, nd, &e);
}

/* An installed snapshot holds exactly the commands applied elsewhere. */
static void st_restore(void *ctx, uint64_t index)
{
	struct node *nd = ctx;
	struct raft_cluster *c = nd->c;
	struct store_iter *it = store_iter_new(replica_host_store(&nd->host),
					       STORE_CF_DATA, NULL, 0, NULL);
	if (!it) {
		fail(c, "node %u: no iterator", nd->id);
		return;
	}
	size_t in_store = 0;
	for (store_iter_seek(it, "", 0); store_iter_valid(it);
	     store_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = store_iter_key(it, &kl);
		const void *v = store_iter_value(it, &vl);
		uint64_t i = kl == 8 ? get_u64be(k) : 0;
		const struct gl_entry *g = i < c->cap_gl ? &c->gl[i] : NULL;
		if (i == 0 || i > index || !g || !g->set ||
		    !same_bytes(g->data, g->len, v, vl)) {
			fail(c, "node %u: snapshot %" PRIu64
				" holds a command at %" PRIu64
				" nobody applied",
			     nd->id, index, i);
			break;
		}
		in_store++;
	}
	store_iter_free(it);
	size_t expected = 0;
	for (uint64_t i = 1; i <= index && i < c->cap_gl; i++)
		expected += c->gl[i].set &&
			    c->gl[i].type == SKV__ENTRY_TYPE__ENTRY_NORMAL;
	if (in_store != expected)
		fail(c, "node %u: snapshot %" PRIu64 " holds %zu commands, "
			"%zu were applied up to it",
		     nd->id, index, in_store, expected);
}


static void st_read_done(void *ctx, uint64_t id, int status)
{
	struct node *nd = ctx;
	struct read *r = find_read(nd->c, id);
	if (!r || !r->waiting)
		return;
	if (status == STATUS_OK) {
		struct raft_replica *rep = replica_host_replica(&nd->host);
		served(nd->c, r, raft_replica_applied_index(rep));
	} else {
		r->waiting = false;
		r->status = status;
	}
}

static const struct raft_fsm_ops st_fsm = {
	.apply = st_apply,
	.restore = st_restore,
	.read_done = st_read_done,
};

static int st_open(void *arg, struct store *store,
		   const struct raft_fsm_ops **fsm, void **fsm_ctx, char *err,
		   size_t cap)
{
	(void)store;
	(void)err;
	(void)cap;
	*fsm = &st_fsm;
	*fsm_ctx = arg;
	return STATUS_OK;
}

static void st_opened(void *arg, struct raft_replica *rep)
{
	struct node *nd = arg;
	nd->r = raft_replica_raft(rep);
}

static void node_crashed(struct node *nd);

static void st_close(void *arg)
{
	node_crashed(arg);
}

/* A snapshot index never goes back but to the state it reloads. */
static void st_after_drain(void *arg, uint64_t now_ms)
{
	struct node *nd = arg;
	(void)now_ms;
	uint64_t snap = raft_snapshot_index(nd->r);
	if (snap < nd->max_snapshot_index && snap < raft_applied_index(nd->r))
		fail(nd->c, "node %u snapshot index goes back to %" PRIu64,
		     nd->id, snap);
	if (snap > nd->max_snapshot_index)
		nd->max_snapshot_index = snap;
}

static void st_fail(void *arg, const char *msg)
{
	struct node *nd = arg;
	fail(nd->c, "%s", msg);
}

static const struct replica_host_ops st_host_ops = {
	.open = st_open,
	.opened = st_opened,
	.close = st_close,
	.after_drain = st_after_drain,
	.fail = st_fail,
};

static uint64_t node_applied(const struct node *nd)
{
	if (nd->c->o.store_backend) {
		struct raft_replica *rep = replica_host_replica(&nd->host);
		return rep ? raft_replica_applied_index(rep) : 0;
	}
	return nd->disk.applied;
}

/* ---- disk model: driving a node ---- */

static void process(struct node *nd)
{
	struct raft_cluster *c = nd->c;
	struct raft_ready rd;
	int rounds = 0;
	if (c->o.store_backend) {
		replica_host_process(&nd->host);
		return;
	}
	while (nd->r && raft_ready(nd->r, &rd)) {
		persist(nd, &rd);
		for (size_t i = 0; i < rd.n_msgs; i++)
			send_msg(nd, &rd.msgs[i]);
		for (size_t i = 0; i < rd.n_committed; i++) {
			const struct raft_entry *e = &rd.committed[i];
			check_applied(c, nd, e);
			if (e->type == SKV__ENTRY_TYPE__ENTRY_NORMAL) {
				struct disk *d = &nd->disk;
				d->fsm = grow(d->fsm, &d->cap_fsm, d->n_fsm + 1,
					      sizeof(*d->fsm));
				d->fsm[d->n_fsm++] = (struct fsm_cmd){
					.index = e->index,
					.data = dup_bytes(e->data, e->len),
					.len = e->len,
				};
			}
			nd->disk.applied = e->index;
		}
		for (size_t i = 0; i < rd.n_reads; i++) {
			struct read *r = find_read(c, rd.reads[i].id);
			if (!r)
				continue;
			if (rd.reads[i].status == STATUS_OK) {
				r->index = rd.reads[i].index;
				r->confirmed = true;
			} else {
				r->waiting = false;
				r->status = rd.reads[i].status;
			}
		}
		raft_advance(nd->r, &rd);
		serve_reads(nd);
		uint64_t applied = raft_applied_index(nd->r);
		if (applied != nd->disk.applied)
			fail(c, "node %u: core applied %" PRIu64
				", state machine %" PRIu64,
			     nd->id, applied, nd->disk.applied);
		if (c->o.snapshot_every > 0 && !nd->pending_snap &&
		    applied >= raft_snapshot_index(nd->r) + c->o.snapshot_every) {
			uint64_t term = raft_term_at(nd->r, applied);
			fsm_serialize(&nd->disk, applied, term,
				      &nd->pending_blob);
			if (raft_compact(nd->r, applied) == STATUS_OK) {
				nd->pending_snap = true;
				nd->pending_index = applied;
			}
		}
		if (++rounds > 10000) {
			fail(c, "node %u: ready never settles", nd->id);
			break;
		}
	}
	if (nd->r)
		sim_wake_at(c->sim, nd->id, raft_next_tick_ms(nd->r));
}

/* Node `id`'s configuration but for the seed. */
static struct raft_config node_config(const struct raft_cluster *c,
				      uint32_t id)
{
	struct raft_config cfg = {
		.id = id,
		.n_nodes = c->o.n_nodes,
		.snapshot_chunk_bytes_max = c->o.snapshot_chunk_bytes_max,
		.inflight_max = c->o.inflight_max,
		.append_entries_max = c->o.append_entries_max,
		.election_timeout_ms_min = c->o.election_timeout_ms_min,
		.election_timeout_ms_max = c->o.election_timeout_ms_max,
	};
	for (size_t i = 0; i < c->o.n_nodes; i++)
		cfg.nodes[i] = (uint32_t)(i + 1);
	return cfg;
}

static void boot(struct node *nd)
{
	struct raft_cluster *c = nd->c;
	struct disk *d = &nd->disk;
	if (c->o.store_backend) {
		replica_host_boot(&nd->host);
		return;
	}
	struct raft_config cfg = node_config(c, nd->id);
	cfg.seed = sim_rand(c->sim);
	Skv__Entry *es = mem_calloc(d->n_log + 1, sizeof(*es));
	const Skv__Entry **ep = mem_calloc(d->n_log + 1, sizeof(*ep));
	if (!es || !ep)
		abort();
	for (size_t i = 0; i < d->n_log; i++) {
		skv__entry__init(&es[i]);
		es[i].term = d->log[i].term;
		es[i].index = d->log[i].index;
		es[i].type = d->log[i].type;
		es[i].data.data = d->log[i].data;
		es[i].data.len = d->log[i].len;
		ep[i] = &es[i];
	}
	struct raft_boot b = {
		.term = d->term, .vote = d->vote, .commit = d->commit,
		.snapshot_index = d->snap_index, .snapshot_term = d->snap_term,
		.applied = d->applied, .entries = ep, .n_entries = d->n_log,
	};
	char err[256];
	int rc = raft_new(&cfg, &b, sim_now_ms(c->sim), &nd->r, err,
			  sizeof(err));
	mem_free(es);
	mem_free(ep);
	if (rc) {
		fail(c, "node %u does not boot: %s", nd->id, err);
		return;
	}
	process(nd);
}

/* ---- endpoint callbacks ---- */

static void on_message(void *ctx, uint32_t from, uint32_t type,
		       const void *bytes, size_t len)
{
	struct node *nd = ctx;
	if (!nd->r)
		return;
	ProtobufCMessage *m;
	if (type > RAFT_MSG_SNAPSHOT_REPLY ||
	    codec_unpack(raft_msg_descriptor(type), bytes, len, &m)) {
		fail(nd->c, "node %u: undecodable message from %u", nd->id,
		     from);
		return;
	}
	raft_step(nd->r, sim_now_ms(nd->c->sim), m);
	codec_free(m);
	process(nd);
}

static void on_wake(void *ctx)
{
	struct node *nd = ctx;
	if (!nd->r)
		return;
	raft_tick(nd->r, sim_now_ms(nd->c->sim));
	process(nd);
}

/* What a crash loses in either mode, the core already freed or about to
 * be. */
static void node_crashed(struct node *nd)
{
	nd->r = NULL;
	buf_reset(&nd->staging);
	nd->pending_snap = false;
	for (size_t i = 0; i < nd->c->n_reads; i++) {
		struct read *r = &nd->c->reads[i];
		if (r->node == nd->id && r->waiting) {
			r->waiting = false;
			r->status = STATUS_UNAVAILABLE;
		}
	}
}

static void on_crash(void *ctx)
{
	struct node *nd = ctx;
	raft_free(nd->r);
	node_crashed(nd);
}

static void on_restart(void *ctx)
{
	boot(ctx);
}

static const struct sim_endpoint_ops node_ops = {
	.on_message = on_message,
	.on_wake = on_wake,
	.on_crash = on_crash,
	.on_restart = on_restart,
};

void raft_cluster_format(void *arg, uint32_t type, const void *bytes,
			 size_t len, char *out, size_t cap)
{
	ProtobufCMessage *pm;
	if (type > RAFT_MSG_SNAPSHOT_REPLY ||
	    codec_unpack(raft_msg_descriptor(type), bytes, len, &pm)) {
		snprintf(out, cap, "type %u (undecodable)", type);
		return;
	}
	const char *name = raft_msg_type_name(type);
	switch (type) {
	case RAFT_MSG_VOTE_REQ: {
		const Skv__RequestVoteRequest *m = (const void *)pm;
		snprintf(out, cap, "%s%s t%" PRIu64 " last=%" PRIu64 "/t%" PRIu64,
			 m->pre_vote ? "Pre" : "", name, m->term,
			 m->last_log_index, m->last_log_term);
		break;
	}
	case RAFT_MSG_VOTE_REPLY: {
		const Skv__RequestVoteReply *m = (const void *)pm;
		snprintf(out, cap, "%s%s t%" PRIu64 " %s", m->pre_vote ? "Pre" : "",
			 name, m->term, m->granted ? "granted" : "refused");
		break;
	}
	case RAFT_MSG_APPEND_REQ: {
		const Skv__AppendEntriesRequest *m = (const void *)pm;
		snprintf(out, cap,
			 "%s t%" PRIu64 " prev=%" PRIu64 "/t%" PRIu64
			 " n=%zu commit=%" PRIu64 " ctx=%" PRIu64,
			 name, m->term, m->prev_log_index, m->prev_log_term,
			 m->n_entries, m->leader_commit, m->read_ctx);
		break;
	}
	case RAFT_MSG_APPEND_REPLY: {
		const Skv__AppendEntriesReply *m = (const void *)pm;
		if (m->success)
			snprintf(out, cap, "%s t%" PRIu64 " ok match=%" PRIu64,
				 name, m->term, m->match_index);
		else
			snprintf(out, cap,
				 "%s t%" PRIu64 " reject prev=%" PRIu64
				 " conflict=%" PRIu64 "/t%" PRIu64,
				 name, m->term, m->reject_index,
				 m->conflict_index, m->conflict_term);
		break;
	}
	case RAFT_MSG_SNAPSHOT_REQ: {
		const Skv__InstallSnapshotRequest *m = (const void *)pm;
		snprintf(out, cap,
			 "%s t%" PRIu64 " last=%" PRIu64 "/t%" PRIu64
			 " off=%" PRIu64 " len=%zu%s",
			 name, m->term, m->last_index, m->last_term, m->offset,
			 m->data.len, m->done ? " done" : "");
		break;
	}
	default: {
		const Skv__InstallSnapshotReply *m = (const void *)pm;
		snprintf(out, cap,
			 "%s t%" PRIu64 " last=%" PRIu64 " off=%" PRIu64 "%s",
			 name, m->term, m->last_index, m->offset,
			 m->done ? " done" : "");
		break;
	}
	}
	codec_free(pm);
}

/* ---- lifecycle ---- */

struct raft_cluster *raft_cluster_new(struct sim *sim,
				      const struct raft_cluster_opts *o)
{
	struct raft_cluster *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->sim = sim;
	c->o = *o;
	buf_init(&c->scratch);
	c->nodes = mem_calloc(o->n_nodes, sizeof(*c->nodes));
	if (!c->nodes) {
		mem_free(c);
		return NULL;
	}
	sim_set_after_step(sim, after_step, c);
	sim_set_formatter(sim, raft_cluster_format, NULL);
	for (size_t i = 0; i < o->n_nodes; i++) {
		struct node *nd = &c->nodes[i];
		nd->c = c;
		nd->id = (uint32_t)(i + 1);
		nd->connected = true;
		buf_init(&nd->staging);
		buf_init(&nd->pending_blob);
		buf_init(&nd->disk.snap_blob);
		if (o->store_backend) {
			char name[32];
			snprintf(name, sizeof(name), "node %u", nd->id);
			struct replica_host_opts ho = {
				.id = nd->id, .name = name,
				.raft = node_config(c, nd->id),
				/* Entries are 8 bytes: compact about every
				 * snapshot_every. */
				.compaction_log_bytes_max =
					o->snapshot_every * 8,
				.ops = &st_host_ops, .arg = nd,
			};
			for (size_t j = 0; j < o->n_nodes; j++)
				ho.peers[j] = (uint32_t)(j + 1);
			if (replica_host_init(&nd->host, sim, &ho))
				abort();
		} else {
			sim_endpoint_add(sim, nd->id, &node_ops, nd);
		}
	}
	for (size_t i = 0; i < o->n_nodes; i++)
		boot(&c->nodes[i]);
	return c;
}

void raft_cluster_free(struct raft_cluster *c)
{
	if (!c)
		return;
	sim_set_after_step(c->sim, NULL, NULL);
	for (size_t i = 0; i < c->o.n_nodes; i++) {
		struct node *nd = &c->nodes[i];
		if (c->o.store_backend)
			replica_host_fini(&nd->host);
		else
			raft_free(nd->r);
		disk_free(&nd->disk);
		buf_free(&nd->staging);
		buf_free(&nd->pending_blob);
	}
	for (size_t i = 0; i < c->cap_gl; i++)
		mem_free(c->gl[i].data);
	mem_free(c->gl);
	mem_free(c->leader_of_term);
	mem_free(c->seen);
	mem_free(c->reads);
	mem_free(c->nodes);
	buf_free(&c->scratch);
	mem_free(c);
}

const char *raft_cluster_failure(const struct raft_cluster *c)
{
	return c->failed ? c->failure : NULL;
}

static struct node *node_of(const struct raft_cluster *c, uint32_t id)
{
	if (id == 0 || id > c->o.n_nodes)
		return NULL;
	return &c->nodes[id - 1];
}

struct raft *raft_cluster_raft(struct raft_cluster *c, uint32_t id)
{
	struct node *nd = node_of(c, id);
	return nd ? nd->r : NULL;
}

void raft_cluster_flush(struct raft_cluster *c, uint32_t id)
{
	struct node *nd = node_of(c, id);
	if (nd && nd->r)
		process(nd);
}

/* ---- faults ---- */

void raft_cluster_disconnect(struct raft_cluster *c, uint32_t id)
{
	sim_trace(c->sim, "disconnect %u", id);
	node_of(c, id)->connected = false;
	sim_isolate(c->sim, id);
}

void raft_cluster_connect(struct raft_cluster *c, uint32_t id)
{
	sim_trace(c->sim, "connect %u", id);
	node_of(c, id)->connected = true;
	sim_connect(c->sim, id);
	/* sim_connect restores links to isolated nodes too: cut them. */
	for (size_t i = 0; i < c->o.n_nodes; i++) {
		struct node *o = &c->nodes[i];
		if (!o->connected) {
			sim_link_set(c->sim, id, o->id, false);
			sim_link_set(c->sim, o->id, id, false);
		}
	}
}

bool raft_cluster_connected(const struct raft_cluster *c, uint32_t id)
{
	return node_of(c, id)->connected;
}

void raft_cluster_crash(struct raft_cluster *c, uint32_t id)
{
	sim_crash(c->sim, id);
}

void raft_cluster_restart(struct raft_cluster *c, uint32_t id)
{
	sim_restart(c->sim, id);
}

bool raft_cluster_up(const struct raft_cluster *c, uint32_t id)
{
	return node_of(c, id)->r != NULL;
}

/* ---- scenario helpers ---- */

static size_t quorum(const struct raft_cluster *c)
{
	return c->o.n_nodes / 2 + 1;
}

uint32_t raft_cluster_leader_now(struct raft_cluster *c)
{
	uint32_t best = 0;
	uint64_t best_term = 0;
	for (size_t i = 0; i < c->o.n_nodes; i++) {
		struct node *nd = &c->nodes[i];
		if (nd->r && raft_role(nd->r) == RAFT_LEADER &&
		    raft_term(nd->r) >= best_term) {
			best = nd->id;
			best_term = raft_term(nd->r);
		}
	}
	return best;
}

static bool stable_leader(void *arg)
{
	struct raft_cluster *c = arg;
	if (c->failed)
		return true;
	for (size_t i = 0; i < c->o.n_nodes; i++) {
		struct node *l = &c->nodes[i];
		if (!l->r || !l->connected || raft_role(l->r) != RAFT_LEADER)
			continue;
		size_t follow = 0;
		for (size_t j = 0; j < c->o.n_nodes; j++) {
			struct node *f = &c->nodes[j];
			if (f->r && f->connected &&
			    raft_leader(f->r) == l->id &&
			    raft_term(f->r) == raft_term(l->r))
				follow++;
		}
		if (follow >= quorum(c))
			return true;
	}
	return false;
}

uint32_t raft_cluster_wait_leader(struct raft_cluster *c, uint64_t deadline_ms)
{
	if (!sim_run_until(c->sim, stable_leader, c, deadline_ms) || c->failed)
		return 0;
	for (size_t i = 0; i < c->o.n_nodes; i++) {
		struct node *l = &c->nodes[i];
		if (l->r && l->connected && raft_role(l->r) == RAFT_LEADER)
			return l->id;
	}
	return 0;
}

int raft_cluster_propose(struct raft_cluster *c, uint32_t id, const void *data,
			 size_t len, uint64_t *index, uint64_t *term)
{
	struct node *nd = node_of(c, id);
	if (!nd || !nd->r)
		return STATUS_UNAVAILABLE;
	int rc = raft_propose(nd->r, data, len, index, term);
	if (rc == STATUS_OK)
		process(nd);
	return rc;
}

size_t raft_cluster_n_applied(struct raft_cluster *c, uint64_t index,
			      const void **data, size_t *len)
{
	size_t n = 0;
	if (data)
		*data = NULL;
	if (len)
		*len = 0;
	for (size_t i = 0; i < c->o.n_nodes; i++) {
		const struct node *nd = &c->nodes[i];
		if (node_applied(nd) < index)
			continue;
		if (c->o.store_backend) {
			uint8_t key[8];
			put_u64be(key, index);
			/* The first answer is kept in scratch; later ones
			 * only need to exist (the cluster checks they are the
			 * same command). */
			struct buf tmp;
			buf_init(&tmp);
			bool first = data && !*data;
			int rc = store_get(replica_host_store(&nd->host),
					   STORE_CF_DATA, key, sizeof(key),
					   first ? &c->scratch : &tmp);
			buf_free(&tmp);
			if (rc != STATUS_OK)
				continue;
			if (first) {
				*data = c->scratch.data;
				*len = c->scratch.len;
			}
			n++;
			continue;
		}
		const struct fsm_cmd *f = fsm_find(&nd->disk, index);
		if (!f)
			continue;
		if (data && !*data) {
			*data = f->data;
			*len = f->len;
		}
		n++;
	}
	return n;
}

struct applied_wait {
	struct raft_cluster *c;
	uint64_t index;
	size_t n;
	const void *data;
	size_t len;
};

static bool applied_enough(void *arg)
{
	struct applied_wait *w = arg;
	if (w->c->failed)
		return true;
	if (w->data || w->len) {
		const void *d;
		size_t l;
		size_t n = raft_cluster_n_applied(w->c, w->index, &d, &l);
		return n >= w->n && same_bytes(d, l, w->data, w->len);
	}
	size_t n = 0;
	for (size_t i = 0; i < w->c->o.n_nodes; i++)
		if (w->c->nodes[i].r && node_applied(&w->c->nodes[i]) >= w->index)
			n++;
	return n >= w->n;
}

bool raft_cluster_wait_applied(struct raft_cluster *c, uint64_t index,
			       size_t n_nodes, uint64_t deadline_ms)
{
	struct applied_wait w = { .c = c, .index = index, .n = n_nodes };
	return sim_run_until(c->sim, applied_enough, &w, deadline_ms) &&
	       !c->failed;
}

uint64_t raft_cluster_one(struct raft_cluster *c, const void *data, size_t len,
			  size_t expected, bool retry)
{
	uint64_t deadline = sim_now_ms(c->sim) + 10000;
	while (sim_now_ms(c->sim) < deadline && !c->failed) {
		uint64_t index = 0;
		for (size_t k = 0; k < c->o.n_nodes && index == 0; k++) {
			c->one_start = (c->one_start + 1) % c->o.n_nodes;
			struct node *nd = &c->nodes[c->one_start];
			if (!nd->r || !nd->connected)
				continue;
			uint64_t i;
			if (raft_cluster_propose(c, nd->id, data, len, &i,
						 NULL) == STATUS_OK)
				index = i;
		}
		if (index == 0) {
			sim_run_for(c->sim, 50);
			continue;
		}
		struct applied_wait w = { .c = c, .index = index, .n = expected,
					  .data = data, .len = len };
		if (len == 0) {
			fail(c, "raft_cluster_one needs a non-empty command");
			return 0;
		}
		if (sim_run_until(c->sim, applied_enough, &w,
				  sim_now_ms(c->sim) + 2000) &&
		    !c->failed)
			return index;
		if (!retry)
			break;
	}
	fail(c, "one(): %zu nodes did not agree on a command in time", expected);
	return 0;
}

int raft_cluster_read(struct raft_cluster *c, uint32_t id, uint64_t read_id)
{
	struct node *nd = node_of(c, id);
	if (!nd || !nd->r)
		return STATUS_UNAVAILABLE;
	c->reads = grow(c->reads, &c->cap_reads, c->n_reads + 1,
			sizeof(*c->reads));
	struct read *r = &c->reads[c->n_reads];
	*r = (struct read){ .id = read_id, .node = id, .waiting = true,
			    .min_commit = max_commit(c) };
	int rc = raft_read_index(nd->r, read_id);
	if (rc != STATUS_OK)
		return rc;
	c->n_reads++;
	process(nd);
	return STATUS_OK;
}

int raft_cluster_read_result(const struct raft_cluster *c, uint64_t read_id,
			     uint64_t *served_at)
{
	const struct read *r = find_read(c, read_id);
	if (!r)
		return STATUS_NOT_FOUND;
	if (served_at)
		*served_at = r->served_at;
	return r->waiting ? -1 : r->status;
}

size_t raft_cluster_max_log_bytes(const struct raft_cluster *c)
{
	size_t m = 0;
	for (size_t i = 0; i < c->o.n_nodes; i++)
		if (c->nodes[i].r && raft_log_bytes(c->nodes[i].r) > m)
			m = raft_log_bytes(c->nodes[i].r);
	return m;
}

uint64_t raft_cluster_max_applied(const struct raft_cluster *c)
{
	return c->max_applied;
}

uint64_t raft_cluster_snapshot_index(const struct raft_cluster *c,
				     uint32_t id)
{
	return node_of(c, id)->max_snapshot_index;
}
