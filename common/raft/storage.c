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

	/* Outgoing snapshot stream (leader side), built on demand. */
	struct buf out;
	bool out_valid;
	uint64_t out_index, out_term;

	/* Incoming snapshot stream (follower side). */
	struct buf staged;
	bool staged_active;
	uint64_t staged_index, staged_term, staged_size;

	struct buf scratch; /* packing one record */
};

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
	buf_init(&st->out);
	buf_init(&st->staged);
	buf_init(&st->scratch);

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
	buf_free(&st->out);
	buf_free(&st->staged);
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

/* ---- leader side: building the stream ---- */

static int append_record(struct buf *out, uint8_t cf, const void *k,
			 size_t klen, const void *v, size_t vlen)
{
	if (klen > UINT32_MAX || vlen > UINT32_MAX)
		return STATUS_TOO_LARGE;
	if (buf_reserve(out, 1 + 4 + klen + 4 + vlen))
		return STATUS_NO_MEMORY;
	uint8_t *p = out->data + out->len;
	*p++ = cf;
	put_u32be(p, (uint32_t)klen);
	p += 4;
	memcpy(p, k, klen);
	p += klen;
	put_u32be(p, (uint32_t)vlen);
	p += 4;
	memcpy(p, v, vlen);
	out->len += 1 + 4 + klen + 4 + vlen;
	return STATUS_OK;
}

static int build_cf(struct raft_storage *st, struct store_snapshot *snap,
		    enum store_cf cf)
{
	struct store_iter *it = store_iter_new(st->store, cf, NULL, 0, snap);
	int rc = STATUS_OK;
	if (!it)
		return fail_store(st, STATUS_NO_MEMORY, "snapshot iterator");
	for (; store_iter_valid(it); store_iter_next(it)) {
		size_t klen, vlen;
		const void *k = store_iter_key(it, &klen);
		const void *v = store_iter_value(it, &vlen);
		rc = append_record(&st->out, (uint8_t)cf, k, klen, v, vlen);
		if (rc) {
			fail(st, rc, "raft storage: snapshot record: %s",
			     status_str(rc));
			goto done;
		}
	}
	rc = store_iter_status(it);
	if (rc)
		fail_store(st, rc, "reading the snapshot");
done:
	store_iter_free(it);
	return rc;
}

static int build_snapshot(struct raft_storage *st)
{
	uint8_t hdr[SNAP_HEADER_LEN], trailer[SNAP_TRAILER_LEN];
	uint64_t index = 0, term = 0;
	int rc;

	st->out_valid = false;
	buf_reset(&st->out);
	struct store_snapshot *snap = store_snapshot_new(st->store);
	if (!snap)
		return fail_store(st, STATUS_NO_MEMORY, "snapshot");
	rc = store_get_at(st->store, snap, STORE_CF_META, APPLIED_KEY,
			  APPLIED_KEY_LEN, &st->scratch);
	if (rc == STATUS_OK && st->scratch.len == APPLIED_VAL_LEN) {
		index = get_u64be(st->scratch.data);
		term = get_u64be(st->scratch.data + 8);
	} else if (rc == STATUS_OK) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: applied index record has %zu bytes",
			  st->scratch.len);
		goto err_after_snap;
	} else if (rc != STATUS_NOT_FOUND) {
		rc = fail_store(st, rc, "applied index");
		goto err_after_snap;
	}

	memcpy(hdr, SNAP_MAGIC, SNAP_MAGIC_LEN);
	put_u32be(hdr + SNAP_MAGIC_LEN, SNAP_VERSION);
	put_u64be(hdr + SNAP_MAGIC_LEN + 4, index);
	put_u64be(hdr + SNAP_MAGIC_LEN + 12, term);
	if (buf_append(&st->out, hdr, sizeof(hdr))) {
		rc = fail(st, STATUS_NO_MEMORY, "raft storage: out of memory");
		goto err_after_snap;
	}
	rc = build_cf(st, snap, STORE_CF_DATA);
	if (rc)
		goto err_after_snap;
	rc = build_cf(st, snap, STORE_CF_META);
	if (rc)
		goto err_after_snap;
	trailer[0] = SNAP_END_TAG;
	uint32_t crc = raft_storage_crc32c(0, st->out.data, st->out.len);
	crc = raft_storage_crc32c(crc, trailer, 1);
	put_u32be(trailer + 1, crc);
	if (buf_append(&st->out, trailer, sizeof(trailer))) {
		rc = fail(st, STATUS_NO_MEMORY, "raft storage: out of memory");
		goto err_after_snap;
	}
	store_snapshot_free(st->store, snap);
	st->out_valid = true;
	st->out_index = index;
	st->out_term = term;
	return STATUS_OK;

err_after_snap:
	store_snapshot_free(st->store, snap);
	buf_free(&st->out);
	return rc;
}

int raft_storage_snapshot_read(struct raft_storage *st, uint64_t min_index,
			       uint64_t offset, void *buf, size_t cap,
			       size_t *len, uint64_t *last_index,
			       uint64_t *last_term, uint64_t *total)
{
	*len = 0;
	/* Not rebuilt merely because the applied index moved on: another
	 * follower may be halfway through this stream, and replacing it
	 * would restart that transfer (two catching up under steady writes
	 * would restart each other forever). */
	if (!st->out_valid || st->out_index < min_index) {
		int rc = build_snapshot(st);
		if (rc)
			return rc;
	}
	if (offset > st->out.len)
		return fail(st, STATUS_INVALID_ARGUMENT,
			    "raft storage: snapshot offset %llu beyond its "
			    "%zu bytes",
			    (unsigned long long)offset, st->out.len);
	size_t n = st->out.len - (size_t)offset;
	if (n > cap)
		n = cap;
	if (n)
		memcpy(buf, st->out.data + offset, n);
	*len = n;
	*last_index = st->out_index;
	*last_term = st->out_term;
	*total = st->out.len;
	return STATUS_OK;
}

void raft_storage_snapshot_drop_cache(struct raft_storage *st)
{
	buf_free(&st->out);
	st->out_valid = false;
}

size_t raft_storage_snapshot_cached_bytes(const struct raft_storage *st)
{
	return st->out_valid ? st->out.len : 0;
}

/* ---- follower side ---- */

int raft_storage_snapshot_stage(struct raft_storage *st,
				const struct raft_snapshot_chunk *c)
{
	if (c->offset == 0) {
		if (c->len > c->size_bytes)
			return fail(st, STATUS_INVALID_ARGUMENT,
				    "raft storage: snapshot chunk beyond "
				    "its size");
		buf_reset(&st->staged);
		st->staged_active = true;
		st->staged_index = c->last_index;
		st->staged_term = c->last_term;
		st->staged_size = c->size_bytes;
	} else if (!st->staged_active || c->last_index != st->staged_index ||
		   c->last_term != st->staged_term ||
		   c->size_bytes != st->staged_size ||
		   c->offset != st->staged.len) {
		return fail(st, STATUS_INVALID_ARGUMENT,
			    "raft storage: snapshot chunk at %llu does not "
			    "continue the staged snapshot (%llu bytes of %llu)",
			    (unsigned long long)c->offset,
			    (unsigned long long)st->staged.len,
			    (unsigned long long)st->staged_index);
	} else if (c->len > st->staged_size - st->staged.len) {
		return fail(st, STATUS_INVALID_ARGUMENT,
			    "raft storage: snapshot chunk beyond its size");
	}
	if (buf_append(&st->staged, c->data, c->len))
		return fail(st, STATUS_NO_MEMORY, "raft storage: out of memory");
	return STATUS_OK;
}

uint64_t raft_storage_snapshot_staged(const struct raft_storage *st)
{
	return st->staged_active ? st->staged.len : 0;
}

static void staged_release(struct raft_storage *st)
{
	buf_free(&st->staged);
	st->staged_active = false;
	st->staged_index = st->staged_term = st->staged_size = 0;
}

/* Walks the records of a verified stream; with `b`, puts them. Returns
 * STATUS_CORRUPTION when a record is malformed. */
static int walk_records(struct raft_storage *st, const uint8_t *p, size_t n,
			struct store_batch *b)
{
	size_t pos = SNAP_HEADER_LEN, end = n - SNAP_TRAILER_LEN;
	while (pos < end) {
		uint8_t cf = p[pos];
		if (cf != STORE_CF_DATA && cf != STORE_CF_META)
			return fail(st, STATUS_CORRUPTION,
				    "raft storage: snapshot record at %zu has "
				    "column family %u",
				    pos, cf);
		if (end - pos < 1 + 4)
			break;
		size_t klen = get_u32be(p + pos + 1);
		if (end - pos - 5 < klen + 4)
			break;
		const uint8_t *k = p + pos + 5;
		size_t vlen = get_u32be(k + klen);
		if (end - pos - 9 - klen < vlen)
			break;
		const uint8_t *v = k + klen + 4;
		if (b)
			store_batch_put(b, (enum store_cf)cf, k, klen, v, vlen);
		pos += 9 + klen + vlen;
	}
	if (pos != end || p[end] != SNAP_END_TAG)
		return fail(st, STATUS_CORRUPTION,
			    "raft storage: snapshot record at %zu is truncated",
			    pos);
	return STATUS_OK;
}

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

int raft_storage_snapshot_install(struct raft_storage *st,
				  struct store_batch *b, uint64_t *last_index,
				  uint64_t *last_term)
{
	const uint8_t *p = st->staged.data;
	size_t n = st->staged.len;
	struct buf data_end, meta_end;
	int rc;

	buf_init(&data_end);
	buf_init(&meta_end);
	if (!st->staged_active || n != st->staged_size) {
		rc = fail(st, STATUS_INVALID_ARGUMENT,
			  "raft storage: no complete snapshot staged (%zu of "
			  "%llu bytes)",
			  n, (unsigned long long)st->staged_size);
		goto done;
	}
	if (n < SNAP_HEADER_LEN + SNAP_TRAILER_LEN) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: snapshot of %zu bytes is too short", n);
		goto done;
	}
	uint32_t crc = raft_storage_crc32c(0, p, n - 4);
	if (crc != get_u32be(p + n - 4)) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: snapshot checksum mismatch (%08x, "
			  "expected %08x)",
			  crc, get_u32be(p + n - 4));
		goto done;
	}
	uint64_t index = get_u64be(p + SNAP_MAGIC_LEN + 4);
	uint64_t term = get_u64be(p + SNAP_MAGIC_LEN + 12);
	if (memcmp(p, SNAP_MAGIC, SNAP_MAGIC_LEN) != 0 ||
	    get_u32be(p + SNAP_MAGIC_LEN) != SNAP_VERSION) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: snapshot has a bad magic or version");
		goto done;
	}
	if (index != st->staged_index || term != st->staged_term) {
		rc = fail(st, STATUS_CORRUPTION,
			  "raft storage: snapshot holds %llu/%llu, announced "
			  "as %llu/%llu",
			  (unsigned long long)index, (unsigned long long)term,
			  (unsigned long long)st->staged_index,
			  (unsigned long long)st->staged_term);
		goto done;
	}
	rc = walk_records(st, p, n, NULL);
	if (rc)
		goto done;
	rc = cf_end_key(st, STORE_CF_DATA, &data_end);
	if (rc)
		goto done;
	rc = cf_end_key(st, STORE_CF_META, &meta_end);
	if (rc)
		goto done;
	rc = pack_snapshot_meta(st, index, term, n);
	if (rc)
		goto done;
	/* The batch has nothing to fail on from here: safe to fill. */
	if (data_end.len)
		store_batch_delete_range(b, STORE_CF_DATA, "", 0, data_end.data,
					 data_end.len);
	if (meta_end.len)
		store_batch_delete_range(b, STORE_CF_META, "", 0, meta_end.data,
					 meta_end.len);
	walk_records(st, p, n, b);
	raft_storage_set_applied(st, b, index, term);
	if (index > 0)
		delete_entries(b, 0, index);
	put_snapshot_meta(st, b);
	if (index > st->snap_index) {
		st->snap_index = index;
		st->snap_term = term;
	}
	if (st->last_index < st->snap_index)
		st->last_index = st->snap_index;
	if (last_index)
		*last_index = index;
	if (last_term)
		*last_term = term;
done:
	buf_free(&data_end);
	buf_free(&meta_end);
	staged_release(st);
	return rc;
}
