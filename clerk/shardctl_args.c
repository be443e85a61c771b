/*
 * shardctl_args: see shardctl_args.h. Every message names what was wrong
 * and shows the right form, because the reader is an operator at a shell
 * prompt.
 */
#include "clerk/shardctl_args.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clerk/cli.h"
#include "common/addrs.h"
#include "common/mem.h"
#include "common/status.h"
#include "shardmaster/sm.h"

#define GID_RANGE "a decimal number from 1 to 9223372036854775807"

static const char usage_join[] =
	"usage: shardctl [FLAGS] join GID=ADDR[,ADDR...] [GID=ADDR[,ADDR...] "
	"...]";
static const char usage_leave[] =
	"usage: shardctl [FLAGS] leave GID [GID ...]";
static const char usage_move[] = "usage: shardctl [FLAGS] move SHARD GID";
static const char usage_query[] = "usage: shardctl [FLAGS] query [NUM]";
static const char usage_status[] =
	"usage: shardctl [FLAGS] status [ADDR ...]";
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
	case SHARDCTL_STATUS:
		return usage_status;
	case SHARDCTL_NONE:
	case SHARDCTL_HELP:
		break;
	}
	return usage_all;
}

void shardctl_usage(FILE *out)
{
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
		"  status [ADDR ...]    ask every server for its status: "
		"the shard masters,\n"
		"                       every group of the latest "
		"configuration, and ADDRs\n"
		"                       (e.g. a group that left); which "
		"node leads, terms,\n"
		"                       log indexes, configuration and "
		"shard states\n"
		"  help                 show this help\n"
		"\n"
		"  GID is " GID_RANGE ";\n"
		"  ADDR is " CLI_ADDR_FORM ".\n"
		"\n"
		"flags (before or after the command):\n",
		usage_all);
	cli_flags_usage(out, SHARDCTL_TIMEOUT_MS_DEFAULT);
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
		"  {\"ok\":true,\"config\":{...},\"masters\":[...],"
		"\"groups\":[...],\"others\":[...]} for status,\n"
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
	if (len > SM_ADDR_BYTES_MAX)
		return cli_fail(why, cap, "longer than %d bytes",
				SM_ADDR_BYTES_MAX);
	return cli_check_addr(s, len, why, cap);
}

void shardctl_free_strings(char **v, size_t n)
{
	addrs_free(v, n);
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
		return cli_fail(err, cap, "out of memory");
	size_t k = 0;
	int rc;
	for (const char *p = s;; k++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		v[k] = mem_strndup(p, len);
		if (!v[k]) {
			rc = cli_fail(err, cap, "out of memory");
			goto err_after_list;
		}
		char why[128];
		if (len == 0) {
			rc = cli_fail(err, cap,
				      "%s: empty address in '%s' (a stray "
				      "comma?): expected ADDR,ADDR,... with "
				      "ADDR = " CLI_ADDR_FORM,
				      what, s);
			goto err_after_list;
		}
		if (shardctl_check_addr(v[k], why, sizeof(why))) {
			rc = cli_fail(err, cap,
				      "%s: bad address '%s' (%s): expected "
				      CLI_ADDR_FORM,
				      what, v[k], why);
			goto err_after_list;
		}
		for (size_t j = 0; j < k; j++)
			if (strcmp(v[j], v[k]) == 0) {
				rc = cli_fail(err, cap,
					      "%s: address '%s' is listed "
					      "twice",
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
		return cli_fail(err, cap, "join: no group given: expected "
					  "GID=ADDR[,ADDR...]");
	if (n > SM_GROUPS_MAX)
		return cli_fail(err, cap, "join: %d groups; at most %d at once",
				n, SM_GROUPS_MAX);
	a->groups = mem_calloc((size_t)n, sizeof(*a->groups));
	if (!a->groups)
		return cli_fail(err, cap, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *arg = args[i];
		const char *eq = strchr(arg, '=');
		if (!eq)
			return cli_fail(err, cap,
					"join: '%s' is not GID=ADDR[,ADDR...] "
					"(e.g. 100=127.0.0.1:7101,"
					"127.0.0.1:7102)",
					arg);
		char gid_text[32] = "";
		size_t gl = (size_t)(eq - arg);
		if (gl < sizeof(gid_text))
			memcpy(gid_text, arg, gl);
		struct shardctl_group *g = &a->groups[i];
		if (gl >= sizeof(gid_text) ||
		    !shardctl_parse_gid(gid_text, &g->gid))
			return cli_fail(err, cap,
					"join: bad GID '%.*s' in '%s': GID is "
					GID_RANGE,
					(int)(gl > 40 ? 40 : gl), arg, arg);
		a->n_groups = (size_t)i + 1;
		for (int j = 0; j < i; j++)
			if (a->groups[j].gid == g->gid)
				return cli_fail(err, cap,
						"join: gid %" PRIu64
						" is given twice",
						g->gid);
		if (!eq[1])
			return cli_fail(err, cap,
					"join: group %" PRIu64
					" has no servers: expected "
					"GID=ADDR[,ADDR...]",
					g->gid);
		char what[48];
		snprintf(what, sizeof(what), "join: group %" PRIu64, g->gid);
		int rc = shardctl_parse_addr_list(eq + 1, what, &g->servers,
						  &g->n_servers, err, cap);
		if (rc)
			return rc;
		if (g->n_servers > SM_SERVERS_MAX)
			return cli_fail(err, cap,
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
		return cli_fail(err, cap, "leave: no GID given");
	a->gids = mem_calloc((size_t)n, sizeof(*a->gids));
	if (!a->gids)
		return cli_fail(err, cap, "out of memory");
	for (int i = 0; i < n; i++) {
		if (!shardctl_parse_gid(args[i], &a->gids[i]))
			return cli_fail(err, cap,
					"leave: bad GID '%s': GID is "
					GID_RANGE,
					args[i]);
		for (int j = 0; j < i; j++)
			if (a->gids[j] == a->gids[i])
				return cli_fail(err, cap,
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
		return cli_fail(err, cap, "move: expected SHARD GID, got %d "
					  "argument%s",
				n, n == 1 ? "" : "s");
	uint64_t shard;
	if (!parse_decimal(args[0], SM_SHARDS_MAX - 1, &shard))
		return cli_fail(err, cap,
				"move: bad SHARD '%s': a shard is a decimal "
				"number from 0 to the shard count - 1 (at most "
				"%d)",
				args[0], SM_SHARDS_MAX - 1);
	a->shard = (uint32_t)shard;
	if (!shardctl_parse_gid(args[1], &a->gid))
		return cli_fail(err, cap,
				"move: bad GID '%s': GID is " GID_RANGE,
				args[1]);
	return STATUS_OK;
}

static int parse_query(struct shardctl_args *a, int n, char **args,
		       char *err, size_t cap)
{
	a->num = -1;
	if (n > 1)
		return cli_fail(err, cap,
				"query: expected at most one NUM, got %d "
				"arguments",
				n);
	if (n == 0 || strcmp(args[0], "-1") == 0)
		return STATUS_OK;
	uint64_t num;
	if (!parse_decimal(args[0], INT64_MAX, &num))
		return cli_fail(err, cap,
				"query: bad NUM '%s': a configuration number "
				"(0, 1, ...), or -1 for the latest",
				args[0]);
	a->num = (int64_t)num;
	return STATUS_OK;
}

static int parse_status(struct shardctl_args *a, int n, char **args,
			char *err, size_t cap)
{
	if (n == 0)
		return STATUS_OK;
	a->addrs = mem_calloc((size_t)n, sizeof(*a->addrs));
	if (!a->addrs)
		return cli_fail(err, cap, "out of memory");
	for (int i = 0; i < n; i++) {
		char why[128];
		if (shardctl_check_addr(args[i], why, sizeof(why)))
			return cli_fail(err, cap,
					"status: bad address '%s' (%s): "
					"expected " CLI_ADDR_FORM,
					args[i], why);
		a->addrs[i] = mem_strdup(args[i]);
		if (!a->addrs[i])
			return cli_fail(err, cap, "out of memory");
		a->n_addrs = (size_t)i + 1;
	}
	return STATUS_OK;
}

/* ---- the whole line ---- */

int shardctl_parse(int argc, char **argv, const char *env_masters,
		   struct shardctl_args *a, char *err, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->num = -1;
	struct cli_line l;
	int rc = cli_parse_line(argc, argv, "shardctl",
				SHARDCTL_TIMEOUT_MS_DEFAULT, env_masters, true,
				&l, err, cap);
	if (rc)
		goto out;
	a->timeout_ms = l.timeout_ms;
	a->json = l.json;
	int np = l.n_args;
	char **pos = l.args;

	if (l.help || (np > 0 && strcmp(pos[0], "help") == 0)) {
		a->cmd = SHARDCTL_HELP;
		goto out;
	}
	if (np == 0) {
		rc = cli_fail(err, cap,
			      "no command given (join, leave, move, query, "
			      "status or help)");
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
	else if (strcmp(cmd, "status") == 0)
		a->cmd = SHARDCTL_STATUS;
	else {
		rc = cli_fail(err, cap,
			      "unknown command '%s' (commands: join, leave, "
			      "move, query, status, help)",
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
	case SHARDCTL_STATUS:
		rc = parse_status(a, n, args, err, cap);
		break;
	case SHARDCTL_NONE:
	case SHARDCTL_HELP:
		break;
	}
	if (rc)
		goto out;

	/* The shard masters: the flag, else the environment. */
	a->masters_from_env = l.masters_from_env;
	if (!l.masters) {
		rc = cli_fail(err, cap,
			      "no shard masters given: pass --masters "
			      "HOST:PORT,HOST:PORT,... or set "
			      SHARDCTL_MASTERS_ENV);
		goto out;
	}
	rc = shardctl_parse_addr_list(
		l.masters,
		l.masters_from_env ? SHARDCTL_MASTERS_ENV : "--masters",
		&a->masters, &a->n_masters, err, cap);
out:
	cli_line_release(&l);
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
	shardctl_free_strings(a->addrs, a->n_addrs);
	memset(a, 0, sizeof(*a));
	a->num = -1;
}
