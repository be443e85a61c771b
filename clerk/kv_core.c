/*
 * clerk/kv_core: see kv_core.h.
 *
 * Each running operation is routed afresh before every attempt: key ->
 * shard (with the cached configuration's shard count) -> owning gid ->
 * that group's servers. An operation keeps its own clerk_retry for the
 * group it is talking to (its own rounds and backoff), copied from the
 * group's, which remembers the last server that answered: that is the
 * per-group leader memory new operations start from. A second
 * clerk_retry of one "server" per operation only paces the waits for a
 * configuration that routes its key (WRONG_GROUP, a shard on gid 0).
 *
 * One Query(-1) to the shard masters is in flight at a time, shared by
 * every operation that wants a newer configuration; a wish for a newer
 * one made while a Query is out asks again after it (`cfg_again`: that
 * Query may predate what made the wish). A newer configuration wakes
 * the operations that wait for one at once.
 *
 * Attempt ids only grow, over operations and Queries alike, so a late
 * reply can never be taken for a current attempt. Finishing an
 * operation never allocates (except a Get's value): its struct moves
 * from the running list to the result queue.
 */
#include "clerk/kv_core.h"

#include <stdio.h>
#include <string.h>

#include "clerk/retry.h"
#include "common/addrs.h"
#include "common/buf.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/shard.h"
#include "common/status.h"
#include "shardmaster/sm.h"

#define ATTEMPT_TIMEOUT_MS_DEFAULT 1000
#define WHY_BYTES 200
#define NO_SESSION ((size_t)-1)
#define NO_SERVER ((size_t)-1)

static const char query_path[] = "/skv.ShardMaster/Query";

enum op_state {
	OP_DUE,	      /* next attempt at send_at_ms */
	OP_IN_FLIGHT, /* attempt `attempt` is out */
};

/* One replica group of the cached configuration. */
struct group {
	uint64_t gid;
	size_t n_servers;
	char **servers; /* the configuration's strings */
	uint64_t epoch; /* changes when its server list does */
	struct clerk_retry memory; /* .leader: last server that answered */
};

struct session {
	uint64_t client_id;
	uint64_t seq; /* last seq handed out */
	bool busy;
};

struct op {
	struct op *prev, *next; /* running list, or result queue (next) */
	uint64_t id;
	enum clerk_kv_op kind;
	uint8_t *key;
	size_t klen;
	uint8_t *value;
	size_t vlen;
	uint64_t deadline_ms;
	size_t session;	/* NO_SESSION for a Get */
	uint64_t client_id, seq;

	enum op_state state;
	uint64_t send_at_ms;
	/* Waiting (until send_at_ms at most) for a configuration numbered
	 * wait_cfg_min or higher. */
	bool wait_cfg;
	uint64_t wait_cfg_min;
	struct clerk_retry pace; /* one "server": backoff of those waits */

	/* the group it talks to */
	uint64_t gid, epoch;
	struct clerk_retry retry;

	/* the attempt in flight */
	uint64_t attempt;
	size_t server;
	uint64_t attempt_deadline_ms;
	uint64_t attempt_cfg_num;
	uint32_t shard;

	uint32_t attempts;
	char why[WHY_BYTES]; /* what the last attempt met */

	/* the outcome */
	int status;
	uint8_t *result;
	size_t result_len;
	char error[256];
};

struct clerk_kv_core {
	size_t n_masters;
	char **masters;
	uint64_t attempt_timeout_ms;
	uint64_t backoff_ms_min, backoff_ms_max;
	uint64_t rng; /* splitmix64: client ids, seeds of retries */

	struct sm_config *config; /* NULL until the first one */
	struct group *groups;	  /* sorted by gid, as in config */
	size_t n_groups;
	uint64_t epoch_seq;

	/* the Query to the shard masters */
	struct clerk_retry master_retry;
	struct buf query; /* packed QueryRequest{num = -1} */
	bool cfg_need;	/* a Query is wanted (until one succeeds) */
	bool cfg_again; /* wanted again after the one in flight */
	bool cfg_in_flight;
	uint64_t cfg_attempt;
	size_t cfg_server;
	uint64_t cfg_attempt_deadline_ms;
	uint64_t cfg_send_at_ms;
	char cfg_why[WHY_BYTES];

	struct op *run_head, *run_tail;
	size_t n_running;
	struct op *done_head, *done_tail;
	uint64_t op_seq, attempt_seq;

	struct session *sessions;
	size_t n_sessions;

	struct buf send; /* the bytes of the last send */
};

/* ---- small things ---- */

static uint64_t rng_next(struct clerk_kv_core *c)
{
	uint64_t z = (c->rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint64_t add_ms(uint64_t now_ms, uint64_t delay_ms)
{
	return delay_ms > UINT64_MAX - now_ms ? UINT64_MAX : now_ms + delay_ms;
}

/* Asks for a configuration numbered `min` or higher (0: any). */
static void want_config(struct clerk_kv_core *c, uint64_t min)
{
	c->cfg_need = true;
	/* The Query out may have been answered before what made this wish
	 * (a WRONG_GROUP): ask again after it. Any configuration will do
	 * for an operation that has none. */
	if (c->cfg_in_flight && min > 0)
		c->cfg_again = true;
}

/* A Query is to start now. */
static bool cfg_due(const struct clerk_kv_core *c, uint64_t now_ms)
{
	return c->cfg_need && !c->cfg_in_flight && now_ms >= c->cfg_send_at_ms;
}

/* Server text as one line: the reason a reply gave, or the status's. */
static void one_line(char *dst, size_t cap, const char *text)
{
	snprintf(dst, cap, "%s", text);
	for (char *p = dst; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* ---- life cycle ---- */

int clerk_kv_core_new(const struct clerk_kv_core_opts *o,
		      struct clerk_kv_core **out)
{
	*out = NULL;
	if (!o || o->n_masters == 0 || !o->masters)
		return STATUS_INVALID_ARGUMENT;
	for (size_t i = 0; i < o->n_masters; i++)
		if (!o->masters[i] || !*o->masters[i])
			return STATUS_INVALID_ARGUMENT;
	struct clerk_kv_core *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return STATUS_NO_MEMORY;
	buf_init(&c->query);
	buf_init(&c->send);
	if (addrs_copy(o->masters, o->n_masters, &c->masters))
		goto err_after_core;
	c->n_masters = o->n_masters;
	Skv__QueryRequest q = SKV__QUERY_REQUEST__INIT;
	q.num = -1;
	if (codec_pack(&q.base, &c->query))
		goto err_after_masters;
	c->attempt_timeout_ms = o->attempt_timeout_ms
					? o->attempt_timeout_ms
					: ATTEMPT_TIMEOUT_MS_DEFAULT;
	c->backoff_ms_min = o->backoff_ms_min;
	c->backoff_ms_max = o->backoff_ms_max;
	c->rng = o->seed;
	clerk_retry_init(&c->master_retry, o->n_masters, rng_next(c),
			 o->backoff_ms_min, o->backoff_ms_max);
	snprintf(c->cfg_why, sizeof(c->cfg_why), "no shard master asked yet");
	*out = c;
	return STATUS_OK;

err_after_masters:
	addrs_free(c->masters, c->n_masters);
err_after_core:
	buf_free(&c->query);
	mem_free(c);
	return STATUS_NO_MEMORY;
}

static void op_free(struct op *op)
{
	mem_free(op->key);
	mem_free(op->value);
	mem_free(op->result);
	mem_free(op);
}

void clerk_kv_core_free(struct clerk_kv_core *c)
{
	if (!c)
		return;
	while (c->run_head) {
		struct op *op = c->run_head;
		c->run_head = op->next;
		op_free(op);
	}
	while (c->done_head) {
		struct op *op = c->done_head;
		c->done_head = op->next;
		op_free(op);
	}
	mem_free(c->sessions);
	mem_free(c->groups);
	sm_config_free(c->config);
	addrs_free(c->masters, c->n_masters);
	buf_free(&c->query);
	buf_free(&c->send);
	mem_free(c);
}

/* ---- sessions ---- */

/* A free session (a new one when none is), busy from now on, with the
 * next seq taken; NO_SESSION when out of memory. */
static size_t session_take(struct clerk_kv_core *c)
{
	size_t i;
	for (i = 0; i < c->n_sessions; i++)
		if (!c->sessions[i].busy)
			break;
	if (i == c->n_sessions) {
		struct session *s = mem_realloc(
			c->sessions, (c->n_sessions + 1) * sizeof(*s));
		if (!s)
			return NO_SESSION;
		c->sessions = s;
		/* A random id, never 0 and never one the pool has. */
		uint64_t id;
		bool clash;
		do {
			id = rng_next(c);
			clash = id == 0;
			for (size_t j = 0; j < c->n_sessions && !clash; j++)
				clash = c->sessions[j].client_id == id;
		} while (clash);
		c->sessions[i] = (struct session){.client_id = id};
		c->n_sessions++;
	}
	c->sessions[i].busy = true;
	c->sessions[i].seq++;
	return i;
}

/* ---- the running list and the result queue ---- */

static void run_unlink(struct clerk_kv_core *c, struct op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		c->run_head = op->next;
	if (op->next)
		op->next->prev = op->prev;
	else
		c->run_tail = op->prev;
	op->prev = op->next = NULL;
	c->n_running--;
}

/* Ends `op` with `status` and moves it to the result queue. Its session
 * goes back to the pool: the next write on it takes the next seq, so a
 * late duplicate of this one is dropped by the servers or applies once. */
static void finish(struct clerk_kv_core *c, struct op *op, int status,
		   const char *error)
{
	run_unlink(c, op);
	if (op->session != NO_SESSION)
		c->sessions[op->session].busy = false;
	op->status = status;
	one_line(op->error, sizeof(op->error), error ? error : "");
	mem_free(op->key);
	mem_free(op->value);
	op->key = op->value = NULL;
	if (c->done_tail)
		c->done_tail->next = op;
	else
		c->done_head = op;
	c->done_tail = op;
}

static void finish_timeout(struct clerk_kv_core *c, struct op *op)
{
	char e[sizeof(op->error)];
	if (!c->config)
		snprintf(e, sizeof(e), "no configuration yet: %s", c->cfg_why);
	else if (op->attempts == 0)
		snprintf(e, sizeof(e), "%s",
			 op->why[0] ? op->why : "no time for an attempt");
	else
		snprintf(e, sizeof(e), "%s (%u attempt%s)",
			 op->why[0] ? op->why
				    : "no answer before the deadline",
			 op->attempts, op->attempts == 1 ? "" : "s");
	finish(c, op, STATUS_TIMEOUT, e);
}

int clerk_kv_core_start(struct clerk_kv_core *c, uint64_t now_ms,
			enum clerk_kv_op op, const void *key, size_t klen,
			const void *value, size_t vlen, uint64_t deadline_ms,
			uint64_t *op_id)
{
	*op_id = 0;
	if (op != CLERK_KV_GET && op != CLERK_KV_PUT && op != CLERK_KV_APPEND &&
	    op != CLERK_KV_DELETE)
		return STATUS_INVALID_ARGUMENT;
	if (!key || klen == 0)
		return STATUS_INVALID_ARGUMENT;
	if (klen > SHARD_KEY_BYTES_MAX)
		return STATUS_TOO_LARGE;
	bool with_value = op == CLERK_KV_PUT || op == CLERK_KV_APPEND;
	if (!with_value)
		vlen = 0;
	if (vlen > SHARD_VALUE_BYTES_MAX)
		return STATUS_TOO_LARGE;
	if (vlen && !value)
		return STATUS_INVALID_ARGUMENT;

	struct op *o = mem_calloc(1, sizeof(*o));
	if (!o)
		return STATUS_NO_MEMORY;
	o->key = mem_alloc(klen);
	/* One byte at least, so an empty value is not NULL. */
	o->value = with_value ? mem_alloc(vlen ? vlen : 1) : NULL;
	if (!o->key || (with_value && !o->value)) {
		op_free(o);
		return STATUS_NO_MEMORY;
	}
	memcpy(o->key, key, klen);
	o->klen = klen;
	if (vlen)
		memcpy(o->value, value, vlen);
	o->vlen = vlen;
	o->session = NO_SESSION;
	if (op != CLERK_KV_GET) {
		o->session = session_take(c);
		if (o->session == NO_SESSION) {
			op_free(o);
			return STATUS_NO_MEMORY;
		}
		o->client_id = c->sessions[o->session].client_id;
		o->seq = c->sessions[o->session].seq;
	}
	o->id = ++c->op_seq;
	o->kind = op;
	o->deadline_ms = deadline_ms;
	o->state = OP_DUE;
	o->send_at_ms = now_ms;
	o->server = NO_SERVER;
	clerk_retry_init(&o->pace, 1, rng_next(c), c->backoff_ms_min,
			 c->backoff_ms_max);
	o->prev = c->run_tail;
	if (c->run_tail)
		c->run_tail->next = o;
	else
		c->run_head = o;
	c->run_tail = o;
	c->n_running++;
	*op_id = o->id;
	return STATUS_OK;
}

/* ---- the configuration ---- */

static struct group *group_find(const struct clerk_kv_core *c, uint64_t gid)
{
	size_t lo = 0, hi = c->n_groups;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->groups[mid].gid == gid)
			return &c->groups[mid];
		if (c->groups[mid].gid < gid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool same_servers(const struct group *g, const struct sm_group *ng)
{
	if (g->n_servers != ng->n_servers)
		return false;
	for (size_t i = 0; i < g->n_servers; i++)
		if (strcmp(g->servers[i], ng->servers[i]) != 0)
			return false;
	return true;
}

/* Installs `cfg` (taken over), keeping the leader memory and epoch of
 * every group whose server list did not change. */
static int install_config(struct clerk_kv_core *c, struct sm_config *cfg)
{
	struct group *gs = NULL;
	if (cfg->n_groups) {
		gs = mem_calloc(cfg->n_groups, sizeof(*gs));
		if (!gs) {
			sm_config_free(cfg);
			return STATUS_NO_MEMORY;
		}
	}
	for (size_t i = 0; i < cfg->n_groups; i++) {
		const struct sm_group *ng = &cfg->groups[i];
		const struct group *old = group_find(c, ng->gid);
		gs[i].gid = ng->gid;
		gs[i].n_servers = ng->n_servers;
		gs[i].servers = ng->servers;
		if (old && same_servers(old, ng)) {
			gs[i].epoch = old->epoch;
			gs[i].memory = old->memory;
		} else {
			gs[i].epoch = ++c->epoch_seq;
			clerk_retry_init(&gs[i].memory,
					 ng->n_servers ? ng->n_servers : 1,
					 rng_next(c), c->backoff_ms_min,
					 c->backoff_ms_max);
		}
	}
	mem_free(c->groups);
	sm_config_free(c->config);
	c->groups = gs;
	c->n_groups = cfg->n_groups;
	c->config = cfg;
	return STATUS_OK;
}

/* A newer configuration: operations waiting for one go at once. */
static void wake_waiters(struct clerk_kv_core *c, uint64_t now_ms)
{
	for (struct op *op = c->run_head; op; op = op->next)
		if (op->state == OP_DUE && op->wait_cfg &&
		    op->wait_cfg_min <= c->config->num) {
			op->wait_cfg = false;
			op->send_at_ms = now_ms;
		}
}

/* The Query failed: the wish stays, the next one after `delay_ms`. */
static void cfg_schedule(struct clerk_kv_core *c, uint64_t now_ms,
			 uint64_t delay_ms)
{
	c->cfg_in_flight = false;
	c->cfg_send_at_ms = add_ms(now_ms, delay_ms);
}

/* The Query was answered: the wish is granted, unless one came after. */
static void cfg_answered(struct clerk_kv_core *c, uint64_t now_ms)
{
	c->cfg_in_flight = false;
	c->cfg_need = c->cfg_again;
	c->cfg_again = false;
	c->cfg_send_at_ms = now_ms;
}

static size_t master_index(const struct clerk_kv_core *c, const char *addr)
{
	if (!addr || !*addr)
		return NO_SERVER;
	for (size_t i = 0; i < c->n_masters; i++)
		if (strcmp(c->masters[i], addr) == 0)
			return i;
	return NO_SERVER;
}

static void cfg_on_reply(struct clerk_kv_core *c, uint64_t now_ms, int status,
			 const Skv__SmReply *r)
{
	size_t s = c->cfg_server;
	const char *addr = c->masters[s];
	if (status != STATUS_OK || !r) {
		snprintf(c->cfg_why, sizeof(c->cfg_why),
			 "no shard master answered (last: %s from %s)",
			 status_name(status ? status : STATUS_INTERNAL), addr);
		cfg_schedule(c, now_ms, clerk_retry_failed(&c->master_retry,
							   s));
		return;
	}
	int st = (int)r->status;
	if (st == STATUS_NOT_LEADER) {
		snprintf(c->cfg_why, sizeof(c->cfg_why),
			 "the shard masters have no leader (last: NOT_LEADER "
			 "from %s)",
			 addr);
		cfg_schedule(c, now_ms,
			     clerk_retry_not_leader(
				     &c->master_retry, s,
				     master_index(c, r->leader_hint)));
		return;
	}
	if (st != STATUS_OK || !r->config) {
		snprintf(c->cfg_why, sizeof(c->cfg_why),
			 "the shard masters answer %s (last from %s%s%.60s)",
			 st == STATUS_OK ? "without a configuration"
					 : status_name(st),
			 addr, r->error && *r->error ? ": " : "",
			 r->error ? r->error : "");
		cfg_schedule(c, now_ms, clerk_retry_failed(&c->master_retry,
							   s));
		return;
	}
	clerk_retry_answered(&c->master_retry, s);
	if (c->config && r->config->num <= c->config->num) {
		/* Nothing newer: the group may be behind; the waiting
		 * operations keep their backoff. */
		cfg_answered(c, now_ms);
		return;
	}
	char why[160];
	struct sm_config *cfg;
	int rc = sm_config_from_proto(r->config, &cfg, why, sizeof(why));
	if (rc == STATUS_OK)
		rc = install_config(c, cfg);
	else
		snprintf(c->cfg_why, sizeof(c->cfg_why),
			 "bad configuration from %s: %s", addr, why);
	if (rc) {
		if (rc == STATUS_NO_MEMORY)
			snprintf(c->cfg_why, sizeof(c->cfg_why),
				 "out of memory keeping the configuration");
		cfg_schedule(c, now_ms, clerk_retry_failed(&c->master_retry,
							   s));
		return;
	}
	cfg_answered(c, now_ms);
	c->cfg_why[0] = '\0';
	wake_waiters(c, now_ms);
}

/* ---- operations ---- */

/* The op needs a configuration numbered `min` or higher (0: any): it
 * asks the shard masters and tries again when one arrives, or after a
 * backoff (the group may be the one behind), or at once when the cached
 * one already qualifies. Without any configuration it only waits. */
static void wait_for_config(struct clerk_kv_core *c, struct op *op,
			    uint64_t now_ms, uint64_t min)
{
	op->state = OP_DUE;
	if (c->config && c->config->num >= min) {
		op->wait_cfg = false;
		op->send_at_ms = now_ms;
		return;
	}
	want_config(c, min);
	op->wait_cfg = true;
	op->wait_cfg_min = min;
	op->send_at_ms = c->config ? add_ms(now_ms,
					    clerk_retry_failed(&op->pace, 0))
				   : UINT64_MAX;
}

static void schedule(struct op *op, uint64_t now_ms, uint64_t delay_ms)
{
	op->state = OP_DUE;
	op->send_at_ms = add_ms(now_ms, delay_ms);
}

/* An attempt got no usable answer: the op tries the group's next server,
 * with a backoff after each full round. A round in which no server of
 * the group answered also asks for a newer configuration: the group may
 * have left (and be gone for good) while another serves the shard, which
 * no reply of the old group would ever say. The op is routed again by
 * whatever configuration is cached at its next attempt. */
static uint64_t op_failed(struct clerk_kv_core *c, struct op *op)
{
	uint32_t rounds = op->retry.rounds;
	uint64_t delay = clerk_retry_failed(&op->retry, op->server);
	if (op->retry.rounds != rounds && c->config)
		want_config(c, c->config->num + 1);
	return delay;
}

/* Routes `op` by the cached configuration: its shard's group, whose
 * leader memory it starts from when the group is new to it. NULL when
 * no group serves the shard (the op then waits for a configuration). */
static struct group *route(struct clerk_kv_core *c, struct op *op,
			   uint64_t now_ms)
{
	if (!c->config) {
		wait_for_config(c, op, now_ms, 0);
		return NULL;
	}
	op->shard = shard_for_key(op->key, op->klen, c->config->nshards);
	uint64_t gid = c->config->shards[op->shard];
	struct group *g = gid ? group_find(c, gid) : NULL;
	if (!g || g->n_servers == 0) {
		snprintf(op->why, sizeof(op->why),
			 "shard %u has no group in configuration %llu",
			 op->shard, (unsigned long long)c->config->num);
		wait_for_config(c, op, now_ms, c->config->num + 1);
		return NULL;
	}
	if (op->gid != g->gid || op->epoch != g->epoch) {
		op->gid = g->gid;
		op->epoch = g->epoch;
		op->retry = g->memory;
		/* Its own rounds: from the remembered leader, no backoff. */
		op->retry.next = g->memory.leader;
		op->retry.misses = 0;
		op->retry.rounds = 0;
		op->retry.tried = 0;
		op->retry.rng = rng_next(c);
	}
	return g;
}

static int pack_request(struct clerk_kv_core *c, const struct op *op)
{
	Skv__KvRequest r = SKV__KV_REQUEST__INIT;
	r.client_id = op->client_id;
	r.seq = op->seq;
	r.op = (Skv__Op)op->kind;
	r.key.data = op->key;
	r.key.len = op->klen;
	if (op->kind == CLERK_KV_PUT || op->kind == CLERK_KV_APPEND) {
		r.value.data = op->value;
		r.value.len = op->vlen;
	}
	r.config_num = c->config ? c->config->num : 0;
	return codec_pack(&r.base, &c->send);
}

static const char *op_path(enum clerk_kv_op k)
{
	switch (k) {
	case CLERK_KV_GET:
		return "/skv.ShardKV/Get";
	case CLERK_KV_PUT:
		return "/skv.ShardKV/Put";
	case CLERK_KV_APPEND:
		return "/skv.ShardKV/Append";
	case CLERK_KV_DELETE:
		return "/skv.ShardKV/Delete";
	}
	return "";
}

static uint64_t attempt_timeout(const struct clerk_kv_core *c,
				uint64_t now_ms, uint64_t deadline_ms)
{
	uint64_t left = deadline_ms - now_ms;
	return c->attempt_timeout_ms < left ? c->attempt_timeout_ms : left;
}

/* Starts the op's next attempt into *out; false when it has none to
 * start now (no group, or no memory to pack: then it retries later). */
static bool op_send(struct clerk_kv_core *c, struct op *op, uint64_t now_ms,
		    struct clerk_kv_send *out)
{
	struct group *g = route(c, op, now_ms);
	if (!g)
		return false;
	if (pack_request(c, op)) {
		snprintf(op->why, sizeof(op->why),
			 "out of memory packing the request");
		schedule(op, now_ms, clerk_retry_failed(&op->pace, 0));
		return false;
	}
	op->state = OP_IN_FLIGHT;
	op->attempt = ++c->attempt_seq;
	op->server = clerk_retry_pick(&op->retry);
	op->attempt_cfg_num = c->config->num;
	uint64_t t = attempt_timeout(c, now_ms, op->deadline_ms);
	op->attempt_deadline_ms = now_ms + t;
	op->attempts++;
	out->attempt = op->attempt;
	out->addr = g->servers[op->server];
	out->method = op_path(op->kind);
	out->to_master = false;
	out->bytes = c->send.data;
	out->len = c->send.len;
	out->timeout_ms = t;
	return true;
}

static bool cfg_send(struct clerk_kv_core *c, uint64_t now_ms,
		     struct clerk_kv_send *out)
{
	c->cfg_again = false;
	c->cfg_in_flight = true;
	c->cfg_attempt = ++c->attempt_seq;
	c->cfg_server = clerk_retry_pick(&c->master_retry);
	c->cfg_attempt_deadline_ms = add_ms(now_ms, c->attempt_timeout_ms);
	out->attempt = c->cfg_attempt;
	out->addr = c->masters[c->cfg_server];
	out->method = query_path;
	out->to_master = true;
	out->bytes = c->query.data;
	out->len = c->query.len;
	out->timeout_ms = c->attempt_timeout_ms;
	return true;
}

static void expire(struct clerk_kv_core *c, uint64_t now_ms)
{
	struct op *op = c->run_head;
	while (op) {
		struct op *next = op->next;
		if (now_ms >= op->deadline_ms)
			finish_timeout(c, op);
		op = next;
	}
}

bool clerk_kv_core_next_send(struct clerk_kv_core *c, uint64_t now_ms,
			     struct clerk_kv_send *out)
{
	expire(c, now_ms);
	if (c->n_running == 0)
		c->cfg_need = c->cfg_again = false; /* nobody waits */
	if (cfg_due(c, now_ms))
		return cfg_send(c, now_ms, out);
	for (struct op *op = c->run_head; op; op = op->next) {
		if (op->state != OP_DUE || now_ms < op->send_at_ms)
			continue;
		if (op_send(c, op, now_ms, out))
			return true;
		/* route() may have asked for a configuration. */
		if (cfg_due(c, now_ms))
			return cfg_send(c, now_ms, out);
	}
	return false;
}

static struct op *op_by_attempt(const struct clerk_kv_core *c,
				uint64_t attempt)
{
	for (struct op *op = c->run_head; op; op = op->next)
		if (op->state == OP_IN_FLIGHT && op->attempt == attempt)
			return op;
	return NULL;
}

/* The group `op` sent its attempt to, if the configuration still lists
 * it with the same servers. */
static struct group *op_group(const struct clerk_kv_core *c,
			      const struct op *op)
{
	struct group *g = group_find(c, op->gid);
	return g && g->epoch == op->epoch ? g : NULL;
}

static size_t server_index(const struct group *g, const char *addr)
{
	if (!g || !addr || !*addr)
		return NO_SERVER;
	for (size_t i = 0; i < g->n_servers; i++)
		if (strcmp(g->servers[i], addr) == 0)
			return i;
	return NO_SERVER;
}

/* Where the attempt went, for messages. */
static const char *attempt_addr(const struct op *op, const struct group *g)
{
	return g && op->server < g->n_servers ? g->servers[op->server]
					      : "a former server";
}

static void op_on_reply(struct clerk_kv_core *c, struct op *op,
			uint64_t now_ms, int status, const Skv__KvReply *r)
{
	struct group *g = op_group(c, op);
	const char *addr = attempt_addr(op, g);
	unsigned long long gid = (unsigned long long)op->gid;
	if (status != STATUS_OK || !r) {
		snprintf(op->why, sizeof(op->why),
			 "no answer from group %llu (last: %s from %s)", gid,
			 status_name(status ? status : STATUS_INTERNAL), addr);
		schedule(op, now_ms, op_failed(c, op));
		return;
	}
	int st = (int)r->status;
	switch (st) {
	case STATUS_NOT_LEADER:
		snprintf(op->why, sizeof(op->why),
			 "group %llu has no leader (last: NOT_LEADER from %s)",
			 gid, addr);
		schedule(op, now_ms,
			 clerk_retry_not_leader(&op->retry, op->server,
						server_index(g,
							     r->leader_hint)));
		return;
	case STATUS_NOT_READY:
	case STATUS_UNAVAILABLE:
	case STATUS_SHUTDOWN:
		snprintf(op->why, sizeof(op->why),
			 "group %llu cannot serve shard %u yet (last: %s from "
			 "%s)",
			 gid, op->shard, status_name(st), addr);
		schedule(op, now_ms, op_failed(c, op));
		return;
	default:
		break;
	}
	/* An answer: that server leads its group. */
	if (g)
		clerk_retry_answered(&g->memory, op->server);
	clerk_retry_answered(&op->retry, op->server);
	if (st == STATUS_WRONG_GROUP) {
		snprintf(op->why, sizeof(op->why),
			 "group %llu does not serve shard %u (WRONG_GROUP "
			 "from %s in configuration %llu)",
			 gid, op->shard, addr,
			 (unsigned long long)op->attempt_cfg_num);
		wait_for_config(c, op, now_ms, op->attempt_cfg_num + 1);
		return;
	}
	if (st == STATUS_OK && op->kind == CLERK_KV_GET) {
		size_t n = r->value.len;
		op->result = mem_alloc(n ? n : 1);
		if (!op->result) {
			finish(c, op, STATUS_NO_MEMORY,
			       "out of memory keeping the value");
			return;
		}
		if (n)
			memcpy(op->result, r->value.data, n);
		op->result_len = n;
	}
	char e[sizeof(op->error)] = "";
	if (st != STATUS_OK)
		snprintf(e, sizeof(e), "%s", r->error && *r->error
						     ? r->error
						     : status_str(st));
	finish(c, op, st, e);
}

void clerk_kv_core_on_reply(struct clerk_kv_core *c, uint64_t now_ms,
			    uint64_t attempt, int status,
			    const ProtobufCMessage *reply)
{
	if (c->cfg_in_flight && attempt == c->cfg_attempt) {
		const Skv__SmReply *r = NULL;
		if (reply && reply->descriptor == &skv__sm_reply__descriptor)
			r = (const Skv__SmReply *)reply;
		cfg_on_reply(c, now_ms, status, r);
		return;
	}
	struct op *op = op_by_attempt(c, attempt);
	if (!op)
		return; /* stale: an earlier attempt, or an ended op */
	const Skv__KvReply *r = NULL;
	if (reply && reply->descriptor == &skv__kv_reply__descriptor)
		r = (const Skv__KvReply *)reply;
	op_on_reply(c, op, now_ms, status, r);
}

void clerk_kv_core_tick(struct clerk_kv_core *c, uint64_t now_ms)
{
	expire(c, now_ms);
	for (struct op *op = c->run_head; op; op = op->next) {
		if (op->state != OP_IN_FLIGHT ||
		    now_ms < op->attempt_deadline_ms)
			continue;
		const struct group *g = op_group(c, op);
		snprintf(op->why, sizeof(op->why),
			 "no answer from group %llu (last: attempt timed out "
			 "at %s)",
			 (unsigned long long)op->gid, attempt_addr(op, g));
		schedule(op, now_ms, op_failed(c, op));
	}
	if (c->cfg_in_flight && now_ms >= c->cfg_attempt_deadline_ms) {
		snprintf(c->cfg_why, sizeof(c->cfg_why),
			 "no shard master answered (last: attempt timed out "
			 "at %s)",
			 c->masters[c->cfg_server]);
		cfg_schedule(c, now_ms, clerk_retry_failed(&c->master_retry,
							   c->cfg_server));
	}
}

uint64_t clerk_kv_core_wake_ms(const struct clerk_kv_core *c)
{
	uint64_t w = UINT64_MAX;
	for (const struct op *op = c->run_head; op; op = op->next) {
		uint64_t t = op->deadline_ms;
		if (op->state == OP_IN_FLIGHT && op->attempt_deadline_ms < t)
			t = op->attempt_deadline_ms;
		else if (op->state == OP_DUE && op->send_at_ms < t)
			t = op->send_at_ms;
		if (t < w)
			w = t;
	}
	if (c->n_running == 0)
		return w;
	if (c->cfg_in_flight && c->cfg_attempt_deadline_ms < w)
		w = c->cfg_attempt_deadline_ms;
	else if (!c->cfg_in_flight && c->cfg_need && c->cfg_send_at_ms < w)
		w = c->cfg_send_at_ms;
	return w;
}

bool clerk_kv_core_take(struct clerk_kv_core *c, struct clerk_kv_result *out)
{
	struct op *op = c->done_head;
	if (!op)
		return false;
	c->done_head = op->next;
	if (!c->done_head)
		c->done_tail = NULL;
	out->op_id = op->id;
	out->status = op->status;
	out->value = op->result;
	out->value_len = op->result_len;
	op->result = NULL;
	snprintf(out->error, sizeof(out->error), "%s", op->error);
	op_free(op);
	return true;
}

size_t clerk_kv_core_running(const struct clerk_kv_core *c)
{
	return c->n_running;
}

uint64_t clerk_kv_core_config_num(const struct clerk_kv_core *c)
{
	return c->config ? c->config->num : 0;
}

size_t clerk_kv_core_sessions(const struct clerk_kv_core *c)
{
	return c->n_sessions;
}
