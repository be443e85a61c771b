/*
 * Implementation notes. A request crosses threads once, in one
 * allocation (`struct incoming`: gRPC thread -> loop). Held calls live in
 * a token -> call table owned by the loop thread. `stopped` is loop-side
 * state: set by the stop event, it makes every later request answer
 * SHUTDOWN at once; the stop event is posted before the rpc server shuts
 * down and the loop stops, so it runs either on the loop or in
 * loop_drain, and any request event it races with sees loop_stopping().
 */
#include "shardmaster/server.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/raft/node.h"
#include "common/rpc/rpc.h"
#include "common/status.h"
#include "common/store/store.h"
#include "shardmaster/service.h"
#include "shardmaster/sm.h"

#define MOD "sm_server"

#define IDENTITY_KEY "sm/identity"
#define IDENTITY_KEY_LEN (sizeof(IDENTITY_KEY) - 1)
#define IDENTITY_KIND "shardmaster"

#define N_METHODS 4

/* ---- token -> held call ---- */

/* Open addressing with linear probing; token 0 marks a free slot (tokens
 * start at 1). Deletion shifts the probe chain back, so no tombstones. */
struct held_slot {
	uint64_t token;
	struct rpc_call *call;
};

struct held_map {
	struct held_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t count;
};

static size_t slot_of(uint64_t token, size_t cap)
{
	/* Fibonacci hashing: tokens are sequential. */
	return (size_t)((token * UINT64_C(0x9E3779B97F4A7C15)) >> 17) &
	       (cap - 1);
}

static int held_grow(struct held_map *m)
{
	size_t ncap = m->cap ? 2 * m->cap : 64;
	struct held_slot *ns = mem_calloc(ncap, sizeof(*ns));
	if (!ns)
		return STATUS_NO_MEMORY;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].token)
			continue;
		size_t j = slot_of(m->slots[i].token, ncap);
		while (ns[j].token)
			j = (j + 1) & (ncap - 1);
		ns[j] = m->slots[i];
	}
	mem_free(m->slots);
	m->slots = ns;
	m->cap = ncap;
	return STATUS_OK;
}

static int held_put(struct held_map *m, uint64_t token, struct rpc_call *call)
{
	if ((m->count + 1) * 2 > m->cap && held_grow(m) != STATUS_OK)
		return STATUS_NO_MEMORY;
	size_t j = slot_of(token, m->cap);
	while (m->slots[j].token)
		j = (j + 1) & (m->cap - 1);
	m->slots[j] = (struct held_slot){token, call};
	m->count++;
	return STATUS_OK;
}

/* Removes and returns the call of `token`; NULL if none. */
static struct rpc_call *held_take(struct held_map *m, uint64_t token)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1, i = slot_of(token, m->cap);
	while (m->slots[i].token != token) {
		if (!m->slots[i].token)
			return NULL;
		i = (i + 1) & mask;
	}
	struct rpc_call *call = m->slots[i].call;
	m->count--;
	/* Shift back every later entry of the chain that may fill the hole. */
	size_t j = i;
	for (;;) {
		m->slots[i].token = 0;
		m->slots[i].call = NULL;
		for (;;) {
			j = (j + 1) & mask;
			if (!m->slots[j].token)
				return call;
			size_t home = slot_of(m->slots[j].token, m->cap);
			/* Movable unless home lies cyclically in (i, j]. */
			bool stays = i <= j ? (i < home && home <= j)
					    : (i < home || home <= j);
			if (!stays)
				break;
		}
		m->slots[i] = m->slots[j];
		i = j;
	}
}

static void held_free(struct held_map *m)
{
	mem_free(m->slots);
	*m = (struct held_map){0};
}

/* ---- the server ---- */

struct method_ctx {
	struct sm_server *s;
	enum sm_method m;
};

struct sm_server {
	struct store *store;
	struct loop *loop;
	pthread_t thread;
	bool thread_running;
	struct rpc_server *srv;
	struct rpc_client *cli;
	struct raft_node *node;
	struct sm_service *svc;
	struct method_ctx methods[N_METHODS];
	int port;
	uint32_t id;
	char *peers[RAFT_MAX_NODES];
	size_t n_peers;
	uint32_t nshards_given; /* 0: not given, no warning */

	/* Loop thread only (or after the loop stopped). */
	struct loop_event stop_ev;
	bool stopped;
	struct raft *attached; /* the core the service is attached to */
	uint64_t next_token;
	struct held_map held;
	uint32_t leader_seen;
	uint64_t term_seen;
	bool nshards_warned;
};

/* A decoded request on its way to the loop. */
struct incoming {
	struct loop_event ev;
	struct sm_server *s;
	enum sm_method m;
	struct rpc_call *call;
	ProtobufCMessage *req;
};

static void reply_status(struct rpc_call *call, int status, const char *msg)
{
	Skv__SmReply r = SKV__SM_REPLY__INIT;
	r.status = (Skv__Status)status;
	r.error = (char *)msg;
	rpc_call_reply(call, &r.base);
}

/* sm_reply_fn: loop thread. */
static void on_service_reply(void *arg, uint64_t token, const Skv__SmReply *r)
{
	struct sm_server *s = arg;
	struct rpc_call *call = held_take(&s->held, token);
	if (!call) {
		log_warn(MOD, "reply for unknown token %" PRIu64 " dropped",
			 token);
		return;
	}
	rpc_call_reply(call, &r->base);
}

static void incoming_run(struct loop_event *ev)
{
	struct incoming *in = (struct incoming *)ev;
	struct sm_server *s = in->s;

	if (s->stopped || loop_stopping(s->loop)) {
		reply_status(in->call, STATUS_SHUTDOWN,
			     "shard master shutting down");
	} else {
		uint64_t token = ++s->next_token;
		if (held_put(&s->held, token, in->call) != STATUS_OK)
			rpc_call_fail(in->call, STATUS_NO_MEMORY,
				      "out of memory");
		else
			sm_service_request(s->svc, token, in->m, in->req);
	}
	codec_free(in->req);
	mem_free(in);
}

/* rpc_handler_fn: gRPC server thread, never blocks. */
static void on_request(void *ctx, struct rpc_call *call, ProtobufCMessage *req)
{
	struct method_ctx *mc = ctx;
	struct incoming *in = mem_alloc(sizeof(*in));
	if (!in) {
		rpc_call_fail(call, STATUS_NO_MEMORY, "out of memory");
		codec_free(req);
		return;
	}
	*in = (struct incoming){.ev.fn = incoming_run,
				.s = mc->s,
				.m = mc->m,
				.call = call,
				.req = req};
	loop_post(mc->s->loop, &in->ev);
}

/* Logs who leads whenever that changes (not per request). */
static void log_leadership(struct sm_server *s, struct raft *r)
{
	uint32_t leader = raft_leader(r);
	uint64_t term = raft_term(r);
	if (!leader || (leader == s->leader_seen && term == s->term_seen))
		return;
	s->leader_seen = leader;
	s->term_seen = term;
	if (leader == s->id)
		log_info(MOD, "node %u leads (term %" PRIu64 ")", s->id, term);
	else
		log_info(MOD, "node %u (%s) leads (term %" PRIu64 ")", leader,
			 leader <= s->n_peers ? s->peers[leader - 1] : "?",
			 term);
}

static void warn_nshards(struct sm_server *s)
{
	uint32_t have = sm_nshards(sm_service_sm(s->svc));
	if (s->nshards_warned || !s->nshards_given || !have)
		return;
	s->nshards_warned = true;
	if (have != s->nshards_given)
		log_warn(MOD,
			 "this shard master has %u shards; the --shards %u "
			 "given here only applies when a cluster is created "
			 "and is ignored",
			 have, s->nshards_given);
}

/* The loop's turn hook: one Raft process per turn, then the service. */
static void on_turn(void *arg)
{
	struct sm_server *s = arg;
	if (s->stopped)
		return;
	raft_node_turn(s->node);
	/* The node rebuilds its core after a bad snapshot from a peer. */
	struct raft *r = raft_node_raft(s->node);
	if (r != s->attached) {
		sm_service_attach(s->svc, NULL);
		sm_service_attach(s->svc, r);
		s->attached = r;
	}
	sm_service_after_process(s->svc);
	log_leadership(s, r);
	warn_nshards(s);
}

static void stop_run(struct loop_event *ev)
{
	struct sm_server *s =
		(struct sm_server *)(void *)((char *)ev -
					     offsetof(struct sm_server,
						      stop_ev));
	s->stopped = true;
	sm_service_fail_all(s->svc, STATUS_SHUTDOWN);
	sm_service_attach(s->svc, NULL);
	s->attached = NULL;
}

static void *loop_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

/* ---- data directory ---- */

static bool cluster_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SM_CLUSTER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* mkdir -p. */
static int make_dirs(const char *path, char *err, size_t cap)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(tmp)) {
		snprintf(err, cap, "data dir '%s': bad path", path);
		return STATUS_INVALID_ARGUMENT;
	}
	memcpy(tmp, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != 0)
			continue;
		char saved = tmp[i];
		tmp[i] = 0;
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
			snprintf(err, cap, "data dir %s: cannot create %s: %s",
				 path, tmp, strerror(errno));
			return STATUS_IO;
		}
		tmp[i] = saved;
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, cap, "data dir %s: not a directory", path);
		return STATUS_INVALID_ARGUMENT;
	}
	return STATUS_OK;
}

/* 1 if `path` holds no entries, 0 if it does, -1 on error (errno). */
static int dir_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int empty = 1;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	return empty;
}

struct identity {
	char kind[32];
	char cluster[SM_CLUSTER_NAME_MAX + 1];
	unsigned long id, nodes;
};

static int identity_format(const struct identity *idt, struct buf *out)
{
	char text[256];
	int n = snprintf(text, sizeof(text),
			 "kind=%s\ncluster=%s\nid=%lu\nnodes=%lu\n", idt->kind,
			 idt->cluster, idt->id, idt->nodes);
	return buf_set(out, text, (size_t)n);
}

/* Parses the stored text; false if it is not in the format. */
static bool identity_parse(const void *data, size_t len, struct identity *idt)
{
	char text[256];
	if (len >= sizeof(text) || memchr(data, 0, len))
		return false;
	memcpy(text, data, len);
	text[len] = 0;
	*idt = (struct identity){0};
	bool kind = false, cluster = false, id = false, nodes = false;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq)
			return false;
		*eq = 0;
		const char *v = eq + 1;
		char *end;
		if (!strcmp(line, "kind") && strlen(v) < sizeof(idt->kind)) {
			strcpy(idt->kind, v);
			kind = true;
		} else if (!strcmp(line, "cluster") &&
			   strlen(v) < sizeof(idt->cluster)) {
			strcpy(idt->cluster, v);
			cluster = true;
		} else if (!strcmp(line, "id")) {
			idt->id = strtoul(v, &end, 10);
			id = *v && !*end;
		} else if (!strcmp(line, "nodes")) {
			idt->nodes = strtoul(v, &end, 10);
			nodes = *v && !*end;
		}
	}
	/* A future kind of server may store other fields: only the kind is
	 * needed to tell it is not ours. */
	return kind && (strcmp(idt->kind, IDENTITY_KIND) != 0 ||
			(cluster && id && nodes));
}

/* STATUS_OK if every column family of `st` is empty. */
static int store_is_empty(struct store *st, bool *empty)
{
	struct buf key;
	buf_init(&key);
	*empty = true;
	for (int cf = 0; cf < STORE_CF_COUNT_ && *empty; cf++) {
		int rc = store_last_key(st, (enum store_cf)cf, "", 0, &key);
		if (rc == STATUS_OK) {
			*empty = false;
		} else if (rc != STATUS_NOT_FOUND) {
			buf_free(&key);
			return rc;
		}
	}
	buf_free(&key);
	return STATUS_OK;
}

/* Checks the identity of the store at `dir`, or writes it (synced) into
 * an empty one. */
static int check_identity(struct store *st, const char *dir,
			  const struct identity *want, char *err, size_t cap)
{
	struct buf val;
	struct identity have;
	buf_init(&val);
	int rc = store_get(st, STORE_CF_DEFAULT, IDENTITY_KEY,
			   IDENTITY_KEY_LEN, &val);
	if (rc == STATUS_NOT_FOUND) {
		bool empty;
		rc = store_is_empty(st, &empty);
		if (rc != STATUS_OK) {
			snprintf(err, cap, "data dir %s: %s", dir,
				 store_errmsg(st));
		} else if (!empty) {
			snprintf(err, cap,
				 "data dir %s holds a database without a "
				 "shard-master identity (not a shard-master "
				 "data dir?); refusing to start",
				 dir);
			rc = STATUS_INVALID_ARGUMENT;
		} else {
			rc = identity_format(want, &val);
			if (rc == STATUS_OK)
				rc = store_put(st, STORE_CF_DEFAULT,
					       IDENTITY_KEY, IDENTITY_KEY_LEN,
					       val.data, val.len, true);
			if (rc != STATUS_OK)
				snprintf(err, cap,
					 "data dir %s: cannot write the "
					 "identity: %s",
					 dir, store_errmsg(st));
			else
				log_info(MOD,
					 "new data dir %s: node %lu of %lu "
					 "in shard-master cluster \"%s\"",
					 dir, want->id, want->nodes,
					 want->cluster);
		}
	} else if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: cannot read the identity: %s",
			 dir, store_errmsg(st));
	} else if (!identity_parse(val.data, val.len, &have)) {
		snprintf(err, cap,
			 "data dir %s: unreadable identity record; refusing "
			 "to start",
			 dir);
		rc = STATUS_CORRUPTION;
	} else if (strcmp(have.kind, IDENTITY_KIND) != 0) {
		snprintf(err, cap,
			 "data dir %s belongs to a %s server, not a shard "
			 "master (identity mismatch); refusing to start",
			 dir, have.kind);
		rc = STATUS_INVALID_ARGUMENT;
	} else if (strcmp(have.cluster, want->cluster) != 0 ||
		   have.id != want->id || have.nodes != want->nodes) {
		snprintf(err, cap,
			 "data dir %s: identity mismatch: it belongs to node "
			 "%lu of %lu in shard-master cluster \"%s\", not "
			 "node %lu of %lu in \"%s\"; refusing to start",
			 dir, have.id, have.nodes, have.cluster, want->id,
			 want->nodes, want->cluster);
		rc = STATUS_INVALID_ARGUMENT;
	}
	buf_free(&val);
	return rc;
}

/* Opens the store at o->data_dir and checks or writes its identity. */
static int open_data_dir(const struct sm_server_opts *o, const char *cluster,
			 struct store **out, char *err, size_t cap)
{
	char serr[512];
	int rc = make_dirs(o->data_dir, err, cap);
	if (rc != STATUS_OK)
		return rc;
	int empty = dir_empty(o->data_dir);
	if (empty < 0) {
		snprintf(err, cap, "data dir %s: %s", o->data_dir,
			 strerror(errno));
		return STATUS_IO;
	}
	/* A non-empty directory must already be a database: never create
	 * one among someone else's files. */
	struct store_opts so = {.path = o->data_dir,
				.create_if_missing = empty == 1};
	rc = store_open(&so, out, serr, sizeof(serr));
	if (rc != STATUS_OK) {
		char current[4200];
		struct stat st;
		snprintf(current, sizeof(current), "%s/CURRENT", o->data_dir);
		if (!empty && stat(current, &st) != 0)
			snprintf(err, cap,
				 "data dir %s is not empty and holds no "
				 "database: not a shard-master data dir; "
				 "refusing to start",
				 o->data_dir);
		else
			snprintf(err, cap, "data dir %s: cannot open: %s",
				 o->data_dir, serr);
		return rc;
	}
	struct identity want = {.kind = IDENTITY_KIND,
				.id = o->id,
				.nodes = o->n_peers};
	snprintf(want.cluster, sizeof(want.cluster), "%s", cluster);
	rc = check_identity(*out, o->data_dir, &want, err, cap);
	if (rc != STATUS_OK) {
		store_close(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- start / stop ---- */

static uint64_t random_seed(uint32_t id)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		seed = monotime_now_ns() ^ ((uint64_t)getpid() << 32);
	return seed ^ id;
}

static int check_opts(const struct sm_server_opts *o, const char *cluster,
		      char *err, size_t cap)
{
	if (o->n_peers < 1 || o->n_peers > RAFT_MAX_NODES) {
		snprintf(err, cap, "%zu shard-master replicas; 1 to %d allowed",
			 o->n_peers, RAFT_MAX_NODES);
		return STATUS_INVALID_ARGUMENT;
	}
	if (o->id < 1 || o->id > o->n_peers) {
		snprintf(err, cap, "id %u is not in 1..%zu (one per peer)",
			 o->id, o->n_peers);
		return STATUS_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < o->n_peers; i++) {
		const char *p = o->peers[i];
		if (!p || !*p || strlen(p) > SM_ADDR_BYTES_MAX ||
		    !strchr(p, ':')) {
			snprintf(err, cap,
				 "peer %zu: '%s' is not a host:port address",
				 i + 1, p ? p : "");
			return STATUS_INVALID_ARGUMENT;
		}
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(p, o->peers[j])) {
				snprintf(err, cap,
					 "peers %zu and %zu are both %s", j + 1,
					 i + 1, p);
				return STATUS_INVALID_ARGUMENT;
			}
		}
	}
	if (!o->data_dir || !*o->data_dir) {
		snprintf(err, cap, "no data dir");
		return STATUS_INVALID_ARGUMENT;
	}
	if (!cluster_name_ok(cluster)) {
		snprintf(err, cap,
			 "cluster name '%s': 1 to %d characters of A-Z a-z "
			 "0-9 . _ -",
			 cluster, SM_CLUSTER_NAME_MAX);
		return STATUS_INVALID_ARGUMENT;
	}
	if (o->nshards > SM_SHARDS_MAX) {
		snprintf(err, cap, "%u shards; at most %d", o->nshards,
			 SM_SHARDS_MAX);
		return STATUS_INVALID_ARGUMENT;
	}
	return STATUS_OK;
}

/* node.h's order, for a running server and for a start that failed
 * part way (anything may be missing). With the loop never run,
 * loop_drain runs what was posted to it (the node's start event). */
static void teardown(struct sm_server *s)
{
	if (s->node)
		raft_node_stop(s->node);
	if (s->loop && s->svc) {
		s->stop_ev.fn = stop_run;
		loop_post(s->loop, &s->stop_ev);
	}
	if (s->srv)
		rpc_server_shutdown(s->srv);
	if (s->loop) {
		loop_stop(s->loop);
		if (s->thread_running)
			pthread_join(s->thread, NULL);
		loop_drain(s->loop);
	}
	/* The loop is gone: this thread owns its state now. Nothing should
	 * be left; answer it anyway rather than leak a call. */
	if (s->svc)
		sm_service_fail_all(s->svc, STATUS_SHUTDOWN);
	for (size_t i = 0; i < s->held.cap; i++) {
		if (!s->held.slots[i].token)
			continue;
		log_warn(MOD, "call %" PRIu64 " unanswered at shutdown",
			 s->held.slots[i].token);
		reply_status(s->held.slots[i].call, STATUS_SHUTDOWN,
			     "shard master shutting down");
	}
	held_free(&s->held);
	rpc_client_free(s->cli);
	raft_node_free(s->node);
	sm_service_free(s->svc);
	store_close(s->store);
	rpc_server_free(s->srv);
	loop_free(s->loop);
	for (size_t i = 0; i < s->n_peers; i++)
		mem_free(s->peers[i]);
	mem_free(s);
}

int sm_server_start(const struct sm_server_opts *o, struct sm_server **out,
		    char *err, size_t cap)
{
	const char *cluster = o->cluster ? o->cluster : SM_CLUSTER_DEFAULT;
	char why[512];
	int rc;

	*out = NULL;
	rc = check_opts(o, cluster, err, cap);
	if (rc != STATUS_OK)
		return rc;
	struct sm_server *s = mem_calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, cap, "out of memory");
		return STATUS_NO_MEMORY;
	}
	s->id = o->id;
	s->nshards_given = o->nshards;
	s->n_peers = o->n_peers;
	for (size_t i = 0; i < o->n_peers; i++) {
		s->peers[i] = mem_strdup(o->peers[i]);
		if (!s->peers[i]) {
			snprintf(err, cap, "out of memory");
			rc = STATUS_NO_MEMORY;
			goto err_after_alloc;
		}
	}

	rc = open_data_dir(o, cluster, &s->store, err, cap);
	if (rc != STATUS_OK)
		goto err_after_alloc;

	struct sm_service_opts so = {
		.store = s->store,
		.self_id = o->id,
		.n_nodes = o->n_peers,
		.nshards = o->nshards,
		.reply = on_service_reply,
		.reply_arg = s,
	};
	for (size_t i = 0; i < o->n_peers; i++)
		so.addrs[i] = o->peers[i];
	rc = sm_service_new(&so, &s->svc, why, sizeof(why));
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: %s", o->data_dir, why);
		goto err_after_store;
	}
	/* From here on every failure goes through teardown, which copes
	 * with whatever is not there yet. */

	s->loop = loop_new();
	s->srv = rpc_server_new(NULL);
	s->cli = rpc_client_new(NULL);
	if (!s->loop || !s->srv || !s->cli) {
		snprintf(err, cap, "out of memory");
		rc = STATUS_NO_MEMORY;
		goto err_after_service;
	}

	struct raft_node_opts no = {
		.config = {.id = o->id,
			   .n_nodes = o->n_peers,
			   .election_timeout_ms_min = o->election_timeout_ms_min,
			   .election_timeout_ms_max = o->election_timeout_ms_max,
			   .heartbeat_ms = o->heartbeat_ms,
			   .seed = random_seed(o->id)},
		.loop = s->loop,
		.server = s->srv,
		.client = s->cli,
		.store = s->store,
		.fsm = &sm_service_fsm,
		.fsm_ctx = s->svc,
		.compaction_log_bytes_max =
			o->compaction_log_bytes_max == SIZE_MAX ? 0
			: o->compaction_log_bytes_max
				? o->compaction_log_bytes_max
				: SM_COMPACTION_BYTES_DEFAULT,
		.external_turn_hook = true,
	};
	for (size_t i = 0; i < o->n_peers; i++) {
		no.config.nodes[i] = (uint32_t)(i + 1);
		no.addrs[i] = o->peers[i];
	}
	rc = raft_node_new(&no, &s->node, why, sizeof(why));
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: %s", o->data_dir, why);
		goto err_after_service;
	}
	/* The loop does not run yet: this thread owns the core. */
	s->attached = raft_node_raft(s->node);
	sm_service_attach(s->svc, s->attached);
	loop_set_turn_hook(s->loop, on_turn, s);

	for (int k = 0; k < N_METHODS; k++) {
		enum sm_method m = (enum sm_method)(SM_METHOD_JOIN + k);
		s->methods[k] = (struct method_ctx){s, m};
		rc = rpc_server_add_method(s->srv, sm_method_path(m),
					   sm_method_request(m), on_request,
					   &s->methods[k]);
		if (rc != STATUS_OK) {
			snprintf(err, cap, "cannot register %s: %s",
				 sm_method_path(m), status_str(rc));
			goto err_after_service;
		}
	}

	const char *listen = o->listen ? o->listen : o->peers[o->id - 1];
	rc = rpc_server_start(s->srv, listen, &s->port, why, sizeof(why));
	if (rc != STATUS_OK) {
		snprintf(err, cap, "%s", why);
		goto err_after_service;
	}

	/* Read before the loop owns the state machine. */
	const struct sm *sm = sm_service_sm(s->svc);
	uint32_t nshards = sm_nshards(sm);
	char state[96];
	if (nshards)
		snprintf(state, sizeof(state), "config %" PRIu64 ", %u shards",
			 sm_latest_num(sm), nshards);
	else
		snprintf(state, sizeof(state),
			 "new cluster (the first leader creates config 0)");

	if (pthread_create(&s->thread, NULL, loop_thread, s->loop) != 0) {
		snprintf(err, cap, "cannot start the loop thread");
		rc = STATUS_NO_MEMORY;
		goto err_after_service;
	}
	s->thread_running = true;
	log_info(MOD,
		 "started: node %u of %zu in shard-master cluster \"%s\", "
		 "listening on %s (port %d), data dir %s, %s",
		 o->id, o->n_peers, cluster, listen, s->port, o->data_dir,
		 state);
	*out = s;
	return STATUS_OK;

err_after_service:
	teardown(s);
	return rc;
err_after_store:
	store_close(s->store);
err_after_alloc:
	for (size_t i = 0; i < s->n_peers; i++)
		mem_free(s->peers[i]);
	mem_free(s);
	return rc;
}

int sm_server_port(const struct sm_server *s)
{
	return s->port;
}

void sm_server_stop_free(struct sm_server *s)
{
	if (!s)
		return;
	teardown(s);
}
