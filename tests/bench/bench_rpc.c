/*
 * bench_rpc: unary round trips through common/rpc over 127.0.0.1, server
 * and client in this process, one channel. Each of `outstanding` callers
 * re-issues its call from the completion callback until time is up; the
 * server's handler replies at once. Prints calls/s and latency percentiles.
 *
 *   bench_rpc [--seconds N] [--payload BYTES] [--outstanding N]
 *
 * Without --outstanding it runs with 1 and then with 64 calls in flight.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "common/monotime.h"
#include "common/codec.h"
#include "common/rpc/rpc.h"
#include "common/status.h"
#include "proto/raft.pb-c.h"

#define METHOD "/skv.Bench/Echo"

struct run {
	struct rpc_client *c;
	const char *addr;
	ProtobufCBinaryData payload;
	uint64_t end_ns; /* no call starts after this */

	/* Client cq thread only, until `inflight` drops to 0. */
	uint64_t *lat_ns;
	size_t nlat, cap;
	uint64_t errors;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	int inflight;
};

struct caller {
	struct run *run;
	uint64_t start_ns;
};

static void echo(void *ctx, struct rpc_call *call, ProtobufCMessage *req)
{
	rpc_call_reply(call, req);
	codec_free(req);
}

static void retire(struct run *r)
{
	pthread_mutex_lock(&r->mu);
	if (--r->inflight == 0)
		pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

static void done(void *arg, int status, const char *errmsg,
		 ProtobufCMessage *reply);

static void issue(struct caller *k)
{
	struct run *r = k->run;
	Skv__Entry e = SKV__ENTRY__INIT;
	e.data = r->payload;
	k->start_ns = monotime_now_ns();
	int st = rpc_client_call(r->c, r->addr, METHOD, &e.base,
				 &skv__entry__descriptor, 5000, done, k);
	if (st != STATUS_OK) {
		fprintf(stderr, "bench_rpc: call: %s\n", status_str(st));
		r->errors++;
		retire(r);
	}
}

static void done(void *arg, int status, const char *errmsg,
		 ProtobufCMessage *reply)
{
	struct caller *k = arg;
	struct run *r = k->run;
	uint64_t now = monotime_now_ns();

	codec_free(reply);
	if (status == STATUS_OK) {
		if (r->nlat == r->cap) {
			r->cap = r->cap ? 2 * r->cap : 1 << 16;
			r->lat_ns = realloc(r->lat_ns, r->cap * sizeof(uint64_t));
			if (!r->lat_ns) {
				perror("bench_rpc");
				exit(1);
			}
		}
		r->lat_ns[r->nlat++] = now - k->start_ns;
	} else if (r->errors++ == 0) {
		fprintf(stderr, "bench_rpc: %s: %s\n", status_name(status),
			errmsg);
	}
	if (now < r->end_ns)
		issue(k);
	else
		retire(r);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static double pct_us(const uint64_t *sorted, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n);
	return n ? (double)sorted[i < n ? i : n - 1] / 1e3 : 0;
}

/* One run of `ms` milliseconds; prints a table row unless warming up. */
static void bench(struct rpc_client *c, const char *addr, uint8_t *data,
		  size_t payload, int outstanding, uint64_t ms, bool print)
{
	struct run r = {.c = c,
			.addr = addr,
			.payload = {payload, data},
			.inflight = outstanding};
	struct caller *ks = calloc((size_t)outstanding, sizeof(*ks));
	if (!ks) {
		perror("bench_rpc");
		exit(1);
	}
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cond, NULL);

	uint64_t t0 = monotime_now_ns();
	r.end_ns = t0 + ms * 1000000u;
	for (int i = 0; i < outstanding; i++) {
		ks[i].run = &r;
		issue(&ks[i]);
	}
	pthread_mutex_lock(&r.mu);
	while (r.inflight > 0)
		pthread_cond_wait(&r.cond, &r.mu);
	pthread_mutex_unlock(&r.mu);
	double secs = (double)(monotime_now_ns() - t0) / 1e9;

	qsort(r.lat_ns, r.nlat, sizeof(uint64_t), cmp_u64);
	if (print) {
		printf("%11d %9.0f %8.0f %8.0f %8.0f %7llu\n", outstanding,
		       (double)r.nlat / secs, pct_us(r.lat_ns, r.nlat, 0.50),
		       pct_us(r.lat_ns, r.nlat, 0.99),
		       pct_us(r.lat_ns, r.nlat, 0.999),
		       (unsigned long long)r.errors);
		fflush(stdout);
	}
	free(r.lat_ns);
	free(ks);
	pthread_cond_destroy(&r.cond);
	pthread_mutex_destroy(&r.mu);
}

int main(int argc, char **argv)
{
	uint64_t seconds = 3, payload = 16, outstanding = 0;
	struct flag flags[] = {
		{"seconds", FLAG_UINT, &seconds, "N", "seconds per run", false,
		 1, 3600, false},
		{"payload", FLAG_UINT, &payload, "BYTES",
		 "request and reply payload", false, 0, 16 << 20, false},
		{"outstanding", FLAG_UINT, &outstanding, "N",
		 "calls in flight; 0 = a run with 1, then one with 64", false,
		 0, 100000, false},
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);
	struct flags_result res;
	char err[256], addr[32];

	int st = flags_parse(flags, nflags, argc, argv, &res, err, sizeof(err));
	flags_release(&res);
	if (st != STATUS_OK || res.help || res.first_arg < argc) {
		if (st != STATUS_OK)
			fprintf(stderr, "bench_rpc: %s\n", err);
		fprintf(stderr, "usage: bench_rpc [flags]\n");
		flags_usage(flags, nflags, stderr);
		return st != STATUS_OK || res.first_arg < argc;
	}

	struct rpc_server *s = rpc_server_new(NULL);
	int port = 0;
	if (!s || rpc_server_add_method(s, METHOD, &skv__entry__descriptor,
					echo, NULL) != STATUS_OK ||
	    rpc_server_start(s, "127.0.0.1:0", &port, err, sizeof(err)) !=
		    STATUS_OK) {
		fprintf(stderr, "bench_rpc: server: %s\n", err);
		return 1;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	struct rpc_client *c = rpc_client_new(NULL);
	uint8_t *data = calloc(1, payload ? payload : 1);
	if (!c || !data) {
		fprintf(stderr, "bench_rpc: out of memory\n");
		return 1;
	}

	printf("bench_rpc: %llu-byte payload, %llu s per run, one channel "
	       "over 127.0.0.1\n",
	       (unsigned long long)payload, (unsigned long long)seconds);
	printf("outstanding   calls/s  p50(us)  p99(us) p999(us)  errors\n");
	/* Warm-up: connect, grow gRPC's and malloc's pools. */
	bench(c, addr, data, payload, 64, 300, false);
	if (outstanding) {
		bench(c, addr, data, payload, (int)outstanding, seconds * 1000,
		      true);
	} else {
		bench(c, addr, data, payload, 1, seconds * 1000, true);
		bench(c, addr, data, payload, 64, seconds * 1000, true);
	}
	rpc_client_free(c);
	rpc_server_free(s);
	free(data);
	return 0;
}
