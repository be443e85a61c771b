/*
 * kvbench's pure parts (clerk/kvbench_args.h), called directly: the
 * command line (defaults, every flag, each refusal with its message),
 * keys and values, the seeded generator, the latency histogram against
 * the exact nearest-rank percentiles of the same samples (seeded;
 * KVBENCH_HIST_SEED=n replays one seed), tallies, and the report in both
 * forms.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clerk/kvbench_args.h"
#include "common/mem.h"
#include "common/status.h"

#define M "--masters=127.0.0.1:7001,127.0.0.1:7002"

/* Parses the NULL-terminated flags after a program name. */
static int parse(const char *env, struct kvbench_args *a, char *err,
		 size_t cap, ...)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = "kvbench";
	va_list ap;
	va_start(ap, cap);
	for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
		argv[argc++] = (char *)s;
	va_end(ap);
	return kvbench_parse(argc, argv, env, 77, a, err, cap);
}

/* ================= the command line ================= */

Test(kvbench_args, defaults)
{
	struct kvbench_args a;
	char err[512];
	cr_assert_eq(parse("h:1,h:2", &a, err, sizeof(err), NULL), STATUS_OK,
		     "%s", err);
	cr_assert_str_eq(a.masters, "h:1,h:2");
	cr_assert(a.masters_from_env);
	cr_assert_eq(a.clients, KVBENCH_CLIENTS_DEFAULT);
	cr_assert_eq(a.duration_s, KVBENCH_DURATION_S_DEFAULT);
	cr_assert_eq(a.warmup_s, KVBENCH_WARMUP_S_DEFAULT);
	cr_assert_eq(a.reads_pct, KVBENCH_READS_PCT_DEFAULT);
	cr_assert_eq(a.write_op, KVBENCH_WRITE_PUT);
	cr_assert_eq(a.keys, KVBENCH_KEYS_DEFAULT);
	cr_assert_eq(a.key_size, KVBENCH_KEY_SIZE_DEFAULT);
	cr_assert_eq(a.value_size, KVBENCH_VALUE_SIZE_DEFAULT);
	cr_assert_eq(a.timeout_ms, KVBENCH_TIMEOUT_MS_DEFAULT);
	cr_assert_eq(a.seed, 77); /* the default passed in */
	cr_assert_not(a.seed_given);
	cr_assert(a.preload); /* reads > 0 */
	cr_assert_not(a.json);
	cr_assert_not(a.help);
	kvbench_args_release(&a);
}

Test(kvbench_args, every_flag)
{
	struct kvbench_args a;
	char err[512];
	cr_assert_eq(parse("env:1", &a, err, sizeof(err), M, "--clients", "64",
			   "--duration=3", "--warmup", "0", "--reads", "0",
			   "--write-op", "append", "--keys", "100000",
			   "--key-size", "24", "--value-size", "0",
			   "--preload", "--seed", "18446744073709551615",
			   "--timeout-ms", "250", "--json", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_str_eq(a.masters, "127.0.0.1:7001,127.0.0.1:7002");
	cr_assert_not(a.masters_from_env); /* --masters wins */
	cr_assert_eq(a.clients, 64);
	cr_assert_eq(a.duration_s, 3);
	cr_assert_eq(a.warmup_s, 0);
	cr_assert_eq(a.reads_pct, 0);
	cr_assert_eq(a.write_op, KVBENCH_WRITE_APPEND);
	cr_assert_str_eq(kvbench_write_op_name(a.write_op), "append");
	cr_assert_eq(a.keys, 100000);
	cr_assert_eq(a.key_size, 24);
	cr_assert_eq(a.value_size, 0);
	cr_assert(a.preload); /* asked for, although reads are 0 */
	cr_assert_eq(a.seed, UINT64_MAX);
	cr_assert(a.seed_given);
	cr_assert_eq(a.timeout_ms, 250);
	cr_assert(a.json);
	kvbench_args_release(&a);
}

Test(kvbench_args, preload_default_follows_reads)
{
	struct kvbench_args a;
	char err[512];
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), M, "--reads", "0",
			   NULL),
		     STATUS_OK, "%s", err);
	cr_assert_not(a.preload); /* nothing would read the keys */
	kvbench_args_release(&a);
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), M, "--reads", "100",
			   "--preload=false", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_not(a.preload); /* reads of missing keys, on request */
	kvbench_args_release(&a);
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), M, "--reads", "1",
			   NULL),
		     STATUS_OK, "%s", err);
	cr_assert(a.preload);
	kvbench_args_release(&a);
}

Test(kvbench_args, limits_accepted)
{
	struct kvbench_args a;
	char err[512];
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), M, "--key-size",
			   "4096", "--value-size", "1048576", NULL),
		     STATUS_OK, "%s", err);
	cr_assert_eq(a.key_size, 4096);
	cr_assert_eq(a.value_size, 1048576);
	kvbench_args_release(&a);
	/* One byte holds the ten keys 0..9. */
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), M, "--key-size", "1",
			   "--keys", "10", NULL),
		     STATUS_OK, "%s", err);
	kvbench_args_release(&a);
}

Test(kvbench_args, help_needs_nothing_else)
{
	struct kvbench_args a;
	char err[512];
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), "--help", NULL),
		     STATUS_OK, "%s", err);
	cr_assert(a.help);
	kvbench_args_release(&a);
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), "-h", NULL), STATUS_OK,
		     "%s", err);
	cr_assert(a.help);
	kvbench_args_release(&a);

	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	kvbench_usage(f);
	fclose(f);
	const char *must[] = {"--masters", "--clients", "--duration",
			      "--warmup",  "--reads",	"--write-op",
			      "--keys",	   "--key-size", "--value-size",
			      "--preload", "--seed",	"--timeout-ms",
			      "--json",	   "exit status"};
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		cr_assert(strstr(text, must[i]), "help lacks %s", must[i]);
	free(text);
}

Test(kvbench_args, refusals_say_why)
{
	static const struct {
		const char *args[6];
		const char *says;
	} cases[] = {
		{{M, "--key-size", "0"}, "keys are 1 to 4096 bytes"},
		{{M, "--key-size", "4097"}, "keys are 1 to 4096 bytes"},
		{{M, "--value-size", "1048577"},
		 "values are at most 1048576 bytes"},
		{{M, "--keys", "1000", "--key-size", "2"},
		 "key 999 needs 3 digits"},
		{{M, "--write-op", "delete"}, "expected put or append"},
		{{M, "--reads", "101"}, "out of range [0, 100]"},
		{{M, "--clients", "0"}, "--clients"},
		{{M, "--duration", "0"}, "--duration"},
		{{M, "--keys", "0"}, "--keys"},
		{{M, "--timeout-ms", "0"}, "--timeout-ms"},
		{{M, "--seed", "-1"}, "must not be negative"},
		{{M, "--frobnicate"}, "unknown flag"},
		{{M, "extra"}, "unexpected argument 'extra'"},
		{{"--clients", "2"}, "no shard masters given"},
		{{"--masters", "h:1,"}, "stray comma"},
		{{"--masters", "h:1,h:1"}, "listed twice"},
		{{"--masters", "h"}, "bad address"},
		{{M, "--clients"}, "--clients: missing N"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[8] = {"kvbench"};
		int argc = 1;
		for (size_t j = 0; cases[i].args[j]; j++)
			argv[argc++] = (char *)cases[i].args[j];
		struct kvbench_args a;
		char err[512];
		int rc = kvbench_parse(argc, argv, NULL, 1, &a, err,
				       sizeof(err));
		cr_assert_eq(rc, STATUS_INVALID_ARGUMENT, "case %zu", i);
		cr_assert(strstr(err, cases[i].says),
			  "case %zu: '%s' lacks '%s'", i, err, cases[i].says);
		cr_assert_null(a.masters, "case %zu", i);
		kvbench_args_release(&a);
	}
	/* The environment's bad list is named as such. */
	struct kvbench_args a;
	char err[512];
	cr_assert_eq(parse("h:0", &a, err, sizeof(err), NULL),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "$SHARDKV_MASTERS"), "%s", err);
	kvbench_args_release(&a);
	/* --json before the error: the caller answers in JSON. */
	cr_assert_eq(parse(NULL, &a, err, sizeof(err), M, "--json",
			   "--value-size", "2000000", NULL),
		     STATUS_INVALID_ARGUMENT);
	cr_assert(a.json);
	kvbench_args_release(&a);
}

Test(kvbench_args, out_of_memory)
{
	struct kvbench_args a;
	char err[512];
	/* The parse's one allocation is the masters' copy. */
	mem_fail_after(1);
	int rc = parse(NULL, &a, err, sizeof(err), M, NULL);
	mem_fail_reset();
	cr_assert_eq(rc, STATUS_NO_MEMORY);
	cr_assert_null(a.masters);
	kvbench_args_release(&a);

	struct kvbench_hist h;
	mem_fail_after(1);
	rc = kvbench_hist_init(&h);
	mem_fail_reset();
	cr_assert_eq(rc, STATUS_NO_MEMORY);
	kvbench_hist_close(&h);
}

/* ================= keys and values ================= */

Test(kvbench_keys, prefix_and_padded_number)
{
	char k[4096];
	kvbench_key(k, 16, 1000, 42);
	cr_assert_eq(memcmp(k, "kvbench/00000042", 16), 0, "%.16s", k);
	kvbench_key(k, 16, 1000, 0);
	cr_assert_eq(memcmp(k, "kvbench/00000000", 16), 0, "%.16s", k);
	/* The prefix gives way to the digits. */
	kvbench_key(k, 5, 1000, 7);
	cr_assert_eq(memcmp(k, "kv007", 5), 0, "%.5s", k);
	kvbench_key(k, 3, 1000, 999);
	cr_assert_eq(memcmp(k, "999", 3), 0, "%.3s", k);
	kvbench_key(k, 1, 10, 9);
	cr_assert_eq(k[0], '9');
	/* The largest key: the prefix, then zeros up to the number. */
	kvbench_key(k, 4096, 1000000000, 999999999);
	cr_assert_eq(memcmp(k, "kvbench/000", 11), 0);
	cr_assert_eq(memcmp(k + 4096 - 9, "999999999", 9), 0);

	cr_assert_eq(kvbench_digits(0), 1);
	cr_assert_eq(kvbench_digits(9), 1);
	cr_assert_eq(kvbench_digits(10), 2);
	cr_assert_eq(kvbench_digits(999), 3);
	cr_assert_eq(kvbench_digits(UINT64_MAX), 20);
}

static int cmp_key4(const void *x, const void *y)
{
	return memcmp(x, y, 4);
}

Test(kvbench_keys, distinct_over_the_key_space)
{
	/* 1,000 keys of 4 bytes: "k000".."k999", each once. */
	enum { N = 1000 };
	static char keys[N][4];
	for (uint64_t i = 0; i < N; i++)
		kvbench_key(keys[i], 4, N, i);
	cr_assert_eq(memcmp(keys[5], "k005", 4), 0);
	qsort(keys, N, 4, cmp_key4);
	for (size_t i = 1; i < N; i++)
		cr_assert_neq(memcmp(keys[i - 1], keys[i], 4), 0, "dup at %zu",
			      i);
}

Test(kvbench_keys, generator_is_seeded)
{
	struct kvbench_rng a, b, c;
	kvbench_rng_init(&a, 5, 0);
	kvbench_rng_init(&b, 5, 0);
	kvbench_rng_init(&c, 5, 1);
	bool differs = false;
	for (int i = 0; i < 100; i++) {
		uint64_t x = kvbench_rng_next(&a);
		cr_assert_eq(x, kvbench_rng_next(&b));
		differs |= x != kvbench_rng_next(&c);
	}
	cr_assert(differs, "streams 0 and 1 are the same");

	/* below(n): in range, and every value about equally often. */
	enum { N = 10, DRAWS = 100000 };
	uint64_t seen[N] = {0};
	for (int i = 0; i < DRAWS; i++) {
		uint64_t x = kvbench_rng_below(&a, N);
		cr_assert_lt(x, N);
		seen[x]++;
	}
	for (int i = 0; i < N; i++)
		cr_assert(seen[i] > DRAWS / N * 9 / 10 &&
				  seen[i] < DRAWS / N * 11 / 10,
			  "value %d drawn %" PRIu64 " times of %d", i, seen[i],
			  DRAWS);
	cr_assert_eq(kvbench_rng_below(&a, 1), 0);
	(void)kvbench_rng_below(&a, UINT64_MAX);
}

Test(kvbench_keys, values_are_the_seeds)
{
	char x[1000], y[1000], z[1000];
	kvbench_fill_values(x, sizeof(x), 9);
	kvbench_fill_values(y, sizeof(y), 9);
	kvbench_fill_values(z, sizeof(z), 10);
	cr_assert_eq(memcmp(x, y, sizeof(x)), 0);
	cr_assert_neq(memcmp(x, z, sizeof(x)), 0);
	for (size_t i = 0; i < sizeof(x); i++)
		cr_assert(x[i] > ' ' && x[i] < 0x7f, "byte %zu is %d", i,
			  x[i]);
	/* A shorter pool is a prefix of a longer one. */
	kvbench_fill_values(z, 10, 9);
	cr_assert_eq(memcmp(x, z, 10), 0);
}

/* ================= the histogram ================= */

Test(kvbench_hist, buckets_cover_every_value)
{
	/* Each value lies in its bucket; buckets are in value order. */
	static const uint64_t probes[] = {
		0,	  1,	     127,	 128,
		129,	  255,	     256,	 257,
		1000,	  65535,     1u << 20,	 999999937,
		(1ull << 40) + 12345, UINT64_MAX - 1, UINT64_MAX,
	};
	size_t last = 0;
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		uint64_t v = probes[i];
		size_t b = kvbench_hist_bucket(v);
		cr_assert_lt(b, KVBENCH_HIST_BUCKETS, "%" PRIu64, v);
		cr_assert_geq(b, last, "%" PRIu64, v);
		last = b;
		uint64_t lo = kvbench_hist_bucket_low(b);
		cr_assert_leq(lo, v, "%" PRIu64, v);
		if (b + 1 < KVBENCH_HIST_BUCKETS)
			cr_assert_gt(kvbench_hist_bucket_low(b + 1), v,
				     "%" PRIu64, v);
	}
	/* Below 2^SUB_BITS every value has a bucket of its own. */
	for (uint64_t v = 0; v < KVBENCH_HIST_SUB; v++)
		cr_assert_eq(kvbench_hist_bucket_low(kvbench_hist_bucket(v)),
			     v);
	/* Bucket lows strictly increase: no empty or overlapping range. */
	for (size_t b = 1; b < KVBENCH_HIST_BUCKETS; b++)
		cr_assert_gt(kvbench_hist_bucket_low(b),
			     kvbench_hist_bucket_low(b - 1), "bucket %zu", b);
}

static struct kvbench_hist new_hist(void)
{
	struct kvbench_hist h;
	cr_assert_eq(kvbench_hist_init(&h), STATUS_OK);
	return h;
}

Test(kvbench_hist, nearest_rank_exact_for_small_values)
{
	struct kvbench_hist h = new_hist();
	cr_assert_eq(kvbench_hist_percentile(&h, 500000), 0); /* empty */
	/* 1..100 in a scrambled order: values below 128 are exact. */
	for (uint64_t i = 0; i < 100; i++)
		kvbench_hist_record(&h, (i * 37) % 100 + 1);
	cr_assert_eq(kvbench_hist_percentile(&h, 500000), 50);
	cr_assert_eq(kvbench_hist_percentile(&h, 900000), 90);
	cr_assert_eq(kvbench_hist_percentile(&h, 990000), 99);
	cr_assert_eq(kvbench_hist_percentile(&h, 999000), 100);
	cr_assert_eq(kvbench_hist_percentile(&h, 1000000), 100);
	cr_assert_eq(kvbench_hist_percentile(&h, 0), 1);
	cr_assert_eq(h.count, 100);
	cr_assert_eq(h.sum_ns, 5050);
	cr_assert_eq(h.min_ns, 1);
	cr_assert_eq(h.max_ns, 100);
	kvbench_hist_close(&h);

	/* One sample: every percentile is that sample (clamped). */
	h = new_hist();
	kvbench_hist_record(&h, 123456789);
	cr_assert_eq(kvbench_hist_percentile(&h, 500000), 123456789);
	cr_assert_eq(kvbench_hist_percentile(&h, 999000), 123456789);
	kvbench_hist_close(&h);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

/* The exact nearest-rank percentile of sorted v[0..n). */
static uint64_t exact(const uint64_t *v, size_t n, uint32_t per_million)
{
	uint64_t rank = ((uint64_t)n * per_million + 999999) / 1000000;
	if (rank == 0)
		rank = 1;
	return v[rank - 1];
}

/* One seed: n samples of one of three shapes, recorded into two
 * histograms and merged; every percentile within 1/256 of the exact
 * one. */
static void hist_property(uint64_t seed)
{
	struct kvbench_rng r;
	kvbench_rng_init(&r, seed, 0);
	size_t n = 1 + (size_t)kvbench_rng_below(&r, 20000);
	uint64_t *v = mem_alloc(n * sizeof(*v));
	cr_assert_not_null(v);
	struct kvbench_hist a = new_hist(), b = new_hist();
	int shape = (int)kvbench_rng_below(&r, 3);
	for (size_t i = 0; i < n; i++) {
		uint64_t x;
		if (shape == 0) { /* log-uniform, 1 us .. ~17 s */
			unsigned e = 10 + (unsigned)kvbench_rng_below(&r, 24);
			x = (1ull << e) + kvbench_rng_below(&r, 1ull << e);
		} else if (shape == 1) { /* a narrow band: many ties */
			x = 200000 + kvbench_rng_below(&r, 50);
		} else { /* anything */
			x = kvbench_rng_next(&r) >>
			    kvbench_rng_below(&r, 64);
		}
		v[i] = x;
		kvbench_hist_record(i % 2 ? &a : &b, x);
	}
	kvbench_hist_merge(&a, &b);
	qsort(v, n, sizeof(*v), cmp_u64);
	cr_assert_eq(a.count, n, "seed %" PRIu64, seed);
	cr_assert_eq(a.min_ns, v[0], "seed %" PRIu64, seed);
	cr_assert_eq(a.max_ns, v[n - 1], "seed %" PRIu64, seed);
	static const uint32_t pm[] = {0,      1,      500000, 900000,
				      990000, 999000, 999999, 1000000};
	for (size_t i = 0; i < sizeof(pm) / sizeof(pm[0]); i++) {
		uint64_t want = exact(v, n, pm[i]);
		uint64_t got = kvbench_hist_percentile(&a, pm[i]);
		uint64_t diff = got > want ? got - want : want - got;
		cr_assert_leq(diff, want / 256,
			      "seed %" PRIu64 " (replay: KVBENCH_HIST_SEED=%"
			      PRIu64 "), n %zu, per million %u: exact %"
			      PRIu64 ", histogram %" PRIu64,
			      seed, seed, n, pm[i], want, got);
	}
	kvbench_hist_close(&a);
	kvbench_hist_close(&b);
	mem_free(v);
}

Test(kvbench_hist, percentiles_within_bound_of_exact)
{
	const char *one = getenv("KVBENCH_HIST_SEED");
	if (one) {
		uint64_t seed = strtoull(one, NULL, 10);
		cr_log_info("histogram seed %" PRIu64, seed);
		hist_property(seed);
		return;
	}
	cr_log_info("histogram seeds 1..60 (replay one: "
		    "KVBENCH_HIST_SEED=n)");
	for (uint64_t seed = 1; seed <= 60; seed++)
		hist_property(seed);
}

/* ================= tallies and the report ================= */

static struct kvbench_tally new_tally(void)
{
	struct kvbench_tally t;
	cr_assert_eq(kvbench_tally_init(&t), STATUS_OK);
	return t;
}

Test(kvbench_report, tallies_count_by_outcome)
{
	struct kvbench_tally t = new_tally(), u = new_tally();
	kvbench_tally_record(&t, KV_OK, 1000, "");
	kvbench_tally_record(&t, KV_NOT_FOUND, 2000, "");
	kvbench_tally_record(&t, KV_TIMEOUT, 5000000, "no leader");
	kvbench_tally_record(&t, KV_TIMEOUT, 5000000, "other");
	kvbench_tally_record(&u, KV_TOO_LARGE, 10, NULL);
	kvbench_tally_record(&u, KV_OK, 3000, "");
	cr_assert_eq(t.ok, 1);
	cr_assert_eq(t.not_found, 1);
	cr_assert_eq(kvbench_tally_done(&t), 2);
	cr_assert_eq(kvbench_tally_errors(&t), 2);
	cr_assert_eq(t.lat.count, 2); /* errors keep out of latency */
	cr_assert_eq(t.first_error, KV_TIMEOUT);
	cr_assert_str_eq(t.first_error_msg, "no leader");
	cr_assert_str_eq(u.first_error_msg, kv_strerror(KV_TOO_LARGE));

	kvbench_tally_merge(&t, &u);
	cr_assert_eq(t.ok, 2);
	cr_assert_eq(t.errors[KV_TIMEOUT], 2);
	cr_assert_eq(t.errors[KV_TOO_LARGE], 1);
	cr_assert_eq(t.lat.count, 3);
	cr_assert_eq(t.lat.max_ns, 3000);
	cr_assert_str_eq(t.first_error_msg, "no leader"); /* kept */
	kvbench_tally_close(&t);
	kvbench_tally_close(&u);
}

struct report_fixture {
	struct kvbench_args a;
	struct kvbench_report r;
};

static void fixture(struct report_fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->a = (struct kvbench_args){
		.masters = "127.0.0.1:7001",
		.clients = 4,
		.duration_s = 2,
		.warmup_s = 1,
		.reads_pct = 90,
		.keys = 1000,
		.key_size = 16,
		.value_size = 100,
		.preload = true,
		.seed = 4242,
		.timeout_ms = 5000,
	};
	f->r.args = &f->a;
	f->r.measured_s = 2.0;
	f->r.preload_done = 1000;
	f->r.preload_s = 0.5;
	for (size_t k = 0; k < KVBENCH_KINDS; k++)
		f->r.kind[k] = new_tally();
}

static void fixture_close(struct report_fixture *f)
{
	for (size_t k = 0; k < KVBENCH_KINDS; k++)
		kvbench_tally_close(&f->r.kind[k]);
}

static char *render(const struct kvbench_report *r, bool json)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (json)
		kvbench_report_json(f, r);
	else
		kvbench_report_text(f, r);
	fclose(f);
	return text;
}

Test(kvbench_report, json_has_every_field)
{
	struct report_fixture f;
	fixture(&f);
	struct kvbench_tally *rd = &f.r.kind[KVBENCH_READ];
	struct kvbench_tally *wr = &f.r.kind[KVBENCH_WRITE];
	for (uint64_t i = 1; i <= 100; i++)
		kvbench_tally_record(rd, KV_OK, i * 1000, "");
	kvbench_tally_record(rd, KV_NOT_FOUND, 500, "");
	kvbench_tally_record(wr, KV_OK, 2000000, "");
	kvbench_tally_record(wr, KV_TIMEOUT, 5000000,
			     "no leader \"answered\"");
	char *j = render(&f.r, true);
	const char *must[] = {
		"{\"ok\":true,\"seed\":4242,\"masters\":\"127.0.0.1:7001\"",
		"\"clients\":4,\"duration_s\":2,\"warmup_s\":1,"
		"\"reads_pct\":90,\"write_op\":\"put\",\"keys\":1000,"
		"\"key_size\":16,\"value_size\":100,\"timeout_ms\":5000,"
		"\"preload\":true",
		"\"preload_puts\":1000,\"preload_errors\":0",
		"\"measured_s\":2.000",
		"\"ops\":102,\"ops_per_s\":51.0,\"errors\":1,"
		"\"errors_by_kind\":{\"TIMEOUT\":1}",
		"\"read\":{\"ops\":101,\"not_found\":1,\"ops_per_s\":50.5,"
		"\"errors\":0,\"errors_by_kind\":{},\"latency_us\":{",
		"\"p50\":50.",
		"\"max\":100.0,",
		"\"write\":{\"ops\":1,\"not_found\":0,\"ops_per_s\":0.5,"
		"\"errors\":1,\"errors_by_kind\":{\"TIMEOUT\":1},"
		"\"latency_us\":{\"p50\":2000.0,\"p90\":2000.0,"
		"\"p99\":2000.0,\"p999\":2000.0,\"max\":2000.0,"
		"\"mean\":2000.0}}",
		"\"error_example\":{\"kind\":\"write\",\"status\":\"TIMEOUT\","
		"\"error\":\"no leader \\\"answered\\\"\"}}\n",
	};
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		cr_assert(strstr(j, must[i]), "JSON lacks %s:\n%s", must[i], j);
	/* One object on one line, braces balanced outside strings. */
	int depth = 0;
	bool in_str = false;
	for (const char *p = j; *p; p++) {
		if (in_str && *p == '\\')
			p++;
		else if (*p == '"')
			in_str = !in_str;
		else if (!in_str && *p == '{')
			depth++;
		else if (!in_str && *p == '}')
			cr_assert_geq(--depth, 0, "%s", j);
		cr_assert(*p != '\n' || p[1] == '\0', "%s", j);
	}
	cr_assert_eq(depth, 0, "%s", j);
	free(j);
	fixture_close(&f);
}

Test(kvbench_report, json_not_ok_without_a_completed_op)
{
	struct report_fixture f;
	fixture(&f);
	kvbench_tally_record(&f.r.kind[KVBENCH_READ], KV_TIMEOUT, 1, "x");
	char *j = render(&f.r, true);
	cr_assert(strstr(j, "{\"ok\":false,"), "%s", j);
	cr_assert(strstr(j, "\"latency_us\":{\"p50\":0.0"), "%s", j);
	cr_assert(strstr(j, "\"error_example\":{\"kind\":\"read\""), "%s", j);
	free(j);
	fixture_close(&f);
}

Test(kvbench_report, text_for_a_person)
{
	struct report_fixture f;
	fixture(&f);
	f.a.write_op = KVBENCH_WRITE_APPEND;
	for (uint64_t i = 1; i <= 10; i++)
		kvbench_tally_record(&f.r.kind[KVBENCH_READ], KV_OK,
				     i * 250000, "");
	kvbench_tally_record(&f.r.kind[KVBENCH_WRITE], KV_TIMEOUT, 1,
			     "no leader");
	char *t = render(&f.r, false);
	const char *must[] = {
		"4 clients on one clerk, 2 s measured after 1 s warmup, seed "
		"4242",
		"90% get, 10% append; 1000 keys of 16 bytes, values of 100 "
		"bytes",
		"preload: 1000 puts in 0.5 s, 0 failed",
		"ops 10 (5.0/s), errors 1",
		"p50",
		"p999",
		"1.25 ms", /* p50 of 0.25..2.5 ms */
		"2.50 ms", /* max */
		"errors: TIMEOUT 1",
		"for example (write): TIMEOUT: no leader",
		"within 0.4%",
	};
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		cr_assert(strstr(t, must[i]), "text lacks '%s':\n%s", must[i],
			  t);
	free(t);
	fixture_close(&f);
}
