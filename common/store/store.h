/*
 * store: the RocksDB wrapper, one database per server process.
 *
 * What it is for: the only place that includes <rocksdb/c.h>. It gives the
 * rest of the server the four column families fixed by the design, atomic
 * write batches, point reads, prefix iteration, snapshots and checkpoints,
 * and turns every RocksDB error into an `enum status` plus a message.
 *
 * What it owns: a `struct store` owns the RocksDB handle, its column family
 * handles and its options. Batches, snapshots and iterators are created
 * from a store and borrow it. A `struct store_memenv` (an in-memory file
 * system for the simulator) is owned by whoever created it and outlives
 * every store opened on it; its files survive store_close, so closing and
 * reopening on the same memenv models a crash and restart.
 *
 * Invariant: every batch, snapshot and iterator of a store is freed before
 * store_close (asserted). A store is used by one thread at a time (the
 * event loop or the simulator): the errmsg buffer is not locked.
 *
 * Errors: functions returning `int` return STATUS_OK or an error status;
 * the message of the last failure is store_errmsg(). RocksDB "Corruption"
 * maps to STATUS_CORRUPTION, "IO error" (including no space left) to
 * STATUS_IO, "Invalid argument"/"Not implemented" to
 * STATUS_INVALID_ARGUMENT. Per the design, a caller that cannot be sure
 * its replica is intact after an error logs it and exits.
 */
#ifndef SKV_COMMON_STORE_STORE_H
#define SKV_COMMON_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

/* Names on disk: "default", "raft", "data", "meta" (DESIGN.md, Storage). */
enum store_cf {
	STORE_CF_DEFAULT,
	STORE_CF_RAFT,
	STORE_CF_DATA,
	STORE_CF_META,
	STORE_CF_COUNT_
};

struct store;
struct store_memenv;
struct store_batch;
struct store_snapshot;
struct store_iter;

/* The CF's on-disk name; static. */
const char *store_cf_name(enum store_cf cf);

/* ---- in-memory environment (simulator) ---- */

/* NULL on out of memory. Freed with store_memenv_free, after every store
 * opened on it is closed; that drops all its files. NULL is a no-op. */
struct store_memenv *store_memenv_new(void);
void store_memenv_free(struct store_memenv *env);

/* ---- open / close ---- */

struct store_opts {
	const char *path; /* borrowed for the call */
	bool create_if_missing;
	bool error_if_exists;
	/* NULL = real disk; else borrowed until store_close. */
	struct store_memenv *memenv;
	/* LRU block cache shared by all CFs; 0 = 32 MiB. */
	size_t block_cache_bytes;
};

/*
 * Opens (or, with create_if_missing, creates) the database at o->path;
 * any of the four column families it lacks is created. On STATUS_OK *out
 * is a new store for store_close. On error *out is NULL and
 * errmsg[0..errcap) holds a message (errmsg may be NULL if errcap is 0).
 */
int store_open(const struct store_opts *o, struct store **out, char *errmsg,
	       size_t errcap);

/* Closes the database and frees `s`. NULL is a no-op. */
void store_close(struct store *s);

/* Message of the last failed call on `s`; "" if none. Owned by `s`, valid
 * until the next call on it. */
const char *store_errmsg(const struct store *s);

/* ---- point operations ---- */

/*
 * Replaces val's contents with the value of `key` in `cf`, read at `snap`
 * (NULL = latest). STATUS_OK, STATUS_NOT_FOUND, STATUS_NO_MEMORY, or a
 * RocksDB error; on any non-OK return val is empty (len 0, capacity kept).
 * `val` stays owned by the caller.
 */
int store_get_at(struct store *s, const struct store_snapshot *snap,
		 enum store_cf cf, const void *key, size_t klen,
		 struct buf *val);
int store_get(struct store *s, enum store_cf cf, const void *key, size_t klen,
	      struct buf *val);

/* Single-key writes; sync = the WAL is fsynced before returning. Key and
 * value are copied. */
int store_put(struct store *s, enum store_cf cf, const void *key, size_t klen,
	      const void *val, size_t vlen, bool sync);
int store_delete(struct store *s, enum store_cf cf, const void *key,
		 size_t klen, bool sync);

/* ---- write batches ---- */

/*
 * A batch is bound to the store it was created from (it records that
 * store's CF handles) and borrows it. NULL on out of memory (message in
 * store_errmsg). Freed with store_batch_free; NULL is a no-op. The ops
 * copy their arguments and cannot fail.
 */
struct store_batch *store_batch_new(struct store *s);
void store_batch_free(struct store_batch *b);

void store_batch_put(struct store_batch *b, enum store_cf cf, const void *key,
		     size_t klen, const void *val, size_t vlen);
void store_batch_delete(struct store_batch *b, enum store_cf cf,
			const void *key, size_t klen);
/* Deletes every key in [begin, end). */
void store_batch_delete_range(struct store_batch *b, enum store_cf cf,
			      const void *begin, size_t blen, const void *end,
			      size_t elen);
/* Empties the batch for reuse. */
void store_batch_clear(struct store_batch *b);
/* Number of operations in the batch. */
size_t store_batch_count(const struct store_batch *b);
/* Serialized size in bytes (what the WAL will get, 12-byte header
 * included); for capping group commits. */
size_t store_batch_bytes(const struct store_batch *b);

/* Applies the whole batch atomically, or none of it; sync = the WAL is
 * fsynced before returning. `b` must come from `s`; it stays owned by the
 * caller, unchanged. */
int store_write(struct store *s, struct store_batch *b, bool sync);

/* ---- snapshots ---- */

/* A consistent view of all CFs as of now. NULL on out of memory (message
 * in store_errmsg). Released with store_snapshot_free (NULL is a no-op)
 * before store_close and after every iterator reading at it is freed. */
struct store_snapshot *store_snapshot_new(struct store *s);
void store_snapshot_free(struct store *s, struct store_snapshot *snap);

/* ---- iteration ---- */

/*
 * An iterator over exactly the keys of `cf` that start with
 * prefix[0..plen) (plen 0 = the whole CF), in bytewise order, read at
 * `snap` (NULL = latest at creation). The prefix is copied; `snap` must
 * outlive the iterator. Positioned at the first such key. NULL on out of
 * memory (message in store_errmsg). Freed with store_iter_free (NULL is a
 * no-op) before store_close.
 */
struct store_iter *store_iter_new(struct store *s, enum store_cf cf,
				  const void *prefix, size_t plen,
				  const struct store_snapshot *snap);
void store_iter_free(struct store_iter *it);

/* Positions at the first prefixed key >= key[0..klen) (a full key, prefix
 * included). A key below the prefix range gives the first prefixed key; a
 * key above it leaves the iterator invalid. */
void store_iter_seek(struct store_iter *it, const void *key, size_t klen);
/* Positions at the last prefixed key. */
void store_iter_seek_last(struct store_iter *it);

/* False once the iterator has run off its range or hit an error; tell the
 * two apart with store_iter_status. */
bool store_iter_valid(const struct store_iter *it);
/* Requires store_iter_valid. */
void store_iter_next(struct store_iter *it);

/* Require store_iter_valid. Borrowed from the iterator until the next
 * seek/next/free. */
const void *store_iter_key(const struct store_iter *it, size_t *len);
const void *store_iter_value(const struct store_iter *it, size_t *len);

/* STATUS_OK, or the error that stopped the iterator (message in
 * store_errmsg of its store). */
int store_iter_status(const struct store_iter *it);

/* Copies the last key of `cf` starting with prefix[0..plen) into key_out
 * (replaced; empty unless STATUS_OK). STATUS_NOT_FOUND if there is none. */
int store_last_key(struct store *s, enum store_cf cf, const void *prefix,
		   size_t plen, struct buf *key_out);

/* ---- maintenance ---- */

/*
 * Writes a consistent, openable copy of the database to `dir` (which must
 * not exist) in the store's environment: hard links for table files where
 * possible, memtables flushed first so no WAL replay is needed.
 */
int store_checkpoint(struct store *s, const char *dir);

/* Flushes the memtables of every CF to table files and waits. */
int store_flush(struct store *s);

/*
 * Compacts the table files of `cf` overlapping begin..end (a NULL bound is
 * open) down to the last level, so the space of keys removed by deletes
 * and delete_range is reclaimed. Waits for completion. RocksDB's C API
 * reports no error for manual compaction; a failure surfaces on later
 * writes.
 */
void store_compact_range(struct store *s, enum store_cf cf, const void *begin,
			 size_t blen, const void *end, size_t elen);

#endif
