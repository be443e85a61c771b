/*
 * raft/waits: client requests waiting for the Raft log entry they were
 * proposed as, or for their read index. Both replicated services (shard
 * master, replica group) answer a change the same way, and this is that
 * rule in one place:
 *
 *   - a request proposed at (index, term) waits;
 *   - when the entry at `index` applies, every wait up to it is decided:
 *     the one at `index`, if the applied command is the request's own,
 *     gets its outcome; any other (another command landed there, or its
 *     entry was passed over by a snapshot) is answered NOT_LEADER, and
 *     the clerk retries (exactly-once by client id + seq);
 *   - once the applied state is durable, decided waits are answered;
 *   - a wait whose term this node no longer leads, undecided, is
 *     answered NOT_LEADER at once: its entry may never apply here.
 * A read waits for its read index instead: the host takes it out by its
 * read id (raft_waits_take_if) when the core says it may be served.
 *
 * What it owns: an array of the caller's wait records, each a struct
 * that begins with a `struct raft_wait` (the rest is the caller's: method,
 * client id, outcome...), all of `item_bytes`. Items are copied in and
 * handed back by pointer, valid for the callback only.
 *
 * Pure: no clock, no I/O. Callbacks may not add or remove waits.
 */
#ifndef SKV_COMMON_RAFT_WAITS_H
#define SKV_COMMON_RAFT_WAITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The head of every wait record. */
struct raft_wait {
	uint64_t token;	    /* the host's id of the request */
	uint64_t index;	    /* where it was proposed */
	uint64_t term;
	bool decided;	    /* its entry applied (or never will) */
};

struct raft_waits {
	uint8_t *items;
	size_t n, cap;
	size_t item_bytes;
};

/* item_bytes >= sizeof(struct raft_wait), the caller's record size. */
void raft_waits_init(struct raft_waits *w, size_t item_bytes);
void raft_waits_free(struct raft_waits *w);

/* Copies `item` (whose head says token, index, term; decided false).
 * STATUS_OK or NO_MEMORY. */
int raft_waits_add(struct raft_waits *w, const void *item);

static inline size_t raft_waits_count(const struct raft_waits *w)
{
	return w->n;
}

/* Calls fn for every wait, in order (item borrowed). */
typedef void (*raft_wait_fn)(void *arg, void *item);

/*
 * The entry at `index` applied. Every undecided wait at or below it is
 * marked decided and passed to fn with `own` true when it waits at
 * `index` and match(arg, item) says the applied command is its own
 * (match NULL: never), false otherwise (the caller records NOT_LEADER).
 */
void raft_waits_decide(struct raft_waits *w, uint64_t index,
		       bool (*match)(void *arg, const void *item),
		       void (*fn)(void *arg, void *item, bool own),
		       void *arg);

/* The applied state up to `applied` is durable: every decided wait at or
 * below it is removed and passed to fn, to answer it. */
void raft_waits_release(struct raft_waits *w, uint64_t applied,
			raft_wait_fn fn, void *arg);

/* After each step of the core: every undecided wait of a term other than
 * `term`, or every undecided one when not `leader`, is removed and passed
 * to fn (answer NOT_LEADER). */
void raft_waits_fail_stale(struct raft_waits *w, bool leader,
			   uint64_t term, raft_wait_fn fn, void *arg);

/* Moves the first wait that match(arg, item) accepts into *out
 * (item_bytes) and removes it; false if there is none. */
bool raft_waits_take_if(struct raft_waits *w,
			bool (*match)(void *arg, const void *item), void *arg,
			void *out);

/* Removes every wait, passing each to fn (shutdown). fn may be called
 * after the set is already empty, so it may reenter raft_waits_count. */
void raft_waits_take_all(struct raft_waits *w, raft_wait_fn fn, void *arg);

#endif
