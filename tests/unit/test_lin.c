/*
 * The linearizability checker (tests/lin/lin.h) on known linearizable and
 * known non-linearizable histories, its budget, its text form, running out
 * of memory, and a seeded property test: histories cut from a real
 * sequential execution must pass, and fail once one Get's output is
 * corrupted (LIN_SEED=n replays history n, LIN_HISTORIES=k runs k).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/status.h"
#include "tests/lin/lin.h"
#include "tests/sim/sim.h"

/* ---- building histories ---- */

static struct lin_history *hist(void)
{
	struct lin_history *h = lin_history_new();
	cr_assert_not_null(h);
	return h;
}

static void add(struct lin_history *h, uint64_t client, enum lin_kind kind,
		const char *key, const char *value, bool known, bool found,
		const char *out, uint64_t call, uint64_t ret)
{
	struct lin_op o = {
		.client = client,
		.kind = kind,
		.key = (const uint8_t *)key,
		.klen = strlen(key),
		.value = (const uint8_t *)value,
		.vlen = value ? strlen(value) : 0,
		.known = known,
		.found = found,
		.out = (const uint8_t *)out,
		.outlen = out ? strlen(out) : 0,
		.call = call,
		.ret = ret,
	};
	cr_assert_eq(lin_history_add(h, &o), STATUS_OK);
}

static void put(struct lin_history *h, uint64_t c, const char *k,
		const char *v, uint64_t call, uint64_t ret)
{
	add(h, c, LIN_PUT, k, v, true, false, NULL, call, ret);
}

static void append(struct lin_history *h, uint64_t c, const char *k,
		   const char *v, uint64_t call, uint64_t ret)
{
	add(h, c, LIN_APPEND, k, v, true, false, NULL, call, ret);
}

/* out NULL: not found */
static void get(struct lin_history *h, uint64_t c, const char *k,
		const char *out, uint64_t call, uint64_t ret)
{
	add(h, c, LIN_GET, k, NULL, true, out != NULL, out, call, ret);
}

static void del(struct lin_history *h, uint64_t c, const char *k, bool found,
		uint64_t call, uint64_t ret)
{
	add(h, c, LIN_DELETE, k, NULL, true, found, NULL, call, ret);
}

/* A write whose outcome is unknown, called at `call`. */
static void put_unknown(struct lin_history *h, uint64_t c, const char *k,
			const char *v, uint64_t call)
{
	add(h, c, LIN_PUT, k, v, false, false, NULL, call, 0);
}

static enum lin_result check(struct lin_history *h, struct lin_report *r)
{
	enum lin_result res = lin_check(h, NULL, r);
	cr_assert_eq(res, r->result);
	return res;
}

static void expect_ok(struct lin_history *h)
{
	struct lin_report r;
	enum lin_result res = check(h, &r);
	cr_expect_eq(res, LIN_OK, "want ok, got %s:\n%s", lin_result_str(res),
		     r.explain ? r.explain : "");
	cr_expect_null(r.explain);
	lin_report_free(&r);
	lin_history_free(h);
}

/* ILLEGAL, naming `key` and marking the op added `hid`-th as the one that
 * cannot be placed (hid < 0: any). */
static void expect_illegal(struct lin_history *h, const char *key, int hid)
{
	struct lin_report r;
	enum lin_result res = check(h, &r);
	cr_expect_eq(res, LIN_ILLEGAL, "want illegal, got %s",
		     lin_result_str(res));
	cr_assert_not_null(r.explain);
	char want[128];
	snprintf(want, sizeof(want), "key \"%s\"", key);
	cr_expect(strstr(r.explain, want) != NULL, "explain lacks %s:\n%s",
		  want, r.explain);
	if (hid >= 0) {
		snprintf(want, sizeof(want), "  #%d ", hid);
		const char *at = strstr(r.explain, want);
		const char *eol = at ? strchr(at, '\n') : NULL;
		cr_expect(at && eol &&
				  strstr(at, "cannot be placed") != NULL &&
				  strstr(at, "cannot be placed") < eol,
			  "explain does not blame #%d:\n%s", hid, r.explain);
	}
	lin_report_free(&r);
	lin_history_free(h);
}

/* ---- linearizable ---- */

Test(lin_ok, empty_and_sequential)
{
	expect_ok(hist());

	struct lin_history *h = hist();
	get(h, 1, "a", NULL, 0, 1);
	put(h, 1, "a", "x", 2, 3);
	get(h, 1, "a", "x", 4, 5);
	append(h, 1, "a", "y", 6, 7);
	get(h, 1, "a", "xy", 8, 9);
	del(h, 1, "a", true, 10, 11);
	get(h, 1, "a", NULL, 12, 13);
	del(h, 1, "a", false, 14, 15);
	append(h, 1, "a", "z", 16, 17);
	get(h, 1, "a", "z", 18, 19);
	put(h, 1, "a", "", 20, 21);
	get(h, 1, "a", "", 22, 23);
	expect_ok(h);
}

Test(lin_ok, overlapping_writes_read_in_either_order)
{
	for (int first = 0; first < 2; first++) {
		struct lin_history *h = hist();
		put(h, 1, "k", "x", 0, 10);
		put(h, 2, "k", "y", 0, 10);
		get(h, 3, "k", first ? "x" : "y", 20, 30);
		get(h, 3, "k", first ? "x" : "y", 40, 50);
		expect_ok(h);
	}
}

Test(lin_ok, concurrent_put_and_get_see_old_or_new)
{
	for (int seen_new = 0; seen_new < 2; seen_new++) {
		struct lin_history *h = hist();
		put(h, 1, "k", "old", 0, 5);
		put(h, 1, "k", "new", 10, 30);
		get(h, 2, "k", seen_new ? "new" : "old", 15, 25);
		expect_ok(h);
	}
	/* an earlier read sees new, a later overlapping one still may not
	 * see old; but two overlapping reads may disagree in either order */
	struct lin_history *h = hist();
	put(h, 1, "k", "old", 0, 5);
	put(h, 1, "k", "new", 10, 100);
	get(h, 2, "k", "new", 20, 60);
	get(h, 3, "k", "old", 30, 70);
	expect_ok(h);
}

Test(lin_ok, touching_intervals_count_as_concurrent)
{
	struct lin_history *h = hist();
	put(h, 1, "k", "a", 0, 10);
	get(h, 2, "k", NULL, 10, 20);
	expect_ok(h);
}

Test(lin_ok, append_chains)
{
	struct lin_history *h = hist();
	append(h, 1, "k", "a", 0, 10);
	append(h, 2, "k", "b", 0, 10);
	append(h, 3, "k", "c", 5, 15);
	get(h, 4, "k", "b", 1, 6);
	get(h, 4, "k", "bca", 20, 30);
	append(h, 1, "k", "d", 40, 50);
	get(h, 2, "k", "bcad", 60, 70);
	expect_ok(h);
}

Test(lin_ok, delete_then_get_not_found)
{
	struct lin_history *h = hist();
	put(h, 1, "k", "v", 0, 10);
	del(h, 1, "k", true, 20, 30);
	get(h, 2, "k", NULL, 40, 50);
	del(h, 2, "k", false, 60, 70);
	/* a concurrent delete and put: either order */
	put(h, 1, "k", "w", 80, 90);
	del(h, 2, "k", true, 85, 95);
	put(h, 3, "k", "u", 86, 96);
	get(h, 4, "k", "u", 100, 110);
	expect_ok(h);
}

Test(lin_ok, unknown_outcome_writes)
{
	/* took effect, late */
	struct lin_history *h = hist();
	put(h, 1, "k", "a", 0, 10);
	put_unknown(h, 2, "k", "b", 20);
	get(h, 3, "k", "a", 30, 40);
	get(h, 3, "k", "b", 500, 510);
	expect_ok(h);

	/* never took effect */
	h = hist();
	put(h, 1, "k", "a", 0, 10);
	put_unknown(h, 2, "k", "b", 20);
	add(h, 2, LIN_APPEND, "k", "c", false, false, NULL, 25, 0);
	add(h, 2, LIN_DELETE, "k", NULL, false, false, NULL, 26, 0);
	get(h, 3, "k", "a", 30, 40);
	get(h, 3, "k", "a", 500, 510);
	expect_ok(h);

	/* an unknown Get is left out whatever it says */
	h = hist();
	put(h, 1, "k", "a", 0, 10);
	add(h, 2, LIN_GET, "k", NULL, false, true, "zzz", 20, 0);
	expect_ok(h);
}

Test(lin_ok, many_keys)
{
	struct lin_history *h = hist();
	char key[16], val[16];
	for (int k = 0; k < 50; k++) {
		snprintf(key, sizeof(key), "key%d", k);
		for (int i = 0; i < 20; i++) {
			snprintf(val, sizeof(val), "v%d", i);
			uint64_t t = (uint64_t)i * 10;
			put(h, 1, key, val, t, t + 8);
			get(h, 2, key, val, t + 9, t + 9);
		}
	}
	struct lin_report r;
	cr_assert_eq(check(h, &r), LIN_OK);
	cr_expect_eq(r.keys, 50);
	cr_expect_eq(r.ops, 2000);
	cr_expect_eq(r.unknown_keys, 0);
	cr_expect_gt(r.steps, 0);
	lin_report_free(&r);
	lin_history_free(h);
}

/* ---- not linearizable ---- */

Test(lin_illegal, stale_read_after_completed_write)
{
	struct lin_history *h = hist();
	put(h, 1, "acct", "1", 0, 10);
	put(h, 1, "acct", "2", 20, 30);
	get(h, 2, "acct", "1", 40, 50);
	expect_illegal(h, "acct", 2);
}

Test(lin_illegal, read_of_a_value_never_written)
{
	struct lin_history *h = hist();
	put(h, 1, "k", "a", 0, 10);
	put(h, 2, "k", "b", 5, 15);
	get(h, 3, "k", "c", 8, 20);
	expect_illegal(h, "k", 2);

	h = hist();
	get(h, 1, "k", "a", 0, 10);
	expect_illegal(h, "k", 0);
}

Test(lin_illegal, new_then_old)
{
	struct lin_history *h = hist();
	put(h, 1, "k", "old", 0, 5);
	put(h, 1, "k", "new", 10, 100);
	get(h, 2, "k", "new", 20, 30);
	get(h, 3, "k", "old", 40, 50);
	expect_illegal(h, "k", 3);
}

Test(lin_illegal, append_applied_twice)
{
	struct lin_history *h = hist();
	append(h, 1, "log", "x", 0, 10);
	get(h, 2, "log", "xx", 20, 30);
	expect_illegal(h, "log", 1);
}

Test(lin_illegal, delete_found_on_missing_key)
{
	struct lin_history *h = hist();
	get(h, 2, "k", NULL, 0, 5);
	del(h, 1, "k", true, 10, 20);
	expect_illegal(h, "k", 1);
}

Test(lin_illegal, once_taken_effect_an_unknown_write_stays)
{
	struct lin_history *h = hist();
	put(h, 1, "k", "a", 0, 10);
	put_unknown(h, 2, "k", "b", 20);
	get(h, 3, "k", "b", 30, 40);
	get(h, 3, "k", "a", 50, 60);
	expect_illegal(h, "k", 3);
}

Test(lin_illegal, one_bad_key_among_many)
{
	struct lin_history *h = hist();
	char key[16];
	for (int k = 0; k < 20; k++) {
		snprintf(key, sizeof(key), "key%02d", k);
		put(h, 1, key, "a", 0, 10);
		get(h, 2, key, k == 13 ? "b" : "a", 20, 30);
	}
	struct lin_report r;
	cr_assert_eq(check(h, &r), LIN_ILLEGAL);
	cr_expect(strstr(r.explain, "key \"key13\"") != NULL, "%s",
		  r.explain);
	cr_expect(strstr(r.explain, "key \"key12\"") == NULL, "%s",
		  r.explain);
	lin_report_free(&r);
	lin_history_free(h);
}

Test(lin_illegal, binary_key_is_printed_in_hex)
{
	struct lin_history *h = lin_history_new();
	uint8_t key[] = { 0x00, 0xff, 0x10 };
	struct lin_op o = {
		.kind = LIN_GET, .key = key, .klen = sizeof(key),
		.known = true, .found = true, .out = key, .outlen = 1,
		.call = 1, .ret = 2,
	};
	cr_assert_eq(lin_history_add(h, &o), STATUS_OK);
	struct lin_report r;
	cr_assert_eq(check(h, &r), LIN_ILLEGAL);
	cr_expect(strstr(r.explain, "key 0x00ff10") != NULL, "%s", r.explain);
	lin_report_free(&r);
	lin_history_free(h);
}

/* The slice leaves out the Gets the failure does not need. */
Test(lin_illegal, slice_is_short)
{
	struct lin_history *h = hist();
	char val[16];
	for (int i = 0; i < 200; i++) {
		snprintf(val, sizeof(val), "v%d", i);
		uint64_t t = (uint64_t)i * 10;
		put(h, 1, "k", val, t, t + 4);
		get(h, 2, "k", val, t + 5, t + 9);
	}
	get(h, 2, "k", "v3", 5000, 5001); /* stale */
	struct lin_report r;
	cr_assert_eq(check(h, &r), LIN_ILLEGAL);
	cr_expect(strstr(r.explain, "slice: 201 of the key's 401 ops") !=
			  NULL,
		  "%s", r.explain);
	cr_expect(strstr(r.explain, "  #400 client 2 [5000, 5001] get -> "
				    "\"v3\"   <- cannot be placed") != NULL,
		  "%s", r.explain);
	lin_report_free(&r);
	lin_history_free(h);
}

/* ---- budget ---- */

static struct lin_history *wide_history(void)
{
	/* 24 concurrent appends and an impossible read after them: the
	 * search has to try every subset before it can say illegal */
	struct lin_history *h = hist();
	char v[8];
	for (int i = 0; i < 24; i++) {
		snprintf(v, sizeof(v), "%c", 'a' + i);
		append(h, (uint64_t)i, "w", v, 0, 100);
	}
	get(h, 99, "w", "nope", 200, 210);
	put(h, 1, "calm", "x", 0, 1);
	return h;
}

Test(lin_budget, exhaustion_gives_unknown)
{
	struct lin_history *h = wide_history();
	struct lin_opts o = { .max_steps_per_key = 1000 };
	struct lin_report r;
	cr_assert_eq(lin_check(h, &o, &r), LIN_UNKNOWN);
	cr_expect_eq(r.result, LIN_UNKNOWN);
	cr_expect_eq(r.keys, 2);
	cr_expect_eq(r.unknown_keys, 1);
	cr_assert_not_null(r.explain);
	cr_expect(strstr(r.explain, "key \"w\"") != NULL, "%s", r.explain);
	cr_expect(strstr(r.explain, "budget") != NULL, "%s", r.explain);
	lin_report_free(&r);
	lin_history_free(h);
}

Test(lin_budget, illegal_wins_over_unknown)
{
	struct lin_history *h = wide_history();
	get(h, 1, "calm", "y", 10, 20);
	struct lin_opts o = { .max_steps_per_key = 1000 };
	struct lin_report r;
	cr_assert_eq(lin_check(h, &o, &r), LIN_ILLEGAL);
	cr_expect_eq(r.unknown_keys, 1);
	cr_expect(strstr(r.explain, "key \"calm\"") != NULL, "%s", r.explain);
	lin_report_free(&r);
	lin_history_free(h);
}

/* ---- arguments, out of memory ---- */

Test(lin_args, add_rejects_bad_ops)
{
	struct lin_history *h = hist();
	struct lin_op o = { .kind = LIN_PUT, .known = true, .call = 5,
			    .ret = 4 };
	cr_expect_eq(lin_history_add(h, &o), STATUS_INVALID_ARGUMENT);
	o.known = false; /* ret ignored */
	cr_expect_eq(lin_history_add(h, &o), STATUS_OK);
	o.kind = (enum lin_kind)7;
	cr_expect_eq(lin_history_add(h, &o), STATUS_INVALID_ARGUMENT);
	o.kind = LIN_PUT;
	o.vlen = 3; /* value NULL */
	cr_expect_eq(lin_history_add(h, &o), STATUS_INVALID_ARGUMENT);
	cr_expect_eq(lin_history_len(h), 1);
	lin_history_free(h);
	lin_history_free(NULL);
	lin_report_free(NULL);
}

Test(lin_args, bytes_str)
{
	char buf[128];
	cr_expect_str_eq(lin_bytes_str(NULL, 0, buf, sizeof(buf)), "\"\"");
	cr_expect_str_eq(lin_bytes_str((const uint8_t *)"a\"b", 3, buf,
				       sizeof(buf)),
			 "\"a\\\"b\"");
	const uint8_t bin[] = { 0x00, 0x7f, 0xab };
	cr_expect_str_eq(lin_bytes_str(bin, 3, buf, sizeof(buf)), "0x007fab");
	uint8_t big[1000];
	memset(big, 'z', sizeof(big));
	lin_bytes_str(big, sizeof(big), buf, sizeof(buf));
	cr_expect(strstr(buf, "...(1000 bytes)") != NULL, "%s", buf);
	cr_expect_lt(strlen(buf), 64);
	lin_bytes_str(big, sizeof(big), buf, 8);
	cr_expect_eq(strlen(buf), 7);
}

static struct lin_history *small_illegal(void)
{
	struct lin_history *h = hist();
	put(h, 1, "a", "1", 0, 10);
	put(h, 2, "a", "2", 5, 15);
	append(h, 3, "a", "3", 6, 16);
	get(h, 4, "a", "23", 20, 30);
	get(h, 4, "a", "1", 40, 50);
	put(h, 1, "b", "x", 0, 10);
	get(h, 2, "b", "x", 11, 12);
	return h;
}

Test(lin_args, out_of_memory_is_never_silent)
{
	struct lin_history *h = small_illegal();
	struct lin_report want;
	cr_assert_eq(lin_check(h, NULL, &want), LIN_ILLEGAL);
	bool reached = false;
	for (long n = 1; n < 2000 && !reached; n++) {
		struct lin_report r;
		mem_fail_after(n);
		enum lin_result res = lin_check(h, NULL, &r);
		mem_fail_reset();
		if (res == LIN_ILLEGAL) {
			cr_expect_str_eq(r.explain, want.explain);
			reached = true;
		} else {
			cr_expect_eq(res, LIN_UNKNOWN, "n=%ld", n);
			cr_expect(r.explain &&
					  strstr(r.explain, "out of memory"),
				  "n=%ld", n);
		}
		lin_report_free(&r);
	}
	cr_expect(reached);
	lin_report_free(&want);
	lin_history_free(h);
}

/* ---- the text form ---- */

static char *write_text(const struct lin_history *h, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	cr_assert_not_null(f);
	cr_assert_eq(lin_history_write(h, f), STATUS_OK);
	fclose(f);
	return buf; /* free() */
}

static int read_text(const char *text, struct lin_history **out, char *err,
		     size_t cap)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	cr_assert_not_null(f);
	int rc = lin_history_read(f, out, err, cap);
	fclose(f);
	return rc;
}

static bool bytes_eq(const uint8_t *a, size_t an, const uint8_t *b,
		     size_t bn)
{
	return an == bn && (an == 0 || !memcmp(a, b, an));
}

Test(lin_text, round_trip)
{
	struct lin_history *h = small_illegal();
	uint8_t bin[300];
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 7);
	struct lin_op o = {
		.client = UINT64_MAX, .kind = LIN_PUT, .key = bin, .klen = 5,
		.value = bin, .vlen = sizeof(bin), .known = true,
		.call = 100, .ret = UINT64_MAX,
	};
	cr_assert_eq(lin_history_add(h, &o), STATUS_OK);
	o = (struct lin_op){ .kind = LIN_GET, .key = bin, .klen = 5,
			     .known = true, .found = true, .out = bin,
			     .outlen = sizeof(bin), .call = 200, .ret = 201 };
	cr_assert_eq(lin_history_add(h, &o), STATUS_OK);
	o.kind = LIN_APPEND; /* empty value, empty key, unknown outcome */
	o.klen = 0;
	o.vlen = 0;
	o.known = false;
	cr_assert_eq(lin_history_add(h, &o), STATUS_OK);
	put(h, 9, "e", "", 1, 2);
	get(h, 9, "e", "", 3, 4);
	del(h, 9, "e", true, 5, 6);
	get(h, 9, "e", NULL, 7, 8);
	add(h, 9, LIN_GET, "e", NULL, false, false, NULL, 9, 0);

	size_t len;
	char *text = write_text(h, &len);
	struct lin_history *back = NULL;
	char err[256];
	cr_assert_eq(read_text(text, &back, err, sizeof(err)), STATUS_OK,
		     "%s", err);
	cr_assert_eq(lin_history_len(back), lin_history_len(h));
	for (size_t i = 0; i < lin_history_len(h); i++) {
		struct lin_op a, b;
		lin_history_get(h, i, &a);
		lin_history_get(back, i, &b);
		cr_expect_eq(a.client, b.client, "op %zu", i);
		cr_expect_eq(a.kind, b.kind, "op %zu", i);
		cr_expect_eq(a.known, b.known, "op %zu", i);
		cr_expect_eq(a.found, b.found, "op %zu", i);
		cr_expect_eq(a.call, b.call, "op %zu", i);
		cr_expect_eq(a.ret, b.ret, "op %zu", i);
		cr_expect(bytes_eq(a.key, a.klen, b.key, b.klen), "op %zu", i);
		cr_expect(bytes_eq(a.value, a.vlen, b.value, b.vlen), "op %zu",
			  i);
		cr_expect(bytes_eq(a.out, a.outlen, b.out, b.outlen), "op %zu",
			  i);
	}
	size_t len2;
	char *text2 = write_text(back, &len2);
	cr_expect_str_eq(text2, text);

	struct lin_report r1, r2;
	cr_expect_eq(lin_check(h, NULL, &r1), LIN_ILLEGAL);
	cr_expect_eq(lin_check(back, NULL, &r2), LIN_ILLEGAL);
	cr_expect_str_eq(r1.explain, r2.explain);
	cr_expect_eq(r1.steps, r2.steps);
	lin_report_free(&r1);
	lin_report_free(&r2);
	free(text);
	free(text2);
	lin_history_free(back);
	lin_history_free(h);
}

Test(lin_text, comments_and_blank_lines)
{
	struct lin_history *h = NULL;
	char err[256];
	const char *text = "skv-lin-history 1\n"
			   "# recorded by hand\n"
			   "\n"
			   "1 put 6b 78 ok - 0 10\n"
			   "2 get 6b - found 78 20 30\n"
			   "3 delete 6b - unknown - 40 -";
	cr_assert_eq(read_text(text, &h, err, sizeof(err)), STATUS_OK, "%s",
		     err);
	cr_expect_eq(lin_history_len(h), 3);
	struct lin_report r;
	cr_expect_eq(lin_check(h, NULL, &r), LIN_OK);
	lin_report_free(&r);
	lin_history_free(h);
}

Test(lin_text, malformed)
{
	static const struct {
		const char *text, *err;
	} cases[] = {
		{ "", "line 1: empty file" },
		{ "history\n", "line 1: not a history" },
		{ "skv-lin-history 1\n1 put 6b 78 ok - 0\n",
		  "line 2: 7 fields" },
		{ "skv-lin-history 1\n1 put 6b 78 ok - 0 10 x\n",
		  "line 2: more than 8 fields" },
		{ "skv-lin-history 1\n1 put 6b 78 ok - 0 10\nx put 6b 78 ok - "
		  "0 10\n",
		  "line 3: bad client" },
		{ "skv-lin-history 1\n1 cas 6b 78 ok - 0 10\n",
		  "line 2: bad kind" },
		{ "skv-lin-history 1\n1 put 6 78 ok - 0 10\n",
		  "line 2: bad key" },
		{ "skv-lin-history 1\n1 put 6b zz ok - 0 10\n",
		  "line 2: bad value" },
		{ "skv-lin-history 1\n1 get 6b 78 found 78 0 10\n",
		  "line 2: bad value" },
		{ "skv-lin-history 1\n1 get 6b - ok 78 0 10\n",
		  "line 2: bad outcome" },
		{ "skv-lin-history 1\n1 get 6b - missing 78 0 10\n",
		  "line 2: bad out" },
		{ "skv-lin-history 1\n1 put 6b 78 ok - 10 9\n",
		  "line 2: return time 9 before call time 10" },
		{ "skv-lin-history 1\n1 put 6b 78 ok - 10 -\n",
		  "line 2: bad return time" },
		{ "skv-lin-history 1\n1 put 6b 78 unknown - 10 11\n",
		  "line 2: bad return time" },
		{ "skv-lin-history 1\n1 put 6b 78 ok - 99999999999999999999 "
		  "-\n",
		  "line 2: bad call time" },
		{ "skv-lin-history 1\n1  put 6b 78 ok - 0 10\n",
		  "line 2: more than 8 fields" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lin_history *h = (struct lin_history *)1;
		char err[256];
		int rc = read_text(cases[i].text, &h, err, sizeof(err));
		cr_expect_eq(rc, STATUS_CORRUPTION, "case %zu", i);
		cr_expect_null(h, "case %zu", i);
		cr_expect(!strncmp(err, cases[i].err, strlen(cases[i].err)),
			  "case %zu: got '%s', want '%s...'", i, err,
			  cases[i].err);
	}
}

/* ---- seeded property test ---- */

#define KEYS_MAX 4

struct model {
	bool present[KEYS_MAX];
	char val[KEYS_MAX][4096];
	size_t len[KEYS_MAX];
};

/*
 * A history cut from a sequential execution: op i takes effect at time
 * 10 i + 5 on the model, and its interval is a random stretch around that
 * point, on a client that is free by then. Some writes time out (unknown
 * outcome), having taken effect or not.
 */
static struct lin_history *gen_history(uint64_t seed, size_t *get_hid,
				       size_t *n_gets)
{
	struct sim_rng rng;
	sim_rng_seed(&rng, seed);
	struct lin_history *h = hist();
	struct model *m = calloc(1, sizeof(*m));
	cr_assert_not_null(m);
	size_t n = sim_rng_range(&rng, 1, 200);
	size_t keys = sim_rng_range(&rng, 1, KEYS_MAX + 1);
	uint64_t spread = sim_rng_range(&rng, 1, 60);
	uint64_t busy_until[64] = { 0 };
	size_t clients = sim_rng_range(&rng, 1, 64);
	*n_gets = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t at = 10 * (uint64_t)i + 100;
		uint64_t call = at - sim_rng_range(&rng, 0, spread);
		uint64_t ret = at + sim_rng_range(&rng, 0, spread);
		size_t c = sim_rng_range(&rng, 0, clients);
		for (size_t t = 0; t < clients && busy_until[c] >= call; t++)
			c = (c + 1) % clients;
		if (busy_until[c] >= call)
			continue; /* every client busy: no op at this point */
		busy_until[c] = ret;
		size_t k = sim_rng_range(&rng, 0, keys);
		char key[8], v[32];
		snprintf(key, sizeof(key), "k%zu", k);
		int vl = snprintf(v, sizeof(v), "%zu.", i);
		if (sim_rng_chance(&rng, 0.1))
			v[0] = '\0', vl = 0;
		struct lin_op o = {
			.client = c, .key = (const uint8_t *)key,
			.klen = strlen(key), .value = (const uint8_t *)v,
			.vlen = (size_t)vl, .known = true,
			.call = call, .ret = ret,
		};
		bool applies = true;
		uint64_t r = sim_rng_range(&rng, 0, 100);
		if (r < 45) {
			o.kind = LIN_GET;
			o.found = m->present[k];
			o.out = (const uint8_t *)m->val[k];
			o.outlen = m->len[k];
		} else if (r < 65) {
			o.kind = LIN_PUT;
		} else if (r < 90) {
			o.kind = LIN_APPEND;
			if (m->len[k] + o.vlen > sizeof(m->val[k]))
				o.kind = LIN_PUT;
		} else {
			o.kind = LIN_DELETE;
			o.found = m->present[k];
		}
		if (o.kind != LIN_GET && sim_rng_chance(&rng, 0.08)) {
			o.known = false;
			applies = sim_rng_chance(&rng, 0.5);
			busy_until[c] = UINT64_MAX; /* that client gave up */
		}
		if (o.kind == LIN_GET && o.known)
			get_hid[(*n_gets)++] = lin_history_len(h);
		cr_assert_eq(lin_history_add(h, &o), STATUS_OK);
		if (!applies)
			continue;
		if (o.kind == LIN_PUT) {
			memcpy(m->val[k], v, o.vlen);
			m->len[k] = o.vlen;
			m->present[k] = true;
		} else if (o.kind == LIN_APPEND) {
			if (!m->present[k])
				m->len[k] = 0;
			memcpy(m->val[k] + m->len[k], v, o.vlen);
			m->len[k] += o.vlen;
			m->present[k] = true;
		} else if (o.kind == LIN_DELETE) {
			m->present[k] = false;
			m->len[k] = 0;
		}
	}
	free(m);
	return h;
}

/* A copy of h with op `bad` (a Get) reading a value never written. */
static struct lin_history *corrupt(const struct lin_history *h, size_t bad)
{
	struct lin_history *c = hist();
	for (size_t i = 0; i < lin_history_len(h); i++) {
		struct lin_op o;
		lin_history_get(h, i, &o);
		if (i == bad) {
			o.found = true;
			o.out = (const uint8_t *)"never\xff";
			o.outlen = 6;
		}
		cr_assert_eq(lin_history_add(c, &o), STATUS_OK);
	}
	return c;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, NULL, 0) : dflt;
}

Test(lin_random, execution_passes_corruption_fails)
{
	uint64_t one = env_u64("LIN_SEED", 0);
	uint64_t first = one ? one : 1;
	uint64_t count = one ? 1 : env_u64("LIN_HISTORIES", 300);
	uint64_t steps = 0, ops = 0, unknown = 0;
	cr_log_info("lin_random: seeds %" PRIu64 "..%" PRIu64
		    " (replay one with LIN_SEED=n)",
		    first, first + count - 1);
	for (uint64_t seed = first; seed < first + count; seed++) {
		size_t gets[256], n_gets;
		struct lin_history *h = gen_history(seed, gets, &n_gets);
		struct lin_report r;
		enum lin_result res = lin_check(h, NULL, &r);
		cr_assert_eq(res, LIN_OK, "seed %" PRIu64 " (LIN_SEED=%" PRIu64
			     "): %s\n%s", seed, seed, lin_result_str(res),
			     r.explain ? r.explain : "");
		steps += r.steps;
		ops += r.ops;
		lin_report_free(&r);
		if (n_gets) {
			struct sim_rng rng;
			sim_rng_seed(&rng, seed ^ 0xc0ffee);
			size_t bad = gets[sim_rng_range(&rng, 0, n_gets)];
			struct lin_history *c = corrupt(h, bad);
			res = lin_check(c, NULL, &r);
			if (res == LIN_UNKNOWN && r.unknown_keys) {
				/* many unknown-outcome writes pending on a hot
				 * key can outgrow the budget: allowed, rarely */
				cr_log_info("lin_random: seed %" PRIu64
					    " corrupted: unknown", seed);
				unknown++;
				lin_report_free(&r);
				lin_history_free(c);
				lin_history_free(h);
				continue;
			}
			cr_assert_eq(res, LIN_ILLEGAL,
				     "seed %" PRIu64 " (LIN_SEED=%" PRIu64
				     "), op %zu corrupted: %s",
				     seed, seed, bad, lin_result_str(res));
			char want[64];
			snprintf(want, sizeof(want), "  #%zu ", bad);
			const char *at = strstr(r.explain, want);
			cr_assert(at && strstr(at, "cannot be placed") <
						strchr(at, '\n'),
				  "seed %" PRIu64 ": does not blame #%zu:\n%s",
				  seed, bad, r.explain);
			lin_report_free(&r);
			lin_history_free(c);
		}
		lin_history_free(h);
	}
	cr_log_info("lin_random: %" PRIu64 " histories, %" PRIu64
		    " ops, %" PRIu64 " steps, %" PRIu64 " corrupted unknown",
		    count, ops, steps, unknown);
	cr_expect_leq(unknown * 100, count, "%" PRIu64 " of %" PRIu64
		      " corrupted histories unknown", unknown, count);
}

/* A simulator-sized history: thousands of ops over tens of keys. */
Test(lin_random, large_history_is_quick)
{
	struct sim_rng rng;
	uint64_t seed = env_u64("LIN_SEED", 77);
	sim_rng_seed(&rng, seed);
	struct lin_history *h = hist();
	char cur[32][64];
	bool present[32] = { false };
	uint64_t busy_until[16] = { 0 };
	for (size_t i = 0; i < 6000; i++) {
		uint64_t at = 10 * (uint64_t)i + 100;
		uint64_t call = at - sim_rng_range(&rng, 0, 50);
		uint64_t ret = at + sim_rng_range(&rng, 0, 50);
		size_t c = sim_rng_range(&rng, 0, 16);
		if (busy_until[c] >= call)
			continue;
		busy_until[c] = ret;
		size_t k = sim_rng_range(&rng, 0, 32);
		char key[8], v[32];
		snprintf(key, sizeof(key), "k%zu", k);
		snprintf(v, sizeof(v), "%zu", i);
		if (sim_rng_chance(&rng, 0.5)) {
			get(h, c, key, present[k] ? cur[k] : NULL, call, ret);
		} else {
			put(h, c, key, v, call, ret);
			strcpy(cur[k], v);
			present[k] = true;
		}
	}
	struct lin_report r;
	cr_assert_eq(lin_check(h, NULL, &r), LIN_OK, "seed %" PRIu64, seed);
	cr_log_info("large: %zu ops over %zu keys, %" PRIu64 " steps", r.ops,
		    r.keys, r.steps);
	lin_report_free(&r);
	lin_history_free(h);
}
