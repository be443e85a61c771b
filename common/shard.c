#include "common/shard.h"

#include <assert.h>

uint32_t shard_hash(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint32_t h = 2166136261u; /* FNV-1a 32-bit offset basis */
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u; /* FNV prime */
	}
	return h;
}

uint32_t shard_for_key(const void *key, size_t len, uint32_t nshards)
{
	assert(nshards > 0);
	return shard_hash(key, len) % nshards;
}
