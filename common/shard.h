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

/* Limits of the data a client can store, enforced by the clerk (before
 * sending) and by the servers (at apply time: an Append that would make a
 * value longer than SHARD_VALUE_BYTES_MAX is refused with TOO_LARGE and
 * changes nothing). Keys are 1..SHARD_KEY_BYTES_MAX bytes, any bytes. */
#define SHARD_KEY_BYTES_MAX 4096
#define SHARD_VALUE_BYTES_MAX (1u << 20)

uint32_t shard_hash(const void *key, size_t len);

/* nshards must be > 0. */
uint32_t shard_for_key(const void *key, size_t len, uint32_t nshards);

#endif
