/*
 * shardctl: administers the shard master (join, leave, move, query). One
 * process, one operation, one smclerk. Results go to stdout (a table, or
 * one JSON object with --json); errors are one line on stderr prefixed
 * "shardctl: " (and, with --json, also an object on stdout). The exit
 * code says what kind of failure it was (shardctl_args.h), so scripts can
 * tell "your request is wrong" from "try again later".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clerk/cli.h"
#include "clerk/shardctl_args.h"
#include "clerk/smclerk.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"

/* One attempt at one shard master; the overall --timeout bounds the
 * retries. */
#define ATTEMPT_TIMEOUT_MS 1000

/* ---- JSON ---- */

static void json_str(FILE *out, const char *s)
{
	cli_json_string(out, s, strlen(s));
}

static void json_config(FILE *out, const struct sm_config *c)
{
	fprintf(out, "{\"num\":%" PRIu64 ",\"shards\":[", c->num);
	for (uint32_t s = 0; s < c->nshards; s++)
		fprintf(out, "%s%" PRIu64, s ? "," : "", c->shards[s]);
	fputs("],\"groups\":{", out);
	for (size_t i = 0; i < c->n_groups; i++) {
		const struct sm_group *g = &c->groups[i];
		fprintf(out, "%s\"%" PRIu64 "\":[", i ? "," : "", g->gid);
		for (size_t j = 0; j < g->n_servers; j++) {
			if (j)
				fputc(',', out);
			json_str(out, g->servers[j]);
		}
		fputc(']', out);
	}
	fputs("}}", out);
}

static void json_error(const char *status, const char *error, int reachable)
{
	fputs("{\"ok\":false,\"status\":", stdout);
	json_str(stdout, status);
	fputs(",\"error\":", stdout);
	json_str(stdout, error);
	if (reachable >= 0)
		fprintf(stdout, ",\"reachable\":%s",
			reachable ? "true" : "false");
	fputs("}\n", stdout);
}

/* ---- human-readable ---- */

static size_t shards_of(const struct sm_config *c, uint64_t gid)
{
	size_t n = 0;
	for (uint32_t s = 0; s < c->nshards; s++)
		n += c->shards[s] == gid;
	return n;
}

static int digits(uint64_t x)
{
	int n = 1;
	while (x >= 10) {
		x /= 10;
		n++;
	}
	return n;
}

static void print_config(FILE *out, const struct sm_config *c)
{
	fprintf(out, "config %" PRIu64 ": %" PRIu32 " shard%s, %zu group%s\n",
		c->num, c->nshards, c->nshards == 1 ? "" : "s", c->n_groups,
		c->n_groups == 1 ? "" : "s");
	fprintf(out, "\n%5s  %s\n", "shard", "gid");
	for (uint32_t s = 0; s < c->nshards; s++) {
		if (c->shards[s])
			fprintf(out, "%5" PRIu32 "  %" PRIu64 "\n", s,
				c->shards[s]);
		else
			fprintf(out, "%5" PRIu32 "  0 (no group)\n", s);
	}
	if (c->n_groups == 0) {
		fprintf(out, "\nno groups\n");
		return;
	}
	int w = 3;
	for (size_t i = 0; i < c->n_groups; i++)
		w = digits(c->groups[i].gid) > w ? digits(c->groups[i].gid) : w;
	fprintf(out, "\n%*s  %6s  %s\n", w, "gid", "shards", "servers");
	for (size_t i = 0; i < c->n_groups; i++) {
		const struct sm_group *g = &c->groups[i];
		fprintf(out, "%*" PRIu64 "  %6zu  ", w, g->gid,
			shards_of(c, g->gid));
		for (size_t j = 0; j < g->n_servers; j++)
			fprintf(out, "%s%s", j ? "," : "", g->servers[j]);
		fputc('\n', out);
	}
}

/* ---- main ---- */

static const char *cmd_name(enum shardctl_cmd c)
{
	switch (c) {
	case SHARDCTL_JOIN:
		return "join";
	case SHARDCTL_LEAVE:
		return "leave";
	case SHARDCTL_MOVE:
		return "move";
	case SHARDCTL_QUERY:
		return "query";
	case SHARDCTL_NONE:
	case SHARDCTL_HELP:
		break;
	}
	return "command";
}

static int run_cmd(struct smclerk *k, const struct shardctl_args *a,
		   struct smclerk_result *res)
{
	switch (a->cmd) {
	case SHARDCTL_JOIN: {
		struct smclerk_group *gs =
			mem_calloc(a->n_groups, sizeof(*gs));
		if (!gs) {
			snprintf(res->error, sizeof(res->error),
				 "out of memory");
			return STATUS_NO_MEMORY;
		}
		for (size_t i = 0; i < a->n_groups; i++) {
			gs[i].gid = a->groups[i].gid;
			gs[i].n_servers = a->groups[i].n_servers;
			gs[i].servers =
				(const char *const *)a->groups[i].servers;
		}
		int rc = smclerk_join(k, gs, a->n_groups, a->timeout_ms, res);
		mem_free(gs);
		return rc;
	}
	case SHARDCTL_LEAVE:
		return smclerk_leave(k, a->gids, a->n_gids, a->timeout_ms, res);
	case SHARDCTL_MOVE:
		return smclerk_move(k, a->shard, a->gid, a->timeout_ms, res);
	case SHARDCTL_QUERY:
		return smclerk_query(k, a->num, a->timeout_ms, res);
	case SHARDCTL_NONE:
	case SHARDCTL_HELP:
		break;
	}
	return STATUS_INVALID_ARGUMENT;
}

/* "a,b,c" into buf. */
static void join_list(char *const *v, size_t n, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && used < cap; i++) {
		int w = snprintf(buf + used, cap - used, "%s%s", i ? "," : "",
				 v[i]);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* The one-line message and exit code for a failed operation. */
static int report_failure(const struct shardctl_args *a, int rc,
			  const struct smclerk_result *res)
{
	char msg[1200];
	char masters[512];
	join_list(a->masters, a->n_masters, masters, sizeof(masters));
	const char *source =
		a->masters_from_env ? SHARDCTL_MASTERS_ENV : "--masters";
	bool mutation = a->cmd != SHARDCTL_QUERY;
	char maybe[128] = "";
	if (mutation)
		snprintf(maybe, sizeof(maybe),
			 "; the %s may or may not have applied: query, then "
			 "retry",
			 cmd_name(a->cmd));
	int code;
	int reachable = -1;
	if (rc == STATUS_TIMEOUT && res->answered &&
	    res->n_answered < a->n_masters) {
		/* Some answer, others do not: often too few run to elect. */
		reachable = 1;
		snprintf(msg, sizeof(msg),
			 "%zu of the %zu shard masters at %s answered, but "
			 "none is the leader yet: a leader needs a majority "
			 "of them running; start the others or retry shortly "
			 "(TIMEOUT after %" PRIu64 " ms: %s)%s",
			 res->n_answered, a->n_masters, masters,
			 a->timeout_ms, res->error, maybe);
		code = SHARDCTL_EXIT_UNREACHABLE;
	} else if (rc == STATUS_TIMEOUT && res->answered) {
		reachable = 1;
		snprintf(msg, sizeof(msg),
			 "the shard masters at %s are reachable but no leader "
			 "is elected yet: retry shortly (TIMEOUT after "
			 "%" PRIu64 " ms: %s)%s",
			 masters, a->timeout_ms, res->error, maybe);
		code = SHARDCTL_EXIT_UNREACHABLE;
	} else if (rc == STATUS_TIMEOUT) {
		reachable = 0;
		snprintf(msg, sizeof(msg),
			 "no shard master answered at %s: check that they run "
			 "and that %s is right (TIMEOUT after %" PRIu64
			 " ms%s%s)%s",
			 masters, source, a->timeout_ms,
			 res->last_failure[0] ? "; last error: " : "",
			 res->last_failure, maybe);
		code = SHARDCTL_EXIT_UNREACHABLE;
	} else if (rc == STATUS_INVALID_ARGUMENT) {
		snprintf(msg, sizeof(msg),
			 "%s refused by the shard master: %s",
			 cmd_name(a->cmd), res->error);
		code = SHARDCTL_EXIT_REFUSED;
	} else {
		snprintf(msg, sizeof(msg), "%s failed: %s: %s",
			 cmd_name(a->cmd), status_name(rc),
			 res->error[0] ? res->error : status_str(rc));
		code = SHARDCTL_EXIT_REFUSED;
	}
	if (a->json)
		json_error(status_name(rc), msg, reachable);
	fprintf(stderr, "shardctl: %s\n", msg);
	return code;
}

static void report_success(const struct shardctl_args *a,
			   const struct smclerk_result *res)
{
	const struct sm_config *c = res->config;
	if (a->cmd == SHARDCTL_QUERY) {
		if (a->json) {
			json_config(stdout, c);
			fputc('\n', stdout);
		} else {
			print_config(stdout, c);
		}
		return;
	}
	if (a->json) {
		fputs("{\"ok\":true,\"config\":", stdout);
		if (c)
			json_config(stdout, c);
		else
			fputs("null", stdout);
		if (!c) {
			fputs(",\"warning\":", stdout);
			json_str(stdout, res->error);
		}
		fputs("}\n", stdout);
	} else if (c) {
		printf("ok: config %" PRIu64 "\n\n", c->num);
		print_config(stdout, c);
	} else {
		printf("ok\n");
	}
	if (!c)
		fprintf(stderr, "shardctl: warning: %s\n", res->error);
}

int main(int argc, char **argv)
{
	struct shardctl_args a;
	char err[512];
	int rc = shardctl_parse(argc, argv, getenv(SHARDCTL_MASTERS_ENV), &a,
				err, sizeof(err));
	if (rc) {
		if (a.json)
			json_error("USAGE", err, -1);
		fprintf(stderr, "shardctl: %s\n%s\n", err,
			shardctl_cmd_usage(a.cmd));
		shardctl_args_release(&a);
		return rc == STATUS_INVALID_ARGUMENT ? SHARDCTL_EXIT_USAGE
						     : SHARDCTL_EXIT_REFUSED;
	}
	if (a.cmd == SHARDCTL_HELP) {
		shardctl_usage(stdout);
		shardctl_args_release(&a);
		return SHARDCTL_EXIT_OK;
	}

	/* The clerk's own log lines (a failed call, a reconnect) would
	 * repeat what the one error line says. */
	log_set_level(LOG_ERROR);
	struct smclerk_opts o = {.attempt_timeout_ms = ATTEMPT_TIMEOUT_MS};
	struct smclerk *k;
	rc = smclerk_new((const char *const *)a.masters, a.n_masters, &o, &k);
	if (rc) {
		snprintf(err, sizeof(err), "cannot start the client: %s",
			 status_str(rc));
		if (a.json)
			json_error(status_name(rc), err, -1);
		fprintf(stderr, "shardctl: %s\n", err);
		shardctl_args_release(&a);
		return SHARDCTL_EXIT_REFUSED;
	}
	struct smclerk_result res;
	memset(&res, 0, sizeof(res));
	rc = run_cmd(k, &a, &res);
	int code = SHARDCTL_EXIT_OK;
	if (rc == STATUS_OK)
		report_success(&a, &res);
	else
		code = report_failure(&a, rc, &res);
	fflush(stdout);
	sm_config_free(res.config);
	smclerk_free(k);
	shardctl_args_release(&a);
	return code;
}
