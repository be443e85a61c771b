/*
 * cli: see cli.h. Messages name what was wrong and show the right form:
 * the reader is someone at a shell prompt.
 */
#include "clerk/cli.h"

#include <stdarg.h>
#include <string.h>

#include "common/flags.h"
#include "common/mem.h"
#include "common/status.h"

int cli_fail(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	return STATUS_INVALID_ARGUMENT;
}

/* ---- flags ---- */

/* Flag destinations, apart from the result so the help can show the
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
			CLI_MASTERS_ENV ")",
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

void cli_flags_usage(FILE *out, uint64_t timeout_ms_default)
{
	struct flag t[N_FLAGS];
	struct flag_values v = {.timeout_ms = timeout_ms_default};
	flag_table(t, &v);
	flags_usage(t, N_FLAGS, out);
}

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

/* A token that is a flag: "--x", "-h", "-x"; not "-" (stdin) or "--",
 * nor "-N" when numbers are arguments. */
static bool is_flag(const char *tok, bool numbers_are_args)
{
	if (tok[0] != '-' || tok[1] == '\0')
		return false;
	if (tok[1] == '-')
		return tok[2] != '\0';
	return !(numbers_are_args && tok[1] >= '0' && tok[1] <= '9');
}

int cli_parse_line(int argc, char **argv, const char *prog,
		   uint64_t timeout_ms_default, const char *env_masters,
		   bool numbers_are_args, struct cli_line *l, char *err,
		   size_t cap)
{
	memset(l, 0, sizeof(*l));
	l->timeout_ms = timeout_ms_default;
	err[0] = '\0';
	struct flag t[N_FLAGS];
	struct flag_values v = {.timeout_ms = timeout_ms_default};
	flag_table(t, &v);

	/* flags.c stops at the first positional argument; put every flag
	 * first so they may also follow the command: argv0, flags, "--",
	 * positional arguments. */
	char **line = mem_calloc((size_t)argc + 2, sizeof(*line));
	l->args = mem_calloc((size_t)argc + 1, sizeof(*l->args));
	int rc = STATUS_NO_MEMORY;
	if (!line || !l->args) {
		cli_fail(err, cap, "out of memory");
		goto out;
	}
	int nl = 0;
	line[nl++] = argc > 0 ? argv[0] : (char *)prog;
	bool rest_positional = false;
	for (int i = 1; i < argc; i++) {
		char *tok = argv[i];
		if (rest_positional || !is_flag(tok, numbers_are_args)) {
			if (!rest_positional && strcmp(tok, "--") == 0) {
				rest_positional = true;
				continue;
			}
			l->args[l->n_args++] = tok;
			continue;
		}
		line[nl++] = tok;
		if (tok[1] == '-' && flag_takes_value(t, tok)) {
			if (i + 1 >= argc) {
				rc = cli_fail(err, cap,
					      "%s: missing its value", tok);
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
	l->timeout_ms = v.timeout_ms;
	l->json = v.json;
	l->help = fr.help;
	/* Copied now: a --config file's strings go with flags_release. */
	const char *masters = v.masters;
	if (!t[FLAG_MASTERS].seen && env_masters && *env_masters) {
		masters = env_masters;
		l->masters_from_env = true;
	}
	if (masters && *masters) {
		l->masters = mem_strdup(masters);
		if (!l->masters) {
			rc = STATUS_NO_MEMORY;
			cli_fail(err, cap, "out of memory");
		}
	}
	flags_release(&fr);
out:
	mem_free(line);
	return rc;
}

void cli_line_release(struct cli_line *l)
{
	mem_free(l->masters);
	mem_free(l->args);
	memset(l, 0, sizeof(*l));
}

/* ---- addresses ---- */

int cli_check_addr(const char *s, size_t len, char *why, size_t cap)
{
	if (len == 0)
		return cli_fail(why, cap, "empty");
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch == 0x7f)
			return cli_fail(why, cap, "contains a space or "
						  "control character");
		if (ch == ',' || ch == '=' || ch == '/')
			return cli_fail(why, cap, "contains '%c'", ch);
	}
	size_t colon = len;
	while (colon > 0 && s[colon - 1] != ':')
		colon--;
	if (colon == 0)
		return cli_fail(why, cap, "no port");
	colon--; /* index of the last ':', the host's length */
	if (colon == 0)
		return cli_fail(why, cap, "no host");
	bool bracketed = s[0] == '[' && s[colon - 1] == ']';
	if (bracketed && colon <= 2)
		return cli_fail(why, cap, "no host");
	if (!bracketed && memchr(s, ':', colon))
		return cli_fail(why, cap, "an IPv6 host goes in brackets, "
					  "e.g. [::1]:7001");
	if (!bracketed && (memchr(s, '[', colon) || memchr(s, ']', colon)))
		return cli_fail(why, cap, "stray bracket in the host");
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
		return cli_fail(why, cap,
				"port '%.*s' is not a number from 1 to 65535",
				(int)plen, s + colon + 1);
	return STATUS_OK;
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

bool cli_utf8_valid(const void *bytes, size_t len)
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

void cli_json_string(FILE *out, const void *bytes, size_t len)
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

static int check_list_addr(const char *s, size_t len, char *why, size_t cap)
{
	if (len == 0)
		return cli_fail(why, cap, "empty (a stray comma?)");
	return cli_check_addr(s, len, why, cap);
}

int cli_check_masters(const char *s, char *why, size_t cap)
{
	if (!s || !*s)
		return cli_fail(why, cap, "no address");
	for (const char *p = s;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char w[128];
		if (check_list_addr(p, len, w, sizeof(w)))
			return cli_fail(why, cap,
					"bad address '%.*s' (%s): expected "
					"ADDR,ADDR,... with ADDR = "
					CLI_ADDR_FORM,
					(int)(len > 80 ? 80 : len), p, w);
		for (const char *q = s; q < p;) {
			const char *qc = strchr(q, ',');
			size_t ql = (size_t)(qc - q);
			if (ql == len && memcmp(q, p, len) == 0)
				return cli_fail(why, cap,
						"address '%.*s' is listed "
						"twice",
						(int)(len > 80 ? 80 : len), p);
			q = qc + 1;
		}
		if (!comma)
			return STATUS_OK;
		p = comma + 1;
	}
}
