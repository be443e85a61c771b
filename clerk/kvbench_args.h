/*
 * kvbench_args: the pure parts of kvbench, the load tool: its command
 * line, the keys and values it writes, the seeded generator that picks
 * them, the latency histogram, and the report (text and JSON). Pure: no
 * clock, thread or socket; the environment variable's value and the
 * default seed are passed in, so the unit tests call everything here
 * directly.
 *
 * Latency is kept in a log-linear histogram of nanoseconds: values
 * below 2^KVBENCH_HIST_SUB_BITS exactly, each power of two above that in
 * 2^KVBENCH_HIST_SUB_BITS equal buckets. A percentile is the midpoint of
 * the bucket holding the nearest-rank sample, clamped to the recorded
 * min and max, so it is within 1/2^(KVBENCH_HIST_SUB_BITS+1) (0.4%) of
 * the exact nearest-rank value; memory is fixed whatever the run's
 * length. Count, sum, min and max are exact.
 *
 * Ownership: kvbench_parse fills a caller's struct kvbench_args whose
 * `masters` it allocates (kvbench_args_release frees it, also after a
 * failed parse). A histogram's buckets are allocated by kvbench_hist_init
 * and freed by kvbench_hist_close; a tally owns its histogram. The
 * report borrows everything it prints.
 */
#ifndef SKV_CLERK_KVBENCH_ARGS_H
#define SKV_CLERK_KVBENCH_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clerk/clerk.h" /* enum kv_status */

/* Exit codes. */
#define KVBENCH_EXIT_OK 0	   /* the run completed (op errors reported) */
#define KVBENCH_EXIT_USAGE 2	   /* bad command line */
#define KVBENCH_EXIT_UNREACHABLE 3 /* no answer from the cluster at all,
				      or the tool could not run */

#define KVBENCH_MASTERS_ENV "SHARDKV_MASTERS"
/* Keys are this prefix (cut when key-size leaves no room) and the key's
 * number, zero-padded to key-size bytes. */
#define KVBENCH_KEY_PREFIX "kvbench/"

#define KVBENCH_CLIENTS_DEFAULT 16
#define KVBENCH_DURATION_S_DEFAULT 10
#define KVBENCH_WARMUP_S_DEFAULT 2
#define KVBENCH_READS_PCT_DEFAULT 90
#define KVBENCH_KEYS_DEFAULT 1000
#define KVBENCH_KEY_SIZE_DEFAULT 16
#define KVBENCH_VALUE_SIZE_DEFAULT 100
#define KVBENCH_TIMEOUT_MS_DEFAULT 5000

enum kvbench_write_op {
	KVBENCH_WRITE_PUT = 0,
	KVBENCH_WRITE_APPEND,
};

struct kvbench_args {
	char *masters; /* "ADDR,ADDR,...", checked; from --masters or env */
	bool masters_from_env;
	uint64_t clients;
	uint64_t duration_s;
	uint64_t warmup_s;
	uint64_t reads_pct; /* 0..100; the rest are writes */
	enum kvbench_write_op write_op;
	uint64_t keys;
	uint64_t key_size;
	uint64_t value_size;
	/* --preload, or by default: on exactly when reads_pct > 0 */
	bool preload;
	uint64_t seed;	 /* --seed, or the seed passed to kvbench_parse */
	bool seed_given; /* --seed was on the line */
	uint64_t timeout_ms;
	bool json;
	bool help;
};

/*
 * Parses argv[0..argc) (argv[0] the program; no positional arguments).
 * `env_masters` is SHARDKV_MASTERS's value (NULL when unset), used when
 * --masters is absent; `seed_default` is the seed when --seed is absent.
 * STATUS_OK, or INVALID_ARGUMENT with a one-line reason in err[0..cap)
 * (a->json set when --json was seen before the error), or NO_MEMORY.
 * With --help: STATUS_OK and a->help, nothing else checked.
 */
int kvbench_parse(int argc, char **argv, const char *env_masters,
		  uint64_t seed_default, struct kvbench_args *a, char *err,
		  size_t cap);
void kvbench_args_release(struct kvbench_args *a);

/* The whole help text. */
void kvbench_usage(FILE *out);
/* "put" or "append". */
const char *kvbench_write_op_name(enum kvbench_write_op op);

/* ---- keys and values ---- */

/* Decimal digits of n (1 for 0). */
unsigned kvbench_digits(uint64_t n);

/* Writes key number i (< keys) into buf[0..key_size): the prefix, as much
 * of it as leaves room for the digits of keys - 1, then i zero-padded to
 * the end. key_size must hold those digits (kvbench_parse checks). No
 * terminating NUL. */
void kvbench_key(char *buf, uint64_t key_size, uint64_t keys, uint64_t i);

/* A seeded generator (splitmix64): one per thread, each its own stream. */
struct kvbench_rng {
	uint64_t state;
};

void kvbench_rng_init(struct kvbench_rng *r, uint64_t seed, uint64_t stream);
uint64_t kvbench_rng_next(struct kvbench_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t kvbench_rng_below(struct kvbench_rng *r, uint64_t n);

/* Values are windows of one pool: KVBENCH_VALUE_WINDOWS distinct
 * starting offsets into value_size + KVBENCH_VALUE_WINDOWS bytes. */
#define KVBENCH_VALUE_WINDOWS 256

/* Fills buf[0..len) with printable bytes, a function of `seed` alone. */
void kvbench_fill_values(char *buf, size_t len, uint64_t seed);

/* ---- latency ---- */

#define KVBENCH_HIST_SUB_BITS 7
#define KVBENCH_HIST_SUB (1u << KVBENCH_HIST_SUB_BITS)
#define KVBENCH_HIST_BUCKETS \
	(KVBENCH_HIST_SUB + (64 - KVBENCH_HIST_SUB_BITS) * KVBENCH_HIST_SUB)

struct kvbench_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns; /* UINT64_MAX while empty */
	uint64_t max_ns;
	uint64_t *buckets; /* KVBENCH_HIST_BUCKETS counts */
};

/* STATUS_OK, or NO_MEMORY (h then holds nothing to free). */
int kvbench_hist_init(struct kvbench_hist *h);
void kvbench_hist_close(struct kvbench_hist *h);
void kvbench_hist_record(struct kvbench_hist *h, uint64_t ns);
void kvbench_hist_merge(struct kvbench_hist *into,
			const struct kvbench_hist *from);
/* The nearest-rank value at per_million / 1,000,000 (500000 = p50,
 * 999000 = p99.9; 1000000 = the max), within the bound above; 0 for an
 * empty histogram. Exact counts up to 1.8e13 samples. */
uint64_t kvbench_hist_percentile(const struct kvbench_hist *h,
				 uint32_t per_million);
/* The bucket index of `ns`, and the lowest value of bucket `idx`
 * (exposed for the tests). */
size_t kvbench_hist_bucket(uint64_t ns);
uint64_t kvbench_hist_bucket_low(size_t idx);

/* ---- results ---- */

enum kvbench_kind {
	KVBENCH_READ = 0,
	KVBENCH_WRITE,
	KVBENCH_KINDS,
};

#define KVBENCH_STATUSES (KV_INTERNAL + 1)

/*
 * The outcomes of one kind of operation. Completed operations are KV_OK
 * and, for reads, KV_NOT_FOUND (the store answered: the key is absent);
 * only they enter the latency histogram. Every other status is an error,
 * counted by status; the first error's reason is kept.
 */
struct kvbench_tally {
	uint64_t ok;
	uint64_t not_found;
	uint64_t errors[KVBENCH_STATUSES]; /* [KV_OK], [KV_NOT_FOUND]: 0 */
	struct kvbench_hist lat;
	enum kv_status first_error;
	char first_error_msg[160];
};

/* STATUS_OK or NO_MEMORY; kvbench_tally_close frees. */
int kvbench_tally_init(struct kvbench_tally *t);
void kvbench_tally_close(struct kvbench_tally *t);
/* One operation that ended with `st` after `ns`; `msg` (may be NULL) is
 * the clerk's reason for an error. */
void kvbench_tally_record(struct kvbench_tally *t, enum kv_status st,
			  uint64_t ns, const char *msg);
void kvbench_tally_merge(struct kvbench_tally *into,
			 const struct kvbench_tally *from);
/* Completed operations (ok + not_found) and errors. */
uint64_t kvbench_tally_done(const struct kvbench_tally *t);
uint64_t kvbench_tally_errors(const struct kvbench_tally *t);

/* One run, for the report (everything borrowed). */
struct kvbench_report {
	const struct kvbench_args *args;
	double measured_s; /* the measurement window */
	uint64_t preload_done;
	uint64_t preload_errors;
	double preload_s;
	struct kvbench_tally kind[KVBENCH_KINDS];
};

/* The report as text for a person, or as one JSON object on one line
 * (field by field in kvbench_usage). */
void kvbench_report_text(FILE *out, const struct kvbench_report *r);
void kvbench_report_json(FILE *out, const struct kvbench_report *r);

#endif
