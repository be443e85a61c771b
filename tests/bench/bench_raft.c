/*
 * bench_raft: a 3-node Raft group in this process over loopback gRPC, each
 * node with its own event loop, server, client and RocksDB store on disk
 * (fsync on every write, as in production). `proposers` closed-loop
 * clients on the leader each propose a 100-byte entry and propose the next
 * once the previous one is applied and durable on the leader. Prints
 * committed entries/s, commit latency percentiles (propose → applied and
 * durable on the leader) and the leader's fsyncs/s.
 *
 *   bench_raft [--seconds N] [--proposers N] [--entry BYTES] [--dir PATH]
 *
 * Without --proposers it runs with 1 and then with 64 proposers.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/monotime.h"
#include "common/raft/node.h"
#include "common/rpc/rpc.h"
#include "common/status.h"
#include "common/store/store.h"
#include "tests/port.h"

#define N 3

static void die(const char *what, const char *why)
{
	fprintf(stderr, "bench_raft: %s: %s\n", what, why);
	exit(1);
}

/* ---- a run: proposers on the leader's loop ---- */

struct run;

struct proposer {
	struct run *run;
	uint64_t start_ns;
	uint64_t index; /* 0 = none in flight */
	struct proposer *next_ready;
};

struct run {
	struct bnode *leader;
	struct proposer *ps;
	int n;
	size_t entry_bytes;
	uint64_t end_ns;
	uint64_t seq;

	/* Leader loop thread only. */
	struct proposer *ready; /* completed, to propose again */
	bool scheduled;
	uint64_t *lat_ns;
	size_t nlat, cap;
	uint64_t errors;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	int active; /* proposers not retired */
};

struct bnode {
	uint32_t id;
	int port;
	char path[512];
	struct store *store;
	struct loop *loop;
	pthread_t thread;
	struct rpc_server *srv;
	struct rpc_client *cli;
	struct raft_node *node;
	struct run *run; /* leader loop thread: the run in progress */
};

static void retire(struct run *r)
{
	pthread_mutex_lock(&r->mu);
	if (--r->active == 0)
		pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

static void propose(struct proposer *p)
{
	struct run *r = p->run;
	uint8_t data[4096];
	size_t len = r->entry_bytes < sizeof(data) ? r->entry_bytes
						   : sizeof(data);
	memset(data, 'x', len);
	if (len >= 8)
		put_u64be(data, ++r->seq);
	p->start_ns = monotime_now_ns();
	int rc = raft_node_propose(r->leader->node, data, len, &p->index,
				   NULL);
	if (rc != STATUS_OK) {
		if (r->errors++ == 0)
			fprintf(stderr, "bench_raft: propose: %s\n",
				status_name(rc));
		p->index = 0;
		retire(r);
	}
}

/* Loop event: propose again for every proposer whose entry is done. */
static void propose_ready(void *arg)
{
	struct run *r = arg;
	r->scheduled = false;
	while (r->ready) {
		struct proposer *p = r->ready;
		r->ready = p->next_ready;
		propose(p);
	}
}

static void start_run(void *arg)
{
	struct run *r = arg;
	r->leader->run = r;
	for (int i = 0; i < r->n; i++)
		propose(&r->ps[i]);
}

/* ---- the state machine: entries stored under their index ---- */

static void fsm_apply(void *ctx, uint64_t index, const void *data, size_t len,
		      struct store_batch *b)
{
	uint8_t key[8];
	put_u64be(key, index);
	store_batch_put(b, STORE_CF_DATA, key, sizeof(key), data, len);
}

/* Runs inside raft_replica_process: must not call into the core, so
 * proposing again is posted to the loop. */
static void fsm_durable(void *ctx, uint64_t applied)
{
	struct bnode *bn = ctx;
	struct run *r = bn->run;
	if (!r)
		return;
	uint64_t now = monotime_now_ns();
	for (int i = 0; i < r->n; i++) {
		struct proposer *p = &r->ps[i];
		if (!p->index || p->index > applied)
			continue;
		p->index = 0;
		if (r->nlat == r->cap) {
			r->cap = r->cap ? 2 * r->cap : 1 << 16;
			r->lat_ns = realloc(r->lat_ns, r->cap * sizeof(uint64_t));
			if (!r->lat_ns)
				die("latencies", "out of memory");
		}
		r->lat_ns[r->nlat++] = now - p->start_ns;
		if (now < r->end_ns) {
			p->next_ready = r->ready;
			r->ready = p;
		} else {
			retire(r);
		}
	}
	if (r->ready && !r->scheduled) {
		r->scheduled = true;
		if (loop_call(bn->loop, propose_ready, r) != STATUS_OK)
			die("loop_call", "out of memory");
	}
}

static const struct raft_fsm_ops fsm_ops = {
	.apply = fsm_apply,
	.durable = fsm_durable,
};

/* ---- nodes ---- */

static struct bnode nodes[N];
static char addrs[N][32];

static void *loop_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

static void node_start(struct bnode *bn)
{
	char err[256], addr[32];
	struct store_opts so = {.path = bn->path, .create_if_missing = true};
	if (store_open(&so, &bn->store, err, sizeof(err)) ||
	    raft_storage_recover(bn->store, err, sizeof(err)))
		die(bn->path, err);
	bn->loop = loop_new();
	bn->srv = rpc_server_new(NULL);
	bn->cli = rpc_client_new(NULL);
	if (!bn->loop || !bn->srv || !bn->cli)
		die("node", "out of memory");
	struct raft_node_opts o = {
		.config = {.id = bn->id, .n_nodes = N, .seed = bn->id},
		.loop = bn->loop,
		.server = bn->srv,
		.client = bn->cli,
		.store = bn->store,
		.fsm = &fsm_ops,
		.fsm_ctx = bn,
		.compaction_log_bytes_max = 64 << 20,
	};
	for (int i = 0; i < N; i++) {
		o.config.nodes[i] = nodes[i].id;
		o.addrs[i] = addrs[i];
	}
	if (raft_node_new(&o, &bn->node, err, sizeof(err)))
		die("raft_node_new", err);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", bn->port);
	if (rpc_server_start(bn->srv, addr, NULL, err, sizeof(err)))
		die("rpc_server_start", err);
	if (pthread_create(&bn->thread, NULL, loop_thread, bn->loop))
		die("pthread_create", "failed");
}

static void node_stop(struct bnode *bn)
{
	raft_node_stop(bn->node);
	rpc_server_shutdown(bn->srv);
	loop_stop(bn->loop);
	pthread_join(bn->thread, NULL);
	loop_drain(bn->loop);
	rpc_client_free(bn->cli);
	raft_node_free(bn->node);
	rpc_server_free(bn->srv);
	loop_free(bn->loop);
	store_close(bn->store);
}

/* Runs fn(arg) on bn's loop and waits. */
struct sync_call {
	void (*fn)(struct bnode *bn, void *arg);
	struct bnode *bn;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool done;
};

static void sync_call_run(void *p)
{
	struct sync_call *sc = p;
	sc->fn(sc->bn, sc->arg);
	pthread_mutex_lock(&sc->mu);
	sc->done = true;
	pthread_cond_signal(&sc->cond);
	pthread_mutex_unlock(&sc->mu);
}

static void on_loop(struct bnode *bn, void (*fn)(struct bnode *, void *),
		    void *arg)
{
	struct sync_call sc = {.fn = fn, .bn = bn, .arg = arg};
	pthread_mutex_init(&sc.mu, NULL);
	pthread_cond_init(&sc.cond, NULL);
	if (loop_call(bn->loop, sync_call_run, &sc))
		die("loop_call", "out of memory");
	pthread_mutex_lock(&sc.mu);
	while (!sc.done)
		pthread_cond_wait(&sc.cond, &sc.mu);
	pthread_mutex_unlock(&sc.mu);
	pthread_cond_destroy(&sc.cond);
	pthread_mutex_destroy(&sc.mu);
}

static void is_leader(struct bnode *bn, void *arg)
{
	*(bool *)arg = raft_role(raft_node_raft(bn->node)) == RAFT_LEADER;
}

static void get_stats(struct bnode *bn, void *arg)
{
	raft_replica_stats(raft_node_replica(bn->node), arg);
}

static void end_run(struct bnode *bn, void *arg)
{
	bn->run = NULL;
}

static struct bnode *wait_leader(void)
{
	for (int tries = 0; tries < 1000; tries++) {
		for (int i = 0; i < N; i++) {
			bool lead;
			on_loop(&nodes[i], is_leader, &lead);
			if (lead)
				return &nodes[i];
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	die("election", "no leader after 10 s");
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static double pct_us(const uint64_t *sorted, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n);
	return n ? (double)sorted[i < n ? i : n - 1] / 1e3 : 0;
}

static void bench(int proposers, size_t entry_bytes, uint64_t ms, bool print)
{
	struct bnode *leader = wait_leader();
	struct run r = {.leader = leader,
			.n = proposers,
			.entry_bytes = entry_bytes,
			.active = proposers};
	struct raft_replica_stats s0, s1;
	r.ps = calloc((size_t)proposers, sizeof(*r.ps));
	if (!r.ps)
		die("proposers", "out of memory");
	for (int i = 0; i < proposers; i++)
		r.ps[i].run = &r;
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cond, NULL);

	on_loop(leader, get_stats, &s0);
	uint64_t t0 = monotime_now_ns();
	r.end_ns = t0 + ms * 1000000u;
	if (loop_call(leader->loop, start_run, &r))
		die("loop_call", "out of memory");
	pthread_mutex_lock(&r.mu);
	while (r.active > 0)
		pthread_cond_wait(&r.cond, &r.mu);
	pthread_mutex_unlock(&r.mu);
	double secs = (double)(monotime_now_ns() - t0) / 1e9;
	on_loop(leader, end_run, NULL);
	on_loop(leader, get_stats, &s1);

	qsort(r.lat_ns, r.nlat, sizeof(uint64_t), cmp_u64);
	if (print) {
		double writes = (double)(s1.writes - s0.writes);
		printf("%9d %10.0f %8.0f %8.0f %8.0f %10.0f %13.1f %6llu\n",
		       proposers, (double)r.nlat / secs,
		       pct_us(r.lat_ns, r.nlat, 0.50),
		       pct_us(r.lat_ns, r.nlat, 0.99),
		       pct_us(r.lat_ns, r.nlat, 0.999), writes / secs,
		       writes > 0 ? (double)(s1.entries_persisted -
					     s0.entries_persisted) /
					    writes
				  : 0,
		       (unsigned long long)r.errors);
		fflush(stdout);
	}
	free(r.lat_ns);
	free(r.ps);
	pthread_cond_destroy(&r.cond);
	pthread_mutex_destroy(&r.mu);
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
			struct FTW *ftw)
{
	return remove(path);
}

int main(int argc, char **argv)
{
	uint64_t seconds = 3, proposers = 0, entry = 100;
	const char *dir = "/tmp";
	struct flag flags[] = {
		{"seconds", FLAG_UINT, &seconds, "N", "seconds per run", false,
		 1, 3600, false},
		{"proposers", FLAG_UINT, &proposers, "N",
		 "concurrent proposers; 0 = a run with 1, then one with 64",
		 false, 0, 100000, false},
		{"entry", FLAG_UINT, &entry, "BYTES", "entry size", false, 8,
		 4096, false},
		{"dir", FLAG_STRING, &dir, "PATH",
		 "where the stores go (a temporary directory inside)", false, 0,
		 0, false},
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);
	struct flags_result res;
	char err[256], tmp[400];

	int st = flags_parse(flags, nflags, argc, argv, &res, err, sizeof(err));
	if (st != STATUS_OK || res.help || res.first_arg < argc) {
		if (st != STATUS_OK)
			fprintf(stderr, "bench_raft: %s\n", err);
		fprintf(stderr, "usage: bench_raft [flags]\n");
		flags_usage(flags, nflags, stderr);
		flags_release(&res);
		return st != STATUS_OK || res.first_arg < argc;
	}
	log_set_level(LOG_WARN);
	snprintf(tmp, sizeof(tmp), "%s/bench_raft.XXXXXX", dir);
	if (!mkdtemp(tmp))
		die(tmp, "mkdtemp failed");
	for (int i = 0; i < N; i++) {
		nodes[i].id = (uint32_t)(i + 1);
		nodes[i].port = test_port_reserve();
		snprintf(nodes[i].path, sizeof(nodes[i].path), "%s/node%d", tmp,
			 i + 1);
		snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d",
			 nodes[i].port);
	}
	for (int i = 0; i < N; i++)
		node_start(&nodes[i]);

	printf("bench_raft: 3 nodes, %llu-byte entries, %llu s per run, "
	       "loopback gRPC, RocksDB on disk (%s), fsync per write\n",
	       (unsigned long long)entry, (unsigned long long)seconds, dir);
	printf("proposers  entries/s  p50(us)  p99(us) p999(us)   fsyncs/s "
	       "entries/fsync errors\n");
	/* Warm-up: election, connections, RocksDB files. */
	bench(16, entry, 500, false);
	if (proposers) {
		bench((int)proposers, entry, seconds * 1000, true);
	} else {
		bench(1, entry, seconds * 1000, true);
		bench(64, entry, seconds * 1000, true);
	}
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
	nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	flags_release(&res);
	return 0;
}
