/*
 * clerk: see clerk.h. The core is driven in rounds: a round starts the
 * operations callers submitted, hands the core the finished RPCs, ticks
 * it, performs the sends it asks for over common/rpc and hands each
 * result to the caller waiting for it. One thread at a time runs a round
 * (`busy`); the core and `running` are that thread's, touched without a
 * lock.
 *
 * Who runs a round: a caller that submits an operation while no round
 * runs runs one itself (its request leaves from its own thread), and so
 * does the RPC client's thread when a reply arrives (the waiting caller
 * is woken straight from there). Each runs one round only: work that
 * arrived meanwhile, and the core's timers, are the background thread's
 * (the driver), which a runner signals when it leaves work behind or the
 * core's wake time comes before the driver's. So an operation without
 * contention costs one thread hand-over (reply -> caller) instead of
 * three (caller -> driver, reply -> driver, driver -> caller). With more
 * than INLINE_OPS_MAX operations under way everything goes through the
 * driver as before: one round then takes many replies and submissions
 * at once, and the RPC thread only queues replies (rounds per reply on
 * it cost 64 callers ~10 % of their throughput).
 *
 * Locking: the inbox's `mu` (clerk/host.h) guards what crosses threads:
 * the submitted calls, the finished RPCs (appended by `done` callbacks on
 * the RPC client's thread), `busy`, the wake times, the stop flag, and
 * each waiter's `done`. No lock is held across an RPC call or a core
 * call; `busy` is a claim, never waited for except by the driver at
 * shutdown. A caller waits on its own condition variable, the driver on
 * the inbox's.
 */
#include "clerk/clerk.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "clerk/host.h"
#include "clerk/kv_core.h"
#include "common/addrs.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/rpc/rpc.h"
#include "common/shard.h"
#include "common/status.h"

_Static_assert(KV_KEY_BYTES_MAX == SHARD_KEY_BYTES_MAX, "key limit");
_Static_assert(KV_VALUE_BYTES_MAX == SHARD_VALUE_BYTES_MAX, "value limit");
_Static_assert((int)KV_OP_GET == (int)CLERK_KV_GET &&
		       (int)KV_OP_PUT == (int)CLERK_KV_PUT &&
		       (int)KV_OP_APPEND == (int)CLERK_KV_APPEND &&
		       (int)KV_OP_DELETE == (int)CLERK_KV_DELETE,
	       "kv_op and clerk_kv_op agree");

#define TIMEOUT_MS_DEFAULT 10000

/* One caller's operation, on the caller's stack. The driver reads the
 * request fields (borrowed: the caller waits) and, under `mu`, fills in
 * the outcome and sets `done`; after that it never touches it again. */
struct waiter {
	struct waiter *next;
	enum clerk_kv_op op;
	const void *key;
	size_t klen;
	const void *value;
	size_t vlen;
	uint64_t deadline_ms;
	uint64_t op_id; /* the core's, once started (driver only) */

	pthread_cond_t cond;
	bool done;
	int status; /* enum status, or -1 for KV_CLOSED */
	uint8_t *result;
	size_t result_len;
	char error[256];
};

#define STATUS_CLOSED_ (-1)

struct kv_clerk {
	uint64_t timeout_ms;
	struct rpc_client *rpc;
	struct clerk_kv_core *core; /* the driver's */
	pthread_t thread;

	/* its `mu` guards the fields below; its `cond` wakes the driver */
	struct clerk_host_inbox inbox;
	struct waiter *sub_head, *sub_tail; /* submitted, not started */
	bool stopping;
	bool busy;	    /* a thread runs a round */
	size_t n_ops;	    /* operations submitted and not completed */
	uint64_t wake_ms;   /* the core's, as of the last round */
	uint64_t driver_ms; /* when the driver wakes if not signalled; 0
			     * while it is not waiting for that */

	struct waiter *running; /* started in the core (the round's) */
};

/* The longest the driver waits without looking at the core's wake time
 * again; so that a round that only pushes the wake time further need not
 * signal it. */
#define DRIVER_NAP_MS 100

/* Most operations under way for which callers and the RPC thread run
 * rounds themselves. */
#define INLINE_OPS_MAX 2

/* ---- statuses ---- */

const char *kv_strerror(enum kv_status s)
{
	switch (s) {
	case KV_OK:
		return "ok";
	case KV_NOT_FOUND:
		return "not found";
	case KV_TIMEOUT:
		return "timed out (a write may or may not have applied)";
	case KV_TOO_LARGE:
		return "key or value too large";
	case KV_INVALID_ARGUMENT:
		return "invalid argument";
	case KV_NO_MEMORY:
		return "out of memory";
	case KV_UNAVAILABLE:
		return "the clerk cannot start";
	case KV_CLOSED:
		return "the clerk is shut down";
	case KV_INTERNAL:
		return "unexpected error from the cluster";
	}
	return "unknown status";
}

const char *kv_status_name(enum kv_status s)
{
	switch (s) {
	case KV_OK:
		return "OK";
	case KV_NOT_FOUND:
		return "NOT_FOUND";
	case KV_TIMEOUT:
		return "TIMEOUT";
	case KV_TOO_LARGE:
		return "TOO_LARGE";
	case KV_INVALID_ARGUMENT:
		return "INVALID_ARGUMENT";
	case KV_NO_MEMORY:
		return "NO_MEMORY";
	case KV_UNAVAILABLE:
		return "UNAVAILABLE";
	case KV_CLOSED:
		return "CLOSED";
	case KV_INTERNAL:
		return "INTERNAL";
	}
	return "UNKNOWN";
}

static enum kv_status from_status(int st)
{
	switch (st) {
	case STATUS_OK:
		return KV_OK;
	case STATUS_NOT_FOUND:
		return KV_NOT_FOUND;
	case STATUS_TIMEOUT:
		return KV_TIMEOUT;
	case STATUS_TOO_LARGE:
		return KV_TOO_LARGE;
	case STATUS_INVALID_ARGUMENT:
		return KV_INVALID_ARGUMENT;
	case STATUS_NO_MEMORY:
		return KV_NO_MEMORY;
	case STATUS_CLOSED_:
		return KV_CLOSED;
	default:
		return KV_INTERNAL;
	}
}

static void say(char *err, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(char *err, size_t cap, const char *fmt, ...)
{
	if (!err || cap == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

/* ---- the driver ---- */

/* Under `mu`: hands the outcome to the waiting caller. */
static void complete_locked(struct kv_clerk *c, struct waiter *w,
			    int status, uint8_t *result, size_t result_len,
			    const char *error)
{
	w->status = status;
	w->result = result;
	w->result_len = result_len;
	snprintf(w->error, sizeof(w->error), "%s", error ? error : "");
	w->done = true;
	c->n_ops--;
	pthread_cond_signal(&w->cond);
}

static void complete(struct kv_clerk *c, struct waiter *w, int status,
		     uint8_t *result, size_t result_len, const char *error)
{
	pthread_mutex_lock(&c->inbox.mu);
	complete_locked(c, w, status, result, result_len, error);
	pthread_mutex_unlock(&c->inbox.mu);
}

static void start_ops(struct kv_clerk *c, struct waiter *list, uint64_t now)
{
	while (list) {
		struct waiter *w = list;
		list = w->next;
		int rc = clerk_kv_core_start(c->core, now, w->op, w->key,
					     w->klen, w->value, w->vlen,
					     w->deadline_ms, &w->op_id);
		if (rc) {
			char e[160];
			if (rc == STATUS_INVALID_ARGUMENT && w->klen == 0)
				snprintf(e, sizeof(e), "the key is empty");
			else if (rc == STATUS_TOO_LARGE &&
				 w->klen > SHARD_KEY_BYTES_MAX)
				snprintf(e, sizeof(e),
					 "the key is %zu bytes; at most %d",
					 w->klen, SHARD_KEY_BYTES_MAX);
			else if (rc == STATUS_TOO_LARGE)
				snprintf(e, sizeof(e),
					 "the value is %zu bytes; at most %u",
					 w->vlen, SHARD_VALUE_BYTES_MAX);
			else
				snprintf(e, sizeof(e), "%s", status_str(rc));
			complete(c, w, rc, NULL, 0, e);
			continue;
		}
		w->next = c->running;
		c->running = w;
	}
}

static void send_attempt(struct kv_clerk *c, const struct clerk_kv_send *s)
{
	struct clerk_host_call *p =
		clerk_host_call_new(&c->inbox, s->attempt, 0);
	if (!p)
		return; /* the core times the attempt out itself */
	int rc = clerk_host_call_start(p, c->rpc, s->addr, s->method, s->bytes,
				       s->len,
				       s->to_master
					       ? &skv__sm_reply__descriptor
					       : &skv__kv_reply__descriptor,
				       s->timeout_ms);
	/* Not started: reported on the next turn, with a fresh clock, like
	 * any other failure. */
	if (rc)
		clerk_host_call_done(p, rc, "", NULL);
}

/* Hands every finished operation to its caller. */
static void deliver(struct kv_clerk *c)
{
	struct clerk_kv_result r;
	while (clerk_kv_core_take(c->core, &r)) {
		struct waiter **pp = &c->running;
		while (*pp && (*pp)->op_id != r.op_id)
			pp = &(*pp)->next;
		struct waiter *w = *pp;
		if (!w) {
			mem_free(r.value);
			continue;
		}
		*pp = w->next;
		complete(c, w, r.status, r.value, r.value_len, r.error);
	}
}

/* Under `mu`, with `busy` just claimed by the caller: runs one round
 * (without `mu`), then releases `busy`; returns with `mu` held. */
static void round_locked(struct kv_clerk *c)
{
	struct waiter *subs = c->sub_head;
	c->sub_head = c->sub_tail = NULL;
	/* Oldest first. */
	struct clerk_host_call *list = clerk_host_inbox_take_locked(&c->inbox);
	pthread_mutex_unlock(&c->inbox.mu);

	uint64_t now = monotime_now_ms();
	start_ops(c, subs, now);
	while (list) {
		struct clerk_host_call *p = list;
		list = p->next;
		clerk_kv_core_on_reply(c->core, now, p->attempt, p->status,
				       p->reply);
		clerk_host_call_free(p);
	}
	clerk_kv_core_tick(c->core, now);
	struct clerk_kv_send s;
	while (clerk_kv_core_next_send(c->core, now, &s))
		send_attempt(c, &s);
	deliver(c);
	uint64_t wake = clerk_kv_core_wake_ms(c->core);

	pthread_mutex_lock(&c->inbox.mu);
	c->wake_ms = wake;
	c->busy = false;
}

/* Under `mu`, by a thread that is not the driver, with work queued: runs
 * one round if none runs (else the running one, or the driver, sees the
 * work) and few operations are under way (else the driver gets it), then
 * wakes the driver if it must take over. */
static void run_once_locked(struct kv_clerk *c)
{
	if (c->busy || c->stopping)
		return;
	if (c->n_ops > INLINE_OPS_MAX) {
		if (c->driver_ms)
			pthread_cond_signal(&c->inbox.cond);
		return;
	}
	c->busy = true;
	round_locked(c);
	if (c->driver_ms && (c->sub_head || c->inbox.arrived ||
			     c->stopping || c->wake_ms < c->driver_ms))
		pthread_cond_signal(&c->inbox.cond);
}

/* clerk_host_inbox.arrival: an RPC finished (its call is in the inbox);
 * on the RPC client's thread, or inside a round that failed to start
 * one. Never blocks: `mu` is only ever held briefly. */
static void on_arrival(void *arg)
{
	struct kv_clerk *c = arg;
	pthread_mutex_lock(&c->inbox.mu);
	run_once_locked(c);
	pthread_mutex_unlock(&c->inbox.mu);
}

static void *driver(void *arg)
{
	struct kv_clerk *c = arg;
	pthread_mutex_lock(&c->inbox.mu);
	while (!c->stopping) {
		if (!c->busy && (c->sub_head || c->inbox.arrived ||
				 monotime_now_ms() >= c->wake_ms)) {
			c->busy = true;
			round_locked(c);
			continue;
		}
		/* Idle, or another thread runs a round (it signals when it
		 * leaves work behind). */
		uint64_t nap = monotime_now_ms() + DRIVER_NAP_MS;
		c->driver_ms = c->busy ? UINT64_MAX
			       : c->wake_ms < nap ? c->wake_ms : nap;
		clerk_host_inbox_wait_locked(&c->inbox, c->driver_ms);
		c->driver_ms = 0;
	}
	/* A round still running owns `running`: let it finish. */
	while (c->busy) {
		c->driver_ms = UINT64_MAX;
		clerk_host_inbox_wait_locked(&c->inbox, UINT64_MAX);
		c->driver_ms = 0;
	}
	/* Stopping: every caller gets KV_CLOSED. */
	for (struct waiter *w = c->running; w;) {
		struct waiter *next = w->next;
		complete_locked(c, w, STATUS_CLOSED_, NULL, 0,
				"the clerk was shut down");
		w = next;
	}
	c->running = NULL;
	for (struct waiter *w = c->sub_head; w;) {
		struct waiter *next = w->next;
		complete_locked(c, w, STATUS_CLOSED_, NULL, 0,
				"the clerk was shut down");
		w = next;
	}
	c->sub_head = c->sub_tail = NULL;
	pthread_mutex_unlock(&c->inbox.mu);
	return NULL;
}

/* ---- life cycle ---- */

/* "a:1,b:2" into n addresses (the caller's: addrs_free). */
static enum kv_status split_masters(const char *s, char ***out, size_t *n_out,
				    char *err, size_t cap)
{
	*out = NULL;
	*n_out = 0;
	if (!s || !*s) {
		say(err, cap, "no shard masters given (expected "
			      "HOST:PORT,HOST:PORT,...)");
		return KV_INVALID_ARGUMENT;
	}
	size_t n = 1;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	char **v = mem_calloc(n, sizeof(*v));
	if (!v) {
		say(err, cap, "out of memory");
		return KV_NO_MEMORY;
	}
	const char *p = s;
	for (size_t i = 0; i < n; i++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		v[i] = mem_strndup(p, len);
		if (!v[i]) {
			say(err, cap, "out of memory");
			for (size_t j = 0; j < i; j++)
				mem_free(v[j]);
			mem_free(v);
			return KV_NO_MEMORY;
		}
		const char *colon = strrchr(v[i], ':');
		if (len == 0 || !colon || colon == v[i] || !colon[1] ||
		    strpbrk(v[i], " \t\n")) {
			say(err, cap,
			    "bad shard master address '%s' in '%s' "
			    "(expected HOST:PORT,HOST:PORT,...)",
			    v[i], s);
			for (size_t j = 0; j <= i; j++)
				mem_free(v[j]);
			mem_free(v);
			return KV_INVALID_ARGUMENT;
		}
		p = comma ? comma + 1 : p + len;
	}
	*out = v;
	*n_out = n;
	return KV_OK;
}

enum kv_status kv_clerk_open(const char *masters,
			     const struct kv_clerk_opts *opts,
			     struct kv_clerk **out, char *err, size_t cap)
{
	say(err, cap, "%s", "");
	if (!out) {
		say(err, cap, "no place for the clerk");
		return KV_INVALID_ARGUMENT;
	}
	*out = NULL;
	struct kv_clerk_opts o = {0};
	if (opts)
		o = *opts;
	char **addrs;
	size_t n;
	enum kv_status st = split_masters(masters, &addrs, &n, err, cap);
	if (st)
		return st;
	uint64_t seed;
	if (clerk_host_random_u64(&seed)) {
		addrs_free(addrs, n);
		say(err, cap, "cannot read random bytes: %s", strerror(errno));
		return KV_UNAVAILABLE;
	}

	struct kv_clerk *c = mem_calloc(1, sizeof(*c));
	if (!c)
		goto err_nomem;
	c->timeout_ms = o.timeout_ms ? o.timeout_ms : TIMEOUT_MS_DEFAULT;
	struct clerk_kv_core_opts co = {
		.n_masters = n,
		.masters = (const char *const *)addrs,
		.seed = seed,
		.attempt_timeout_ms = o.attempt_timeout_ms,
		.backoff_ms_min = o.backoff_ms_min,
		.backoff_ms_max = o.backoff_ms_max,
	};
	if (clerk_kv_core_new(&co, &c->core))
		goto err_after_clerk;
	addrs_free(addrs, n);
	addrs = NULL;
	c->rpc = rpc_client_new(NULL);
	if (!c->rpc) {
		say(err, cap, "cannot start the RPC client");
		st = KV_UNAVAILABLE;
		goto err_after_core;
	}
	clerk_host_inbox_init(&c->inbox);
	c->inbox.arrival = on_arrival;
	c->inbox.arrival_arg = c;
	int e = pthread_create(&c->thread, NULL, driver, c);
	if (e) {
		say(err, cap, "cannot start the clerk's thread: %s",
		    strerror(e));
		st = KV_UNAVAILABLE;
		goto err_after_rpc;
	}
	*out = c;
	return KV_OK;

err_after_rpc:
	rpc_client_free(c->rpc);
	clerk_host_inbox_destroy(&c->inbox);
err_after_core:
	clerk_kv_core_free(c->core);
	mem_free(c);
	return st;
err_after_clerk:
	mem_free(c);
err_nomem:
	addrs_free(addrs, n);
	say(err, cap, "out of memory");
	return KV_NO_MEMORY;
}

void kv_clerk_shutdown(struct kv_clerk *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->inbox.mu);
	c->stopping = true;
	pthread_cond_signal(&c->inbox.cond);
	pthread_mutex_unlock(&c->inbox.mu);
}

void kv_clerk_close(struct kv_clerk *c)
{
	if (!c)
		return;
	kv_clerk_shutdown(c);
	pthread_join(c->thread, NULL);
	/* Runs every outstanding `done` before it returns. */
	rpc_client_free(c->rpc);
	clerk_host_inbox_destroy(&c->inbox);
	clerk_kv_core_free(c->core);
	mem_free(c);
}

/* ---- operations ---- */

void kv_free(void *value)
{
	mem_free(value);
}

enum kv_status kv_do(struct kv_clerk *c, enum kv_op op, const void *key,
		     size_t klen, const void *value, size_t vlen,
		     uint64_t timeout_ms, void **out, size_t *out_len,
		     char *err, size_t cap)
{
	say(err, cap, "%s", "");
	if (out)
		*out = NULL;
	if (out_len)
		*out_len = 0;
	if (!c || (!key && klen) ||
	    (op != KV_OP_GET && op != KV_OP_PUT && op != KV_OP_APPEND &&
	     op != KV_OP_DELETE)) {
		say(err, cap, "bad call (NULL clerk or key, unknown op)");
		return KV_INVALID_ARGUMENT;
	}
	if (op != KV_OP_PUT && op != KV_OP_APPEND)
		value = NULL, vlen = 0;
	if (!value && vlen) {
		say(err, cap, "NULL value with a length");
		return KV_INVALID_ARGUMENT;
	}
	uint64_t now = monotime_now_ms();
	uint64_t t = timeout_ms ? timeout_ms : c->timeout_ms;
	struct waiter w = {
		.op = (enum clerk_kv_op)op,
		.key = key ? key : "",
		.klen = klen,
		.value = value ? value : "",
		.vlen = vlen,
		.deadline_ms = t > UINT64_MAX - now ? UINT64_MAX : now + t,
	};
	pthread_cond_init(&w.cond, NULL);
	pthread_mutex_lock(&c->inbox.mu);
	if (c->stopping) {
		pthread_mutex_unlock(&c->inbox.mu);
		pthread_cond_destroy(&w.cond);
		say(err, cap, "the clerk was shut down");
		return KV_CLOSED;
	}
	if (c->sub_tail)
		c->sub_tail->next = &w;
	else
		c->sub_head = &w;
	c->sub_tail = &w;
	c->n_ops++;
	/* Starts it from this thread if no round runs. */
	run_once_locked(c);
	while (!w.done)
		pthread_cond_wait(&w.cond, &c->inbox.mu);
	pthread_mutex_unlock(&c->inbox.mu);
	pthread_cond_destroy(&w.cond);

	enum kv_status st = from_status(w.status);
	if (st == KV_INTERNAL)
		say(err, cap, "%s: %s", status_name(w.status), w.error);
	else if (st != KV_OK)
		say(err, cap, "%s", w.error[0] ? w.error : kv_strerror(st));
	if (st == KV_OK && w.result) {
		if (out) {
			*out = w.result;
			if (out_len)
				*out_len = w.result_len;
			w.result = NULL;
		}
	}
	mem_free(w.result);
	return st;
}

enum kv_status kv_get(struct kv_clerk *c, const void *key, size_t klen,
		      void **value, size_t *vlen, uint64_t timeout_ms)
{
	return kv_do(c, KV_OP_GET, key, klen, NULL, 0, timeout_ms, value, vlen,
		     NULL, 0);
}

enum kv_status kv_put(struct kv_clerk *c, const void *key, size_t klen,
		      const void *value, size_t vlen, uint64_t timeout_ms)
{
	return kv_do(c, KV_OP_PUT, key, klen, value, vlen, timeout_ms, NULL,
		     NULL, NULL, 0);
}

enum kv_status kv_append(struct kv_clerk *c, const void *key, size_t klen,
			 const void *value, size_t vlen, uint64_t timeout_ms)
{
	return kv_do(c, KV_OP_APPEND, key, klen, value, vlen, timeout_ms, NULL,
		     NULL, NULL, 0);
}

enum kv_status kv_delete(struct kv_clerk *c, const void *key, size_t klen,
			 uint64_t timeout_ms)
{
	return kv_do(c, KV_OP_DELETE, key, klen, NULL, 0, timeout_ms, NULL,
		     NULL, NULL, 0);
}
