/*
 * shardctl_args: see shardctl_args.h. Every message names what was wrong
 * and shows the right form, because the reader is an operator at a shell
 * prompt.
 */
#include "clerk/shardctl_args.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "common/mem.h"
#include "common/status.h"
#include "shardmaster/sm.h"

#define GID_RANGE "a decimal number from 1 to 9223372036854775807"
#define ADDR_FORM "HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:7001"

static const char usage_join[] =
	"usage: shardctl [FLAGS] join GID=ADDR[,ADDR...] [GID=ADDR[,ADDR...] "
	"...]";
static const char usage_leave[] =
	"usage: shardctl [FLAGS] leave GID [GID ...]";
static const char usage_move[] = "usage: shardctl [FLAGS] move SHARD GID";
static const char usage_query[] = "usage: shardctl [FLAGS] query [NUM]";
static const char usage_all[] =
	"usage: shardctl [--masters ADDR,ADDR,...] [--timeout MS] [--json] "
	"COMMAND [ARG...]";

const char *shardctl_cmd_usage(enum shardctl_cmd c)
{
	switch (c) {
	case SHARDCTL_JOIN:
		return usage_join;
	case SHARDCTL_LEAVE:
		return usage_leave;
	case SHARDCTL_MOVE:
		return usage_move;
	case SHARDCTL_QUERY:
		return usage_query;
	case SHARDCTL_NONE:
	case SHARDCTL_HELP:
		break;
	}
	return usage_all;
}

/* Flag destinations, separate from the result so --help can show the
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
			SHARDCTL_MASTERS_ENV ")",
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

void shardctl_usage(FILE *out)
{
	struct flag t[N_FLAGS];
	struct flag_values v = {.timeout_ms = SHARDCTL_TIMEOUT_MS_DEFAULT};
	flag_table(t, &v);
	fprintf(out,
		"%s\n"
		"\n"
		"Administers a shardkv cluster's shard master: which replica "
		"group serves\n"
		"each shard, and which servers make up each group.\n"
		"\n"
		"commands:\n"
		"  join GID=ADDR[,ADDR...] [GID=ADDR[,ADDR...] ...]\n"
		"                       add replica groups; shards are "
		"rebalanced onto them\n"
		"  leave GID [GID ...]  remove replica groups; their shards "
		"go to the others\n"
		"  move SHARD GID       put one shard on one group (until "
		"the next join/leave)\n"
		"  query [NUM]          show configuration NUM (default: the "
		"latest)\n"
		"  help                 show this help\n"
		"\n"
		"  GID is " GID_RANGE ";\n"
		"  ADDR is " ADDR_FORM ".\n"
		"\n"
		"flags (before or after the command):\n",
		usage_all);
	flags_usage(t, N_FLAGS, out);
	fprintf(out,
		"\n"
		"environment:\n"
		"  " SHARDCTL_MASTERS_ENV
		"    the shard masters (ADDR,ADDR,...) when --masters is not "
		"given\n"
		"\n"
		"output: human-readable; with --json one object: "
		"{\"num\":N,\"shards\":[GID,...],\n"
		"  \"groups\":{\"GID\":[ADDR,...]}} for query, "
		"{\"ok\":true,\"config\":{...}} for a change,\n"
		"  {\"ok\":false,\"status\":\"...\",\"error\":\"...\"} for "
		"an error.\n"
		"\n"
		"exit status:\n"
		"  0  done\n"
		"  1  refused by the shard master (e.g. unknown gid); nothing "
		"changed\n"
		"     (also any other failure: out of memory, a malformed "
		"reply)\n"
		"  2  usage error\n"
		"  3  no shard master answered, or none is leader, before the "
		"timeout;\n"
		"     a join/leave/move may or may not have applied: query, "
		"then retry\n"
		"\n"
		"example:\n"
		"  shardctl --masters "
		"127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \\\n"
		"      join 100=127.0.0.1:7101,127.0.0.1:7102,"
		"127.0.0.1:7103\n");
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

/* ---- values ---- */

/* Decimal digits only (no sign, no spaces), at most `max`. */
static bool parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	char *end;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end || x > max)
		return false;
	*out = x;
	return true;
}

bool shardctl_parse_gid(const char *s, uint64_t *out)
{
	uint64_t x;
	if (!parse_decimal(s, SM_GID_MAX, &x) || x == 0)
		return false;
	*out = x;
	return true;
}

int shardctl_check_addr(const char *s, char *why, size_t cap)
{
	size_t len = strlen(s);
	if (len == 0)
		return fail(why, cap, "empty");
	if (len > SM_ADDR_BYTES_MAX)
		return fail(why, cap, "longer than %d bytes",
			    SM_ADDR_BYTES_MAX);
	for (const char *p = s; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= ' ' || ch == 0x7f)
			return fail(why, cap, "contains a space or control "
					      "character");
		if (ch == ',' || ch == '=' || ch == '/')
			return fail(why, cap, "contains '%c'", ch);
	}
	const char *colon = strrchr(s, ':');
	if (!colon)
		return fail(why, cap, "no port");
	size_t host_len = (size_t)(colon - s);
	if (host_len == 0)
		return fail(why, cap, "no host");
	bool bracketed = s[0] == '[' && colon[-1] == ']';
	if (bracketed && host_len <= 2)
		return fail(why, cap, "no host");
	if (!bracketed && memchr(s, ':', host_len))
		return fail(why, cap,
			    "an IPv6 host goes in brackets, e.g. [::1]:7001");
	if (!bracketed && (memchr(s, '[', host_len) ||
			   memchr(s, ']', host_len)))
		return fail(why, cap, "stray bracket in the host");
	uint64_t port;
	if (!parse_decimal(colon + 1, 65535, &port) || port == 0 ||
	    strlen(colon + 1) > 5)
		return fail(why, cap, "port '%s' is not a number from 1 to "
				      "65535",
			    colon + 1);
	return STATUS_OK;
}

void shardctl_free_strings(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		mem_free(v[i]);
	mem_free(v);
}

int shardctl_parse_addr_list(const char *s, const char *what, char ***out,
			     size_t *n_out, char *err, size_t cap)
{
	*out = NULL;
	*n_out = 0;
	size_t n = 1;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	char **v = mem_calloc(n, sizeof(*v));
	if (!v)
		return fail(err, cap, "out of memory");
	size_t k = 0;
	int rc;
	for (const char *p = s;; k++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		v[k] = mem_strndup(p, len);
		if (!v[k]) {
			rc = fail(err, cap, "out of memory");
			goto err_after_list;
		}
		char why[128];
		if (len == 0) {
			rc = fail(err, cap,
				  "%s: empty address in '%s' (a stray "
				  "comma?): expected ADDR,ADDR,... with ADDR "
				  "= " ADDR_FORM,
				  what, s);
			goto err_after_list;
		}
		if (shardctl_check_addr(v[k], why, sizeof(why))) {
			rc = fail(err, cap,
				  "%s: bad address '%s' (%s): expected "
				  ADDR_FORM,
				  what, v[k], why);
			goto err_after_list;
		}
		for (size_t j = 0; j < k; j++)
			if (strcmp(v[j], v[k]) == 0) {
				rc = fail(err, cap,
					  "%s: address '%s' is listed twice",
					  what, v[k]);
				goto err_after_list;
			}
		if (!comma)
			break;
		p = comma + 1;
	}
	*out = v;
	*n_out = k + 1;
	return STATUS_OK;

err_after_list:
	shardctl_free_strings(v, k + 1);
	return rc;
}

/* ---- commands ---- */

static int parse_join(struct shardctl_args *a, int n, char **args, char *err,
		      size_t cap)
{
	if (n == 0)
		return fail(err, cap, "join: no group given: expected "
				      "GID=ADDR[,ADDR...]");
	if (n > SM_GROUPS_MAX)
		return fail(err, cap, "join: %d groups; at most %d at once", n,
			    SM_GROUPS_MAX);
	a->groups = mem_calloc((size_t)n, sizeof(*a->groups));
	if (!a->groups)
		return fail(err, cap, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *arg = args[i];
		const char *eq = strchr(arg, '=');
		if (!eq)
			return fail(err, cap,
				    "join: '%s' is not GID=ADDR[,ADDR...] "
				    "(e.g. 100=127.0.0.1:7101,127.0.0.1:7102)",
				    arg);
		char gid_text[32] = "";
		size_t gl = (size_t)(eq - arg);
		if (gl < sizeof(gid_text))
			memcpy(gid_text, arg, gl);
		struct shardctl_group *g = &a->groups[i];
		if (gl >= sizeof(gid_text) ||
		    !shardctl_parse_gid(gid_text, &g->gid))
			return fail(err, cap,
				    "join: bad GID '%.*s' in '%s': GID is "
				    GID_RANGE,
				    (int)(gl > 40 ? 40 : gl), arg, arg);
		a->n_groups = (size_t)i + 1;
		for (int j = 0; j < i; j++)
			if (a->groups[j].gid == g->gid)
				return fail(err, cap,
					    "join: gid %" PRIu64
					    " is given twice",
					    g->gid);
		if (!eq[1])
			return fail(err, cap,
				    "join: group %" PRIu64
				    " has no servers: expected GID=ADDR[,ADDR"
				    "...]",
				    g->gid);
		char what[48];
		snprintf(what, sizeof(what), "join: group %" PRIu64, g->gid);
		int rc = shardctl_parse_addr_list(eq + 1, what, &g->servers,
						  &g->n_servers, err, cap);
		if (rc)
			return rc;
		if (g->n_servers > SM_SERVERS_MAX)
			return fail(err, cap,
				    "join: group %" PRIu64
				    " lists %zu servers; at most %d",
				    g->gid, g->n_servers, SM_SERVERS_MAX);
	}
	return STATUS_OK;
}

static int parse_leave(struct shardctl_args *a, int n, char **args,
		       char *err, size_t cap)
{
	if (n == 0)
		return fail(err, cap, "leave: no GID given");
	a->gids = mem_calloc((size_t)n, sizeof(*a->gids));
	if (!a->gids)
		return fail(err, cap, "out of memory");
	for (int i = 0; i < n; i++) {
		if (!shardctl_parse_gid(args[i], &a->gids[i]))
			return fail(err, cap,
				    "leave: bad GID '%s': GID is " GID_RANGE,
				    args[i]);
		for (int j = 0; j < i; j++)
			if (a->gids[j] == a->gids[i])
				return fail(err, cap,
					    "leave: gid %" PRIu64
					    " is given twice",
					    a->gids[i]);
		a->n_gids = (size_t)i + 1;
	}
	return STATUS_OK;
}

static int parse_move(struct shardctl_args *a, int n, char **args, char *err,
		      size_t cap)
{
	if (n != 2)
		return fail(err, cap, "move: expected SHARD GID, got %d "
				      "argument%s",
			    n, n == 1 ? "" : "s");
	uint64_t shard;
	if (!parse_decimal(args[0], SM_SHARDS_MAX - 1, &shard))
		return fail(err, cap,
			    "move: bad SHARD '%s': a shard is a decimal "
			    "number from 0 to the shard count - 1 (at most "
			    "%d)",
			    args[0], SM_SHARDS_MAX - 1);
	a->shard = (uint32_t)shard;
	if (!shardctl_parse_gid(args[1], &a->gid))
		return fail(err, cap, "move: bad GID '%s': GID is " GID_RANGE,
			    args[1]);
	return STATUS_OK;
}

static int parse_query(struct shardctl_args *a, int n, char **args,
		       char *err, size_t cap)
{
	a->num = -1;
	if (n > 1)
		return fail(err, cap, "query: expected at most one NUM, got "
				      "%d arguments",
			    n);
	if (n == 0 || strcmp(args[0], "-1") == 0)
		return STATUS_OK;
	uint64_t num;
	if (!parse_decimal(args[0], INT64_MAX, &num))
		return fail(err, cap,
			    "query: bad NUM '%s': a configuration number "
			    "(0, 1, ...), or -1 for the latest",
			    args[0]);
	a->num = (int64_t)num;
	return STATUS_OK;
}

/* ---- the whole line ---- */

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

/* A token that is a flag: "--x", "-h", "-x"; not "-", "--", or a
 * negative number (query -1). */
static bool is_flag(const char *tok)
{
	if (tok[0] != '-' || tok[1] == '\0')
		return false;
	if (tok[1] == '-')
		return tok[2] != '\0';
	return !(tok[1] >= '0' && tok[1] <= '9');
}

int shardctl_parse(int argc, char **argv, const char *env_masters,
		   struct shardctl_args *a, char *err, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->num = -1;
	err[0] = '\0';
	struct flag t[N_FLAGS];
	struct flag_values v = {.timeout_ms = SHARDCTL_TIMEOUT_MS_DEFAULT};
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
	line[nl++] = argc > 0 ? argv[0] : "shardctl";
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
	flags_release(&fr);
	if (rc)
		goto out;
	a->timeout_ms = v.timeout_ms;
	a->json = v.json;

	if (fr.help || (np > 0 && strcmp(pos[0], "help") == 0)) {
		a->cmd = SHARDCTL_HELP;
		goto out;
	}
	if (np == 0) {
		rc = fail(err, cap,
			  "no command given (join, leave, move, query or "
			  "help)");
		goto out;
	}
	const char *cmd = pos[0];
	if (strcmp(cmd, "join") == 0)
		a->cmd = SHARDCTL_JOIN;
	else if (strcmp(cmd, "leave") == 0)
		a->cmd = SHARDCTL_LEAVE;
	else if (strcmp(cmd, "move") == 0)
		a->cmd = SHARDCTL_MOVE;
	else if (strcmp(cmd, "query") == 0)
		a->cmd = SHARDCTL_QUERY;
	else {
		rc = fail(err, cap,
			  "unknown command '%s' (commands: join, leave, move, "
			  "query, help)",
			  cmd);
		goto out;
	}

	int n = np - 1;
	char **args = pos + 1;
	switch (a->cmd) {
	case SHARDCTL_JOIN:
		rc = parse_join(a, n, args, err, cap);
		break;
	case SHARDCTL_LEAVE:
		rc = parse_leave(a, n, args, err, cap);
		break;
	case SHARDCTL_MOVE:
		rc = parse_move(a, n, args, err, cap);
		break;
	case SHARDCTL_QUERY:
		rc = parse_query(a, n, args, err, cap);
		break;
	case SHARDCTL_NONE:
	case SHARDCTL_HELP:
		break;
	}
	if (rc)
		goto out;

	/* The shard masters: the flag, else the environment. */
	const char *masters = v.masters;
	const char *what = "--masters";
	if (!t[FLAG_MASTERS].seen && env_masters && *env_masters) {
		masters = env_masters;
		what = SHARDCTL_MASTERS_ENV;
		a->masters_from_env = true;
	}
	if (!masters || !*masters) {
		rc = fail(err, cap,
			  "no shard masters given: pass --masters "
			  "HOST:PORT,HOST:PORT,... or set "
			  SHARDCTL_MASTERS_ENV);
		goto out;
	}
	rc = shardctl_parse_addr_list(masters, what, &a->masters,
				      &a->n_masters, err, cap);
out:
	mem_free(pos);
	mem_free(line);
	return rc;
}

void shardctl_args_release(struct shardctl_args *a)
{
	shardctl_free_strings(a->masters, a->n_masters);
	for (size_t i = 0; i < a->n_groups; i++)
		shardctl_free_strings(a->groups[i].servers,
				      a->groups[i].n_servers);
	mem_free(a->groups);
	mem_free(a->gids);
	memset(a, 0, sizeof(*a));
	a->num = -1;
}
