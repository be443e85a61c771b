/*
 * loop: the production event loop. One thread runs loop_run() and owns all
 * the state of a server; other threads (gRPC completion-queue threads) hand
 * it work with loop_post(), which never blocks.
 *
 * A turn: take every posted event (FIFO per producer), run them; run every
 * timer due at the turn's start time, earliest first (ties in start order);
 * then, if anything ran, call the turn hook once — that is where the owner
 * persists everything the turn produced in one synced write (group commit)
 * and then sends its messages. Then sleep until the next timer or post.
 *
 * Invariant: events, timers and the turn hook run only on the loop thread,
 * one at a time; they must not block (no fsync outside the turn hook, no
 * waiting on the network).
 *
 * Ownership: events and timers are intrusive, in memory the caller owns and
 * keeps valid until the callback ran (event) or the timer fired or was
 * stopped. The loop allocates nothing per event.
 */
#ifndef SKV_COMMON_LOOP_H
#define SKV_COMMON_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

struct loop_event {
	struct loop_event *_Atomic next; /* loop-private */
	void (*fn)(struct loop_event *ev);
};

struct loop_timer {
	void (*fn)(struct loop_timer *t);
	/* loop-private */
	uint64_t deadline_us;
	uint64_t seq;
	size_t heap_index; /* SIZE_MAX when not armed */
};

/* Returns NULL when out of memory. */
struct loop *loop_new(void);

/* Frees the loop. Call after loop_run returned and loop_drain ran; timers
 * still armed are simply forgotten. */
void loop_free(struct loop *l);

/* Runs turns on the calling thread until loop_stop(); returns 0. */
int loop_run(struct loop *l);

/* Any thread: makes loop_run return after the current turn. */
void loop_stop(struct loop *l);

/* After loop_run returned: runs every event still queued (so handlers can
 * release what they hold, e.g. fail pending RPCs with STATUS_SHUTDOWN).
 * Producers must have stopped posting. */
void loop_drain(struct loop *l);

/* True once loop_stop was called; for handlers run by loop_drain. */
bool loop_stopping(const struct loop *l);

/* Any thread, never blocks: `ev->fn(ev)` will run on the loop thread. */
void loop_post(struct loop *l, struct loop_event *ev);

/* Any thread: posts fn(arg) in an event the loop allocates and frees.
 * Returns STATUS_OK or STATUS_NO_MEMORY. */
int loop_call(struct loop *l, void (*fn)(void *arg), void *arg);

/* Monotonic time (us) read at the start of the current turn. */
uint64_t loop_now_us(const struct loop *l);

/* Loop thread only. loop_timer_init once; start (re)arms the timer to fire
 * `delay_us` after the current turn's time; stop disarms (no-op if not
 * armed). Start returns STATUS_OK or STATUS_NO_MEMORY. */
void loop_timer_init(struct loop_timer *t, void (*fn)(struct loop_timer *t));
int loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_us);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_index != SIZE_MAX;
}

/* Called on the loop thread at the end of every turn in which at least one
 * event or timer ran. Set before loop_run. */
void loop_set_turn_hook(struct loop *l, void (*fn)(void *arg), void *arg);

/* Counters for tests and status pages (loop thread, or after run). */
uint64_t loop_turns(const struct loop *l);

#endif
