/*
 * clerk: see clerk.h. One background thread (the driver) owns the core:
 * it starts the operations callers submit, performs the sends the core
 * asks for over common/rpc, hands it replies, ticks it at its wake time,
 * and hands each result to the caller waiting for it.
 *
 * Locking: `mu` guards what crosses threads: the submitted calls, the
 * finished RPCs (appended by `done` callbacks on the RPC client's
 * thread), the stop flag, and each waiter's `done`. The core is the
 * driver's alone, touched without a lock; no lock is held across an RPC
 * call or a core call. A caller waits on its own condition variable,
 * the driver on `wake`.
 */
#include "clerk/clerk.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clerk/kv_core.h"
#include "common/codec.h"
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
/* The longest single wait of the driver; it re-reads the clock after. */
#define WAIT_MS_MAX 60000

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

/* One RPC in flight; allocated before the call so `done` needs no
 * allocation. */
struct pending {
	struct kv_clerk *c;
	uint64_t attempt;
	int status;
	ProtobufCMessage *reply;
	struct pending *next;
};

struct kv_clerk {
	uint64_t timeout_ms;
	struct rpc_client *rpc;
	struct clerk_kv_core *core; /* the driver's */
	pthread_t thread;

	pthread_mutex_t mu;
	pthread_cond_t wake;		   /* the driver's */
	struct waiter *sub_head, *sub_tail; /* submitted, not started */
	struct pending *arrived;	   /* finished RPCs, newest first */
	bool stopping;

	struct waiter *running; /* started in the core (driver only) */
};

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

static void on_done(void *arg, int status, const char *errmsg,
		    ProtobufCMessage *reply)
{
	(void)errmsg;
	struct pending *p = arg;
	struct kv_clerk *c = p->c;
	p->status = status;
	p->reply = reply;
	pthread_mutex_lock(&c->mu);
	p->next = c->arrived;
	c->arrived = p;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->mu);
}

static void pending_free(struct pending *p)
{
	codec_free(p->reply);
	mem_free(p);
}

/* Under `mu`: hands the outcome to the waiting caller. */
static void complete_locked(struct waiter *w, int status, uint8_t *result,
			    size_t result_len, const char *error)
{
	w->status = status;
	w->result = result;
	w->result_len = result_len;
	snprintf(w->error, sizeof(w->error), "%s", error ? error : "");
	w->done = true;
	pthread_cond_signal(&w->cond);
}

static void complete(struct kv_clerk *c, struct waiter *w, int status,
		     uint8_t *result, size_t result_len, const char *error)
{
	pthread_mutex_lock(&c->mu);
	complete_locked(w, status, result, result_len, error);
	pthread_mutex_unlock(&c->mu);
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
	struct pending *p = mem_calloc(1, sizeof(*p));
	if (!p)
		return; /* the core times the attempt out itself */
	p->c = c;
	p->attempt = s->attempt;
	int rc = rpc_client_call_bytes(c->rpc, s->addr, s->method, s->bytes,
				       s->len,
				       s->to_master
					       ? &skv__sm_reply__descriptor
					       : &skv__kv_reply__descriptor,
				       s->timeout_ms, on_done, p);
	/* Not started: reported on the next turn, with a fresh clock, like
	 * any other failure. */
	if (rc)
		on_done(p, rc, "", NULL);
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

/* Waits under `mu` until there is work or the clock reaches wake_ms. */
static void wait_locked(struct kv_clerk *c, uint64_t wake_ms)
{
	while (!c->sub_head && !c->arrived && !c->stopping) {
		uint64_t now = monotime_now_ms();
		if (now >= wake_ms)
			return;
		uint64_t wait = wake_ms - now;
		if (wait > WAIT_MS_MAX)
			wait = WAIT_MS_MAX;
		/* `wake` runs on CLOCK_MONOTONIC, the clock of monotime. */
		uint64_t at_ns = monotime_now_ns() + wait * 1000000u;
		struct timespec ts = {
			.tv_sec = (time_t)(at_ns / 1000000000u),
			.tv_nsec = (long)(at_ns % 1000000000u),
		};
		pthread_cond_timedwait(&c->wake, &c->mu, &ts);
	}
}

static void *driver(void *arg)
{
	struct kv_clerk *c = arg;
	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		struct waiter *subs = c->sub_head;
		c->sub_head = c->sub_tail = NULL;
		struct pending *list = c->arrived;
		c->arrived = NULL;
		pthread_mutex_unlock(&c->mu);

		uint64_t now = monotime_now_ms();
		start_ops(c, subs, now);
		/* Oldest first. */
		struct pending *rev = NULL;
		while (list) {
			struct pending *p = list;
			list = p->next;
			p->next = rev;
			rev = p;
		}
		while (rev) {
			struct pending *p = rev;
			rev = p->next;
			clerk_kv_core_on_reply(c->core, now, p->attempt,
					       p->status, p->reply);
			pending_free(p);
		}
		clerk_kv_core_tick(c->core, now);
		struct clerk_kv_send s;
		while (clerk_kv_core_next_send(c->core, now, &s))
			send_attempt(c, &s);
		deliver(c);
		uint64_t wake = clerk_kv_core_wake_ms(c->core);

		pthread_mutex_lock(&c->mu);
		wait_locked(c, wake);
	}
	/* Stopping: every caller gets KV_CLOSED. */
	for (struct waiter *w = c->running; w;) {
		struct waiter *next = w->next;
		complete_locked(w, STATUS_CLOSED_, NULL, 0,
				"the clerk was shut down");
		w = next;
	}
	c->running = NULL;
	for (struct waiter *w = c->sub_head; w;) {
		struct waiter *next = w->next;
		complete_locked(w, STATUS_CLOSED_, NULL, 0,
				"the clerk was shut down");
		w = next;
	}
	c->sub_head = c->sub_tail = NULL;
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* ---- life cycle ---- */

static int random_u64(uint64_t *out)
{
	uint8_t b[8];
	size_t got = 0;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return STATUS_INTERNAL;
		}
		got += (size_t)n;
	}
	uint64_t x = 0;
	for (size_t i = 0; i < sizeof(b); i++)
		x = x << 8 | b[i];
	*out = x;
	return STATUS_OK;
}

/* "a:1,b:2" into n addresses (the caller's: free_list). */
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

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mem_free(v[i]);
	mem_free(v);
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
	if (random_u64(&seed)) {
		free_list(addrs, n);
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
	free_list(addrs, n);
	addrs = NULL;
	c->rpc = rpc_client_new(NULL);
	if (!c->rpc) {
		say(err, cap, "cannot start the RPC client");
		st = KV_UNAVAILABLE;
		goto err_after_core;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&c->mu, NULL);
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
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->mu);
	rpc_client_free(c->rpc);
err_after_core:
	clerk_kv_core_free(c->core);
	mem_free(c);
	return st;
err_after_clerk:
	mem_free(c);
err_nomem:
	free_list(addrs, n);
	say(err, cap, "out of memory");
	return KV_NO_MEMORY;
}

void kv_clerk_shutdown(struct kv_clerk *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->mu);
}

void kv_clerk_close(struct kv_clerk *c)
{
	if (!c)
		return;
	kv_clerk_shutdown(c);
	pthread_join(c->thread, NULL);
	/* Runs every outstanding `done` before it returns. */
	rpc_client_free(c->rpc);
	while (c->arrived) {
		struct pending *p = c->arrived;
		c->arrived = p->next;
		pending_free(p);
	}
	clerk_kv_core_free(c->core);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->mu);
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
	pthread_mutex_lock(&c->mu);
	if (c->stopping) {
		pthread_mutex_unlock(&c->mu);
		pthread_cond_destroy(&w.cond);
		say(err, cap, "the clerk was shut down");
		return KV_CLOSED;
	}
	if (c->sub_tail)
		c->sub_tail->next = &w;
	else
		c->sub_head = &w;
	c->sub_tail = &w;
	pthread_cond_signal(&c->wake);
	while (!w.done)
		pthread_cond_wait(&w.cond, &c->mu);
	pthread_mutex_unlock(&c->mu);
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
