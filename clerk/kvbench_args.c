/*
 * kvbench_args: see kvbench_args.h. Messages name what was wrong and the
 * accepted range: the reader is someone at a shell prompt.
 */
#include "clerk/kvbench_args.h"

#include <inttypes.h>
#include <string.h>

#include "clerk/cli.h"
#include "common/flags.h"
#include "common/mem.h"
#include "common/shard.h"
#include "common/status.h"

static const char usage_line[] =
	"usage: kvbench [--masters ADDR,...] [--clients N] [--duration S] "
	"[--warmup S]\n"
	"               [--reads PCT] [--write-op put|append] [--keys N] "
	"[--key-size B]\n"
	"               [--value-size B] [--preload[=false]] [--seed S]\n"
	"               [--timeout-ms MS] [--json]";

const char *kvbench_write_op_name(enum kvbench_write_op op)
{
	return op == KVBENCH_WRITE_APPEND ? "append" : "put";
}

/* ---- flags ---- */

/* Flag destinations, apart from the result so the help can show the
 * defaults without a parse. */
struct flag_values {
	const char *masters;
	uint64_t clients, duration_s, warmup_s, reads_pct;
	const char *write_op;
	uint64_t keys, key_size, value_size;
	bool preload;
	uint64_t seed, timeout_ms;
	bool json;
};

enum {
	F_MASTERS,
	F_CLIENTS,
	F_DURATION,
	F_WARMUP,
	F_READS,
	F_WRITE_OP,
	F_KEYS,
	F_KEY_SIZE,
	F_VALUE_SIZE,
	F_PRELOAD,
	F_SEED,
	F_TIMEOUT,
	F_JSON,
	N_FLAGS
};

static void flag_defaults(struct flag_values *v)
{
	memset(v, 0, sizeof(*v));
	v->clients = KVBENCH_CLIENTS_DEFAULT;
	v->duration_s = KVBENCH_DURATION_S_DEFAULT;
	v->warmup_s = KVBENCH_WARMUP_S_DEFAULT;
	v->reads_pct = KVBENCH_READS_PCT_DEFAULT;
	v->write_op = "put";
	v->keys = KVBENCH_KEYS_DEFAULT;
	v->key_size = KVBENCH_KEY_SIZE_DEFAULT;
	v->value_size = KVBENCH_VALUE_SIZE_DEFAULT;
	v->timeout_ms = KVBENCH_TIMEOUT_MS_DEFAULT;
}

/* key-size and value-size have no range here: they are checked after the
 * parse, with a message that names the store's limit. */
static void flag_table(struct flag *t, struct flag_values *v)
{
	memset(t, 0, N_FLAGS * sizeof(*t));
	t[F_MASTERS] = (struct flag){
		.name = "masters",
		.type = FLAG_STRING,
		.dest = &v->masters,
		.metavar = "ADDR,ADDR,...",
		.help = "the shard masters (default: $" KVBENCH_MASTERS_ENV
			")",
	};
	t[F_CLIENTS] = (struct flag){
		.name = "clients",
		.type = FLAG_UINT,
		.dest = &v->clients,
		.metavar = "N",
		.help = "client threads, one op in flight each",
		.min = 1,
		.max = 1024,
	};
	t[F_DURATION] = (struct flag){
		.name = "duration",
		.type = FLAG_UINT,
		.dest = &v->duration_s,
		.metavar = "S",
		.help = "seconds measured",
		.min = 1,
		.max = 86400,
	};
	t[F_WARMUP] = (struct flag){
		.name = "warmup",
		.type = FLAG_UINT,
		.dest = &v->warmup_s,
		.metavar = "S",
		.help = "seconds of unmeasured load first",
		.min = 0,
		.max = 3600,
	};
	t[F_READS] = (struct flag){
		.name = "reads",
		.type = FLAG_UINT,
		.dest = &v->reads_pct,
		.metavar = "PCT",
		.help = "percent gets, 0..100; the rest write",
		.min = 0,
		.max = 100,
	};
	t[F_WRITE_OP] = (struct flag){
		.name = "write-op",
		.type = FLAG_STRING,
		.dest = &v->write_op,
		.metavar = "put|append",
		.help = "what a write is",
	};
	t[F_KEYS] = (struct flag){
		.name = "keys",
		.type = FLAG_UINT,
		.dest = &v->keys,
		.metavar = "N",
		.help = "keys 0..N-1, chosen uniformly",
		.min = 1,
		.max = 1000000000,
	};
	t[F_KEY_SIZE] = (struct flag){
		.name = "key-size",
		.type = FLAG_UINT,
		.dest = &v->key_size,
		.metavar = "B",
		.help = "bytes per key, 1..4096",
	};
	t[F_VALUE_SIZE] = (struct flag){
		.name = "value-size",
		.type = FLAG_UINT,
		.dest = &v->value_size,
		.metavar = "B",
		.help = "bytes per write, 0..1048576",
	};
	t[F_PRELOAD] = (struct flag){
		.name = "preload",
		.type = FLAG_BOOL,
		.dest = &v->preload,
		.help = "put every key first (default: on if --reads > 0)",
	};
	t[F_SEED] = (struct flag){
		.name = "seed",
		.type = FLAG_UINT,
		.dest = &v->seed,
		.metavar = "S",
		.help = "of keys, op mix, values (default: random)",
	};
	t[F_TIMEOUT] = (struct flag){
		.name = "timeout-ms",
		.type = FLAG_UINT,
		.dest = &v->timeout_ms,
		.metavar = "MS",
		.help = "give up on an operation after MS",
		.min = 1,
		.max = 3600000,
	};
	t[F_JSON] = (struct flag){
		.name = "json",
		.type = FLAG_BOOL,
		.dest = &v->json,
		.help = "one JSON object on stdout, also for errors",
	};
}

void kvbench_usage(FILE *out)
{
	struct flag t[N_FLAGS];
	struct flag_values v;
	flag_defaults(&v);
	flag_table(t, &v);
	t[F_SEED].dest = NULL; /* its default is not a number */
	fprintf(out,
		"%s\n"
		"\n"
		"Puts load on a shardkv cluster through the clerk library and "
		"measures it:\n"
		"N client threads share one clerk, each running one operation "
		"at a time,\n"
		"back to back, on uniformly chosen keys, for --warmup and then "
		"--duration\n"
		"seconds. Reads are gets; writes are puts or appends of "
		"--value-size bytes.\n"
		"\n"
		"flags:\n",
		usage_line);
	flags_usage(t, N_FLAGS, out);
	fprintf(out,
		"\n"
		"environment:\n"
		"  " KVBENCH_MASTERS_ENV
		"  the shard masters (ADDR,ADDR,...) when --masters is "
		"absent\n"
		"\n"
		"keys are \"" KVBENCH_KEY_PREFIX
		"\" and the key's number, zero-padded to --key-size bytes\n"
		"(the prefix is cut when the digits need the room); values are "
		"printable bytes\n"
		"drawn from the seed. Appends make values grow: an append past "
		"%u bytes\n"
		"fails with TOO_LARGE, counted as an error.\n"
		"\n"
		"output: the settings with the seed, then per kind (read, "
		"write) the completed\n"
		"operations, their rate over the measured seconds, and their "
		"latency (p50, p90,\n"
		"p99, p99.9, max; completed operations only, from a "
		"log-linear histogram within\n"
		"0.4%%), then errors by status. A get of a missing key "
		"completes (not_found).\n"
		"With --json one object:\n"
		"  {\"ok\":true,\"seed\":S,...settings...,\"measured_s\":S,"
		"\"ops\":N,\"ops_per_s\":X,\n"
		"   \"errors\":N,\"errors_by_kind\":{\"TIMEOUT\":N,...},\n"
		"   \"read\":{\"ops\":N,\"not_found\":N,\"ops_per_s\":X,"
		"\"errors\":N,\n"
		"           \"errors_by_kind\":{...},\n"
		"           \"latency_us\":{\"p50\":X,\"p90\":X,\"p99\":X,"
		"\"p999\":X,\"max\":X,\"mean\":X}},\n"
		"   \"write\":{...},\n"
		"   \"error_example\":null|{\"kind\":\"...\","
		"\"status\":\"...\",\"error\":\"...\"}}\n"
		"(\"ok\":false when no operation completed), or\n"
		"{\"ok\":false,\"status\":\"...\",\"error\":\"...\"} when "
		"the run could not start.\n"
		"Errors are also one line on stderr, \"kvbench: ...\".\n"
		"\n"
		"exit status:\n"
		"  0  the run completed (operation errors are in the report)\n"
		"  2  usage error\n"
		"  3  the cluster answered nothing (a first get failed, or no "
		"operation\n"
		"     completed), or the tool could not run\n"
		"\n"
		"example:\n"
		"  kvbench --masters 127.0.0.1:7001,127.0.0.1:7002,"
		"127.0.0.1:7003 \\\n"
		"          --clients 64 --reads 90 --duration 10\n",
		SHARD_VALUE_BYTES_MAX);
}

static int check_sizes(const struct kvbench_args *a, char *err, size_t cap)
{
	if (a->key_size < 1 || a->key_size > SHARD_KEY_BYTES_MAX)
		return cli_fail(err, cap,
				"--key-size %" PRIu64 ": keys are 1 to %d "
				"bytes",
				a->key_size, SHARD_KEY_BYTES_MAX);
	if (a->value_size > SHARD_VALUE_BYTES_MAX)
		return cli_fail(err, cap,
				"--value-size %" PRIu64 ": values are at most "
				"%u bytes",
				a->value_size, SHARD_VALUE_BYTES_MAX);
	unsigned need = kvbench_digits(a->keys - 1);
	if (a->key_size < need)
		return cli_fail(err, cap,
				"--key-size %" PRIu64 " cannot number %" PRIu64
				" keys: key %" PRIu64 " needs %u digits "
				"(use --key-size %u or more, or fewer --keys)",
				a->key_size, a->keys, a->keys - 1, need, need);
	return STATUS_OK;
}

int kvbench_parse(int argc, char **argv, const char *env_masters,
		  uint64_t seed_default, struct kvbench_args *a, char *err,
		  size_t cap)
{
	memset(a, 0, sizeof(*a));
	err[0] = '\0';
	struct flag t[N_FLAGS];
	struct flag_values v;
	flag_defaults(&v);
	flag_table(t, &v);
	struct flags_result fr;
	int rc = flags_parse(t, N_FLAGS, argc, argv, &fr, err, cap);
	a->json = v.json;
	a->help = fr.help;
	if (rc || fr.help)
		goto out;
	if (fr.first_arg < argc) {
		rc = cli_fail(err, cap,
			      "unexpected argument '%.60s' (kvbench takes "
			      "only flags; see --help)",
			      argv[fr.first_arg]);
		goto out;
	}
	a->clients = v.clients;
	a->duration_s = v.duration_s;
	a->warmup_s = v.warmup_s;
	a->reads_pct = v.reads_pct;
	a->keys = v.keys;
	a->key_size = v.key_size;
	a->value_size = v.value_size;
	a->timeout_ms = v.timeout_ms;
	a->seed_given = t[F_SEED].seen;
	a->seed = a->seed_given ? v.seed : seed_default;
	/* Reads of keys never written would all be not-found: measuring
	 * that is rarely what is wanted, so reads turn the preload on. */
	a->preload = t[F_PRELOAD].seen ? v.preload : a->reads_pct > 0;
	if (strcmp(v.write_op, "put") == 0) {
		a->write_op = KVBENCH_WRITE_PUT;
	} else if (strcmp(v.write_op, "append") == 0) {
		a->write_op = KVBENCH_WRITE_APPEND;
	} else {
		rc = cli_fail(err, cap,
			      "--write-op '%.40s': expected put or append",
			      v.write_op);
		goto out;
	}
	rc = check_sizes(a, err, cap);
	if (rc)
		goto out;

	/* Copied now: a --config file's strings go with flags_release. */
	const char *masters = v.masters;
	if (!t[F_MASTERS].seen && env_masters && *env_masters) {
		masters = env_masters;
		a->masters_from_env = true;
	}
	if (!masters || !*masters) {
		rc = cli_fail(err, cap,
			      "no shard masters given: pass --masters "
			      "HOST:PORT,HOST:PORT,... or set "
			      KVBENCH_MASTERS_ENV);
		goto out;
	}
	char why[300];
	if (cli_check_masters(masters, why, sizeof(why))) {
		rc = cli_fail(err, cap, "%s: %s",
			      a->masters_from_env ? "$" KVBENCH_MASTERS_ENV
						  : "--masters",
			      why);
		goto out;
	}
	a->masters = mem_strdup(masters);
	if (!a->masters) {
		rc = STATUS_NO_MEMORY;
		cli_fail(err, cap, "out of memory");
	}
out:
	flags_release(&fr);
	return rc;
}

void kvbench_args_release(struct kvbench_args *a)
{
	mem_free(a->masters);
	memset(a, 0, sizeof(*a));
}

/* ---- keys and values ---- */

unsigned kvbench_digits(uint64_t n)
{
	unsigned d = 1;
	while (n >= 10) {
		n /= 10;
		d++;
	}
	return d;
}

void kvbench_key(char *buf, uint64_t key_size, uint64_t keys, uint64_t i)
{
	static const char prefix[] = KVBENCH_KEY_PREFIX;
	uint64_t room = key_size - kvbench_digits(keys - 1);
	size_t p = sizeof(prefix) - 1;
	if (p > room)
		p = (size_t)room;
	memcpy(buf, prefix, p);
	memset(buf + p, '0', (size_t)key_size - p);
	for (char *d = buf + key_size; i > 0; i /= 10)
		*--d = (char)('0' + i % 10);
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void kvbench_rng_init(struct kvbench_rng *r, uint64_t seed, uint64_t stream)
{
	r->state = mix64(seed ^ mix64(stream + 0x9e3779b97f4a7c15ull));
}

uint64_t kvbench_rng_next(struct kvbench_rng *r)
{
	r->state += 0x9e3779b97f4a7c15ull;
	return mix64(r->state);
}

uint64_t kvbench_rng_below(struct kvbench_rng *r, uint64_t n)
{
	/* Rejects the top partial range so every residue is equally
	 * likely. */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	for (;;) {
		uint64_t x = kvbench_rng_next(r);
		if (x < limit)
			return x % n;
	}
}

void kvbench_fill_values(char *buf, size_t len, uint64_t seed)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "abcdefghijklmnopqrstuvwxyz"
				       "0123456789-_";
	struct kvbench_rng r;
	kvbench_rng_init(&r, seed, UINT64_MAX);
	uint64_t bits = 0;
	unsigned left = 0;
	for (size_t i = 0; i < len; i++) {
		if (left == 0) {
			bits = kvbench_rng_next(&r);
			left = 10; /* 6 bits each */
		}
		buf[i] = alphabet[bits & 63];
		bits >>= 6;
		left--;
	}
}

/* ---- latency ---- */

static unsigned top_bit(uint64_t x)
{
	return 63u - (unsigned)__builtin_clzll(x);
}

size_t kvbench_hist_bucket(uint64_t ns)
{
	if (ns < KVBENCH_HIST_SUB)
		return (size_t)ns;
	unsigned e = top_bit(ns) - KVBENCH_HIST_SUB_BITS;
	return KVBENCH_HIST_SUB + (size_t)e * KVBENCH_HIST_SUB +
	       (size_t)((ns >> e) - KVBENCH_HIST_SUB);
}

uint64_t kvbench_hist_bucket_low(size_t idx)
{
	if (idx < KVBENCH_HIST_SUB)
		return idx;
	size_t j = idx - KVBENCH_HIST_SUB;
	unsigned e = (unsigned)(j / KVBENCH_HIST_SUB);
	return ((uint64_t)KVBENCH_HIST_SUB + j % KVBENCH_HIST_SUB) << e;
}

static uint64_t bucket_width(size_t idx)
{
	if (idx < KVBENCH_HIST_SUB)
		return 1;
	return 1ull << ((idx - KVBENCH_HIST_SUB) / KVBENCH_HIST_SUB);
}

int kvbench_hist_init(struct kvbench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
	h->buckets = mem_calloc(KVBENCH_HIST_BUCKETS, sizeof(*h->buckets));
	return h->buckets ? STATUS_OK : STATUS_NO_MEMORY;
}

void kvbench_hist_close(struct kvbench_hist *h)
{
	mem_free(h->buckets);
	memset(h, 0, sizeof(*h));
}

void kvbench_hist_record(struct kvbench_hist *h, uint64_t ns)
{
	h->buckets[kvbench_hist_bucket(ns)]++;
	h->count++;
	h->sum_ns += ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void kvbench_hist_merge(struct kvbench_hist *into,
			const struct kvbench_hist *from)
{
	if (from->count == 0)
		return;
	for (size_t i = 0; i < KVBENCH_HIST_BUCKETS; i++)
		into->buckets[i] += from->buckets[i];
	into->count += from->count;
	into->sum_ns += from->sum_ns;
	if (from->min_ns < into->min_ns)
		into->min_ns = from->min_ns;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
}

uint64_t kvbench_hist_percentile(const struct kvbench_hist *h,
				 uint32_t per_million)
{
	if (h->count == 0)
		return 0;
	if (per_million >= 1000000)
		return h->max_ns;
	uint64_t rank = (h->count * per_million + 999999) / 1000000;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (size_t i = 0; i < KVBENCH_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen < rank)
			continue;
		uint64_t v = kvbench_hist_bucket_low(i) +
			     (bucket_width(i) - 1) / 2;
		if (v < h->min_ns)
			v = h->min_ns;
		if (v > h->max_ns)
			v = h->max_ns;
		return v;
	}
	return h->max_ns;
}

/* ---- results ---- */

int kvbench_tally_init(struct kvbench_tally *t)
{
	memset(t, 0, sizeof(*t));
	return kvbench_hist_init(&t->lat);
}

void kvbench_tally_close(struct kvbench_tally *t)
{
	kvbench_hist_close(&t->lat);
}

void kvbench_tally_record(struct kvbench_tally *t, enum kv_status st,
			  uint64_t ns, const char *msg)
{
	if (st == KV_OK || st == KV_NOT_FOUND) {
		if (st == KV_OK)
			t->ok++;
		else
			t->not_found++;
		kvbench_hist_record(&t->lat, ns);
		return;
	}
	if ((unsigned)st >= KVBENCH_STATUSES)
		st = KV_INTERNAL;
	if (kvbench_tally_errors(t) == 0) {
		t->first_error = st;
		snprintf(t->first_error_msg, sizeof(t->first_error_msg), "%s",
			 msg && *msg ? msg : kv_strerror(st));
	}
	t->errors[st]++;
}

void kvbench_tally_merge(struct kvbench_tally *into,
			 const struct kvbench_tally *from)
{
	if (kvbench_tally_errors(into) == 0 &&
	    kvbench_tally_errors(from) > 0) {
		into->first_error = from->first_error;
		memcpy(into->first_error_msg, from->first_error_msg,
		       sizeof(into->first_error_msg));
	}
	into->ok += from->ok;
	into->not_found += from->not_found;
	for (size_t s = 0; s < KVBENCH_STATUSES; s++)
		into->errors[s] += from->errors[s];
	kvbench_hist_merge(&into->lat, &from->lat);
}

uint64_t kvbench_tally_done(const struct kvbench_tally *t)
{
	return t->ok + t->not_found;
}

uint64_t kvbench_tally_errors(const struct kvbench_tally *t)
{
	uint64_t n = 0;
	for (size_t s = 0; s < KVBENCH_STATUSES; s++)
		n += t->errors[s];
	return n;
}

/* ---- the report ---- */

static const char *const kind_name[KVBENCH_KINDS] = {"read", "write"};

static const uint32_t pcts[] = {500000, 900000, 990000, 999000, 1000000};
static const char *const pct_name[] = {"p50", "p90", "p99", "p999", "max"};
#define N_PCTS (sizeof(pcts) / sizeof(pcts[0]))

static double rate(uint64_t n, double s)
{
	return s > 0 ? (double)n / s : 0.0;
}

/* Latency for a person: "812 us", "1.23 ms", "12.3 ms", "123 ms". */
static void fmt_lat(char *buf, size_t cap, uint64_t ns)
{
	double us = (double)ns / 1e3;
	if (us < 1000)
		snprintf(buf, cap, "%.0f us", us);
	else if (us < 10000)
		snprintf(buf, cap, "%.2f ms", us / 1e3);
	else if (us < 100000)
		snprintf(buf, cap, "%.1f ms", us / 1e3);
	else
		snprintf(buf, cap, "%.0f ms", us / 1e3);
}

static uint64_t errors_of(const struct kvbench_report *r, size_t s)
{
	uint64_t n = 0;
	for (size_t k = 0; k < KVBENCH_KINDS; k++)
		n += r->kind[k].errors[s];
	return n;
}

/* The tally whose kept error the report shows as an example: the
 * reads' when reads failed, else the writes'; NULL without errors. */
static const struct kvbench_tally *
error_example(const struct kvbench_report *r, size_t *kind)
{
	for (size_t k = 0; k < KVBENCH_KINDS; k++) {
		if (kvbench_tally_errors(&r->kind[k]) > 0) {
			*kind = k;
			return &r->kind[k];
		}
	}
	return NULL;
}

static void text_settings(FILE *out, const struct kvbench_report *r)
{
	const struct kvbench_args *a = r->args;
	fprintf(out,
		"kvbench: %" PRIu64 " client%s on one clerk, %" PRIu64
		" s measured after %" PRIu64 " s warmup, seed %" PRIu64 "\n",
		a->clients, a->clients == 1 ? "" : "s", a->duration_s,
		a->warmup_s, a->seed);
	fprintf(out,
		"  workload: %" PRIu64 "%% get, %" PRIu64 "%% %s; %" PRIu64
		" keys of %" PRIu64 " bytes, values of %" PRIu64
		" bytes\n  timeout: %" PRIu64 " ms per operation\n",
		a->reads_pct, 100 - a->reads_pct,
		kvbench_write_op_name(a->write_op), a->keys, a->key_size,
		a->value_size, a->timeout_ms);
	if (a->preload)
		fprintf(out,
			"  preload: %" PRIu64 " puts in %.1f s, %" PRIu64
			" failed\n",
			r->preload_done, r->preload_s, r->preload_errors);
	else
		fprintf(out, "  preload: off\n");
}

void kvbench_report_text(FILE *out, const struct kvbench_report *r)
{
	text_settings(out, r);
	uint64_t done = 0, errs = 0;
	for (size_t k = 0; k < KVBENCH_KINDS; k++) {
		done += kvbench_tally_done(&r->kind[k]);
		errs += kvbench_tally_errors(&r->kind[k]);
	}
	fprintf(out, "\n  ops %" PRIu64 " (%.1f/s), errors %" PRIu64 "\n\n",
		done, rate(done, r->measured_s), errs);
	fprintf(out, "  %-6s %10s %10s", "kind", "ops", "ops/s");
	for (size_t p = 0; p < N_PCTS; p++)
		fprintf(out, " %9s", pct_name[p]);
	fprintf(out, " %8s\n", "errors");
	for (size_t k = 0; k < KVBENCH_KINDS; k++) {
		const struct kvbench_tally *t = &r->kind[k];
		uint64_t n = kvbench_tally_done(t);
		if (n == 0 && kvbench_tally_errors(t) == 0)
			continue;
		fprintf(out, "  %-6s %10" PRIu64 " %10.1f", kind_name[k], n,
			rate(n, r->measured_s));
		for (size_t p = 0; p < N_PCTS; p++) {
			char buf[32];
			fmt_lat(buf, sizeof(buf),
				kvbench_hist_percentile(&t->lat, pcts[p]));
			fprintf(out, " %9s", n ? buf : "-");
		}
		fprintf(out, " %8" PRIu64 "\n", kvbench_tally_errors(t));
	}
	if (r->kind[KVBENCH_READ].not_found > 0)
		fprintf(out, "  (reads of a missing key: %" PRIu64 ")\n",
			r->kind[KVBENCH_READ].not_found);
	if (errs > 0) {
		fprintf(out, "\n  errors:");
		for (size_t s = 0; s < KVBENCH_STATUSES; s++) {
			uint64_t n = errors_of(r, s);
			if (n > 0)
				fprintf(out, " %s %" PRIu64,
					kv_status_name((enum kv_status)s), n);
		}
		size_t k = 0;
		const struct kvbench_tally *t = error_example(r, &k);
		fprintf(out, "\n  for example (%s): %s: %s\n", kind_name[k],
			kv_status_name(t->first_error), t->first_error_msg);
	}
	fprintf(out,
		"\n  latency of completed operations; log-linear histogram, "
		"each figure within 0.4%%\n");
}

static void json_text(FILE *out, const char *s)
{
	cli_json_string(out, s, strlen(s));
}

static void json_errors_by_kind(FILE *out, const uint64_t *errors)
{
	fputc('{', out);
	bool first = true;
	for (size_t s = 0; s < KVBENCH_STATUSES; s++) {
		if (errors[s] == 0)
			continue;
		fprintf(out, "%s\"%s\":%" PRIu64, first ? "" : ",",
			kv_status_name((enum kv_status)s), errors[s]);
		first = false;
	}
	fputc('}', out);
}

static void json_kind(FILE *out, const struct kvbench_report *r, size_t k)
{
	const struct kvbench_tally *t = &r->kind[k];
	uint64_t n = kvbench_tally_done(t);
	fprintf(out,
		"\"%s\":{\"ops\":%" PRIu64 ",\"not_found\":%" PRIu64
		",\"ops_per_s\":%.1f,\"errors\":%" PRIu64
		",\"errors_by_kind\":",
		kind_name[k], n, t->not_found, rate(n, r->measured_s),
		kvbench_tally_errors(t));
	json_errors_by_kind(out, t->errors);
	fputs(",\"latency_us\":{", out);
	for (size_t p = 0; p < N_PCTS; p++)
		fprintf(out, "\"%s\":%.1f,", pct_name[p],
			(double)kvbench_hist_percentile(&t->lat, pcts[p]) /
				1e3);
	fprintf(out, "\"mean\":%.1f}}",
		n ? (double)t->lat.sum_ns / (double)n / 1e3 : 0.0);
}

void kvbench_report_json(FILE *out, const struct kvbench_report *r)
{
	const struct kvbench_args *a = r->args;
	uint64_t done = 0, errs = 0, by[KVBENCH_STATUSES];
	for (size_t s = 0; s < KVBENCH_STATUSES; s++)
		by[s] = errors_of(r, s);
	for (size_t k = 0; k < KVBENCH_KINDS; k++) {
		done += kvbench_tally_done(&r->kind[k]);
		errs += kvbench_tally_errors(&r->kind[k]);
	}
	/* Not one operation completed: the cluster answered nothing. */
	fprintf(out, "{\"ok\":%s,\"seed\":%" PRIu64 ",\"masters\":",
		done > 0 ? "true" : "false", a->seed);
	json_text(out, a->masters ? a->masters : "");
	fprintf(out,
		",\"clients\":%" PRIu64 ",\"duration_s\":%" PRIu64
		",\"warmup_s\":%" PRIu64 ",\"reads_pct\":%" PRIu64
		",\"write_op\":\"%s\",\"keys\":%" PRIu64
		",\"key_size\":%" PRIu64 ",\"value_size\":%" PRIu64
		",\"timeout_ms\":%" PRIu64 ",\"preload\":%s",
		a->clients, a->duration_s, a->warmup_s, a->reads_pct,
		kvbench_write_op_name(a->write_op), a->keys, a->key_size,
		a->value_size, a->timeout_ms, a->preload ? "true" : "false");
	fprintf(out,
		",\"preload_puts\":%" PRIu64 ",\"preload_errors\":%" PRIu64
		",\"preload_s\":%.3f,\"measured_s\":%.3f",
		r->preload_done, r->preload_errors, r->preload_s,
		r->measured_s);
	fprintf(out,
		",\"ops\":%" PRIu64 ",\"ops_per_s\":%.1f,\"errors\":%" PRIu64
		",\"errors_by_kind\":",
		done, rate(done, r->measured_s), errs);
	json_errors_by_kind(out, by);
	for (size_t k = 0; k < KVBENCH_KINDS; k++) {
		fputc(',', out);
		json_kind(out, r, k);
	}
	size_t k = 0;
	const struct kvbench_tally *t = error_example(r, &k);
	if (t) {
		fprintf(out,
			",\"error_example\":{\"kind\":\"%s\",\"status\":\"%s\","
			"\"error\":",
			kind_name[k], kv_status_name(t->first_error));
		json_text(out, t->first_error_msg);
		fputc('}', out);
	} else {
		fputs(",\"error_example\":null", out);
	}
	fputs("}\n", out);
}
