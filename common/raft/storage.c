#include "common/raft/storage.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/status.h"

#define KEY_HARD_STATE "hs"
#define KEY_SNAPSHOT "snap"
#define ENTRY_PREFIX 'e'
#define ENTRY_KEY_LEN 9

#define APPLIED_KEY RAFT_STORAGE_META_RESERVED "applied"
#define APPLIED_KEY_LEN (RAFT_STORAGE_META_RESERVED_LEN + 7)
#define APPLIED_VAL_LEN 16

#define SNAP_MAGIC "SKVSNAP"	/* 8 bytes with its NUL */
#define SNAP_MAGIC_LEN 8
#define SNAP_VERSION 1
#define SNAP_HEADER_LEN (SNAP_MAGIC_LEN + 4 + 8 + 8)
#define SNAP_END_TAG 0
#define SNAP_TRAILER_LEN (1 + 4) /* end tag + CRC32C */

/* Follower staging and install (raft CF; see storage.h, Layout). */
#define STAGE_HEADER_KEY "ss"
#define STAGE_PREFIX "ss/"
#define STAGE_PREFIX_LEN 3
#define STAGE_KEY_LEN (STAGE_PREFIX_LEN + 8)
#define STAGE_END_KEY "ss0" /* "ss" and every "ss/..." sort below it */
#define MARKER_KEY "si"
#define TRIPLE_LEN 24
#define INSTALL_BATCH_BYTES ((size_t)4 << 20)

/* Own writes an install may still make before it fails; < 0 = no limit
 * (raft_storage_test_fail_install_after). */
static long test_writes_left = -1;

/*
 * A transfer encodes the stream on demand from a RocksDB snapshot, one
 * "unit" (the header, one record, the trailer) at a time. A record is
 * emitted straight from the iterator positioned on it (its key and value
 * stay valid until the iterator moves), so the cursor copies nothing but
 * the 9 bytes of framing; the only buffer is the copy of the last chunk
 * served.
 */
enum xfer_phase {
	XFER_HEADER,  /* unit: the header, in `unit` */
	XFER_RECORDS, /* unit: the record under `it`, framing in `unit` */
	XFER_TRAILER, /* unit: end tag + CRC32C, in `unit` */
	XFER_END,     /* every byte emitted */
};

struct snap_xfer {
	bool used;
	uint32_t peer;
	uint64_t last_use; /* st->xfer_clock at its last read (eviction) */
	struct store_snapshot *snap;
	uint64_t index, term, total;

	/* Cursor: bytes [0, offset) emitted, crc is their CRC32C. */
	enum xfer_phase phase;
	enum store_cf cf;      /* XFER_RECORDS */
	struct store_iter *it; /* XFER_RECORDS: on the current record */
	uint8_t unit[SNAP_HEADER_LEN];
	size_t unit_pos; /* bytes of the current unit emitted */
	uint64_t offset;
	uint32_t crc;

	/* The last chunk served, for a retransmit of its offset. */
	struct buf last;
	uint64_t last_offset;
	bool has_last;
};

struct raft_storage {
	struct store *store; /* borrowed */
	char errmsg[256];

	/* Boot entries from raft_storage_open. */
	Skv__Entry **boot_entries;
	size_t n_boot;

	/* What the store holds once every filled batch is written. */
	uint64_t last_index; /* last stored entry, or snap_index if none */
	uint64_t snap_index, snap_term;
	uint64_t applied_index, applied_term;

	/* Outgoing snapshot transfers (leader side), one per follower. */
	struct snap_xfer xfers[RAFT_MAX_NODES];
	uint64_t xfer_clock; /* counts reads, for eviction */

	/* Incoming snapshot stream (follower side): the header of what is
	 * staged on disk, and the last chunk until the install writes it. */
	bool staged_active;
	uint64_t staged_index, staged_term, staged_size;
	uint64_t staged_len; /* chunks staged so far, `final` included */
	struct buf final;
	bool final_pending;
	uint64_t final_offset;
	size_t stage_peak; /* most heap bytes held at once for staging */
	uint64_t install_writes, install_synced;

	struct buf scratch; /* packing one record */
};

static void xfer_release(struct raft_storage *st, struct snap_xfer *x);
static int get_triple(struct raft_storage *st, const char *key,
		      uint64_t *index, uint64_t *term, uint64_t *size);

static int fail(struct raft_storage *st, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct raft_storage *st, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->errmsg, sizeof(st->errmsg), fmt, ap);
	va_end(ap);
	return status;
}

static int fail_store(struct raft_storage *st, int status, const char *what)
{
	return fail(st, status, "raft storage: %s: %s", what,
		    store_errmsg(st->store));
}

const char *raft_storage_errmsg(const struct raft_storage *st)
{
	return st->errmsg;
}

/* ---- CRC32C ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t raft_storage_crc32c(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- keys ---- */

static void entry_key(uint8_t key[ENTRY_KEY_LEN], uint64_t index)
{
	key[0] = ENTRY_PREFIX;
	put_u64be(key + 1, index);
}

/* Deletes the stored entries with index in [from, to]. */
static void delete_entries(struct store_batch *b, uint64_t from, uint64_t to)
{
	uint8_t begin[ENTRY_KEY_LEN], end[ENTRY_KEY_LEN];
	if (from > to)
		return;
	entry_key(begin, from);
	if (to == UINT64_MAX) {
		store_batch_delete_range(b, STORE_CF_RAFT, begin, sizeof(begin),
					 "f", 1);
		return;
	}
	entry_key(end, to + 1);
	store_batch_delete_range(b, STORE_CF_RAFT, begin, sizeof(begin), end,
				 sizeof(end));
}

/* Packs snapshot meta into st->scratch, for put_snapshot_meta. */
static int pack_snapshot_meta(struct raft_storage *st, uint64_t index,
			      uint64_t term, uint64_t size)
{
	Skv__SnapshotMeta m = SKV__SNAPSHOT_META__INIT;
	m.last_index = index;
	m.last_term = term;
	m.size_bytes = size;
	if (codec_pack(&m.base, &st->scratch))
		return fail(st, STATUS_NO_MEMORY, "raft storage: out of memory");
	return STATUS_OK;
}

static void put_snapshot_meta(struct raft_storage *st, struct store_batch *b)
{
	store_batch_put(b, STORE_CF_RAFT, KEY_SNAPSHOT, strlen(KEY_SNAPSHOT),
			st->scratch.data, st->scratch.len);
}

/* ---- open / load ---- */

/* Reads and decodes one record; *out NULL when absent. */
static int load_record(struct raft_storage *st, enum store_cf cf,
		       const char *key, const ProtobufCMessageDescriptor *desc,
		       ProtobufCMessage **out)
{
	*out = NULL;
	int rc = store_get(st->store, cf, key, strlen(key), &st->scratch);
	if (rc == STATUS_NOT_FOUND)
		return STATUS_OK;
	if (rc)
		return fail_store(st, rc, key);
	if (codec_unpack(desc, st->scratch.data, st->scratch.len, out))
		return fail(st, STATUS_CORRUPTION,
			    "raft storage: record \"%s\" is not a valid %s",
			    key, desc->name);
	return STATUS_OK;
}

static int load_applied(struct raft_storage *st)
{
	int rc = store_get(st->store, STORE_CF_META, APPLIED_KEY,
			   APPLIED_KEY_LEN, &st->scratch);
	if (rc == STATUS_NOT_FOUND)
		return STATUS_OK;
	if (rc)
		return fail_store(st, rc, "applied index");
	if (st->scratch.len != APPLIED_VAL_LEN)
		return fail(st, STATUS_CORRUPTION,
			    "raft storage: applied index record has %zu bytes, "
			    "not %d",
			    st->scratch.len, APPLIED_VAL_LEN);
	st->applied_index = get_u64be(st->scratch.data);
	st->applied_term = get_u64be(st->scratch.data + 8);
	return STATUS_OK;
}

static int boot_push(struct raft_storage *st, Skv__Entry *e, size_t *cap)
{
	if (st->n_boot == *cap) {
		size_t ncap = *cap ? 2 * *cap : 64;
		Skv__Entry **p = mem_realloc(st->boot_entries,
					     ncap * sizeof(*p));
		if (!p)
			return STATUS_NO_MEMORY;
		st->boot_entries = p;
		*cap = ncap;
	}
	st->boot_entries[st->n_boot++] = e;
	return STATUS_OK;
}

/* Loads the log tail after the compaction point and checks it. */
static int load_entries(struct raft_storage *st, uint64_t hs_term)
{
	uint8_t key[ENTRY_KEY_LEN];
	uint8_t prefix = ENTRY_PREFIX;
	size_t cap = 0;
	uint64_t expect = st->snap_index + 1, prev_term = st->snap_term;
	int rc = STATUS_OK;

	struct store_iter *it = store_iter_new(st->store, STORE_CF_RAFT,
					       &prefix, 1, NULL);
	if (!it)
		return fail_store(st, STATUS_NO_MEMORY, "log iterator");
	entry_key(key, expect);
	for (store_iter_seek(it, key, sizeof(key)); store_iter_valid(it);
	     store_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = store_iter_key(it, &klen);
		const void *v = store_iter_value(it, &vlen);
		ProtobufCMessage *m;
		if (klen != ENTRY_KEY_LEN) {
			rc = fail(st, STATUS_CORRUPTION,
				  "raft storage: log key of %zu bytes", klen);
			goto done;
		}
		uint64_t index = get_u64be(k + 1);
		if (index != expect) {
			rc = fail(st, STATUS_CORRUPTION,
				  "raft storage: log has a gap: entry %llu "
				  "follows %llu",
				  (unsigned long long)index,
				  (unsigned long long)(expect - 1));
			goto done;
		}
		if (codec_unpack(&skv__entry__descriptor, v, vlen, &m)) {
			rc = fail(st, STATUS_CORRUPTION,
				  "raft storage: log entry %llu does not decode",
				  (unsigned long long)index);
			goto done;
		}
		Skv__Entry *e = (Skv__Entry *)m;
		if (boot_push(st, e, &cap)) {
			codec_free(m);
			rc = fail(st, STATUS_NO_MEMORY,
				  "raft storage: out of memory");
			goto done;
		}
		if (e->index != index) {
			rc = fail(st, STATUS_CORRUPTION,
				  "raft storage: log entry under key %llu says "
				  "index %llu",
				  (unsigned long long)index,
				  (unsigned long long)e->index);
			goto done;
		}
		if (e->type != SKV__ENTRY_TYPE__ENTRY_NORMAL &&
		    e->type != SKV__ENTRY_TYPE__ENTRY_NOOP) {
			rc = fail(st, STATUS_CORRUPTION,
				  "raft storage: log entry %llu has type %d",
				  (unsigned long long)index, (int)e->type);
			goto done;
		}
		if (e->term < prev_term || e->term > hs_term) {
			rc = fail(st, STATUS_CORRUPTION,
				  "raft storage: log entry %llu has term %llu "
				  "(previous %llu, current term %llu)",
				  (unsigned long long)index,
				  (unsigned long long)e->term,
				  (unsigned long long)prev_term,
				  (unsigned long long)hs_term);
			goto done;
		}
		prev_term = e->term;
		expect++;
	}
	rc = store_iter_status(it);
	if (rc)
		rc = fail_store(st, rc, "reading the log");
	st->last_index = expect - 1;
done:
	store_iter_free(it);
	return rc;
}

int raft_storage_open(struct store *store, struct raft_storage **out,
		      struct raft_boot *boot, char *errmsg, size_t cap)
{
	ProtobufCMessage *hs = NULL, *snap = NULL;
	int rc;

	*out = NULL;
	memset(boot, 0, sizeof(*boot));
	struct raft_storage *st = mem_calloc(1, sizeof(*st));
	if (!st) {
		snprintf(errmsg, cap, "raft storage: out of memory");
		return STATUS_NO_MEMORY;
	}
	st->store = store;
	buf_init(&st->final);
	buf_init(&st->scratch);

	/* The application must not have read a half-installed store. */
	uint64_t mi, mt, ms;
	rc = get_triple(st, MARKER_KEY, &mi, &mt, &ms);
	if (rc == STATUS_OK)
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: the install of snapshot %llu was "
			  "interrupted; raft_storage_recover must run before "
			  "anything reads the store",
			  (unsigned long long)mi);
	else if (rc == STATUS_NOT_FOUND)
		rc = STATUS_OK;
	if (rc)
		goto err_after_alloc;

	rc = load_record(st, STORE_CF_RAFT, KEY_HARD_STATE,
			 &skv__hard_state__descriptor, &hs);
	if (rc)
		goto err_after_alloc;
	rc = load_record(st, STORE_CF_RAFT, KEY_SNAPSHOT,
			 &skv__snapshot_meta__descriptor, &snap);
	if (rc)
		goto err_after_hs;
	if (snap) {
		st->snap_index = ((Skv__SnapshotMeta *)snap)->last_index;
		st->snap_term = ((Skv__SnapshotMeta *)snap)->last_term;
	}
	rc = load_applied(st);
	if (rc)
		goto err_after_snap;
	uint64_t hs_term = hs ? ((Skv__HardState *)hs)->term : 0;
	if (st->snap_term > hs_term) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: snapshot term %llu above current "
			  "term %llu",
			  (unsigned long long)st->snap_term,
			  (unsigned long long)hs_term);
		goto err_after_snap;
	}
	rc = load_entries(st, hs_term);
	if (rc)
		goto err_after_snap;
	if (st->applied_index < st->snap_index ||
	    st->applied_index > st->last_index) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: applied index %llu outside the log "
			  "(snapshot %llu, last %llu)",
			  (unsigned long long)st->applied_index,
			  (unsigned long long)st->snap_index,
			  (unsigned long long)st->last_index);
		goto err_after_snap;
	}

	if (hs) {
		boot->term = ((Skv__HardState *)hs)->term;
		boot->vote = ((Skv__HardState *)hs)->vote;
		boot->commit = ((Skv__HardState *)hs)->commit;
	}
	boot->snapshot_index = st->snap_index;
	boot->snapshot_term = st->snap_term;
	boot->applied = st->applied_index;
	boot->entries = (const Skv__Entry *const *)st->boot_entries;
	boot->n_entries = st->n_boot;
	codec_free(snap);
	codec_free(hs);
	*out = st;
	return STATUS_OK;

err_after_snap:
	codec_free(snap);
err_after_hs:
	codec_free(hs);
err_after_alloc:
	snprintf(errmsg, cap, "%s", st->errmsg);
	memset(boot, 0, sizeof(*boot));
	raft_storage_free(st);
	return rc;
}

void raft_storage_boot_release(struct raft_storage *st)
{
	for (size_t i = 0; i < st->n_boot; i++)
		codec_free(&st->boot_entries[i]->base);
	mem_free(st->boot_entries);
	st->boot_entries = NULL;
	st->n_boot = 0;
}

void raft_storage_free(struct raft_storage *st)
{
	if (!st)
		return;
	raft_storage_boot_release(st);
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		if (st->xfers[i].used)
			xfer_release(st, &st->xfers[i]);
	buf_free(&st->final);
	buf_free(&st->scratch);
	mem_free(st);
}

uint64_t raft_storage_applied_index(const struct raft_storage *st)
{
	return st->applied_index;
}

uint64_t raft_storage_applied_term(const struct raft_storage *st)
{
	return st->applied_term;
}

uint64_t raft_storage_last_index(const struct raft_storage *st)
{
	return st->last_index;
}

uint64_t raft_storage_snapshot_index(const struct raft_storage *st)
{
	return st->snap_index;
}

/* ---- save ---- */

int raft_storage_save(struct raft_storage *st, struct store_batch *b,
		      const struct raft_ready *rd)
{
	int rc;

	if (rd->log_discard_all)
		delete_entries(b, 0, UINT64_MAX);
	if (rd->compact_index > st->snap_index) {
		rc = pack_snapshot_meta(st, rd->compact_index,
					rd->compact_term, 0);
		if (rc)
			return rc;
		delete_entries(b, 0, rd->compact_index);
		put_snapshot_meta(st, b);
		st->snap_index = rd->compact_index;
		st->snap_term = rd->compact_term;
	}
	if (rd->log_discard_all || st->last_index < st->snap_index)
		st->last_index = st->snap_index;

	if (rd->n_entries > 0) {
		uint64_t first = rd->entries[0].index;
		uint64_t last = rd->entries[rd->n_entries - 1].index;
		/* The core hands out a dense run (checked in debug builds). */
		assert(first > 0 && last - first + 1 == rd->n_entries);
		(void)first;
		if (st->last_index > last)
			delete_entries(b, last + 1, st->last_index);
		for (size_t i = 0; i < rd->n_entries; i++) {
			const struct raft_entry *re = &rd->entries[i];
			Skv__Entry e = SKV__ENTRY__INIT;
			uint8_t key[ENTRY_KEY_LEN];
			e.term = re->term;
			e.index = re->index;
			e.type = re->type;
			e.data.data = re->data;
			e.data.len = re->len;
			if (codec_pack(&e.base, &st->scratch))
				return fail(st, STATUS_NO_MEMORY,
					    "raft storage: out of memory");
			entry_key(key, re->index);
			store_batch_put(b, STORE_CF_RAFT, key, sizeof(key),
					st->scratch.data, st->scratch.len);
		}
		st->last_index = last;
	}

	if (rd->hard_state_changed) {
		Skv__HardState hs = SKV__HARD_STATE__INIT;
		hs.term = rd->term;
		hs.vote = rd->vote;
		hs.commit = rd->commit;
		if (codec_pack(&hs.base, &st->scratch))
			return fail(st, STATUS_NO_MEMORY,
				    "raft storage: out of memory");
		store_batch_put(b, STORE_CF_RAFT, KEY_HARD_STATE,
				strlen(KEY_HARD_STATE), st->scratch.data,
				st->scratch.len);
	}
	return STATUS_OK;
}

void raft_storage_set_applied(struct raft_storage *st, struct store_batch *b,
			      uint64_t index, uint64_t term)
{
	uint8_t v[APPLIED_VAL_LEN];
	put_u64be(v, index);
	put_u64be(v + 8, term);
	store_batch_put(b, STORE_CF_META, APPLIED_KEY, APPLIED_KEY_LEN, v,
			sizeof(v));
	st->applied_index = index;
	st->applied_term = term;
}

/* ---- leader side: streaming the snapshot ---- */

static void xfer_release(struct raft_storage *st, struct snap_xfer *x)
{
	store_iter_free(x->it);
	store_snapshot_free(st->store, x->snap);
	buf_free(&x->last);
	memset(x, 0, sizeof(*x));
}

struct seg {
	const uint8_t *p;
	size_t n;
};

/* The bytes of the current unit, as up to 4 segments. */
static size_t unit_segs(const struct snap_xfer *x, struct seg s[4])
{
	size_t klen, vlen;
	const void *k, *v;

	switch (x->phase) {
	case XFER_HEADER:
		s[0] = (struct seg){x->unit, SNAP_HEADER_LEN};
		return 1;
	case XFER_RECORDS:
		k = store_iter_key(x->it, &klen);
		v = store_iter_value(x->it, &vlen);
		s[0] = (struct seg){x->unit, 5};
		s[1] = (struct seg){k, klen};
		s[2] = (struct seg){x->unit + 5, 4};
		s[3] = (struct seg){v, vlen};
		return 4;
	case XFER_TRAILER:
		s[0] = (struct seg){x->unit, SNAP_TRAILER_LEN};
		return 1;
	case XFER_END:
		break;
	}
	return 0;
}

/* Positions the cursor on the first record at or after the iterator (in
 * this CF or the next), or on the trailer after the last one. */
static int xfer_settle(struct raft_storage *st, struct snap_xfer *x)
{
	for (;;) {
		if (store_iter_valid(x->it)) {
			size_t klen, vlen;
			store_iter_key(x->it, &klen);
			store_iter_value(x->it, &vlen);
			/* The sizing pass read the same snapshot. */
			if (klen > UINT32_MAX || vlen > UINT32_MAX)
				return fail(st, STATUS_TOO_LARGE,
					    "raft storage: snapshot record: %s",
					    status_str(STATUS_TOO_LARGE));
			x->unit[0] = (uint8_t)x->cf;
			put_u32be(x->unit + 1, (uint32_t)klen);
			put_u32be(x->unit + 5, (uint32_t)vlen);
			return STATUS_OK;
		}
		int rc = store_iter_status(x->it);
		if (rc)
			return fail_store(st, rc, "reading the snapshot");
		store_iter_free(x->it);
		x->it = NULL;
		if (x->cf == STORE_CF_META)
			break;
		x->cf = STORE_CF_META;
		x->it = store_iter_new(st->store, x->cf, NULL, 0, x->snap);
		if (!x->it)
			return fail_store(st, STATUS_NO_MEMORY,
					  "snapshot iterator");
	}
	/* The end tag is covered by the CRC that follows it. */
	x->phase = XFER_TRAILER;
	x->unit[0] = SNAP_END_TAG;
	put_u32be(x->unit + 1, raft_storage_crc32c(x->crc, x->unit, 1));
	return STATUS_OK;
}

/* Moves the cursor to the unit after the one just emitted. */
static int xfer_next_unit(struct raft_storage *st, struct snap_xfer *x)
{
	x->unit_pos = 0;
	switch (x->phase) {
	case XFER_HEADER:
		x->phase = XFER_RECORDS;
		x->cf = STORE_CF_DATA;
		x->it = store_iter_new(st->store, x->cf, NULL, 0, x->snap);
		if (!x->it)
			return fail_store(st, STATUS_NO_MEMORY,
					  "snapshot iterator");
		return xfer_settle(st, x);
	case XFER_RECORDS:
		store_iter_next(x->it);
		return xfer_settle(st, x);
	case XFER_TRAILER:
	case XFER_END:
		x->phase = XFER_END;
		break;
	}
	return STATUS_OK;
}

/* Puts the cursor back at offset 0 of the same snapshot. */
static void xfer_rewind(struct snap_xfer *x)
{
	store_iter_free(x->it);
	x->it = NULL;
	x->phase = XFER_HEADER;
	x->unit_pos = 0;
	x->offset = 0;
	x->crc = 0;
	memcpy(x->unit, SNAP_MAGIC, SNAP_MAGIC_LEN);
	put_u32be(x->unit + SNAP_MAGIC_LEN, SNAP_VERSION);
	put_u64be(x->unit + SNAP_MAGIC_LEN + 4, x->index);
	put_u64be(x->unit + SNAP_MAGIC_LEN + 12, x->term);
}

/* Emits the next `n` bytes of the stream (fewer at its end) into `dst`,
 * or only accounts for them with dst NULL; *done says how many. */
static int xfer_emit(struct raft_storage *st, struct snap_xfer *x,
		     uint8_t *dst, uint64_t n, uint64_t *done)
{
	*done = 0;
	while (*done < n && x->phase != XFER_END) {
		struct seg s[4];
		size_t ns = unit_segs(x, s), ulen = 0, skip = x->unit_pos;
		for (size_t i = 0; i < ns; i++)
			ulen += s[i].n;
		for (size_t i = 0; i < ns && *done < n; i++) {
			if (skip >= s[i].n) {
				skip -= s[i].n;
				continue;
			}
			uint64_t take = s[i].n - skip;
			if (take > n - *done)
				take = n - *done;
			if (dst)
				memcpy(dst + *done, s[i].p + skip, (size_t)take);
			x->crc = raft_storage_crc32c(x->crc, s[i].p + skip,
						     (size_t)take);
			x->unit_pos += (size_t)take;
			x->offset += take;
			*done += take;
			skip = 0;
		}
		if (x->unit_pos == ulen) {
			int rc = xfer_next_unit(st, x);
			if (rc)
				return rc;
		}
	}
	return STATUS_OK;
}

/* Sums the size of every record of `cf` at the transfer's snapshot. */
static int xfer_size_cf(struct raft_storage *st, struct snap_xfer *x,
			enum store_cf cf)
{
	struct store_iter *it = store_iter_new(st->store, cf, NULL, 0,
					       x->snap);
	int rc;
	if (!it)
		return fail_store(st, STATUS_NO_MEMORY, "snapshot iterator");
	for (; store_iter_valid(it); store_iter_next(it)) {
		size_t klen, vlen;
		store_iter_key(it, &klen);
		store_iter_value(it, &vlen);
		if (klen > UINT32_MAX || vlen > UINT32_MAX) {
			rc = fail(st, STATUS_TOO_LARGE,
				  "raft storage: snapshot record: %s",
				  status_str(STATUS_TOO_LARGE));
			goto done;
		}
		x->total += 1 + 4 + (uint64_t)klen + 4 + (uint64_t)vlen;
	}
	rc = store_iter_status(it);
	if (rc)
		fail_store(st, rc, "reading the snapshot");
done:
	store_iter_free(it);
	return rc;
}

static struct snap_xfer *xfer_find(struct raft_storage *st, uint32_t peer)
{
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		if (st->xfers[i].used && st->xfers[i].peer == peer)
			return &st->xfers[i];
	return NULL;
}

/* Starts a transfer to `peer` at a new RocksDB snapshot of the current
 * state, in a free slot (or the least recently read one's). */
static int xfer_start(struct raft_storage *st, uint32_t peer,
		      struct snap_xfer **out)
{
	struct snap_xfer *x = NULL;
	int rc;

	for (size_t i = 0; i < RAFT_MAX_NODES; i++) {
		struct snap_xfer *c = &st->xfers[i];
		if (!c->used) {
			x = c;
			break;
		}
		if (!x || c->last_use < x->last_use)
			x = c;
	}
	if (x->used)
		xfer_release(st, x);
	x->snap = store_snapshot_new(st->store);
	if (!x->snap)
		return fail_store(st, STATUS_NO_MEMORY, "snapshot");
	rc = store_get_at(st->store, x->snap, STORE_CF_META, APPLIED_KEY,
			  APPLIED_KEY_LEN, &st->scratch);
	if (rc == STATUS_OK && st->scratch.len == APPLIED_VAL_LEN) {
		x->index = get_u64be(st->scratch.data);
		x->term = get_u64be(st->scratch.data + 8);
	} else if (rc == STATUS_OK) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: applied index record has %zu bytes",
			  st->scratch.len);
		goto err_after_snap;
	} else if (rc != STATUS_NOT_FOUND) {
		rc = fail_store(st, rc, "applied index");
		goto err_after_snap;
	}
	x->total = SNAP_HEADER_LEN + SNAP_TRAILER_LEN;
	rc = xfer_size_cf(st, x, STORE_CF_DATA);
	if (rc)
		goto err_after_snap;
	rc = xfer_size_cf(st, x, STORE_CF_META);
	if (rc)
		goto err_after_snap;
	x->used = true;
	x->peer = peer;
	buf_init(&x->last);
	xfer_rewind(x);
	*out = x;
	return STATUS_OK;

err_after_snap:
	xfer_release(st, x);
	return rc;
}

int raft_storage_snapshot_read(struct raft_storage *st, uint32_t peer,
			       uint64_t min_index, uint64_t offset, void *buf,
			       size_t cap, size_t *len, uint64_t *last_index,
			       uint64_t *last_term, uint64_t *total)
{
	struct snap_xfer *x = xfer_find(st, peer);
	uint64_t n;
	int rc;

	*len = 0;
	/* Never replaced merely because the applied index moved on: the
	 * follower would have to start over, and under steady writes would
	 * never finish. */
	if (x && x->index < min_index) {
		xfer_release(st, x);
		x = NULL;
	}
	if (!x) {
		rc = xfer_start(st, peer, &x);
		if (rc)
			return rc;
	}
	x->last_use = ++st->xfer_clock;
	if (offset > x->total)
		return fail(st, STATUS_INVALID_ARGUMENT,
			    "raft storage: snapshot offset %llu beyond its "
			    "%llu bytes",
			    (unsigned long long)offset,
			    (unsigned long long)x->total);
	if (offset != x->offset && x->has_last && offset == x->last_offset) {
		/* A retransmit: the chunk just served. */
		n = x->last.len < cap ? x->last.len : cap;
		if (n)
			memcpy(buf, x->last.data, (size_t)n);
		goto done;
	}
	if (offset != x->offset) {
		/* Anywhere else (a follower that restarted): re-encode from
		 * the start of the same snapshot, or on from the cursor. */
		if (offset < x->offset)
			xfer_rewind(x);
		rc = xfer_emit(st, x, NULL, offset - x->offset, &n);
		if (rc)
			goto err_after_xfer;
		assert(x->offset == offset);
	}
	rc = xfer_emit(st, x, buf, cap, &n);
	if (rc)
		goto err_after_xfer;
	/* Without the copy a retransmit is re-encoded: still correct. */
	x->has_last = buf_set(&x->last, buf, (size_t)n) == 0;
	x->last_offset = offset;
done:
	*len = (size_t)n;
	*last_index = x->index;
	*last_term = x->term;
	*total = x->total;
	return STATUS_OK;

err_after_xfer:
	/* The cursor is lost mid-record: the next read starts over. */
	xfer_release(st, x);
	return rc;
}

void raft_storage_snapshot_drop(struct raft_storage *st, uint32_t peer)
{
	struct snap_xfer *x = xfer_find(st, peer);
	if (x)
		xfer_release(st, x);
}

size_t raft_storage_snapshot_transfers(const struct raft_storage *st)
{
	size_t n = 0;
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		n += st->xfers[i].used;
	return n;
}

size_t raft_storage_snapshot_held_bytes(const struct raft_storage *st)
{
	size_t n = 0;
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		if (st->xfers[i].used)
			n += sizeof(st->xfers[i]) + st->xfers[i].last.cap;
	return n;
}

/* ---- follower side: staging ---- */

static void stage_key(uint8_t key[STAGE_KEY_LEN], uint64_t offset)
{
	memcpy(key, STAGE_PREFIX, STAGE_PREFIX_LEN);
	put_u64be(key + STAGE_PREFIX_LEN, offset);
}

/* Deletes the staging header and every staged chunk. */
static void staging_delete(struct store_batch *b)
{
	store_batch_delete_range(b, STORE_CF_RAFT, STAGE_HEADER_KEY,
				 strlen(STAGE_HEADER_KEY), STAGE_END_KEY,
				 strlen(STAGE_END_KEY));
}

/* index | term | size: the staging header's and the marker's value. */
static void put_triple(struct store_batch *b, const char *key,
		       uint64_t index, uint64_t term, uint64_t size)
{
	uint8_t v[TRIPLE_LEN];
	put_u64be(v, index);
	put_u64be(v + 8, term);
	put_u64be(v + 16, size);
	store_batch_put(b, STORE_CF_RAFT, key, strlen(key), v, sizeof(v));
}

/* Reads a triple record; STATUS_NOT_FOUND when absent. */
static int get_triple(struct raft_storage *st, const char *key,
		      uint64_t *index, uint64_t *term, uint64_t *size)
{
	int rc = store_get(st->store, STORE_CF_RAFT, key, strlen(key),
			   &st->scratch);
	if (rc == STATUS_NOT_FOUND)
		return rc;
	if (rc)
		return fail_store(st, rc, key);
	if (st->scratch.len != TRIPLE_LEN)
		return fail(st, STATUS_CORRUPTION,
			    "raft storage: record \"%s\" has %zu bytes, not %d",
			    key, st->scratch.len, TRIPLE_LEN);
	*index = get_u64be(st->scratch.data);
	*term = get_u64be(st->scratch.data + 8);
	*size = get_u64be(st->scratch.data + 16);
	return STATUS_OK;
}

static void held_note(struct raft_storage *st, size_t n)
{
	if (n > st->stage_peak)
		st->stage_peak = n;
}

static void staged_release(struct raft_storage *st)
{
	buf_free(&st->final);
	st->final_pending = false;
	st->staged_active = false;
	st->staged_index = st->staged_term = st->staged_size = 0;
	st->staged_len = 0;
}

int raft_storage_snapshot_stage(struct raft_storage *st, struct store_batch *b,
				const struct raft_snapshot_chunk *c)
{
	if (c->offset == 0) {
		if (c->len > c->size_bytes)
			return fail(st, STATUS_INVALID_ARGUMENT,
				    "raft storage: snapshot chunk beyond "
				    "its size");
		staged_release(st);
		st->staged_active = true;
		st->staged_index = c->last_index;
		st->staged_term = c->last_term;
		st->staged_size = c->size_bytes;
		if (!c->done) {
			staging_delete(b);
			put_triple(b, STAGE_HEADER_KEY, c->last_index,
				   c->last_term, c->size_bytes);
		}
	} else if (!st->staged_active || st->final_pending ||
		   c->last_index != st->staged_index ||
		   c->last_term != st->staged_term ||
		   c->size_bytes != st->staged_size ||
		   c->offset != st->staged_len) {
		return fail(st, STATUS_INVALID_ARGUMENT,
			    "raft storage: snapshot chunk at %llu does not "
			    "continue the staged snapshot (%llu bytes of %llu)",
			    (unsigned long long)c->offset,
			    (unsigned long long)st->staged_len,
			    (unsigned long long)st->staged_index);
	} else if (c->len > st->staged_size - st->staged_len) {
		return fail(st, STATUS_INVALID_ARGUMENT,
			    "raft storage: snapshot chunk beyond its size");
	}
	if (c->done) {
		/* Written by the install, with its marker (see the header). */
		if (buf_set(&st->final, c->data, c->len))
			return fail(st, STATUS_NO_MEMORY,
				    "raft storage: out of memory");
		held_note(st, st->final.cap);
		st->final_pending = true;
		st->final_offset = c->offset;
	} else if (c->len > 0) {
		uint8_t key[STAGE_KEY_LEN];
		stage_key(key, c->offset);
		store_batch_put(b, STORE_CF_RAFT, key, sizeof(key), c->data,
				c->len);
	}
	st->staged_len += c->len;
	return STATUS_OK;
}

uint64_t raft_storage_snapshot_staged(const struct raft_storage *st)
{
	return st->staged_active ? st->staged_len : 0;
}

size_t raft_storage_snapshot_staging_held_bytes(const struct raft_storage *st)
{
	return st->final.cap;
}

size_t raft_storage_snapshot_staging_peak_bytes(const struct raft_storage *st)
{
	return st->stage_peak;
}

void raft_storage_snapshot_install_writes(const struct raft_storage *st,
					  uint64_t *writes, uint64_t *synced)
{
	*writes = st->install_writes;
	*synced = st->install_synced;
}

/* ---- follower side: parsing the staged stream ---- */

/*
 * The stream is parsed incrementally, fed in pieces of any size: each
 * field (header, tag, a length, a key, a value, the trailer) is consumed
 * as its bytes arrive. Verifying keeps nothing but the 28-byte header
 * buffer; installing (`out` set) assembles one record at a time in
 * key/val and puts it into `out`.
 */
enum parse_state {
	P_HEADER,
	P_TAG,
	P_KLEN,
	P_KEY,
	P_VLEN,
	P_VAL,
	P_TRAILER,
	P_DONE,
};

struct snap_parser {
	enum parse_state state;
	uint64_t need;	/* bytes of the current field still to come */
	uint64_t pos;	/* stream bytes consumed */
	uint64_t field; /* stream offset of the current record */
	uint32_t crc;	/* CRC32C of the bytes before the trailer */
	uint8_t small[SNAP_HEADER_LEN]; /* header, tag, a length, trailer */
	uint8_t cf;
	uint64_t index, term; /* from the header */
	struct buf key, val;  /* the record being assembled (out set) */

	/* Installing: where records go. With `flush`, `out` is the
	 * install's own batch, written whenever it reaches
	 * INSTALL_BATCH_BYTES; without, the caller's batch. */
	struct store_batch *out;
	bool flush;
};

static void parser_init(struct snap_parser *ps, struct store_batch *out,
			bool flush)
{
	memset(ps, 0, sizeof(*ps));
	ps->state = P_HEADER;
	ps->need = SNAP_HEADER_LEN;
	buf_init(&ps->key);
	buf_init(&ps->val);
	ps->out = out;
	ps->flush = flush;
}

static void parser_free(struct snap_parser *ps)
{
	buf_free(&ps->key);
	buf_free(&ps->val);
}

static size_t parser_held(const struct raft_storage *st,
			  const struct snap_parser *ps)
{
	return ps->key.cap + ps->val.cap + st->final.cap +
	       (ps->out ? store_batch_bytes(ps->out) : 0);
}

/* Writes one of the install's own batches (hooked for tests). */
static int install_write(struct raft_storage *st, struct store_batch *b,
			 bool sync)
{
	if (test_writes_left == 0)
		return fail(st, STATUS_IO,
			    "raft storage: install stopped (test hook)");
	if (test_writes_left > 0)
		test_writes_left--;
	int rc = store_write(st->store, b, sync);
	if (rc)
		return fail_store(st, rc, "installing the snapshot");
	st->install_writes++;
	st->install_synced += sync;
	store_batch_clear(b);
	return STATUS_OK;
}

static int parse_record(struct raft_storage *st, struct snap_parser *ps)
{
	if (!ps->out)
		return STATUS_OK;
	store_batch_put(ps->out, (enum store_cf)ps->cf, ps->key.data,
			ps->key.len, ps->val.data, ps->val.len);
	held_note(st, parser_held(st, ps));
	buf_reset(&ps->key);
	buf_reset(&ps->val);
	if (ps->flush && store_batch_bytes(ps->out) >= INSTALL_BATCH_BYTES)
		return install_write(st, ps->out, false);
	return STATUS_OK;
}

/* The current field is complete: checks it and moves to the next. */
static int parse_field_done(struct raft_storage *st, struct snap_parser *ps)
{
	switch (ps->state) {
	case P_HEADER:
		if (memcmp(ps->small, SNAP_MAGIC, SNAP_MAGIC_LEN) != 0 ||
		    get_u32be(ps->small + SNAP_MAGIC_LEN) != SNAP_VERSION)
			return fail(st, STATUS_CORRUPTION,
				    "raft storage: snapshot has a bad magic "
				    "or version");
		ps->index = get_u64be(ps->small + SNAP_MAGIC_LEN + 4);
		ps->term = get_u64be(ps->small + SNAP_MAGIC_LEN + 12);
		ps->state = P_TAG;
		ps->need = 1;
		break;
	case P_TAG:
		if (ps->small[0] == SNAP_END_TAG) {
			ps->state = P_TRAILER;
			ps->need = 4;
			break;
		}
		if (ps->small[0] != STORE_CF_DATA &&
		    ps->small[0] != STORE_CF_META)
			return fail(st, STATUS_CORRUPTION,
				    "raft storage: snapshot record at %llu "
				    "has column family %u",
				    (unsigned long long)ps->field,
				    ps->small[0]);
		ps->cf = ps->small[0];
		ps->state = P_KLEN;
		ps->need = 4;
		break;
	case P_KLEN:
		ps->state = P_KEY;
		ps->need = get_u32be(ps->small);
		break;
	case P_KEY:
		ps->state = P_VLEN;
		ps->need = 4;
		break;
	case P_VLEN:
		ps->state = P_VAL;
		ps->need = get_u32be(ps->small);
		break;
	case P_VAL: {
		int rc = parse_record(st, ps);
		if (rc)
			return rc;
		ps->state = P_TAG;
		ps->need = 1;
		ps->field = ps->pos;
		break;
	}
	case P_TRAILER:
		if (get_u32be(ps->small) != ps->crc)
			return fail(st, STATUS_CORRUPTION,
				    "raft storage: snapshot checksum mismatch "
				    "(%08x, expected %08x)",
				    ps->crc, get_u32be(ps->small));
		ps->state = P_DONE;
		break;
	case P_DONE:
		break;
	}
	return STATUS_OK;
}

static int parse_feed(struct raft_storage *st, struct snap_parser *ps,
		      const uint8_t *p, size_t n)
{
	int rc;
	for (;;) {
		/* Empty keys and values complete without a byte. */
		while (ps->need == 0 && ps->state != P_DONE) {
			rc = parse_field_done(st, ps);
			if (rc)
				return rc;
		}
		if (n == 0)
			return STATUS_OK;
		if (ps->state == P_DONE)
			return fail(st, STATUS_CORRUPTION,
				    "raft storage: snapshot has bytes after "
				    "its trailer at %llu",
				    (unsigned long long)ps->pos);
		size_t take = ps->need < n ? (size_t)ps->need : n;
		struct buf *into = NULL;
		if (ps->state == P_KEY)
			into = &ps->key;
		else if (ps->state == P_VAL)
			into = &ps->val;
		if (into) {
			if (ps->out && buf_append(into, p, take))
				return fail(st, STATUS_NO_MEMORY,
					    "raft storage: out of memory");
		} else {
			size_t width = ps->state == P_HEADER ? SNAP_HEADER_LEN
				       : ps->state == P_TAG  ? 1
							     : 4;
			memcpy(ps->small + (width - ps->need), p, take);
		}
		/* The end tag is covered by the CRC; the trailer is not. */
		if (ps->state != P_TRAILER)
			ps->crc = raft_storage_crc32c(ps->crc, p, take);
		ps->need -= take;
		ps->pos += take;
		p += take;
		n -= take;
	}
}

/* The whole stream was fed: it must have ended exactly there. */
static int parse_finish(struct raft_storage *st, struct snap_parser *ps)
{
	if (ps->state != P_DONE)
		return fail(st, STATUS_CORRUPTION,
			    "raft storage: snapshot record at %llu is "
			    "truncated",
			    (unsigned long long)ps->field);
	return STATUS_OK;
}

/*
 * Feeds the staged chunks stored at offsets [0, upto) to `ps` in order
 * (upto UINT64_MAX: all of them); they must be there, contiguous. *end
 * (may be NULL) is where the last one ended.
 */
static int feed_staged(struct raft_storage *st, struct snap_parser *ps,
		       uint64_t upto, uint64_t *end)
{
	uint64_t off = 0;
	int rc = STATUS_OK;
	struct store_iter *it = store_iter_new(st->store, STORE_CF_RAFT,
					       STAGE_PREFIX, STAGE_PREFIX_LEN,
					       NULL);
	if (!it)
		return fail_store(st, STATUS_NO_MEMORY, "staging iterator");
	for (; off < upto && store_iter_valid(it); store_iter_next(it)) {
		size_t klen, vlen;
		const uint8_t *k = store_iter_key(it, &klen);
		const uint8_t *v = store_iter_value(it, &vlen);
		if (klen != STAGE_KEY_LEN ||
		    get_u64be(k + STAGE_PREFIX_LEN) != off) {
			rc = fail(st, STATUS_CORRUPTION,
				  "raft storage: staged snapshot has a gap "
				  "at %llu",
				  (unsigned long long)off);
			goto done;
		}
		rc = parse_feed(st, ps, v, vlen);
		if (rc)
			goto done;
		off += vlen;
	}
	rc = store_iter_status(it);
	if (rc) {
		rc = fail_store(st, rc, "reading the staged snapshot");
		goto done;
	}
	if (upto != UINT64_MAX && off != upto)
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: staged snapshot has %llu bytes "
			  "stored, expected %llu",
			  (unsigned long long)off, (unsigned long long)upto);
	if (end)
		*end = off;
done:
	store_iter_free(it);
	return rc;
}

/*
 * One pass over the staged stream: the chunks stored before `final_at`
 * and then `final` (NULL: every stored chunk, nothing in memory). Checks
 * the size, the structure, the checksum and that the header names
 * index/term. With `out`, puts the records into it (see snap_parser).
 */
static int stream_pass(struct raft_storage *st, uint64_t final_at,
		       const struct buf *final, uint64_t size, uint64_t index,
		       uint64_t term, struct store_batch *out, bool flush)
{
	struct snap_parser ps;
	uint64_t end = 0;
	int rc;

	parser_init(&ps, out, flush);
	rc = feed_staged(st, &ps, final ? final_at : UINT64_MAX, &end);
	if (rc)
		goto done;
	if (final) {
		rc = parse_feed(st, &ps, final->data, final->len);
		if (rc)
			goto done;
		end += final->len;
	}
	if (end != size) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: staged snapshot has %llu bytes, "
			  "announced %llu",
			  (unsigned long long)end, (unsigned long long)size);
		goto done;
	}
	rc = parse_finish(st, &ps);
	if (rc)
		goto done;
	if (ps.index != index || ps.term != term) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: snapshot holds %llu/%llu, announced "
			  "as %llu/%llu",
			  (unsigned long long)ps.index,
			  (unsigned long long)ps.term,
			  (unsigned long long)index, (unsigned long long)term);
		goto done;
	}
	if (flush && store_batch_count(out) > 0)
		rc = install_write(st, out, false);
done:
	parser_free(&ps);
	return rc;
}

/* ---- follower side: installing ---- */

/* The end key of a delete_range covering every key of `cf`: the last key
 * followed by a zero byte (empty buf when the CF is empty). */
static int cf_end_key(struct raft_storage *st, enum store_cf cf,
		      struct buf *end)
{
	int rc = store_last_key(st->store, cf, NULL, 0, end);
	if (rc == STATUS_NOT_FOUND)
		return STATUS_OK;
	if (rc)
		return fail_store(st, rc, "last key");
	if (buf_append(end, "", 1))
		return fail(st, STATUS_NO_MEMORY, "raft storage: out of memory");
	return STATUS_OK;
}

/* Adds to `b` the deletion of every key of `data` and `meta`. */
static int delete_app_state(struct raft_storage *st, struct store_batch *b)
{
	struct buf data_end, meta_end;
	int rc;

	buf_init(&data_end);
	buf_init(&meta_end);
	rc = cf_end_key(st, STORE_CF_DATA, &data_end);
	if (rc)
		goto done;
	rc = cf_end_key(st, STORE_CF_META, &meta_end);
	if (rc)
		goto done;
	if (data_end.len)
		store_batch_delete_range(b, STORE_CF_DATA, "", 0, data_end.data,
					 data_end.len);
	if (meta_end.len)
		store_batch_delete_range(b, STORE_CF_META, "", 0, meta_end.data,
					 meta_end.len);
done:
	buf_free(&data_end);
	buf_free(&meta_end);
	return rc;
}

/* Adds to `b` the end of an install: applied index, snapshot meta, the
 * log up to the snapshot deleted, marker and staging gone. */
static int install_finish(struct raft_storage *st, struct store_batch *b,
			  uint64_t index, uint64_t term, uint64_t size)
{
	int rc = pack_snapshot_meta(st, index, term, size);
	if (rc)
		return rc;
	put_snapshot_meta(st, b);
	raft_storage_set_applied(st, b, index, term);
	if (index > 0)
		delete_entries(b, 0, index);
	store_batch_delete(b, STORE_CF_RAFT, MARKER_KEY, strlen(MARKER_KEY));
	staging_delete(b);
	if (index > st->snap_index) {
		st->snap_index = index;
		st->snap_term = term;
	}
	if (st->last_index < st->snap_index)
		st->last_index = st->snap_index;
	return STATUS_OK;
}

int raft_storage_snapshot_install(struct raft_storage *st,
				  struct store_batch *b, uint64_t *last_index,
				  uint64_t *last_term)
{
	uint64_t index = st->staged_index, term = st->staged_term;
	uint64_t size = st->staged_size;
	struct store_batch *own = NULL;
	int rc;

	if (!st->staged_active || !st->final_pending ||
	    st->staged_len != size) {
		rc = fail(st, STATUS_INVALID_ARGUMENT,
			  "raft storage: no complete snapshot staged (%llu of "
			  "%llu bytes)",
			  (unsigned long long)st->staged_len,
			  (unsigned long long)size);
		goto done;
	}
	if (size < SNAP_HEADER_LEN + SNAP_TRAILER_LEN) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: snapshot of %llu bytes is too short",
			  (unsigned long long)size);
		goto done;
	}
	/* Verify before touching anything. */
	rc = stream_pass(st, st->final_offset, &st->final, size, index, term,
			 NULL, false);
	if (rc)
		goto done;

	if (size <= INSTALL_BATCH_BYTES) {
		/* Small: all of it in the ready's batch, atomic as is. */
		rc = delete_app_state(st, b);
		if (rc)
			goto done;
		rc = stream_pass(st, st->final_offset, &st->final, size, index,
				 term, b, false);
		if (rc)
			goto done;
		rc = install_finish(st, b, index, term, size);
		goto done;
	}

	/* Large: the marker, synced with the last chunk and the deletion of
	 * the old state; from then on a restart rolls forward. */
	own = store_batch_new(st->store);
	if (!own) {
		rc = fail_store(st, STATUS_NO_MEMORY, "install batch");
		goto done;
	}
	if (st->final_offset == 0) {
		staging_delete(own);
		put_triple(own, STAGE_HEADER_KEY, index, term, size);
	}
	uint8_t key[STAGE_KEY_LEN];
	stage_key(key, st->final_offset);
	store_batch_put(own, STORE_CF_RAFT, key, sizeof(key), st->final.data,
			st->final.len);
	put_triple(own, MARKER_KEY, index, term, size);
	rc = delete_app_state(st, own);
	if (rc)
		goto done;
	rc = install_write(st, own, true);
	if (rc)
		goto done;
	buf_free(&st->final);
	/* The records in batches of their own; the ready's synced write
	 * (the WAL is ordered) makes them durable with the final part. */
	rc = stream_pass(st, 0, NULL, size, index, term, own, true);
	if (rc)
		goto done;
	rc = install_finish(st, b, index, term, size);
done:
	store_batch_free(own);
	staged_release(st);
	if (rc == STATUS_OK) {
		if (last_index)
			*last_index = index;
		if (last_term)
			*last_term = term;
	}
	return rc;
}

/* ---- recovery at open ---- */

/* Adds to `b` what the ready that installs would have written to the log
 * and hard state: the log after the snapshot is kept only if it holds the
 * snapshot's last entry (as the core does), and the term is at least the
 * snapshot's. */
static int recover_log(struct raft_storage *st, struct store_batch *b,
		       uint64_t index, uint64_t term)
{
	uint8_t key[ENTRY_KEY_LEN];
	ProtobufCMessage *m = NULL, *hs = NULL;
	bool keep = false;
	int rc;

	entry_key(key, index);
	rc = store_get(st->store, STORE_CF_RAFT, key, sizeof(key),
		       &st->scratch);
	if (rc == STATUS_OK) {
		if (codec_unpack(&skv__entry__descriptor, st->scratch.data,
				 st->scratch.len, &m))
			return fail(st, STATUS_CORRUPTION,
				    "raft storage: log entry %llu does not "
				    "decode",
				    (unsigned long long)index);
		keep = ((Skv__Entry *)m)->term == term;
		codec_free(m);
	} else if (rc != STATUS_NOT_FOUND) {
		return fail_store(st, rc, "log entry");
	}
	if (!keep)
		delete_entries(b, 0, UINT64_MAX);

	rc = load_record(st, STORE_CF_RAFT, KEY_HARD_STATE,
			 &skv__hard_state__descriptor, &hs);
	if (rc)
		return rc;
	Skv__HardState h = SKV__HARD_STATE__INIT;
	if (hs) {
		h.term = ((Skv__HardState *)hs)->term;
		h.vote = ((Skv__HardState *)hs)->vote;
		h.commit = ((Skv__HardState *)hs)->commit;
		codec_free(hs);
	}
	if (h.term >= term && h.commit >= index)
		return STATUS_OK;
	if (h.term < term) {
		/* A newer term with no vote cast in it is always safe. */
		h.term = term;
		h.vote = 0;
	}
	if (h.commit < index)
		h.commit = index;
	if (codec_pack(&h.base, &st->scratch))
		return fail(st, STATUS_NO_MEMORY, "raft storage: out of memory");
	store_batch_put(b, STORE_CF_RAFT, KEY_HARD_STATE,
			strlen(KEY_HARD_STATE), st->scratch.data,
			st->scratch.len);
	return STATUS_OK;
}

static int recover(struct raft_storage *st)
{
	uint64_t index, term, size, hi, ht, hsz;
	struct store_batch *b = store_batch_new(st->store);
	int rc;

	if (!b)
		return fail_store(st, STATUS_NO_MEMORY, "recovery batch");
	rc = get_triple(st, MARKER_KEY, &index, &term, &size);
	if (rc == STATUS_NOT_FOUND) {
		/* No install under way: a partly staged snapshot is of no
		 * use (the core accepts a transfer only from offset 0 after
		 * a restart), drop it. */
		struct buf k;
		buf_init(&k);
		rc = store_last_key(st->store, STORE_CF_RAFT, "ss", 2, &k);
		buf_free(&k);
		if (rc == STATUS_NOT_FOUND) {
			rc = STATUS_OK;
			goto done;
		}
		if (rc) {
			rc = fail_store(st, rc, "staging");
			goto done;
		}
		staging_delete(b);
		rc = install_write(st, b, false);
		goto done;
	}
	if (rc)
		goto done;
	rc = get_triple(st, STAGE_HEADER_KEY, &hi, &ht, &hsz);
	if (rc == STATUS_OK && (hi != index || ht != term || hsz != size))
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: install marker %llu/%llu does not "
			  "match the staged snapshot %llu/%llu",
			  (unsigned long long)index, (unsigned long long)term,
			  (unsigned long long)hi, (unsigned long long)ht);
	else if (rc == STATUS_NOT_FOUND)
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: install marker without a staged "
			  "snapshot");
	if (rc)
		goto done;
	/* Putting the records again is idempotent (the marker's write
	 * deleted everything else). A stream that fails its checks now
	 * stops here, before the final write: the marker stays. */
	rc = stream_pass(st, 0, NULL, size, index, term, b, true);
	if (rc)
		goto done;
	rc = recover_log(st, b, index, term);
	if (rc)
		goto done;
	rc = install_finish(st, b, index, term, size);
	if (rc)
		goto done;
	rc = install_write(st, b, true);
done:
	store_batch_free(b);
	return rc;
}

int raft_storage_recover(struct store *store, char *errmsg, size_t cap)
{
	struct raft_storage *st = mem_calloc(1, sizeof(*st));
	if (!st) {
		snprintf(errmsg, cap, "raft storage: out of memory");
		return STATUS_NO_MEMORY;
	}
	st->store = store;
	buf_init(&st->scratch);
	buf_init(&st->final);
	int rc = recover(st);
	if (rc)
		snprintf(errmsg, cap, "%s", st->errmsg);
	raft_storage_free(st);
	return rc;
}

void raft_storage_test_fail_install_after(long writes)
{
	test_writes_left = writes;
}
