/*
 * Implementation notes. Open addressing with linear probing; token 0
 * marks a free slot (tokens start at 1). Deletion shifts the probe chain
 * back, so there are no tombstones.
 */
#include "common/held.h"

#include <stdbool.h>

#include "common/mem.h"
#include "common/status.h"

static size_t slot_of(uint64_t token, size_t cap)
{
	/* Fibonacci hashing: tokens are sequential. */
	return (size_t)((token * UINT64_C(0x9E3779B97F4A7C15)) >> 17) &
	       (cap - 1);
}

static int grow(struct held_map *m)
{
	size_t ncap = m->cap ? 2 * m->cap : 64;
	struct held_slot *ns = mem_calloc(ncap, sizeof(*ns));
	if (!ns)
		return STATUS_NO_MEMORY;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].token)
			continue;
		size_t j = slot_of(m->slots[i].token, ncap);
		while (ns[j].token)
			j = (j + 1) & (ncap - 1);
		ns[j] = m->slots[i];
	}
	mem_free(m->slots);
	m->slots = ns;
	m->cap = ncap;
	return STATUS_OK;
}

int held_add(struct held_map *m, struct rpc_call *call, int tag,
	     uint64_t *token)
{
	if ((m->count + 1) * 2 > m->cap && grow(m) != STATUS_OK)
		return STATUS_NO_MEMORY;
	uint64_t t = ++m->last_token;
	size_t j = slot_of(t, m->cap);
	while (m->slots[j].token)
		j = (j + 1) & (m->cap - 1);
	m->slots[j] = (struct held_slot){t, call, tag};
	m->count++;
	*token = t;
	return STATUS_OK;
}

/* Empties slot i, shifting back every later entry of its chain that may
 * fill the hole. */
static void remove_at(struct held_map *m, size_t i)
{
	size_t mask = m->cap - 1, j = i;
	m->count--;
	for (;;) {
		m->slots[i] = (struct held_slot){0};
		for (;;) {
			j = (j + 1) & mask;
			if (!m->slots[j].token)
				return;
			size_t home = slot_of(m->slots[j].token, m->cap);
			/* Movable unless home lies cyclically in (i, j]. */
			bool stays = i <= j ? (i < home && home <= j)
					    : (i < home || home <= j);
			if (!stays)
				break;
		}
		m->slots[i] = m->slots[j];
		i = j;
	}
}

struct rpc_call *held_take(struct held_map *m, uint64_t token, int *tag)
{
	if (!m->cap || !token)
		return NULL;
	size_t mask = m->cap - 1, i = slot_of(token, m->cap);
	while (m->slots[i].token != token) {
		if (!m->slots[i].token)
			return NULL;
		i = (i + 1) & mask;
	}
	struct rpc_call *call = m->slots[i].call;
	if (tag)
		*tag = m->slots[i].tag;
	remove_at(m, i);
	return call;
}

struct rpc_call *held_take_any(struct held_map *m, uint64_t *token,
			       int *tag)
{
	for (size_t i = 0; m->count && i < m->cap; i++) {
		if (!m->slots[i].token)
			continue;
		if (token)
			*token = m->slots[i].token;
		return held_take(m, m->slots[i].token, tag);
	}
	return NULL;
}

size_t held_count(const struct held_map *m)
{
	return m->count;
}

void held_free(struct held_map *m)
{
	mem_free(m->slots);
	*m = (struct held_map){0};
}
