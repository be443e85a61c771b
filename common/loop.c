#include "common/loop.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/monotime.h"
#include "common/status.h"

/*
 * Posted events travel through an intrusive multi-producer single-consumer
 * queue (Vyukov's): a producer links its node with one atomic exchange and
 * never waits. The consumer sleeps on the futex word `sleeping` only after
 * setting it to 1 and re-checking the queue; a producer that sees the 1
 * swaps it to 0 and wakes the futex. Both sides use sequentially
 * consistent operations on `head` and `sleeping`, so at least one of them
 * sees the other, and a wake that comes before the consumer's futex wait
 * makes that wait return at once (the word is no longer 1): no wake-up is
 * lost. Only the producer that swaps the 1 makes a system call, and there
 * is no mutex for the woken loop to contend for with its waker (a
 * condition variable signalled under its mutex cost the woken thread a
 * second sleep on that mutex).
 */
struct loop {
	/* MPSC queue */
	struct loop_event *_Atomic head; /* producers push here */
	struct loop_event *tail;         /* consumer pops here */
	struct loop_event stub;

	atomic_uint sleeping; /* futex word: 1 while the consumer sleeps */
	atomic_bool stop;

	/* timers: binary min-heap ordered by (deadline, seq) */
	struct loop_timer **heap;
	size_t heap_len, heap_cap;
	uint64_t timer_seq;

	uint64_t now_us;
	uint64_t turns;
	void (*turn_hook)(void *arg);
	void *turn_arg;
};

/* ---- MPSC queue ---- */

static void queue_push(struct loop *l, struct loop_event *ev)
{
	atomic_store_explicit(&ev->next, NULL, memory_order_relaxed);
	struct loop_event *prev = atomic_exchange(&l->head, ev);
	atomic_store_explicit(&prev->next, ev, memory_order_release);
}

/* Returns the oldest event, or NULL if the queue is empty or a producer is
 * half-way through a push (the caller then retries: see queue_maybe_busy). */
static struct loop_event *queue_pop(struct loop *l)
{
	struct loop_event *tail = l->tail;
	struct loop_event *next =
		atomic_load_explicit(&tail->next, memory_order_acquire);
	if (tail == &l->stub) {
		if (!next)
			return NULL;
		l->tail = next;
		tail = next;
		next = atomic_load_explicit(&next->next, memory_order_acquire);
	}
	if (next) {
		l->tail = next;
		return tail;
	}
	if (tail != atomic_load(&l->head))
		return NULL; /* a push is in progress */
	queue_push(l, &l->stub);
	next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (next) {
		l->tail = next;
		return tail;
	}
	return NULL;
}

/* True when a producer has pushed something not yet popped. */
static bool queue_nonempty(struct loop *l)
{
	return atomic_load(&l->head) != l->tail ||
	       atomic_load_explicit(&l->tail->next, memory_order_acquire);
}

static void futex_wake_one(atomic_uint *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void wake(struct loop *l)
{
	if (atomic_load(&l->sleeping) && atomic_exchange(&l->sleeping, 0u))
		futex_wake_one(&l->sleeping);
}

void loop_post(struct loop *l, struct loop_event *ev)
{
	queue_push(l, ev);
	wake(l);
}

struct call_event {
	struct loop_event ev;
	void (*fn)(void *arg);
	void *arg;
};

static void call_event_run(struct loop_event *ev)
{
	struct call_event *ce = (struct call_event *)ev;
	void (*fn)(void *) = ce->fn;
	void *arg = ce->arg;
	mem_free(ce);
	fn(arg);
}

int loop_call(struct loop *l, void (*fn)(void *arg), void *arg)
{
	struct call_event *ce = mem_alloc(sizeof(*ce));
	if (!ce)
		return STATUS_NO_MEMORY;
	ce->ev.fn = call_event_run;
	ce->fn = fn;
	ce->arg = arg;
	loop_post(l, &ce->ev);
	return STATUS_OK;
}

/* ---- timers ---- */

static bool timer_before(const struct loop_timer *a, const struct loop_timer *b)
{
	if (a->deadline_us != b->deadline_us)
		return a->deadline_us < b->deadline_us;
	return a->seq < b->seq;
}

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->heap_index = i;
}

static void heap_sift_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!timer_before(t, l->heap[parent]))
			break;
		heap_set(l, i, l->heap[parent]);
		i = parent;
	}
	heap_set(l, i, t);
}

static void heap_sift_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= l->heap_len)
			break;
		if (child + 1 < l->heap_len &&
		    timer_before(l->heap[child + 1], l->heap[child]))
			child++;
		if (!timer_before(l->heap[child], t))
			break;
		heap_set(l, i, l->heap[child]);
		i = child;
	}
	heap_set(l, i, t);
}

static void heap_remove(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_index;
	struct loop_timer *last = l->heap[--l->heap_len];
	t->heap_index = SIZE_MAX;
	if (i == l->heap_len)
		return;
	heap_set(l, i, last);
	heap_sift_down(l, i);
	heap_sift_up(l, last->heap_index);
}

void loop_timer_init(struct loop_timer *t, void (*fn)(struct loop_timer *t))
{
	t->fn = fn;
	t->deadline_us = 0;
	t->seq = 0;
	t->heap_index = SIZE_MAX;
}

int loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_us)
{
	if (loop_timer_armed(t))
		heap_remove(l, t);
	if (l->heap_len == l->heap_cap) {
		size_t cap = l->heap_cap ? 2 * l->heap_cap : 16;
		struct loop_timer **h = mem_realloc(l->heap, cap * sizeof(*h));
		if (!h)
			return STATUS_NO_MEMORY;
		l->heap = h;
		l->heap_cap = cap;
	}
	t->deadline_us = l->now_us + delay_us;
	t->seq = ++l->timer_seq;
	heap_set(l, l->heap_len++, t);
	heap_sift_up(l, t->heap_index);
	return STATUS_OK;
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
	if (loop_timer_armed(t))
		heap_remove(l, t);
}

/* ---- the loop ---- */

struct loop *loop_new(void)
{
	struct loop *l = mem_calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	atomic_store(&l->sleeping, 0u);
	atomic_store(&l->stub.next, NULL);
	atomic_store(&l->head, &l->stub);
	l->tail = &l->stub;
	l->now_us = monotime_now_us();
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->heap_len; i++)
		l->heap[i]->heap_index = SIZE_MAX;
	mem_free(l->heap);
	mem_free(l);
}

void loop_set_turn_hook(struct loop *l, void (*fn)(void *arg), void *arg)
{
	l->turn_hook = fn;
	l->turn_arg = arg;
}

uint64_t loop_now_us(const struct loop *l)
{
	return l->now_us;
}

uint64_t loop_turns(const struct loop *l)
{
	return l->turns;
}

bool loop_stopping(const struct loop *l)
{
	return atomic_load(&((struct loop *)l)->stop);
}

void loop_stop(struct loop *l)
{
	atomic_store(&l->stop, true);
	atomic_store(&l->sleeping, 0u);
	futex_wake_one(&l->sleeping);
}

/* Most events one turn runs, so that a flood of posts cannot starve timers
 * or postpone the turn hook (and its group commit) without bound. */
#define LOOP_EVENTS_PER_TURN_MAX 65536

/* Runs the events posted so far; returns how many ran. Events posted while
 * these run normally wait for the next turn, so a handler that posts to
 * itself cannot starve timers. */
static size_t run_events(struct loop *l)
{
	size_t n = 0;
	struct loop_event *last = atomic_load(&l->head);
	struct loop_event *ev;
	while (n < LOOP_EVENTS_PER_TURN_MAX && (ev = queue_pop(l))) {
		bool was_last = ev == last;
		ev->fn(ev);
		n++;
		if (was_last)
			break;
	}
	return n;
}

/* Fires timers due at the turn's time that were armed before this call;
 * a timer re-armed with zero delay from its callback fires next turn. */
static size_t run_timers(struct loop *l)
{
	size_t n = 0;
	uint64_t seq_limit = l->timer_seq;
	while (l->heap_len > 0) {
		struct loop_timer *t = l->heap[0];
		if (t->deadline_us > l->now_us || t->seq > seq_limit)
			break;
		heap_remove(l, t);
		t->fn(t);
		n++;
	}
	return n;
}

/* Sleeps until a post, loop_stop or the first timer's deadline (or
 * spuriously: the caller looks again). */
static void wait_for_work(struct loop *l)
{
	atomic_store(&l->sleeping, 1u);
	if (!queue_nonempty(l) && !atomic_load(&l->stop)) {
		/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time,
		 * the clock of monotime. */
		struct timespec ts, *at = NULL;
		bool due_now = false;
		if (l->heap_len > 0) {
			uint64_t due = l->heap[0]->deadline_us;
			due_now = due <= monotime_now_us();
			ts.tv_sec = (time_t)(due / 1000000u);
			ts.tv_nsec = (long)(due % 1000000u) * 1000;
			at = &ts;
		}
		if (!due_now)
			syscall(SYS_futex, &l->sleeping,
				FUTEX_WAIT_BITSET_PRIVATE, 1u, at, NULL,
				FUTEX_BITSET_MATCH_ANY);
	}
	atomic_store(&l->sleeping, 0u);
}

int loop_run(struct loop *l)
{
	while (!atomic_load(&l->stop)) {
		l->now_us = monotime_now_us();
		size_t ran = run_events(l);
		ran += run_timers(l);
		if (ran) {
			l->turns++;
			if (l->turn_hook)
				l->turn_hook(l->turn_arg);
			continue; /* more may be due already; look before sleeping */
		}
		if (queue_nonempty(l)) {
			/* A producer is mid-push; its link lands in a moment. */
			sched_yield();
			continue;
		}
		wait_for_work(l);
	}
	return 0;
}

void loop_drain(struct loop *l)
{
	for (;;) {
		struct loop_event *ev = queue_pop(l);
		if (!ev) {
			if (!queue_nonempty(l))
				return;
			sched_yield();
			continue;
		}
		ev->fn(ev);
	}
}
