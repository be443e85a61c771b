/*
 * kvcli_args: see kvcli_args.h. Messages name what was wrong and show
 * the right form: the reader is someone at a shell prompt.
 */
#include "clerk/kvcli_args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "common/mem.h"
#include "common/shard.h"
#include "common/status.h"

#define ADDR_FORM "HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:7001"

static const char usage_get[] = "usage: kvcli [FLAGS] get KEY";
static const char usage_put[] = "usage: kvcli [FLAGS] put KEY [VALUE|-]";
static const char usage_append[] =
	"usage: kvcli [FLAGS] append KEY [VALUE|-]";
static const char usage_delete[] = "usage: kvcli [FLAGS] delete KEY";
static const char usage_all[] =
	"usage: kvcli [--masters ADDR,ADDR,...] [--timeout MS] [--json] "
	"COMMAND KEY [VALUE]";

const char *kvcli_cmd_usage(enum kvcli_cmd c)
{
	switch (c) {
	case KVCLI_GET:
		return usage_get;
	case KVCLI_PUT:
		return usage_put;
	case KVCLI_APPEND:
		return usage_append;
	case KVCLI_DELETE:
		return usage_delete;
	case KVCLI_NONE:
	case KVCLI_HELP:
		break;
	}
	return usage_all;
}

const char *kvcli_cmd_name(enum kvcli_cmd c)
{
	switch (c) {
	case KVCLI_GET:
		return "get";
	case KVCLI_PUT:
		return "put";
	case KVCLI_APPEND:
		return "append";
	case KVCLI_DELETE:
		return "delete";
	case KVCLI_NONE:
	case KVCLI_HELP:
		break;
	}
	return "command";
}

int kvcli_exit_code(enum kv_status st)
{
	switch (st) {
	case KV_OK:
		return KVCLI_EXIT_OK;
	case KV_NOT_FOUND:
		return KVCLI_EXIT_NOT_FOUND;
	case KV_TOO_LARGE:
	case KV_INVALID_ARGUMENT:
		return KVCLI_EXIT_REFUSED;
	case KV_TIMEOUT:
	case KV_NO_MEMORY:
	case KV_UNAVAILABLE:
	case KV_CLOSED:
	case KV_INTERNAL:
		break;
	}
	return KVCLI_EXIT_UNAVAILABLE;
}

/* Flag destinations, apart from the result so --help can show the
 * defaults without a parse. */
struct flag_values {
	const char *masters;
	uint64_t timeout_ms;
	bool json;
};

enum { FLAG_MASTERS, FLAG_TIMEOUT, FLAG_JSON, N_FLAGS };

static void flag_table(struct flag *t, struct flag_values *v)
{
	memset(t, 0, N_FLAGS * sizeof(*t));
	t[FLAG_MASTERS] = (struct flag){
		.name = "masters",
		.type = FLAG_STRING,
		.dest = &v->masters,
		.metavar = "ADDR,ADDR,...",
		.help = "the shard masters, host:port each (default: $"
			KVCLI_MASTERS_ENV ")",
	};
	t[FLAG_TIMEOUT] = (struct flag){
		.name = "timeout",
		.type = FLAG_UINT,
		.dest = &v->timeout_ms,
		.metavar = "MS",
		.help = "give up after this many milliseconds",
		.min = 1,
		.max = 86400000,
	};
	t[FLAG_JSON] = (struct flag){
		.name = "json",
		.type = FLAG_BOOL,
		.dest = &v->json,
		.help = "print one JSON object on stdout, also for errors",
	};
}

void kvcli_usage(FILE *out)
{
	struct flag t[N_FLAGS];
	struct flag_values v = {.timeout_ms = KVCLI_TIMEOUT_MS_DEFAULT};
	flag_table(t, &v);
	fprintf(out,
		"%s\n"
		"\n"
		"Reads and writes keys of a shardkv cluster; linearizable, "
		"and a write applies\n"
		"at most once however often it is retried within the "
		"timeout.\n"
		"\n"
		"commands:\n"
		"  get KEY                print the value, exactly its bytes "
		"(no newline added)\n"
		"  put KEY [VALUE|-]      set the value\n"
		"  append KEY [VALUE|-]   append to the value (a missing key "
		"counts as empty)\n"
		"  delete KEY             remove the key\n"
		"  help                   show this help\n"
		"\n"
		"  Without VALUE, or with \"-\", the value is read from stdin "
		"(any bytes).\n"
		"  Keys are 1 to %d bytes, values at most %u bytes (also "
		"after an append).\n"
		"  Put \"--\" before a VALUE or KEY that starts with '-'.\n"
		"\n"
		"flags (before or after the command):\n",
		usage_all, SHARD_KEY_BYTES_MAX, SHARD_VALUE_BYTES_MAX);
	flags_usage(t, N_FLAGS, out);
	fprintf(out,
		"\n"
		"environment:\n"
		"  " KVCLI_MASTERS_ENV
		"    the shard masters (ADDR,ADDR,...) when --masters is not "
		"given\n"
		"\n"
		"output: get prints the value raw; put, append and delete "
		"print nothing.\n"
		"  With --json one object: {\"ok\":true} (get: "
		"{\"ok\":true,\"value\":\"...\"}, or\n"
		"  \"value_base64\" when the value is not UTF-8), "
		"{\"ok\":false,\"status\":\"...\",\"error\":\"...\"}\n"
		"  on failure. Errors are one line on stderr, "
		"\"kvcli: ...\".\n"
		"\n"
		"exit status:\n"
		"  0  done\n"
		"  1  not found (get or delete of a missing key)\n"
		"  2  usage error (or stdin unreadable)\n"
		"  3  no answer in time (shard masters or group unreachable, "
		"no leader),\n"
		"     or the client could not run; a put/append/delete may "
		"or may not\n"
		"     have applied\n"
		"  4  refused: key or value too large, or invalid; nothing "
		"changed\n"
		"\n"
		"example:\n"
		"  export " KVCLI_MASTERS_ENV
		"=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003\n"
		"  kvcli put greeting hello && kvcli append greeting ', "
		"world'\n"
		"  kvcli get greeting; echo\n"
		"  kvcli put photo < photo.jpg\n");
}

static int fail(char *err, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	return STATUS_INVALID_ARGUMENT;
}

/* ---- addresses ---- */

static int check_addr(const char *s, size_t len, char *why, size_t cap)
{
	if (len == 0)
		return fail(why, cap, "empty (a stray comma?)");
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch == 0x7f)
			return fail(why, cap, "contains a space or control "
					      "character");
		if (ch == '=' || ch == '/')
			return fail(why, cap, "contains '%c'", ch);
	}
	size_t colon = len;
	while (colon > 0 && s[colon - 1] != ':')
		colon--;
	if (colon == 0)
		return fail(why, cap, "no port");
	colon--; /* index of the last ':' */
	if (colon == 0)
		return fail(why, cap, "no host");
	bool bracketed = s[0] == '[' && s[colon - 1] == ']';
	if (bracketed && colon <= 2)
		return fail(why, cap, "no host");
	if (!bracketed && memchr(s, ':', colon))
		return fail(why, cap,
			    "an IPv6 host goes in brackets, e.g. [::1]:7001");
	size_t plen = len - colon - 1;
	unsigned long port = 0;
	bool digits = plen > 0 && plen <= 5;
	for (size_t i = colon + 1; i < len && digits; i++) {
		if (s[i] < '0' || s[i] > '9')
			digits = false;
		else
			port = port * 10 + (unsigned long)(s[i] - '0');
	}
	if (!digits || port == 0 || port > 65535)
		return fail(why, cap,
			    "port '%.*s' is not a number from 1 to 65535",
			    (int)plen, s + colon + 1);
	return STATUS_OK;
}

int kvcli_check_masters(const char *s, char *why, size_t cap)
{
	if (!s || !*s)
		return fail(why, cap, "no address");
	for (const char *p = s;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char w[128];
		if (check_addr(p, len, w, sizeof(w)))
			return fail(why, cap,
				    "bad address '%.*s' (%s): expected "
				    "ADDR,ADDR,... with ADDR = " ADDR_FORM,
				    (int)(len > 80 ? 80 : len), p, w);
		for (const char *q = s; q < p;) {
			const char *qc = strchr(q, ',');
			size_t ql = (size_t)(qc - q);
			if (ql == len && memcmp(q, p, len) == 0)
				return fail(why, cap,
					    "address '%.*s' is listed twice",
					    (int)(len > 80 ? 80 : len), p);
			q = qc + 1;
		}
		if (!comma)
			return STATUS_OK;
		p = comma + 1;
	}
}

/* ---- the line ---- */

static bool flag_takes_value(const struct flag *t, const char *tok)
{
	const char *name = tok + 2;
	if (strchr(name, '='))
		return false;
	if (strcmp(name, "config") == 0)
		return true; /* flags.c's own --config FILE */
	for (size_t i = 0; i < N_FLAGS; i++)
		if (strcmp(t[i].name, name) == 0)
			return t[i].type != FLAG_BOOL;
	return false;
}

/* A token that is a flag: "--x", "-h", "-x"; not "-" (stdin) or "--". */
static bool is_flag(const char *tok)
{
	if (tok[0] != '-' || tok[1] == '\0')
		return false;
	return !(tok[1] == '-' && tok[2] == '\0');
}

static int parse_cmd(struct kvcli_args *a, int n, char **args, char *err,
		     size_t cap)
{
	const char *name = kvcli_cmd_name(a->cmd);
	bool with_value = a->cmd == KVCLI_PUT || a->cmd == KVCLI_APPEND;
	int max = with_value ? 2 : 1;
	if (n == 0)
		return fail(err, cap, "%s: no KEY given", name);
	if (n > max)
		return fail(err, cap,
			    "%s: expected KEY%s, got %d arguments (quote a "
			    "value with spaces)",
			    name, with_value ? " [VALUE]" : "", n);
	a->key = args[0];
	a->klen = strlen(args[0]);
	if (a->klen == 0)
		return fail(err, cap,
			    "%s: KEY is empty; keys are 1 to %d bytes", name,
			    SHARD_KEY_BYTES_MAX);
	if (n == 2 && strcmp(args[1], "-") != 0) {
		a->value = args[1];
		a->vlen = strlen(args[1]);
	}
	return STATUS_OK;
}

int kvcli_parse(int argc, char **argv, const char *env_masters,
		struct kvcli_args *a, char *err, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->timeout_ms = KVCLI_TIMEOUT_MS_DEFAULT;
	err[0] = '\0';
	struct flag t[N_FLAGS];
	struct flag_values v = {.timeout_ms = KVCLI_TIMEOUT_MS_DEFAULT};
	flag_table(t, &v);

	/* flags.c stops at the first positional argument; put every flag
	 * first so they may also follow the command: argv0, flags, "--",
	 * positional arguments. */
	char **line = mem_calloc((size_t)argc + 2, sizeof(*line));
	char **pos = mem_calloc((size_t)argc + 1, sizeof(*pos));
	int rc = STATUS_NO_MEMORY;
	if (!line || !pos) {
		fail(err, cap, "out of memory");
		goto out;
	}
	int nl = 0, np = 0;
	line[nl++] = argc > 0 ? argv[0] : "kvcli";
	bool rest_positional = false;
	for (int i = 1; i < argc; i++) {
		char *tok = argv[i];
		if (rest_positional || !is_flag(tok)) {
			if (!rest_positional && strcmp(tok, "--") == 0) {
				rest_positional = true;
				continue;
			}
			pos[np++] = tok;
			continue;
		}
		line[nl++] = tok;
		if (tok[1] == '-' && flag_takes_value(t, tok)) {
			if (i + 1 >= argc) {
				rc = fail(err, cap, "%s: missing its value",
					  tok);
				goto out;
			}
			line[nl++] = argv[++i];
		}
	}
	line[nl++] = "--";

	struct flags_result fr;
	rc = flags_parse(t, N_FLAGS, nl, line, &fr, err, cap);
	if (rc) {
		flags_release(&fr);
		goto out;
	}
	a->timeout_ms = v.timeout_ms;
	a->json = v.json;
	/* Copied now: a --config file's strings go with flags_release. */
	const char *masters = v.masters;
	const char *what = "--masters";
	if (!t[FLAG_MASTERS].seen && env_masters && *env_masters) {
		masters = env_masters;
		what = "$" KVCLI_MASTERS_ENV;
		a->masters_from_env = true;
	}
	if (masters && *masters) {
		a->masters = mem_strdup(masters);
		if (!a->masters) {
			flags_release(&fr);
			rc = STATUS_NO_MEMORY;
			fail(err, cap, "out of memory");
			goto out;
		}
	}
	bool help = fr.help;
	flags_release(&fr);

	if (help || (np > 0 && strcmp(pos[0], "help") == 0)) {
		a->cmd = KVCLI_HELP;
		goto out;
	}
	if (np == 0) {
		rc = fail(err, cap,
			  "no command given (get, put, append, delete or "
			  "help)");
		goto out;
	}
	const char *cmd = pos[0];
	if (strcmp(cmd, "get") == 0)
		a->cmd = KVCLI_GET;
	else if (strcmp(cmd, "put") == 0)
		a->cmd = KVCLI_PUT;
	else if (strcmp(cmd, "append") == 0)
		a->cmd = KVCLI_APPEND;
	else if (strcmp(cmd, "delete") == 0)
		a->cmd = KVCLI_DELETE;
	else {
		rc = fail(err, cap,
			  "unknown command '%.60s' (commands: get, put, "
			  "append, delete, help)",
			  cmd);
		goto out;
	}
	rc = parse_cmd(a, np - 1, pos + 1, err, cap);
	if (rc)
		goto out;

	if (!a->masters) {
		rc = fail(err, cap,
			  "no shard masters given: pass --masters "
			  "HOST:PORT,HOST:PORT,... or set " KVCLI_MASTERS_ENV);
		goto out;
	}
	char why[300];
	if (kvcli_check_masters(a->masters, why, sizeof(why)))
		rc = fail(err, cap, "%s: %s", what, why);
out:
	mem_free(pos);
	mem_free(line);
	return rc;
}

void kvcli_args_release(struct kvcli_args *a)
{
	mem_free(a->masters);
	memset(a, 0, sizeof(*a));
}

/* ---- JSON ---- */

/* Length of the UTF-8 sequence at p[0..n) if valid (no overlongs, no
 * surrogates, at most U+10FFFF), else 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned char b = p[0];
	if (b < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if (b >= 0xc2 && b <= 0xdf) {
		len = 2;
		cp = b & 0x1f;
	} else if (b >= 0xe0 && b <= 0xef) {
		len = 3;
		cp = b & 0x0f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		len = 4;
		cp = b & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool kvcli_utf8_valid(const void *bytes, size_t len)
{
	const unsigned char *p = bytes;
	for (size_t i = 0; i < len;) {
		size_t l = utf8_len(p + i, len - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

void kvcli_json_string(FILE *out, const void *bytes, size_t len)
{
	const unsigned char *p = bytes;
	fputc('"', out);
	for (size_t i = 0; i < len;) {
		unsigned char ch = p[i];
		size_t l = utf8_len(p + i, len - i);
		if (l == 0) {
			fputs("\\ufffd", out);
			i++;
			continue;
		}
		if (l > 1) {
			fwrite(p + i, 1, l, out);
			i += l;
			continue;
		}
		i++;
		switch (ch) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (ch < 0x20 || ch == 0x7f)
				fprintf(out, "\\u%04x", ch);
			else
				fputc(ch, out);
		}
	}
	fputc('"', out);
}

void kvcli_json_base64(FILE *out, const void *bytes, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = bytes;
	fputc('"', out);
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
			     p[i + 2];
		fputc(tab[x >> 18 & 63], out);
		fputc(tab[x >> 12 & 63], out);
		fputc(tab[x >> 6 & 63], out);
		fputc(tab[x & 63], out);
	}
	if (len - i == 1) {
		uint32_t x = (uint32_t)p[i] << 16;
		fputc(tab[x >> 18 & 63], out);
		fputc(tab[x >> 12 & 63], out);
		fputs("==", out);
	} else if (len - i == 2) {
		uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		fputc(tab[x >> 18 & 63], out);
		fputc(tab[x >> 12 & 63], out);
		fputc(tab[x >> 6 & 63], out);
		fputc('=', out);
	}
	fputc('"', out);
}
