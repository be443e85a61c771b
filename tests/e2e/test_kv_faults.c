/* The key/value store under faults, as real processes: a shard master of
 * three `shardmaster` programs and groups 100, 101 and 102 of three
 * `shardkv` programs each on 127.0.0.1, their stores on disk, a short
 * election timeout and a small compaction threshold (so snapshots are
 * taken and installed during the run).
 *
 * Clients: NCLIENTS threads in this process, each with its own clerk
 * (clerk/clerk.h), do random operations on a few keys, so they conflict:
 * Get and Append on the append keys, Get, Put, Append and Delete on the
 * mixed keys (a new set of keys every EPOCH_S seconds, so values stay
 * short in a soak). Every value written is a unique token
 * "<client>.<seq>;".
 * Each operation goes into one linearizability history (tests/lin) with
 * its call and return times; one whose outcome is unknown (a timeout) is
 * recorded as such.
 *
 * Meanwhile the main thread is the nemesis. Until the run's time is up
 * it runs phases, the first three one of each kind in a random order:
 *   kill     kill -9 a random server, or the current leader of a random
 *            group (the shard master included), and restart it after a
 *            short random delay;
 *   pause    SIGSTOP a group's leader for PAUSE_MS (4 x the longest
 *            election timeout) while the clients go on; once another
 *            replica leads, append to a key of that group (through the
 *            new leader) and send a Get of it straight to the paused
 *            one, which sees it as soon as it is SIGCONTed. It must
 *            refuse it, or answer with the append in: its answer goes
 *            into the history, and a stale read fails the checker;
 *   move     a group leaves (its processes stay up, as a leaving group
 *            must until its shards moved) and joins again, so shards
 *            move under load.
 * One fault at a time, so no group ever loses its majority.
 *
 * Afterwards (every process running and resumed, every group joined,
 * clients stopped): within a deadline every replica of every group
 * reports the shard master's latest configuration, the replicas of each
 * group the same applied index, every shard "serving" in exactly its
 * owner's replicas and no shard moving anywhere (status RPC,
 * clerk/status.h). Then every key is read once more, and: each
 * acknowledged append of an append key is in its value exactly once,
 * every token in a value was written to that key, at most once, a Put's
 * token only first, and one client's acknowledged appends in order; the
 * whole history is linearizable. A failing history is written in lin's
 * text form to /tmp/skv-faults-<seed>.hist. Every process is then
 * stopped with SIGTERM (exit 0, no sanitizer report in its log).
 *
 * The run lasts RUN_S_DEFAULT seconds of faults; SKV_SOAK_S=<seconds>
 * runs longer. Every random choice comes from one seed, printed at the
 * start; SKV_FAULT_SEED=<seed> replays the choices (real timing still
 * varies, so a replay is not the same run). Every wait ends at a
 * deadline; ctest bounds the whole (a soak longer than its TIMEOUT runs
 * the binary directly). The suite's fini stops the clients and kills
 * every server, resuming paused ones first, also after a failed
 * assertion (tests/e2e/procs.h). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clerk/clerk.h"
#include "clerk/smclerk.h"
#include "clerk/status.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/rpc/rpc.h"
#include "common/shard.h"
#include "common/status.h"
#include "proto/shardkv.pb-c.h"
#include "tests/e2e/procs.h"
#include "tests/e2e/settled.h"
#include "tests/lin/lin.h"
#include "tests/port.h"

#ifndef SHARDMASTER_BIN
#error "SHARDMASTER_BIN must name the shardmaster program"
#endif
#ifndef SHARDKV_BIN
#error "SHARDKV_BIN must name the shardkv program"
#endif

#define NREP 3	  /* replicas per Raft group, shard master included */
#define NGROUPS 3 /* gids 100, 101, 102 */
#define NSHARDS 10
/* Raft groups the nemesis picks from: 0 the shard master, 1..NGROUPS. */
#define NRAFT (NGROUPS + 1)

/* --election-ms: timeouts in [ELECTION_MS, 2 x ELECTION_MS), so a
 * failover is quick and the run short. */
#define ELECTION_MS 150
#define ELECTION_MAX_MS (2 * ELECTION_MS)
#define PAUSE_MS (4 * ELECTION_MAX_MS)
/* Compaction thresholds: a few dozen writes, so logs are compacted and
 * restarted replicas catch up by snapshot during the run. */
#define KV_COMPACT_BYTES "1024"
#define SM_COMPACT_BYTES "1024"

#define NCLIENTS 6
/* Clerks besides the clients' (indexes into run.clients), and the lin
 * client id of the stale-read probes. */
#define CLIENT_FINAL NCLIENTS	    /* the final reads */
#define CLIENT_NEMESIS (NCLIENTS + 1) /* the nemesis's writes */
#define NALL (NCLIENTS + 2)
#define PROBE_ID NALL
#define NAKEYS 8 /* append keys: Get and Append */
#define NMKEYS 4 /* mixed keys: Get, Put, Append, Delete */
#define NKEYS (NAKEYS + NMKEYS)
/* Every EPOCH_S seconds the clients move on to NKEYS new keys, so no
 * value (and no history of one key) grows without bound in a soak. */
#define EPOCH_S 15
/* One operation; covers elections, restarts and shard moves. */
#define OP_TIMEOUT_MS 20000
/* One RPC: longer than a pause, so a clerk's request held by a paused
 * leader is answered by it once it resumes. */
#define ATTEMPT_TIMEOUT_MS 3000
#define ADMIN_TIMEOUT_MS 20000
#define STATUS_TIMEOUT_MS 1000
#define CONVERGE_MS 60000
#define RUN_S_DEFAULT 30

/* ======== small things ======== */

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000),
			      (long)(ms % 1000) * 1000L * 1000L};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0. */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return rng_next(s) % n;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return dflt;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	cr_assert(!errno && !*end, "%s=%s: not a number", name, v);
	return (uint64_t)x;
}

/* ======== processes ======== */

struct proc {
	uint64_t gid; /* 0: a shard master */
	uint32_t id;
	char addr[32];
	struct procs_server s; /* "sm1", "kv100-2" */
};

static char tmpdir[] = "/tmp/skv_kv_faults.XXXXXX";
/* rafts[0]: the shard master; rafts[1 + g]: group gids[g]. */
static struct proc rafts[NRAFT][NREP];
static const uint64_t gids[NGROUPS] = {100, 101, 102};
static char lists[NRAFT][NREP * 32]; /* each group's "a,b,c" */
static const char *addrs[NRAFT][NREP];

static const char *raft_name(int g)
{
	static const char *names[NRAFT] = {"shard master", "group 100",
					   "group 101", "group 102"};
	return names[g];
}

/* An argv for p, its strings in the struct. */
struct proc_argv {
	char id[16], gid[24], election[16];
	char *argv[24];
};

static void proc_argv(struct proc *p, struct proc_argv *a)
{
	int n = 0;
	snprintf(a->id, sizeof(a->id), "%u", p->id);
	snprintf(a->gid, sizeof(a->gid), "%" PRIu64, p->gid);
	snprintf(a->election, sizeof(a->election), "%d", ELECTION_MS);
	a->argv[n++] = p->gid ? SHARDKV_BIN : SHARDMASTER_BIN;
	if (p->gid) {
		a->argv[n++] = "--gid";
		a->argv[n++] = a->gid;
		a->argv[n++] = "--masters";
		a->argv[n++] = lists[0];
	} else {
		a->argv[n++] = "--shards";
		a->argv[n++] = "10";
	}
	a->argv[n++] = "--id";
	a->argv[n++] = a->id;
	a->argv[n++] = "--peers";
	a->argv[n++] = lists[p->gid ? 1 + p->gid - gids[0] : 0];
	a->argv[n++] = "--data";
	a->argv[n++] = p->s.dir;
	a->argv[n++] = "--election-ms";
	a->argv[n++] = a->election;
	a->argv[n++] = "--compact-bytes";
	a->argv[n++] = p->gid ? KV_COMPACT_BYTES : SM_COMPACT_BYTES;
	a->argv[n] = NULL;
}

/* Starts ps[0..n) (n <= NRAFT * NREP) at once and waits until each has
 * started. */
static void start_procs(struct proc *const ps[], int n)
{
	struct proc_argv a[NRAFT * NREP];
	struct procs_server *ss[NRAFT * NREP];
	char **argvs[NRAFT * NREP];
	cr_assert_leq(n, NRAFT * NREP);
	for (int i = 0; i < n; i++) {
		proc_argv(ps[i], &a[i]);
		ss[i] = &ps[i]->s;
		argvs[i] = a[i].argv;
	}
	procs_server_start_all(ss, argvs, n);
}

/* ======== status ======== */

/* Asks the replicas of raft group g for their status, all but `skip`
 * (NULL: all); res[r] is replica r's (status UNAVAILABLE for `skip`;
 * the caller frees with node_status_results_free). */
static void status_of(int g, const struct proc *skip,
		      struct node_status_result res[NREP])
{
	const char *ask[NREP];
	int at[NREP], n = 0;
	for (int r = 0; r < NREP; r++) {
		res[r] = (struct node_status_result){
			.status = STATUS_UNAVAILABLE, .err = "not asked"};
		if (&rafts[g][r] != skip) {
			at[n] = r;
			ask[n++] = addrs[g][r];
		}
	}
	struct node_status_result got[NREP];
	int rc = node_status_get_many(ask, (size_t)n, STATUS_TIMEOUT_MS, got);
	cr_assert_eq(rc, STATUS_OK, "status of %s: %s", raft_name(g),
		     status_str(rc));
	for (int i = 0; i < n; i++)
		res[at[i]] = got[i];
}

/* The replica of group g other than `not` that says it leads, in the
 * highest term such a replica answers with and at least min_term;
 * NULL if there is none right now. Its term in *term. */
static struct proc *leader_now(int g, const struct proc *not,
			       uint64_t min_term, uint64_t *term)
{
	struct node_status_result res[NREP];
	struct proc *best = NULL;
	uint64_t best_term = 0;
	status_of(g, not, res);
	for (int r = 0; r < NREP; r++) {
		const Skv__NodeStatusReply *s = res[r].reply;
		if (res[r].status != STATUS_OK || !s ||
		    strcmp(s->role, "leader") || s->term < min_term ||
		    s->term < best_term)
			continue;
		best = &rafts[g][r];
		best_term = s->term;
	}
	node_status_results_free(res, NREP);
	*term = best_term;
	return best;
}

/* leader_now, waited for until the deadline. */
static struct proc *wait_leader(int g, const struct proc *not,
				uint64_t min_term, uint64_t *term)
{
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	for (;;) {
		struct proc *p = leader_now(g, not, min_term, term);
		if (p)
			return p;
		cr_assert_lt(monotime_now_ms(), end,
			     "%s: no leader%s in %d ms", raft_name(g),
			     not ? " besides the paused one" : "",
			     PROCS_DEADLINE_MS);
		procs_pause();
	}
}

/* ======== clients ======== */

enum tok_state { TOK_PENDING, TOK_ACKED, TOK_UNKNOWN };

/* One token a client wrote: seq is its index + 1. */
struct tok {
	uint32_t key;  /* index into run.keys */
	uint8_t kind;  /* LIN_PUT or LIN_APPEND */
	uint8_t state; /* enum tok_state */
};

struct client {
	uint32_t idx; /* its lin client id and index into run.clients */
	pthread_t thread;
	bool running;
	struct kv_clerk *kv;
	uint64_t rng;
	struct tok *toks; /* toks[seq - 1]; mem_grow */
	size_t n_toks, cap_toks;
	/* Outcomes: acknowledged (OK or NOT_FOUND), unknown. */
	size_t n_ok, n_unknown;
};

/* A Get sent straight to one server, bypassing the clerk. */
struct probe {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool done;
	int status;	/* the call's, then the reply's */
	uint8_t *value; /* mem_alloc'd */
	size_t vlen;
	uint64_t ret_us;
};

/* What the clients share with the main thread. */
struct run {
	uint64_t seed;
	/* NKEYS keys per epoch: keys[e * NKEYS + i], the append keys
	 * first. */
	char (*keys)[24];
	int n_epochs, n_keys;
	uint64_t t_start_ms; /* epoch 0 starts */
	atomic_bool stop;
	pthread_mutex_t mu;	  /* guards hist and fail */
	struct lin_history *hist; /* every operation */
	char fail[512];		  /* the first impossible outcome */
	struct client clients[NALL];
	struct smclerk *sm;
	bool joined[NGROUPS];
	/* Stale-read probes: the one in flight (its client, which the
	 * fini frees after a failed assertion) and counts. */
	struct probe probe;
	struct rpc_client *probe_rc;
	size_t n_probes, n_probes_served;
};

static struct run run = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.probe = {.mu = PTHREAD_MUTEX_INITIALIZER,
		  .cond = PTHREAD_COND_INITIALIZER},
};

static bool is_mixed(int key)
{
	return key % NKEYS >= NAKEYS;
}

/* The keys of n_epochs epochs; each epoch's on as many different shards
 * as there are. */
static void pick_keys(int n_epochs)
{
	mem_free(run.keys);
	run.n_epochs = n_epochs;
	run.n_keys = NKEYS * n_epochs;
	run.keys = mem_calloc((size_t)run.n_keys, sizeof(*run.keys));
	cr_assert_not_null(run.keys);
	for (int e = 0; e < n_epochs; e++) {
		bool used[NSHARDS] = {false};
		int n = 0, n_used = 0;
		for (int i = 0; n < NKEYS; i++) {
			char k[24];
			snprintf(k, sizeof(k), "%s%d.%d",
				 n < NAKEYS ? "a" : "m", e, i);
			uint32_t s = shard_for_key(k, strlen(k), NSHARDS);
			if (used[s] && n_used < NSHARDS)
				continue;
			if (!used[s])
				n_used++;
			used[s] = true;
			memcpy(run.keys[e * NKEYS + n++], k, sizeof(k));
		}
	}
}

/* The first impossible outcome a client met, "" if none, into out. */
static void client_failure(char out[512])
{
	pthread_mutex_lock(&run.mu);
	memcpy(out, run.fail, sizeof(run.fail));
	pthread_mutex_unlock(&run.mu);
}

static void client_failed(const char *fmt, const char *a, const char *b)
{
	pthread_mutex_lock(&run.mu);
	if (!run.fail[0])
		snprintf(run.fail, sizeof(run.fail), fmt, a, b);
	pthread_mutex_unlock(&run.mu);
}

/* Adds op to the history (any thread). */
static void record(const struct lin_op *op)
{
	pthread_mutex_lock(&run.mu);
	int rc = lin_history_add(run.hist, op);
	if (rc && !run.fail[0])
		snprintf(run.fail, sizeof(run.fail), "history: %s",
			 status_str(rc));
	pthread_mutex_unlock(&run.mu);
}

static const enum kv_op kv_ops[] = {
	[LIN_GET] = KV_OP_GET,
	[LIN_PUT] = KV_OP_PUT,
	[LIN_APPEND] = KV_OP_APPEND,
	[LIN_DELETE] = KV_OP_DELETE,
};

/* Runs one operation on c's clerk and records it; a new token for a
 * write. Gets return the value read in *out (kv_free), if out. */
static enum kv_status client_do(struct client *c, enum lin_kind kind,
				int key, void **out, size_t *outlen)
{
	char tok[32] = "";
	size_t tlen = 0;
	struct tok *t = NULL;
	if (kind == LIN_PUT || kind == LIN_APPEND) {
		if (!mem_grow((void **)&c->toks, &c->cap_toks, c->n_toks + 1,
			      sizeof(*c->toks))) {
			client_failed("%s%s", "out of memory", "");
			return KV_NO_MEMORY;
		}
		t = &c->toks[c->n_toks++];
		*t = (struct tok){.key = (uint32_t)key, .kind = (uint8_t)kind,
				  .state = TOK_PENDING};
		tlen = (size_t)snprintf(tok, sizeof(tok), "%u.%zu;", c->idx,
					c->n_toks);
	}
	const char *k = run.keys[key];
	void *v = NULL;
	size_t vlen = 0;
	char err[256];
	uint64_t call = monotime_now_us();
	enum kv_status st = kv_do(c->kv, kv_ops[kind], k, strlen(k), tok,
				  tlen, OP_TIMEOUT_MS, &v, &vlen, err,
				  sizeof(err));
	uint64_t ret = monotime_now_us();
	struct lin_op op = {
		.client = c->idx, .kind = kind,
		.key = (const uint8_t *)k, .klen = strlen(k),
		.value = (const uint8_t *)tok, .vlen = tlen,
		.call = call, .ret = ret,
	};
	switch (st) {
	case KV_OK:
		op.known = op.found = true;
		op.out = v;
		op.outlen = vlen;
		break;
	case KV_NOT_FOUND:
		if (kind == LIN_PUT || kind == LIN_APPEND)
			client_failed("%s: NOT_FOUND for a write: %s", k, err);
		op.known = true;
		break;
	case KV_TIMEOUT:
	case KV_UNAVAILABLE:
	case KV_INTERNAL:
	case KV_CLOSED:
		break; /* unknown: a write may or may not have applied */
	default:
		/* TOO_LARGE, INVALID_ARGUMENT, NO_MEMORY: not in this
		 * workload. */
		client_failed("%s: %s", k, kv_status_name(st));
		break;
	}
	if (op.known)
		c->n_ok++;
	else
		c->n_unknown++;
	if (t)
		t->state = op.known ? TOK_ACKED : TOK_UNKNOWN;
	record(&op);
	if (out) {
		*out = v;
		*outlen = vlen;
	} else {
		kv_free(v);
	}
	return st;
}

/* One random operation on the epoch's keys, mostly the append keys. */
static void client_step(struct client *c)
{
	uint64_t e = (monotime_now_ms() - run.t_start_ms) / (EPOCH_S * 1000);
	if (e >= (uint64_t)run.n_epochs)
		e = (uint64_t)run.n_epochs - 1;
	int key = (int)e * NKEYS +
		  (rng_below(&c->rng, 3)
			   ? (int)rng_below(&c->rng, NAKEYS)
			   : NAKEYS + (int)rng_below(&c->rng, NMKEYS));
	uint64_t x = rng_below(&c->rng, 100);
	enum lin_kind kind;
	if (!is_mixed(key))
		kind = x < 70 ? LIN_APPEND : LIN_GET;
	else
		kind = x < 40 ? LIN_GET
		       : x < 65 ? LIN_PUT
		       : x < 95 ? LIN_APPEND
				: LIN_DELETE;
	client_do(c, kind, key, NULL, NULL);
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	while (!atomic_load(&run.stop))
		client_step(c);
	return NULL;
}

static void client_open(struct client *c, uint32_t idx)
{
	struct kv_clerk_opts o = {.timeout_ms = OP_TIMEOUT_MS,
				  .attempt_timeout_ms = ATTEMPT_TIMEOUT_MS};
	char err[256];
	c->idx = idx;
	c->rng = run.seed ^ (0x5851f42d4c957f2dull * (idx + 1));
	enum kv_status st = kv_clerk_open(lists[0], &o, &c->kv, err,
					  sizeof(err));
	cr_assert_eq(st, KV_OK, "kv_clerk_open: %s", err);
}

/* Stops and joins the client threads, closes every clerk. Also from
 * the fini. */
static void clients_stop(void)
{
	atomic_store(&run.stop, true);
	for (int i = 0; i < NALL; i++) {
		struct client *c = &run.clients[i];
		if (c->running) {
			pthread_join(c->thread, NULL);
			c->running = false;
		}
		kv_clerk_close(c->kv);
		c->kv = NULL;
	}
}

/* ======== the check ======== */

/* A key's value as read at the end. */
struct final {
	bool found;
	const uint8_t *v;
	size_t len;
};

/* The values at the end against the tokens the clients wrote (see the
 * header). True if they agree; else false and why. */
static bool check_values(const struct client *cs, int n_clients,
			 const struct final *fin, char *why, size_t cap)
{
	uint8_t *seen[NALL] = {NULL};
	bool ok = false;
	for (int c = 0; c < n_clients; c++) {
		seen[c] = mem_calloc(cs[c].n_toks + 1, 1);
		if (!seen[c]) {
			snprintf(why, cap, "out of memory");
			goto out;
		}
	}
	for (int k = 0; k < run.n_keys; k++) {
		size_t last[NALL] = {0};
		const uint8_t *v = fin[k].v;
		size_t p = 0, pos = 0;
		while (fin[k].found && p < fin[k].len) {
			size_t q = p;
			while (q < fin[k].len && v[q] != ';')
				q++;
			char tmp[32];
			unsigned c;
			size_t seq;
			int used = 0;
			if (q == fin[k].len || q - p >= sizeof(tmp)) {
				snprintf(why, cap, "key %s: a torn token at "
						   "byte %zu", run.keys[k], p);
				goto out;
			}
			memcpy(tmp, v + p, q - p);
			tmp[q - p] = 0;
			if (sscanf(tmp, "%u.%zu%n", &c, &seq, &used) != 2 ||
			    (size_t)used != q - p || c >= (unsigned)n_clients ||
			    seq < 1 || seq > cs[c].n_toks ||
			    cs[c].toks[seq - 1].key != (uint32_t)k) {
				snprintf(why, cap, "key %s: token '%s' was "
						   "never written to it",
					 run.keys[k], tmp);
				goto out;
			}
			const struct tok *t = &cs[c].toks[seq - 1];
			if (seen[c][seq]) {
				snprintf(why, cap, "key %s: token %s applied "
						   "twice", run.keys[k], tmp);
				goto out;
			}
			seen[c][seq] = 1;
			if (t->kind == LIN_PUT && pos > 0) {
				snprintf(why, cap,
					 "key %s: Put token %s after %zu "
					 "others", run.keys[k], tmp, pos);
				goto out;
			}
			if (t->state == TOK_ACKED && t->kind == LIN_APPEND) {
				if (seq < last[c]) {
					snprintf(why, cap,
						 "key %s: client %u's token "
						 "%zu after %zu",
						 run.keys[k], c, seq, last[c]);
					goto out;
				}
				last[c] = seq;
			}
			p = q + 1;
			pos++;
		}
	}
	for (int c = 0; c < n_clients; c++)
		for (size_t s = 1; s <= cs[c].n_toks; s++) {
			const struct tok *t = &cs[c].toks[s - 1];
			if (t->state == TOK_PENDING) {
				snprintf(why, cap, "token %d.%zu never ended",
					 c, s);
				goto out;
			}
			if (!is_mixed(t->key) && t->state == TOK_ACKED &&
			    !seen[c][s]) {
				snprintf(why, cap, "key %s: acknowledged "
						   "append %d.%zu lost",
					 run.keys[t->key], c, s);
				goto out;
			}
		}
	ok = true;
out:
	for (int c = 0; c < n_clients; c++)
		mem_free(seen[c]);
	return ok;
}

/* The whole check: values, then the history. The report is the
 * caller's (lin_report_free) whatever the verdict. */
static bool check_run(const struct client *cs, int n_clients,
		      const struct final *fin,
		      const struct lin_history *h, struct lin_report *rep,
		      char *why, size_t cap)
{
	*rep = (struct lin_report){0};
	if (!check_values(cs, n_clients, fin, why, cap))
		return false;
	if (lin_check(h, NULL, rep) == LIN_ILLEGAL) {
		/* Its first line (the key) and its end (the operation that
		 * cannot be placed); the whole goes with the history. */
		const char *x = rep->explain ? rep->explain : "";
		size_t first = strcspn(x, "\n"), len = strlen(x);
		size_t tail = cap / 2 < len - first ? cap / 2 : len - first;
		snprintf(why, cap, "not linearizable: %.*s\n%s%s", (int)first,
			 x, tail < len - first ? "...\n" : "",
			 x + len - tail);
		return false;
	}
	return true;
}

/* Writes h where it outlives the temporary directory, then what was
 * wrong as '#' lines (which lin_history_read skips); its path in out. */
static void keep_history(const struct lin_history *h, uint64_t seed,
			 const char *why, const struct lin_report *rep,
			 char *out, size_t cap)
{
	snprintf(out, cap, "/tmp/skv-faults-%" PRIu64 ".hist", seed);
	FILE *f = fopen(out, "w");
	bool ok = f && lin_history_write(h, f) == STATUS_OK;
	const char *x = rep->explain ? rep->explain : why;
	while (ok && *x) {
		size_t n = strcspn(x, "\n");
		fprintf(f, "# %.*s\n", (int)n, x);
		x += n + (x[n] == '\n');
	}
	if (!ok || ferror(f)) {
		snprintf(out, cap, "(could not write /tmp/skv-faults-%" PRIu64
				   ".hist)", seed);
	}
	if (f)
		fclose(f);
}

/* ======== the nemesis ======== */

/* The shard master changes: join (true) or leave group g, until it is
 * done. A retried change that had applied is refused: the latest
 * configuration then tells whether the group is in or out. */
static void membership(int g, bool join)
{
	struct smclerk_result res;
	uint64_t end = monotime_now_ms() + 2 * ADMIN_TIMEOUT_MS;
	const char *servers[NREP];
	for (int r = 0; r < NREP; r++)
		servers[r] = addrs[1 + g][r];
	struct smclerk_group grp = {.gid = gids[g], .n_servers = NREP,
				    .servers = servers};
	for (;;) {
		int rc = join ? smclerk_join(run.sm, &grp, 1, ADMIN_TIMEOUT_MS,
					     &res)
			      : smclerk_leave(run.sm, &gids[g], 1,
					      ADMIN_TIMEOUT_MS, &res);
		if (rc == STATUS_OK || rc == STATUS_INVALID_ARGUMENT) {
			char error[sizeof(res.error)];
			bool in = false;
			memcpy(error, res.error, sizeof(error));
			struct sm_config *cfg = res.config;
			if (!cfg) {
				rc = smclerk_query(run.sm, -1, ADMIN_TIMEOUT_MS,
						   &res);
				cr_assert_eq(rc, STATUS_OK, "query: %s",
					     res.error);
				cfg = res.config;
			}
			for (size_t i = 0; i < cfg->n_groups; i++)
				in |= cfg->groups[i].gid == gids[g];
			uint64_t num = cfg->num;
			sm_config_free(cfg);
			cr_assert_eq(in, join, "%s %" PRIu64 ": %s",
				     join ? "join" : "leave", gids[g], error);
			cr_log_info("nemesis: group %" PRIu64
				    " %s (config %" PRIu64 ")",
				    gids[g], join ? "joined" : "left", num);
			run.joined[g] = join;
			return;
		}
		cr_assert(rc == STATUS_TIMEOUT && monotime_now_ms() < end,
			  "%s %" PRIu64 ": %s: %s", join ? "join" : "leave",
			  gids[g], status_name(rc), res.error);
		sm_config_free(res.config);
	}
}

static void phase_kill(uint64_t *rng)
{
	struct proc *p = NULL;
	uint64_t term = 0;
	bool leader = rng_below(rng, 2);
	if (leader)
		p = leader_now((int)rng_below(rng, NRAFT), NULL, 0, &term);
	if (!p)
		p = &rafts[rng_below(rng, NRAFT)][rng_below(rng, NREP)];
	uint64_t down_ms = rng_below(rng, 3 * ELECTION_MAX_MS);
	cr_log_info("nemesis: kill -9 %s%s, restart in %" PRIu64 " ms",
		    p->s.name, term ? " (the leader)" : "", down_ms);
	procs_server_kill9(&p->s);
	sleep_ms(down_ms);
	start_procs(&p, 1);
}

static void probe_done(void *arg, int status, const char *errmsg,
		       ProtobufCMessage *reply)
{
	struct probe *pr = arg;
	(void)errmsg;
	pthread_mutex_lock(&pr->mu);
	pr->status = status;
	if (status == STATUS_OK) {
		const Skv__KvReply *r = (const Skv__KvReply *)reply;
		pr->status = (int)r->status;
		pr->value = mem_alloc(r->value.len ? r->value.len : 1);
		if (pr->value) {
			if (r->value.len)
				memcpy(pr->value, r->value.data, r->value.len);
			pr->vlen = r->value.len;
		} else {
			pr->status = STATUS_NO_MEMORY;
		}
	}
	codec_free(reply); /* the callback's */
	pr->ret_us = monotime_now_us();
	pr->done = true;
	pthread_cond_signal(&pr->cond);
	pthread_mutex_unlock(&pr->mu);
}

/* An append key of the current epoch on a shard group g owns now; -1 if
 * there is none. */
static int probe_key(int g)
{
	struct smclerk_result res;
	int rc = smclerk_query(run.sm, -1, ADMIN_TIMEOUT_MS, &res);
	cr_assert_eq(rc, STATUS_OK, "query: %s", res.error);
	uint64_t e = (monotime_now_ms() - run.t_start_ms) / (EPOCH_S * 1000);
	if (e >= (uint64_t)run.n_epochs)
		e = (uint64_t)run.n_epochs - 1;
	int key = -1;
	for (int i = 0; i < NAKEYS && key < 0; i++) {
		const char *k = run.keys[e * NKEYS + (uint64_t)i];
		uint32_t sh = shard_for_key(k, strlen(k), res.config->nshards);
		if (res.config->shards[sh] == gids[g - 1])
			key = (int)e * NKEYS + i;
	}
	sm_config_free(res.config);
	return key;
}

/* The stale-read probe of a paused leader p of group g, once another
 * replica leads: an append to `key` through the nemesis's clerk (served
 * by the new leader), then a Get of `key` sent straight to p on a new
 * connection, which p sees as soon as it resumes. p must refuse it (it
 * no longer leads) or answer with the append in; whatever it answers
 * goes into the history, and the checker decides. True if the probe
 * was sent (wait for it with probe_finish); false when the append's
 * outcome is unknown. */
static bool probe_start(const struct proc *p, int key, uint64_t *call_us)
{
	struct probe *pr = &run.probe;
	if (client_do(&run.clients[CLIENT_NEMESIS], LIN_APPEND, key, NULL,
		      NULL) != KV_OK)
		return false;
	pr->done = false;
	pr->value = NULL;
	pr->vlen = 0;
	struct rpc_client *rc = rpc_client_new(NULL);
	cr_assert_not_null(rc);
	run.probe_rc = rc;
	const char *k = run.keys[key];
	Skv__KvRequest req = SKV__KV_REQUEST__INIT;
	req.client_id = PROBE_ID;
	req.op = SKV__OP__OP_GET;
	req.key.data = (uint8_t *)k;
	req.key.len = strlen(k);
	*call_us = monotime_now_us();
	int st = rpc_client_call(rc, p->addr, "/skv.ShardKV/Get", &req.base,
				 &skv__kv_reply__descriptor, ADMIN_TIMEOUT_MS,
				 probe_done, pr);
	cr_assert_eq(st, STATUS_OK, "probe: %s", status_str(st));
	return true;
}

/* Waits for the probe's answer and records it if it is one. The
 * outcome's name (for the log) in out. */
static void probe_finish(int key, uint64_t call_us, const char **out)
{
	struct probe *pr = &run.probe;
	pthread_mutex_lock(&pr->mu);
	while (!pr->done)
		pthread_cond_wait(&pr->cond, &pr->mu); /* the call's deadline */
	pthread_mutex_unlock(&pr->mu);
	rpc_client_free(run.probe_rc);
	run.probe_rc = NULL;
	*out = status_name(pr->status);
	if (pr->status == STATUS_OK || pr->status == STATUS_NOT_FOUND) {
		const char *k = run.keys[key];
		struct lin_op op = {
			.client = PROBE_ID, .kind = LIN_GET,
			.key = (const uint8_t *)k, .klen = strlen(k),
			.known = true, .found = pr->status == STATUS_OK,
			.out = pr->value, .outlen = pr->vlen,
			.call = call_us, .ret = pr->ret_us,
		};
		record(&op);
		*out = pr->status == STATUS_OK ? "served" : "served NOT_FOUND";
		run.n_probes_served++;
	}
	run.n_probes++;
	mem_free(pr->value);
	pr->value = NULL;
}

static void phase_pause(uint64_t *rng)
{
	int g = (int)rng_below(rng, NRAFT);
	uint64_t term, new_term, call_us = 0;
	int key = g ? probe_key(g) : -1;
	bool probing = false;
	struct proc *p = wait_leader(g, NULL, 0, &term);
	uint64_t t0 = monotime_now_ms();
	procs_server_pause(&p->s);
	struct proc *q = wait_leader(g, p, term + 1, &new_term);
	uint64_t elected = monotime_now_ms() - t0;
	if (key >= 0)
		probing = probe_start(p, key, &call_us);
	uint64_t now = monotime_now_ms();
	if (now < t0 + PAUSE_MS)
		sleep_ms(t0 + PAUSE_MS - now);
	procs_server_resume(&p->s);
	const char *probed = "no probe";
	if (probing)
		probe_finish(key, call_us, &probed);
	cr_log_info("nemesis: %s leader %s (term %" PRIu64 ") paused for %"
		    PRIu64 " ms; %s leads (term %" PRIu64 ") after %" PRIu64
		    " ms; a read sent to the paused one: %s",
		    raft_name(g), p->s.name, term, monotime_now_ms() - t0,
		    q->s.name, new_term, elected, probed);
}

static void phase_move(uint64_t *rng)
{
	int g = (int)rng_below(rng, NGROUPS);
	membership(g, false);
	sleep_ms(500 + rng_below(rng, 1500));
	membership(g, true);
}

enum phase { PHASE_KILL, PHASE_PAUSE, PHASE_MOVE, PHASE_COUNT };

/* Phases until run_ms passed, the first three one of each kind. */
static void nemesis(uint64_t *rng, uint64_t run_ms)
{
	enum phase order[PHASE_COUNT] = {PHASE_KILL, PHASE_PAUSE, PHASE_MOVE};
	for (int i = PHASE_COUNT - 1; i > 0; i--) {
		int j = (int)rng_below(rng, (uint64_t)i + 1);
		enum phase x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	uint64_t end = monotime_now_ms() + run_ms;
	size_t n[PHASE_COUNT] = {0};
	for (int i = 0; i < PHASE_COUNT || monotime_now_ms() < end; i++) {
		enum phase ph = order[i < PHASE_COUNT ? i : 0];
		if (i >= PHASE_COUNT)
			ph = (enum phase)rng_below(rng, PHASE_COUNT);
		switch (ph) {
		case PHASE_KILL:
			phase_kill(rng);
			break;
		case PHASE_PAUSE:
			phase_pause(rng);
			break;
		default:
			phase_move(rng);
			break;
		}
		n[ph]++;
		char fail[512];
		client_failure(fail);
		cr_assert_str_empty(fail, "a client: %s", fail);
		sleep_ms(300 + rng_below(rng, 700));
	}
	cr_log_info("nemesis: %zu kills, %zu pauses, %zu leave/join; %zu "
		    "reads sent to a paused leader, %zu served",
		    n[0], n[1], n[2], run.n_probes, run.n_probes_served);
}

/* ======== convergence ======== */

/* Whether every replica agrees with the configuration cfg (see the
 * header); why not in why. */
static bool converged(const struct sm_config *cfg, char *why, size_t cap)
{
	bool ok = true;
	for (int g = 0; g < NRAFT && ok; g++) {
		struct node_status_result res[NREP];
		ok = settled_status(addrs[g], NREP, rafts[g][0].gid, cfg->num,
				    cfg->shards, cfg->nshards,
				    STATUS_TIMEOUT_MS, res, why, cap);
		node_status_results_free(res, NREP);
	}
	return ok;
}

/* Waits until the cluster has converged on the latest configuration. */
static void wait_converged(void)
{
	struct smclerk_result res;
	int rc = smclerk_query(run.sm, -1, ADMIN_TIMEOUT_MS, &res);
	cr_assert_eq(rc, STATUS_OK, "query: %s", res.error);
	struct sm_config *cfg = res.config;
	cr_assert_eq(cfg->nshards, NSHARDS);
	for (int g = 0; g < NGROUPS; g++)
		cr_assert(run.joined[g]);
	uint64_t t0 = monotime_now_ms();
	char why[512] = "";
	while (!converged(cfg, why, sizeof(why))) {
		if (monotime_now_ms() > t0 + CONVERGE_MS) {
			sm_config_free(cfg);
			cr_assert_fail("no convergence in %d ms: %s",
				       CONVERGE_MS, why);
		}
		procs_pause();
	}
	cr_log_info("converged on config %" PRIu64 " in %" PRIu64 " ms",
		    cfg->num, monotime_now_ms() - t0);
	sm_config_free(cfg);
}

/* How often `what` occurs in every server's log. */
static size_t count_in_logs(const char *what)
{
	size_t n = 0;
	for (int g = 0; g < NRAFT; g++)
		for (int r = 0; r < NREP; r++) {
			char *text = procs_file_from(rafts[g][r].s.log, 0);
			for (char *p = text; (p = strstr(p, what)); p++)
				n++;
			free(text);
		}
	return n;
}

/* ======== suite ======== */

static void setup(void)
{
	procs_setup(tmpdir);
	for (int g = 0; g < NRAFT; g++) {
		size_t off = 0;
		for (int r = 0; r < NREP; r++) {
			struct proc *p = &rafts[g][r];
			char name[24];
			*p = (struct proc){.gid = g ? gids[g - 1] : 0,
					   .id = (uint32_t)(r + 1)};
			if (g)
				snprintf(name, sizeof(name), "kv%" PRIu64 "-%d",
					 p->gid, r + 1);
			else
				snprintf(name, sizeof(name), "sm%d", r + 1);
			procs_server_init(&p->s, name);
			snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d",
				 test_port_reserve());
			addrs[g][r] = p->addr;
			off += (size_t)snprintf(lists[g] + off,
						sizeof(lists[g]) - off, "%s%s",
						r ? "," : "", p->addr);
		}
	}
	run.hist = lin_history_new();
	cr_assert_not_null(run.hist);
}

/* Also after a failed assertion: no thread or child outlives the test. */
static void teardown(void)
{
	atomic_store(&run.stop, true);
	for (int i = 0; i < NALL; i++)
		if (run.clients[i].kv)
			kv_clerk_shutdown(run.clients[i].kv);
	clients_stop();
	rpc_client_free(run.probe_rc); /* its call ends, CANCELLED */
	run.probe_rc = NULL;
	mem_free(run.probe.value);
	for (int i = 0; i < NALL; i++)
		mem_free(run.clients[i].toks);
	smclerk_free(run.sm);
	run.sm = NULL;
	lin_history_free(run.hist);
	run.hist = NULL;
	mem_free(run.keys);
	run.keys = NULL;
	for (int g = NRAFT - 1; g >= 0; g--)
		for (int r = 0; r < NREP; r++)
			procs_server_kill9(&rafts[g][r].s);
	procs_teardown();
}

TestSuite(kv_faults, .init = setup, .fini = teardown);

Test(kv_faults, kill_pause_and_move_under_load)
{
	uint64_t t0 = monotime_now_ms();
	run.seed = env_u64("SKV_FAULT_SEED", 0);
	if (!run.seed) {
		uint64_t s = monotime_now_ns() ^ ((uint64_t)getpid() << 32);
		run.seed = rng_next(&s) | 1;
	}
	uint64_t run_s = env_u64("SKV_SOAK_S", RUN_S_DEFAULT);
	cr_log_info("seed %" PRIu64 ", %" PRIu64 " s of faults; replay the "
		    "choices with SKV_FAULT_SEED=%" PRIu64 " (timing still "
		    "varies), longer with SKV_SOAK_S=<seconds>",
		    run.seed, run_s, run.seed);
	uint64_t rng = run.seed;
	pick_keys((int)(run_s / EPOCH_S) + 1);

	struct proc *all[NRAFT * NREP];
	for (int g = 0; g < NRAFT; g++)
		for (int r = 0; r < NREP; r++)
			all[g * NREP + r] = &rafts[g][r];
	start_procs(all, NRAFT * NREP);
	int rc = smclerk_new(addrs[0], NREP, NULL, &run.sm);
	cr_assert_eq(rc, STATUS_OK, "smclerk_new: %s", status_str(rc));
	for (int g = 0; g < NGROUPS; g++)
		membership(g, true);
	client_open(&run.clients[CLIENT_NEMESIS], CLIENT_NEMESIS);
	cr_log_info("%d servers up, groups joined (%" PRIu64 " ms)",
		    NRAFT * NREP, monotime_now_ms() - t0);

	run.t_start_ms = monotime_now_ms();
	for (uint32_t i = 0; i < NCLIENTS; i++) {
		struct client *c = &run.clients[i];
		client_open(c, i);
		cr_assert_eq(pthread_create(&c->thread, NULL, client_main, c),
			     0);
		c->running = true;
	}
	nemesis(&rng, run_s * 1000);

	/* Heal: every process up and running (the phases leave them so),
	 * every group joined; then the writes stop. */
	for (int g = 0; g < NRAFT; g++)
		for (int r = 0; r < NREP; r++) {
			procs_server_resume(&rafts[g][r].s);
			if (!rafts[g][r].s.pid)
				start_procs(&all[g * NREP + r], 1);
		}
	for (int g = 0; g < NGROUPS; g++)
		if (!run.joined[g])
			membership(g, true);
	uint64_t t_stop = monotime_now_ms();
	atomic_store(&run.stop, true);
	for (int i = 0; i < NCLIENTS; i++) {
		pthread_join(run.clients[i].thread, NULL);
		run.clients[i].running = false;
	}
	cr_log_info("clients stopped in %" PRIu64 " ms",
		    monotime_now_ms() - t_stop);
	char fail[512];
	client_failure(fail);
	cr_assert_str_empty(fail, "a client: %s", fail);

	wait_converged();

	/* Every key read once more, into the history too. */
	struct client *fc = &run.clients[CLIENT_FINAL];
	client_open(fc, CLIENT_FINAL);
	struct final *fin = mem_calloc((size_t)run.n_keys, sizeof(*fin));
	void **vals = mem_calloc((size_t)run.n_keys, sizeof(*vals));
	cr_assert(fin && vals);
	for (int k = 0; k < run.n_keys; k++) {
		size_t len = 0;
		enum kv_status st = client_do(fc, LIN_GET, k, &vals[k], &len);
		cr_assert(st == KV_OK || st == KV_NOT_FOUND,
			  "final get %s: %s", run.keys[k], kv_status_name(st));
		fin[k] = (struct final){.found = st == KV_OK, .v = vals[k],
					.len = len};
	}

	size_t ops = 0, unknown = 0, writes = 0, acked = 0;
	for (int i = 0; i < NALL; i++) {
		const struct client *c = &run.clients[i];
		ops += c->n_ok + c->n_unknown;
		unknown += c->n_unknown;
		writes += c->n_toks;
		for (size_t s = 0; s < c->n_toks; s++)
			acked += c->toks[s].state == TOK_ACKED;
	}
	cr_log_info("%zu operations, %zu with unknown outcome; %zu writes, "
		    "%zu acknowledged",
		    ops, unknown, writes, acked);
	cr_assert_gt(acked, 0, "no write was acknowledged");

	struct lin_report rep;
	char why[4096];
	uint64_t t_check = monotime_now_ms();
	bool ok = check_run(run.clients, NALL, fin, run.hist, &rep,
			    why, sizeof(why));
	for (int k = 0; k < run.n_keys; k++)
		kv_free(vals[k]);
	mem_free(vals);
	mem_free(fin);
	if (!ok) {
		char path[128];
		keep_history(run.hist, run.seed, why, &rep, path,
			     sizeof(path));
		lin_report_free(&rep);
		cr_assert_fail("seed %" PRIu64 ": %s\nhistory: %s", run.seed,
			       why, path);
	}
	cr_log_info("history: %s, %zu keys, %zu ops, %zu keys over budget, "
		    "%" PRIu64 " steps (%" PRIu64 " ms)",
		    lin_result_str(rep.result), rep.keys, rep.ops,
		    rep.unknown_keys, rep.steps, monotime_now_ms() - t_check);
	lin_report_free(&rep);

	clients_stop();
	cr_log_info("%zu snapshots installed by restarted or lagging "
		    "replicas", count_in_logs("installed a snapshot"));
	for (int g = NRAFT - 1; g >= 0; g--)
		for (int r = 0; r < NREP; r++)
			procs_server_stop(&rafts[g][r].s);
	cr_log_info("seed %" PRIu64 ": done in %" PRIu64 " ms", run.seed,
		    monotime_now_ms() - t0);
}

/* ======== the check itself ======== */

/* A history of two clients on append key 0: client 0 appends "0.1;"
 * then "0.2;", each acknowledged; client 1 reads after both. The check
 * passes the true history and fails each corruption: a stale read, a
 * lost acknowledged append, one applied twice, a token never written. */
static struct lin_history *small_history(const char *read, struct client cs[2],
					 struct tok toks[2])
{
	struct lin_history *h = lin_history_new();
	cr_assert_not_null(h);
	toks[0] = (struct tok){
		.key = 0, .kind = LIN_APPEND, .state = TOK_ACKED};
	toks[1] = toks[0];
	cs[0] = (struct client){.idx = 0, .toks = toks, .n_toks = 2};
	cs[1] = (struct client){.idx = 1};
	const char *key = run.keys[0];
	struct lin_op ops[] = {
		{.client = 0, .kind = LIN_APPEND,
		 .value = (const uint8_t *)"0.1;", .vlen = 4, .known = true,
		 .call = 1, .ret = 2},
		{.client = 0, .kind = LIN_APPEND,
		 .value = (const uint8_t *)"0.2;", .vlen = 4, .known = true,
		 .call = 3, .ret = 4},
		{.client = 1, .kind = LIN_GET, .known = true, .found = true,
		 .out = (const uint8_t *)read, .outlen = strlen(read),
		 .call = 5, .ret = 6},
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		ops[i].key = (const uint8_t *)key;
		ops[i].klen = strlen(key);
		cr_assert_eq(lin_history_add(h, &ops[i]), STATUS_OK);
	}
	return h;
}

static bool check_small(const char *read, const char *final, char *why,
			size_t cap)
{
	struct client cs[2];
	struct tok toks[2];
	struct lin_history *h = small_history(read, cs, toks);
	struct final fin[NKEYS] = {{0}};
	fin[0] = (struct final){.found = true, .v = (const uint8_t *)final,
				.len = strlen(final)};
	struct lin_report rep;
	bool ok = check_run(cs, 2, fin, h, &rep, why, cap);
	lin_report_free(&rep);
	lin_history_free(h);
	return ok;
}

static void check_teardown(void)
{
	mem_free(run.keys);
	run.keys = NULL;
}

TestSuite(kv_faults_check, .fini = check_teardown);

Test(kv_faults_check, fails_stale_reads_and_lost_or_doubled_writes)
{
	char why[2048];
	pick_keys(1);
	cr_assert(check_small("0.1;0.2;", "0.1;0.2;", why, sizeof(why)), "%s",
		  why);
	cr_assert_not(check_small("0.1;", "0.1;0.2;", why, sizeof(why)),
		      "a stale read passed");
	cr_assert(strstr(why, "not linearizable"), "%s", why);
	cr_assert_not(check_small("0.1;0.2;", "0.1;", why, sizeof(why)),
		      "a lost append passed");
	cr_assert(strstr(why, "lost"), "%s", why);
	cr_assert_not(check_small("0.1;0.2;", "0.1;0.2;0.2;", why,
				  sizeof(why)),
		      "an append applied twice passed");
	cr_assert(strstr(why, "twice"), "%s", why);
	cr_assert_not(check_small("0.1;0.2;", "0.1;0.2;1.1;", why,
				  sizeof(why)),
		      "a token never written passed");
	cr_assert(strstr(why, "never written"), "%s", why);
	cr_assert_not(check_small("0.1;0.2;", "0.2;0.1;", why, sizeof(why)),
		      "appends out of order passed");
	cr_assert(strstr(why, "after"), "%s", why);
}
