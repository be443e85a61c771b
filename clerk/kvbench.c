/*
 * kvbench: puts load on a shardkv cluster through the clerk library and
 * reports throughput and latency (kvbench_args.h has the pure parts:
 * flags, keys, values, histogram, report).
 *
 * A run: one get to see that the cluster answers at all (exit 3 if not),
 * the preload (every key put once, when on), then --clients threads each
 * running one operation at a time, back to back, for --warmup and then
 * --duration seconds. An operation counts when it ends inside the
 * measurement window [t0, t1); at t1 the main thread shuts the clerk
 * down, so operations still running (they would end past t1 and not
 * count) return at once instead of holding the report up to their
 * timeout.
 *
 * Every client thread shares one kv_clerk. The clerk is thread-safe and
 * runs concurrent calls in parallel (a pool of sessions, one write in
 * flight per session), as an application server would use it: one
 * configuration cache, one channel per server, one driver thread. A
 * clerk per thread would add a driver thread, an RPC thread and a
 * connection to every server per client: at 64 clients that is 128 more
 * threads competing with the servers for the same cores when the cluster
 * runs on this machine, so the figures would measure the tool's
 * scheduling more than the store.
 *
 * Owns: the clerk, the value pool, the threads and their tallies.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clerk/clerk.h"
#include "clerk/cli.h"
#include "clerk/kvbench_args.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/status.h"

/* The preload runs at least this many puts at once (not measured). */
#define PRELOAD_THREADS_MIN 16

struct bench {
	const struct kvbench_args *a;
	struct kv_clerk *kv;
	const char *values; /* value_size + KVBENCH_VALUE_WINDOWS bytes */
	uint64_t t0_ns, t1_ns;
	uint64_t n_threads; /* of the phase running */
};

struct worker {
	struct bench *b;
	uint64_t idx;
	pthread_t thread;
	struct kvbench_rng rng;
	char *key; /* key_size bytes */
	struct kvbench_tally tally[KVBENCH_KINDS];
	uint64_t preload_done, preload_errors;
};

static void json_error(const char *status, const char *error)
{
	fputs("{\"ok\":false,\"status\":", stdout);
	cli_json_string(stdout, status, strlen(status));
	fputs(",\"error\":", stdout);
	cli_json_string(stdout, error, strlen(error));
	fputs("}\n", stdout);
}

static int fail(const struct kvbench_args *a, int code, const char *status,
		const char *msg)
{
	if (a->json)
		json_error(status, msg);
	fprintf(stderr, "kvbench: %s\n", msg);
	return code;
}

/* A seed for a run without --seed: below 2^31, so it is short to type
 * and exact in any JSON reader. */
static uint64_t fresh_seed(void)
{
	struct kvbench_rng r;
	kvbench_rng_init(&r, monotime_now_ns(), (uint64_t)getpid());
	return 1 + kvbench_rng_next(&r) % 0x7ffffffe;
}

static void sleep_until(uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = monotime_now_ns();
		if (now >= deadline_ns)
			return;
		uint64_t d = deadline_ns - now;
		struct timespec ts = {.tv_sec = (time_t)(d / 1000000000u),
				      .tv_nsec = (long)(d % 1000000000u)};
		nanosleep(&ts, NULL);
	}
}

static const char *value_for(struct worker *w)
{
	return w->b->values +
	       kvbench_rng_below(&w->rng, KVBENCH_VALUE_WINDOWS);
}

/* ---- the two phases ---- */

static void *preload_main(void *arg)
{
	struct worker *w = arg;
	const struct kvbench_args *a = w->b->a;
	for (uint64_t i = w->idx; i < a->keys; i += w->b->n_threads) {
		kvbench_key(w->key, a->key_size, a->keys, i);
		enum kv_status st =
			kv_put(w->b->kv, w->key, a->key_size, value_for(w),
			       a->value_size, a->timeout_ms);
		if (st == KV_OK)
			w->preload_done++;
		else
			w->preload_errors++;
		if (st == KV_CLOSED)
			break;
	}
	return NULL;
}

static void *client_main(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	const struct kvbench_args *a = b->a;
	enum kv_op write_op = a->write_op == KVBENCH_WRITE_APPEND
				      ? KV_OP_APPEND
				      : KV_OP_PUT;
	char err[256];
	for (;;) {
		uint64_t start = monotime_now_ns();
		if (start >= b->t1_ns)
			break;
		uint64_t k = kvbench_rng_below(&w->rng, a->keys);
		bool read = kvbench_rng_below(&w->rng, 100) < a->reads_pct;
		kvbench_key(w->key, a->key_size, a->keys, k);
		const char *value = read ? NULL : value_for(w);
		void *got = NULL;
		size_t got_len = 0;
		enum kv_status st =
			kv_do(b->kv, read ? KV_OP_GET : write_op, w->key,
			      a->key_size, value, read ? 0 : a->value_size,
			      a->timeout_ms, &got, &got_len, err, sizeof(err));
		uint64_t end = monotime_now_ns();
		kv_free(got);
		if (end >= b->t0_ns && end < b->t1_ns)
			kvbench_tally_record(
				&w->tally[read ? KVBENCH_READ : KVBENCH_WRITE],
				st, end - start, err);
	}
	return NULL;
}

static void workers_free(struct worker *ws, uint64_t n)
{
	if (!ws)
		return;
	for (uint64_t i = 0; i < n; i++) {
		for (size_t k = 0; k < KVBENCH_KINDS; k++)
			kvbench_tally_close(&ws[i].tally[k]);
		mem_free(ws[i].key);
	}
	mem_free(ws);
}

/* n workers, each with its key buffer, tallies and generator (stream
 * `stream_base + i`); NULL when out of memory. */
static struct worker *workers_new(struct bench *b, uint64_t n,
				  uint64_t stream_base)
{
	struct worker *ws = mem_calloc((size_t)n, sizeof(*ws));
	if (!ws)
		return NULL;
	for (uint64_t i = 0; i < n; i++) {
		struct worker *w = &ws[i];
		w->b = b;
		w->idx = i;
		kvbench_rng_init(&w->rng, b->a->seed, stream_base + i);
		w->key = mem_alloc((size_t)b->a->key_size);
		bool ok = w->key != NULL;
		for (size_t k = 0; k < KVBENCH_KINDS; k++)
			ok &= kvbench_tally_init(&w->tally[k]) == STATUS_OK;
		if (!ok) {
			workers_free(ws, i + 1);
			return NULL;
		}
	}
	return ws;
}

/* Starts fn on every worker; on a failure, returns how many started
 * (the caller still joins them) and says why in err. */
static uint64_t start_threads(struct worker *ws, uint64_t n,
			      void *(*fn)(void *), char *err, size_t cap)
{
	for (uint64_t i = 0; i < n; i++) {
		int rc = pthread_create(&ws[i].thread, NULL, fn, &ws[i]);
		if (rc) {
			snprintf(err, cap, "cannot start thread %llu of %llu: "
					   "%s",
				 (unsigned long long)i + 1,
				 (unsigned long long)n, strerror(rc));
			return i;
		}
	}
	return n;
}

static void join_threads(struct worker *ws, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		pthread_join(ws[i].thread, NULL);
}

/* ---- main ---- */

/* The cluster answers a get (found or not) within the timeout. */
static int probe(struct bench *b, char *err, size_t cap)
{
	const struct kvbench_args *a = b->a;
	char *key = mem_alloc((size_t)a->key_size);
	if (!key) {
		snprintf(err, cap, "out of memory");
		return KVBENCH_EXIT_UNREACHABLE;
	}
	kvbench_key(key, a->key_size, a->keys, 0);
	void *got = NULL;
	size_t got_len = 0;
	char why[256];
	enum kv_status st = kv_do(b->kv, KV_OP_GET, key, a->key_size, NULL, 0,
				  a->timeout_ms, &got, &got_len, why,
				  sizeof(why));
	kv_free(got);
	mem_free(key);
	if (st == KV_OK || st == KV_NOT_FOUND)
		return KVBENCH_EXIT_OK;
	snprintf(err, cap,
		 "cannot reach the cluster: a first get got %s within %llu "
		 "ms (%s) [shard masters %s from %s]",
		 kv_status_name(st), (unsigned long long)a->timeout_ms, why,
		 a->masters,
		 a->masters_from_env ? "$" KVBENCH_MASTERS_ENV : "--masters");
	return KVBENCH_EXIT_UNREACHABLE;
}

static int preload(struct bench *b, struct kvbench_report *r, char *err,
		   size_t cap)
{
	const struct kvbench_args *a = b->a;
	uint64_t n = a->clients < PRELOAD_THREADS_MIN ? PRELOAD_THREADS_MIN
						      : a->clients;
	if (n > a->keys)
		n = a->keys;
	b->n_threads = n;
	/* Streams past the clients', so the run's choices do not depend
	 * on whether there was a preload. */
	struct worker *ws = workers_new(b, n, 1u << 20);
	if (!ws) {
		snprintf(err, cap, "out of memory");
		return KVBENCH_EXIT_UNREACHABLE;
	}
	uint64_t start = monotime_now_ns();
	uint64_t started = start_threads(ws, n, preload_main, err, cap);
	join_threads(ws, started);
	r->preload_s = (double)(monotime_now_ns() - start) / 1e9;
	for (uint64_t i = 0; i < started; i++) {
		r->preload_done += ws[i].preload_done;
		r->preload_errors += ws[i].preload_errors;
	}
	workers_free(ws, n);
	return started == n ? KVBENCH_EXIT_OK : KVBENCH_EXIT_UNREACHABLE;
}

static int measure(struct bench *b, struct kvbench_report *r, char *err,
		   size_t cap)
{
	const struct kvbench_args *a = b->a;
	uint64_t n = a->clients;
	b->n_threads = n;
	struct worker *ws = workers_new(b, n, 0);
	if (!ws) {
		snprintf(err, cap, "out of memory");
		return KVBENCH_EXIT_UNREACHABLE;
	}
	b->t0_ns = monotime_now_ns() + a->warmup_s * 1000000000u;
	b->t1_ns = b->t0_ns + a->duration_s * 1000000000u;
	uint64_t started = start_threads(ws, n, client_main, err, cap);
	if (started == n)
		sleep_until(b->t1_ns);
	/* Operations still running would end past t1 and not count. */
	kv_clerk_shutdown(b->kv);
	join_threads(ws, started);
	r->measured_s = (double)(b->t1_ns - b->t0_ns) / 1e9;
	for (uint64_t i = 0; i < started; i++)
		for (size_t k = 0; k < KVBENCH_KINDS; k++)
			kvbench_tally_merge(&r->kind[k], &ws[i].tally[k]);
	workers_free(ws, n);
	return started == n ? KVBENCH_EXIT_OK : KVBENCH_EXIT_UNREACHABLE;
}

static int run(const struct kvbench_args *a)
{
	char err[1024];
	struct kvbench_report r = {.args = a};
	struct bench b = {.a = a};
	int code = KVBENCH_EXIT_UNREACHABLE;
	for (size_t k = 0; k < KVBENCH_KINDS; k++) {
		if (kvbench_tally_init(&r.kind[k]) != STATUS_OK) {
			code = fail(a, code, "NO_MEMORY", "out of memory");
			goto out_tallies;
		}
	}
	size_t pool_len = (size_t)a->value_size + KVBENCH_VALUE_WINDOWS;
	char *values = mem_alloc(pool_len);
	if (!values) {
		code = fail(a, code, "NO_MEMORY", "out of memory");
		goto out_tallies;
	}
	kvbench_fill_values(values, pool_len, a->seed);
	b.values = values;

	/* The library's own log lines would repeat what the report says. */
	log_set_level(LOG_ERROR);
	struct kv_clerk_opts o = {.timeout_ms = a->timeout_ms};
	enum kv_status st = kv_clerk_open(a->masters, &o, &b.kv, err,
					  sizeof(err));
	if (st != KV_OK) {
		char msg[1100];
		snprintf(msg, sizeof(msg), "cannot start the client: %s", err);
		code = st == KV_INVALID_ARGUMENT ? KVBENCH_EXIT_USAGE
						 : KVBENCH_EXIT_UNREACHABLE;
		fail(a, code, kv_status_name(st), msg);
		goto out_values;
	}
	code = probe(&b, err, sizeof(err));
	if (code) {
		fail(a, code, "UNREACHABLE", err);
		goto out_clerk;
	}
	if (a->preload) {
		code = preload(&b, &r, err, sizeof(err));
		if (code) {
			fail(a, code, "INTERNAL", err);
			goto out_clerk;
		}
	}
	code = measure(&b, &r, err, sizeof(err));
	if (code) {
		fail(a, code, "INTERNAL", err);
		goto out_clerk;
	}
	if (a->json)
		kvbench_report_json(stdout, &r);
	else
		kvbench_report_text(stdout, &r);
	uint64_t done = 0;
	for (size_t k = 0; k < KVBENCH_KINDS; k++)
		done += kvbench_tally_done(&r.kind[k]);
	if (done == 0) {
		fprintf(stderr,
			"kvbench: no operation completed in %llu s: the "
			"cluster stopped answering\n",
			(unsigned long long)a->duration_s);
		code = KVBENCH_EXIT_UNREACHABLE;
	}
out_clerk:
	kv_clerk_close(b.kv);
out_values:
	mem_free(values);
out_tallies:
	for (size_t k = 0; k < KVBENCH_KINDS; k++)
		kvbench_tally_close(&r.kind[k]);
	return code;
}

int main(int argc, char **argv)
{
	struct kvbench_args a;
	char err[512];
	int rc = kvbench_parse(argc, argv, getenv(KVBENCH_MASTERS_ENV),
			       fresh_seed(), &a, err, sizeof(err));
	int code;
	if (rc) {
		if (a.json)
			json_error("USAGE", err);
		fprintf(stderr, "kvbench: %s\n(kvbench --help for usage)\n",
			err);
		code = KVBENCH_EXIT_USAGE;
	} else if (a.help) {
		kvbench_usage(stdout);
		code = KVBENCH_EXIT_OK;
	} else {
		code = run(&a);
	}
	if (fflush(stdout) != 0 && code == KVBENCH_EXIT_OK) {
		fprintf(stderr, "kvbench: cannot write to stdout: %s\n",
			strerror(errno));
		code = KVBENCH_EXIT_UNREACHABLE;
	}
	kvbench_args_release(&a);
	return code;
}
