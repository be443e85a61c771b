/*
 * raft/storage: Raft's durable state in a `struct store`, and the
 * application snapshot that InstallSnapshot streams.
 *
 * What it is for: turning a `struct raft_ready` into write-batch
 * operations, loading a `struct raft_boot` at start, and serializing /
 * installing the state-machine snapshot. It never writes on its own: every
 * change goes into a batch the caller writes (one synced write per ready).
 *
 * Layout (DESIGN.md, Storage):
 *   raft CF   "e" + u64 BE index   packed Skv__Entry
 *             "hs"                 packed Skv__HardState
 *             "snap"               packed Skv__SnapshotMeta (log compaction
 *                                  point: entries <= last_index are gone)
 *   meta CF   "\0raft/applied"     u64 BE index + u64 BE term of the last
 *                                  applied entry
 * The applied index lives in `meta` so that it commits atomically with
 * the application's writes. Application keys in `meta` must not start
 * with RAFT_STORAGE_META_RESERVED ("\0raft/").
 *
 * Snapshot stream (what a leader sends and a follower installs): every key
 * of the `data` and `meta` CFs read at one RocksDB snapshot, applied-index
 * key included:
 *   header  "SKVSNAP\0" | u32 version (1) | u64 last_index | u64 last_term
 *   records u8 cf (2 data, 3 meta) | u32 klen | key | u32 vlen | value
 *   end     u8 0
 *   trailer u32 CRC32C of everything before it
 * All integers big-endian. Installing replaces all of `data` and `meta`.
 *
 * Memory: a leader streams. Each follower it sends to has one transfer
 * (at most RAFT_MAX_NODES): a RocksDB snapshot, an iterator positioned on
 * the next record, and a copy of the last chunk served (for a
 * retransmit). A record is encoded straight from the iterator, so a
 * transfer holds O(chunk size) bytes of heap whatever the size of the
 * state. Starting one costs a pass over data+meta to size the stream; a
 * follower asking for an offset behind the last chunk served costs
 * re-encoding the stream up to it. The RocksDB snapshot pins the versions
 * it reads, so keys overwritten or deleted since keep their space
 * (memtables, table files) until the transfer is dropped. A follower
 * stages the received stream in memory until it is complete: the size of
 * data+meta plus 9 bytes per key.
 *
 * What it owns: a `struct raft_storage` owns its outgoing transfers
 * (their RocksDB snapshots and iterators: free the storage before closing
 * the store), the staged snapshot and the entries of the boot state it
 * loaded; it borrows the store, which must outlive it.
 *
 * Invariant: the in-memory picture (last stored index, compaction point,
 * applied index) assumes every batch the storage filled is written. If a
 * write fails, the storage object (and the replica around it) must be
 * discarded and the store reopened; it must not be used again.
 *
 * Errors: STATUS_OK or an `enum status`; the message of the last failure is
 * raft_storage_errmsg(). Not thread-safe: one owner thread.
 */
#ifndef SKV_COMMON_RAFT_STORAGE_H
#define SKV_COMMON_RAFT_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/raft/raft.h"
#include "common/store/store.h"

/* Prefix of the `meta` keys Raft reserves; the application must not use
 * keys starting with it. */
#define RAFT_STORAGE_META_RESERVED "\0raft/"
#define RAFT_STORAGE_META_RESERVED_LEN 6

struct raft_storage;

/*
 * Reads the durable Raft state of `store` (borrowed; must outlive the
 * storage) into *boot and returns a new storage object in *out. An empty
 * store gives a zeroed boot (term 0, no entries). Checks the state: the
 * entries after the compaction point are dense and in index order, terms
 * never decrease and none exceeds the hard state's term, the applied index
 * lies between the compaction point and the last entry, every record
 * decodes. `boot->entries` belongs to the storage, valid until
 * raft_storage_boot_release or raft_storage_free.
 *
 * STATUS_OK; STATUS_CORRUPTION (a record does not decode or breaks the
 * rules above; errmsg says which), STATUS_NO_MEMORY, or a store error.
 * On error *out is NULL and errmsg[0..cap) says why.
 */
int raft_storage_open(struct store *store, struct raft_storage **out,
		      struct raft_boot *boot, char *errmsg, size_t cap);

/* Frees the boot entries handed out by raft_storage_open (the core copies
 * them in raft_new). Idempotent. */
void raft_storage_boot_release(struct raft_storage *st);

/* Frees everything the storage owns. NULL is a no-op. */
void raft_storage_free(struct raft_storage *st);

/* Message of the last failure; owned by `st`. */
const char *raft_storage_errmsg(const struct raft_storage *st);

/*
 * Adds to `b` (a batch of the storage's store) the Raft-log part of `rd`:
 * with rd->log_discard_all, every stored entry is deleted; with
 * rd->compact_index, entries up to it are deleted and the snapshot meta is
 * recorded; rd->entries replace the stored entries from entries[0].index
 * on (a stored suffix beyond the new last entry is deleted); the hard
 * state if rd->hard_state_changed. Snapshot chunks are not handled here
 * (raft_storage_snapshot_stage / _install). STATUS_OK or NO_MEMORY; on
 * error `b` may hold part of rd and must not be written (the invariant
 * above applies: discard the storage).
 */
int raft_storage_save(struct raft_storage *st, struct store_batch *b,
		      const struct raft_ready *rd);

/* Records in `b` that the state machine has applied up to `index`, whose
 * entry has term `term`. */
void raft_storage_set_applied(struct raft_storage *st, struct store_batch *b,
			      uint64_t index, uint64_t term);

/* What storage holds (as of the batches filled so far). */
uint64_t raft_storage_applied_index(const struct raft_storage *st);
uint64_t raft_storage_applied_term(const struct raft_storage *st);
uint64_t raft_storage_last_index(const struct raft_storage *st);
uint64_t raft_storage_snapshot_index(const struct raft_storage *st);

/* ---- leader side: reading the snapshot to send ---- */

/*
 * Copies up to `cap` bytes of the snapshot stream at `offset` into `buf`
 * (*len set; 0 at the end) for the transfer to follower `peer`. The store's
 * data+meta must be durable (call after the write).
 *
 * A transfer starts when `peer` has none, or when its snapshot is older
 * than `min_index` (the snapshot the core asks for): it reads a new RocksDB
 * snapshot of the current state. It is never replaced merely because the
 * applied index moved on, nor by another peer's transfer: a follower
 * halfway through would have to start over (two catching up under steady
 * writes would restart each other forever). With RAFT_MAX_NODES transfers
 * in progress, a new peer's replaces the least recently read one.
 *
 * Within a transfer: the offset where the last read ended continues the
 * stream; the offset of the last read serves the same bytes again; any
 * other offset is re-encoded from the same snapshot (from its start when
 * going back), so every read of one transfer sees one stream.
 * *last_index / *last_term describe the stream, *total is its size.
 * STATUS_OK; INVALID_ARGUMENT (offset beyond the end; the transfer stays
 * and can be read from 0); TOO_LARGE (a key or value over 4 GiB);
 * CORRUPTION (the applied-index record); NO_MEMORY; a store error. After
 * an error other than INVALID_ARGUMENT the peer's transfer is dropped.
 */
int raft_storage_snapshot_read(struct raft_storage *st, uint32_t peer,
			       uint64_t min_index, uint64_t offset, void *buf,
			       size_t cap, size_t *len, uint64_t *last_index,
			       uint64_t *last_term, uint64_t *total);

/* Ends the transfer to `peer` (frees its memory and RocksDB snapshot);
 * none is a no-op. The next read for `peer` starts a new one. */
void raft_storage_snapshot_drop(struct raft_storage *st, uint32_t peer);
/* Transfers in progress. */
size_t raft_storage_snapshot_transfers(const struct raft_storage *st);
/* Bytes held for the transfers in progress (their cursors and saved last
 * chunks; not RocksDB's pinned versions); 0 = none. */
size_t raft_storage_snapshot_held_bytes(const struct raft_storage *st);

/* ---- follower side: staging and installing a received snapshot ---- */

/*
 * Appends a received chunk (borrowed) to the staged snapshot. A chunk at
 * offset 0 starts a new snapshot (anything staged is dropped); any other
 * chunk must continue the staged snapshot (same last_index/last_term,
 * offset == staged length). STATUS_OK; INVALID_ARGUMENT (out of order,
 * beyond size_bytes; nothing staged changes); NO_MEMORY.
 */
int raft_storage_snapshot_stage(struct raft_storage *st,
				const struct raft_snapshot_chunk *chunk);

/* Bytes currently staged (0 = none). */
uint64_t raft_storage_snapshot_staged(const struct raft_storage *st);

/*
 * Verifies the staged snapshot (complete, checksum, header matching the
 * staged last_index/last_term, every record well formed) and, only if all
 * is well, adds its installation to `b`: every key of `data` and `meta`
 * deleted, the records put, the applied index set to the snapshot's, the
 * snapshot meta recorded. The staged bytes are released either way.
 * STATUS_OK; CORRUPTION (nothing added to `b`); INVALID_ARGUMENT (nothing
 * staged, or incomplete); NO_MEMORY; a store error.
 * On OK *last_index / *last_term (may be NULL) describe what was installed.
 */
int raft_storage_snapshot_install(struct raft_storage *st,
				  struct store_batch *b, uint64_t *last_index,
				  uint64_t *last_term);

/* ---- exposed for tests ---- */

/* CRC32C (Castagnoli) of p[0..n), continuing from `crc` (0 to start). */
uint32_t raft_storage_crc32c(uint32_t crc, const void *p, size_t n);

#endif
