/*
 * shard: the fixed key -> shard mapping shared by clerks and servers.
 *
 * shard = FNV-1a-32(key bytes) mod nshards. This is part of the wire
 * contract: changing it moves every key, so it never changes. Shards are
 * numbered 0..nshards-1.
 */
#ifndef SKV_COMMON_SHARD_H
#define SKV_COMMON_SHARD_H

#include <stddef.h>
#include <stdint.h>

uint32_t shard_hash(const void *key, size_t len);

/* nshards must be > 0. */
uint32_t shard_for_key(const void *key, size_t len, uint32_t nshards);

#endif
