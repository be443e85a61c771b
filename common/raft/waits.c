/*
 * raft/waits: requests waiting for their log entry (waits.h).
 */
#include "common/raft/waits.h"

#include <string.h>

#include "common/mem.h"
#include "common/status.h"

static struct raft_wait *at(const struct raft_waits *w, size_t i)
{
	return (struct raft_wait *)(w->items + i * w->item_bytes);
}

void raft_waits_init(struct raft_waits *w, size_t item_bytes)
{
	memset(w, 0, sizeof(*w));
	w->item_bytes = item_bytes;
}

void raft_waits_free(struct raft_waits *w)
{
	mem_free(w->items);
	raft_waits_init(w, w->item_bytes);
}

int raft_waits_add(struct raft_waits *w, const void *item)
{
	if (!mem_grow((void **)&w->items, &w->cap, w->n + 1, w->item_bytes))
		return STATUS_NO_MEMORY;
	memcpy(at(w, w->n), item, w->item_bytes);
	at(w, w->n)->decided = false;
	w->n++;
	return STATUS_OK;
}

void raft_waits_decide(struct raft_waits *w, uint64_t index,
		       bool (*match)(void *arg, const void *item),
		       void (*fn)(void *arg, void *item, bool own),
		       void *arg)
{
	for (size_t i = 0; i < w->n; i++) {
		struct raft_wait *it = at(w, i);
		if (it->decided || it->index > index)
			continue;
		it->decided = true;
		fn(arg, it, it->index == index && match && match(arg, it));
	}
}

/* Removes the items `pick` selects, passing each to fn, in order. */
static void remove_if(struct raft_waits *w,
		      bool (*pick)(const struct raft_wait *it, uint64_t a,
				   uint64_t b),
		      uint64_t a, uint64_t b, raft_wait_fn fn, void *arg)
{
	size_t kept = 0;
	for (size_t i = 0; i < w->n; i++) {
		struct raft_wait *it = at(w, i);
		if (pick(it, a, b)) {
			fn(arg, it);
			continue;
		}
		if (kept != i)
			memcpy(at(w, kept), it, w->item_bytes);
		kept++;
	}
	w->n = kept;
}

static bool pick_released(const struct raft_wait *it, uint64_t applied,
			  uint64_t unused)
{
	(void)unused;
	return it->decided && it->index <= applied;
}

static bool pick_stale(const struct raft_wait *it, uint64_t leader,
		       uint64_t term)
{
	return !it->decided && (!leader || it->term != term);
}

void raft_waits_release(struct raft_waits *w, uint64_t applied,
			raft_wait_fn fn, void *arg)
{
	remove_if(w, pick_released, applied, 0, fn, arg);
}

void raft_waits_fail_stale(struct raft_waits *w, bool leader,
			   uint64_t term, raft_wait_fn fn, void *arg)
{
	remove_if(w, pick_stale, leader, term, fn, arg);
}

bool raft_waits_take_if(struct raft_waits *w,
			bool (*match)(void *arg, const void *item), void *arg,
			void *out)
{
	for (size_t i = 0; i < w->n; i++) {
		if (!match(arg, at(w, i)))
			continue;
		memcpy(out, at(w, i), w->item_bytes);
		w->n--;
		if (i != w->n)
			memmove(at(w, i), at(w, i + 1),
				(w->n - i) * w->item_bytes);
		return true;
	}
	return false;
}

void raft_waits_take_all(struct raft_waits *w, raft_wait_fn fn, void *arg)
{
	/* Take the array first: fn may come back in (a reply callback). */
	struct raft_waits all = *w;
	raft_waits_init(w, all.item_bytes);
	for (size_t i = 0; i < all.n; i++)
		fn(arg, at(&all, i));
	mem_free(all.items);
}
