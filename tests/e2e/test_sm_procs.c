/* The shard master as real processes: three `shardmaster` programs on
 * 127.0.0.1 with their stores on disk, administered with the `shardctl`
 * program (--json), exactly as an operator would.
 *
 * The scenario: join two groups, leave one, join a third, move a shard,
 * checking every configuration against a model (groups, every shard on a
 * listed group, balance after join/leave, the moved shard in place,
 * numbers going up by one). Then each replica in turn is killed with
 * kill -9 and restarted: while it is down the other two still answer the
 * latest configuration and accept a change. Then all three are killed at
 * once and restarted: the latest configuration and every historical one
 * (query N) read back byte for byte. At the end SIGTERM stops each
 * cleanly (exit 0, no sanitizer report in its log).
 *
 * A second test starts a replica on the data directory of another id,
 * another cluster, and on a directory of unrelated files: each refuses to
 * start, saying why.
 *
 * Every wait polls with a deadline; every child is killed in the suite's
 * fini, also after a failed assertion. Each replica's output goes to
 * `sm<id>.log` in the temporary directory; failures quote its tail
 * (tests/e2e/procs.h). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/monotime.h"
#include "tests/e2e/procs.h"
#include "tests/port.h"

#ifndef SHARDMASTER_BIN
#error "SHARDMASTER_BIN must name the shardmaster program"
#endif
#ifndef SHARDCTL_BIN
#error "SHARDCTL_BIN must name the shardctl program"
#endif

#define N 3
/* shardctl's own deadline: covers an election after a kill -9. */
#define CTL_TIMEOUT "20000"
#define CONFIGS_MAX 128
#define NSHARDS 10
/* Log compaction threshold of the replicas: a few dozen small entries,
 * so the changes made while a replica is down compact the log past it
 * and it catches up by snapshot. */
#define COMPACT_BYTES "256"
#define CHANGES_WHILE_DOWN 20

/* ======== processes ======== */

struct proc {
	uint32_t id;
	struct procs_server s; /* "sm<id>" */
};

static char tmpdir[] = "/tmp/skv_sm_procs.XXXXXX";
static struct proc procs[N];
static char peers[N * 32];

/* Starts replica p (again: same directory and port) and waits for its
 * "started" line. A port a killed process held may still be busy for a
 * moment: a start that failed only for that is retried. */
static void proc_start(struct proc *p)
{
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	char id[16];
	snprintf(id, sizeof(id), "%u", p->id);
	char *argv[] = {SHARDMASTER_BIN, "--id",	  id,
			"--peers",	 peers,		  "--data",
			p->s.dir,	 "--compact-bytes", COMPACT_BYTES,
			NULL};
	for (;;) {
		long from = procs_file_size(p->s.log);
		procs_server_spawn(&p->s, argv);
		if (procs_server_wait_started(&p->s, from, end))
			return;
		procs_pause();
	}
}

static struct procs_run ctl;

/* shardctl --masters <peers> --json --timeout T <args...>; its exit
 * code, output in ctl. */
static int shardctl(const char *a0, const char *a1, const char *a2,
		    const char *a3)
{
	char *argv[] = {SHARDCTL_BIN, "--masters", peers, "--json",
			"--timeout", CTL_TIMEOUT, (char *)a0, (char *)a1,
			(char *)a2, (char *)a3, NULL};
	char **argvs[] = {argv};
	procs_run_all(argvs, &ctl, 1);
	return ctl.rc;
}

/* ======== configurations ======== */

#define GROUPS_MAX 8
#define SERVERS_MAX 4

struct group {
	uint64_t gid;
	int n;
	char servers[SERVERS_MAX][32];
};

struct cfg {
	uint64_t num;
	int nshards;
	uint64_t shards[64];
	int ngroups;
	struct group groups[GROUPS_MAX];
};

static bool eat(const char **p, const char *s)
{
	size_t n = strlen(s);
	if (strncmp(*p, s, n) != 0)
		return false;
	*p += n;
	return true;
}

static bool eat_u64(const char **p, uint64_t *v)
{
	char *end;
	if (**p < '0' || **p > '9')
		return false;
	errno = 0;
	*v = strtoull(*p, &end, 10);
	*p = end;
	return errno == 0;
}

static bool eat_str(const char **p, char *out, size_t cap)
{
	if (!eat(p, "\""))
		return false;
	const char *q = strchr(*p, '"');
	if (!q || (size_t)(q - *p) >= cap)
		return false;
	memcpy(out, *p, (size_t)(q - *p));
	out[q - *p] = 0;
	*p = q + 1;
	return true;
}

/* Parses exactly what shardctl --json prints for a configuration:
 * {"num":N,"shards":[G,...],"groups":{"G":["A",...],...}}; *end is
 * where it stopped. */
static bool parse_cfg(const char *p, struct cfg *c, const char **end)
{
	memset(c, 0, sizeof(*c));
	if (!eat(&p, "{\"num\":") || !eat_u64(&p, &c->num) ||
	    !eat(&p, ",\"shards\":["))
		return false;
	while (!eat(&p, "]")) {
		if (c->nshards && !eat(&p, ","))
			return false;
		if (c->nshards == 64 || !eat_u64(&p, &c->shards[c->nshards++]))
			return false;
	}
	if (!eat(&p, ",\"groups\":{"))
		return false;
	while (!eat(&p, "}")) {
		if (c->ngroups && !eat(&p, ","))
			return false;
		if (c->ngroups == GROUPS_MAX)
			return false;
		struct group *g = &c->groups[c->ngroups++];
		char gid[32];
		if (!eat_str(&p, gid, sizeof(gid)) || !eat(&p, ":["))
			return false;
		const char *q = gid;
		if (!eat_u64(&q, &g->gid) || *q)
			return false;
		while (!eat(&p, "]")) {
			if (g->n && !eat(&p, ","))
				return false;
			if (g->n == SERVERS_MAX ||
			    !eat_str(&p, g->servers[g->n++], 32))
				return false;
		}
	}
	if (!eat(&p, "}"))
		return false;
	*end = p;
	return true;
}

/* The configuration object of a query's or a change's output, copied
 * into out (as printed) and parsed into c. */
static void take_cfg(const char *output, bool change, char *out,
		     size_t cap, struct cfg *c)
{
	const char *p = output, *end;
	if (change) {
		cr_assert(eat(&p, "{\"ok\":true,\"config\":"),
			  "not a successful change: %s%s", output, ctl.err);
	}
	cr_assert(parse_cfg(p, c, &end), "not a configuration: %s%s", output,
		  ctl.err);
	cr_assert_lt((size_t)(end - p), cap);
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = 0;
}

/* ---- the model ---- */

static struct group model[GROUPS_MAX];
static int model_n;
static char history[CONFIGS_MAX][2048]; /* config N as shardctl prints it */
static uint64_t latest;

static const struct group *model_find(uint64_t gid)
{
	for (int i = 0; i < model_n; i++)
		if (model[i].gid == gid)
			return &model[i];
	return NULL;
}

/* c has the model's groups and every shard on one of them; balanced:
 * shard counts differ by at most one. */
static void check_cfg(const struct cfg *c, bool balanced)
{
	cr_assert_eq(c->nshards, NSHARDS, "config %" PRIu64 ": %d shards",
		     c->num, c->nshards);
	cr_assert_eq(c->ngroups, model_n, "config %" PRIu64 ": %d groups, "
		     "expected %d", c->num, c->ngroups, model_n);
	for (int i = 0; i < c->ngroups; i++) {
		const struct group *g = &c->groups[i], *m = model_find(g->gid);
		cr_assert_not_null(m, "config %" PRIu64 ": unknown gid %" PRIu64,
				   c->num, g->gid);
		cr_assert_eq(g->n, m->n);
		for (int k = 0; k < g->n; k++)
			cr_assert_str_eq(g->servers[k], m->servers[k]);
		if (i)
			cr_assert_gt(g->gid, c->groups[i - 1].gid,
				     "groups not sorted by gid");
	}
	int count[GROUPS_MAX] = {0};
	for (int s = 0; s < c->nshards; s++) {
		if (!model_n) {
			cr_assert_eq(c->shards[s], 0);
			continue;
		}
		int k = 0;
		while (k < c->ngroups && c->groups[k].gid != c->shards[s])
			k++;
		cr_assert_lt(k, c->ngroups,
			     "config %" PRIu64 ": shard %d on gid %" PRIu64
			     ", not a listed group",
			     c->num, s, c->shards[s]);
		count[k]++;
	}
	if (balanced && model_n) {
		int lo = NSHARDS, hi = 0;
		for (int k = 0; k < c->ngroups; k++) {
			lo = count[k] < lo ? count[k] : lo;
			hi = count[k] > hi ? count[k] : hi;
		}
		cr_assert_leq(hi - lo, 1, "config %" PRIu64 " unbalanced: %s",
			      c->num, history[c->num]);
	}
}

/* A change answered OK made config latest+1: records and checks it. */
static void expect_change(int rc, bool balanced, struct cfg *c)
{
	cr_assert_eq(rc, 0, "shardctl exit %d: %s%s", rc, ctl.out, ctl.err);
	char text[sizeof(history[0])];
	take_cfg(ctl.out, true, text, sizeof(text), c);
	cr_assert_eq(c->num, latest + 1,
		     "change made config %" PRIu64 ", expected %" PRIu64,
		     c->num, latest + 1);
	cr_assert_lt(c->num, CONFIGS_MAX);
	latest = c->num;
	strcpy(history[latest], text);
	check_cfg(c, balanced);
}

static void join(uint64_t gid, const char *s0, const char *s1)
{
	char arg[128];
	struct group *g = &model[model_n++];
	*g = (struct group){.gid = gid, .n = s1 ? 2 : 1};
	snprintf(g->servers[0], 32, "%s", s0);
	if (s1)
		snprintf(g->servers[1], 32, "%s", s1);
	snprintf(arg, sizeof(arg), "%" PRIu64 "=%s%s%s", gid, s0,
		 s1 ? "," : "", s1 ? s1 : "");
	struct cfg c;
	expect_change(shardctl("join", arg, NULL, NULL), true, &c);
}

static void leave(uint64_t gid)
{
	char arg[32];
	int k = 0;
	while (k < model_n && model[k].gid != gid)
		k++;
	cr_assert_lt(k, model_n);
	model[k] = model[--model_n];
	snprintf(arg, sizeof(arg), "%" PRIu64, gid);
	struct cfg c;
	expect_change(shardctl("leave", arg, NULL, NULL), true, &c);
}

/* Moves a shard that gid does not own yet onto it. */
static void move_to(uint64_t gid)
{
	struct cfg cur;
	const char *end;
	cr_assert(parse_cfg(history[latest], &cur, &end));
	int s = 0;
	while (s < cur.nshards && cur.shards[s] == gid)
		s++;
	cr_assert_lt(s, cur.nshards);
	char sa[16], ga[32];
	snprintf(sa, sizeof(sa), "%d", s);
	snprintf(ga, sizeof(ga), "%" PRIu64, gid);
	struct cfg c;
	expect_change(shardctl("move", sa, ga, NULL), false, &c);
	cr_assert_eq(c.shards[s], gid, "shard %d not moved: %s", s,
		     history[latest]);
	for (int k = 0; k < c.nshards; k++)
		if (k != s)
			cr_assert_eq(c.shards[k], cur.shards[k],
				     "move changed shard %d too", k);
}

/* query [num] answers exactly history[want]. */
static void expect_query(int64_t num, uint64_t want)
{
	char arg[32], text[sizeof(history[0])];
	struct cfg c;
	snprintf(arg, sizeof(arg), "%" PRId64, num);
	int rc = shardctl("query", num < 0 ? NULL : arg, NULL, NULL);
	cr_assert_eq(rc, 0, "query %s: exit %d: %s%s", num < 0 ? "" : arg, rc,
		     ctl.out, ctl.err);
	take_cfg(ctl.out, false, text, sizeof(text), &c);
	cr_assert_str_eq(text, history[want], "query %s", num < 0 ? "" : arg);
}

/* ======== suite ======== */

static void setup(void)
{
	procs_setup(tmpdir);
	size_t off = 0;
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "sm%d", i + 1);
		procs[i].id = (uint32_t)(i + 1);
		procs_server_init(&procs[i].s, name);
		off += (size_t)snprintf(peers + off, sizeof(peers) - off,
					"%s127.0.0.1:%d", i ? "," : "",
					test_port_reserve());
	}
}

/* Also after a failed assertion: no child outlives the test. */
static void teardown(void)
{
	for (int i = 0; i < N; i++)
		procs_server_kill9(&procs[i].s);
	procs_teardown();
}

TestSuite(sm_procs, .init = setup, .fini = teardown, .timeout = 500);

Test(sm_procs, changes_survive_kill_9_of_each_replica_and_of_all)
{
	for (int i = 0; i < N; i++)
		proc_start(&procs[i]);

	/* Config 0 exists once the first leader's Init applied (shardctl
	 * retries NOT_READY until then). */
	int rc = shardctl("query", NULL, NULL, NULL);
	cr_assert_eq(rc, 0, "query: exit %d: %s%s", rc, ctl.out, ctl.err);
	struct cfg c;
	take_cfg(ctl.out, false, history[0], sizeof(history[0]), &c);
	cr_assert_eq(c.num, 0);
	check_cfg(&c, true);

	join(100, "127.0.0.1:1001", "127.0.0.1:1002");
	join(200, "127.0.0.1:2001", NULL);
	expect_query(-1, latest);
	leave(100);
	join(300, "127.0.0.1:3001", "127.0.0.1:3002");
	move_to(300);
	expect_query(-1, latest);
	/* A refused change changes nothing. */
	rc = shardctl("leave", "100", NULL, NULL);
	cr_assert_eq(rc, 1, "leave of a gone group: exit %d: %s%s", rc,
		     ctl.out, ctl.err);
	expect_query(-1, latest);

	/* Each replica in turn: down, the other two serve and change,
	 * enough to compact their logs past it; back up, it catches up by
	 * snapshot (which replaces its meta column family: its identity
	 * must survive that) and must take part, as the next round needs
	 * it. */
	for (int i = 0; i < N; i++) {
		cr_log_info("kill -9 replica %u", procs[i].id);
		procs_server_kill9(&procs[i].s);
		expect_query(-1, latest);
		if (i % 2 == 0) {
			char addr[32];
			snprintf(addr, sizeof(addr), "127.0.0.1:%d", 4001 + i);
			join(400 + (uint64_t)i, addr, NULL);
		}
		for (int k = 0; k < CHANGES_WHILE_DOWN; k++)
			move_to(k % 2 ? 200 : 300);
		expect_query(-1, latest);
		long from = procs_file_size(procs[i].s.log);
		proc_start(&procs[i]);
		procs_server_wait_log(&procs[i].s, from,
				      "installed a snapshot");
	}

	/* All at once: everything acknowledged is still there. */
	cr_log_info("kill -9 all replicas at config %" PRIu64, latest);
	for (int i = 0; i < N; i++)
		procs_server_kill9(&procs[i].s);
	for (int i = 0; i < N; i++)
		proc_start(&procs[i]);
	expect_query(-1, latest);
	for (uint64_t n = 0; n <= latest; n++)
		expect_query((int64_t)n, n);
	expect_query((int64_t)latest + 100, latest); /* past the end */
	leave(200);
	expect_query(-1, latest);

	for (int i = 0; i < N; i++)
		procs_server_stop(&procs[i].s);
}

/* Starts shardmaster with argv[1..] and expects it to refuse: exit 1
 * with a stderr line containing `why`. */
static void expect_refused(char *const argv[], const char *why)
{
	static struct procs_run r;
	char **argvs[] = {(char **)argv};
	procs_run_all(argvs, &r, 1);
	cr_assert_eq(r.rc, 1, "exit %d, expected 1:\n%s", r.rc, r.err);
	cr_assert(strstr(r.err, why), "no '%s' in:\n%s", why, r.err);
}

Test(sm_procs, refuses_a_data_dir_that_is_not_its_own)
{
	/* A one-replica shard master creates its directory, then stops. */
	char one[64], two[128], dir[160];
	snprintf(one, sizeof(one), "127.0.0.1:%d", test_port_reserve());
	snprintf(two, sizeof(two), "%s,127.0.0.1:%d", one, test_port_reserve());
	struct proc *p = &procs[0];
	snprintf(peers, sizeof(peers), "%s", one);
	proc_start(p);
	/* Wait for its Init: the store then holds Raft state as well. */
	int rc = shardctl("query", NULL, NULL, NULL);
	cr_assert_eq(rc, 0, "query: exit %d: %s%s", rc, ctl.out, ctl.err);
	procs_server_stop(&p->s);

	char *other_id[] = {SHARDMASTER_BIN, "--id", "2", "--peers", two,
			    "--data", p->s.dir, NULL};
	expect_refused(other_id, "identity mismatch");
	char *other_cluster[] = {SHARDMASTER_BIN, "--id", "1", "--peers",
				 one, "--data", p->s.dir, "--cluster", "other",
				 NULL};
	expect_refused(other_cluster, "identity mismatch");

	snprintf(dir, sizeof(dir), "%s/junk", procs_dir());
	cr_assert_eq(mkdir(dir, 0755), 0);
	char file[200];
	snprintf(file, sizeof(file), "%s/notes.txt", dir);
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fputs("not a database\n", f);
	fclose(f);
	char *junk[] = {SHARDMASTER_BIN, "--id", "1", "--peers", one,
			"--data", dir, NULL};
	expect_refused(junk, "not a shard-master data dir");

	/* Its own identity still starts. */
	proc_start(p);
	procs_server_stop(&p->s);
}
