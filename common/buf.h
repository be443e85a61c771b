/*
 * buf: a growable byte buffer, plus big-endian integer codecs.
 *
 * `struct buf` is caller-provided memory (buf_init / buf_free); its data
 * array is owned by the buf. Big-endian encodings are used for every key
 * that must sort numerically in RocksDB (log index, shard id).
 */
#ifndef SKV_COMMON_BUF_H
#define SKV_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
/* Frees the data array; the buf is left empty and reusable. */
void buf_free(struct buf *b);
/* Keeps the capacity, drops the contents. */
static inline void buf_reset(struct buf *b) { b->len = 0; }

/* Each returns STATUS_OK or STATUS_NO_MEMORY (contents unchanged then). */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_set(struct buf *b, const void *p, size_t n);
int buf_append_u32be(struct buf *b, uint32_t v);
int buf_append_u64be(struct buf *b, uint64_t v);

static inline void put_u32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void put_u64be(uint8_t *p, uint64_t v)
{
	put_u32be(p, (uint32_t)(v >> 32));
	put_u32be(p + 4, (uint32_t)v);
}

static inline uint32_t get_u32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t get_u64be(const uint8_t *p)
{
	return (uint64_t)get_u32be(p) << 32 | get_u32be(p + 4);
}

#endif
