/* Raft's durable state in a store (common/raft/storage): what a ready
 * saves is what the next open loads, suffix overwrite, compaction and
 * discard, corruption detection, and the snapshot stream from one store to
 * another: staged on disk, verified and installed in bounded memory, an
 * install crashed after any of its phases rolled forward at the next
 * start. Stores live in RocksDB's in-memory env; closing and reopening on
 * the same env is a restart. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/raft/storage.h"
#include "common/status.h"
#include "common/store/store.h"
#include "tests/store_dump.h"

static struct store_memenv *env;

static void setup(void)
{
	env = store_memenv_new();
	cr_assert_not_null(env);
}

static void teardown(void)
{
	store_memenv_free(env);
	env = NULL;
}

TestSuite(raft_storage, .init = setup, .fini = teardown, .timeout = 60);

static struct store *open_store(const char *path)
{
	struct store_opts o = {
		.path = path,
		.create_if_missing = true,
		.memenv = env,
		.block_cache_bytes = 1 << 20,
	};
	struct store *s;
	char err[256];
	cr_assert_eq(store_open(&o, &s, err, sizeof(err)), STATUS_OK, "%s",
		     err);
	return s;
}

static struct raft_storage *open_storage(struct store *s,
					 struct raft_boot *boot)
{
	struct raft_storage *st;
	char err[256];
	int rc = raft_storage_open(s, &st, boot, err, sizeof(err));
	cr_assert_eq(rc, STATUS_OK, "%s: %s", status_name(rc), err);
	return st;
}

/* Opening must fail with `status`; returns the message. */
static const char *open_fails(struct store *s, int status)
{
	static char err[256];
	struct raft_storage *st;
	struct raft_boot boot;
	int rc = raft_storage_open(s, &st, &boot, err, sizeof(err));
	cr_assert_eq(rc, status, "got %s (%s)", status_name(rc), err);
	cr_assert_null(st);
	cr_assert_eq(boot.n_entries, 0);
	return err;
}

/* Entries [from, to] with the given term; data "e<index>.<term>". */
struct entries {
	struct raft_entry e[64];
	char data[64][32];
	size_t n;
};

static void make_entries(struct entries *es, uint64_t from, uint64_t to,
			 uint64_t term)
{
	es->n = 0;
	for (uint64_t i = from; i <= to; i++) {
		size_t k = es->n++;
		cr_assert_lt(k, 64);
		int len = snprintf(es->data[k], sizeof(es->data[k]),
				   "e%llu.%llu", (unsigned long long)i,
				   (unsigned long long)term);
		es->e[k] = (struct raft_entry){
			.term = term,
			.index = i,
			.type = i % 7 == 0 ? SKV__ENTRY_TYPE__ENTRY_NOOP
					   : SKV__ENTRY_TYPE__ENTRY_NORMAL,
			.data = (uint8_t *)es->data[k],
			.len = (size_t)len,
		};
	}
}

/* Saves `rd` in one synced write. */
static void save(struct store *s, struct raft_storage *st,
		 const struct raft_ready *rd)
{
	struct store_batch *b = store_batch_new(s);
	cr_assert_not_null(b);
	cr_assert_eq(raft_storage_save(st, b, rd), STATUS_OK);
	cr_assert_eq(store_write(s, b, true), STATUS_OK, "%s", store_errmsg(s));
	store_batch_free(b);
}

static void save_entries(struct store *s, struct raft_storage *st,
			 uint64_t from, uint64_t to, uint64_t term)
{
	struct entries es;
	struct raft_ready rd = {0};
	make_entries(&es, from, to, term);
	rd.hard_state_changed = true;
	rd.term = term;
	rd.vote = 1;
	rd.commit = 0;
	rd.entries = es.e;
	rd.n_entries = es.n;
	save(s, st, &rd);
}

static void set_applied(struct store *s, struct raft_storage *st,
			uint64_t index, uint64_t term)
{
	struct store_batch *b = store_batch_new(s);
	raft_storage_set_applied(st, b, index, term);
	cr_assert_eq(store_write(s, b, true), STATUS_OK);
	store_batch_free(b);
}

/* The boot entries are [from, to] with data "e<index>.<term of index>",
 * where term_of gives the term. */
static void check_boot_entries(const struct raft_boot *boot, uint64_t from,
			       uint64_t to, uint64_t (*term_of)(uint64_t))
{
	cr_assert_eq(boot->n_entries, to >= from ? to - from + 1 : 0);
	for (size_t k = 0; k < boot->n_entries; k++) {
		const Skv__Entry *e = boot->entries[k];
		uint64_t i = from + k;
		char want[32];
		snprintf(want, sizeof(want), "e%llu.%llu",
			 (unsigned long long)i,
			 (unsigned long long)term_of(i));
		cr_assert_eq(e->index, i);
		cr_assert_eq(e->term, term_of(i), "entry %llu",
			     (unsigned long long)i);
		cr_assert_eq(e->type, i % 7 == 0 ? SKV__ENTRY_TYPE__ENTRY_NOOP
						 : SKV__ENTRY_TYPE__ENTRY_NORMAL);
		cr_assert_eq(e->data.len, strlen(want));
		cr_assert(memcmp(e->data.data, want, e->data.len) == 0);
	}
}

static uint64_t term_2(uint64_t i) { return 2; }
static uint64_t term_2_then_5(uint64_t i) { return i < 6 ? 2 : 5; }

static bool raft_key_exists(struct store *s, uint64_t index)
{
	uint8_t key[9] = {'e'};
	struct buf v;
	buf_init(&v);
	put_u64be(key + 1, index);
	int rc = store_get(s, STORE_CF_RAFT, key, sizeof(key), &v);
	buf_free(&v);
	cr_assert(rc == STATUS_OK || rc == STATUS_NOT_FOUND);
	return rc == STATUS_OK;
}

/* ---- log ---- */

Test(raft_storage, empty_store_boots_empty)
{
	struct store *s = open_store("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);
	cr_assert_eq(boot.term, 0);
	cr_assert_eq(boot.vote, 0);
	cr_assert_eq(boot.n_entries, 0);
	cr_assert_eq(boot.snapshot_index, 0);
	cr_assert_eq(boot.applied, 0);
	cr_assert_eq(raft_storage_last_index(st), 0);
	raft_storage_free(st);
	store_close(s);
}

Test(raft_storage, save_load_round_trip)
{
	struct store *s = open_store("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);
	struct entries es;
	struct raft_ready rd = {0};

	make_entries(&es, 1, 20, 2);
	rd.hard_state_changed = true;
	rd.term = 3;
	rd.vote = 2;
	rd.commit = 12;
	rd.entries = es.e;
	rd.n_entries = es.n;
	save(s, st, &rd);
	set_applied(s, st, 9, 2);
	cr_assert_eq(raft_storage_last_index(st), 20);
	raft_storage_free(st);
	store_close(s);

	s = open_store("/a");
	st = open_storage(s, &boot);
	cr_assert_eq(boot.term, 3);
	cr_assert_eq(boot.vote, 2);
	cr_assert_eq(boot.commit, 12);
	cr_assert_eq(boot.applied, 9);
	cr_assert_eq(boot.snapshot_index, 0);
	check_boot_entries(&boot, 1, 20, term_2);
	cr_assert_eq(raft_storage_applied_term(st), 2);
	raft_storage_boot_release(st);
	raft_storage_boot_release(st); /* idempotent */

	/* A ready without hard-state change leaves it alone. */
	struct raft_ready rd2 = {0};
	make_entries(&es, 21, 21, 3);
	rd2.entries = es.e;
	rd2.n_entries = 1;
	rd2.term = 99; /* ignored: not changed */
	save(s, st, &rd2);
	raft_storage_free(st);
	st = open_storage(s, &boot);
	cr_assert_eq(boot.term, 3);
	cr_assert_eq(boot.n_entries, 21);
	raft_storage_free(st);
	store_close(s);
}

Test(raft_storage, overwriting_a_suffix_deletes_what_lies_beyond)
{
	struct store *s = open_store("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);

	save_entries(s, st, 1, 10, 2);
	/* A new leader of term 5 replaces 6.. with a shorter log. */
	save_entries(s, st, 6, 7, 5);
	cr_assert_eq(raft_storage_last_index(st), 7);
	for (uint64_t i = 8; i <= 10; i++)
		cr_assert_not(raft_key_exists(s, i), "entry %llu survived",
			      (unsigned long long)i);
	raft_storage_free(st);

	st = open_storage(s, &boot);
	check_boot_entries(&boot, 1, 7, term_2_then_5);
	/* And a longer one replacing from the middle. */
	save_entries(s, st, 6, 30, 5);
	raft_storage_free(st);
	st = open_storage(s, &boot);
	check_boot_entries(&boot, 1, 30, term_2_then_5);
	raft_storage_free(st);
	store_close(s);
}

Test(raft_storage, compaction_drops_the_prefix_and_records_the_snapshot)
{
	struct store *s = open_store("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);

	save_entries(s, st, 1, 10, 2);
	set_applied(s, st, 6, 2);
	struct raft_ready rd = {.compact_index = 5, .compact_term = 2};
	save(s, st, &rd);
	cr_assert_eq(raft_storage_snapshot_index(st), 5);
	for (uint64_t i = 1; i <= 5; i++)
		cr_assert_not(raft_key_exists(s, i));
	cr_assert(raft_key_exists(s, 6));
	/* A stale compaction point changes nothing. */
	struct raft_ready stale = {.compact_index = 3, .compact_term = 2};
	save(s, st, &stale);
	raft_storage_free(st);

	st = open_storage(s, &boot);
	cr_assert_eq(boot.snapshot_index, 5);
	cr_assert_eq(boot.snapshot_term, 2);
	cr_assert_eq(boot.applied, 6);
	check_boot_entries(&boot, 6, 10, term_2);

	/* Compacting everything leaves an empty log after the snapshot. */
	set_applied(s, st, 10, 2);
	struct raft_ready all = {.compact_index = 10, .compact_term = 2};
	save(s, st, &all);
	raft_storage_free(st);
	st = open_storage(s, &boot);
	cr_assert_eq(boot.snapshot_index, 10);
	cr_assert_eq(boot.n_entries, 0);
	cr_assert_eq(raft_storage_last_index(st), 10);
	/* The log continues after it. */
	save_entries(s, st, 11, 12, 2);
	raft_storage_free(st);
	st = open_storage(s, &boot);
	check_boot_entries(&boot, 11, 12, term_2);
	raft_storage_free(st);
	store_close(s);
}

Test(raft_storage, discard_all_then_new_entries)
{
	struct store *s = open_store("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);

	save_entries(s, st, 1, 10, 2);
	/* An installed snapshot at 40 (term 5) from another history; the
	 * leader's entries 41.. come in the same ready. */
	struct entries es;
	make_entries(&es, 41, 43, 5);
	struct raft_ready rd = {
		.hard_state_changed = true,
		.term = 5,
		.vote = 0,
		.commit = 40,
		.compact_index = 40,
		.compact_term = 5,
		.log_discard_all = true,
		.entries = es.e,
		.n_entries = es.n,
	};
	struct store_batch *b = store_batch_new(s);
	cr_assert_eq(raft_storage_save(st, b, &rd), STATUS_OK);
	raft_storage_set_applied(st, b, 40, 5);
	cr_assert_eq(store_write(s, b, true), STATUS_OK);
	store_batch_free(b);
	for (uint64_t i = 1; i <= 10; i++)
		cr_assert_not(raft_key_exists(s, i));
	raft_storage_free(st);

	st = open_storage(s, &boot);
	cr_assert_eq(boot.snapshot_index, 40);
	cr_assert_eq(boot.applied, 40);
	cr_assert_eq(boot.n_entries, 3);
	cr_assert_eq(boot.entries[0]->index, 41);
	raft_storage_free(st);
	store_close(s);
}

/* ---- corruption ---- */

static void put_raw(struct store *s, enum store_cf cf, const void *k,
		    size_t klen, const void *v, size_t vlen)
{
	cr_assert_eq(store_put(s, cf, k, klen, v, vlen, false), STATUS_OK);
}

static void put_entry_key(struct store *s, uint64_t index, const void *v,
			  size_t vlen)
{
	uint8_t key[9] = {'e'};
	put_u64be(key + 1, index);
	put_raw(s, STORE_CF_RAFT, key, sizeof(key), v, vlen);
}

/* A store with entries 1..10 of term 2 and hard state term 2. */
static struct store *store_with_log(const char *path)
{
	struct store *s = open_store(path);
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);
	save_entries(s, st, 1, 10, 2);
	raft_storage_free(st);
	return s;
}

Test(raft_storage, undecodable_entry_is_corruption)
{
	struct store *s = store_with_log("/a");
	put_entry_key(s, 4, "\x08\xff", 2);
	const char *err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "entry 4"), "%s", err);
	store_close(s);
}

Test(raft_storage, entry_under_the_wrong_key_is_corruption)
{
	struct store *s = store_with_log("/a");
	Skv__Entry e = SKV__ENTRY__INIT;
	struct buf v;
	buf_init(&v);
	e.term = 2;
	e.index = 9;
	cr_assert_eq(codec_pack(&e.base, &v), STATUS_OK);
	put_entry_key(s, 4, v.data, v.len);
	buf_free(&v);
	const char *err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "says index 9"), "%s", err);
	store_close(s);
}

Test(raft_storage, gap_in_the_log_is_corruption)
{
	struct store *s = store_with_log("/a");
	uint8_t key[9] = {'e'};
	put_u64be(key + 1, 5);
	cr_assert_eq(store_delete(s, STORE_CF_RAFT, key, 9, false), STATUS_OK);
	const char *err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "gap"), "%s", err);
	store_close(s);
}

Test(raft_storage, decreasing_term_is_corruption)
{
	struct store *s = open_store("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);
	save_entries(s, st, 1, 5, 4);
	save_entries(s, st, 6, 6, 3); /* hard state now term 3: fix below */
	struct raft_ready rd = {.hard_state_changed = true, .term = 4};
	save(s, st, &rd);
	raft_storage_free(st);
	const char *err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "entry 6 has term 3"), "%s", err);
	store_close(s);
}

Test(raft_storage, entry_term_above_current_term_is_corruption)
{
	struct store *s = store_with_log("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);
	struct raft_ready rd = {.hard_state_changed = true, .term = 1};
	save(s, st, &rd);
	raft_storage_free(st);
	open_fails(s, STATUS_CORRUPTION);
	store_close(s);
}

Test(raft_storage, bad_hard_state_snapshot_meta_or_applied_is_corruption)
{
	struct store *s = store_with_log("/a");
	put_raw(s, STORE_CF_RAFT, "hs", 2, "\x0a\x05zz", 4);
	const char *err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "\"hs\""), "%s", err);
	store_close(s);

	s = store_with_log("/b");
	put_raw(s, STORE_CF_RAFT, "snap", 4, "\x18", 1);
	err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "\"snap\""), "%s", err);
	store_close(s);

	s = store_with_log("/c");
	put_raw(s, STORE_CF_META, RAFT_STORAGE_META_RESERVED "applied", 13,
		"short", 5);
	err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "applied"), "%s", err);
	store_close(s);
}

Test(raft_storage, applied_outside_the_log_is_corruption)
{
	struct store *s = store_with_log("/a");
	struct raft_boot boot;
	struct raft_storage *st = open_storage(s, &boot);
	set_applied(s, st, 11, 2); /* beyond the last entry */
	raft_storage_free(st);
	const char *err = open_fails(s, STATUS_CORRUPTION);
	cr_assert(strstr(err, "applied index 11"), "%s", err);
	store_close(s);

	s = store_with_log("/b");
	st = open_storage(s, &boot);
	struct raft_ready rd = {.compact_index = 4, .compact_term = 2};
	save(s, st, &rd); /* applied still 0 < snapshot 4 */
	raft_storage_free(st);
	open_fails(s, STATUS_CORRUPTION);
	store_close(s);
}

Test(raft_storage, open_survives_allocation_failures)
{
	struct store *s = store_with_log("/a");
	for (long n = 1;; n++) {
		struct raft_storage *st;
		struct raft_boot boot;
		char err[256];
		mem_fail_after(n);
		int rc = raft_storage_open(s, &st, &boot, err, sizeof(err));
		mem_fail_reset();
		if (rc == STATUS_OK) {
			cr_assert_eq(boot.n_entries, 10);
			raft_storage_free(st);
			break;
		}
		cr_assert(rc == STATUS_NO_MEMORY || rc == STATUS_CORRUPTION,
			  "n=%ld: %s", n, status_name(rc));
		cr_assert_null(st);
		cr_assert_lt(n, 10000);
	}
	store_close(s);
}

/* ---- snapshots ---- */

static void put_kv(struct store *s, enum store_cf cf, const void *k,
		   size_t klen, const char *v)
{
	put_raw(s, cf, k, klen, v, strlen(v));
}

/* Application state on the leader: binary keys, an empty value, a big
 * value, meta keys; applied index 42 in term 7. */
static void fill_app_state(struct store *s, struct raft_storage *st)
{
	char big[5000];
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	for (int i = 0; i < 300; i++) {
		uint8_t k[8];
		put_u32be(k, (uint32_t)(i % 16));
		put_u32be(k + 4, (uint32_t)i);
		char v[32];
		snprintf(v, sizeof(v), "value-%d", i);
		put_kv(s, STORE_CF_DATA, k, sizeof(k), v);
	}
	put_kv(s, STORE_CF_DATA, "\xff\xff\xff\xff", 4, "");
	put_kv(s, STORE_CF_DATA, "\x00\x00\x00\x00", 4, big);
	put_kv(s, STORE_CF_META, "dedup/1", 7, "seq 4");
	put_kv(s, STORE_CF_META, "config", 6, "num 3");
	set_applied(s, st, 42, 7);
}

/* Stages one chunk into `st` (of store `s`) as a replica does: in a batch
 * written (synced) before the next chunk; a refused chunk adds nothing. */
static int stage(struct store *s, struct raft_storage *st,
		 const struct raft_snapshot_chunk *c)
{
	struct store_batch *b = store_batch_new(s);
	cr_assert_not_null(b);
	int rc = raft_storage_snapshot_stage(st, b, c);
	if (rc == STATUS_OK)
		cr_assert_eq(store_write(s, b, true), STATUS_OK);
	else
		cr_assert_eq(store_batch_count(b), 0);
	store_batch_free(b);
	return rc;
}

/* Called after each chunk is staged. */
typedef void (*staged_fn)(struct raft_storage *to,
			  const struct raft_snapshot_chunk *c);

/* Reads the whole stream in chunks of `chunk` bytes and stages them into
 * `to` (of store `ts`), byte `flip` of the stream inverted (none if
 * beyond it), calling `fn` (may be NULL) after each. Returns the
 * stream's size. */
static uint64_t transfer_with(struct raft_storage *from, struct store *ts,
			      struct raft_storage *to, size_t chunk,
			      uint64_t flip, staged_fn fn, uint64_t *index,
			      uint64_t *term)
{
	uint8_t *buf = malloc(chunk);
	uint64_t off = 0, total = 0;
	cr_assert_not_null(buf);
	do {
		size_t len;
		uint64_t i, t;
		int rc = raft_storage_snapshot_read(from, 2, 0, off, buf,
						    chunk, &len, &i, &t,
						    &total);
		cr_assert_eq(rc, STATUS_OK, "%s", raft_storage_errmsg(from));
		if (flip >= off && flip < off + len)
			buf[flip - off] ^= 0x40;
		struct raft_snapshot_chunk c = {
			.last_index = i,
			.last_term = t,
			.offset = off,
			.data = buf,
			.len = len,
			.size_bytes = total,
			.done = off + len == total,
		};
		cr_assert_eq(stage(ts, to, &c), STATUS_OK, "%s",
			     raft_storage_errmsg(to));
		if (fn)
			fn(to, &c);
		off += len;
		*index = i;
		*term = t;
	} while (off < total);
	cr_assert_eq(raft_storage_snapshot_staged(to), total);
	free(buf);
	return total;
}

static void transfer(struct raft_storage *from, struct store *ts,
		     struct raft_storage *to, size_t chunk, uint64_t *index,
		     uint64_t *term)
{
	transfer_with(from, ts, to, chunk, UINT64_MAX, NULL, index, term);
}

/* Every key and value of data+meta, as one comparable string. */
static void dump(struct store *s, struct buf *out)
{
	cr_assert_eq(store_dump(s, false, out, NULL), STATUS_OK);
}

/* The follower's own state, which installing must wipe entirely (keys
 * sorting before and after every leader key included). */
static void fill_follower_state(struct store *s)
{
	put_kv(s, STORE_CF_DATA, "", 0, "empty key");
	put_kv(s, STORE_CF_DATA, "\x00", 1, "low");
	put_kv(s, STORE_CF_DATA, "\xff\xff\xff\xff\xff\xff", 6, "high");
	put_kv(s, STORE_CF_META, "zzz", 3, "old meta");
	put_kv(s, STORE_CF_META, "config", 6, "num 1");
}

Test(raft_storage, crc32c_known_answer)
{
	cr_assert_eq(raft_storage_crc32c(0, "123456789", 9), 0xE3069283u);
	uint32_t c = raft_storage_crc32c(0, "1234", 4);
	cr_assert_eq(raft_storage_crc32c(c, "56789", 5), 0xE3069283u);
}

Test(raft_storage, snapshot_streams_and_installs_exactly)
{
	struct store *a = open_store("/leader"), *b = open_store("/follower");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct raft_storage *sb = open_storage(b, &boot);
	uint64_t index, term;

	fill_app_state(a, sa);
	fill_follower_state(b);
	/* The follower had an old log; the core discards it on install. */
	save_entries(b, sb, 1, 5, 2);

	transfer(sa, b, sb, 777, &index, &term);
	cr_assert_eq(index, 42);
	cr_assert_eq(term, 7);

	struct store_batch *batch = store_batch_new(b);
	struct raft_ready rd = {
		.hard_state_changed = true,
		.term = 7,
		.compact_index = 42,
		.compact_term = 7,
		.log_discard_all = true,
	};
	cr_assert_eq(raft_storage_save(sb, batch, &rd), STATUS_OK);
	uint64_t ii = 0, it = 0;
	cr_assert_eq(raft_storage_snapshot_install(sb, batch, &ii, &it),
		     STATUS_OK, "%s", raft_storage_errmsg(sb));
	cr_assert_eq(ii, 42);
	cr_assert_eq(it, 7);
	cr_assert_eq(raft_storage_snapshot_staged(sb), 0);
	cr_assert_eq(store_write(b, batch, true), STATUS_OK);
	store_batch_free(batch);
	cr_assert_eq(raft_storage_applied_index(sb), 42);

	struct buf da, db;
	buf_init(&da);
	buf_init(&db);
	dump(a, &da);
	dump(b, &db);
	cr_assert_eq(da.len, db.len);
	cr_assert(memcmp(da.data, db.data, da.len) == 0,
		  "follower's data+meta differ from the leader's");
	buf_free(&da);
	buf_free(&db);

	raft_storage_free(sb);
	sb = open_storage(b, &boot);
	cr_assert_eq(boot.snapshot_index, 42);
	cr_assert_eq(boot.snapshot_term, 7);
	cr_assert_eq(boot.applied, 42);
	cr_assert_eq(boot.n_entries, 0);
	for (uint64_t i = 1; i <= 5; i++)
		cr_assert_not(raft_key_exists(b, i));

	raft_storage_free(sa);
	raft_storage_free(sb);
	store_close(a);
	store_close(b);
}

Test(raft_storage, snapshot_into_an_empty_store_and_in_one_chunk)
{
	struct store *a = open_store("/leader"), *b = open_store("/follower");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct raft_storage *sb = open_storage(b, &boot);
	uint64_t index, term;

	fill_app_state(a, sa);
	transfer(sa, b, sb, 1 << 20, &index, &term);
	struct store_batch *batch = store_batch_new(b);
	cr_assert_eq(raft_storage_snapshot_install(sb, batch, NULL, NULL),
		     STATUS_OK, "%s", raft_storage_errmsg(sb));
	cr_assert_eq(store_write(b, batch, true), STATUS_OK);
	store_batch_free(batch);

	struct buf da, db;
	buf_init(&da);
	buf_init(&db);
	dump(a, &da);
	dump(b, &db);
	cr_assert(da.len == db.len && memcmp(da.data, db.data, da.len) == 0);
	buf_free(&da);
	buf_free(&db);
	raft_storage_free(sa);
	raft_storage_free(sb);
	store_close(a);
	store_close(b);
}

Test(raft_storage, corrupt_snapshot_is_rejected_and_nothing_is_written)
{
	struct store *a = open_store("/leader"), *b = open_store("/follower");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct raft_storage *sb = open_storage(b, &boot);
	uint8_t buf[4096];
	size_t len;
	uint64_t i, t, total;

	fill_app_state(a, sa);
	fill_follower_state(b);
	struct buf before, after;
	buf_init(&before);
	buf_init(&after);
	dump(b, &before);

	/* Every position of one flipped bit in the first chunk is caught;
	 * try a spread of them. */
	for (size_t pos = 0; pos < 4096; pos += 331) {
		uint64_t off = 0;
		do {
			cr_assert_eq(raft_storage_snapshot_read(
					     sa, 2, 0, off, buf, sizeof(buf),
					     &len, &i, &t, &total),
				     STATUS_OK);
			if (off == 0)
				buf[pos] ^= 0x10;
			struct raft_snapshot_chunk c = {
				i, t, off, buf, len, total, off + len == total};
			cr_assert_eq(stage(b, sb, &c),
				     STATUS_OK);
			off += len;
		} while (off < total);
		struct store_batch *batch = store_batch_new(b);
		int rc = raft_storage_snapshot_install(sb, batch, NULL, NULL);
		cr_assert_eq(rc, STATUS_CORRUPTION, "flip at %zu: %s", pos,
			     status_name(rc));
		cr_assert_eq(store_batch_count(batch), 0);
		store_batch_free(batch);
		cr_assert_eq(raft_storage_snapshot_staged(sb), 0);
	}
	dump(b, &after);
	cr_assert(before.len == after.len &&
		  memcmp(before.data, after.data, before.len) == 0);
	cr_assert_eq(raft_storage_applied_index(sb), 0);

	buf_free(&before);
	buf_free(&after);
	raft_storage_free(sa);
	raft_storage_free(sb);
	store_close(a);
	store_close(b);
}

Test(raft_storage, staging_refuses_chunks_out_of_order)
{
	struct store *b = open_store("/follower");
	struct raft_boot boot;
	struct raft_storage *sb = open_storage(b, &boot);
	const uint8_t data[10] = "0123456789";
	struct raft_snapshot_chunk c = {5, 2, 0, data, 4, 10, false};

	/* Nothing staged: only offset 0 starts. */
	c.offset = 4;
	cr_assert_eq(stage(b, sb, &c),
		     STATUS_INVALID_ARGUMENT);
	c.offset = 0;
	cr_assert_eq(stage(b, sb, &c), STATUS_OK);
	/* A gap, a repeat, another snapshot, beyond the size. */
	c.offset = 5;
	cr_assert_eq(stage(b, sb, &c),
		     STATUS_INVALID_ARGUMENT);
	c.offset = 2;
	cr_assert_eq(stage(b, sb, &c),
		     STATUS_INVALID_ARGUMENT);
	c.offset = 4;
	c.last_index = 6;
	cr_assert_eq(stage(b, sb, &c),
		     STATUS_INVALID_ARGUMENT);
	c.last_index = 5;
	c.len = 7;
	cr_assert_eq(stage(b, sb, &c),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_eq(raft_storage_snapshot_staged(sb), 4);
	/* Incomplete: install refuses and adds nothing. */
	struct store_batch *batch = store_batch_new(b);
	cr_assert_eq(raft_storage_snapshot_install(sb, batch, NULL, NULL),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_eq(store_batch_count(batch), 0);
	/* Complete but not a snapshot stream: corruption. */
	c.offset = 0;
	c.len = 10;
	c.done = true;
	cr_assert_eq(stage(b, sb, &c), STATUS_OK);
	cr_assert_eq(raft_storage_snapshot_install(sb, batch, NULL, NULL),
		     STATUS_CORRUPTION);
	cr_assert_eq(store_batch_count(batch), 0);
	store_batch_free(batch);
	raft_storage_free(sb);
	store_close(b);
}

Test(raft_storage, a_transfer_keeps_its_snapshot_until_it_is_stale)
{
	struct store *a = open_store("/leader");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	uint8_t buf[64];
	size_t len;
	uint64_t i, t, total, total2;

	fill_app_state(a, sa);
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, 0, buf, sizeof(buf),
						&len, &i, &t, &total),
		     STATUS_OK);
	cr_assert_eq(i, 42);
	cr_assert_eq(len, sizeof(buf));
	cr_assert_eq(raft_storage_snapshot_transfers(sa), 1);
	/* State moves on: the transfer in progress keeps its snapshot... */
	put_kv(a, STORE_CF_DATA, "new", 3, "key");
	set_applied(a, sa, 43, 7);
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 42, 64, buf,
						sizeof(buf), &len, &i, &t,
						&total2),
		     STATUS_OK);
	cr_assert_eq(i, 42);
	cr_assert_eq(total2, total);
	/* ...also when its follower starts over from offset 0... */
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 42, 0, buf, sizeof(buf),
						&len, &i, &t, &total2),
		     STATUS_OK);
	cr_assert_eq(i, 42);
	cr_assert_eq(total2, total);
	/* ...while another follower's new transfer reads the current
	 * state... */
	cr_assert_eq(raft_storage_snapshot_read(sa, 3, 42, 0, buf, sizeof(buf),
						&len, &i, &t, &total2),
		     STATUS_OK);
	cr_assert_eq(i, 43);
	cr_assert_gt(total2, total);
	cr_assert_eq(raft_storage_snapshot_transfers(sa), 2);
	/* ...and so does the first once the core needs a newer one (it
	 * compacted past 42). */
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 43, 0, buf, sizeof(buf),
						&len, &i, &t, &total2),
		     STATUS_OK);
	cr_assert_eq(i, 43);
	cr_assert_gt(total2, total);
	cr_assert_eq(raft_storage_snapshot_transfers(sa), 2);
	/* The end: 0 bytes; past it: refused, and the transfer can still be
	 * read from its start. */
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, total2, buf,
						sizeof(buf), &len, &i, &t,
						&total2),
		     STATUS_OK);
	cr_assert_eq(len, 0);
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, total2 + 1, buf,
						sizeof(buf), &len, &i, &t,
						&total2),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, 0, buf, sizeof(buf),
						&len, &i, &t, &total2),
		     STATUS_OK);
	cr_assert_eq(i, 43);
	cr_assert_eq(len, sizeof(buf));
	/* Dropped, a transfer frees everything; the other stays. */
	cr_assert_gt(raft_storage_snapshot_held_bytes(sa), 0);
	raft_storage_snapshot_drop(sa, 2);
	raft_storage_snapshot_drop(sa, 2);
	cr_assert_eq(raft_storage_snapshot_transfers(sa), 1);
	raft_storage_snapshot_drop(sa, 3);
	cr_assert_eq(raft_storage_snapshot_transfers(sa), 0);
	cr_assert_eq(raft_storage_snapshot_held_bytes(sa), 0);
	/* Freeing the storage releases transfers in progress (their RocksDB
	 * snapshots must be gone before store_close). */
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, 0, buf, sizeof(buf),
						&len, &i, &t, &total2),
		     STATUS_OK);
	raft_storage_free(sa);
	store_close(a);
}

/* Two followers catching up at once while the leader applies more: one
 * starting its transfer must not replace the stream the other is halfway
 * through (each would restart the other, forever, under steady writes). */
Test(raft_storage, a_new_transfer_does_not_restart_one_in_progress)
{
	struct store *a = open_store("/leader");
	struct store *fa = open_store("/fa"), *fb = open_store("/fb");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct raft_storage *sfa = open_storage(fa, &boot);
	struct raft_storage *sfb = open_storage(fb, &boot);
	uint8_t buf[512];
	uint64_t off_a = 0, off_b = 0, total_a = 0, total_b = 0, next = 43;
	uint64_t index_a = 0, index_b = 0;
	bool a_done = false, b_done = false;

	fill_app_state(a, sa);
	/* A starts; then, chunk by chunk and with an entry applied between
	 * any two reads, B starts and both go on. */
	for (int k = 0; k < 10000 && !(a_done && b_done); k++) {
		bool is_a = !a_done && (k % 2 == 0 || b_done);
		uint32_t peer = is_a ? 2 : 3;
		struct raft_storage *to = is_a ? sfa : sfb;
		uint64_t *off = is_a ? &off_a : &off_b;
		uint64_t *total = is_a ? &total_a : &total_b;
		uint64_t *index = is_a ? &index_a : &index_b;
		size_t len;
		uint64_t i, t;
		cr_assert_eq(raft_storage_snapshot_read(sa, peer, 42, *off,
							buf, sizeof(buf), &len,
							&i, &t, total),
			     STATUS_OK, "%s", raft_storage_errmsg(sa));
		/* Another snapshot mid-transfer: the replica would have to
		 * start over. */
		if (*off == 0)
			*index = i;
		cr_assert_eq(i, *index,
			     "the transfer of %s was restarted (snapshot %llu "
			     "at offset %llu)",
			     is_a ? "A" : "B", (unsigned long long)i,
			     (unsigned long long)*off);
		struct raft_snapshot_chunk c = {i, t, *off, buf, len, *total,
						*off + len == *total};
		cr_assert_eq(stage(is_a ? fa : fb, to, &c), STATUS_OK);
		*off += len;
		if (*off == *total)
			*(is_a ? &a_done : &b_done) = true;
		char key[16];
		snprintf(key, sizeof(key), "k%llu", (unsigned long long)next);
		put_kv(a, STORE_CF_DATA, key, strlen(key), "v");
		set_applied(a, sa, next++, 7);
	}
	cr_assert(a_done && b_done);
	for (int f = 0; f < 2; f++) {
		struct store *s = f ? fb : fa;
		struct raft_storage *st = f ? sfb : sfa;
		struct store_batch *batch = store_batch_new(s);
		uint64_t ii = 0;
		cr_assert_eq(raft_storage_snapshot_install(st, batch, &ii, NULL),
			     STATUS_OK, "%s", raft_storage_errmsg(st));
		cr_assert_eq(ii, f ? index_b : index_a);
		store_batch_free(batch);
	}
	raft_storage_free(sa);
	raft_storage_free(sfa);
	raft_storage_free(sfb);
	store_close(a);
	store_close(fa);
	store_close(fb);
}

/* ---- the streamed snapshot is the simple one, byte for byte ---- */

/* The stream built the simple way: one walk of the store's current
 * data+meta, everything in memory (storage.h, Snapshot stream). */
static void reference_stream(struct store *s, struct buf *out)
{
	struct buf v;
	uint64_t index = 0, term = 0;

	buf_init(&v);
	buf_reset(out);
	int rc = store_get(s, STORE_CF_META, "\0raft/applied", 13, &v);
	cr_assert(rc == STATUS_OK || rc == STATUS_NOT_FOUND);
	if (rc == STATUS_OK) {
		cr_assert_eq(v.len, 16);
		index = get_u64be(v.data);
		term = get_u64be(v.data + 8);
	}
	buf_free(&v);
	buf_append(out, "SKVSNAP", 8);
	buf_append_u32be(out, 1);
	buf_append_u64be(out, index);
	buf_append_u64be(out, term);
	for (enum store_cf cf = STORE_CF_DATA; cf <= STORE_CF_META; cf++) {
		struct store_iter *it = store_iter_new(s, cf, NULL, 0, NULL);
		cr_assert_not_null(it);
		for (; store_iter_valid(it); store_iter_next(it)) {
			size_t kl, vl;
			const void *k = store_iter_key(it, &kl);
			const void *val = store_iter_value(it, &vl);
			uint8_t tag = (uint8_t)cf;
			buf_append(out, &tag, 1);
			buf_append_u32be(out, (uint32_t)kl);
			buf_append(out, k, kl);
			buf_append_u32be(out, (uint32_t)vl);
			buf_append(out, val, vl);
		}
		cr_assert_eq(store_iter_status(it), STATUS_OK);
		store_iter_free(it);
	}
	buf_append(out, "", 1);
	cr_assert_eq(buf_append_u32be(out, raft_storage_crc32c(0, out->data,
							       out->len)),
		     STATUS_OK);
}

/* Reads one chunk of `peer`'s transfer at `off` into out[off..), checking
 * it against what the transfer must be; returns its length. */
static size_t read_chunk(struct raft_storage *st, uint32_t peer,
			 uint64_t off, size_t chunk, const struct buf *ref,
			 uint64_t index, uint8_t *out)
{
	size_t len;
	uint64_t i, t, total;
	int rc = raft_storage_snapshot_read(st, peer, 0, off, out + off, chunk,
					    &len, &i, &t, &total);
	cr_assert_eq(rc, STATUS_OK, "%s", raft_storage_errmsg(st));
	cr_assert_eq(i, index);
	cr_assert_eq(total, ref->len);
	cr_assert_eq(len, ref->len - off < chunk ? ref->len - off : chunk,
		     "chunk of %zu at %llu: %zu bytes", chunk,
		     (unsigned long long)off, len);
	cr_assert(memcmp(out + off, ref->data + off, len) == 0,
		  "chunk of %zu at %llu differs from the reference", chunk,
		  (unsigned long long)off);
	return len;
}

/* Streams `peer`'s whole transfer in chunks of `chunk` bytes, asking for
 * some chunks twice (a lost reply) and, once halfway, going back to an
 * earlier offset (a follower that restarted); the bytes must be `ref`. */
static void stream_and_compare(struct raft_storage *st, uint32_t peer,
			       size_t chunk, const struct buf *ref,
			       uint64_t index)
{
	/* Room for a whole chunk at any offset, past the end included. */
	uint8_t *got = calloc(1, ref->len + chunk);
	uint64_t off = 0, back_to = UINT64_MAX;
	int n = 0;
	cr_assert_not_null(got);
	while (off < ref->len) {
		size_t len = read_chunk(st, peer, off, chunk, ref, index, got);
		if (n++ % 3 == 1) /* the same offset again */
			cr_assert_eq(read_chunk(st, peer, off, chunk, ref,
						index, got),
				     len);
		if (back_to == UINT64_MAX && off + len >= ref->len / 2) {
			back_to = off / 3;
			off = back_to;
			continue;
		}
		off += len;
	}
	cr_assert_eq(read_chunk(st, peer, ref->len, chunk, ref, index, got), 0);
	cr_assert(memcmp(got, ref->data, ref->len) == 0);
	/* The state a transfer keeps does not grow with the stream. */
	size_t held = raft_storage_snapshot_held_bytes(st);
	cr_assert_gt(held, 0);
	cr_assert_leq(held, 2 * (chunk < ref->len ? chunk : ref->len) + 1024,
		      "%zu bytes held for chunks of %zu", held, chunk);
	free(got);
}

Test(raft_storage, streaming_gives_the_reference_bytes_in_any_chunking)
{
	struct store *a = open_store("/leader");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct buf ref;
	const size_t chunks[] = {1, 7, 4096, 1 << 20};

	buf_init(&ref);
	/* An empty state first: header and trailer only. */
	reference_stream(a, &ref);
	cr_assert_eq(ref.len, 28 + 5);
	stream_and_compare(sa, 2, 7, &ref, 0);
	raft_storage_snapshot_drop(sa, 2);

	fill_app_state(a, sa);
	reference_stream(a, &ref);
	cr_assert_gt(ref.len, 10000);
	cr_assert_lt(ref.len, chunks[3]);
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		stream_and_compare(sa, 2, chunks[c], &ref, 42);
		/* The same transfer again from its start, in one go. */
		stream_and_compare(sa, 2, chunks[c], &ref, 42);
		raft_storage_snapshot_drop(sa, 2);
		cr_assert_eq(raft_storage_snapshot_held_bytes(sa), 0);
	}
	buf_free(&ref);
	raft_storage_free(sa);
	store_close(a);
}

Test(raft_storage, a_transfer_reads_its_snapshot_not_later_writes)
{
	struct store *a = open_store("/leader");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct buf before, after;
	uint8_t *got;

	buf_init(&before);
	buf_init(&after);
	fill_app_state(a, sa);
	reference_stream(a, &before);
	got = calloc(1, before.len + 100);
	cr_assert_not_null(got);

	/* Peer 2 starts; then a key is written, one overwritten, one
	 * deleted, and an entry applied. */
	cr_assert_eq(read_chunk(sa, 2, 0, 100, &before, 42, got), 100);
	put_kv(a, STORE_CF_DATA, "late", 4, "written after the start");
	put_kv(a, STORE_CF_META, "config", 6, "num 5");
	cr_assert_eq(store_delete(a, STORE_CF_META, "dedup/1", 7, true),
		     STATUS_OK);
	set_applied(a, sa, 43, 8);
	reference_stream(a, &after);
	cr_assert(after.len != before.len ||
		  memcmp(after.data, before.data, after.len) != 0);

	/* Peer 2 still gets the state as of its start, also after going back
	 * to offset 0 (the same RocksDB snapshot, re-read). */
	uint64_t off = 100;
	while (off < before.len / 2)
		off += read_chunk(sa, 2, off, 100, &before, 42, got);
	for (off = 0; off < before.len;)
		off += read_chunk(sa, 2, off, 100, &before, 42, got);
	cr_assert(memcmp(got, before.data, before.len) == 0);

	/* A new transfer (peer 3) sees the write. */
	free(got);
	got = calloc(1, after.len + 100);
	cr_assert_not_null(got);
	for (off = 0; off < after.len;)
		off += read_chunk(sa, 3, off, 100, &after, 43, got);
	cr_assert(memcmp(got, after.data, after.len) == 0);
	cr_assert_eq(raft_storage_snapshot_transfers(sa), 2);

	free(got);
	buf_free(&before);
	buf_free(&after);
	raft_storage_free(sa); /* transfers still open */
	store_close(a);
}

/* More peers than a group can have: the least recently read transfer
 * makes room; the others go on untouched. */
Test(raft_storage, transfers_are_bounded_by_the_group_size)
{
	struct store *a = open_store("/leader");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	uint8_t buf[16];
	size_t len;
	uint64_t i, t, total;

	fill_app_state(a, sa);
	for (uint32_t p = 1; p <= RAFT_MAX_NODES + 1; p++) {
		cr_assert_eq(raft_storage_snapshot_read(sa, p, 0, 0, buf,
							sizeof(buf), &len, &i,
							&t, &total),
			     STATUS_OK);
		cr_assert_leq(raft_storage_snapshot_transfers(sa),
			      RAFT_MAX_NODES);
	}
	cr_assert_eq(raft_storage_snapshot_transfers(sa), RAFT_MAX_NODES);
	/* Peer 2 was not evicted: its cursor continues. */
	set_applied(a, sa, 43, 7);
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, 16, buf, sizeof(buf),
						&len, &i, &t, &total),
		     STATUS_OK);
	cr_assert_eq(i, 42);
	raft_storage_free(sa);
	store_close(a);
}

/* ---- large snapshots: staged on disk, installed in phases ---- */

#define MIB ((size_t)1 << 20)

/* `mib` MiB of data in 4 KiB values (deterministic bytes), two meta keys,
 * applied index 42 in term 7. */
static void fill_large(struct store *s, struct raft_storage *st, size_t mib)
{
	uint8_t v[4096];
	struct store_batch *b = store_batch_new(s);
	cr_assert_not_null(b);
	for (uint32_t i = 0; i < mib * 256; i++) {
		uint8_t k[8] = {'b', 'i', 'g', '/'};
		put_u32be(k + 4, i);
		for (size_t j = 0; j < sizeof(v); j++)
			v[j] = (uint8_t)(i * 31 + j * 7 + (j >> 8));
		store_batch_put(b, STORE_CF_DATA, k, sizeof(k), v, sizeof(v));
		if (store_batch_count(b) == 256) {
			cr_assert_eq(store_write(s, b, false), STATUS_OK);
			store_batch_clear(b);
		}
	}
	store_batch_put(b, STORE_CF_META, "config", 6, "num 9", 5);
	store_batch_put(b, STORE_CF_META, "dedup/7", 7, "seq 1", 5);
	cr_assert_eq(store_write(s, b, true), STATUS_OK);
	store_batch_free(b);
	set_applied(s, st, 42, 7);
}

/* Keys under the staging prefix ("ss") of the raft CF. */
static size_t staged_keys(struct store *s)
{
	size_t n = 0;
	struct store_iter *it = store_iter_new(s, STORE_CF_RAFT, "ss", 2,
					       NULL);
	cr_assert_not_null(it);
	for (; store_iter_valid(it); store_iter_next(it))
		n++;
	store_iter_free(it);
	return n;
}

/* The ready that finishes a snapshot (42, 7) replacing a follower's old
 * log, as the core hands it out: the log saved, the snapshot installed;
 * the batch written when `write`. Returns the install's status. */
static int install_ready(struct store *s, struct raft_storage *st,
			 bool write)
{
	struct store_batch *b = store_batch_new(s);
	struct raft_ready rd = {
		.hard_state_changed = true,
		.term = 7,
		.commit = 42,
		.compact_index = 42,
		.compact_term = 7,
		.log_discard_all = true,
	};
	cr_assert_not_null(b);
	cr_assert_eq(raft_storage_save(st, b, &rd), STATUS_OK);
	int rc = raft_storage_snapshot_install(st, b, NULL, NULL);
	if (rc == STATUS_OK && write)
		cr_assert_eq(store_write(s, b, true), STATUS_OK);
	store_batch_free(b);
	return rc;
}

static void expect_same_dump(struct store *a, struct store *b)
{
	struct buf da, db;
	buf_init(&da);
	buf_init(&db);
	dump(a, &da);
	dump(b, &db);
	cr_assert(da.len == db.len && memcmp(da.data, db.data, da.len) == 0,
		  "data+meta differ (%zu and %zu bytes)", da.len, db.len);
	buf_free(&da);
	buf_free(&db);
}

static void recover(struct store *s)
{
	char err[256];
	int rc = raft_storage_recover(s, err, sizeof(err));
	cr_assert_eq(rc, STATUS_OK, "%s: %s", status_name(rc), err);
}

/* Between chunks nothing is held in memory; the last one until the
 * install. */
static void check_staging_held(struct raft_storage *to,
			       const struct raft_snapshot_chunk *c)
{
	cr_assert_eq(raft_storage_snapshot_staged(to), c->offset + c->len);
	size_t held = raft_storage_snapshot_staging_held_bytes(to);
	if (c->done)
		cr_assert(held >= c->len && held <= MIB, "%zu", held);
	else
		cr_assert_eq(held, 0);
}

Test(raft_storage, a_40_mib_snapshot_installs_holding_about_one_chunk)
{
	struct store *a = open_store("/leader"), *b = open_store("/follower");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct raft_storage *sb = open_storage(b, &boot);
	uint64_t index, term;

	fill_large(a, sa, 40);
	fill_follower_state(b);
	save_entries(b, sb, 1, 5, 2);
	uint64_t total = transfer_with(sa, b, sb, MIB, UINT64_MAX,
				       check_staging_held, &index, &term);
	cr_assert_gt(total, 40 * MIB);

	cr_assert_eq(install_ready(b, sb, true), STATUS_OK, "%s",
		     raft_storage_errmsg(sb));
	uint64_t writes, synced;
	raft_storage_snapshot_install_writes(sb, &writes, &synced);
	size_t peak = raft_storage_snapshot_staging_peak_bytes(sb);
	cr_log_info("%llu-byte snapshot: %llu own writes (%llu synced), at "
		    "most %zu bytes held",
		    (unsigned long long)total, (unsigned long long)writes,
		    (unsigned long long)synced, peak);
	/* The marker, then one write per ~4 MiB of records. */
	cr_assert_eq(synced, 1);
	cr_assert_geq(writes, 1 + 10);
	cr_assert_lt(writes, 1 + 12);
	/* An install batch and one record, whatever the snapshot's size. */
	cr_assert_lt(peak, 4 * MIB + 64 * 1024, "%zu bytes held", peak);
	cr_assert_eq(raft_storage_snapshot_staging_held_bytes(sb), 0);
	cr_assert_eq(raft_storage_snapshot_staged(sb), 0);
	cr_assert_eq(staged_keys(b), 0);
	expect_same_dump(a, b);

	raft_storage_free(sb);
	sb = open_storage(b, &boot);
	cr_assert_eq(boot.snapshot_index, 42);
	cr_assert_eq(boot.applied, 42);
	cr_assert_eq(boot.n_entries, 0);
	raft_storage_free(sa);
	raft_storage_free(sb);
	store_close(a);
	store_close(b);
}

/* Stages the leader's whole stream into a fresh storage of `b` in 1 MiB
 * chunks, byte `flip` of the stream inverted (none if beyond it). */
static struct raft_storage *stage_all(struct raft_storage *sa,
				      struct store *b, uint64_t flip)
{
	struct raft_boot boot;
	struct raft_storage *sb = open_storage(b, &boot);
	uint64_t index, term;
	transfer_with(sa, b, sb, MIB, flip, NULL, &index, &term);
	return sb;
}

Test(raft_storage, a_corrupt_large_snapshot_is_refused_and_nothing_lost)
{
	struct store *a = open_store("/leader"), *b = open_store("/follower");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct raft_storage *sb = open_storage(b, &boot);
	struct buf before, after;

	fill_large(a, sa, 6);
	fill_follower_state(b);
	save_entries(b, sb, 1, 5, 2);
	set_applied(b, sb, 3, 2);
	raft_storage_free(sb);
	buf_init(&before);
	buf_init(&after);
	dump(b, &before);

	/* A flipped byte in the fourth chunk: the checksum. */
	sb = stage_all(sa, b, 3 * MIB + 1000);
	cr_assert_eq(install_ready(b, sb, true), STATUS_CORRUPTION);
	cr_assert(strstr(raft_storage_errmsg(sb), "checksum"), "%s",
		  raft_storage_errmsg(sb));
	uint64_t writes, synced;
	raft_storage_snapshot_install_writes(sb, &writes, &synced);
	cr_assert_eq(writes, 0);
	raft_storage_free(sb);
	dump(b, &after);
	cr_assert(before.len == after.len &&
		  memcmp(before.data, after.data, before.len) == 0);
	sb = open_storage(b, &boot);
	cr_assert_eq(boot.applied, 3);
	raft_storage_free(sb);

	/* A record cut short, under a valid checksum. */
	uint8_t s[64];
	size_t n = 0;
	memcpy(s, "SKVSNAP", 8);
	put_u32be(s + 8, 1);
	put_u64be(s + 12, 50);
	put_u64be(s + 20, 8);
	n = 28;
	s[n++] = STORE_CF_DATA;
	put_u32be(s + n, 3);
	n += 4;
	memcpy(s + n, "abc", 3);
	n += 3;
	put_u32be(s + n, 10); /* 2 bytes follow, not 10 */
	n += 4;
	memcpy(s + n, "xy", 2);
	n += 2;
	s[n++] = 0;
	put_u32be(s + n, raft_storage_crc32c(0, s, n));
	n += 4;
	sb = open_storage(b, &boot);
	struct raft_snapshot_chunk c = {50, 8, 0, s, n, n, true};
	cr_assert_eq(stage(b, sb, &c), STATUS_OK);
	cr_assert_eq(install_ready(b, sb, true), STATUS_CORRUPTION);
	cr_assert(strstr(raft_storage_errmsg(sb), "truncated"), "%s",
		  raft_storage_errmsg(sb));
	raft_storage_free(sb);
	dump(b, &after);
	cr_assert(before.len == after.len &&
		  memcmp(before.data, after.data, before.len) == 0);

	/* The refused stream's chunks go at the next start. */
	cr_assert_gt(staged_keys(b), 0);
	recover(b);
	cr_assert_eq(staged_keys(b), 0);
	dump(b, &after);
	cr_assert(before.len == after.len &&
		  memcmp(before.data, after.data, before.len) == 0);

	buf_free(&before);
	buf_free(&after);
	raft_storage_free(sa);
	store_close(a);
	store_close(b);
}

/* A 10 MiB install makes 4 writes of its own (the marker, 3 record
 * batches), then the caller writes the ready. A crash after each of them
 * (and in the middle of a recovery) ends, once recovered, in the old
 * state (none written) or exactly the new one. */
Test(raft_storage, an_install_crashed_after_each_phase_rolls_forward)
{
	struct store *a = open_store("/leader");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct buf before, after;
	const long own_writes = 4;

	fill_large(a, sa, 10);
	buf_init(&before);
	buf_init(&after);
	for (long n = 0; n <= own_writes + 1; n++) {
		char path[16];
		snprintf(path, sizeof(path), "/f%ld", n);
		struct store *b = open_store(path);
		struct raft_storage *sb = open_storage(b, &boot);
		fill_follower_state(b);
		save_entries(b, sb, 1, 5, 2);
		raft_storage_free(sb);
		dump(b, &before);

		sb = stage_all(sa, b, UINT64_MAX);
		raft_storage_test_fail_install_after(n <= own_writes ? n : -1);
		int rc = install_ready(b, sb, n > own_writes);
		raft_storage_test_fail_install_after(-1);
		cr_assert_eq(rc, n < own_writes ? STATUS_IO : STATUS_OK,
			     "crash after %ld: %s", n, status_name(rc));
		uint64_t writes, synced;
		raft_storage_snapshot_install_writes(sb, &writes, &synced);
		cr_assert_eq(writes, n < own_writes ? n : own_writes);
		raft_storage_free(sb);
		store_close(b);

		/* Restart. */
		b = open_store(path);
		bool marked = n >= 1 && n <= own_writes;
		if (marked) {
			const char *err = open_fails(b, STATUS_CORRUPTION);
			cr_assert(strstr(err, "interrupted"), "%s", err);
		}
		if (n == 2) {
			/* The recovery itself crashes after one batch. */
			char err[256];
			raft_storage_test_fail_install_after(1);
			rc = raft_storage_recover(b, err, sizeof(err));
			raft_storage_test_fail_install_after(-1);
			cr_assert_eq(rc, STATUS_IO, "%s", err);
			open_fails(b, STATUS_CORRUPTION);
		}
		recover(b);
		cr_assert_eq(staged_keys(b), 0);
		sb = open_storage(b, &boot);
		if (n == 0) {
			dump(b, &after);
			cr_assert(before.len == after.len &&
				  memcmp(before.data, after.data,
					 before.len) == 0);
			cr_assert_eq(boot.applied, 0);
			cr_assert_eq(boot.n_entries, 5);
		} else {
			expect_same_dump(a, b);
			cr_assert_eq(boot.snapshot_index, 42);
			cr_assert_eq(boot.snapshot_term, 7);
			cr_assert_eq(boot.applied, 42);
			cr_assert_eq(boot.n_entries, 0);
			cr_assert_eq(boot.term, 7);
			cr_assert_eq(boot.commit, 42);
			/* The term moved on: no vote in it yet. */
			if (marked)
				cr_assert_eq(boot.vote, 0);
			for (uint64_t i = 1; i <= 5; i++)
				cr_assert_not(raft_key_exists(b, i));
		}
		raft_storage_free(sb);
		/* Recovering again finds nothing to do. */
		recover(b);
		store_close(b);
	}
	buf_free(&before);
	buf_free(&after);
	raft_storage_free(sa);
	store_close(a);
}

Test(raft_storage, a_partly_staged_snapshot_is_dropped_at_restart)
{
	struct store *a = open_store("/leader"), *b = open_store("/follower");
	struct raft_boot boot;
	struct raft_storage *sa = open_storage(a, &boot);
	struct raft_storage *sb = open_storage(b, &boot);
	uint8_t *buf = malloc(MIB / 2);
	uint64_t off = 0, total = 0, index = 0, term = 0;
	size_t len;

	cr_assert_not_null(buf);
	fill_large(a, sa, 3);
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, off, buf,
							MIB / 2, &len, &index,
							&term, &total),
			     STATUS_OK);
		struct raft_snapshot_chunk c = {index, term, off, buf,
						len,   total, false};
		cr_assert_eq(stage(b, sb, &c), STATUS_OK);
		off += len;
	}
	raft_storage_free(sb);
	store_close(b);

	/* Restarted: nothing staged in memory, the next chunk is refused
	 * (the core would refuse it too: it starts over from 0)... */
	b = open_store("/follower");
	sb = open_storage(b, &boot);
	cr_assert_eq(raft_storage_snapshot_staged(sb), 0);
	cr_assert_eq(raft_storage_snapshot_read(sa, 2, 0, off, buf, MIB / 2,
						&len, &index, &term, &total),
		     STATUS_OK);
	struct raft_snapshot_chunk c = {index, term, off, buf,
					len,   total, false};
	cr_assert_eq(stage(b, sb, &c), STATUS_INVALID_ARGUMENT);
	raft_storage_free(sb);
	free(buf);
	/* ...and the recovery at open deletes the staged chunks. */
	cr_assert_eq(staged_keys(b), 4);
	recover(b);
	cr_assert_eq(staged_keys(b), 0);

	/* Sent again from 0, it installs. */
	uint64_t i, t;
	sb = open_storage(b, &boot);
	transfer(sa, b, sb, MIB / 2, &i, &t);
	cr_assert_eq(install_ready(b, sb, true), STATUS_OK, "%s",
		     raft_storage_errmsg(sb));
	expect_same_dump(a, b);
	raft_storage_free(sa);
	raft_storage_free(sb);
	store_close(a);
	store_close(b);
}
