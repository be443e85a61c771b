/*
 * The RocksDB wrapper against real disk (a fresh mkdtemp directory per
 * test, removed afterwards) and against the in-memory env.
 */
#define _XOPEN_SOURCE 700 /* nftw */

#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/mem.h"
#include "common/status.h"
#include "common/store/store.h"

static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/test_store.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	return remove(path);
}

static void remove_tmpdir(void)
{
	mem_fail_reset();
	nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(store, .init = make_tmpdir, .fini = remove_tmpdir);

/* tmpdir/name, in a static buffer that the next call overwrites. */
static const char *tmp_path(const char *name)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static struct store *open_at(const char *path, struct store_memenv *env)
{
	struct store_opts o = {
		.path = path,
		.create_if_missing = true,
		.memenv = env,
		.block_cache_bytes = 1 << 20,
	};
	struct store *s;
	char err[256];
	int rc = store_open(&o, &s, err, sizeof(err));
	cr_assert_eq(rc, STATUS_OK, "open %s: %s", path, err);
	return s;
}

static struct store *open_db(void)
{
	return open_at(tmp_path("db"), NULL);
}

static void put(struct store *s, enum store_cf cf, const char *k,
		const char *v)
{
	cr_assert_eq(store_put(s, cf, k, strlen(k), v, strlen(v), false),
		     STATUS_OK, "%s", store_errmsg(s));
}

/* Asserts `k` in `cf` holds `v` (NULL = absent), at `snap` (NULL = now). */
static void expect_at(struct store *s, const struct store_snapshot *snap,
		      enum store_cf cf, const char *k, const char *v)
{
	struct buf val;
	buf_init(&val);
	int rc = store_get_at(s, snap, cf, k, strlen(k), &val);
	if (!v) {
		cr_assert_eq(rc, STATUS_NOT_FOUND, "%s/%s: rc %d",
			     store_cf_name(cf), k, rc);
		cr_assert_eq(val.len, 0);
	} else {
		cr_assert_eq(rc, STATUS_OK, "%s/%s: %s", store_cf_name(cf), k,
			     store_errmsg(s));
		cr_assert(val.len == strlen(v) && !memcmp(val.data, v, val.len),
			  "%s/%s: want %s, got %.*s", store_cf_name(cf), k, v,
			  (int)val.len, (const char *)val.data);
	}
	buf_free(&val);
}

static void expect(struct store *s, enum store_cf cf, const char *k,
		   const char *v)
{
	expect_at(s, NULL, cf, k, v);
}

/* "<tag><i>" as a NUL-terminated key in a static buffer. */
static const char *keyi(const char *tag, int i)
{
	static char k[32];
	snprintf(k, sizeof(k), "%s%05d", tag, i);
	return k;
}

Test(store, cf_names)
{
	cr_assert_str_eq(store_cf_name(STORE_CF_DEFAULT), "default");
	cr_assert_str_eq(store_cf_name(STORE_CF_RAFT), "raft");
	cr_assert_str_eq(store_cf_name(STORE_CF_DATA), "data");
	cr_assert_str_eq(store_cf_name(STORE_CF_META), "meta");
}

Test(store, put_get_delete_per_cf_and_isolation)
{
	struct store *s = open_db();
	for (int cf = 0; cf < STORE_CF_COUNT_; cf++)
		put(s, cf, "k", store_cf_name(cf));
	for (int cf = 0; cf < STORE_CF_COUNT_; cf++)
		expect(s, cf, "k", store_cf_name(cf));

	cr_assert_eq(store_delete(s, STORE_CF_DATA, "k", 1, true), STATUS_OK);
	expect(s, STORE_CF_DATA, "k", NULL);
	expect(s, STORE_CF_RAFT, "k", "raft");
	expect(s, STORE_CF_META, "k", "meta");
	expect(s, STORE_CF_DEFAULT, "k", "default");

	put(s, STORE_CF_META, "k", "v2"); /* overwrite */
	expect(s, STORE_CF_META, "k", "v2");

	/* Binary keys and values, empty value. */
	const char bk[] = {0, (char)0xff, 0};
	const char bv[] = {(char)0xff, 0, 1};
	cr_assert_eq(store_put(s, STORE_CF_RAFT, bk, 3, bv, 3, true),
		     STATUS_OK);
	cr_assert_eq(store_put(s, STORE_CF_RAFT, "e", 1, "", 0, true),
		     STATUS_OK);
	struct buf val;
	buf_init(&val);
	cr_assert_eq(store_get(s, STORE_CF_RAFT, bk, 3, &val), STATUS_OK);
	cr_assert(val.len == 3 && !memcmp(val.data, bv, 3));
	cr_assert_eq(store_get(s, STORE_CF_RAFT, "e", 1, &val), STATUS_OK);
	cr_assert_eq(val.len, 0);
	buf_free(&val);
	store_close(s);
}

Test(store, get_missing_is_not_found)
{
	struct store *s = open_db();
	struct buf val;
	buf_init(&val);
	cr_assert_eq(buf_set(&val, "stale", 5), STATUS_OK);
	cr_assert_eq(store_get(s, STORE_CF_DATA, "nope", 4, &val),
		     STATUS_NOT_FOUND);
	cr_assert_eq(val.len, 0, "val must be emptied");
	buf_free(&val);
	store_close(s);
}

Test(store, batch_is_atomic_across_reopen)
{
	struct store *s = open_db();
	for (int i = 0; i < 100; i++)
		put(s, STORE_CF_DATA, keyi("d", i), "old");

	struct store_batch *b = store_batch_new(s);
	cr_assert_not_null(b);
	cr_assert_eq(store_batch_count(b), 0);
	for (int i = 100; i < 600; i++)
		store_batch_put(b, STORE_CF_DATA, keyi("d", i), 6, "new", 3);
	for (int i = 0; i < 50; i++)
		store_batch_delete(b, STORE_CF_DATA, keyi("d", i), 6);
	store_batch_put(b, STORE_CF_META, "applied", 7, "42", 2);
	store_batch_put(b, STORE_CF_RAFT, "hard", 4, "term", 4);
	cr_assert_eq(store_batch_count(b), 552);
	cr_assert_gt(store_batch_bytes(b), 552 * 6);
	cr_assert_eq(store_write(s, b, true), STATUS_OK, "%s",
		     store_errmsg(s));
	cr_assert_eq(store_batch_count(b), 552, "write leaves the batch");

	/* Cleared, then never written: leaves nothing. */
	store_batch_clear(b);
	cr_assert_eq(store_batch_count(b), 0);
	store_batch_put(b, STORE_CF_DATA, "ghost", 5, "x", 1);
	store_batch_delete(b, STORE_CF_DATA, keyi("d", 99), 6);
	store_batch_free(b);
	store_close(s);

	s = open_db();
	for (int i = 0; i < 50; i++)
		expect(s, STORE_CF_DATA, keyi("d", i), NULL);
	for (int i = 50; i < 100; i++)
		expect(s, STORE_CF_DATA, keyi("d", i), "old");
	for (int i = 100; i < 600; i++)
		expect(s, STORE_CF_DATA, keyi("d", i), "new");
	expect(s, STORE_CF_META, "applied", "42");
	expect(s, STORE_CF_RAFT, "hard", "term");
	expect(s, STORE_CF_DATA, "ghost", NULL);
	store_close(s);
}

Test(store, delete_range_is_half_open_and_per_cf)
{
	struct store *s = open_db();
	struct store_batch *b = store_batch_new(s);
	cr_assert_not_null(b);
	for (int i = 0; i < 100; i++) {
		store_batch_put(b, STORE_CF_RAFT, keyi("L", i), 6, "e", 1);
		store_batch_put(b, STORE_CF_DATA, keyi("L", i), 6, "d", 1);
	}
	cr_assert_eq(store_write(s, b, false), STATUS_OK);
	cr_assert_eq(store_flush(s), STATUS_OK, "%s", store_errmsg(s));

	char lo[8], hi[8];
	memcpy(lo, keyi("L", 10), 6);
	memcpy(hi, keyi("L", 20), 6);
	store_batch_clear(b);
	store_batch_delete_range(b, STORE_CF_RAFT, lo, 6, hi, 6);
	cr_assert_eq(store_batch_count(b), 1);
	cr_assert_eq(store_write(s, b, true), STATUS_OK);
	store_batch_free(b);

	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 100; i++) {
			const char *want = i >= 10 && i < 20 ? NULL : "e";
			expect(s, STORE_CF_RAFT, keyi("L", i), want);
			expect(s, STORE_CF_DATA, keyi("L", i), "d");
		}
		/* Same answers once the tombstone has been compacted away
		 * and after a restart. */
		store_compact_range(s, STORE_CF_RAFT, NULL, 0, NULL, 0);
		store_close(s);
		s = open_db();
	}
	store_close(s);
}

struct key {
	const char *p;
	size_t n;
};
#define K(lit) {lit, sizeof(lit) - 1}

static int key_cmp(const void *a, const void *b)
{
	const struct key *x = a, *y = b;
	size_t n = x->n < y->n ? x->n : y->n;
	int c = memcmp(x->p, y->p, n);
	return c ? c : (x->n > y->n) - (x->n < y->n);
}

Test(store, prefix_iteration_is_exact_and_ordered)
{
	struct key keys[] = {
		K("a"),         K("a\x00"),     K("a\x01"),
		K("ab"),        K("a\xfe"),     K("a\xff"),
		K("a\xff\x00"), K("a\xff\xff"), K("a\xff\xff\xff"),
		K("b"),         K("b\x00"),     K("\xfe\xff"),
		K("\xff"),      K("\xff\x00"),  K("\xff\x01"),
		K("\xff\xff"),  K("\xff\xff\x01"), K("\xff\xff\xff"),
	};
	const size_t nkeys = sizeof(keys) / sizeof(keys[0]);
	struct key prefixes[] = {
		K(""),         K("a"),            K("a\xff"),
		K("a\xff\xff"), K("ab"),          K("b"),
		K("c"),        K("\xfe"),         K("\xff"),
		K("\xff\xff"), K("\xff\xff\xff"), K("\xff\xff\xff\xff"),
	};

	struct store *s = open_db();
	/* The value of a key is its own bytes reversed; decoys in META. */
	for (size_t i = 0; i < nkeys; i++) {
		char v[8];
		for (size_t j = 0; j < keys[i].n; j++)
			v[j] = keys[i].p[keys[i].n - 1 - j];
		cr_assert_eq(store_put(s, STORE_CF_DATA, keys[i].p, keys[i].n,
				       v, keys[i].n, false),
			     STATUS_OK);
		cr_assert_eq(store_put(s, STORE_CF_META, "x", 1, "", 0, false),
			     STATUS_OK);
	}
	qsort(keys, nkeys, sizeof(keys[0]), key_cmp);

	/* Once from the memtable, once from table files. */
	for (int round = 0; round < 2; round++) {
		for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]);
		     p++) {
			const struct key *pre = &prefixes[p];
			struct store_iter *it = store_iter_new(
				s, STORE_CF_DATA, pre->p, pre->n, NULL);
			cr_assert_not_null(it);
			size_t want = 0;
			for (size_t i = 0; i < nkeys; i++) {
				if (keys[i].n < pre->n ||
				    memcmp(keys[i].p, pre->p, pre->n))
					continue;
				cr_assert(store_iter_valid(it),
					  "prefix %zu: key %zu missing", p, i);
				size_t klen, vlen;
				const char *k = store_iter_key(it, &klen);
				const char *v = store_iter_value(it, &vlen);
				cr_assert(klen == keys[i].n &&
						  !memcmp(k, keys[i].p, klen),
					  "prefix %zu: wrong key at %zu", p, i);
				cr_assert_eq(vlen, klen);
				for (size_t j = 0; j < klen; j++)
					cr_assert_eq(v[j], k[klen - 1 - j]);
				store_iter_next(it);
				want++;
			}
			cr_assert_not(store_iter_valid(it),
				      "prefix %zu: extra key after %zu", p,
				      want);
			cr_assert_eq(store_iter_status(it), STATUS_OK);
			store_iter_free(it);
		}
		cr_assert_eq(store_flush(s), STATUS_OK);
	}
	store_close(s);
}

/* "L" | u64be(index), the Raft log's key shape. */
static const char *log_key(uint64_t index)
{
	static char k[9];
	k[0] = 'L';
	put_u64be((uint8_t *)k + 1, index);
	return k;
}

static uint64_t log_index_at(const struct store_iter *it)
{
	size_t klen;
	const uint8_t *k = store_iter_key(it, &klen);
	cr_assert_eq(klen, 9);
	return get_u64be(k + 1);
}

Test(store, seek_within_prefix_and_last_key)
{
	struct store *s = open_db();
	put(s, STORE_CF_RAFT, "K", "before");
	put(s, STORE_CF_RAFT, "M", "after");
	for (uint64_t i = 5; i < 15; i++)
		cr_assert_eq(store_put(s, STORE_CF_RAFT, log_key(i), 9, "e", 1,
				       false),
			     STATUS_OK);
	cr_assert_eq(store_delete(s, STORE_CF_RAFT, log_key(9), 9, false),
		     STATUS_OK);

	struct store_iter *it = store_iter_new(s, STORE_CF_RAFT, "L", 1, NULL);
	cr_assert_not_null(it);
	cr_assert_eq(log_index_at(it), 5);
	store_iter_seek(it, log_key(8), 9);
	cr_assert_eq(log_index_at(it), 8);
	store_iter_next(it);
	cr_assert_eq(log_index_at(it), 10, "9 was deleted");
	store_iter_seek(it, log_key(9), 9);
	cr_assert_eq(log_index_at(it), 10, "a missing key seeks to the next");
	store_iter_seek(it, "A", 1);
	cr_assert_eq(log_index_at(it), 5, "below the prefix: first key");
	store_iter_seek(it, log_key(1000), 9);
	cr_assert_not(store_iter_valid(it));
	store_iter_seek(it, "Z", 1);
	cr_assert_not(store_iter_valid(it), "above the prefix: invalid");
	store_iter_seek_last(it);
	cr_assert_eq(log_index_at(it), 14);
	store_iter_next(it);
	cr_assert_not(store_iter_valid(it));
	cr_assert_eq(store_iter_status(it), STATUS_OK);
	store_iter_free(it);

	struct buf key;
	buf_init(&key);
	cr_assert_eq(store_last_key(s, STORE_CF_RAFT, "L", 1, &key),
		     STATUS_OK);
	cr_assert(key.len == 9 && get_u64be(key.data + 1) == 14);
	cr_assert_eq(store_last_key(s, STORE_CF_RAFT, "N", 1, &key),
		     STATUS_NOT_FOUND);
	cr_assert_eq(key.len, 0);
	cr_assert_eq(store_last_key(s, STORE_CF_RAFT, "", 0, &key), STATUS_OK);
	cr_assert(key.len == 1 && key.data[0] == 'M');
	cr_assert_eq(store_last_key(s, STORE_CF_DATA, "", 0, &key),
		     STATUS_NOT_FOUND);

	/* A prefix of 0xff bytes has no successor: the range is open. */
	put(s, STORE_CF_META, "\xff\x01", "1");
	put(s, STORE_CF_META, "\xff\xff", "2");
	put(s, STORE_CF_META, "\xfe", "0");
	cr_assert_eq(store_last_key(s, STORE_CF_META, "\xff", 1, &key),
		     STATUS_OK);
	cr_assert(key.len == 2 && !memcmp(key.data, "\xff\xff", 2));
	it = store_iter_new(s, STORE_CF_META, "\xff", 1, NULL);
	cr_assert_not_null(it);
	store_iter_seek(it, "\xfe", 1);
	size_t klen;
	const char *k = store_iter_key(it, &klen);
	cr_assert(klen == 2 && !memcmp(k, "\xff\x01", 2));
	store_iter_free(it);
	buf_free(&key);
	store_close(s);
}

Test(store, snapshot_isolates_get_and_iteration)
{
	struct store *s = open_db();
	put(s, STORE_CF_DATA, "a", "1");
	put(s, STORE_CF_DATA, "c", "1");
	put(s, STORE_CF_META, "applied", "7");
	struct store_snapshot *snap = store_snapshot_new(s);
	cr_assert_not_null(snap);

	put(s, STORE_CF_DATA, "a", "2");
	put(s, STORE_CF_DATA, "b", "2");
	cr_assert_eq(store_delete(s, STORE_CF_DATA, "c", 1, false), STATUS_OK);
	put(s, STORE_CF_META, "applied", "8");
	cr_assert_eq(store_flush(s), STATUS_OK); /* the snapshot survives it */

	expect_at(s, snap, STORE_CF_DATA, "a", "1");
	expect_at(s, snap, STORE_CF_DATA, "b", NULL);
	expect_at(s, snap, STORE_CF_DATA, "c", "1");
	expect_at(s, snap, STORE_CF_META, "applied", "7");
	expect(s, STORE_CF_DATA, "a", "2");
	expect(s, STORE_CF_DATA, "b", "2");
	expect(s, STORE_CF_DATA, "c", NULL);
	expect(s, STORE_CF_META, "applied", "8");

	const char *want_snap[] = {"a1", "c1"}, *want_now[] = {"a2", "b2"};
	for (int pass = 0; pass < 2; pass++) {
		const char **want = pass ? want_now : want_snap;
		struct store_iter *it = store_iter_new(
			s, STORE_CF_DATA, "", 0, pass ? NULL : snap);
		cr_assert_not_null(it);
		for (int i = 0; i < 2; i++, store_iter_next(it)) {
			cr_assert(store_iter_valid(it));
			size_t kl, vl;
			const char *k = store_iter_key(it, &kl);
			const char *v = store_iter_value(it, &vl);
			cr_assert(kl == 1 && k[0] == want[i][0] && vl == 1 &&
				  v[0] == want[i][1]);
		}
		cr_assert_not(store_iter_valid(it));
		store_iter_free(it);
	}
	store_snapshot_free(s, snap);
	store_close(s);
}

Test(store, checkpoint_opens_as_separate_store)
{
	struct store *s = open_db();
	put(s, STORE_CF_DATA, "k", "v");
	put(s, STORE_CF_RAFT, "log", "e1");
	put(s, STORE_CF_META, "applied", "1");
	char ckpt[128];
	snprintf(ckpt, sizeof(ckpt), "%s", tmp_path("ckpt"));
	cr_assert_eq(store_checkpoint(s, ckpt), STATUS_OK, "%s",
		     store_errmsg(s));
	put(s, STORE_CF_DATA, "k", "after");

	/* The directory must not exist. */
	cr_assert_eq(store_checkpoint(s, ckpt), STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(store_errmsg(s), ckpt), "%s", store_errmsg(s));

	struct store_opts o = {.path = ckpt}; /* must exist already */
	struct store *c;
	char err[256];
	cr_assert_eq(store_open(&o, &c, err, sizeof(err)), STATUS_OK, "%s",
		     err);
	expect(c, STORE_CF_DATA, "k", "v");
	expect(c, STORE_CF_RAFT, "log", "e1");
	expect(c, STORE_CF_META, "applied", "1");
	put(c, STORE_CF_DATA, "only", "ckpt");
	store_close(c);
	expect(s, STORE_CF_DATA, "k", "after");
	expect(s, STORE_CF_DATA, "only", NULL);
	store_close(s);
}

Test(store, memenv_survives_reopen_and_is_private)
{
	const char *path = tmp_path("mem");
	struct store_memenv *env = store_memenv_new();
	cr_assert_not_null(env);

	/* Restart many times, as the simulator's crash does. */
	for (int i = 0; i < 20; i++) {
		struct store *s = open_at(path, env);
		for (int j = 0; j < i; j++)
			expect(s, STORE_CF_RAFT, keyi("e", j), "x");
		cr_assert_eq(store_put(s, STORE_CF_RAFT, keyi("e", i), 6, "x",
				       1, i % 2 == 0),
			     STATUS_OK);
		if (i == 10)
			cr_assert_eq(store_flush(s), STATUS_OK);
		store_close(s);
	}
	cr_assert_eq(access(path, F_OK), -1, "memenv must not touch the disk");

	struct store_memenv *other = store_memenv_new();
	cr_assert_not_null(other);
	struct store *t = open_at(path, other);
	expect(t, STORE_CF_RAFT, keyi("e", 0), NULL);
	put(t, STORE_CF_RAFT, keyi("e", 0), "other");
	store_close(t);

	struct store *s = open_at(path, env);
	expect(s, STORE_CF_RAFT, keyi("e", 0), "x");
	expect(s, STORE_CF_RAFT, keyi("e", 19), "x");
	store_close(s);
	store_memenv_free(other);
	store_memenv_free(env);
}

static int try_open(const char *path, bool create, bool excl, char *err,
		    size_t errcap)
{
	struct store_opts o = {
		.path = path, .create_if_missing = create,
		.error_if_exists = excl};
	struct store *s = NULL;
	int rc = store_open(&o, &s, err, errcap);
	cr_assert_eq(rc != STATUS_OK, s == NULL);
	store_close(s);
	return rc;
}

static void write_file(const char *path, const char *contents)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(contents, f);
	cr_assert_eq(fclose(f), 0);
}

Test(store, opening_garbage_fails_with_a_message)
{
	char err[256];

	const char *file = tmp_path("plain");
	write_file(file, "not a database\n");
	cr_assert_eq(try_open(file, true, false, err, sizeof(err)), STATUS_IO);
	cr_assert(strstr(err, "plain"), "%s", err);

	cr_assert_eq(mkdir(tmp_path("junk"), 0700), 0);
	write_file(tmp_path("junk/CURRENT"), "\x01garbage");
	cr_assert_eq(try_open(tmp_path("junk"), true, false, err, sizeof(err)),
		     STATUS_CORRUPTION, "%s", err);
	cr_assert(strstr(err, "junk") && strstr(err, "CURRENT"), "%s", err);

	cr_assert_eq(try_open(tmp_path("absent"), false, false, err,
			      sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "does not exist"), "%s", err);

	cr_assert_eq(try_open("", true, false, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_neq(err[0], '\0');
	cr_assert_eq(try_open("", true, false, NULL, 0),
		     STATUS_INVALID_ARGUMENT);

	struct store *s = open_db();
	cr_assert_eq(try_open(tmp_path("db"), true, false, err, sizeof(err)),
		     STATUS_IO, "locked: %s", err);
	store_close(s);
	cr_assert_eq(try_open(tmp_path("db"), true, true, err, sizeof(err)),
		     STATUS_INVALID_ARGUMENT, "%s", err);
	cr_assert_eq(try_open(tmp_path("db"), false, false, err, sizeof(err)),
		     STATUS_OK, "%s", err);
}

/* Overwrites `n` bytes at `off` in every table file of `dir`. */
static void smash_tables(const char *dir, off_t off, size_t n)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	char junk[64];
	cr_assert_leq(n, sizeof(junk));
	memset(junk, 0x5a, sizeof(junk));
	int files = 0;
	for (struct dirent *e; (e = readdir(d));) {
		const char *dot = strrchr(e->d_name, '.');
		if (!dot || strcmp(dot, ".sst"))
			continue;
		int fd = openat(dirfd(d), e->d_name, O_WRONLY);
		cr_assert_geq(fd, 0, "%s", e->d_name);
		cr_assert_eq(pwrite(fd, junk, n, off), (ssize_t)n);
		close(fd);
		files++;
	}
	closedir(d);
	cr_assert_gt(files, 0);
}

Test(store, corrupt_table_is_reported_not_crashed)
{
	struct store *s = open_db();
	char v[1000];
	memset(v, 'v', sizeof(v));
	for (int i = 0; i < 10; i++)
		cr_assert_eq(store_put(s, STORE_CF_DATA, keyi("k", i), 6, v,
				       sizeof(v), false),
			     STATUS_OK);
	cr_assert_eq(store_flush(s), STATUS_OK);
	store_close(s);
	smash_tables(tmp_path("db"), 20, 64); /* inside the first data block */

	s = open_db();
	struct buf val;
	buf_init(&val);
	cr_assert_eq(store_get(s, STORE_CF_DATA, keyi("k", 0), 6, &val),
		     STATUS_CORRUPTION, "%s", store_errmsg(s));
	cr_assert(strstr(store_errmsg(s), "get: Corruption"), "%s",
		  store_errmsg(s));
	buf_free(&val);

	struct store_iter *it = store_iter_new(s, STORE_CF_DATA, "", 0, NULL);
	cr_assert_not_null(it);
	cr_assert_not(store_iter_valid(it));
	cr_assert_eq(store_iter_status(it), STATUS_CORRUPTION);
	cr_assert(strstr(store_errmsg(s), "iterate: Corruption"), "%s",
		  store_errmsg(s));
	store_iter_free(it);
	store_close(s);
}

Test(store, allocation_failures_return_no_memory)
{
	struct store *s = open_db();
	put(s, STORE_CF_DATA, "k", "value");

	mem_fail_after(1);
	cr_assert_null(store_batch_new(s));
	cr_assert_null(store_snapshot_new(s));
	cr_assert_null(store_iter_new(s, STORE_CF_DATA, "k", 1, NULL));
	cr_assert(strstr(store_errmsg(s), "out of memory"));
	struct buf val;
	buf_init(&val);
	cr_assert_eq(store_get(s, STORE_CF_DATA, "k", 1, &val),
		     STATUS_NO_MEMORY);
	cr_assert_eq(store_last_key(s, STORE_CF_DATA, "", 0, &val),
		     STATUS_NO_MEMORY);
	cr_assert_null(store_memenv_new());
	mem_fail_reset();

	/* The store is unharmed. */
	expect(s, STORE_CF_DATA, "k", "value");
	/* store_last_key: the iterator allocates, then the copy fails. */
	mem_fail_after(2);
	cr_assert_eq(store_last_key(s, STORE_CF_DATA, "", 0, &val),
		     STATUS_NO_MEMORY);
	mem_fail_reset();
	cr_assert_eq(store_last_key(s, STORE_CF_DATA, "", 0, &val), STATUS_OK);
	buf_free(&val);
	store_close(s);

	/* Every allocation of store_open can fail cleanly. */
	for (long n = 1;; n++) {
		char err[256];
		struct store_opts o = {.path = tmp_path("db")};
		mem_fail_after(n);
		int rc = store_open(&o, &s, err, sizeof(err));
		mem_fail_reset();
		if (rc == STATUS_OK)
			break;
		cr_assert_eq(rc, STATUS_NO_MEMORY, "%s", err);
		cr_assert_null(s);
	}
	store_close(s);
}

/*
 * A full disk: the write fails with STATUS_IO and RocksDB's reason, and
 * everything acknowledged before survives a reopen. RLIMIT_FSIZE makes the
 * kernel refuse to grow any file past a size (EFBIG), which reaches
 * RocksDB exactly like ENOSPC: a failed WAL append. Criterion runs each
 * test in a process of its own, so the limit ends with the test.
 */
Test(store, write_error_is_reported_and_acknowledged_data_survives)
{
	signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of being killed */
	struct store *s = open_db();
	char key[16], val[16];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		snprintf(val, sizeof(val), "v%03d", i);
		cr_assert_eq(store_put(s, STORE_CF_DATA, key, strlen(key), val,
				       strlen(val), true),
			     STATUS_OK, "%s", store_errmsg(s));
	}

	struct rlimit old, lim;
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1 << 20;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	size_t big_len = 4 << 20;
	char *big = calloc(1, big_len);
	int rc = store_put(s, STORE_CF_DATA, "big", 3, big, big_len, true);
	free(big);
	cr_assert_eq(rc, STATUS_IO, "got %s: %s", status_name(rc),
		     store_errmsg(s));
	cr_assert(strstr(store_errmsg(s), "IO error"), "%s", store_errmsg(s));
	store_close(s);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);

	s = open_db();
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		snprintf(val, sizeof(val), "v%03d", i);
		expect(s, STORE_CF_DATA, key, val);
	}
	cr_assert_eq(store_put(s, STORE_CF_DATA, "after", 5, "x", 1, true),
		     STATUS_OK, "writes work again once there is room: %s",
		     store_errmsg(s));
	store_close(s);
}
