/* Three Raft nodes as real processes (TESTPLAN "real: 3 processes"): each
 * child of fork() runs a raft_node on its own loop thread, gRPC on
 * 127.0.0.1 and a RocksDB store on disk; the test process drives them over
 * pipes and never touches gRPC itself (it forks before any gRPC use).
 *
 * Why processes: kill -9 stops a node at an arbitrary instruction, with
 * RPCs in flight and a turn half done; what it had not handed to the OS
 * is gone, RocksDB recovers from its real WAL and files, the kernel frees
 * the port and the peers' connections break. (Writes already handed to
 * the OS survive kill -9, synced or not: power loss is not tested here.)
 *
 * The scenario: agree on 500 entries; kill -9 the leader; the other two
 * elect a new one and commit 500 more, compacting their logs; the old
 * leader restarts from its directory and catches up by snapshot; then a
 * follower is killed right after the leader committed entries it holds
 * but has not applied, 300 more commit, and it restarts and applies them
 * from its own log and the leader's. After each restart every node
 * reports the same applied index and the same count of applied entries,
 * which must equal the entries known committed: nothing applied was lost
 * or applied twice. At the end the three stores hold the same data.
 *
 * Every wait polls a condition with a deadline, which only guards against
 * hangs. The child protocol, one line each way:
 *     status     -> "ROLE TERM COMMIT APPLIED COUNT"
 *     propose N  -> "ok FIRST LAST" or "notleader"
 *     EOF        -> the child shuts down (node.h order) and exits 0. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "common/buf.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/monotime.h"
#include "common/raft/node.h"
#include "common/rpc/rpc.h"
#include "common/status.h"
#include "common/store/store.h"
#include "tests/e2e/procs.h"
#include "tests/port.h"
#include "tests/store_dump.h"

#define N 3
#define BATCH 100
#define ENTRY_BYTES 16 /* "e<pid>.<seq>" padded */
#define EXIT_BIND 75 /* the child could not listen on its port */

/* ======== the child: one Raft node process ======== */

/* Every committed entry is written into `data` under its index; meta
 * "count" counts them, in the same batch as Raft's applied index. */
struct fsm {
	struct store *store;
	uint64_t count;
	uint64_t last_index; /* of the last applied entry: never goes back */
};

static void fsm_load(struct fsm *f)
{
	struct buf v;
	buf_init(&v);
	int rc = store_get(f->store, STORE_CF_META, "count", 5, &v);
	if (rc == STATUS_OK && v.len == 8)
		f->count = get_u64be(v.data);
	else if (rc == STATUS_NOT_FOUND)
		f->count = 0;
	else
		log_fatal("fsm", "cannot read the count: %s", status_name(rc));
	buf_free(&v);
}

static void fsm_apply(void *ctx, uint64_t index, const void *data, size_t len,
		      struct store_batch *b)
{
	struct fsm *f = ctx;
	uint8_t key[8], v[8];
	if (index <= f->last_index)
		log_fatal("fsm", "entry %llu applied after %llu",
			  (unsigned long long)index,
			  (unsigned long long)f->last_index);
	f->last_index = index;
	put_u64be(key, index);
	store_batch_put(b, STORE_CF_DATA, key, sizeof(key), data, len);
	put_u64be(v, ++f->count);
	store_batch_put(b, STORE_CF_META, "count", 5, v, sizeof(v));
}

static void fsm_restore(void *ctx, uint64_t index)
{
	struct fsm *f = ctx;
	fsm_load(f);
	f->last_index = index;
	log_info("fsm", "restored a snapshot at %llu: count %llu",
		 (unsigned long long)index, (unsigned long long)f->count);
}

static const struct raft_fsm_ops fsm_ops = {.apply = fsm_apply,
					    .restore = fsm_restore};

struct child {
	struct store *store;
	struct loop *loop;
	pthread_t thread;
	struct rpc_server *srv;
	struct rpc_client *cli;
	struct raft_node *node;
	struct fsm fsm;
	uint64_t seq; /* of proposed values */
};

/* A command run on the loop thread (status if n == 0, else propose n);
 * the main thread waits for `done`. */
struct loop_req {
	struct child *c;
	int n;
	char answer[64];
	bool done;
};

static pthread_mutex_t req_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t req_cond = PTHREAD_COND_INITIALIZER;

static void req_status(struct loop_req *q)
{
	struct raft *r = raft_node_raft(q->c->node);
	snprintf(q->answer, sizeof(q->answer), "%s %llu %llu %llu %llu",
		 raft_role_name(raft_role(r)),
		 (unsigned long long)raft_term(r),
		 (unsigned long long)raft_commit_index(r),
		 (unsigned long long)raft_replica_applied_index(
			 raft_node_replica(q->c->node)),
		 (unsigned long long)q->c->fsm.count);
}

/* All or nothing: the role cannot change within one loop event. */
static void req_propose(struct loop_req *q)
{
	uint64_t first = 0, index = 0;
	for (int i = 0; i < q->n; i++) {
		char data[ENTRY_BYTES + 1];
		memset(data, '.', sizeof(data));
		snprintf(data, sizeof(data), "e%d.%llu", (int)getpid(),
			 (unsigned long long)q->c->seq++);
		data[strlen(data)] = '.'; /* distinct, and ENTRY_BYTES long */
		int rc = raft_node_propose(q->c->node, data, ENTRY_BYTES,
					   &index, NULL);
		if (rc != STATUS_OK) {
			snprintf(q->answer, sizeof(q->answer), "%s",
				 rc == STATUS_NOT_LEADER && i == 0
					 ? "notleader"
					 : status_name(rc));
			return;
		}
		if (i == 0)
			first = index;
	}
	snprintf(q->answer, sizeof(q->answer), "ok %llu %llu",
		 (unsigned long long)first, (unsigned long long)index);
}

static void run_req(void *arg)
{
	struct loop_req *q = arg;
	if (q->n == 0)
		req_status(q);
	else
		req_propose(q);
	pthread_mutex_lock(&req_mu);
	q->done = true;
	pthread_cond_broadcast(&req_cond);
	pthread_mutex_unlock(&req_mu);
}

static void *loop_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

/* Writes one line; false once the parent is gone. */
static bool answer(int fd, const char *line)
{
	return dprintf(fd, "%s\n", line) > 0;
}

/* The shutdown order of node.h. */
static void child_close(struct child *c, bool loop_running)
{
	raft_node_stop(c->node);
	rpc_server_shutdown(c->srv);
	loop_stop(c->loop);
	if (loop_running)
		pthread_join(c->thread, NULL);
	loop_drain(c->loop);
	rpc_client_free(c->cli);
	raft_node_free(c->node);
	rpc_server_free(c->srv);
	loop_free(c->loop);
	store_close(c->store);
}

/* Sanitizer builds report leaks here; _exit skips the atexit handlers
 * this process inherited from the test runner. LeakSanitizer warns that
 * "thread <the parent's> was not suspended": its registry, copied by
 * fork, still names the parent's main thread. That only drops roots (the
 * main thread's stack, which holds nothing live here): it could report a
 * false leak, never hide one. */
static _Noreturn void child_exit(int code)
{
#ifdef __SANITIZE_ADDRESS__
	__lsan_do_leak_check();
#endif
	_exit(code);
}

static char addrs[N][32]; /* "127.0.0.1:port" of node i + 1 */

static _Noreturn void child_main(uint32_t id, const char *dir, int cmd_fd,
				 int resp_fd)
{
	struct child c = {0};
	char err[256], tag[16];

	snprintf(tag, sizeof(tag), "node%u/%d", id, (int)getpid());
	log_set_node(tag);
	log_set_clock(monotime_log_clock, NULL);
	log_set_level(LOG_INFO);
	struct store_opts so = {.path = dir,
				.create_if_missing = true,
				.block_cache_bytes = 1 << 20};
	if (store_open(&so, &c.store, err, sizeof(err)) != STATUS_OK ||
	    raft_storage_recover(c.store, err, sizeof(err)) != STATUS_OK)
		log_fatal("child", "store %s: %s", dir, err);
	c.fsm.store = c.store;
	fsm_load(&c.fsm);
	c.loop = loop_new();
	c.srv = rpc_server_new(NULL);
	c.cli = rpc_client_new(NULL);
	if (!c.loop || !c.srv || !c.cli)
		log_fatal("child", "out of memory");
	struct raft_node_opts o = {
		.config = {.id = id,
			   .n_nodes = N,
			   .election_timeout_ms_min = 400,
			   .election_timeout_ms_max = 800,
			   .heartbeat_ms = 100,
			   .snapshot_chunk_bytes_max = 4096,
			   .seed = ((uint64_t)getpid() << 8) | id},
		.loop = c.loop,
		.server = c.srv,
		.client = c.cli,
		.store = c.store,
		.fsm = &fsm_ops,
		.fsm_ctx = &c.fsm,
		/* 768 entries: the leader compacts during the 500 entries
		 * after the first kill (the old leader catches up by
		 * snapshot), not during the follower's outage (it catches
		 * up from the log). */
		.compaction_log_bytes_max = 768 * ENTRY_BYTES,
	};
	for (uint32_t i = 0; i < N; i++) {
		o.config.nodes[i] = i + 1;
		o.addrs[i] = addrs[i];
	}
	if (raft_node_new(&o, &c.node, err, sizeof(err)) != STATUS_OK)
		log_fatal("child", "raft_node_new: %s", err);
	/* The loop does not run yet: this thread is the replica's owner. */
	c.fsm.last_index = raft_replica_applied_index(raft_node_replica(c.node));
	if (rpc_server_start(c.srv, addrs[id - 1], NULL, err, sizeof(err))) {
		char line[300];
		snprintf(line, sizeof(line), "bindfail %s", err);
		answer(resp_fd, line);
		child_close(&c, false);
		child_exit(EXIT_BIND);
	}
	log_info("child", "up: log to %llu, applied %llu, count %llu",
		 (unsigned long long)raft_last_index(raft_node_raft(c.node)),
		 (unsigned long long)c.fsm.last_index,
		 (unsigned long long)c.fsm.count);
	if (pthread_create(&c.thread, NULL, loop_thread, c.loop))
		log_fatal("child", "cannot start the loop thread");

	FILE *in = fdopen(cmd_fd, "r");
	char line[64];
	bool ok = in && answer(resp_fd, "ready");
	while (ok && fgets(line, sizeof(line), in)) {
		struct loop_req q = {.c = &c};
		if (strcmp(line, "status\n") != 0 &&
		    (sscanf(line, "propose %d", &q.n) != 1 || q.n < 1))
			log_fatal("child", "bad command %s", line);
		if (loop_call(c.loop, run_req, &q) != STATUS_OK)
			log_fatal("child", "loop_call: out of memory");
		pthread_mutex_lock(&req_mu);
		while (!q.done)
			pthread_cond_wait(&req_cond, &req_mu);
		pthread_mutex_unlock(&req_mu);
		ok = answer(resp_fd, q.answer);
	}
	log_info("child", "command pipe closed: shutting down");
	child_close(&c, true);
	if (in)
		fclose(in);
	close(resp_fd);
	child_exit(0);
}

/* ======== the test process ======== */

struct proc {
	uint32_t id;
	char dir[64];
	pid_t pid; /* 0: not running */
	int cmd_fd, resp_fd;
	char rbuf[256];
	size_t rlen;
};

struct node_status {
	char role[16];
	unsigned long long term, commit, applied, count;
};

static char tmpdir[] = "/tmp/skv_raft_procs.XXXXXX";
static struct proc procs[N];
/* Entries known committed, and entries whose fate is unknown (their
 * leader lost the lead before they were seen applied): the count of
 * applied entries must lie in [certain, certain + ambiguous]. */
static unsigned long long certain, ambiguous;

static void close_fds(struct proc *p)
{
	if (p->cmd_fd >= 0)
		close(p->cmd_fd);
	if (p->resp_fd >= 0)
		close(p->resp_fd);
	p->cmd_fd = p->resp_fd = -1;
	p->rlen = 0;
}

static void spawn(struct proc *p)
{
	int cmd[2], resp[2];
	cr_assert_eq(pipe(cmd), 0);
	cr_assert_eq(pipe(resp), 0);
	pid_t pid = procs_fork();
	if (pid == 0) {
		/* Only the parent may hold a write end, or EOF never comes. */
		for (int i = 0; i < N; i++)
			close_fds(&procs[i]);
		close(cmd[1]);
		close(resp[0]);
		child_main(p->id, p->dir, cmd[0], resp[1]);
	}
	close(cmd[0]);
	close(resp[1]);
	p->pid = pid;
	p->cmd_fd = cmd[1];
	p->resp_fd = resp[0];
	p->rlen = 0;
}

/* Reads one line into out; false (and why, in out) on EOF or deadline. */
static bool read_line(struct proc *p, char *out, size_t cap, uint64_t end)
{
	for (;;) {
		char *nl = memchr(p->rbuf, '\n', p->rlen);
		if (nl) {
			size_t n = (size_t)(nl - p->rbuf);
			snprintf(out, cap, "%.*s", (int)n, p->rbuf);
			p->rlen -= n + 1;
			memmove(p->rbuf, nl + 1, p->rlen);
			return true;
		}
		uint64_t now = monotime_now_ms();
		if (now >= end || p->rlen == sizeof(p->rbuf)) {
			snprintf(out, cap, "no answer in time");
			return false;
		}
		struct pollfd pf = {.fd = p->resp_fd, .events = POLLIN};
		int r = poll(&pf, 1, (int)(end - now));
		if (r <= 0)
			continue; /* EINTR or timeout: look at the clock */
		ssize_t k = read(p->resp_fd, p->rbuf + p->rlen,
				 sizeof(p->rbuf) - p->rlen);
		if (k <= 0) {
			snprintf(out, cap, "the process exited");
			return false;
		}
		p->rlen += (size_t)k;
	}
}

/* Waits for p to exit by itself; SIGKILL at the deadline. The status. */
static int reap(struct proc *p, uint64_t end)
{
	int st = procs_reap(p->pid, end);
	close_fds(p);
	p->pid = 0;
	return st;
}

static void proc_kill(struct proc *p)
{
	reap(p, 0);
}

/* Starts p (again: same directory and port); a port a killed process
 * held may still be busy for a moment, so binding is retried. */
static void proc_start(struct proc *p)
{
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	char line[320];
	for (;;) {
		spawn(p);
		bool ok = read_line(p, line, sizeof(line), end);
		if (ok && strcmp(line, "ready") == 0)
			return;
		int st = reap(p, monotime_now_ms() + PROCS_DEADLINE_MS);
		bool again = ok && strncmp(line, "bindfail", 8) == 0 &&
			     WIFEXITED(st) && WEXITSTATUS(st) == EXIT_BIND;
		cr_assert(again && monotime_now_ms() < end,
			  "node %u did not start: %s (wait status %#x)", p->id,
			  line, st);
		procs_pause();
	}
}

/* One command, one answer line. */
static void command(struct proc *p, const char *cmd, char *out, size_t cap)
{
	char line[32];
	int len = snprintf(line, sizeof(line), "%s\n", cmd);
	cr_assert_eq(write(p->cmd_fd, line, (size_t)len), len,
		     "node %u: cannot send '%s': %s", p->id, cmd,
		     strerror(errno));
	bool ok = read_line(p, out, cap, monotime_now_ms() + PROCS_DEADLINE_MS);
	cr_assert(ok, "node %u: '%s': %s", p->id, cmd, out);
}

static void get_status(struct proc *p, struct node_status *s)
{
	char line[160];
	command(p, "status", line, sizeof(line));
	cr_assert_eq(sscanf(line, "%15s %llu %llu %llu %llu", s->role,
			    &s->term, &s->commit, &s->applied, &s->count),
		     5, "node %u: bad status '%s'", p->id, line);
}

static bool is_leader(const struct node_status *s)
{
	return strcmp(s->role, "leader") == 0;
}

/* Polls the status of every running node until done(st, arg) holds
 * (logged if `log`); fails at the deadline with `what` and what each node
 * said. */
typedef bool (*status_pred)(const struct node_status st[N], void *arg);

static void poll_until(status_pred done, void *arg, const char *what,
		       bool log)
{
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	struct node_status st[N];
	char msg[512];
	for (;;) {
		size_t off = 0;
		msg[0] = 0;
		for (int i = 0; i < N; i++) {
			if (!procs[i].pid)
				continue;
			get_status(&procs[i], &st[i]);
			int k = snprintf(msg + off, sizeof(msg) - off,
					 "\n  node %u: %s term %llu commit %llu "
					 "applied %llu count %llu",
					 procs[i].id, st[i].role, st[i].term,
					 st[i].commit, st[i].applied,
					 st[i].count);
			if (k > 0 && (size_t)k < sizeof(msg) - off)
				off += (size_t)k;
		}
		if (done(st, arg)) {
			if (log)
				cr_log_info("%s:%s", what, msg);
			return;
		}
		cr_assert_lt(monotime_now_ms(), end, "%s: not in %d ms:%s",
			     what, PROCS_DEADLINE_MS, msg);
		procs_pause();
	}
}

struct leader_goal {
	unsigned long long term_min;
	int i; /* out */
	struct node_status st; /* out */
};

static bool leader_found(const struct node_status st[N], void *arg)
{
	struct leader_goal *g = arg;
	g->i = -1;
	for (int i = 0; i < N; i++)
		if (procs[i].pid && is_leader(&st[i]) &&
		    st[i].term > g->term_min &&
		    (g->i < 0 || st[i].term > st[g->i].term))
			g->i = i;
	if (g->i >= 0)
		g->st = st[g->i];
	return g->i >= 0;
}

/* The running node leading in the highest term above `term_min`. */
static struct proc *wait_leader(unsigned long long term_min,
				struct node_status *out)
{
	struct leader_goal g = {.term_min = term_min};
	poll_until(leader_found, &g, "a leader", false);
	*out = g.st;
	return &procs[g.i];
}

/* A batch [.., last] proposed by procs[l] in `term`: it is committed if
 * procs[l] still leads in that term when every running node applied
 * `last` (it never lost the lead, so never dropped them); its fate is
 * unknown (lost) as soon as procs[l] no longer does. */
struct batch_goal {
	int l;
	unsigned long long term, last;
	bool lost; /* out */
};

static bool batch_committed(const struct node_status st[N], void *arg)
{
	struct batch_goal *g = arg;
	g->lost = !is_leader(&st[g->l]) || st[g->l].term != g->term;
	return g->lost || st[g->l].commit >= g->last;
}

static bool batch_applied(const struct node_status st[N], void *arg)
{
	struct batch_goal *g = arg;
	g->lost = !is_leader(&st[g->l]) || st[g->l].term != g->term;
	for (int i = 0; i < N && !g->lost; i++)
		if (procs[i].pid && st[i].applied < g->last)
			return false;
	return true;
}

struct converge_goal {
	unsigned long long applied_min;
	unsigned long long count; /* out */
};

static bool converged(const struct node_status st[N], void *arg)
{
	struct converge_goal *g = arg;
	int first = -1;
	for (int i = 0; i < N; i++) {
		if (!procs[i].pid)
			continue;
		if (first < 0)
			first = i;
		if (st[i].applied < g->applied_min ||
		    st[i].applied != st[first].applied ||
		    st[i].count != st[first].count)
			return false;
	}
	g->count = st[first].count;
	return true;
}

/* Has `n` entries committed and applied on every running node, in
 * batches through whoever leads. With kill_follower, a follower is
 * killed as soon as the leader committed the first batch (it holds the
 * entries but may not know they are committed), and returned. */
static struct proc *propose_applied(int n, bool kill_follower)
{
	struct proc *victim = NULL;
	while (n > 0) {
		struct node_status ls;
		struct proc *l = wait_leader(0, &ls);
		int b = n < BATCH ? n : BATCH;
		char cmd[32], line[64];
		unsigned long long first, last;
		snprintf(cmd, sizeof(cmd), "propose %d", b);
		command(l, cmd, line, sizeof(line));
		if (strcmp(line, "notleader") == 0)
			continue;
		cr_assert_eq(sscanf(line, "ok %llu %llu", &first, &last), 2,
			     "node %u: '%s': %s", l->id, cmd, line);
		cr_assert_eq(last - first + 1, (unsigned long long)b);
		struct batch_goal g = {(int)(l - procs), ls.term, last, false};
		if (kill_follower && !victim) {
			poll_until(batch_committed, &g, "leader commit", false);
			victim = &procs[(g.l + 1) % N];
			cr_log_info("kill -9 follower %u", victim->id);
			proc_kill(victim);
		}
		if (!g.lost)
			poll_until(batch_applied, &g, "batch applied", false);
		if (g.lost) {
			/* Info: a logged warning fails criterion's run. */
			cr_log_info("leader %u lost the lead during [%llu, %llu]",
				    l->id, first, last);
			ambiguous += (unsigned long long)b;
		} else {
			certain += (unsigned long long)b;
			n -= b;
		}
	}
	return victim;
}

/* Every running node at the same applied index (at least `applied_min`)
 * with the same count, which is the number of entries committed. */
static void expect_converged(unsigned long long applied_min)
{
	struct converge_goal g = {.applied_min = applied_min};
	poll_until(converged, &g, "converged", true);
	cr_assert(g.count >= certain && g.count <= certain + ambiguous,
		  "count %llu, but %llu entries are known committed and %llu "
		  "may be", g.count, certain, ambiguous);
}

/* Every key and value of data+meta but Raft's own (the applied index
 * differs: one node may not have seen the last leader's no-op); counts
 * the data keys. */
static void dump(const char *dir, struct buf *out, uint64_t *keys)
{
	struct store_opts so = {.path = dir, .block_cache_bytes = 1 << 20};
	struct store *s;
	char err[256];
	cr_assert_eq(store_open(&so, &s, err, sizeof(err)), STATUS_OK, "%s",
		     err);
	cr_assert_eq(store_dump(s, true, out, keys), STATUS_OK);
	store_close(s);
}

static void setup(void)
{
	for (int i = 0; i < N; i++)
		procs[i].cmd_fd = procs[i].resp_fd = -1;
	procs_setup(tmpdir);
	for (int i = 0; i < N; i++) {
		procs[i].id = (uint32_t)(i + 1);
		snprintf(procs[i].dir, sizeof(procs[i].dir), "%s/node%d",
			 tmpdir, i + 1);
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d",
			 test_port_reserve());
	}
}

/* Also after a failed assertion: no child outlives the test. */
static void teardown(void)
{
	for (int i = 0; i < N; i++)
		if (procs[i].pid)
			proc_kill(&procs[i]);
	procs_teardown();
}

TestSuite(raft_procs, .init = setup, .fini = teardown, .timeout = 500);

Test(raft_procs, kill_9_leader_and_follower_nothing_lost_or_applied_twice)
{
	for (int i = 0; i < N; i++)
		proc_start(&procs[i]);

	/* 500 entries, applied on all three. */
	propose_applied(500, false);
	struct node_status ls;
	struct proc *leader = wait_leader(0, &ls);
	expect_converged(ls.commit);

	/* kill -9 the leader; the other two elect a new one and go on. */
	cr_log_info("kill -9 leader %u (term %llu)", leader->id, ls.term);
	proc_kill(leader);
	struct node_status ns;
	wait_leader(ls.term, &ns);
	propose_applied(500, false);

	/* It restarts from its directory and catches up. */
	proc_start(leader);
	wait_leader(0, &ns);
	expect_converged(ns.commit);

	/* A follower dies while entries stream; the others go on; it comes
	 * back. */
	struct proc *victim = propose_applied(400, true);
	proc_start(victim);
	wait_leader(0, &ns);
	expect_converged(ns.commit);
	cr_log_info("%llu entries committed, %llu of unknown fate", certain,
		    ambiguous);

	/* EOF: each shuts down cleanly (a leak report would fail it). */
	for (int i = 0; i < N; i++) {
		close(procs[i].cmd_fd);
		procs[i].cmd_fd = -1;
	}
	for (int i = 0; i < N; i++) {
		uint32_t id = procs[i].id;
		int st = reap(&procs[i], monotime_now_ms() + PROCS_DEADLINE_MS);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "node %u did not exit cleanly (wait status %#x)", id,
			  st);
	}

	/* At rest, the three stores hold the same data and meta. */
	struct buf want, got;
	uint64_t keys0, keys;
	buf_init(&want);
	buf_init(&got);
	dump(procs[0].dir, &want, &keys0);
	cr_assert(keys0 >= certain && keys0 <= certain + ambiguous,
		  "node 1 holds %llu entries", (unsigned long long)keys0);
	for (int i = 1; i < N; i++) {
		dump(procs[i].dir, &got, &keys);
		cr_assert(keys == keys0 && want.len == got.len &&
				  memcmp(want.data, got.data, want.len) == 0,
			  "node %d's store differs from node 1's", i + 1);
	}
	buf_free(&want);
	buf_free(&got);
}
