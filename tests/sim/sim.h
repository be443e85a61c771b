/*
 * sim: the deterministic network simulator behind the Raft, shard-master and
 * shardkv scenario suites.
 *
 * One `struct sim` owns a virtual clock (milliseconds, starts at 0), a seeded
 * PRNG, a set of endpoints (servers, Raft peers and clerks alike) and one
 * event queue: a binary min-heap of message deliveries, wake-ups and scripted
 * actions ordered by (time, insertion sequence number). It owns every
 * message in flight (a copy of the sender's bytes) and frees it once it is
 * delivered or dropped; endpoints' contexts stay the caller's.
 *
 * Invariant: a run is a pure function of the seed and of the calls the test
 * and the endpoints make. Nothing here reads a clock, calls rand(), starts a
 * thread, iterates a hash map or orders anything by pointer value; keep it
 * so, or failing seeds stop being bug reports.
 *
 * Network model, per sim_send (in this order):
 *   - dropped at once if the sender or receiver is down or unknown, or the
 *     link from -> to is cut (no randomness drawn);
 *   - else dropped with probability `drop`;
 *   - else delivered after a delay drawn from [delay_ms_min, delay_ms_max],
 *     or with probability `long_delay` from the long range;
 *   - and with probability `dup` a second copy follows with its own delay.
 * At delivery the message is checked again: it is dropped if the link is cut
 * by then (a partition eats messages in flight), the receiver is down, or
 * the receiver crashed since the send (a crash loses what was in flight to
 * it, even if it has restarted since). A message sent before its *sender*
 * crashed may still arrive: packets already in the network do.
 *
 * Links are directional and all up by default; an endpoint added later
 * starts with all its links up whatever partition is in force. An
 * endpoint's link to itself is cut only by sim_link_set.
 */
#ifndef SKV_TESTS_SIM_SIM_H
#define SKV_TESTS_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/mem.h" /* SIM_END_SEEDS */

struct sim;

/* ---- PRNG: xoshiro256**, seeded through splitmix64 ---- */

/* Caller-owned generator, for independent streams (say, a workload that must
 * not shift when the network's fault rates change). */
struct sim_rng {
	uint64_t s[4];
};

void sim_rng_seed(struct sim_rng *r, uint64_t seed);
uint64_t sim_rng_next(struct sim_rng *r);
/* Uniform in [lo, hi); requires hi > lo. No modulo bias. */
uint64_t sim_rng_range(struct sim_rng *r, uint64_t lo, uint64_t hi);
/* True with probability p (p <= 0: never, p >= 1: always). One draw. */
bool sim_rng_chance(struct sim_rng *r, double p);

/* The same, on the simulator's own generator (the one the network uses). */
uint64_t sim_rand(struct sim *s);
uint64_t sim_rand_range(struct sim *s, uint64_t lo, uint64_t hi);
bool sim_chance(struct sim *s, double p);

/* ---- lifecycle and clock ---- */

/* NULL on allocation failure. Default network: sim_net_reliable(). */
struct sim *sim_new(uint64_t seed);
/* Frees every message still in flight; calls no endpoint callback. */
void sim_free(struct sim *s);
uint64_t sim_seed(const struct sim *s);
uint64_t sim_now_ms(const struct sim *s);

/* ---- endpoints ---- */

/* Any callback may be NULL (the event is then ignored). Callbacks may call
 * back into the simulator (send, wake_at, crash, at, ...) but not step it. */
struct sim_endpoint_ops {
	/* `bytes` is borrowed until the callback returns. */
	void (*on_message)(void *ctx, uint32_t from, uint32_t type,
			   const void *bytes, size_t len);
	/* The wake-up time set with sim_wake_at has arrived. */
	void (*on_wake)(void *ctx);
	/* Drop all in-memory state; the endpoint is already marked down. */
	void (*on_crash)(void *ctx);
	/* Reload from storage; the endpoint is already marked up, so it may
	 * send and set a wake-up from here. */
	void (*on_restart)(void *ctx);
};

/* Registers endpoint `id` (up, all links up). `ops` is copied; `ctx` is
 * borrowed for the simulator's lifetime. Returns STATUS_OK,
 * STATUS_ALREADY_EXISTS or STATUS_NO_MEMORY. */
int sim_endpoint_add(struct sim *s, uint32_t id,
		     const struct sim_endpoint_ops *ops, void *ctx);
bool sim_endpoint_exists(const struct sim *s, uint32_t id);

/* ---- messages ---- */

#define SIM_TYPES_MAX 32 /* per-type counters cover types below this */

/* Copies `bytes` (may be NULL when len is 0) and schedules its delivery per
 * the network model. If the copy cannot be allocated the message is lost,
 * which endpoints must tolerate anyway (counted in `dropped`). */
void sim_send(struct sim *s, uint32_t from, uint32_t to, uint32_t type,
	      const void *bytes, size_t len);

/* sent + duplicated = delivered + dropped + (messages still in flight) */
struct sim_stats {
	uint64_t sent;       /* sim_send calls */
	uint64_t sent_bytes;
	uint64_t delivered;
	uint64_t dropped;    /* for any reason */
	uint64_t duplicated; /* extra copies made */
	uint64_t events;     /* events run by sim_step */
	uint64_t sent_by_type[SIM_TYPES_MAX];
	uint64_t sent_bytes_by_type[SIM_TYPES_MAX];
};

struct sim_stats sim_stats(const struct sim *s);
void sim_stats_reset(struct sim *s);

/* ---- network model ---- */

struct sim_net {
	uint64_t delay_ms_min, delay_ms_max; /* inclusive */
	double drop;
	double dup;
	double long_delay;
	uint64_t long_delay_ms_min, long_delay_ms_max; /* inclusive */
};

/* Nothing lost, delay 1-5 ms. */
struct sim_net sim_net_reliable(void);
/* TESTPLAN.md's "unreliable": delay 0-30 ms, drop 0.1, dup 0.05. */
struct sim_net sim_net_unreliable(void);
/* Adds TESTPLAN.md's "long reordering": 30 % delayed 200-2200 ms. */
void sim_net_long_reordering(struct sim_net *n);
/* Applies to messages sent from now on. Requires min <= max. */
void sim_net_set(struct sim *s, const struct sim_net *n);
struct sim_net sim_net_get(const struct sim *s);

/* ---- faults ---- */

/* Links are directional. Unknown ids are ignored. */
void sim_link_set(struct sim *s, uint32_t from, uint32_t to, bool up);
bool sim_link_up(const struct sim *s, uint32_t from, uint32_t to);
/* Cuts every link to and from `id`. */
void sim_isolate(struct sim *s, uint32_t id);
/* Restores every link to and from `id` (links to crashed endpoints too:
 * they stay useless until those restart). */
void sim_connect(struct sim *s, uint32_t id);
/* Cuts every link between side_a and the rest; every link inside either
 * side comes up. Replaces whatever cuts were in force. */
void sim_partition(struct sim *s, const uint32_t *side_a, size_t na);
/* All links up. */
void sim_heal(struct sim *s);

/* Marks `id` down, cancels its wake-up, loses what is in flight to it and
 * calls on_crash. No-op if already down. */
void sim_crash(struct sim *s, uint32_t id);
/* Marks `id` up and calls on_restart. No-op if already up. */
void sim_restart(struct sim *s, uint32_t id);
bool sim_is_up(const struct sim *s, uint32_t id);

/* ---- time ---- */

/* One pending wake-up per endpoint: this replaces the previous one. A time
 * in the past means now. Ignored while the endpoint is down. */
void sim_wake_at(struct sim *s, uint32_t id, uint64_t at_ms);
void sim_wake_cancel(struct sim *s, uint32_t id);

/* Runs fn(arg) at virtual time at_ms (the past means now). `arg` is
 * borrowed until then. */
void sim_at(struct sim *s, uint64_t at_ms, void (*fn)(void *arg), void *arg);

/* Runs the next event, advancing the clock to it; false if none is left. */
bool sim_step(struct sim *s);
/* Runs every event up to now + ms, then sets the clock to now + ms. */
void sim_run_for(struct sim *s, uint64_t ms);
/* Runs events until pred(arg) holds (checked before the first event and
 * after each) and returns true; returns false once the next event lies past
 * deadline_ms or none is left, with the clock set to deadline_ms (never
 * moved back). */
bool sim_run_until(struct sim *s, bool (*pred)(void *arg), void *arg,
		   uint64_t deadline_ms);
/* Called after every event (invariant checks). NULL removes it. */
void sim_set_after_step(struct sim *s, void (*fn)(void *arg), void *arg);

/* ---- tracing ---- */

/* Writes a message's label (say "AppendEntriesRequest term=3") into
 * out[0..cap), NUL-terminated. */
typedef void (*sim_format_fn)(void *arg, uint32_t type, const void *bytes,
			      size_t len, char *out, size_t cap);
/* Receives each trace line, without newline. */
typedef void (*sim_trace_sink_fn)(void *arg, const char *line);

/* When on, every send, delivery, drop, duplicate, crash, restart and link
 * change gives a line "[  1234 ms] deliver 2->3 <label> 57 B". */
void sim_set_trace(struct sim *s, bool on);
bool sim_tracing(const struct sim *s);
/* NULL restores the default label "type N". */
void sim_set_formatter(struct sim *s, sim_format_fn fn, void *arg);
/* NULL restores the default: one line to stderr. */
void sim_set_trace_sink(struct sim *s, sim_trace_sink_fn fn, void *arg);
/* A line of the test script's own, when tracing. */
void sim_trace(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The FNV-1a start for sim_trace_hash. */
#define SIM_TRACE_HASH_INIT 0xcbf29ce484222325ULL

/* A trace sink folding each line (and a newline) into *(uint64_t *)arg,
 * FNV-1a: two runs are the same run when their hashes are. */
void sim_trace_hash(void *arg, const char *line);

/* Tracing of a scenario run. With `hash` (set to SIM_TRACE_HASH_INIT
 * here), every line is folded into *hash; else with SIM_SEED set (a
 * replay) lines go to stderr, logging at info level; else no trace and
 * logging at warn level. `fmt` labels messages (NULL: "type N"). Then
 * attaches the log (sim_log_attach). */
void sim_trace_setup(struct sim *s, sim_format_fn fmt, uint64_t *hash);

/* Makes common/log.h print virtual time, and tag lines written inside an
 * endpoint's callback with its id. Undone by sim_free. Global: one attached
 * simulator at a time. */
void sim_log_attach(struct sim *s);

/* ---- seeds ---- */

/* The seeds to run into *out (caller mem_frees it); returns their count.
 * SIM_SEED=n: just n. Else SIM_SEEDS=k: 1..k. Else 1..default_count.
 * A malformed variable is fatal (exit 2). */
size_t sim_seeds(uint64_t default_count, uint64_t **out);
/* True when SIM_SEED is set: the caller should then turn tracing on. */
bool sim_seed_replay(void);
/* SIM_FOR_SEEDS(n) { ... } SIM_END_SEEDS(); runs the block once per
 * seed of sim_seeds(n), with `seed` (uint64_t) set; in a function, once. */
#define SIM_FOR_SEEDS(n)                                                  \
	uint64_t *sim_seeds_;                                             \
	size_t sim_n_seeds_ = sim_seeds(n, &sim_seeds_);                  \
	for (size_t sim_si_ = 0; sim_si_ < sim_n_seeds_; sim_si_++)       \
		for (uint64_t seed = sim_seeds_[sim_si_], sim_once_ = 1;  \
		     sim_once_; sim_once_ = 0)

#define SIM_END_SEEDS() mem_free(sim_seeds_)

/* Prints to stderr "seed N: replay with SIM_SEED=N ./tests/<binary>
 * --filter '<suite>/<test>'". NULL binary: this program's name. */
void sim_seed_banner(const char *test_binary, const char *suite,
		     const char *test, uint64_t seed);

#endif
