/* Unit tests of the simulator itself: determinism, the network model,
 * faults, crashes, wake-ups and stepping. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"
#include "tests/sim/sim.h"
#include "tests/sim/sim_assert.h"

/* ---- a recording endpoint ---- */

#define REC_MAX 4096

struct rec_msg {
	uint64_t at_ms;
	uint32_t from, to, type;
	uint32_t payload; /* first 4 bytes, if any */
};

struct net;

struct node {
	struct net *net;
	uint32_t id;
	int wakes, crashes, restarts;
	uint64_t last_wake_ms;
	bool relay; /* forward each message to a random peer */
};

struct net {
	struct sim *sim;
	struct node nodes[8];
	size_t n;
	struct rec_msg log[REC_MAX];
	size_t n_log;
};

static void node_on_message(void *ctx, uint32_t from, uint32_t type,
			    const void *bytes, size_t len)
{
	struct node *nd = ctx;
	struct net *net = nd->net;
	uint32_t payload = 0;
	if (len >= 4)
		memcpy(&payload, bytes, 4);
	cr_assert_lt(net->n_log, REC_MAX);
	net->log[net->n_log++] = (struct rec_msg){
		.at_ms = sim_now_ms(net->sim),
		.from = from,
		.to = nd->id,
		.type = type,
		.payload = payload,
	};
	if (nd->relay && payload > 0) {
		payload--;
		uint32_t to = (uint32_t)sim_rand_range(net->sim, 0, net->n);
		sim_send(net->sim, nd->id, to, type, &payload, sizeof(payload));
	}
}

static void node_on_wake(void *ctx)
{
	struct node *nd = ctx;
	nd->wakes++;
	nd->last_wake_ms = sim_now_ms(nd->net->sim);
	if (nd->relay) {
		struct sim *s = nd->net->sim;
		uint32_t v = 3;
		uint32_t to = (uint32_t)sim_rand_range(s, 0, nd->net->n);
		sim_send(s, nd->id, to, 1, &v, sizeof(v));
		sim_wake_at(s, nd->id,
			    sim_now_ms(s) + sim_rand_range(s, 10, 50));
	}
}

static void node_on_crash(void *ctx)
{
	((struct node *)ctx)->crashes++;
}

static void node_on_restart(void *ctx)
{
	((struct node *)ctx)->restarts++;
}

static const struct sim_endpoint_ops node_ops = {
	.on_message = node_on_message,
	.on_wake = node_on_wake,
	.on_crash = node_on_crash,
	.on_restart = node_on_restart,
};

/* n nodes with ids 0..n-1. */
static struct net *net_new(uint64_t seed, size_t n)
{
	struct net *net = calloc(1, sizeof(*net));
	cr_assert_not_null(net);
	net->sim = sim_new(seed);
	cr_assert_not_null(net->sim);
	net->n = n;
	for (size_t i = 0; i < n; i++) {
		net->nodes[i] = (struct node){ .net = net, .id = (uint32_t)i };
		cr_assert_eq(sim_endpoint_add(net->sim, (uint32_t)i, &node_ops,
					      &net->nodes[i]),
			     STATUS_OK);
	}
	return net;
}

static void net_free(struct net *net)
{
	sim_free(net->sim);
	free(net);
}

static void send_u32(struct sim *s, uint32_t from, uint32_t to, uint32_t v)
{
	sim_send(s, from, to, 1, &v, sizeof(v));
}

/* ---- determinism ---- */

struct trace_buf {
	char *text;
	size_t len;
};

static void trace_append(void *arg, const char *line)
{
	struct trace_buf *t = arg;
	size_t n = strlen(line);
	t->text = realloc(t->text, t->len + n + 2);
	cr_assert_not_null(t->text);
	memcpy(t->text + t->len, line, n);
	t->len += n;
	t->text[t->len++] = '\n';
	t->text[t->len] = '\0';
}

static void crash_3(void *arg)
{
	sim_crash(arg, 3);
}

static void restart_3(void *arg)
{
	sim_restart(arg, 3);
}

/* Five relaying nodes on an unreliable, reordering network with a crash. */
static struct net *gossip_run(uint64_t seed, struct trace_buf *trace)
{
	struct net *net = net_new(seed, 5);
	struct sim_net model = sim_net_unreliable();
	sim_net_long_reordering(&model);
	sim_net_set(net->sim, &model);
	sim_set_trace(net->sim, true);
	sim_set_trace_sink(net->sim, trace_append, trace);
	for (size_t i = 0; i < net->n; i++) {
		net->nodes[i].relay = true;
		sim_wake_at(net->sim, (uint32_t)i, 5 * i);
	}
	sim_at(net->sim, 300, crash_3, net->sim);
	sim_at(net->sim, 700, restart_3, net->sim);
	sim_run_for(net->sim, 1500);
	return net;
}

Test(sim, same_seed_same_run)
{
	struct trace_buf ta = { 0 }, tb = { 0 }, tc = { 0 };
	struct net *a = gossip_run(42, &ta);
	struct net *b = gossip_run(42, &tb);
	struct net *c = gossip_run(43, &tc);

	cr_assert_gt(a->n_log, 100, "only %zu deliveries", a->n_log);
	cr_assert_eq(a->n_log, b->n_log);
	cr_assert(memcmp(a->log, b->log, a->n_log * sizeof(a->log[0])) == 0);
	cr_assert_eq(ta.len, tb.len);
	cr_assert_str_eq(ta.text, tb.text);
	struct sim_stats sa = sim_stats(a->sim), sb = sim_stats(b->sim);
	cr_assert(memcmp(&sa, &sb, sizeof(sa)) == 0);

	cr_assert(a->n_log != c->n_log ||
		  memcmp(a->log, c->log, a->n_log * sizeof(a->log[0])) != 0);
	cr_assert_str_neq(ta.text, tc.text);

	net_free(a);
	net_free(b);
	net_free(c);
	free(ta.text);
	free(tb.text);
	free(tc.text);
}

/* ---- PRNG ---- */

Test(sim, rng)
{
	struct sim_rng r, r2;
	sim_rng_seed(&r, 7);
	sim_rng_seed(&r2, 7);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(sim_rng_next(&r), sim_rng_next(&r2));

	int hist[10] = { 0 };
	for (int i = 0; i < 100000; i++) {
		uint64_t v = sim_rng_range(&r, 10, 20);
		cr_assert(v >= 10 && v < 20);
		hist[v - 10]++;
	}
	for (int i = 0; i < 10; i++)
		cr_assert(hist[i] > 9000 && hist[i] < 11000, "bucket %d: %d", i,
			  hist[i]);
	cr_assert_eq(sim_rng_range(&r, 5, 6), 5);
	uint64_t big = sim_rng_range(&r, 0, UINT64_MAX);
	cr_assert_lt(big, UINT64_MAX);

	for (int i = 0; i < 1000; i++) {
		cr_assert(!sim_rng_chance(&r, 0.0));
		cr_assert(sim_rng_chance(&r, 1.0));
	}
	int hits = 0;
	for (int i = 0; i < 100000; i++)
		hits += sim_rng_chance(&r, 0.25);
	cr_assert(hits > 24000 && hits < 26000, "hits %d", hits);

	struct sim *s = sim_new(7);
	sim_rng_seed(&r, 7);
	cr_assert_eq(sim_rand(s), sim_rng_next(&r));
	cr_assert_eq(sim_seed(s), 7);
	sim_free(s);
}

/* ---- network model ---- */

Test(sim, delays_within_bounds)
{
	struct net *net = net_new(1, 2);
	struct sim *s = net->sim;

	/* Default: reliable, 1-5 ms. */
	for (uint32_t i = 0; i < 500; i++)
		send_u32(s, 0, 1, i);
	sim_run_for(s, 100);
	cr_assert_eq(net->n_log, 500);
	bool seen[6] = { false };
	for (size_t i = 0; i < net->n_log; i++) {
		cr_assert(net->log[i].at_ms >= 1 && net->log[i].at_ms <= 5);
		seen[net->log[i].at_ms] = true;
	}
	for (int d = 1; d <= 5; d++)
		cr_assert(seen[d], "no delay of %d ms", d);

	/* Custom range, plus long delays. */
	struct sim_net m = { .delay_ms_min = 10, .delay_ms_max = 20 };
	sim_net_long_reordering(&m);
	sim_net_set(s, &m);
	net->n_log = 0;
	uint64_t t0 = sim_now_ms(s);
	for (uint32_t i = 0; i < 1000; i++)
		send_u32(s, 0, 1, i);
	sim_run_for(s, 3000);
	cr_assert_eq(net->n_log, 1000);
	int n_long = 0;
	bool reordered = false;
	for (size_t i = 0; i < net->n_log; i++) {
		uint64_t d = net->log[i].at_ms - t0;
		cr_assert((d >= 10 && d <= 20) || (d >= 200 && d <= 2200),
			  "delay %lu", (unsigned long)d);
		n_long += d >= 200;
		if (i > 0 && net->log[i].payload < net->log[i - 1].payload)
			reordered = true;
	}
	cr_assert(n_long > 240 && n_long < 360, "long delays: %d", n_long);
	cr_assert(reordered);

	/* Zero delay is allowed and keeps FIFO order among equal times. */
	m = (struct sim_net){ 0 };
	sim_net_set(s, &m);
	net->n_log = 0;
	for (uint32_t i = 0; i < 10; i++)
		send_u32(s, 0, 1, i);
	t0 = sim_now_ms(s);
	sim_run_for(s, 0);
	cr_assert_eq(net->n_log, 10);
	for (uint32_t i = 0; i < 10; i++) {
		cr_assert_eq(net->log[i].payload, i);
		cr_assert_eq(net->log[i].at_ms, t0);
	}
	net_free(net);
}

Test(sim, drop_and_dup_rates)
{
	struct net *net = net_new(5, 2);
	struct sim *s = net->sim;
	struct sim_net m = sim_net_unreliable();
	sim_net_set(s, &m);
	cr_assert_eq(sim_net_get(s).drop, 0.1);
	cr_assert_eq(sim_net_get(s).delay_ms_max, 30);

	enum { N = 20000 };
	size_t delivered = 0;
	for (int round = 0; round < N / 1000; round++) {
		for (uint32_t i = 0; i < 1000; i++)
			send_u32(s, 0, 1, i);
		sim_run_for(s, 100);
		delivered += net->n_log;
		net->n_log = 0;
	}
	struct sim_stats st = sim_stats(s);
	cr_assert_eq(st.sent, N);
	cr_assert_eq(st.sent_bytes, N * 4);
	cr_assert_eq(st.delivered, delivered);
	cr_assert_eq(st.sent + st.duplicated, st.delivered + st.dropped);
	cr_assert(st.dropped > 1700 && st.dropped < 2300, "dropped %lu",
		  (unsigned long)st.dropped);
	/* dup applies to the ~18000 messages not dropped */
	cr_assert(st.duplicated > 700 && st.duplicated < 1100, "dups %lu",
		  (unsigned long)st.duplicated);
	net_free(net);
}

Test(sim, stats_per_type)
{
	struct net *net = net_new(1, 2);
	struct sim *s = net->sim;
	char buf[100] = { 0 };
	sim_send(s, 0, 1, 3, buf, 10);
	sim_send(s, 0, 1, 3, buf, 20);
	sim_send(s, 1, 0, 31, buf, 100);
	sim_send(s, 1, 0, 32, buf, 7); /* beyond the per-type table */
	sim_send(s, 1, 0, 0, NULL, 0);
	struct sim_stats st = sim_stats(s);
	cr_assert_eq(st.sent, 5);
	cr_assert_eq(st.sent_bytes, 137);
	cr_assert_eq(st.sent_by_type[3], 2);
	cr_assert_eq(st.sent_bytes_by_type[3], 30);
	cr_assert_eq(st.sent_by_type[31], 1);
	cr_assert_eq(st.sent_bytes_by_type[31], 100);
	cr_assert_eq(st.sent_by_type[0], 1);
	sim_run_for(s, 10);
	cr_assert_eq(sim_stats(s).delivered, 5);
	cr_assert_eq(sim_stats(s).events, 5);
	sim_stats_reset(s);
	st = sim_stats(s);
	cr_assert_eq(st.sent + st.delivered + st.sent_by_type[3] + st.events,
		     0);
	net_free(net);
}

/* ---- links and partitions ---- */

Test(sim, one_way_link)
{
	struct net *net = net_new(1, 2);
	struct sim *s = net->sim;
	sim_link_set(s, 0, 1, false);
	cr_assert(!sim_link_up(s, 0, 1));
	cr_assert(sim_link_up(s, 1, 0));
	send_u32(s, 0, 1, 10);
	send_u32(s, 1, 0, 20);
	sim_run_for(s, 10);
	cr_assert_eq(net->n_log, 1);
	cr_assert_eq(net->log[0].from, 1);
	cr_assert_eq(net->log[0].to, 0);
	cr_assert_eq(sim_stats(s).dropped, 1);

	sim_link_set(s, 0, 1, true);
	send_u32(s, 0, 1, 30);
	sim_run_for(s, 10);
	cr_assert_eq(net->n_log, 2);
	cr_assert_eq(net->log[1].payload, 30);
	net_free(net);
}

static void partition_0_1(void *arg)
{
	static const uint32_t side[] = { 0, 1 };
	sim_partition(arg, side, 2);
}

static void heal(void *arg)
{
	sim_heal(arg);
}

Test(sim, partition_eats_messages_in_flight)
{
	struct net *net = net_new(1, 4);
	struct sim *s = net->sim;
	struct sim_net m = { .delay_ms_min = 10, .delay_ms_max = 10 };
	sim_net_set(s, &m);

	send_u32(s, 0, 2, 1); /* crosses the partition */
	send_u32(s, 2, 0, 2); /* crosses it the other way */
	send_u32(s, 0, 1, 3); /* stays inside side a */
	send_u32(s, 2, 3, 4); /* stays inside the rest */
	sim_at(s, 5, partition_0_1, s);
	sim_run_for(s, 20);
	cr_assert_eq(net->n_log, 2);
	cr_assert_eq(net->log[0].payload, 3);
	cr_assert_eq(net->log[1].payload, 4);
	cr_assert_eq(sim_stats(s).dropped, 2);

	/* Links are checked at send time as well as at delivery. */
	send_u32(s, 0, 3, 5);
	sim_heal(s);
	sim_run_for(s, 20);
	cr_assert_eq(net->n_log, 2);

	/* A partition healed before delivery loses nothing. */
	partition_0_1(s);
	sim_heal(s);
	send_u32(s, 0, 3, 6);
	partition_0_1(s);
	sim_at(s, sim_now_ms(s) + 5, heal, s);
	sim_run_for(s, 20);
	cr_assert_eq(net->n_log, 3);
	cr_assert_eq(net->log[2].payload, 6);
	net_free(net);
}

Test(sim, isolate_connect_partition_heal)
{
	struct net *net = net_new(1, 5);
	struct sim *s = net->sim;
	sim_isolate(s, 2);
	for (uint32_t i = 0; i < 5; i++)
		for (uint32_t j = 0; j < 5; j++)
			cr_assert_eq(sim_link_up(s, i, j),
				     i == j || (i != 2 && j != 2),
				     "link %u->%u", i, j);
	sim_connect(s, 2);
	for (uint32_t i = 0; i < 5; i++)
		for (uint32_t j = 0; j < 5; j++)
			cr_assert(sim_link_up(s, i, j));

	uint32_t side[] = { 4, 1, 77 /* unknown: ignored */ };
	sim_partition(s, side, 3);
	for (uint32_t i = 0; i < 5; i++)
		for (uint32_t j = 0; j < 5; j++) {
			bool ai = i == 1 || i == 4, aj = j == 1 || j == 4;
			cr_assert_eq(sim_link_up(s, i, j), ai == aj,
				     "link %u->%u", i, j);
		}
	/* A new partition replaces the old one. */
	sim_isolate(s, 0);
	uint32_t side2[] = { 0 };
	sim_partition(s, side2, 1);
	cr_assert(sim_link_up(s, 1, 2));
	cr_assert(!sim_link_up(s, 1, 0));
	sim_heal(s);
	for (uint32_t i = 0; i < 5; i++)
		for (uint32_t j = 0; j < 5; j++)
			cr_assert(sim_link_up(s, i, j));
	cr_assert(!sim_link_up(s, 0, 99));

	send_u32(s, 0, 99, 1); /* unknown receiver */
	send_u32(s, 99, 0, 1); /* unknown sender */
	sim_run_for(s, 10);
	cr_assert_eq(net->n_log, 0);
	cr_assert_eq(sim_stats(s).dropped, 2);
	net_free(net);
}

/* ---- crash and restart ---- */

Test(sim, crash_and_restart)
{
	struct net *net = net_new(1, 3);
	struct sim *s = net->sim;
	struct sim_net m = { .delay_ms_min = 10, .delay_ms_max = 10 };
	sim_net_set(s, &m);

	send_u32(s, 0, 1, 1); /* in flight to 1 when it crashes */
	send_u32(s, 1, 2, 2); /* sent by 1 before it crashes: arrives */
	sim_wake_at(s, 1, 8);
	sim_run_for(s, 3);
	sim_crash(s, 1);
	cr_assert(!sim_is_up(s, 1));
	cr_assert_eq(net->nodes[1].crashes, 1);
	sim_crash(s, 1); /* no-op */
	cr_assert_eq(net->nodes[1].crashes, 1);
	send_u32(s, 0, 1, 3); /* to a down node */
	send_u32(s, 1, 0, 4); /* from a down node */
	sim_wake_at(s, 1, 5); /* ignored while down */

	/* Restart before the in-flight message would arrive: still lost. */
	sim_run_for(s, 2);
	sim_restart(s, 1);
	cr_assert(sim_is_up(s, 1));
	cr_assert_eq(net->nodes[1].restarts, 1);
	sim_restart(s, 1); /* no-op */
	cr_assert_eq(net->nodes[1].restarts, 1);
	sim_run_for(s, 20);

	cr_assert_eq(net->n_log, 1);
	cr_assert_eq(net->log[0].payload, 2);
	cr_assert_eq(net->log[0].to, 2);
	cr_assert_eq(net->nodes[1].wakes, 0, "crash cancels the wake-up");
	struct sim_stats st = sim_stats(s);
	cr_assert_eq(st.dropped, 3);
	cr_assert_eq(st.delivered, 1);

	/* After the restart it is an ordinary endpoint again. */
	send_u32(s, 0, 1, 5);
	sim_wake_at(s, 1, sim_now_ms(s) + 1);
	sim_run_for(s, 20);
	cr_assert_eq(net->n_log, 2);
	cr_assert_eq(net->nodes[1].wakes, 1);
	cr_assert(!sim_is_up(s, 42));
	net_free(net);
}

/* ---- wake-ups ---- */

Test(sim, wake_replacement)
{
	struct net *net = net_new(1, 2);
	struct sim *s = net->sim;
	struct node *n0 = &net->nodes[0];

	sim_wake_at(s, 0, 100);
	sim_wake_at(s, 0, 50); /* earlier replaces later */
	sim_run_for(s, 200);
	cr_assert_eq(n0->wakes, 1);
	cr_assert_eq(n0->last_wake_ms, 50);

	sim_wake_at(s, 0, 250);
	sim_wake_at(s, 0, 300); /* later replaces earlier */
	sim_run_for(s, 200);
	cr_assert_eq(n0->wakes, 2);
	cr_assert_eq(n0->last_wake_ms, 300);

	sim_wake_at(s, 0, 10); /* the past means now */
	cr_assert(sim_step(s));
	cr_assert_eq(n0->wakes, 3);
	cr_assert_eq(n0->last_wake_ms, 400);
	cr_assert_eq(sim_now_ms(s), 400);

	sim_wake_at(s, 0, 450);
	sim_wake_cancel(s, 0);
	cr_assert(!sim_step(s), "only a stale entry was left");
	cr_assert_eq(sim_now_ms(s), 400, "stale entries move no clock");
	cr_assert_eq(n0->wakes, 3);

	/* Two endpoints' wake-ups are independent. */
	sim_wake_at(s, 0, 500);
	sim_wake_at(s, 1, 450);
	sim_run_for(s, 200);
	cr_assert_eq(n0->wakes, 4);
	cr_assert_eq(net->nodes[1].wakes, 1);
	cr_assert_eq(net->nodes[1].last_wake_ms, 450);
	net_free(net);
}

/* ---- stepping ---- */

static int order_log[8];
static int order_n;

static void record_order(void *arg)
{
	order_log[order_n++] = (int)(intptr_t)arg;
}

Test(sim, actions_in_time_then_insertion_order)
{
	struct sim *s = sim_new(1);
	order_n = 0;
	sim_at(s, 20, record_order, (void *)(intptr_t)3);
	sim_at(s, 10, record_order, (void *)(intptr_t)1);
	sim_at(s, 10, record_order, (void *)(intptr_t)2);
	sim_at(s, 30, record_order, (void *)(intptr_t)4);
	cr_assert_eq(sim_now_ms(s), 0);
	cr_assert(sim_step(s));
	cr_assert_eq(sim_now_ms(s), 10);
	sim_run_for(s, 15);
	cr_assert_eq(sim_now_ms(s), 25);
	cr_assert_eq(order_n, 3);
	cr_assert(sim_step(s));
	cr_assert(!sim_step(s));
	cr_assert_eq(sim_now_ms(s), 30);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(order_log[i], i + 1);
	sim_free(s);
}

struct until {
	struct net *net;
	size_t want;
	int calls;
};

static bool got_enough(void *arg)
{
	struct until *u = arg;
	u->calls++;
	return u->net->n_log >= u->want;
}

Test(sim, run_until_deadline)
{
	struct net *net = net_new(1, 2);
	struct sim *s = net->sim;
	struct sim_net m = { .delay_ms_min = 10, .delay_ms_max = 10 };
	sim_net_set(s, &m);
	struct until u = { .net = net, .want = 0 };

	/* Already true: no event runs. */
	send_u32(s, 0, 1, 1);
	cr_assert(sim_run_until(s, got_enough, &u, 1000));
	cr_assert_eq(u.calls, 1);
	cr_assert_eq(sim_now_ms(s), 0);

	/* Becomes true at an event: the clock stops there. */
	u.want = 1;
	cr_assert(sim_run_until(s, got_enough, &u, 1000));
	cr_assert_eq(sim_now_ms(s), 10);

	/* The next event lies past the deadline: clock set to the deadline. */
	send_u32(s, 0, 1, 2);
	u.want = 2;
	cr_assert(!sim_run_until(s, got_enough, &u, 15));
	cr_assert_eq(sim_now_ms(s), 15);
	cr_assert_eq(net->n_log, 1);

	/* An event exactly at the deadline runs. */
	cr_assert(sim_run_until(s, got_enough, &u, 20));
	cr_assert_eq(sim_now_ms(s), 20);

	/* Nothing left: false, clock at the deadline. */
	u.want = 3;
	cr_assert(!sim_run_until(s, got_enough, &u, 500));
	cr_assert_eq(sim_now_ms(s), 500);
	/* A deadline in the past never moves the clock back. */
	cr_assert(!sim_run_until(s, got_enough, &u, 100));
	cr_assert_eq(sim_now_ms(s), 500);
	net_free(net);
}

struct hook {
	struct sim *sim;
	int calls;
	uint64_t last_ms;
};

static void after_step(void *arg)
{
	struct hook *h = arg;
	h->calls++;
	cr_assert_geq(sim_now_ms(h->sim), h->last_ms);
	h->last_ms = sim_now_ms(h->sim);
}

Test(sim, after_step_hook_per_event)
{
	struct net *net = net_new(3, 2);
	struct sim *s = net->sim;
	struct hook h = { .sim = s };
	sim_set_after_step(s, after_step, &h);
	for (uint32_t i = 0; i < 10; i++)
		send_u32(s, 0, 1, i);
	sim_wake_at(s, 0, 3);
	sim_wake_at(s, 0, 4); /* the stale entry is not an event */
	sim_at(s, 2, record_order, (void *)(intptr_t)0);
	order_n = 0;
	sim_run_for(s, 50);
	cr_assert_eq(h.calls, 12);
	cr_assert_eq(sim_stats(s).events, 12);

	sim_set_after_step(s, NULL, NULL);
	send_u32(s, 0, 1, 0);
	sim_run_for(s, 50);
	cr_assert_eq(h.calls, 12);
	net_free(net);
}

/* ---- endpoints ---- */

struct grower {
	struct sim *sim;
	uint32_t next_id;
	int got;
};

static void grower_on_message(void *ctx, uint32_t from, uint32_t type,
			      const void *bytes, size_t len)
{
	struct grower *g = ctx;
	static const struct sim_endpoint_ops ops = {
		.on_message = grower_on_message,
	};
	g->got++;
	/* Adding endpoints from a callback moves the simulator's arrays. */
	for (int i = 0; i < 20; i++)
		cr_assert_eq(sim_endpoint_add(g->sim, g->next_id++, &ops, g),
			     STATUS_OK);
	if (g->next_id < 400)
		sim_send(g->sim, 1000, g->next_id - 1, type, bytes, len);
}

Test(sim, many_endpoints_arbitrary_ids)
{
	struct sim *s = sim_new(9);
	struct grower g = { .sim = s, .next_id = 1 };
	static const struct sim_endpoint_ops ops = {
		.on_message = grower_on_message,
	};
	cr_assert_eq(sim_endpoint_add(s, 1000, &ops, &g), STATUS_OK);
	cr_assert_eq(sim_endpoint_add(s, 1000, &ops, &g),
		     STATUS_ALREADY_EXISTS);
	cr_assert_eq(sim_endpoint_add(s, UINT32_MAX - 1, &ops, &g), STATUS_OK);
	cr_assert_eq(sim_endpoint_add(s, 0, &ops, &g), STATUS_OK);
	sim_link_set(s, 1000, 0, false);
	sim_send(s, 1000, UINT32_MAX - 1, 1, "x", 1);
	sim_run_for(s, 1000);
	cr_assert_eq(g.got, 20);
	cr_assert(sim_endpoint_exists(s, 399));
	cr_assert(sim_endpoint_exists(s, UINT32_MAX - 1));
	cr_assert(!sim_endpoint_exists(s, 401));
	/* Links survive the matrix growing; new endpoints start connected. */
	cr_assert(!sim_link_up(s, 1000, 0));
	cr_assert(sim_link_up(s, 0, 1000));
	cr_assert(sim_link_up(s, 1000, 399));

	uint32_t half[200];
	for (uint32_t i = 0; i < 200; i++)
		half[i] = i * 2;
	sim_partition(s, half, 200);
	cr_assert(sim_link_up(s, 0, 398));
	cr_assert(!sim_link_up(s, 0, 399));
	cr_assert(sim_link_up(s, 1, 1000));
	sim_free(s);
}

Test(sim, free_with_messages_in_flight)
{
	struct net *net = net_new(1, 2);
	struct sim_net m = sim_net_unreliable();
	sim_net_long_reordering(&m);
	sim_net_set(net->sim, &m);
	char big[4096] = { 0 };
	for (int i = 0; i < 100; i++)
		sim_send(net->sim, 0, 1, 2, big, sizeof(big));
	sim_wake_at(net->sim, 0, 10);
	sim_run_for(net->sim, 100);
	cr_assert_gt(net->n_log, 0);
	net_free(net); /* LeakSanitizer checks the rest is freed */
}

/* ---- tracing ---- */

static void fmt_ping(void *arg, uint32_t type, const void *bytes, size_t len,
		     char *out, size_t cap)
{
	snprintf(out, cap, "%s%u", (const char *)arg, type);
}

Test(sim, trace_lines)
{
	struct net *net = net_new(1, 2);
	struct sim *s = net->sim;
	struct trace_buf t = { 0 };
	struct sim_net m = { .delay_ms_min = 3, .delay_ms_max = 3 };
	sim_net_set(s, &m);
	sim_set_trace_sink(s, trace_append, &t);

	sim_trace(s, "not traced");
	send_u32(s, 0, 1, 1);
	sim_run_for(s, 10);
	cr_assert_null(t.text);

	sim_set_trace(s, true);
	cr_assert(sim_tracing(s));
	sim_set_formatter(s, fmt_ping, "Ping");
	sim_trace(s, "step %d", 1);
	send_u32(s, 0, 1, 1);
	sim_run_for(s, 10);
	sim_isolate(s, 1);
	send_u32(s, 0, 1, 1);
	sim_crash(s, 1);
	sim_restart(s, 1);
	sim_set_formatter(s, NULL, NULL);
	sim_heal(s);
	sim_send(s, 1, 0, 7, NULL, 0);
	cr_assert_str_eq(t.text,
			 "[    10 ms] step 1\n"
			 "[    10 ms] send 0->1 Ping1 4 B (+3 ms)\n"
			 "[    13 ms] deliver 0->1 Ping1 4 B\n"
			 "[    20 ms] isolate 1\n"
			 "[    20 ms] drop 0->1 Ping1 4 B (link down)\n"
			 "[    20 ms] crash 1\n"
			 "[    20 ms] restart 1\n"
			 "[    20 ms] heal\n"
			 "[    20 ms] send 1->0 type 7 0 B (+3 ms)\n");
	free(t.text);
	net_free(net);
}

/* ---- seeds ---- */

Test(sim, seeds_default_and_env)
{
	uint64_t *seeds;
	unsetenv("SIM_SEED");
	unsetenv("SIM_SEEDS");
	cr_assert(!sim_seed_replay());
	size_t n = sim_seeds(5, &seeds);
	cr_assert_eq(n, 5);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(seeds[i], i + 1);
	mem_free(seeds);

	setenv("SIM_SEEDS", "3", 1);
	n = sim_seeds(50, &seeds);
	cr_assert_eq(n, 3);
	cr_assert_eq(seeds[2], 3);
	mem_free(seeds);

	setenv("SIM_SEED", "123456789012", 1);
	cr_assert(sim_seed_replay());
	n = sim_seeds(50, &seeds);
	cr_assert_eq(n, 1);
	cr_assert_eq(seeds[0], 123456789012ULL);
	mem_free(seeds);
}

Test(sim, bad_seed_env_is_fatal, .exit_code = 2)
{
	uint64_t *seeds;
	setenv("SIM_SEED", "12x", 1);
	sim_seeds(5, &seeds);
}

/* Captures what is written to stderr between begin and end. */
struct capture {
	FILE *tmp;
	int saved_fd;
	char text[1024];
};

static void capture_begin(struct capture *c)
{
	c->tmp = tmpfile();
	cr_assert_not_null(c->tmp);
	fflush(stderr);
	c->saved_fd = dup(2);
	cr_assert_geq(c->saved_fd, 0);
	cr_assert_geq(dup2(fileno(c->tmp), 2), 0);
}

static void capture_end(struct capture *c)
{
	fflush(stderr);
	dup2(c->saved_fd, 2);
	close(c->saved_fd);
	rewind(c->tmp);
	size_t n = fread(c->text, 1, sizeof(c->text) - 1, c->tmp);
	c->text[n] = '\0';
	fclose(c->tmp);
}

Test(sim, seed_banner)
{
	struct capture c;
	capture_begin(&c);
	struct sim *s = sim_new(17);
	SIM_ASSERT_SEED(sim_now_ms(s) == 0, s, "clock at %lu",
			(unsigned long)sim_now_ms(s));
	SIM_ASSERT_SEED(true, (uint64_t)3, "never");
	sim_seed_banner("test_raft", "raft", "figure8", 17);
	sim_seed_banner(NULL, criterion_current_test->category,
			criterion_current_test->name, SIM_SEED_OF(s));
	capture_end(&c);
	cr_assert_str_eq(c.text,
			 "seed 17: replay with SIM_SEED=17 ./tests/test_raft "
			 "--filter 'raft/figure8'\n"
			 "seed 17: replay with SIM_SEED=17 ./tests/test_sim "
			 "--filter 'sim/seed_banner'\n");
	sim_free(s);
}

static void log_on_message(void *ctx, uint32_t from, uint32_t type,
			   const void *bytes, size_t len)
{
	log_info("test", "got %zu B from %u", len, from);
}

Test(sim, log_attach)
{
	static const struct sim_endpoint_ops ops = { .on_message =
							     log_on_message };
	struct sim *s = sim_new(1);
	struct sim_net m = { .delay_ms_min = 13, .delay_ms_max = 13 };
	sim_net_set(s, &m);
	cr_assert_eq(sim_endpoint_add(s, 1, &ops, NULL), STATUS_OK);
	cr_assert_eq(sim_endpoint_add(s, 2, &ops, NULL), STATUS_OK);
	sim_log_attach(s);
	struct capture c;
	capture_begin(&c);
	sim_send(s, 2, 1, 0, "abc", 3);
	sim_run_for(s, 20);
	log_info("test", "outside");
	sim_free(s);
	log_info("test", "detached");
	capture_end(&c);
	cr_assert_str_eq(c.text, "I     13 ms [1] test: got 3 B from 2\n"
				 "I     20 ms test: outside\n"
				 "I test: detached\n");
}

Test(sim, send_without_memory_loses_the_message)
{
	struct net *net = net_new(1, 2);
	struct sim *s = net->sim;
	send_u32(s, 0, 1, 1); /* the heap now has room */
	mem_fail_after(1);
	send_u32(s, 0, 1, 2);
	mem_fail_reset();
	sim_run_for(s, 10);
	cr_assert_eq(net->n_log, 1);
	cr_assert_eq(net->log[0].payload, 1);
	struct sim_stats st = sim_stats(s);
	cr_assert_eq(st.sent, 2);
	cr_assert_eq(st.dropped, 1);
	net_free(net);
}
