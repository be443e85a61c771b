/*
 * bench_store: what group commit buys. Synced RocksDB write batches of
 * 1..N Raft-log-sized entries into the `raft` column family, as the node
 * driver will write them once per loop turn; prints batches/s, entries/s
 * and batch latency percentiles. A benchmark, never a pass/fail test.
 *
 *   bench_store [--dir PATH] [--seconds N] [--entry-bytes N] [--batches 1,8,64,512]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/flags.h"
#include "common/monotime.h"
#include "common/status.h"
#include "common/store/store.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *sorted, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1));
	return sorted[i];
}

static int run(struct store *s, uint64_t per_batch, uint64_t seconds,
	       uint64_t entry_bytes, uint64_t *next_index)
{
	struct store_batch *b = store_batch_new(s);
	uint8_t *val = calloc(1, entry_bytes);
	size_t cap = 1 << 16, n = 0;
	uint64_t *lat = malloc(cap * sizeof(*lat));
	if (!b || !val || !lat) {
		fprintf(stderr, "bench_store: out of memory\n");
		return 1;
	}
	uint64_t start = monotime_now_us(), end = start + seconds * 1000000;
	uint64_t now = start;
	while (now < end) {
		store_batch_clear(b);
		for (uint64_t i = 0; i < per_batch; i++) {
			uint8_t key[9] = {'L'};
			put_u64be(key + 1, (*next_index)++);
			store_batch_put(b, STORE_CF_RAFT, key, sizeof(key), val,
					entry_bytes);
		}
		int rc = store_write(s, b, true);
		if (rc) {
			fprintf(stderr, "bench_store: %s\n", store_errmsg(s));
			return 1;
		}
		uint64_t t = monotime_now_us();
		if (n == cap) {
			cap *= 2;
			lat = realloc(lat, cap * sizeof(*lat));
		}
		lat[n++] = t - now;
		now = t;
	}
	double secs = (double)(now - start) / 1e6;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("batch %4" PRIu64 " x %" PRIu64 " B: %8.0f synced batches/s "
	       "%9.0f entries/s  p50 %5" PRIu64 " us  p99 %6" PRIu64
	       " us  p999 %6" PRIu64 " us\n",
	       per_batch, entry_bytes, (double)n / secs,
	       (double)(n * per_batch) / secs, pct(lat, n, 0.50),
	       pct(lat, n, 0.99), pct(lat, n, 0.999));
	store_batch_free(b);
	free(val);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	const char *batches = "1,8,64,512";
	uint64_t seconds = 3, entry_bytes = 100;
	struct flag flags[] = {
		{.name = "dir", .type = FLAG_STRING, .dest = &dir,
		 .metavar = "PATH",
		 .help = "database directory (default: a new dir under /tmp)"},
		{.name = "seconds", .type = FLAG_UINT, .dest = &seconds,
		 .metavar = "N", .help = "seconds per batch size",
		 .min = 1, .max = 3600},
		{.name = "entry-bytes", .type = FLAG_UINT, .dest = &entry_bytes,
		 .metavar = "N", .help = "bytes per entry", .min = 1,
		 .max = 1 << 24},
		{.name = "batches", .type = FLAG_STRING, .dest = &batches,
		 .metavar = "LIST", .help = "comma-separated entries per batch"},
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);
	struct flags_result res;
	char err[256];
	int rc = flags_parse(flags, nflags, argc, argv, &res, err, sizeof(err));
	if (rc || res.help || res.first_arg != argc) {
		if (rc)
			fprintf(stderr, "bench_store: %s\n", err);
		fprintf(rc || res.first_arg != argc ? stderr : stdout,
			"usage: bench_store [flags]\n");
		flags_usage(flags, nflags, rc ? stderr : stdout);
		flags_release(&res);
		return rc || res.first_arg != argc ? 2 : 0;
	}

	char tmpl[] = "/tmp/skv-bench-store-XXXXXX";
	bool own_dir = !dir;
	if (own_dir && !(dir = mkdtemp(tmpl))) {
		perror("bench_store: mkdtemp");
		return 1;
	}
	struct store *s;
	struct store_opts o = {.path = dir, .create_if_missing = true};
	if (store_open(&o, &s, err, sizeof(err))) {
		fprintf(stderr, "bench_store: %s\n", err);
		return 1;
	}
	printf("bench_store: %s, fsync per batch\n", dir);
	uint64_t next_index = 1;
	char *list = strdup(batches);
	for (char *tok = strtok(list, ","); tok && !rc;
	     tok = strtok(NULL, ","))
		rc = run(s, strtoull(tok, NULL, 10), seconds, entry_bytes,
			 &next_index);
	free(list);
	store_close(s);
	flags_release(&res);
	if (own_dir) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_store: could not remove %s\n",
				dir);
	}
	return rc;
}
