/*
 * lin: the linearizability checker for key/value histories.
 *
 * A history is a list of operations (Get, Put, Append, Delete), each with the
 * client that issued it, its input, its outcome and the times it was called
 * and returned. Keys are independent registers, so the history is split by
 * key and each key is checked on its own: a Wing & Gong search with Lowe's
 * memoization (a cache of (set of linearized ops, register state) already
 * explored), over a doubly linked list of call/return events, as Porcupine
 * does.
 *
 * A `struct lin_history` owns copies of every key, value and output added to
 * it; `struct lin_op` pointers are the caller's and are borrowed only during
 * lin_history_add. A `struct lin_report` owns its `explain` text.
 *
 * Invariant: a check is a pure function of the history (in the order ops
 * were added) and the options. The search is bounded by a step count, not
 * wall time, and nothing iterates a hash map in an order that could change
 * a verdict or a byte of the explain text; keep it so, or a simulated run
 * stops being a pure function of its seed.
 *
 * Register model, per key: the state is "absent" or a byte string. Put sets
 * it; Append appends to it ("" if absent); Delete makes it absent and
 * reports whether it existed; Get reports whether it exists and its value.
 * A write whose outcome is unknown (known = false) may take effect at any
 * time after its call, or never.
 */
#ifndef SKV_TESTS_LIN_LIN_H
#define SKV_TESTS_LIN_LIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum lin_kind { LIN_GET, LIN_PUT, LIN_APPEND, LIN_DELETE };

/* One operation of a history. Pointers are borrowed by lin_history_add,
 * which copies them. */
struct lin_op {
	uint64_t client;	/* ops of one client never overlap in time */
	enum lin_kind kind;
	const uint8_t *key;
	size_t klen;
	const uint8_t *value;	/* Put / Append input */
	size_t vlen;
	/* Outcome. known = false: the outcome is unknown (the call timed
	 * out): a write may or may not have taken effect, at any time after
	 * `call`; `ret`, `found` and `out` are ignored. A Get with an unknown
	 * outcome may simply be left out of the history. */
	bool known;
	bool found;		/* Get: the key existed; Delete: it existed */
	const uint8_t *out;	/* Get: the value read (found) */
	size_t outlen;
	uint64_t call, ret;	/* any monotonic unit; call <= ret */
};

struct lin_history;

/* An empty history; NULL: no memory. Free with lin_history_free. */
struct lin_history *lin_history_new(void);
/* Frees the history and every copy it holds. NULL ok. */
void lin_history_free(struct lin_history *h);
/* Appends a copy of `op` (key, value and out copied; pointers may be NULL
 * when their length is 0). Returns STATUS_OK, STATUS_NO_MEMORY (the history
 * is unchanged) or STATUS_INVALID_ARGUMENT (a known op with ret < call, or
 * a kind out of range). Ops of a Get with known = false are accepted and
 * ignored by lin_check. */
int lin_history_add(struct lin_history *h, const struct lin_op *op);
/* Ops added so far. */
size_t lin_history_len(const struct lin_history *h);
/* The i-th op added (i < lin_history_len), its pointers into the history:
 * valid until the history is freed. */
void lin_history_get(const struct lin_history *h, size_t i,
		     struct lin_op *out);

/*
 * A text form, one op per line, for histories recorded by real-process
 * tests. A file starts with the line "skv-lin-history 1"; then one line per
 * op, fields separated by single spaces:
 *
 *   <client> <kind> <key> <value> <outcome> <out> <call> <ret>
 *
 * kind is get|put|append|delete; key, value and out are byte strings in
 * hex, "-" for the empty string; outcome is "found", "missing" or "unknown"
 * (value is "-" for Get and Delete, out is "-" unless a Get was found, ret
 * is "-" when the outcome is unknown). Empty lines and lines starting with
 * '#' are ignored.
 *
 * lin_history_write returns STATUS_OK or STATUS_IO (the stream failed); the
 * stream stays the caller's. lin_history_read reads to EOF and on
 * STATUS_OK stores a new history in *out (the caller frees it); else *out
 * is NULL and `err` (cap bytes, may be NULL when cap is 0) says which line
 * and what is wrong: STATUS_CORRUPTION (malformed), STATUS_IO or
 * STATUS_NO_MEMORY.
 */
int lin_history_write(const struct lin_history *h, FILE *f);
int lin_history_read(FILE *f, struct lin_history **out, char *err, size_t cap);

struct lin_opts {
	/* Search steps allowed per key before that key is "unknown";
	 * 0 = a default (LIN_MAX_STEPS_PER_KEY_DEFAULT). Steps, not wall
	 * time, so a simulated run stays a pure function of its seed. */
	uint64_t max_steps_per_key;
};

#define LIN_MAX_STEPS_PER_KEY_DEFAULT 2000000

enum lin_result { LIN_OK, LIN_ILLEGAL, LIN_UNKNOWN };

struct lin_report {
	/* ILLEGAL if any key is; else UNKNOWN if any key ran out of budget;
	 * else OK */
	enum lin_result result;
	size_t keys, ops;	/* ops: those checked (unknown Gets left out) */
	size_t unknown_keys;
	uint64_t steps;
	/* heap (lin_report_free), or NULL when there is nothing to say. For
	 * ILLEGAL: the key (printable or hex) and the shortest failing slice
	 * of its history (the shortest prefix by call time that is already
	 * not linearizable), one op per line with times and values, and why
	 * it fails. */
	char *explain;
};

/* Checks every key of `h`; opts may be NULL. Fills *out (the caller frees it
 * with lin_report_free) and returns out->result. Never fails on memory
 * silently: running out of memory gives result UNKNOWN with explain saying
 * so. */
enum lin_result lin_check(const struct lin_history *h,
			  const struct lin_opts *opts, struct lin_report *out);
/* Frees r->explain and clears it. NULL ok. */
void lin_report_free(struct lin_report *r);

/* "ok", "illegal" or "unknown". */
const char *lin_result_str(enum lin_result r);

/* Writes a short printable form of bytes p[0..n) into buf (cap bytes,
 * always NUL-terminated when cap > 0): "..." quoted with C escapes for
 * non-printable bytes, truncated with "...(N bytes)" when long. Returns buf. */
char *lin_bytes_str(const uint8_t *p, size_t n, char *buf, size_t cap);

#endif
