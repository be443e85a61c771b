#include "tests/sim/sim.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"

#define NO_ENDPOINT UINT32_MAX

struct sim_msg {
	uint32_t from, to, type;
	uint64_t to_incarnation; /* the receiver's at send time */
	size_t len;
	uint8_t bytes[];
};

enum sim_event_kind { EV_MSG, EV_WAKE, EV_ACTION };

struct sim_event {
	uint64_t at_ms;
	uint64_t seq; /* ties broken by insertion order */
	enum sim_event_kind kind;
	union {
		struct sim_msg *msg;
		struct {
			uint32_t id;
			uint64_t gen;
		} wake;
		struct {
			void (*fn)(void *arg);
			void *arg;
		} action;
	} u;
};

struct sim_endpoint {
	uint32_t id;
	struct sim_endpoint_ops ops;
	void *ctx;
	bool up;
	uint64_t incarnation; /* bumped by each crash */
	uint64_t wake_gen;    /* a wake event with another gen is stale */
};

/*
 * Endpoints live in `eps` in the order they were added; that index is their
 * row and column in the link matrix. `by_id` holds the same indexes sorted
 * by id, for binary search. Both arrays may move when an endpoint is added
 * (possibly from inside a callback), so nothing holds an endpoint pointer
 * across a callback.
 */
struct sim {
	uint64_t seed;
	uint64_t now_ms;
	struct sim_rng rng;
	struct sim_net net;
	struct sim_stats stats;

	struct sim_event *heap;
	size_t heap_len, heap_cap;
	uint64_t next_seq;
	bool stepping;

	struct sim_endpoint *eps;
	uint32_t *by_id;
	size_t n_eps, eps_cap;
	uint8_t *cut; /* cut[from * link_dim + to]: link from -> to is down */
	size_t link_dim;

	void (*after_step)(void *arg);
	void *after_step_arg;
	bool trace;
	sim_format_fn fmt;
	void *fmt_arg;
	sim_trace_sink_fn sink;
	void *sink_arg;
	bool log_attached;
};

static _Noreturn void sim_oom(void)
{
	fprintf(stderr, "sim: out of memory\n");
	abort();
}

/* ---- PRNG ---- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

uint64_t sim_rng_next(struct sim_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t sim_rng_range(struct sim_rng *r, uint64_t lo, uint64_t hi)
{
	assert(hi > lo);
	uint64_t span = hi - lo;
	/* Reject the low 2^64 mod span values so every residue is equally
	 * likely. */
	uint64_t threshold = -span % span;
	for (;;) {
		uint64_t x = sim_rng_next(r);
		if (x >= threshold)
			return lo + x % span;
	}
}

bool sim_rng_chance(struct sim_rng *r, double p)
{
	double u = (double)(sim_rng_next(r) >> 11) * 0x1.0p-53; /* [0, 1) */
	return u < p;
}

uint64_t sim_rand(struct sim *s)
{
	return sim_rng_next(&s->rng);
}

uint64_t sim_rand_range(struct sim *s, uint64_t lo, uint64_t hi)
{
	return sim_rng_range(&s->rng, lo, hi);
}

bool sim_chance(struct sim *s, double p)
{
	return sim_rng_chance(&s->rng, p);
}

/* ---- event heap: min-heap on (at_ms, seq) ---- */

static bool ev_before(const struct sim_event *a, const struct sim_event *b)
{
	return a->at_ms != b->at_ms ? a->at_ms < b->at_ms : a->seq < b->seq;
}

static void ev_swap(struct sim_event *a, struct sim_event *b)
{
	struct sim_event t = *a;
	*a = *b;
	*b = t;
}

/* Returns false if the heap cannot grow. A time in the past means now. */
static bool heap_push(struct sim *s, struct sim_event ev)
{
	if (s->heap_len == s->heap_cap) {
		size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
		struct sim_event *h = mem_realloc(s->heap, cap * sizeof(*h));
		if (!h)
			return false;
		s->heap = h;
		s->heap_cap = cap;
	}
	if (ev.at_ms < s->now_ms)
		ev.at_ms = s->now_ms;
	ev.seq = s->next_seq++;
	size_t i = s->heap_len++;
	s->heap[i] = ev;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!ev_before(&s->heap[i], &s->heap[parent]))
			break;
		ev_swap(&s->heap[i], &s->heap[parent]);
		i = parent;
	}
	return true;
}

static struct sim_event heap_pop(struct sim *s)
{
	assert(s->heap_len > 0);
	struct sim_event top = s->heap[0];
	s->heap[0] = s->heap[--s->heap_len];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		if (l < s->heap_len && ev_before(&s->heap[l], &s->heap[min]))
			min = l;
		if (r < s->heap_len && ev_before(&s->heap[r], &s->heap[min]))
			min = r;
		if (min == i)
			break;
		ev_swap(&s->heap[i], &s->heap[min]);
		i = min;
	}
	return top;
}

/* ---- endpoints ---- */

/* Index into s->eps, or NO_ENDPOINT. */
static uint32_t ep_find(const struct sim *s, uint32_t id)
{
	size_t lo = 0, hi = s->n_eps;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t mid_id = s->eps[s->by_id[mid]].id;
		if (mid_id == id)
			return s->by_id[mid];
		if (mid_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NO_ENDPOINT;
}

static struct sim_endpoint *ep_get(const struct sim *s, uint32_t id)
{
	uint32_t i = ep_find(s, id);
	return i == NO_ENDPOINT ? NULL : &s->eps[i];
}

/* Grows the endpoint arrays and the link matrix to hold `n` endpoints. */
static int ep_reserve(struct sim *s, size_t n)
{
	if (n > s->eps_cap) {
		size_t cap = s->eps_cap ? s->eps_cap * 2 : 16;
		struct sim_endpoint *eps =
			mem_realloc(s->eps, cap * sizeof(*eps));
		if (!eps)
			return STATUS_NO_MEMORY;
		s->eps = eps;
		uint32_t *by_id = mem_realloc(s->by_id, cap * sizeof(*by_id));
		if (!by_id)
			return STATUS_NO_MEMORY;
		s->by_id = by_id;
		s->eps_cap = cap;
	}
	if (n > s->link_dim) {
		size_t dim = s->eps_cap;
		uint8_t *cut = mem_calloc(dim * dim, 1);
		if (!cut)
			return STATUS_NO_MEMORY;
		for (size_t i = 0; i < s->link_dim; i++)
			memcpy(cut + i * dim, s->cut + i * s->link_dim,
			       s->link_dim);
		mem_free(s->cut);
		s->cut = cut;
		s->link_dim = dim;
	}
	return STATUS_OK;
}

int sim_endpoint_add(struct sim *s, uint32_t id,
		     const struct sim_endpoint_ops *ops, void *ctx)
{
	if (ep_find(s, id) != NO_ENDPOINT)
		return STATUS_ALREADY_EXISTS;
	assert(s->n_eps < NO_ENDPOINT);
	int rc = ep_reserve(s, s->n_eps + 1);
	if (rc)
		return rc;
	uint32_t idx = (uint32_t)s->n_eps++;
	s->eps[idx] = (struct sim_endpoint){
		.id = id,
		.ops = *ops,
		.ctx = ctx,
		.up = true,
	};
	size_t pos = idx;
	while (pos > 0 && s->eps[s->by_id[pos - 1]].id > id) {
		s->by_id[pos] = s->by_id[pos - 1];
		pos--;
	}
	s->by_id[pos] = idx;
	return STATUS_OK;
}

bool sim_endpoint_exists(const struct sim *s, uint32_t id)
{
	return ep_find(s, id) != NO_ENDPOINT;
}

bool sim_is_up(const struct sim *s, uint32_t id)
{
	const struct sim_endpoint *ep = ep_get(s, id);
	return ep && ep->up;
}

/* ---- tracing and log tags ---- */

static void tracef(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void vtracef(struct sim *s, const char *fmt, va_list ap)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "[%6" PRIu64 " ms] ", s->now_ms);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (s->sink)
		s->sink(s->sink_arg, line);
	else
		fprintf(stderr, "%s\n", line);
}

static void tracef(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vtracef(s, fmt, ap);
	va_end(ap);
}

void sim_trace(struct sim *s, const char *fmt, ...)
{
	if (!s->trace)
		return;
	va_list ap;
	va_start(ap, fmt);
	vtracef(s, fmt, ap);
	va_end(ap);
}

static void trace_msg(struct sim *s, const char *what, uint32_t from,
		      uint32_t to, uint32_t type, const void *bytes, size_t len,
		      const char *extra)
{
	if (!s->trace)
		return;
	char label[160];
	if (s->fmt) {
		label[0] = '\0';
		s->fmt(s->fmt_arg, type, bytes, len, label, sizeof(label));
	} else {
		snprintf(label, sizeof(label), "type %" PRIu32, type);
	}
	tracef(s, "%s %" PRIu32 "->%" PRIu32 " %s %zu B%s", what, from, to,
	       label, len, extra);
}

void sim_set_trace(struct sim *s, bool on)
{
	s->trace = on;
}

bool sim_tracing(const struct sim *s)
{
	return s->trace;
}

void sim_set_formatter(struct sim *s, sim_format_fn fn, void *arg)
{
	s->fmt = fn;
	s->fmt_arg = arg;
}

void sim_set_trace_sink(struct sim *s, sim_trace_sink_fn fn, void *arg)
{
	s->sink = fn;
	s->sink_arg = arg;
}

static void log_clock(void *arg, char *buf, size_t cap)
{
	const struct sim *s = arg;
	snprintf(buf, cap, "%6" PRIu64 " ms", s->now_ms);
}

void sim_log_attach(struct sim *s)
{
	log_set_clock(log_clock, s);
	s->log_attached = true;
}

/* Tags log lines with the endpoint whose callback runs; NO_ENDPOINT clears
 * the tag. Callbacks do not nest except through sim_crash/sim_restart,
 * which restore the tag of the caller. */
void sim_trace_hash(void *arg, const char *line)
{
	uint64_t *h = arg;
	for (const char *p = line; *p; p++)
		*h = (*h ^ (uint8_t)*p) * 0x100000001b3ULL;
	*h = (*h ^ '\n') * 0x100000001b3ULL;
}

void sim_trace_setup(struct sim *s, sim_format_fn fmt, uint64_t *hash)
{
	if (hash) {
		*hash = SIM_TRACE_HASH_INIT;
		sim_set_trace(s, true);
		sim_set_formatter(s, fmt, NULL);
		sim_set_trace_sink(s, sim_trace_hash, hash);
		log_set_level(LOG_WARN);
	} else if (sim_seed_replay()) {
		sim_set_trace(s, true);
		sim_set_formatter(s, fmt, NULL);
		log_set_level(LOG_INFO);
	} else {
		log_set_level(LOG_WARN);
	}
	sim_log_attach(s);
}

static uint32_t log_tag_id = NO_ENDPOINT;

static uint32_t log_tag(const struct sim *s, uint32_t id)
{
	uint32_t prev = log_tag_id;
	if (!s->log_attached)
		return prev;
	char tag[16] = "";
	if (id != NO_ENDPOINT)
		snprintf(tag, sizeof(tag), "%" PRIu32, id);
	log_set_node(tag);
	log_tag_id = id;
	return prev;
}

/* ---- messages ---- */

static void count_drop(struct sim *s, uint32_t from, uint32_t to,
		       uint32_t type, const void *bytes, size_t len,
		       const char *why)
{
	s->stats.dropped++;
	if (s->trace) {
		char extra[48];
		snprintf(extra, sizeof(extra), " (%s)", why);
		trace_msg(s, "drop", from, to, type, bytes, len, extra);
	}
}

static bool link_cut(const struct sim *s, uint32_t from_idx, uint32_t to_idx)
{
	return s->cut[(size_t)from_idx * s->link_dim + to_idx] != 0;
}

static uint64_t draw_delay(struct sim *s)
{
	const struct sim_net *n = &s->net;
	if (n->long_delay > 0 && sim_chance(s, n->long_delay))
		return sim_rand_range(s, n->long_delay_ms_min,
				      n->long_delay_ms_max + 1);
	return sim_rand_range(s, n->delay_ms_min, n->delay_ms_max + 1);
}

/* Schedules one copy; false (nothing scheduled) if memory ran out. */
static bool schedule_copy(struct sim *s, uint32_t from, uint32_t to,
			  uint32_t type, const void *bytes, size_t len,
			  uint64_t incarnation, const char *what)
{
	uint64_t delay_ms = draw_delay(s);
	struct sim_msg *m = mem_alloc(sizeof(*m) + len);
	if (!m)
		return false;
	*m = (struct sim_msg){
		.from = from,
		.to = to,
		.type = type,
		.to_incarnation = incarnation,
		.len = len,
	};
	if (len)
		memcpy(m->bytes, bytes, len);
	struct sim_event ev = {
		.at_ms = s->now_ms + delay_ms,
		.kind = EV_MSG,
		.u.msg = m,
	};
	if (!heap_push(s, ev)) {
		mem_free(m);
		return false;
	}
	if (s->trace) {
		char extra[48];
		snprintf(extra, sizeof(extra), " (+%" PRIu64 " ms)", delay_ms);
		trace_msg(s, what, from, to, type, bytes, len, extra);
	}
	return true;
}

void sim_send(struct sim *s, uint32_t from, uint32_t to, uint32_t type,
	      const void *bytes, size_t len)
{
	s->stats.sent++;
	s->stats.sent_bytes += len;
	if (type < SIM_TYPES_MAX) {
		s->stats.sent_by_type[type]++;
		s->stats.sent_bytes_by_type[type] += len;
	}

	uint32_t fi = ep_find(s, from), ti = ep_find(s, to);
	const char *why = NULL;
	if (fi == NO_ENDPOINT)
		why = "unknown sender";
	else if (ti == NO_ENDPOINT)
		why = "unknown receiver";
	else if (!s->eps[fi].up)
		why = "sender down";
	else if (!s->eps[ti].up)
		why = "receiver down";
	else if (link_cut(s, fi, ti))
		why = "link down";
	else if (sim_chance(s, s->net.drop))
		why = "random";
	if (why) {
		count_drop(s, from, to, type, bytes, len, why);
		return;
	}

	uint64_t inc = s->eps[ti].incarnation;
	if (!schedule_copy(s, from, to, type, bytes, len, inc, "send")) {
		count_drop(s, from, to, type, bytes, len, "no memory");
		return;
	}
	if (s->net.dup > 0 && sim_chance(s, s->net.dup)) {
		s->stats.duplicated++;
		if (!schedule_copy(s, from, to, type, bytes, len, inc, "dup"))
			count_drop(s, from, to, type, bytes, len, "no memory");
	}
}

static void deliver(struct sim *s, struct sim_msg *m)
{
	uint32_t fi = ep_find(s, m->from), ti = ep_find(s, m->to);
	const char *why = NULL;
	/* Both were known at send time and endpoints are never removed. */
	assert(fi != NO_ENDPOINT && ti != NO_ENDPOINT);
	struct sim_endpoint *to = &s->eps[ti];
	if (!to->up || to->incarnation != m->to_incarnation)
		why = "receiver crashed";
	else if (link_cut(s, fi, ti))
		why = "link down";
	if (why) {
		count_drop(s, m->from, m->to, m->type, m->bytes, m->len, why);
		return;
	}
	s->stats.delivered++;
	trace_msg(s, "deliver", m->from, m->to, m->type, m->bytes, m->len, "");
	if (to->ops.on_message) {
		void (*fn)(void *, uint32_t, uint32_t, const void *, size_t) =
			to->ops.on_message;
		uint32_t prev = log_tag(s, m->to);
		fn(to->ctx, m->from, m->type, m->bytes, m->len);
		log_tag(s, prev);
	}
}

struct sim_stats sim_stats(const struct sim *s)
{
	return s->stats;
}

void sim_stats_reset(struct sim *s)
{
	memset(&s->stats, 0, sizeof(s->stats));
}

/* ---- network model ---- */

struct sim_net sim_net_reliable(void)
{
	return (struct sim_net){ .delay_ms_min = 1, .delay_ms_max = 5 };
}

struct sim_net sim_net_unreliable(void)
{
	return (struct sim_net){
		.delay_ms_min = 0,
		.delay_ms_max = 30,
		.drop = 0.1,
		.dup = 0.05,
	};
}

void sim_net_long_reordering(struct sim_net *n)
{
	n->long_delay = 0.3;
	n->long_delay_ms_min = 200;
	n->long_delay_ms_max = 2200;
}

void sim_net_set(struct sim *s, const struct sim_net *n)
{
	assert(n->delay_ms_min <= n->delay_ms_max);
	assert(n->delay_ms_max < UINT64_MAX);
	assert(n->long_delay <= 0 ||
	       (n->long_delay_ms_min <= n->long_delay_ms_max &&
		n->long_delay_ms_max < UINT64_MAX));
	s->net = *n;
}

struct sim_net sim_net_get(const struct sim *s)
{
	return s->net;
}

/* ---- faults ---- */

void sim_link_set(struct sim *s, uint32_t from, uint32_t to, bool up)
{
	uint32_t fi = ep_find(s, from), ti = ep_find(s, to);
	if (fi == NO_ENDPOINT || ti == NO_ENDPOINT)
		return;
	s->cut[(size_t)fi * s->link_dim + ti] = !up;
	if (s->trace)
		tracef(s, "link %" PRIu32 "->%" PRIu32 " %s", from, to,
		       up ? "up" : "down");
}

bool sim_link_up(const struct sim *s, uint32_t from, uint32_t to)
{
	uint32_t fi = ep_find(s, from), ti = ep_find(s, to);
	return fi != NO_ENDPOINT && ti != NO_ENDPOINT && !link_cut(s, fi, ti);
}

static void set_all_links_of(struct sim *s, uint32_t id, bool up)
{
	uint32_t i = ep_find(s, id);
	if (i == NO_ENDPOINT)
		return;
	for (size_t j = 0; j < s->n_eps; j++) {
		if (j == i)
			continue;
		s->cut[(size_t)i * s->link_dim + j] = !up;
		s->cut[j * s->link_dim + i] = !up;
	}
	if (s->trace)
		tracef(s, "%s %" PRIu32, up ? "connect" : "isolate", id);
}

void sim_isolate(struct sim *s, uint32_t id)
{
	set_all_links_of(s, id, false);
}

void sim_connect(struct sim *s, uint32_t id)
{
	set_all_links_of(s, id, true);
}

void sim_partition(struct sim *s, const uint32_t *side_a, size_t na)
{
	uint8_t *in_a = mem_calloc(s->n_eps ? s->n_eps : 1, 1);
	if (!in_a)
		sim_oom();
	char list[256];
	size_t n = 0;
	list[0] = '\0';
	for (size_t k = 0; k < na; k++) {
		uint32_t i = ep_find(s, side_a[k]);
		if (i != NO_ENDPOINT)
			in_a[i] = 1;
		if (n < sizeof(list))
			n += (size_t)snprintf(list + n, sizeof(list) - n,
					      "%s%" PRIu32, k ? " " : "",
					      side_a[k]);
	}
	for (size_t i = 0; i < s->n_eps; i++)
		for (size_t j = 0; j < s->n_eps; j++)
			s->cut[i * s->link_dim + j] = in_a[i] != in_a[j];
	mem_free(in_a);
	if (s->trace)
		tracef(s, "partition {%s} | rest", list);
}

void sim_heal(struct sim *s)
{
	if (s->cut)
		memset(s->cut, 0, s->link_dim * s->link_dim);
	if (s->trace)
		tracef(s, "heal");
}

void sim_crash(struct sim *s, uint32_t id)
{
	struct sim_endpoint *ep = ep_get(s, id);
	if (!ep || !ep->up)
		return;
	ep->up = false;
	ep->incarnation++;
	ep->wake_gen++;
	if (s->trace)
		tracef(s, "crash %" PRIu32, id);
	if (ep->ops.on_crash) {
		uint32_t prev = log_tag(s, id);
		ep->ops.on_crash(ep->ctx);
		log_tag(s, prev);
	}
}

void sim_restart(struct sim *s, uint32_t id)
{
	struct sim_endpoint *ep = ep_get(s, id);
	if (!ep || ep->up)
		return;
	ep->up = true;
	if (s->trace)
		tracef(s, "restart %" PRIu32, id);
	if (ep->ops.on_restart) {
		void (*fn)(void *) = ep->ops.on_restart;
		uint32_t prev = log_tag(s, id);
		fn(ep->ctx); /* may add endpoints: ep is not used after */
		log_tag(s, prev);
	}
}

/* ---- time ---- */

void sim_wake_at(struct sim *s, uint32_t id, uint64_t at_ms)
{
	struct sim_endpoint *ep = ep_get(s, id);
	if (!ep || !ep->up)
		return;
	ep->wake_gen++;
	struct sim_event ev = {
		.at_ms = at_ms,
		.kind = EV_WAKE,
		.u.wake = { .id = id, .gen = ep->wake_gen },
	};
	if (!heap_push(s, ev))
		sim_oom();
}

void sim_wake_cancel(struct sim *s, uint32_t id)
{
	struct sim_endpoint *ep = ep_get(s, id);
	if (ep)
		ep->wake_gen++;
}

void sim_at(struct sim *s, uint64_t at_ms, void (*fn)(void *arg), void *arg)
{
	struct sim_event ev = {
		.at_ms = at_ms,
		.kind = EV_ACTION,
		.u.action = { .fn = fn, .arg = arg },
	};
	if (!heap_push(s, ev))
		sim_oom();
}

static bool wake_stale(const struct sim *s, const struct sim_event *ev)
{
	return ep_get(s, ev->u.wake.id)->wake_gen != ev->u.wake.gen;
}

/* Drops replaced wake-ups from the top of the heap; returns the next live
 * event, or NULL. Stale entries are not events: they move no clock. */
static const struct sim_event *peek_live(struct sim *s)
{
	while (s->heap_len > 0) {
		if (s->heap[0].kind != EV_WAKE || !wake_stale(s, &s->heap[0]))
			return &s->heap[0];
		heap_pop(s);
	}
	return NULL;
}

bool sim_step(struct sim *s)
{
	assert(!s->stepping && "sim_step called from inside a callback");
	if (!peek_live(s))
		return false;
	struct sim_event ev = heap_pop(s);
	assert(ev.at_ms >= s->now_ms);
	s->now_ms = ev.at_ms;
	s->stats.events++;
	s->stepping = true;
	switch (ev.kind) {
	case EV_MSG:
		deliver(s, ev.u.msg);
		mem_free(ev.u.msg);
		break;
	case EV_WAKE: {
		struct sim_endpoint *ep = ep_get(s, ev.u.wake.id);
		if (ep->ops.on_wake) {
			void (*fn)(void *) = ep->ops.on_wake;
			uint32_t prev = log_tag(s, ev.u.wake.id);
			fn(ep->ctx);
			log_tag(s, prev);
		}
		break;
	}
	case EV_ACTION:
		ev.u.action.fn(ev.u.action.arg);
		break;
	}
	s->stepping = false;
	if (s->after_step)
		s->after_step(s->after_step_arg);
	return true;
}

void sim_run_for(struct sim *s, uint64_t ms)
{
	uint64_t deadline = s->now_ms + ms;
	const struct sim_event *ev;
	while ((ev = peek_live(s)) && ev->at_ms <= deadline)
		sim_step(s);
	s->now_ms = deadline;
}

bool sim_run_until(struct sim *s, bool (*pred)(void *arg), void *arg,
		   uint64_t deadline_ms)
{
	if (pred(arg))
		return true;
	const struct sim_event *ev;
	while ((ev = peek_live(s)) && ev->at_ms <= deadline_ms) {
		sim_step(s);
		if (pred(arg))
			return true;
	}
	if (s->now_ms < deadline_ms)
		s->now_ms = deadline_ms;
	return false;
}

void sim_set_after_step(struct sim *s, void (*fn)(void *arg), void *arg)
{
	s->after_step = fn;
	s->after_step_arg = arg;
}

/* ---- lifecycle ---- */

struct sim *sim_new(uint64_t seed)
{
	struct sim *s = mem_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->seed = seed;
	sim_rng_seed(&s->rng, seed);
	s->net = sim_net_reliable();
	return s;
}

void sim_free(struct sim *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->heap_len; i++)
		if (s->heap[i].kind == EV_MSG)
			mem_free(s->heap[i].u.msg);
	if (s->log_attached) {
		log_set_clock(NULL, NULL);
		log_tag(s, NO_ENDPOINT);
	}
	mem_free(s->heap);
	mem_free(s->eps);
	mem_free(s->by_id);
	mem_free(s->cut);
	mem_free(s);
}

uint64_t sim_seed(const struct sim *s)
{
	return s->seed;
}

uint64_t sim_now_ms(const struct sim *s)
{
	return s->now_ms;
}

/* ---- seeds ---- */

static uint64_t env_u64(const char *name, bool *set)
{
	const char *v = getenv(name);
	*set = v && *v;
	if (!*set)
		return 0;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (errno || *end || *v == '-') {
		fprintf(stderr, "sim: %s=%s is not a number\n", name, v);
		exit(2);
	}
	return n;
}

bool sim_seed_replay(void)
{
	const char *v = getenv("SIM_SEED");
	return v && *v;
}

size_t sim_seeds(uint64_t default_count, uint64_t **out)
{
	bool set;
	uint64_t one = env_u64("SIM_SEED", &set);
	uint64_t first = 1, count = default_count;
	if (set) {
		first = one;
		count = 1;
	} else {
		uint64_t k = env_u64("SIM_SEEDS", &set);
		if (set)
			count = k;
	}
	if (count > SIZE_MAX / sizeof(uint64_t)) {
		fprintf(stderr, "sim: too many seeds\n");
		exit(2);
	}
	*out = mem_alloc((count ? count : 1) * sizeof(uint64_t));
	if (!*out)
		sim_oom();
	for (uint64_t i = 0; i < count; i++)
		(*out)[i] = first + i;
	return (size_t)count;
}

void sim_seed_banner(const char *test_binary, const char *suite,
		     const char *test, uint64_t seed)
{
	/* Criterion runs each test in a re-executed worker whose argv[0] is
	 * "boxfort-worker": name the executable itself. */
	char exe[4096];
	if (!test_binary) {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
		const char *slash = strrchr(exe, '/');
		test_binary = slash ? slash + 1 : n > 0 ? exe : "<test binary>";
	}
	fprintf(stderr,
		"seed %" PRIu64 ": replay with SIM_SEED=%" PRIu64
		" ./tests/%s --filter '%s/%s'\n",
		seed, seed, test_binary, suite, test);
}
