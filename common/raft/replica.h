/*
 * raft/replica: the host-independent shell around the Raft core. Both the
 * production node driver (common/raft/node.c) and the simulator drive a
 * replica; neither re-implements the ready/persist/send/apply/advance
 * rule, which lives here and only here.
 *
 * What it owns: the core (`struct raft`), its storage (`struct
 * raft_storage`), one reusable write batch and the queue of read requests
 * waiting for the applied index to catch up. It borrows the store (which
 * must outlive it) and the application's state machine (ops + ctx).
 *
 * One raft_replica_process call handles one `struct raft_ready`:
 *   1. one batch: the log and hard state (raft_storage_save); a received
 *      snapshot chunk staged in the store (raft CF), and installed when
 *      complete; every committed entry applied by the state machine
 *      (ENTRY_NOOP only advances the applied index); the applied index;
 *   2. one store_write (group commit: at most one fsync per call),
 *      synced when it holds what Raft's safety rests on (term, vote, log
 *      entries, a snapshot chunk, a compaction); a write holding only
 *      applied state and the commit hint is not synced: the log still has
 *      those entries, and the WAL is ordered, so the next synced write
 *      (always before a compaction drops them) makes it durable too.
 *      Installing a snapshot over 4 MiB is the exception: the storage
 *      first writes the install marker with the deletion of the old state
 *      (synced) and the records (unsynced, ~4 MiB per write), then this
 *      write (synced) finishes it: two fsyncs for that ready;
 *   3. every message sent (InstallSnapshot chunks filled from the
 *      snapshot of the store's data+meta). A leader's AppendEntries go
 *      out before step 2 when the term and vote they carry are already
 *      durable (Raft thesis 10.2.1): the leader's fsync overlaps its
 *      followers', and the core counts the leader in a commit quorum only
 *      for entries this process made durable;
 *   4. fsm restore (if a snapshot was installed), fsm durable, finished
 *      reads answered (read_done);
 *   5. raft_advance, then automatic log compaction if configured.
 *
 * Memory: a leader keeps one snapshot transfer per follower it streams to
 * (a RocksDB snapshot, a cursor and the last chunk: O(chunk size), see
 * storage.h) until no chunk of it was asked for in 30 s of `now_ms`. A
 * follower stages received chunks on disk and installs in bounded
 * batches: O(chunk + 4 MiB + largest record) of heap whatever the size of
 * the snapshot.
 *
 * Restart: the host calls raft_storage_recover on the store before the
 * state machine loads from it (an install interrupted by a crash is
 * rolled forward there), then raft_replica_open.
 *
 * Invariant: nothing leaves (send) before the write holding everything the
 * ready asked to persist is durable, except a leader's AppendEntries
 * (above): votes, replies and snapshots always wait for the write. Between raft_ready and raft_advance no
 * raft_* call is made: the send callback and the fsm callbacks must not
 * call into the core (or the replica). After a failed process the replica
 * must be freed, never processed again.
 *
 * Threads: none of its own; one owner thread at a time.
 */
#ifndef SKV_COMMON_RAFT_REPLICA_H
#define SKV_COMMON_RAFT_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/raft/raft.h"
#include "common/raft/storage.h"
#include "common/store/store.h"

/* The application state machine. Every callback runs inside
 * raft_replica_process on the owner's thread. */
struct raft_fsm_ops {
	/* Apply one committed ENTRY_NORMAL entry (data borrowed for the
	 * call); writes go into `b` (data/meta CFs; meta keys must not start
	 * with RAFT_STORAGE_META_RESERVED) and commit atomically with the
	 * applied index. Deterministic: the same entries give the same
	 * writes on every replica. Required. */
	void (*apply)(void *ctx, uint64_t index, const void *data, size_t len,
		      struct store_batch *b);
	/* A snapshot was installed into the store (the write is durable):
	 * reload in-memory state from it; `index` is now applied. May be
	 * NULL. */
	void (*restore)(void *ctx, uint64_t index);
	/* The write holding everything applied up to `applied_index` is
	 * durable: answer waiting clients now. May be NULL. */
	void (*durable)(void *ctx, uint64_t applied_index);
	/* A read index request (raft_read_index `id`) finished: STATUS_OK
	 * (applied >= its read index and durable: serve it now) or
	 * STATUS_NOT_LEADER. May be NULL. */
	void (*read_done)(void *ctx, uint64_t id, int status);
};

/* Sends one message; `m` (and m->bytes) is borrowed for the call. Must
 * not call into the core or the replica. */
typedef void (*raft_send_fn)(void *arg, struct raft_msg *m);

struct raft_replica;

struct raft_replica_stats {
	uint64_t readies;	      /* raft_ready batches handled */
	uint64_t writes;	      /* synced store writes */
	uint64_t entries_persisted;
	uint64_t entries_applied;     /* committed entries, no-ops too */
	uint64_t msgs_sent;
	uint64_t snapshots_installed;
	uint64_t snapshot_bytes_sent;
	uint64_t compactions;	      /* raft_compact calls */
};

/*
 * Loads Raft's state from `store` (borrowed, must outlive the replica) and
 * creates the core from `cfg`. raft_storage_recover must have run on the
 * store, and the state machine must already reflect it (its applied index
 * is raft_replica_applied_index after open).
 * `ops` is copied; `fsm_ctx` is borrowed. On STATUS_OK *out is a new
 * replica for raft_replica_free. Errors: STATUS_CORRUPTION (storage
 * inconsistent), INVALID_ARGUMENT (bad config, or a boot state the core
 * refuses), NO_MEMORY, a store error; *out NULL and errmsg[0..cap) says
 * why.
 */
int raft_replica_open(const struct raft_config *cfg, struct store *store,
		      const struct raft_fsm_ops *ops, void *fsm_ctx,
		      uint64_t now_ms, struct raft_replica **out, char *errmsg,
		      size_t cap);

/* Frees the core, the storage object and queued reads (whose read_done is
 * never called: the owner fails its clients itself). NULL is a no-op. */
void raft_replica_free(struct raft_replica *rep);

/* The core, for raft_step / raft_tick / raft_propose / raft_read_index /
 * raft_compact and the observers; owned by the replica. Not to be called
 * from inside raft_replica_process (its callbacks). */
struct raft *raft_replica_raft(struct raft_replica *rep);
struct raft_storage *raft_replica_storage(struct raft_replica *rep);

/* The durable applied index (what the state machine's store holds). */
uint64_t raft_replica_applied_index(const struct raft_replica *rep);

/* Compacts the log to the applied index whenever, after a process, the
 * log holds more than `log_bytes_max` bytes of entry data; 0 = never (the
 * default). Keep it well above what a follower may lag by, or followers
 * catch up by snapshot. */
void raft_replica_set_compaction(struct raft_replica *rep,
				 size_t log_bytes_max);

/*
 * Handles one raft_ready if the core has one (see the header comment).
 * `now_ms` is the caller's clock (the core's), for dropping idle snapshot
 * transfers only.
 * STATUS_OK (also when there was nothing to do); STATUS_IO (the store
 * write failed), CORRUPTION (a received snapshot fails its checks),
 * NO_MEMORY or another store error: then nothing of this ready was
 * sent nor its batch written (an install over 4 MiB may have written its
 * first phases, which raft_storage_recover finishes at the next start),
 * errmsg says why, and the caller must stop and free the replica
 * (production: log_fatal; STYLE: never continue on a guess). The state
 * machine may have applied entries in memory that never reached the
 * store: it too must be rebuilt from the store before a new replica runs.
 */
int raft_replica_process(struct raft_replica *rep, uint64_t now_ms,
			 raft_send_fn send, void *arg);

/* Message of the last failure; owned by the replica. */
const char *raft_replica_errmsg(const struct raft_replica *rep);

/* Read requests decided OK but waiting for the applied index. */
size_t raft_replica_reads_waiting(const struct raft_replica *rep);

void raft_replica_stats(const struct raft_replica *rep,
			struct raft_replica_stats *out);

#endif
