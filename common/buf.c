#include "common/buf.h"

#include <string.h>

#include "common/mem.h"
#include "common/status.h"

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	mem_free(b->data);
	buf_init(b);
}

int buf_reserve(struct buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len)
		return STATUS_NO_MEMORY;
	size_t need = b->len + extra;
	if (need <= b->cap)
		return STATUS_OK;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = mem_realloc(b->data, cap);
	if (!p)
		return STATUS_NO_MEMORY;
	b->data = p;
	b->cap = cap;
	return STATUS_OK;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return STATUS_OK;
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return STATUS_OK;
}

int buf_set(struct buf *b, const void *p, size_t n)
{
	b->len = 0;
	return buf_append(b, p, n);
}

int buf_append_u32be(struct buf *b, uint32_t v)
{
	uint8_t tmp[4];
	put_u32be(tmp, v);
	return buf_append(b, tmp, sizeof(tmp));
}

int buf_append_u64be(struct buf *b, uint64_t v)
{
	uint8_t tmp[8];
	put_u64be(tmp, v);
	return buf_append(b, tmp, sizeof(tmp));
}
