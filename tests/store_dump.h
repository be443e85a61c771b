/*
 * store_dump: a store's application state as one comparable byte string,
 * for tests that check two replicas hold exactly the same data.
 *
 * Every key and value of the `data` and `meta` column families, in key
 * order, each record as u32 cf | u32 klen | key | u32 vlen | value.
 */
#ifndef SKV_TESTS_STORE_DUMP_H
#define SKV_TESTS_STORE_DUMP_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/store/store.h"

/* Replaces `out` with the dump of `s`. With `skip_raft`, meta keys under
 * RAFT_STORAGE_META_RESERVED (Raft's applied index, which differs between
 * replicas that saw different no-ops) are left out. `data_keys` (may be
 * NULL) gets the number of data keys. STATUS_OK, NO_MEMORY or the
 * iterator's error. */
int store_dump(struct store *s, bool skip_raft, struct buf *out,
	       uint64_t *data_keys);

#endif
