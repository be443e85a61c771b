/*
 * raft: the Raft consensus core, sans-IO.
 *
 * Events go in (a message, the passage of time, a proposal, a read
 * request); effects come out in a `struct raft_ready` (hard state and
 * entries to persist, messages to send, snapshot chunks to store, entries
 * to apply, reads that may be served). The core never blocks and touches
 * no socket, clock, thread, file or global PRNG: time arrives as `now_ms`
 * arguments and randomness from the seed in `struct raft_config`, so the
 * same inputs give the same outputs, byte for byte.
 *
 * Figure 2 of the extended Raft paper, plus: a no-op entry at the start of
 * each term; fast log backtracking (conflict term / first index of it);
 * pre-vote and check-quorum; pipelined AppendEntries with many entries per
 * message; snapshots sent in chunks (InstallSnapshot offset/done) and log
 * compaction; linearizable reads by read index.
 *
 * The driving loop (one owner; common/raft/node.c and the simulator):
 *
 *     raft_step / raft_tick / raft_propose / raft_read_index  (any number)
 *     if (raft_ready(r, &rd)) {
 *         persist rd.hard_state, rd.entries, rd.snapshot_*  (one synced write)
 *         send rd.msgs
 *         install rd.snapshot_done (if set), apply rd.committed
 *         serve rd.reads whose index <= applied
 *         raft_advance(r, &rd)
 *     }
 *
 * The one rule a driver must not break: nothing in rd.msgs leaves before
 * everything rd asks to persist is durable. One exception is allowed: a
 * leader's AppendEntries requests may leave before its own entries are
 * durable (as long as the term and vote are), since the core counts the
 * leader in a commit quorum only up to the entries the driver reported
 * durable through raft_advance. Between raft_ready and
 * raft_advance no other raft_* call may be made. After raft_advance, call
 * raft_ready again until it returns false: a leader's own entries being
 * durable may commit them (always so in a group of one).
 *
 * A change of commit alone (rd.hard_state_changed with the same term and
 * vote) need not be synced: the commit index is a hint, recomputed after
 * a restart.
 *
 * Snapshot data is the application's: the core knows only its index and
 * term. A leader that must send a snapshot emits a RAFT_MSG_SNAPSHOT_REQ
 * message with a header (`snap`) and no bytes; the driver reads the chunk
 * at `snap.offset` from its snapshot and packs it with
 * raft_snapshot_chunk_pack. A follower hands received chunks to the driver
 * in rd.snapshot_chunk; rd.snapshot_done says when the whole snapshot has
 * arrived and must be installed (atomically with rd's other writes).
 */
#ifndef SKV_COMMON_RAFT_RAFT_H
#define SKV_COMMON_RAFT_RAFT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "proto/raft.pb-c.h"

#define RAFT_MAX_NODES 15
/* No index, term, offset or size in a message may exceed this (2^62 - 1;
 * a log would need centuries to get there): raft_step refuses it. */
#define RAFT_NUMBER_MAX ((UINT64_C(1) << 62) - 1)

enum raft_role {
	RAFT_FOLLOWER,
	RAFT_PRE_CANDIDATE,
	RAFT_CANDIDATE,
	RAFT_LEADER,
};

const char *raft_role_name(enum raft_role role);

struct raft_config {
	uint32_t id;			/* this node, != 0 */
	uint32_t nodes[RAFT_MAX_NODES];	/* every voter, self included */
	size_t n_nodes;
	/* Randomized election timeout in [min, max); heartbeat interval.
	 * 0 = 300 / 600 / 100 ms. */
	uint64_t election_timeout_ms_min;
	uint64_t election_timeout_ms_max;
	uint64_t heartbeat_ms;
	/* Replication flow control: AppendEntries in flight per follower,
	 * and the most entries / bytes in one message. 0 = 16 / 1024 /
	 * 1 MiB. */
	uint32_t inflight_max;
	uint32_t append_entries_max;
	size_t append_bytes_max;
	/* Snapshot chunk size; 0 = 1 MiB. */
	size_t snapshot_chunk_bytes_max;
	/* Most entries / bytes handed out in one rd.committed; 0 = 4096 /
	 * 16 MiB. */
	uint32_t apply_entries_max;
	size_t apply_bytes_max;
	/* Seed of the core's private PRNG (election timeouts). */
	uint64_t seed;
};

/* What the driver loaded from durable storage at start. Entries are
 * borrowed: the core copies them. */
struct raft_boot {
	uint64_t term;
	uint32_t vote;
	uint64_t commit;	 /* hint */
	uint64_t snapshot_index; /* 0 = no snapshot */
	uint64_t snapshot_term;
	uint64_t applied; /* state machine applied index (>= snapshot_index) */
	const Skv__Entry *const *entries; /* snapshot_index+1 .. last, dense */
	size_t n_entries;
};

/* One entry in the core's log (owned by the core). */
struct raft_entry {
	uint64_t term;
	uint64_t index;
	Skv__EntryType type;
	uint8_t *data;
	size_t len;
};

enum raft_msg_type {
	RAFT_MSG_VOTE_REQ,
	RAFT_MSG_VOTE_REPLY,
	RAFT_MSG_APPEND_REQ,
	RAFT_MSG_APPEND_REPLY,
	RAFT_MSG_SNAPSHOT_REQ,
	RAFT_MSG_SNAPSHOT_REPLY,
};

const char *raft_msg_type_name(enum raft_msg_type t);
/* The protobuf-c descriptor of each message type. */
const ProtobufCMessageDescriptor *raft_msg_descriptor(enum raft_msg_type t);
/* The gRPC method carrying a request type ("/skv.Raft/AppendEntries"),
 * or NULL for replies. */
const char *raft_msg_method(enum raft_msg_type t);

/* Header of an InstallSnapshot chunk the driver must fill. */
struct raft_snapshot_send {
	uint64_t term;
	uint64_t last_index; /* the snapshot the core expects */
	uint64_t last_term;
	uint64_t offset;     /* first byte of this chunk */
	size_t chunk_bytes_max;
};

/* An outgoing message. Except for RAFT_MSG_SNAPSHOT_REQ, `bytes` holds
 * the packed protobuf message. */
struct raft_msg {
	uint32_t from;
	uint32_t to;
	enum raft_msg_type type;
	struct buf bytes;
	struct raft_snapshot_send snap; /* RAFT_MSG_SNAPSHOT_REQ only */
};

/* Packs one InstallSnapshot chunk for `m` (a RAFT_MSG_SNAPSHOT_REQ) into
 * m->bytes. `last_index`/`last_term` name the driver's snapshot and
 * `size_bytes` its total size. If it is the snapshot m->snap asks for,
 * `data[0..len)` are its bytes at m->snap.offset; if the driver has a
 * different one (it took a newer snapshot), they are its bytes at offset 0
 * and the follower starts over. At most m->snap.chunk_bytes_max bytes.
 * STATUS_OK or NO_MEMORY. */
int raft_snapshot_chunk_pack(struct raft_msg *m, uint64_t last_index,
			     uint64_t last_term, const void *data, size_t len,
			     uint64_t size_bytes);

/* A snapshot chunk the driver must store (follower side). */
struct raft_snapshot_chunk {
	uint64_t last_index;
	uint64_t last_term;
	uint64_t offset;
	const uint8_t *data;
	size_t len;
	uint64_t size_bytes;
	bool done; /* last chunk: install the snapshot */
};

/* A read index request that has been decided. */
struct raft_read {
	uint64_t id;	/* as given to raft_read_index */
	int status;	/* STATUS_OK or STATUS_NOT_LEADER */
	uint64_t index; /* OK: serve once applied >= index */
};

/*
 * One batch of effects. Everything is owned by the core and valid until
 * raft_advance.
 */
struct raft_ready {
	bool hard_state_changed;
	uint64_t term;
	uint32_t vote;
	uint64_t commit;

	/* Entries to persist. Entries at entries[0].index and above that
	 * are already stored must be deleted first (a leader overwrote
	 * them). */
	const struct raft_entry *entries;
	size_t n_entries;

	/* Snapshot chunk to stage; if `snapshot_chunk.done`, the staged
	 * snapshot must be installed (state replaced, applied index = its
	 * index) atomically with the log changes below: compact_index is
	 * then the snapshot's index. A driver that finds the finished
	 * snapshot corrupt must not write or send anything of this ready:
	 * the core already counts it installed, so the driver drops the
	 * core and boots a new one from storage (which still lacks it). */
	bool has_snapshot_chunk;
	struct raft_snapshot_chunk snapshot_chunk;

	/* Log compaction: entries up to and including `compact_index`
	 * (whose term is `compact_term`) may be deleted from storage; 0 =
	 * none. Set by raft_compact and by an installed snapshot. */
	uint64_t compact_index;
	uint64_t compact_term;
	/* An installed snapshot replaced the whole log: delete every stored
	 * entry (those after the snapshot belonged to another history). */
	bool log_discard_all;

	struct raft_msg *msgs;
	size_t n_msgs;

	/* Committed entries to apply, in order. Never together with a
	 * finished snapshot (snapshot_chunk.done): those come in a later
	 * ready, once the state machine has reloaded from the snapshot. */
	const struct raft_entry *committed;
	size_t n_committed;

	struct raft_read *reads;
	size_t n_reads;
};

struct raft;

/* Creates a core from `cfg` and what storage held (`boot`, NULL for a new
 * node). Returns STATUS_OK, INVALID_ARGUMENT (bad config, inconsistent
 * boot state: details in errmsg) or NO_MEMORY. */
int raft_new(const struct raft_config *cfg, const struct raft_boot *boot,
	     uint64_t now_ms, struct raft **out, char *errmsg, size_t cap);
void raft_free(struct raft *r);

/* Time passes: fires election and heartbeat timeouts due at `now_ms`. */
void raft_tick(struct raft *r, uint64_t now_ms);
/* The next `now_ms` at which raft_tick has something to do. */
uint64_t raft_next_tick_ms(const struct raft *r);

/* A message arrived (borrowed). STATUS_OK, or INVALID_ARGUMENT for a
 * message of an unknown type, not addressed to this node, from a node
 * outside the group or with a number past RAFT_NUMBER_MAX (dropped).
 * Every request accepted with STATUS_OK gets exactly one reply, in the
 * next raft_ready's messages (unless memory ran out for it: it is then
 * lost, as the network could have lost it). */
int raft_step(struct raft *r, uint64_t now_ms, const ProtobufCMessage *m);

/* Leader only: appends `data` as a new entry (copied). STATUS_OK with
 * *index / *term set (either may be NULL), NOT_LEADER, or NO_MEMORY. The
 * entry goes out at the next raft_ready, batched with every other
 * proposal made since. */
int raft_propose(struct raft *r, const void *data, size_t len,
		 uint64_t *index, uint64_t *term);

/* Asks for a linearizable read point. The answer comes later in
 * rd.reads with the same `id`: OK + index once a quorum confirmed this
 * node still leads, or NOT_LEADER. Returns STATUS_OK (queued) or
 * NOT_LEADER (answered now). */
int raft_read_index(struct raft *r, uint64_t id);

/* The application's state at `index` (<= applied) is durable and can be
 * sent as a snapshot: log entries up to `index` are dropped. Returns
 * STATUS_OK or INVALID_ARGUMENT (index beyond applied or before the
 * current snapshot). */
int raft_compact(struct raft *r, uint64_t index);

/* Collects pending effects. Returns false when there are none. */
bool raft_ready(struct raft *r, struct raft_ready *rd);
/* The driver has done everything `rd` asked. */
void raft_advance(struct raft *r, struct raft_ready *rd);

/* Observers. */
uint32_t raft_id(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint32_t raft_leader(const struct raft *r); /* 0 = unknown */
uint64_t raft_commit_index(const struct raft *r);
uint64_t raft_applied_index(const struct raft *r);
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_first_index(const struct raft *r); /* first entry in log */
uint64_t raft_snapshot_index(const struct raft *r);
/* Sum of the data bytes of the entries in the log (compaction trigger). */
size_t raft_log_bytes(const struct raft *r);
/* Term of the entry at `index`; 0 if unknown (compacted or absent). The
 * snapshot's own index answers with the snapshot term. */
uint64_t raft_term_at(const struct raft *r, uint64_t index);
/* The entry at `index`, or NULL if not in the log. Borrowed. */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);

#endif
