/*
 * skv_migrate: config polling, shard pulls and deletes of a group's
 * leader (migrate.h).
 */
#include "shardkv/migrate.h"

#include <inttypes.h>
#include <string.h>

#include "clerk/retry.h"
#include "clerk/sm_core.h"
#include "common/addrs.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"
#include "proto/shardkv.pb-c.h"
#include "proto/shardmaster.pb-c.h"

#define POLL_MS_DEFAULT 100
#define CALL_TIMEOUT_MS_DEFAULT 1000
#define NO_TASK UINT32_MAX

const char *skv_call_path(enum skv_call c)
{
	switch (c) {
	case SKV_CALL_QUERY: return "/skv.ShardMaster/Query";
	case SKV_CALL_PULL_SHARD: return "/skv.ShardKV/PullShard";
	case SKV_CALL_DELETE_SHARD: return "/skv.ShardKV/DeleteShard";
	}
	return NULL;
}

const ProtobufCMessageDescriptor *skv_call_reply(enum skv_call c)
{
	switch (c) {
	case SKV_CALL_QUERY: return &skv__sm_reply__descriptor;
	case SKV_CALL_PULL_SHARD: return &skv__pull_shard_reply__descriptor;
	case SKV_CALL_DELETE_SHARD:
		return &skv__delete_shard_reply__descriptor;
	}
	return NULL;
}

/* Moving one shard: pulling it here, or having the old copy deleted. */
struct task {
	uint32_t shard;
	uint64_t config_num;
	enum skv_call kind; /* PULL_SHARD or DELETE_SHARD */
	uint64_t from_gid;
	char **servers;
	size_t n_servers;
	struct clerk_retry rt;
	uint64_t inflight; /* call id, 0 = none */
	size_t inflight_server;
	uint64_t next_at_ms;
	bool finished;	   /* its last command was emitted this term */
	struct buf after;  /* pull cursor: last key received */
	uint64_t pages;
};

/* A call in flight: a shard-master attempt or a task's request. */
struct outcall {
	uint64_t id;
	enum skv_call kind;
	uint64_t sm_attempt; /* QUERY */
	uint32_t shard;	     /* PULL_SHARD / DELETE_SHARD */
};

struct skv_migrate {
	uint64_t gid;
	char **masters;
	size_t n_masters;
	uint64_t poll_ms, call_timeout_ms;
	struct clerk_sm_core *smc;
	uint64_t next_poll_ms;
	uint64_t polled_num; /* configuration the running query asks for */

	bool leader;
	uint64_t term;
	uint64_t proposed_config; /* emitted this term; 0 = none */
	/* Derived from the state machine at skv_version view_version. */
	uint64_t view_version;
	uint64_t cur_num;
	bool stable;
	/* The tasks match the shards of this skv_version (0: redo). */
	uint64_t tasks_version;

	struct task *tasks;
	size_t n_tasks, cap_tasks;
	uint32_t *task_of; /* shard -> index in tasks, NO_TASK */
	uint32_t nshards;

	struct outcall *calls;
	size_t n_calls, cap_calls;
	uint64_t next_id;
	uint64_t n_started;

	struct buf *props; /* packed KvCommands not yet taken (FIFO) */
	size_t n_props, cap_props, props_head;

	struct buf send;
	uint64_t seed;
};

/* ---- life cycle ---- */

int skv_migrate_new(const struct skv_migrate_opts *o,
		    struct skv_migrate **out)
{
	*out = NULL;
	if (o->n_masters == 0 || o->gid == 0)
		return STATUS_INVALID_ARGUMENT;
	struct skv_migrate *m = mem_calloc(1, sizeof(*m));
	if (!m)
		return STATUS_NO_MEMORY;
	m->gid = o->gid;
	m->poll_ms = o->poll_ms ? o->poll_ms : POLL_MS_DEFAULT;
	m->call_timeout_ms = o->call_timeout_ms ? o->call_timeout_ms :
						  CALL_TIMEOUT_MS_DEFAULT;
	m->seed = o->seed;
	m->next_id = 1;
	buf_init(&m->send);
	if (addrs_copy(o->masters, o->n_masters, &m->masters))
		goto err;
	m->n_masters = o->n_masters;
	struct clerk_sm_core_opts co = {
		.n_servers = o->n_masters,
		.servers = (const char *const *)m->masters,
		.client_id = o->seed ^ UINT64_C(0x9e3779b97f4a7c15),
		.seed = o->seed,
		.attempt_timeout_ms = m->call_timeout_ms,
	};
	if (clerk_sm_core_new(&co, &m->smc))
		goto err;
	*out = m;
	return STATUS_OK;
err:
	skv_migrate_free(m);
	return STATUS_NO_MEMORY;
}

static void task_release(struct task *t)
{
	addrs_free(t->servers, t->n_servers);
	buf_free(&t->after);
}

static void props_clear(struct skv_migrate *m)
{
	for (size_t i = 0; i < m->n_props; i++)
		buf_free(&m->props[i]);
	m->n_props = m->props_head = 0;
}

void skv_migrate_reset(struct skv_migrate *m)
{
	for (size_t i = 0; i < m->n_tasks; i++)
		task_release(&m->tasks[i]);
	m->n_tasks = 0;
	for (uint32_t s = 0; s < m->nshards; s++)
		m->task_of[s] = NO_TASK;
	/* Calls of tasks are forgotten; a running query stays (its answer
	 * is checked against the state when it comes). */
	size_t j = 0;
	for (size_t i = 0; i < m->n_calls; i++)
		if (m->calls[i].kind == SKV_CALL_QUERY)
			m->calls[j++] = m->calls[i];
	m->n_calls = j;
	props_clear(m);
	m->proposed_config = 0;
	m->tasks_version = 0;
}

void skv_migrate_free(struct skv_migrate *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_tasks; i++)
		task_release(&m->tasks[i]);
	mem_free(m->tasks);
	mem_free(m->task_of);
	mem_free(m->calls);
	for (size_t i = 0; i < m->n_props; i++)
		buf_free(&m->props[i]);
	mem_free(m->props);
	clerk_sm_core_free(m->smc);
	addrs_free(m->masters, m->n_masters);
	buf_free(&m->send);
	mem_free(m);
}

uint64_t skv_migrate_calls(const struct skv_migrate *m)
{
	return m->n_started;
}

/* ---- proposals ---- */

static void propose(struct skv_migrate *m, const Skv__KvCommand *cmd)
{
	if (m->props_head > 0 && m->props_head == m->n_props)
		props_clear(m);
	if (!mem_grow((void **)&m->props, &m->cap_props, m->n_props + 1,
		  sizeof(*m->props))) {
		skv_migrate_reset(m);
		return;
	}
	struct buf *b = &m->props[m->n_props];
	buf_init(b);
	if (codec_pack(&cmd->base, b)) {
		buf_free(b);
		skv_migrate_reset(m);
		return;
	}
	m->n_props++;
}

bool skv_migrate_next_proposal(struct skv_migrate *m, struct buf *out)
{
	if (m->props_head >= m->n_props)
		return false;
	buf_free(out);
	*out = m->props[m->props_head++];
	buf_init(&m->props[m->props_head - 1]);
	if (m->props_head == m->n_props)
		props_clear(m);
	return true;
}

/* ---- tasks ---- */

static void task_remove(struct skv_migrate *m, size_t i)
{
	task_release(&m->tasks[i]);
	m->task_of[m->tasks[i].shard] = NO_TASK;
	m->n_tasks--;
	if (i != m->n_tasks) {
		m->tasks[i] = m->tasks[m->n_tasks];
		m->task_of[m->tasks[i].shard] = (uint32_t)i;
	}
}

static int task_add(struct skv_migrate *m, uint64_t now_ms, uint32_t shard,
		    const struct skv_shard_info *in, enum skv_call kind)
{
	if (in->n_from == 0 ||
	    !mem_grow((void **)&m->tasks, &m->cap_tasks, m->n_tasks + 1,
		  sizeof(*m->tasks)))
		return STATUS_NO_MEMORY;
	struct task *t = &m->tasks[m->n_tasks];
	memset(t, 0, sizeof(*t));
	buf_init(&t->after);
	t->shard = shard;
	t->config_num = in->config_num;
	t->kind = kind;
	t->from_gid = in->from_gid;
	if (addrs_copy((const char *const *)in->from_servers, in->n_from,
		       &t->servers))
		return STATUS_NO_MEMORY;
	t->n_servers = in->n_from;
	clerk_retry_init(&t->rt, t->n_servers,
			 m->seed ^ ((uint64_t)shard << 32) ^ in->config_num,
			 0, 0);
	t->next_at_ms = now_ms;
	m->task_of[shard] = (uint32_t)m->n_tasks;
	m->n_tasks++;
	return STATUS_OK;
}

/* Makes the tasks match the PULLING and GCING shards of `st`; false if
 * memory ran short (the next update tries again). */
static bool tasks_sync(struct skv_migrate *m, uint64_t now_ms,
		       const struct skv *st)
{
	uint32_t n = skv_nshards(st);
	bool ok = true;
	if (n != m->nshards) {
		skv_migrate_reset(m);
		uint32_t *p = mem_realloc(m->task_of, n * sizeof(*p));
		if (!p && n)
			return false;
		m->task_of = p;
		m->nshards = n;
		for (uint32_t s = 0; s < n; s++)
			m->task_of[s] = NO_TASK;
	}
	for (size_t i = 0; i < m->n_tasks;) {
		struct task *t = &m->tasks[i];
		struct skv_shard_info in;
		skv_shard(st, t->shard, &in);
		enum skv_call want = in.state == SKV_SHARD_PULLING ?
					     SKV_CALL_PULL_SHARD :
				     in.state == SKV_SHARD_GCING ?
					     SKV_CALL_DELETE_SHARD :
					     0;
		if (want != t->kind || in.config_num != t->config_num)
			task_remove(m, i);
		else
			i++;
	}
	for (uint32_t s = 0; s < n; s++) {
		if (m->task_of[s] != NO_TASK)
			continue;
		struct skv_shard_info in;
		skv_shard(st, s, &in);
		if (in.state == SKV_SHARD_PULLING)
			ok &= task_add(m, now_ms, s, &in,
				       SKV_CALL_PULL_SHARD) == STATUS_OK;
		else if (in.state == SKV_SHARD_GCING)
			ok &= task_add(m, now_ms, s, &in,
				       SKV_CALL_DELETE_SHARD) == STATUS_OK;
	}
	return ok;
}

/* Refreshes what the driver derives from the state machine, only when
 * it changed: every loop turn comes here, and a scan of thousands of
 * shards per turn would be waste. */
static void view(struct skv_migrate *m, const struct skv *st)
{
	uint64_t v = skv_version(st);
	if (v == m->view_version)
		return;
	m->view_version = v;
	m->cur_num = skv_config_num(st);
	m->stable = skv_stable(st);
}

/* ---- updates ---- */

static void poll_finish(struct skv_migrate *m, uint64_t now_ms)
{
	int status;
	const Skv__SmReply *rep;
	const char *err;
	if (!clerk_sm_core_done(m->smc, &status, &rep, &err) ||
	    m->polled_num == 0)
		return;
	uint64_t want = m->polled_num;
	m->polled_num = 0;
	m->next_poll_ms = now_ms + m->poll_ms;
	if (status != STATUS_OK || !rep || !rep->config)
		return;
	/* Found the next one: there may be more behind it, so ask again as
	 * soon as it has applied (a group catching up walks them fast). */
	if (rep->config->num == want)
		m->next_poll_ms = now_ms;
	const Skv__Config *c = rep->config;
	if (!m->leader || !m->stable || c->num != want ||
	    want != m->cur_num + 1 || m->proposed_config == want)
		return;
	Skv__KvCommand cmd = SKV__KV_COMMAND__INIT;
	cmd.cmd_case = SKV__KV_COMMAND__CMD_CONFIG;
	cmd.config = (Skv__Config *)c;
	m->proposed_config = want;
	propose(m, &cmd);
}

void skv_migrate_update(struct skv_migrate *m, uint64_t now_ms,
			const struct skv *st, bool leader, uint64_t term)
{
	if (leader != m->leader || term != m->term) {
		skv_migrate_reset(m);
		m->leader = leader;
		m->term = term;
		m->next_poll_ms = now_ms;
	}
	view(m, st);
	if (clerk_sm_core_busy(m->smc) &&
	    clerk_sm_core_wake_ms(m->smc) <= now_ms)
		clerk_sm_core_tick(m->smc, now_ms);
	poll_finish(m, now_ms);
	if (!leader) {
		if (m->n_tasks)
			skv_migrate_reset(m);
		return;
	}
	if (m->tasks_version != m->view_version &&
	    tasks_sync(m, now_ms, st))
		m->tasks_version = m->view_version;
	if (m->stable && !clerk_sm_core_busy(m->smc) &&
	    now_ms >= m->next_poll_ms &&
	    m->proposed_config != m->cur_num + 1) {
		Skv__QueryRequest q = SKV__QUERY_REQUEST__INIT;
		q.num = (int64_t)(m->cur_num + 1);
		uint64_t deadline = now_ms + 5 * m->call_timeout_ms;
		if (clerk_sm_core_start(m->smc, now_ms, SM_METHOD_QUERY,
					&q.base, deadline) == STATUS_OK)
			m->polled_num = m->cur_num + 1;
		else
			m->next_poll_ms = now_ms + m->poll_ms;
	}
}

uint64_t skv_migrate_wake_ms(const struct skv_migrate *m)
{
	uint64_t w = UINT64_MAX;
	if (clerk_sm_core_busy(m->smc))
		w = clerk_sm_core_wake_ms(m->smc);
	else if (m->leader && m->stable &&
		 m->proposed_config != m->cur_num + 1)
		w = m->next_poll_ms;
	for (size_t i = 0; i < m->n_tasks; i++) {
		const struct task *t = &m->tasks[i];
		if (!t->inflight && !t->finished && t->next_at_ms < w)
			w = t->next_at_ms;
	}
	return w;
}

/* ---- calls ---- */

static struct outcall *call_new(struct skv_migrate *m, enum skv_call kind)
{
	if (!mem_grow((void **)&m->calls, &m->cap_calls, m->n_calls + 1,
		  sizeof(*m->calls)))
		return NULL;
	struct outcall *c = &m->calls[m->n_calls++];
	memset(c, 0, sizeof(*c));
	c->id = m->next_id++;
	c->kind = kind;
	m->n_started++;
	return c;
}

static bool task_request(struct skv_migrate *m, struct task *t,
			 struct skv_migrate_call *out)
{
	int rc;
	if (t->kind == SKV_CALL_PULL_SHARD) {
		Skv__PullShardRequest r = SKV__PULL_SHARD_REQUEST__INIT;
		r.config_num = t->config_num;
		r.shard = t->shard;
		r.gid = m->gid;
		r.after.data = t->after.data;
		r.after.len = t->after.len;
		rc = codec_pack(&r.base, &m->send);
	} else {
		Skv__DeleteShardRequest r = SKV__DELETE_SHARD_REQUEST__INIT;
		r.config_num = t->config_num;
		r.shard = t->shard;
		r.gid = m->gid;
		rc = codec_pack(&r.base, &m->send);
	}
	struct outcall *c = rc ? NULL : call_new(m, t->kind);
	if (!c)
		return false;
	c->shard = t->shard;
	t->inflight = c->id;
	t->inflight_server = clerk_retry_pick(&t->rt);
	*out = (struct skv_migrate_call){
		.id = c->id,
		.addr = t->servers[t->inflight_server],
		.kind = t->kind,
		.bytes = m->send.data,
		.len = m->send.len,
		.timeout_ms = m->call_timeout_ms,
	};
	return true;
}

bool skv_migrate_next_call(struct skv_migrate *m, uint64_t now_ms,
			   struct skv_migrate_call *out)
{
	struct clerk_sm_send snd;
	if (clerk_sm_core_next_send(m->smc, now_ms, &snd)) {
		struct outcall *c = call_new(m, SKV_CALL_QUERY);
		if (c) {
			c->sm_attempt = snd.attempt;
			*out = (struct skv_migrate_call){
				.id = c->id,
				.addr = m->masters[snd.server],
				.kind = SKV_CALL_QUERY,
				.bytes = snd.bytes,
				.len = snd.len,
				.timeout_ms = snd.timeout_ms,
			};
			return true;
		}
		/* No memory: the core times the attempt out itself. */
	}
	if (!m->leader)
		return false;
	for (size_t i = 0; i < m->n_tasks; i++) {
		struct task *t = &m->tasks[i];
		if (t->inflight || t->finished || t->next_at_ms > now_ms)
			continue;
		if (task_request(m, t, out))
			return true;
		t->next_at_ms = now_ms + m->poll_ms;
	}
	return false;
}

static size_t server_index(const struct task *t, const char *addr)
{
	if (!addr || !*addr)
		return (size_t)-1;
	for (size_t i = 0; i < t->n_servers; i++)
		if (strcmp(t->servers[i], addr) == 0)
			return i;
	return (size_t)-1;
}

static void task_failed(struct task *t, uint64_t now_ms)
{
	t->next_at_ms = now_ms + clerk_retry_failed(&t->rt,
						    t->inflight_server);
}

static void pull_done(struct skv_migrate *m, uint64_t now_ms, struct task *t,
		      int status, const Skv__PullShardReply *r)
{
	if (status != STATUS_OK || r->status != SKV__STATUS__STATUS_OK ||
	    r->config_num != t->config_num || r->shard != t->shard ||
	    (r->more && r->n_data == 0)) {
		if (status == STATUS_OK && r->status ==
						   SKV__STATUS__STATUS_NOT_FOUND)
			/* Normal after a leader change: the insert was
			 * committed but not applied here yet. */
			log_debug("kv", "gid %" PRIu64 ": shard %" PRIu32
				 " of config %" PRIu64 ": gid %" PRIu64
				 " says: %s",
				 m->gid, t->shard, t->config_num, t->from_gid,
				 r->error);
		task_failed(t, now_ms);
		return;
	}
	clerk_retry_answered(&t->rt, t->inflight_server);
	Skv__InsertShard ins = SKV__INSERT_SHARD__INIT;
	ins.config_num = t->config_num;
	ins.shard = t->shard;
	ins.n_data = r->n_data;
	ins.data = r->data;
	ins.last = !r->more;
	if (ins.last) {
		ins.n_dedup = r->n_dedup;
		ins.dedup = r->dedup;
	}
	Skv__KvCommand cmd = SKV__KV_COMMAND__INIT;
	cmd.cmd_case = SKV__KV_COMMAND__CMD_INSERT;
	cmd.insert = &ins;
	t->pages++;
	if (r->more) {
		const Skv__KeyValue *lastkv = r->data[r->n_data - 1];
		if (buf_set(&t->after, lastkv->key.data, lastkv->key.len)) {
			task_failed(t, now_ms);
			return;
		}
		t->next_at_ms = now_ms;
	} else {
		t->finished = true;
	}
	propose(m, &cmd);
}

static void delete_done(struct skv_migrate *m, uint64_t now_ms,
			struct task *t, int status,
			const Skv__DeleteShardReply *r)
{
	if (status == STATUS_OK && r->status == SKV__STATUS__STATUS_OK) {
		clerk_retry_answered(&t->rt, t->inflight_server);
		Skv__ShardRef ref = SKV__SHARD_REF__INIT;
		ref.config_num = t->config_num;
		ref.shard = t->shard;
		Skv__KvCommand cmd = SKV__KV_COMMAND__INIT;
		cmd.cmd_case = SKV__KV_COMMAND__CMD_GC_DONE;
		cmd.gc_done = &ref;
		t->finished = true;
		propose(m, &cmd);
		return;
	}
	if (status == STATUS_OK &&
	    r->status == SKV__STATUS__STATUS_NOT_LEADER) {
		t->next_at_ms = now_ms + clerk_retry_not_leader(
					 &t->rt, t->inflight_server,
					 server_index(t, r->leader_hint));
		return;
	}
	task_failed(t, now_ms);
}

void skv_migrate_call_done(struct skv_migrate *m, uint64_t now_ms,
			   const struct skv *st, uint64_t id, int status,
			   const ProtobufCMessage *reply)
{
	size_t i = 0;
	while (i < m->n_calls && m->calls[i].id != id)
		i++;
	if (i == m->n_calls)
		return;
	struct outcall c = m->calls[i];
	m->calls[i] = m->calls[--m->n_calls];
	if (status == STATUS_OK && !reply)
		status = STATUS_INTERNAL;

	view(m, st);
	if (c.kind == SKV_CALL_QUERY) {
		clerk_sm_core_on_reply(m->smc, now_ms, c.sm_attempt, status,
				       (const Skv__SmReply *)reply);
		poll_finish(m, now_ms);
		return;
	}
	uint32_t ti = c.shard < m->nshards ? m->task_of[c.shard] : NO_TASK;
	if (ti == NO_TASK || m->tasks[ti].inflight != id)
		return;
	struct task *t = &m->tasks[ti];
	t->inflight = 0;
	if (c.kind == SKV_CALL_PULL_SHARD)
		pull_done(m, now_ms, t, status,
			  (const Skv__PullShardReply *)reply);
	else
		delete_done(m, now_ms, t, status,
			    (const Skv__DeleteShardReply *)reply);
}
