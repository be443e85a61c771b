/* Unit tests for the pure base: status, mem, buf, shard hash, flags, log. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/shard.h"
#include "common/status.h"
#include "proto/raft.pb-c.h"
#include "proto/status.pb-c.h"

Test(status, matches_wire_enum)
{
	/* Every enum status value has the same number and name on the wire. */
	const ProtobufCEnumDescriptor *d = &skv__status__descriptor;
	cr_assert_eq(d->n_values, STATUS_COUNT_);
	for (int s = 0; s < STATUS_COUNT_; s++) {
		const ProtobufCEnumValue *v =
			protobuf_c_enum_descriptor_get_value(d, s);
		cr_assert_not_null(v, "status %d missing on the wire", s);
		char want[64];
		snprintf(want, sizeof(want), "STATUS_%s", status_name(s));
		cr_assert_str_eq(v->name, want);
	}
}

Test(status, strings)
{
	cr_assert_str_eq(status_str(STATUS_OK), "ok");
	cr_assert_str_eq(status_str(STATUS_NOT_LEADER), "not the leader");
	cr_assert_str_eq(status_name(STATUS_WRONG_GROUP), "WRONG_GROUP");
	cr_assert_str_eq(status_str(-1), "unknown status");
	cr_assert_str_eq(status_str(STATUS_COUNT_), "unknown status");
}

Test(mem, injected_failure_hits_nth_allocation)
{
	mem_fail_after(3);
	void *a = mem_alloc(8), *b = mem_alloc(8), *c = mem_alloc(8);
	void *d = mem_alloc(8);
	mem_fail_reset();
	void *e = mem_alloc(8);
	cr_assert(a && b);
	cr_assert_null(c);
	cr_assert_null(d, "failures continue until reset");
	cr_assert_not_null(e);
	mem_free(a);
	mem_free(b);
	mem_free(e);
}

Test(mem, grow_keeps_contents_and_refuses_what_cannot_fit)
{
	int *a = NULL;
	size_t cap = 0;
	cr_assert(mem_grow((void **)&a, &cap, 1, sizeof(*a)));
	cr_assert_eq(cap, 16);
	for (int i = 0; i < 16; i++)
		a[i] = i;
	cr_assert(mem_grow((void **)&a, &cap, 17, sizeof(*a)));
	cr_assert_eq(cap, 32);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(a[i], i);
	/* Enough room: nothing happens. */
	int *before = a;
	cr_assert(mem_grow((void **)&a, &cap, 32, sizeof(*a)));
	cr_assert_eq(a, before);
	/* A size that overflows, and a failed allocation, leave it as is. */
	cr_assert_not(mem_grow((void **)&a, &cap, SIZE_MAX / 2, sizeof(*a)));
	mem_fail_after(1);
	cr_assert_not(mem_grow((void **)&a, &cap, 33, sizeof(*a)));
	mem_fail_reset();
	cr_assert_eq(cap, 32);
	cr_assert_eq(a[15], 15);
	mem_free(a);
}

Test(buf, append_grow_and_be_codecs)
{
	struct buf b;
	buf_init(&b);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(buf_append(&b, "xy", 2), STATUS_OK);
	cr_assert_eq(b.len, 2000);
	cr_assert_eq(buf_append_u32be(&b, 0x01020304u), STATUS_OK);
	cr_assert_eq(buf_append_u64be(&b, 0x1122334455667788ull), STATUS_OK);
	const uint8_t want32[] = {1, 2, 3, 4};
	cr_assert_arr_eq(b.data + 2000, want32, 4);
	cr_assert_eq(get_u32be(b.data + 2000), 0x01020304u);
	cr_assert_eq(get_u64be(b.data + 2004), 0x1122334455667788ull);
	buf_reset(&b);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(buf_set(&b, "abc", 3), STATUS_OK);
	cr_assert_eq(memcmp(b.data, "abc", 3), 0);
	buf_free(&b);
	cr_assert_null(b.data);
}

Test(buf, out_of_memory_leaves_contents)
{
	struct buf b;
	buf_init(&b);
	cr_assert_eq(buf_append(&b, "abc", 3), STATUS_OK);
	mem_fail_after(1);
	int rc = buf_append(&b, (char[200]){0}, 200);
	mem_fail_reset();
	cr_assert_eq(rc, STATUS_NO_MEMORY);
	cr_assert_eq(b.len, 3);
	cr_assert_eq(memcmp(b.data, "abc", 3), 0);
	buf_free(&b);
}

Test(shard, fnv1a_reference_values)
{
	/* Published FNV-1a 32-bit test vectors: the mapping is a wire
	 * contract and must never change. */
	cr_assert_eq(shard_hash("", 0), 0x811c9dc5u);
	cr_assert_eq(shard_hash("a", 1), 0xe40c292cu);
	cr_assert_eq(shard_hash("foobar", 6), 0xbf9cf968u);
	cr_assert_eq(shard_for_key("foobar", 6, 10), 0xbf9cf968u % 10);
}

Test(shard, spreads_keys_evenly)
{
	uint32_t counts[10] = {0};
	char key[32];
	for (int i = 0; i < 10000; i++) {
		int n = snprintf(key, sizeof(key), "key-%d", i);
		counts[shard_for_key(key, (size_t)n, 10)]++;
	}
	for (int s = 0; s < 10; s++)
		cr_assert(counts[s] > 800 && counts[s] < 1200,
			  "shard %d got %u of 10000 keys", s, counts[s]);
}

struct opts {
	const char *addr;
	int64_t id;
	uint64_t nshards;
	bool verbose;
};

static void opts_table(struct opts *o, struct flag *t)
{
	struct flag tmpl[] = {
		{.name = "addr", .type = FLAG_STRING, .dest = &o->addr,
		 .metavar = "ADDR", .help = "listen address",
		 .required = true},
		{.name = "id", .type = FLAG_INT, .dest = &o->id,
		 .metavar = "N", .help = "node id", .min = 1, .max = 7},
		{.name = "nshards", .type = FLAG_UINT, .dest = &o->nshards,
		 .metavar = "N", .help = "shards"},
		{.name = "verbose", .type = FLAG_BOOL, .dest = &o->verbose,
		 .help = "chatty"},
	};
	memcpy(t, tmpl, sizeof(tmpl));
}

#define NFLAGS 4

static int parse(struct opts *o, char *err, struct flags_result *res,
		 int argc, char **argv)
{
	struct flag t[NFLAGS];
	*o = (struct opts){.nshards = 10};
	opts_table(o, t);
	return flags_parse(t, NFLAGS, argc, argv, res, err, 256);
}

Test(flags, both_value_forms_and_positionals)
{
	char *argv[] = {"prog", "--addr", "1.2.3.4:5", "--id=3",
			"--verbose", "join", "--not-a-flag"};
	struct opts o;
	struct flags_result res;
	char err[256];
	cr_assert_eq(parse(&o, err, &res, 7, argv), STATUS_OK, "%s", err);
	cr_assert_str_eq(o.addr, "1.2.3.4:5");
	cr_assert_eq(o.id, 3);
	cr_assert(o.verbose);
	cr_assert_eq(o.nshards, 10, "default kept");
	cr_assert_eq(res.first_arg, 5);
	flags_release(&res);
}

Test(flags, errors_are_clear)
{
	struct {
		int argc;
		char *argv[4];
		const char *want;
	} cases[] = {
		{2, {"p", "--bogus"}, "unknown flag '--bogus'"},
		{2, {"p", "--addr"}, "--addr: missing ADDR"},
		{3, {"p", "--addr=x", "--id=9"}, "--id: 9 is out of range [1, 7]"},
		{3, {"p", "--addr=x", "--id=abc"}, "--id: 'abc' is not an integer"},
		{3, {"p", "--addr=x", "--nshards=-1"}, "--nshards: '-1' must not be negative"},
		{3, {"p", "--addr=x", "--verbose=maybe"}, "--verbose: expected true or false"},
		{1, {"p"}, "missing required flag --addr"},
		{2, {"p", "-x"}, "unknown option '-x'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct opts o;
		struct flags_result res;
		char err[256] = "";
		int rc = parse(&o, err, &res, cases[i].argc, cases[i].argv);
		flags_release(&res);
		cr_assert_eq(rc, STATUS_INVALID_ARGUMENT, "case %zu", i);
		cr_assert(strstr(err, cases[i].want), "case %zu: got '%s'", i,
			  err);
	}
}

Test(flags, help_skips_required_check)
{
	char *argv[] = {"prog", "--help"};
	struct opts o;
	struct flags_result res;
	char err[256];
	cr_assert_eq(parse(&o, err, &res, 2, argv), STATUS_OK);
	cr_assert(res.help);
	flags_release(&res);
}

Test(flags, config_file_then_command_line_wins)
{
	char path[] = "/tmp/skv-flags-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	const char *text = "# a comment\n"
			   "addr = 10.0.0.1:7000   # trailing comment\n"
			   "\n"
			   "id=2\r\n"
			   "nshards = 16\n";
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char *argv[] = {"prog", "--id", "5", "--config", path};
	struct opts o;
	struct flags_result res;
	char err[256];
	int rc = parse(&o, err, &res, 5, argv);
	cr_assert_eq(rc, STATUS_OK, "%s", err);
	cr_assert_str_eq(o.addr, "10.0.0.1:7000");
	cr_assert_eq(o.id, 5, "the command line overrides the file");
	cr_assert_eq(o.nshards, 16);
	flags_release(&res);

	FILE *fp = fopen(path, "w");
	fputs("addr = x\nbogus = 1\n", fp);
	fclose(fp);
	rc = parse(&o, err, &res, 5, argv);
	flags_release(&res);
	cr_assert_eq(rc, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "line 2: unknown setting 'bogus'"), "%s", err);
	unlink(path);

	char *missing[] = {"prog", "--config=/nonexistent/skv.conf"};
	rc = parse(&o, err, &res, 2, missing);
	flags_release(&res);
	cr_assert_eq(rc, STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(log, level_parse)
{
	enum log_level l;
	cr_assert_eq(log_level_parse("WARN", &l), 0);
	cr_assert_eq(l, LOG_WARN);
	cr_assert_eq(log_level_parse("loud", &l), -1);
}

Test(codec, round_trip_and_append)
{
	Skv__Entry e = SKV__ENTRY__INIT;
	e.term = 7;
	e.index = 42;
	e.data.data = (uint8_t *)"hello";
	e.data.len = 5;
	struct buf b;
	buf_init(&b);
	cr_assert_eq(buf_append(&b, "HDR", 3), STATUS_OK);
	cr_assert_eq(codec_pack_append(&e.base, &b), STATUS_OK);
	ProtobufCMessage *m;
	cr_assert_eq(codec_unpack(&skv__entry__descriptor, b.data + 3,
				  b.len - 3, &m),
		     STATUS_OK);
	Skv__Entry *got = (Skv__Entry *)m;
	cr_assert_eq(got->term, 7);
	cr_assert_eq(got->index, 42);
	cr_assert_eq(got->data.len, 5);
	cr_assert_eq(memcmp(got->data.data, "hello", 5), 0);
	codec_free(m);
	cr_assert_eq(codec_pack(&e.base, &b), STATUS_OK);
	cr_assert_eq(b.len, protobuf_c_message_get_packed_size(&e.base));
	buf_free(&b);
}

Test(codec, garbage_is_invalid_argument)
{
	/* A length-delimited field whose length runs past the end. */
	const uint8_t bad[] = {0x22, 0x7f, 'x'};
	ProtobufCMessage *m = (ProtobufCMessage *)1;
	cr_assert_eq(codec_unpack(&skv__entry__descriptor, bad, sizeof(bad),
				  &m),
		     STATUS_INVALID_ARGUMENT);
	cr_assert_null(m);
	codec_free(NULL);
}

Test(codec, allocation_failure_is_reported_without_leak)
{
	Skv__Entry e = SKV__ENTRY__INIT;
	e.data.data = (uint8_t *)"payload";
	e.data.len = 7;
	struct buf b;
	buf_init(&b);
	cr_assert_eq(codec_pack(&e.base, &b), STATUS_OK);
	for (long n = 1; n <= 3; n++) {
		ProtobufCMessage *m;
		mem_fail_after(n);
		int rc = codec_unpack(&skv__entry__descriptor, b.data, b.len,
				      &m);
		mem_fail_reset();
		if (rc == STATUS_OK)
			codec_free(m);
		else
			cr_assert_null(m);
	}
	buf_free(&b);
}

static void fixed_clock(void *arg, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", (const char *)arg);
}

Test(log, line_format_level_filter_and_truncation, .init = cr_redirect_stderr)
{
	log_set_level(LOG_INFO);
	log_set_node("g100-2");
	log_set_clock(fixed_clock, "12:00:00.000001");
	log_info("raft", "became leader term %d", 5);
	log_debug("raft", "not shown at info");
	log_set_clock(NULL, NULL);
	log_set_node(NULL);
	log_warn(NULL, "bare");
	char big[2000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_error("m", "%s", big);
	fflush(stderr);

	char want[1200];
	size_t n = (size_t)snprintf(
		want, sizeof(want),
		"I 12:00:00.000001 [g100-2] raft: became leader term 5\n"
		"W bare\n");
	/* A long line is cut to 1,023 bytes, "..." before the newline. */
	char *line = want + n;
	memcpy(line, "E m: ", 5);
	memset(line + 5, 'x', 1019 - 5);
	memcpy(line + 1019, "...\n", 5);
	cr_assert_stderr_eq_str(want);
}

Test(log, fatal_exits_with_status_1, .exit_code = 1,
     .init = cr_redirect_stderr)
{
	log_fatal("store", "write failed: %s", "IO error");
}
