#include "common/store/store.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rocksdb/c.h>

#include "common/mem.h"
#include "common/status.h"

#define STORE_ERRMSG_CAP 512
#define STORE_BLOCK_CACHE_BYTES_DEFAULT ((size_t)32 << 20)
/* ~1% false positives: a point miss in `data` rarely touches disk. */
#define STORE_BLOOM_BITS_PER_KEY 10.0
/* RocksDB starts a new info LOG per open; keep a few for post-mortems. */
#define STORE_INFO_LOG_FILES_MAX 10
/* rocksdb::BottommostLevelCompaction::kForce (the C API has no name). */
#define STORE_BOTTOMMOST_FORCE 2

static const char *const cf_names[STORE_CF_COUNT_] = {
	[STORE_CF_DEFAULT] = "default",
	[STORE_CF_RAFT] = "raft",
	[STORE_CF_DATA] = "data",
	[STORE_CF_META] = "meta",
};

struct store {
	rocksdb_t *db;
	rocksdb_column_family_handle_t *cf[STORE_CF_COUNT_];
	/* Reads at the latest state; store_get_at sets a snapshot on it for
	 * one call and clears it again (single thread, see the header). */
	rocksdb_readoptions_t *ro;
	rocksdb_writeoptions_t *wo_nosync;
	rocksdb_writeoptions_t *wo_sync;
	/* Batches, snapshots and iterators alive; 0 at store_close. */
	long borrowers;
	char errmsg[STORE_ERRMSG_CAP];
};

struct store_memenv {
	rocksdb_env_t *env;
};

struct store_batch {
	struct store *s;
	rocksdb_writebatch_t *wb;
};

struct store_snapshot {
	const rocksdb_snapshot_t *snap;
};

struct store_iter {
	struct store *s;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	/* The prefix (lower bound), then its successor (upper bound). The
	 * read options point into these bytes rather than copying them, so
	 * they live as long as the iterator. */
	char bounds[];
};

/* Status::ToString() prefixes; anything else is STATUS_INTERNAL. "No space
 * left on device" is an IO error subcode, so it maps to STATUS_IO. */
static const struct {
	const char *prefix;
	enum status status;
} rocksdb_codes[] = {
	{"Corruption", STATUS_CORRUPTION},
	{"IO error", STATUS_IO},
	{"Invalid argument", STATUS_INVALID_ARGUMENT},
	{"Not implemented", STATUS_INVALID_ARGUMENT},
	{"NotFound", STATUS_NOT_FOUND},
	{"Shutdown in progress", STATUS_SHUTDOWN},
	{"Operation timed out", STATUS_TIMEOUT},
	{"Resource busy", STATUS_UNAVAILABLE},
	{"Operation failed. Try again.", STATUS_UNAVAILABLE},
};

/* Classifies a RocksDB error string, writes "<op> [<path>]: <err>" to
 * errmsg and frees err (which RocksDB allocated). `path` is nullable. */
static int status_from_rocksdb(char *err, const char *op, const char *path,
			       char *errmsg, size_t errcap)
{
	int rc = STATUS_INTERNAL;
	for (size_t i = 0; i < sizeof(rocksdb_codes) / sizeof(rocksdb_codes[0]);
	     i++) {
		const char *p = rocksdb_codes[i].prefix;
		if (strncmp(err, p, strlen(p)) == 0) {
			rc = rocksdb_codes[i].status;
			break;
		}
	}
	snprintf(errmsg, errcap, "%s%s%s: %s", op, path ? " " : "",
		 path ? path : "", err);
	rocksdb_free(err);
	return rc;
}

static int fail_rocksdb(struct store *s, const char *op, char *err)
{
	return status_from_rocksdb(err, op, NULL, s->errmsg, sizeof(s->errmsg));
}

static int fail_nomem(struct store *s, const char *op)
{
	snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s", op,
		 status_str(STATUS_NO_MEMORY));
	return STATUS_NO_MEMORY;
}

static rocksdb_column_family_handle_t *cf_handle(struct store *s,
						 enum store_cf cf)
{
	assert((unsigned)cf < STORE_CF_COUNT_);
	return s->cf[cf];
}

const char *store_cf_name(enum store_cf cf)
{
	assert((unsigned)cf < STORE_CF_COUNT_);
	return cf_names[cf];
}

struct store_memenv *store_memenv_new(void)
{
	struct store_memenv *env = mem_alloc(sizeof(*env));
	if (!env)
		return NULL;
	env->env = rocksdb_create_mem_env();
	return env;
}

void store_memenv_free(struct store_memenv *env)
{
	if (!env)
		return;
	rocksdb_env_destroy(env->env);
	mem_free(env);
}

/*
 * Tuning: RocksDB's defaults (bytewise comparator, level compaction,
 * snappy where built in, paranoid checks, point-in-time WAL recovery, which
 * after a crash drops only an unsynced tail that Raft never acknowledged)
 * plus:
 * - one LRU block cache shared by all CFs, so the memory bound is global;
 * - dynamic level sizing, the recommended layout for level compaction:
 *   bounded space amplification however large the DB grows;
 * - a bloom filter on `data` only, where client gets may miss; the `raft`
 *   CF is read by known index or by range, `meta` is small and hot.
 */
static void set_table_options(rocksdb_options_t *opts, rocksdb_cache_t *cache,
			      bool bloom)
{
	rocksdb_block_based_table_options_t *t =
		rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(t, cache);
	if (bloom) /* t takes ownership of the policy */
		rocksdb_block_based_options_set_filter_policy(
			t, rocksdb_filterpolicy_create_bloom_full(
				   STORE_BLOOM_BITS_PER_KEY));
	rocksdb_options_set_block_based_table_factory(opts, t); /* copies t */
	rocksdb_block_based_options_destroy(t);
}

int store_open(const struct store_opts *o, struct store **out, char *errmsg,
	       size_t errcap)
{
	/* errmsg may be NULL when errcap is 0; snprintf then writes nothing. */
	*out = NULL;
	if (errcap > 0)
		errmsg[0] = '\0';
	if (!o->path || !o->path[0]) {
		snprintf(errmsg, errcap, "open: empty path");
		return STATUS_INVALID_ARGUMENT;
	}
	struct store *s = mem_calloc(1, sizeof(*s));
	if (!s) {
		snprintf(errmsg, errcap, "open %s: %s", o->path,
			 status_str(STATUS_NO_MEMORY));
		return STATUS_NO_MEMORY;
	}

	rocksdb_options_t *opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(opts, o->create_if_missing);
	rocksdb_options_set_create_missing_column_families(opts, 1);
	rocksdb_options_set_error_if_exists(opts, o->error_if_exists);
	if (o->memenv) /* the env is borrowed by the DB until close */
		rocksdb_options_set_env(opts, o->memenv->env);
	rocksdb_options_set_keep_log_file_num(opts, STORE_INFO_LOG_FILES_MAX);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(opts, 1);
	/* The table factories share the cache; our reference can go now. */
	rocksdb_cache_t *cache = rocksdb_cache_create_lru(
		o->block_cache_bytes ? o->block_cache_bytes
				     : STORE_BLOCK_CACHE_BYTES_DEFAULT);
	rocksdb_options_t *data_opts = rocksdb_options_create_copy(opts);
	set_table_options(opts, cache, false);
	set_table_options(data_opts, cache, true);
	rocksdb_cache_destroy(cache);

	const rocksdb_options_t *cf_opts[STORE_CF_COUNT_] = {
		[STORE_CF_DEFAULT] = opts,
		[STORE_CF_RAFT] = opts,
		[STORE_CF_DATA] = data_opts,
		[STORE_CF_META] = opts,
	};
	char *err = NULL;
	s->db = rocksdb_open_column_families(opts, o->path, STORE_CF_COUNT_,
					     cf_names, cf_opts, s->cf, &err);
	rocksdb_options_destroy(data_opts);
	rocksdb_options_destroy(opts);
	if (err) {
		mem_free(s);
		return status_from_rocksdb(err, "open", o->path, errmsg,
					   errcap);
	}

	s->ro = rocksdb_readoptions_create();
	s->wo_nosync = rocksdb_writeoptions_create();
	s->wo_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wo_sync, 1);
	*out = s;
	return STATUS_OK;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	assert(s->borrowers == 0);
	rocksdb_writeoptions_destroy(s->wo_sync);
	rocksdb_writeoptions_destroy(s->wo_nosync);
	rocksdb_readoptions_destroy(s->ro);
	for (int i = 0; i < STORE_CF_COUNT_; i++)
		rocksdb_column_family_handle_destroy(s->cf[i]);
	rocksdb_close(s->db);
	mem_free(s);
}

const char *store_errmsg(const struct store *s)
{
	return s->errmsg;
}

int store_get_at(struct store *s, const struct store_snapshot *snap,
		 enum store_cf cf, const void *key, size_t klen,
		 struct buf *val)
{
	char *err = NULL;
	buf_reset(val);
	if (snap)
		rocksdb_readoptions_set_snapshot(s->ro, snap->snap);
	rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(
		s->db, s->ro, cf_handle(s, cf), key, klen, &err);
	if (snap)
		rocksdb_readoptions_set_snapshot(s->ro, NULL);
	if (err)
		return fail_rocksdb(s, "get", err);
	if (!v)
		return STATUS_NOT_FOUND;
	size_t vlen;
	const char *p = rocksdb_pinnableslice_value(v, &vlen);
	int rc = buf_set(val, p, vlen);
	rocksdb_pinnableslice_destroy(v);
	if (rc)
		return fail_nomem(s, "get");
	return STATUS_OK;
}

int store_get(struct store *s, enum store_cf cf, const void *key, size_t klen,
	      struct buf *val)
{
	return store_get_at(s, NULL, cf, key, klen, val);
}

static const rocksdb_writeoptions_t *write_options(const struct store *s,
						   bool sync)
{
	return sync ? s->wo_sync : s->wo_nosync;
}

int store_put(struct store *s, enum store_cf cf, const void *key, size_t klen,
	      const void *val, size_t vlen, bool sync)
{
	char *err = NULL;
	rocksdb_put_cf(s->db, write_options(s, sync), cf_handle(s, cf), key,
		       klen, val, vlen, &err);
	return err ? fail_rocksdb(s, "put", err) : STATUS_OK;
}

int store_delete(struct store *s, enum store_cf cf, const void *key,
		 size_t klen, bool sync)
{
	char *err = NULL;
	rocksdb_delete_cf(s->db, write_options(s, sync), cf_handle(s, cf), key,
			  klen, &err);
	return err ? fail_rocksdb(s, "delete", err) : STATUS_OK;
}

struct store_batch *store_batch_new(struct store *s)
{
	struct store_batch *b = mem_alloc(sizeof(*b));
	if (!b) {
		fail_nomem(s, "batch");
		return NULL;
	}
	b->s = s;
	b->wb = rocksdb_writebatch_create();
	s->borrowers++;
	return b;
}

void store_batch_free(struct store_batch *b)
{
	if (!b)
		return;
	b->s->borrowers--;
	rocksdb_writebatch_destroy(b->wb);
	mem_free(b);
}

void store_batch_put(struct store_batch *b, enum store_cf cf, const void *key,
		     size_t klen, const void *val, size_t vlen)
{
	rocksdb_writebatch_put_cf(b->wb, cf_handle(b->s, cf), key, klen, val,
				  vlen);
}

void store_batch_delete(struct store_batch *b, enum store_cf cf,
			const void *key, size_t klen)
{
	rocksdb_writebatch_delete_cf(b->wb, cf_handle(b->s, cf), key, klen);
}

void store_batch_delete_range(struct store_batch *b, enum store_cf cf,
			      const void *begin, size_t blen, const void *end,
			      size_t elen)
{
	rocksdb_writebatch_delete_range_cf(b->wb, cf_handle(b->s, cf), begin,
					   blen, end, elen);
}

void store_batch_clear(struct store_batch *b)
{
	rocksdb_writebatch_clear(b->wb);
}

size_t store_batch_count(const struct store_batch *b)
{
	return (size_t)rocksdb_writebatch_count(b->wb);
}

size_t store_batch_bytes(const struct store_batch *b)
{
	size_t n;
	rocksdb_writebatch_data(b->wb, &n);
	return n;
}

int store_write(struct store *s, struct store_batch *b, bool sync)
{
	assert(b->s == s);
	char *err = NULL;
	rocksdb_write(s->db, write_options(s, sync), b->wb, &err);
	return err ? fail_rocksdb(s, "write", err) : STATUS_OK;
}

struct store_snapshot *store_snapshot_new(struct store *s)
{
	struct store_snapshot *snap = mem_alloc(sizeof(*snap));
	if (!snap) {
		fail_nomem(s, "snapshot");
		return NULL;
	}
	snap->snap = rocksdb_create_snapshot(s->db);
	s->borrowers++;
	return snap;
}

void store_snapshot_free(struct store *s, struct store_snapshot *snap)
{
	if (!snap)
		return;
	rocksdb_release_snapshot(s->db, snap->snap);
	s->borrowers--;
	mem_free(snap);
}

/* Length of the smallest string above every string that starts with
 * p[0..plen), written over p: drop trailing 0xff bytes, increment the last
 * byte left. 0 if there is none (p is empty or all 0xff): the prefix range
 * then runs to the end of the CF. */
static size_t prefix_successor(char *p, size_t plen)
{
	while (plen > 0 && (unsigned char)p[plen - 1] == 0xff)
		plen--;
	if (plen > 0)
		p[plen - 1] = (char)((unsigned char)p[plen - 1] + 1);
	return plen;
}

struct store_iter *store_iter_new(struct store *s, enum store_cf cf,
				  const void *prefix, size_t plen,
				  const struct store_snapshot *snap)
{
	struct store_iter *it = NULL;
	if (plen <= (SIZE_MAX - sizeof(*it)) / 2)
		it = mem_alloc(sizeof(*it) + 2 * plen);
	if (!it) {
		fail_nomem(s, "iterator");
		return NULL;
	}
	it->s = s;
	it->ro = rocksdb_readoptions_create();
	if (plen > 0) {
		char *upper = it->bounds + plen;
		memcpy(it->bounds, prefix, plen);
		memcpy(upper, prefix, plen);
		size_t ulen = prefix_successor(upper, plen);
		rocksdb_readoptions_set_iterate_lower_bound(it->ro, it->bounds,
							    plen);
		if (ulen > 0)
			rocksdb_readoptions_set_iterate_upper_bound(it->ro,
								    upper, ulen);
	}
	if (snap)
		rocksdb_readoptions_set_snapshot(it->ro, snap->snap);
	it->it = rocksdb_create_iterator_cf(s->db, it->ro, cf_handle(s, cf));
	rocksdb_iter_seek_to_first(it->it);
	s->borrowers++;
	return it;
}

void store_iter_free(struct store_iter *it)
{
	if (!it)
		return;
	it->s->borrowers--;
	rocksdb_iter_destroy(it->it);
	rocksdb_readoptions_destroy(it->ro);
	mem_free(it);
}

void store_iter_seek(struct store_iter *it, const void *key, size_t klen)
{
	/* RocksDB clamps a target below the lower bound up to it, and stops
	 * at the upper bound; with no upper bound (prefix of 0xff bytes)
	 * everything >= the prefix starts with it. */
	rocksdb_iter_seek(it->it, key, klen);
}

void store_iter_seek_last(struct store_iter *it)
{
	rocksdb_iter_seek_to_last(it->it);
}

bool store_iter_valid(const struct store_iter *it)
{
	return rocksdb_iter_valid(it->it);
}

void store_iter_next(struct store_iter *it)
{
	assert(store_iter_valid(it));
	rocksdb_iter_next(it->it);
}

const void *store_iter_key(const struct store_iter *it, size_t *len)
{
	assert(store_iter_valid(it));
	return rocksdb_iter_key(it->it, len);
}

const void *store_iter_value(const struct store_iter *it, size_t *len)
{
	assert(store_iter_valid(it));
	return rocksdb_iter_value(it->it, len);
}

int store_iter_status(const struct store_iter *it)
{
	char *err = NULL;
	rocksdb_iter_get_error(it->it, &err);
	return err ? fail_rocksdb(it->s, "iterate", err) : STATUS_OK;
}

int store_last_key(struct store *s, enum store_cf cf, const void *prefix,
		   size_t plen, struct buf *key_out)
{
	buf_reset(key_out);
	struct store_iter *it = store_iter_new(s, cf, prefix, plen, NULL);
	if (!it)
		return STATUS_NO_MEMORY;
	store_iter_seek_last(it);
	int rc;
	if (store_iter_valid(it)) {
		size_t klen;
		const void *k = store_iter_key(it, &klen);
		rc = buf_set(key_out, k, klen) ? fail_nomem(s, "last key")
					       : STATUS_OK;
	} else {
		rc = store_iter_status(it);
		if (rc == STATUS_OK)
			rc = STATUS_NOT_FOUND;
	}
	store_iter_free(it);
	return rc;
}

int store_checkpoint(struct store *s, const char *dir)
{
	char *err = NULL;
	rocksdb_checkpoint_t *cp =
		rocksdb_checkpoint_object_create(s->db, &err);
	if (err)
		return fail_rocksdb(s, "checkpoint", err);
	/* 0: always flush the memtables first, so the copy is table files
	 * only and opening it replays no WAL. */
	rocksdb_checkpoint_create(cp, dir, 0, &err);
	rocksdb_checkpoint_object_destroy(cp);
	if (err)
		return status_from_rocksdb(err, "checkpoint", dir, s->errmsg,
					   sizeof(s->errmsg));
	return STATUS_OK;
}

int store_flush(struct store *s)
{
	int rc = STATUS_OK;
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(fo, 1);
	for (int i = 0; i < STORE_CF_COUNT_ && rc == STATUS_OK; i++) {
		char *err = NULL;
		rocksdb_flush_cf(s->db, fo, s->cf[i], &err);
		if (err)
			rc = fail_rocksdb(s, "flush", err);
	}
	rocksdb_flushoptions_destroy(fo);
	return rc;
}

void store_compact_range(struct store *s, enum store_cf cf, const void *begin,
			 size_t blen, const void *end, size_t elen)
{
	/* The default skips the last level unless a compaction filter is
	 * set; deleted data that already sits there would never go away. */
	rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
	rocksdb_compactoptions_set_bottommost_level_compaction(
		co, STORE_BOTTOMMOST_FORCE);
	rocksdb_compact_range_cf_opt(s->db, cf_handle(s, cf), co, begin, blen,
				     end, elen);
	rocksdb_compactoptions_destroy(co);
}
