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
 * fini, also after a failed assertion. Each replica's stderr goes to
 * `log<id>` in the temporary directory; failures quote its tail. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/monotime.h"
#include "tests/port.h"

#ifndef SHARDMASTER_BIN
#error "SHARDMASTER_BIN must name the shardmaster program"
#endif
#ifndef SHARDCTL_BIN
#error "SHARDCTL_BIN must name the shardctl program"
#endif

#define N 3
#define DEADLINE_MS 30000
#define POLL_MS 20
/* shardctl's own deadline: covers an election after a kill -9. */
#define CTL_TIMEOUT "20000"
#define OUT_MAX 65536
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
	char dir[128];
	char log[128];
	pid_t pid; /* 0: not running */
};

static char tmpdir[] = "/tmp/skv_sm_procs.XXXXXX";
static bool have_tmpdir;
static struct proc procs[N];
static char peers[N * 32];
static pid_t extra_pid; /* a shardctl or short-lived shardmaster */

static void pause_poll(void)
{
	struct timespec ts = {0, POLL_MS * 1000L * 1000L};
	nanosleep(&ts, NULL);
}

/* The last `cap - 1` bytes of a file, for failure messages. */
static void file_tail(const char *path, char *out, size_t cap)
{
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	long from = size > (long)cap - 1 ? size - ((long)cap - 1) : 0;
	fseek(f, from, SEEK_SET);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	fclose(f);
}

/* The whole file from byte `from` on, NUL-terminated (malloc'd). */
static char *file_from(const char *path, long from)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	if (from > size)
		from = size;
	fseek(f, from, SEEK_SET);
	char *buf = malloc((size_t)(size - from) + 1);
	cr_assert_not_null(buf);
	size_t n = fread(buf, 1, (size_t)(size - from), f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* fork + exec argv with stdout to out_fd and stderr to err_fd (-1:
 * /dev/null); the child dies with the test process. */
static pid_t spawn(char *const argv[], int out_fd, int err_fd)
{
	fflush(NULL); /* nothing buffered is written twice */
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(out_fd >= 0 ? out_fd : null, 1);
		dup2(err_fd >= 0 ? err_fd : null, 2);
		/* Only 0, 1, 2 stay open: a child holding the write end of
		 * another child's pipe would delay its EOF. */
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execv(argv[0], argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* Waits for pid to exit; SIGKILL at `end`. The wait status. */
static int reap(pid_t pid, uint64_t end)
{
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return st;
		if (monotime_now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return st;
		}
		pause_poll();
	}
}

static void proc_kill9(struct proc *p)
{
	if (!p->pid)
		return;
	kill(p->pid, SIGKILL);
	reap(p->pid, monotime_now_ms() + DEADLINE_MS);
	p->pid = 0;
}

/* Starts replica p (again: same directory and port) and waits for its
 * "started" line. A port a killed process held may still be busy for a
 * moment: a start that failed only for that is retried. */
static void proc_start(struct proc *p)
{
	uint64_t end = monotime_now_ms() + DEADLINE_MS;
	char id[16];
	snprintf(id, sizeof(id), "%u", p->id);
	char *argv[] = {SHARDMASTER_BIN, "--id",	  id,
			"--peers",	 peers,		  "--data",
			p->dir,		 "--compact-bytes", COMPACT_BYTES,
			NULL};
	for (;;) {
		long from = file_size(p->log);
		int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		cr_assert_geq(fd, 0, "%s: %s", p->log, strerror(errno));
		p->pid = spawn(argv, fd, fd);
		close(fd);
		for (;;) {
			char *text = file_from(p->log, from);
			bool started = strstr(text, "sm_server: started:");
			bool in_use = strstr(text, "address in use");
			free(text);
			if (started)
				return;
			int st;
			if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
				p->pid = 0;
				char tail[1024];
				file_tail(p->log, tail, sizeof(tail));
				cr_assert(in_use && monotime_now_ms() < end,
					  "replica %u did not start (wait "
					  "status %#x):\n%s",
					  p->id, st, tail);
				break; /* the port: try again */
			}
			cr_assert_lt(monotime_now_ms(), end,
				     "replica %u: no 'started' in %d ms",
				     p->id, DEADLINE_MS);
			pause_poll();
		}
		pause_poll();
	}
}

/* SIGTERM, then expects a clean exit and a log free of sanitizer
 * reports. */
static void proc_stop(struct proc *p)
{
	cr_assert_neq(p->pid, 0);
	kill(p->pid, SIGTERM);
	int st = reap(p->pid, monotime_now_ms() + DEADLINE_MS);
	p->pid = 0;
	char tail[2048];
	file_tail(p->log, tail, sizeof(tail));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "replica %u did not stop cleanly (wait status %#x):\n%s",
		  p->id, st, tail);
	char *text = file_from(p->log, 0);
	bool bad = strstr(text, "Sanitizer") || strstr(text, "runtime error");
	free(text);
	cr_assert(!bad, "replica %u: sanitizer report in %s:\n%s", p->id,
		  p->log, tail);
}

/* Waits until p's log, from byte `from` on, contains `what`. */
static void wait_log(const struct proc *p, long from, const char *what)
{
	uint64_t end = monotime_now_ms() + DEADLINE_MS;
	for (;;) {
		char *text = file_from(p->log, from);
		bool found = strstr(text, what);
		free(text);
		if (found)
			return;
		char tail[1024];
		file_tail(p->log, tail, sizeof(tail));
		cr_assert_lt(monotime_now_ms(), end,
			     "replica %u: no '%s' in %d ms:\n%s", p->id, what,
			     DEADLINE_MS, tail);
		pause_poll();
	}
}

/* Runs a program to completion with a deadline; its stdout and stderr
 * (each truncated to OUT_MAX - 1 bytes). The exit code, or -1 if it
 * did not exit normally. */
static int run(char *const argv[], char *out, char *err)
{
	int po[2], pe[2];
	cr_assert_eq(pipe(po), 0);
	cr_assert_eq(pipe(pe), 0);
	extra_pid = spawn(argv, po[1], pe[1]);
	close(po[1]);
	close(pe[1]);
	size_t lens[2] = {0, 0};
	char *bufs[2] = {out, err};
	struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN},
			       {.fd = pe[0], .events = POLLIN}};
	uint64_t end = monotime_now_ms() + 2 * DEADLINE_MS;
	while ((pf[0].fd >= 0 || pf[1].fd >= 0) && monotime_now_ms() < end) {
		if (poll(pf, 2, POLL_MS * 10) <= 0)
			continue;
		for (int k = 0; k < 2; k++) {
			if (pf[k].fd < 0 || !pf[k].revents)
				continue;
			char tmp[4096];
			ssize_t n = read(pf[k].fd, tmp, sizeof(tmp));
			if (n <= 0) {
				close(pf[k].fd);
				pf[k].fd = -1;
				continue;
			}
			size_t room = OUT_MAX - 1 - lens[k];
			size_t take = (size_t)n < room ? (size_t)n : room;
			memcpy(bufs[k] + lens[k], tmp, take);
			lens[k] += take;
		}
	}
	for (int k = 0; k < 2; k++) {
		if (pf[k].fd >= 0)
			close(pf[k].fd);
		bufs[k][lens[k]] = 0;
	}
	int st = reap(extra_pid, monotime_now_ms());
	extra_pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char ctl_out[OUT_MAX], ctl_err[OUT_MAX];

/* shardctl --masters <peers> --json --timeout T <args...>; its exit
 * code, stdout in ctl_out. */
static int shardctl(const char *a0, const char *a1, const char *a2,
		    const char *a3)
{
	char *argv[] = {SHARDCTL_BIN, "--masters", peers, "--json",
			"--timeout", CTL_TIMEOUT, (char *)a0, (char *)a1,
			(char *)a2, (char *)a3, NULL};
	return run(argv, ctl_out, ctl_err);
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
			  "not a successful change: %s%s", output, ctl_err);
	}
	cr_assert(parse_cfg(p, c, &end), "not a configuration: %s%s", output,
		  ctl_err);
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
	cr_assert_eq(rc, 0, "shardctl exit %d: %s%s", rc, ctl_out, ctl_err);
	char text[sizeof(history[0])];
	take_cfg(ctl_out, true, text, sizeof(text), c);
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
		     ctl_out, ctl_err);
	take_cfg(ctl_out, false, text, sizeof(text), &c);
	cr_assert_str_eq(text, history[want], "query %s", num < 0 ? "" : arg);
}

/* ======== suite ======== */

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
	have_tmpdir = true;
	size_t off = 0;
	for (int i = 0; i < N; i++) {
		procs[i].id = (uint32_t)(i + 1);
		snprintf(procs[i].dir, sizeof(procs[i].dir), "%s/sm%d", tmpdir,
			 i + 1);
		snprintf(procs[i].log, sizeof(procs[i].log), "%s/log%d",
			 tmpdir, i + 1);
		off += (size_t)snprintf(peers + off, sizeof(peers) - off,
					"%s127.0.0.1:%d", i ? "," : "",
					test_port_reserve());
	}
}

static int remove_one(const char *path, const struct stat *sb, int flag,
		      struct FTW *ftw)
{
	remove(path);
	return 0;
}

/* Also after a failed assertion: no child outlives the test. */
static void teardown(void)
{
	for (int i = 0; i < N; i++)
		proc_kill9(&procs[i]);
	if (extra_pid) {
		kill(extra_pid, SIGKILL);
		waitpid(extra_pid, NULL, 0);
		extra_pid = 0;
	}
	if (have_tmpdir)
		nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(sm_procs, .init = setup, .fini = teardown, .timeout = 500);

Test(sm_procs, changes_survive_kill_9_of_each_replica_and_of_all)
{
	for (int i = 0; i < N; i++)
		proc_start(&procs[i]);

	/* Config 0 exists once the first leader's Init applied (shardctl
	 * retries NOT_READY until then). */
	int rc = shardctl("query", NULL, NULL, NULL);
	cr_assert_eq(rc, 0, "query: exit %d: %s%s", rc, ctl_out, ctl_err);
	struct cfg c;
	take_cfg(ctl_out, false, history[0], sizeof(history[0]), &c);
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
		     ctl_out, ctl_err);
	expect_query(-1, latest);

	/* Each replica in turn: down, the other two serve and change,
	 * enough to compact their logs past it; back up, it catches up by
	 * snapshot (which replaces its meta column family: its identity
	 * must survive that) and must take part, as the next round needs
	 * it. */
	for (int i = 0; i < N; i++) {
		cr_log_info("kill -9 replica %u", procs[i].id);
		proc_kill9(&procs[i]);
		expect_query(-1, latest);
		if (i % 2 == 0) {
			char addr[32];
			snprintf(addr, sizeof(addr), "127.0.0.1:%d", 4001 + i);
			join(400 + (uint64_t)i, addr, NULL);
		}
		for (int k = 0; k < CHANGES_WHILE_DOWN; k++)
			move_to(k % 2 ? 200 : 300);
		expect_query(-1, latest);
		long from = file_size(procs[i].log);
		proc_start(&procs[i]);
		wait_log(&procs[i], from, "installed a snapshot");
	}

	/* All at once: everything acknowledged is still there. */
	cr_log_info("kill -9 all replicas at config %" PRIu64, latest);
	for (int i = 0; i < N; i++)
		proc_kill9(&procs[i]);
	for (int i = 0; i < N; i++)
		proc_start(&procs[i]);
	expect_query(-1, latest);
	for (uint64_t n = 0; n <= latest; n++)
		expect_query((int64_t)n, n);
	expect_query((int64_t)latest + 100, latest); /* past the end */
	leave(200);
	expect_query(-1, latest);

	for (int i = 0; i < N; i++)
		proc_stop(&procs[i]);
}

/* Starts shardmaster with argv[1..] and expects it to refuse: exit 1
 * with a stderr line containing `why`. */
static void expect_refused(char *const argv[], const char *why)
{
	static char out[OUT_MAX], err[OUT_MAX];
	int rc = run(argv, out, err);
	cr_assert_eq(rc, 1, "exit %d, expected 1:\n%s", rc, err);
	cr_assert(strstr(err, why), "no '%s' in:\n%s", why, err);
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
	cr_assert_eq(rc, 0, "query: exit %d: %s%s", rc, ctl_out, ctl_err);
	proc_stop(p);

	char *other_id[] = {SHARDMASTER_BIN, "--id", "2", "--peers", two,
			    "--data", p->dir, NULL};
	expect_refused(other_id, "identity mismatch");
	char *other_cluster[] = {SHARDMASTER_BIN, "--id", "1", "--peers",
				 one, "--data", p->dir, "--cluster", "other",
				 NULL};
	expect_refused(other_cluster, "identity mismatch");

	snprintf(dir, sizeof(dir), "%s/junk", tmpdir);
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
	proc_stop(p);
}
