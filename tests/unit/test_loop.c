/* The production event loop: MPSC posting, timers, turns, stop and drain.
 * Each test runs the loop on its own thread and waits for conditions with a
 * deadline; nothing sleeps and hopes. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common/loop.h"
#include "common/monotime.h"
#include "common/status.h"

struct runner {
	struct loop *loop;
	pthread_t thread;
};

static void *run_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

static void runner_start(struct runner *r)
{
	r->loop = loop_new();
	cr_assert_not_null(r->loop);
}

static void runner_go(struct runner *r)
{
	cr_assert_eq(pthread_create(&r->thread, NULL, run_thread, r->loop), 0);
}

static void runner_finish(struct runner *r)
{
	loop_stop(r->loop);
	pthread_join(r->thread, NULL);
	loop_drain(r->loop);
	loop_free(r->loop);
}

/* Waits until *flag is nonzero or the deadline passes. */
static bool wait_flag(atomic_int *flag, uint64_t timeout_ms)
{
	uint64_t end = monotime_now_ms() + timeout_ms;
	while (!atomic_load(flag)) {
		if (monotime_now_ms() > end)
			return false;
		sched_yield();
	}
	return true;
}

/* ---- timers fire in deadline order, ties in start order ---- */

#define NTIMERS 12
struct tctx {
	struct loop *loop;
	struct loop_timer timers[NTIMERS];
	int order[NTIMERS];
	int fired;
	uint64_t start_us;
	uint64_t fired_at_us[NTIMERS];
	atomic_int done;
};
static struct tctx tc;

static void on_timer(struct loop_timer *t)
{
	int idx = (int)(t - tc.timers);
	tc.fired_at_us[idx] = loop_now_us(tc.loop);
	tc.order[tc.fired++] = idx;
	if (tc.fired == NTIMERS)
		atomic_store(&tc.done, 1);
}

/* delay (ms) of each timer; timer 5 is started then stopped, timer 7 is
 * restarted with a later delay. */
static const uint64_t delays_ms[NTIMERS] = {30, 10, 20, 10, 0, 15,
					    40, 5, 20, 1, 25, 10};

static void arm_timers(void *arg)
{
	(void)arg;
	tc.start_us = loop_now_us(tc.loop);
	for (int i = 0; i < NTIMERS; i++) {
		loop_timer_init(&tc.timers[i], on_timer);
		cr_assert_eq(loop_timer_start(tc.loop, &tc.timers[i],
					      delays_ms[i] * 1000),
			     STATUS_OK);
	}
	loop_timer_stop(tc.loop, &tc.timers[5]);
	cr_assert(!loop_timer_armed(&tc.timers[5]));
	loop_timer_start(tc.loop, &tc.timers[7], 35 * 1000); /* now after 0 */
	/* Timer 5 is re-armed so that NTIMERS still fire. */
	loop_timer_start(tc.loop, &tc.timers[5], 50 * 1000);
}

Test(loop, timers_fire_in_deadline_order)
{
	struct runner r;
	runner_start(&r);
	tc = (struct tctx){.loop = r.loop};
	cr_assert_eq(loop_call(r.loop, arm_timers, NULL), STATUS_OK);
	runner_go(&r);
	cr_assert(wait_flag(&tc.done, 5000), "timers did not all fire");
	runner_finish(&r);

	/* Expected: by (deadline, start sequence). 7 and 5 were re-armed
	 * last, so they come after every timer with the same deadline. */
	const int want[NTIMERS] = {4, 9, 1, 3, 11, 2, 8, 10, 0, 7, 6, 5};
	for (int i = 0; i < NTIMERS; i++)
		cr_assert_eq(tc.order[i], want[i], "position %d: got timer %d",
			     i, tc.order[i]);
	for (int i = 0; i < NTIMERS; i++) {
		uint64_t d = i == 7 ? 35 : i == 5 ? 50 : delays_ms[i];
		cr_assert_geq(tc.fired_at_us[i] - tc.start_us, d * 1000,
			      "timer %d fired early", i);
	}
}

/* ---- many producers: every event delivered once, FIFO per producer ---- */

#define PRODUCERS 4
#define PER_PRODUCER 50000
struct pev {
	struct loop_event ev;
	int producer;
	int seq;
};
static struct pev *pevs;
static int next_seq[PRODUCERS];
static atomic_int delivered;
static atomic_int all_delivered;
static int order_errors;
static struct loop *mp_loop;

static void on_pev(struct loop_event *ev)
{
	struct pev *p = (struct pev *)ev;
	if (p->seq != next_seq[p->producer])
		order_errors++;
	next_seq[p->producer] = p->seq + 1;
	if (atomic_fetch_add(&delivered, 1) + 1 == PRODUCERS * PER_PRODUCER)
		atomic_store(&all_delivered, 1);
}

static void *producer(void *arg)
{
	int id = (int)(intptr_t)arg;
	for (int i = 0; i < PER_PRODUCER; i++) {
		struct pev *p = &pevs[id * PER_PRODUCER + i];
		p->ev.fn = on_pev;
		p->producer = id;
		p->seq = i;
		loop_post(mp_loop, &p->ev);
	}
	return NULL;
}

static uint64_t turns_seen;
static void count_turn(void *arg)
{
	(void)arg;
	turns_seen++;
}

Test(loop, many_producers_fifo_per_producer)
{
	struct runner r;
	runner_start(&r);
	mp_loop = r.loop;
	pevs = calloc(PRODUCERS * PER_PRODUCER, sizeof(*pevs));
	loop_set_turn_hook(r.loop, count_turn, NULL);
	runner_go(&r);
	pthread_t t[PRODUCERS];
	for (int i = 0; i < PRODUCERS; i++)
		pthread_create(&t[i], NULL, producer, (void *)(intptr_t)i);
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	cr_assert(wait_flag(&all_delivered, 20000), "delivered %d of %d",
		  atomic_load(&delivered), PRODUCERS * PER_PRODUCER);
	runner_finish(&r);
	cr_assert_eq(order_errors, 0);
	for (int i = 0; i < PRODUCERS; i++)
		cr_assert_eq(next_seq[i], PER_PRODUCER);
	/* Batching: the turn hook ran at least once and at most once per
	 * event. */
	cr_assert(turns_seen >= 1 && turns_seen <= PRODUCERS * PER_PRODUCER);
	free(pevs);
}

/* ---- the turn hook runs once after each turn's events ---- */

static int hook_events_in_turn, hook_max_batch, hook_calls;
static atomic_int hook_done;
static void batch_event(void *arg)
{
	(void)arg;
	hook_events_in_turn++;
}
static void batch_hook(void *arg)
{
	(void)arg;
	hook_calls++;
	if (hook_events_in_turn > hook_max_batch)
		hook_max_batch = hook_events_in_turn;
	hook_events_in_turn = 0;
	atomic_store(&hook_done, 1);
}

Test(loop, turn_hook_sees_a_batch)
{
	struct runner r;
	runner_start(&r);
	loop_set_turn_hook(r.loop, batch_hook, NULL);
	/* Posted before the loop runs: one turn must take all 100. */
	for (int i = 0; i < 100; i++)
		cr_assert_eq(loop_call(r.loop, batch_event, NULL), STATUS_OK);
	runner_go(&r);
	cr_assert(wait_flag(&hook_done, 5000));
	runner_finish(&r);
	cr_assert_eq(hook_calls, 1);
	cr_assert_eq(hook_max_batch, 100);
}

/* ---- stop wakes a sleeping loop; drain runs what is left ---- */

static int drained;
static void count_drained(void *arg)
{
	(void)arg;
	drained++;
}

Test(loop, stop_wakes_idle_loop_and_drain_runs_leftovers)
{
	struct runner r;
	runner_start(&r);
	runner_go(&r);
	uint64_t t0 = monotime_now_ms();
	loop_stop(r.loop);
	pthread_join(r.thread, NULL);
	cr_assert_lt(monotime_now_ms() - t0, 10000, "stop did not wake loop");
	cr_assert(loop_stopping(r.loop));
	for (int i = 0; i < 3; i++)
		loop_call(r.loop, count_drained, NULL);
	loop_drain(r.loop);
	cr_assert_eq(drained, 3);
	loop_free(r.loop);
}

/* ---- a timer wakes a sleeping loop, not earlier than asked ---- */

static atomic_int woke;
static uint64_t armed_at_us, woke_at_us;
static struct loop *wake_loop;
static struct loop_timer wake_timer;
static void on_wake(struct loop_timer *t)
{
	(void)t;
	woke_at_us = monotime_now_us();
	atomic_store(&woke, 1);
}
static void arm_wake(void *arg)
{
	(void)arg;
	loop_timer_init(&wake_timer, on_wake);
	armed_at_us = monotime_now_us();
	loop_timer_start(wake_loop, &wake_timer, 20000);
}

Test(loop, timer_wakes_sleeping_loop)
{
	struct runner r;
	runner_start(&r);
	wake_loop = r.loop;
	runner_go(&r);
	/* Let the loop go to sleep with nothing to do, then arm from an
	 * event. */
	loop_call(r.loop, arm_wake, NULL);
	cr_assert(wait_flag(&woke, 5000));
	runner_finish(&r);
	cr_assert_geq(woke_at_us - armed_at_us, 20000);
}

/* ---- a timer re-armed with zero delay from its callback does not spin
 * inside one turn ---- */

static struct loop *spin_loop;
static struct loop_timer spin_timer;
static int spin_fires;
static uint64_t spin_turn_at_first;
static atomic_int spin_done;
static void on_spin(struct loop_timer *t)
{
	if (spin_fires++ == 0)
		spin_turn_at_first = loop_turns(spin_loop);
	if (spin_fires < 10)
		loop_timer_start(spin_loop, t, 0);
	else
		atomic_store(&spin_done, 1);
}
static void arm_spin(void *arg)
{
	(void)arg;
	loop_timer_init(&spin_timer, on_spin);
	loop_timer_start(spin_loop, &spin_timer, 0);
}

Test(loop, zero_delay_rearm_fires_next_turn)
{
	struct runner r;
	runner_start(&r);
	spin_loop = r.loop;
	loop_call(r.loop, arm_spin, NULL);
	runner_go(&r);
	cr_assert(wait_flag(&spin_done, 5000));
	loop_stop(r.loop);
	pthread_join(r.thread, NULL);
	uint64_t turns = loop_turns(r.loop);
	loop_free(r.loop);
	cr_assert_geq(turns - spin_turn_at_first, 9,
		      "each re-arm must wait for a later turn");
}
