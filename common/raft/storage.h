/*
 * raft/storage: Raft's durable state in a `struct store`, and the
 * application snapshot that InstallSnapshot streams.
 *
 * What it is for: turning a `struct raft_ready` into write-batch
 * operations, loading a `struct raft_boot` at start, and serializing /
 * staging / installing the state-machine snapshot. Every change goes into
 * a batch the caller writes (one synced write per ready), except the
 * phases of a large install (see Installing).
 *
 * Layout (DESIGN.md, Storage):
 *   raft CF   "e" + u64 BE index   packed Skv__Entry
 *             "hs"                 packed Skv__HardState
 *             "snap"               packed Skv__SnapshotMeta (log compaction
 *                                  point: entries <= last_index are gone)
 *             "si"                 install in progress: u64 BE last_index,
 *                                  last_term, size of the snapshot being
 *                                  installed (absent otherwise)
 *             "ss"                 staging header: u64 BE last_index,
 *                                  last_term, size of the snapshot being
 *                                  received
 *             "ss/" + u64 BE off   a received chunk starting at `off`
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
 * Receiving (follower): each chunk but the last is put under "ss/" in the
 * batch of the ready that received it (synced with it); a chunk at offset
 * 0 first range-deletes whatever was staged and writes the "ss" header.
 * The last chunk is kept in memory until the install writes it.
 *
 * Installing: the stream is first verified (read back from "ss/" in
 * order, parsed incrementally: structure, header, CRC32C). Then:
 *   - a stream of at most 4 MiB goes whole into the ready's batch, as
 *     one atomic write (no marker);
 *   - a larger one is written in phases: (1) one synced write holding the
 *     last chunk, the "si" marker and the range deletes of `data` and
 *     `meta`; (2) the records, in unsynced batches of about 4 MiB; (3) in
 *     the ready's batch (synced by the caller; the WAL is ordered, so it
 *     makes (2) durable too): applied index, snapshot meta, the log up to
 *     the snapshot deleted, marker and staging deleted.
 * A crash after (1) and before (3) leaves the marker: readers must not
 * see that store until raft_storage_recover rolled it forward, which is
 * why every host calls it right after opening the store, before the
 * application loads its state; raft_storage_open refuses a store with the
 * marker. A crash before (1) leaves the old state whole.
 *
 * Restart while receiving: a partly staged snapshot is dropped by
 * raft_storage_recover. The core tracks a transfer in memory only and,
 * after a restart, accepts a transfer only from offset 0 again (the
 * leader resends it whole), so the staged chunks could never be used.
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
 * stages on disk: between chunks it holds the staging header only; an
 * install holds the last chunk, one install batch (about 4 MiB) and the
 * record being parsed, so O(chunk + 4 MiB + largest record) whatever the
 * size of the snapshot (raft_storage_snapshot_staging_peak_bytes), plus
 * what RocksDB reads through its block cache. Disk: the staged stream
 * (data+meta plus 9 bytes per key) until the install deletes it.
 *
 * Writes: a storage never writes on its own, except while installing a
 * snapshot larger than 4 MiB (two fsyncs in all with the caller's, plus
 * one unsynced write per 4 MiB of records) and in raft_storage_recover.
 *
 * What it owns: a `struct raft_storage` owns its outgoing transfers
 * (their RocksDB snapshots and iterators: free the storage before closing
 * the store), the staging header and pending last chunk, and the entries
 * of the boot state it loaded; it borrows the store, which must outlive
 * it.
 *
 * Invariant: the in-memory picture (last stored index, compaction point,
 * applied index, staged length) assumes every batch the storage filled is
 * written. If a write fails, the storage object (and the replica around
 * it) must be discarded and the store reopened (and recovered); it must
 * not be used again.
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
 * rules above, or a snapshot install was interrupted and
 * raft_storage_recover has not run; errmsg says which), STATUS_NO_MEMORY,
 * or a store error. On error *out is NULL and errmsg[0..cap) says why.
 * A partly staged snapshot left in the store is ignored (nothing is
 * staged in the new object).
 */
int raft_storage_open(struct store *store, struct raft_storage **out,
		      struct raft_boot *boot, char *errmsg, size_t cap);

/*
 * Brings `store` (borrowed for the call) to a state readers may see: an
 * interrupted snapshot install (the "si" marker) is rolled forward from
 * the staged chunks, idempotently (records put again, then applied index,
 * snapshot meta, the log up to the snapshot deleted, or all of it when it
 * lacks the snapshot's last entry, the term raised to the snapshot's if
 * lower, marker and staging deleted, in one synced write); a partly
 * staged snapshot without a marker is deleted. Nothing to do: no write.
 * Every host calls it right after opening the store, before the
 * application or raft_storage_open reads it. Memory as an install.
 * STATUS_OK; CORRUPTION (the staged stream fails its checks: the store
 * cannot be recovered, the marker stays), NO_MEMORY or a store error,
 * with errmsg[0..cap) saying why.
 */
int raft_storage_recover(struct store *store, char *errmsg, size_t cap);

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
 * Stages a received chunk (borrowed for the call): its put (and, at
 * offset 0, the deletion of anything staged before and the staging
 * header) goes into `b`, which the caller writes before the next chunk;
 * the last chunk (c->done) is copied and kept for
 * raft_storage_snapshot_install, which writes it. A chunk at offset 0
 * starts a new snapshot; any other chunk must continue the staged
 * snapshot (same last_index/last_term, offset == staged length).
 * STATUS_OK; INVALID_ARGUMENT (out of order, beyond size_bytes; nothing
 * staged changes, nothing added to `b`); NO_MEMORY.
 */
int raft_storage_snapshot_stage(struct raft_storage *st, struct store_batch *b,
				const struct raft_snapshot_chunk *chunk);

/* Bytes currently staged, on disk and pending (0 = none). */
uint64_t raft_storage_snapshot_staged(const struct raft_storage *st);

/*
 * Verifies the staged snapshot (complete, its last chunk staged, checksum,
 * header matching the staged last_index/last_term, every record well
 * formed) and, only if all is well, installs it (storage.h, Installing):
 * every key of `data` and `meta` deleted, the records put, the applied
 * index set to the snapshot's, the snapshot meta recorded, the log up to
 * the snapshot deleted, staging deleted. What is left goes into `b`,
 * which the caller must write synced before anyone reads the store; for a
 * stream over 4 MiB the storage has already written the rest itself. The
 * staging state is released either way.
 * STATUS_OK; CORRUPTION (nothing added to `b` and nothing written);
 * INVALID_ARGUMENT (nothing staged, or incomplete; nothing added);
 * NO_MEMORY or a store error (`b` must not be written; the storage is
 * discarded, and the store recovered at its next open).
 * On OK *last_index / *last_term (may be NULL) describe what was installed.
 */
int raft_storage_snapshot_install(struct raft_storage *st,
				  struct store_batch *b, uint64_t *last_index,
				  uint64_t *last_term);

/* Heap bytes the follower side holds now for staging (the pending last
 * chunk), and the most it held at once since open (that chunk, the
 * record being parsed and an install batch). RocksDB's own memory is not
 * counted. */
size_t raft_storage_snapshot_staging_held_bytes(const struct raft_storage *st);
size_t raft_storage_snapshot_staging_peak_bytes(const struct raft_storage *st);

/* Writes the installs of this storage made themselves (the phases of a
 * large install), and how many of them were synced; the caller's write
 * of the ready is not counted. */
void raft_storage_snapshot_install_writes(const struct raft_storage *st,
					  uint64_t *writes, uint64_t *synced);

/* ---- exposed for tests ---- */

/* CRC32C (Castagnoli) of p[0..n), continuing from `crc` (0 to start). */
uint32_t raft_storage_crc32c(uint32_t crc, const void *p, size_t n);

/* Crash injection: from now on, the writes an install or a recovery makes
 * itself succeed `writes` times, then fail with STATUS_IO (as a crash
 * there would); < 0 = never (the default). Process-wide, not
 * thread-safe: tests only. */
void raft_storage_test_fail_install_after(long writes);

#endif
