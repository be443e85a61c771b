/*
 * held: the calls a server holds while its service works on them, by
 * token.
 *
 * What it is for: a service never sees a `struct rpc_call`; it answers
 * a token. The host gives each request the next token (1, 2, ...),
 * remembers its call here, and takes the call back out to answer it.
 *
 * What it owns: the table only; the calls stay the rpc layer's, each to
 * be answered exactly once by whoever takes it out. Single-threaded (the
 * event loop's, or the thread that tears the host down after the loop
 * stopped).
 *
 * Invariant: a token is never reused; a call is in the map from
 * held_add until held_take / held_take_any returns it.
 */
#ifndef SKV_COMMON_HELD_H
#define SKV_COMMON_HELD_H

#include <stddef.h>
#include <stdint.h>

struct rpc_call;

struct held_slot {
	uint64_t token; /* 0: free */
	struct rpc_call *call;
	int tag;
};

/* Zero-initialized ({0}) is an empty map. */
struct held_map {
	struct held_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t count;
	uint64_t last_token;
};

/* Holds `call` (borrowed until taken) with a small value of the owner's
 * (`tag`, e.g. the method) under a new token, returned in *token.
 * STATUS_OK or STATUS_NO_MEMORY (nothing held). */
int held_add(struct held_map *m, struct rpc_call *call, int tag,
	     uint64_t *token);

/* Removes the call of `token` and returns it (its tag in *tag unless
 * NULL); NULL if the token is not held. */
struct rpc_call *held_take(struct held_map *m, uint64_t token, int *tag);

/* Removes and returns some held call (token and tag in *token / *tag
 * unless NULL); NULL once the map is empty. For shutdown. */
struct rpc_call *held_take_any(struct held_map *m, uint64_t *token,
			       int *tag);

/* Calls held. */
size_t held_count(const struct held_map *m);

/* Frees the table (not the calls: take them out first) and empties the
 * map. */
void held_free(struct held_map *m);

#endif
