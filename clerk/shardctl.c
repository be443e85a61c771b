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
#include "clerk/status.h"
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
	case SHARDCTL_STATUS:
		return "status";
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
	case SHARDCTL_STATUS:
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
	bool mutation = a->cmd != SHARDCTL_QUERY && a->cmd != SHARDCTL_STATUS;
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

/* ---- status ---- */

/* Every server status asks: the masters, each group of the latest
 * configuration, then the ADDRs not among them. Borrowed strings. */
struct status_plan {
	const char **addrs;
	size_t n;
	size_t n_masters;
	size_t group_first[SM_GROUPS_MAX]; /* unused past n_groups */
	size_t n_groups;
	size_t others_first;
};

static bool listed(const char *const *v, size_t n, const char *a)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], a) == 0)
			return true;
	return false;
}

static int plan_status(const struct shardctl_args *a,
		       const struct sm_config *c, struct status_plan *p)
{
	size_t max = a->n_masters + a->n_addrs;
	size_t ng = c ? c->n_groups : 0;
	for (size_t g = 0; g < ng; g++)
		max += c->groups[g].n_servers;
	if (max > NODE_STATUS_MANY_MAX)
		max = NODE_STATUS_MANY_MAX;
	p->addrs = mem_calloc(max ? max : 1, sizeof(*p->addrs));
	if (!p->addrs)
		return STATUS_NO_MEMORY;
	p->n = 0;
	for (size_t i = 0; i < a->n_masters && p->n < max; i++)
		p->addrs[p->n++] = a->masters[i];
	p->n_masters = p->n;
	p->n_groups = 0;
	for (size_t g = 0; g < ng && g < SM_GROUPS_MAX; g++) {
		p->group_first[g] = p->n;
		const struct sm_group *gr = &c->groups[g];
		for (size_t j = 0; j < gr->n_servers && p->n < max; j++)
			p->addrs[p->n++] = gr->servers[j];
		p->n_groups++;
	}
	p->others_first = p->n;
	for (size_t i = 0; i < a->n_addrs && p->n < max; i++)
		if (!listed(p->addrs, p->n, a->addrs[i]))
			p->addrs[p->n++] = a->addrs[i];
	return STATUS_OK;
}

/* The servers of group g in the plan: [*from, *to). */
static void group_span(const struct status_plan *p, size_t g, size_t *from,
		       size_t *to)
{
	*from = p->group_first[g];
	*to = g + 1 < p->n_groups ? p->group_first[g + 1] : p->others_first;
}

/* "0-3,6,9" for the shards of `r` in state `state` (all of them when
 * state is NULL) into buf; returns how many. */
static size_t shard_ranges(const Skv__NodeStatusReply *r, const char *state,
			   char *buf, size_t cap)
{
	size_t used = 0, count = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < r->n_shards; i++) {
		if (state && strcmp(r->shards[i]->state, state) != 0)
			continue;
		uint32_t lo = r->shards[i]->shard, hi = lo;
		count++;
		while (i + 1 < r->n_shards && r->shards[i + 1]->shard == hi + 1 &&
		       (!state || strcmp(r->shards[i + 1]->state, state) == 0)) {
			hi++;
			i++;
			count++;
		}
		int w = lo == hi ? snprintf(buf + used, cap - used,
					    "%s%" PRIu32, used ? "," : "", lo)
				 : snprintf(buf + used, cap - used,
					    "%s%" PRIu32 "-%" PRIu32,
					    used ? "," : "", lo, hi);
		if (w < 0 || (size_t)w >= cap - used)
			break;
		used += (size_t)w;
	}
	return count;
}

/* "serving 0-3; pulling 6" */
static void shard_states(const Skv__NodeStatusReply *r, char *buf,
			 size_t cap)
{
	static const char *const states[] = {"serving", "pulling",
					     "bepulling", "gcing", "held"};
	size_t used = 0;
	buf[0] = '\0';
	for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
		char list[1024];
		if (!shard_ranges(r, states[k], list, sizeof(list)))
			continue;
		int w = snprintf(buf + used, cap - used, "%s%s %s",
				 used ? "; " : "", states[k], list);
		if (w < 0 || (size_t)w >= cap - used)
			break;
		used += (size_t)w;
	}
	if (!used)
		snprintf(buf, cap, "-");
}

static void human_bytes(uint64_t b, char *buf, size_t cap)
{
	if (b < 10240)
		snprintf(buf, cap, "%" PRIu64 " B", b);
	else if (b < (uint64_t)10240 << 10)
		snprintf(buf, cap, "%" PRIu64 " KiB", b >> 10);
	else
		snprintf(buf, cap, "%" PRIu64 " MiB", b >> 20);
}

static void print_node_header(bool kv)
{
	printf("  %-4s %-22s %-10s %6s %9s %9s %9s %9s %s\n", "node",
	       "address", "role", "term", "commit", "applied", "snapshot",
	       "log", kv ? "config  shards" : "");
}

static void print_node(const char *addr, const struct node_status_result *nr,
		       bool kv)
{
	const Skv__NodeStatusReply *r = nr->reply;
	if (nr->status != STATUS_OK || !r) {
		printf("  %-4s %-22s unreachable: %s\n", "-", addr, nr->err);
		return;
	}
	char log[32];
	human_bytes(r->log_bytes, log, sizeof(log));
	printf("  %-4" PRIu32 " %-22s %-10s %6" PRIu64 " %9" PRIu64
	       " %9" PRIu64 " %9" PRIu64 " %9s",
	       r->id, addr, r->role, r->term, r->commit_index,
	       r->applied_index, r->snapshot_index, log);
	if (kv) {
		char st[2048];
		shard_states(r, st, sizeof(st));
		printf(" %6" PRIu64 "  %s", r->config_num, st);
	}
	putchar('\n');
}

/* The leader the servers [from, to) agree on, by its reported address
 * ("" if none answered with one). */
static const char *group_leader(const struct node_status_result *res,
				size_t from, size_t to, uint64_t *term)
{
	const char *best = "";
	*term = 0;
	for (size_t i = from; i < to; i++) {
		const Skv__NodeStatusReply *r = res[i].reply;
		if (r && r->leader && *r->leader && r->term >= *term) {
			best = r->leader;
			*term = r->term;
		}
	}
	return best;
}

static void print_status(const struct sm_config *c,
			 const struct status_plan *p,
			 const struct node_status_result *res)
{
	uint64_t term;
	const char *leader = group_leader(res, 0, p->n_masters, &term);
	if (c)
		printf("shard master: config %" PRIu64 ", %" PRIu32
		       " shards, %zu group%s; leader %s\n",
		       c->num, c->nshards, c->n_groups,
		       c->n_groups == 1 ? "" : "s",
		       *leader ? leader : "unknown");
	else
		printf("shard master: no answer to the query; leader %s\n",
		       *leader ? leader : "unknown");
	print_node_header(false);
	for (size_t i = 0; i < p->n_masters; i++)
		print_node(p->addrs[i], &res[i], false);
	for (size_t g = 0; g < p->n_groups; g++) {
		size_t from, to;
		group_span(p, g, &from, &to);
		const struct sm_group *gr = &c->groups[g];
		leader = group_leader(res, from, to, &term);
		printf("\ngroup %" PRIu64 ": %zu shard%s in config %" PRIu64
		       "; leader %s\n",
		       gr->gid, shards_of(c, gr->gid),
		       shards_of(c, gr->gid) == 1 ? "" : "s", c->num,
		       *leader ? leader : "unknown");
		print_node_header(true);
		for (size_t i = from; i < to; i++)
			print_node(p->addrs[i], &res[i], true);
	}
	if (p->others_first < p->n) {
		printf("\nother servers\n");
		print_node_header(true);
		for (size_t i = p->others_first; i < p->n; i++)
			print_node(p->addrs[i], &res[i], true);
	}
}

static void json_node(FILE *out, const char *addr,
		      const struct node_status_result *nr)
{
	const Skv__NodeStatusReply *r = nr->reply;
	fputs("{\"address\":", out);
	json_str(out, addr);
	if (nr->status != STATUS_OK || !r) {
		fputs(",\"reachable\":false,\"error\":", out);
		json_str(out, nr->err);
		fputc('}', out);
		return;
	}
	fputs(",\"reachable\":true,\"kind\":", out);
	json_str(out, r->kind);
	fputs(",\"cluster\":", out);
	json_str(out, r->cluster);
	fputs(",\"role\":", out);
	json_str(out, r->role);
	fputs(",\"leader\":", out);
	json_str(out, r->leader);
	fprintf(out,
		",\"id\":%" PRIu32 ",\"nodes\":%" PRIu32 ",\"gid\":%" PRIu64
		",\"term\":%" PRIu64 ",\"leader_id\":%" PRIu32
		",\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64
		",\"last_index\":%" PRIu64 ",\"snapshot_index\":%" PRIu64
		",\"log_bytes\":%" PRIu64 ",\"config_num\":%" PRIu64
		",\"uptime_ms\":%" PRIu64 ",\"shards\":[",
		r->id, r->nodes, r->gid, r->term, r->leader_id,
		r->commit_index, r->applied_index, r->last_index,
		r->snapshot_index, r->log_bytes, r->config_num, r->uptime_ms);
	for (size_t i = 0; i < r->n_shards; i++) {
		fprintf(out, "%s{\"shard\":%" PRIu32 ",\"state\":",
			i ? "," : "", r->shards[i]->shard);
		json_str(out, r->shards[i]->state);
		fprintf(out, ",\"config_num\":%" PRIu64 "}",
			r->shards[i]->config_num);
	}
	fputs("]}", out);
}

static void json_nodes(FILE *out, const struct status_plan *p,
		       const struct node_status_result *res, size_t from,
		       size_t to)
{
	fputc('[', out);
	for (size_t i = from; i < to; i++) {
		if (i > from)
			fputc(',', out);
		json_node(out, p->addrs[i], &res[i]);
	}
	fputc(']', out);
}

static void json_status(const struct sm_config *c,
			const struct status_plan *p,
			const struct node_status_result *res)
{
	fputs("{\"ok\":true,\"config\":", stdout);
	json_config(stdout, c);
	fputs(",\"masters\":", stdout);
	json_nodes(stdout, p, res, 0, p->n_masters);
	fputs(",\"groups\":[", stdout);
	for (size_t g = 0; g < p->n_groups; g++) {
		size_t from, to;
		group_span(p, g, &from, &to);
		fprintf(stdout, "%s{\"gid\":%" PRIu64 ",\"shards\":[",
			g ? "," : "", c->groups[g].gid);
		size_t k = 0;
		for (uint32_t s = 0; s < c->nshards; s++)
			if (c->shards[s] == c->groups[g].gid)
				fprintf(stdout, "%s%" PRIu32, k++ ? "," : "",
					s);
		fputs("],\"servers\":", stdout);
		json_nodes(stdout, p, res, from, to);
		fputc('}', stdout);
	}
	fputs("],\"others\":", stdout);
	json_nodes(stdout, p, res, p->others_first, p->n);
	fputs("}\n", stdout);
}

/* `shardctl status`: the configuration query went `rc` (res); asks every
 * server and prints. The exit code. */
static int run_status(const struct shardctl_args *a, int rc,
		      const struct smclerk_result *res)
{
	struct status_plan *p = mem_calloc(1, sizeof(*p));
	if (!p || plan_status(a, rc == STATUS_OK ? res->config : NULL, p)) {
		mem_free(p);
		fprintf(stderr, "shardctl: out of memory\n");
		return SHARDCTL_EXIT_REFUSED;
	}
	struct node_status_result *nr = mem_calloc(p->n ? p->n : 1,
						   sizeof(*nr));
	if (!nr) {
		mem_free(p->addrs);
		mem_free(p);
		fprintf(stderr, "shardctl: out of memory\n");
		return SHARDCTL_EXIT_REFUSED;
	}
	uint64_t t = a->timeout_ms < ATTEMPT_TIMEOUT_MS ? a->timeout_ms
							: ATTEMPT_TIMEOUT_MS;
	node_status_get_many(p->addrs, p->n, t, nr);
	int code = SHARDCTL_EXIT_OK;
	if (rc == STATUS_OK && a->json)
		json_status(res->config, p, nr);
	else if (rc == STATUS_OK)
		print_status(res->config, p, nr);
	else {
		if (!a->json) {
			print_status(NULL, p, nr);
			putchar('\n');
		}
		fflush(stdout);
		code = report_failure(a, rc, res);
	}
	node_status_results_free(nr, p->n);
	mem_free(nr);
	mem_free(p->addrs);
	mem_free(p);
	return code;
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
	if (a.cmd == SHARDCTL_STATUS)
		code = run_status(&a, rc, &res);
	else if (rc == STATUS_OK)
		report_success(&a, &res);
	else
		code = report_failure(&a, rc, &res);
	fflush(stdout);
	sm_config_free(res.config);
	smclerk_free(k);
	shardctl_args_release(&a);
	return code;
}
