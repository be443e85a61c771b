/*
 * smclerk: see smclerk.h. Two locks: `call_mu` makes calls take turns
 * and guards the core (only the thread of the running call touches it);
 * the inbox's `mu` guards the list of finished RPCs, which `done`
 * callbacks (on the RPC client's thread) append to (clerk/host.h). No
 * lock is held across an RPC call, and a callback never waits for
 * anything but `mu`, which nobody holds for long.
 */
#include "clerk/smclerk.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "clerk/host.h"
#include "common/addrs.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/rpc/rpc.h"
#include "common/status.h"

struct smclerk {
	char **addrs;
	size_t n_addrs;
	struct rpc_client *rpc;

	pthread_mutex_t call_mu; /* one call at a time; guards `core` */
	struct clerk_sm_core *core;
	/* First attempt id of the running call (UINT64_MAX before its
	 * first send): older replies say nothing about this call. */
	uint64_t call_first_attempt;
	bool *heard;		     /* per server: answered in this call */

	struct clerk_host_inbox inbox; /* finished RPCs */
};

/* ---- life cycle ---- */

int smclerk_new(const char *const *addrs, size_t n,
		const struct smclerk_opts *opts, struct smclerk **out)
{
	*out = NULL;
	if (n == 0 || !addrs)
		return STATUS_INVALID_ARGUMENT;
	for (size_t i = 0; i < n; i++)
		if (!addrs[i] || !*addrs[i])
			return STATUS_INVALID_ARGUMENT;
	struct smclerk_opts o = {0};
	if (opts)
		o = *opts;
	uint64_t seed;
	if (clerk_host_random_u64(&seed))
		return STATUS_INTERNAL;
	/* 0 is not a valid id for the dedup table's purpose: draw again. */
	while (o.client_id == 0)
		if (clerk_host_random_u64(&o.client_id))
			return STATUS_INTERNAL;

	int rc = STATUS_NO_MEMORY;
	struct smclerk *k = mem_calloc(1, sizeof(*k));
	if (!k)
		return STATUS_NO_MEMORY;
	if (addrs_copy(addrs, n, &k->addrs))
		goto err_after_clerk;
	k->n_addrs = n;
	k->heard = mem_calloc(n, sizeof(*k->heard));
	if (!k->heard)
		goto err_after_addrs;
	struct clerk_sm_core_opts co = {
		.n_servers = n,
		.servers = (const char *const *)k->addrs,
		.client_id = o.client_id,
		.seed = seed,
		.attempt_timeout_ms = o.attempt_timeout_ms,
		.backoff_ms_min = o.backoff_ms_min,
		.backoff_ms_max = o.backoff_ms_max,
	};
	rc = clerk_sm_core_new(&co, &k->core);
	if (rc)
		goto err_after_addrs;
	k->rpc = rpc_client_new(NULL);
	if (!k->rpc) {
		rc = STATUS_INTERNAL;
		goto err_after_core;
	}
	clerk_host_inbox_init(&k->inbox);
	pthread_mutex_init(&k->call_mu, NULL);
	*out = k;
	return STATUS_OK;

err_after_core:
	clerk_sm_core_free(k->core);
err_after_addrs:
	mem_free(k->heard);
	addrs_free(k->addrs, k->n_addrs);
err_after_clerk:
	mem_free(k);
	return rc;
}

void smclerk_free(struct smclerk *k)
{
	if (!k)
		return;
	/* Runs every outstanding `done` before it returns. */
	rpc_client_free(k->rpc);
	clerk_host_inbox_destroy(&k->inbox);
	clerk_sm_core_free(k->core);
	mem_free(k->heard);
	addrs_free(k->addrs, k->n_addrs);
	pthread_mutex_destroy(&k->call_mu);
	mem_free(k);
}

uint64_t smclerk_client_id(const struct smclerk *k)
{
	return clerk_sm_core_client_id(k->core);
}

/* ---- driving the core ---- */

static void note_failure(struct smclerk *k, struct smclerk_result *res,
			 size_t server, int status, const char *detail)
{
	if (!res)
		return;
	snprintf(res->last_failure, sizeof(res->last_failure), "%s: %s%s%s",
		 k->addrs[server], status_name(status),
		 detail && *detail ? ": " : "", detail ? detail : "");
}

static void send_attempt(struct smclerk *k, const struct clerk_sm_send *s,
			 uint64_t now_ms, struct smclerk_result *res)
{
	if (k->call_first_attempt == UINT64_MAX)
		k->call_first_attempt = s->attempt;
	struct clerk_host_call *p =
		clerk_host_call_new(&k->inbox, s->attempt, s->server);
	if (!p) {
		note_failure(k, res, s->server, STATUS_NO_MEMORY, NULL);
		clerk_sm_core_on_reply(k->core, now_ms, s->attempt,
				       STATUS_NO_MEMORY, NULL);
		return;
	}
	int rc = clerk_host_call_start(p, k->rpc, k->addrs[s->server],
				       sm_method_path(s->method), s->bytes,
				       s->len, &skv__sm_reply__descriptor,
				       s->timeout_ms);
	if (rc) {
		clerk_host_call_free(p);
		note_failure(k, res, s->server, rc, "call not started");
		clerk_sm_core_on_reply(k->core, now_ms, s->attempt, rc, NULL);
	}
}

/* Waits until an RPC finished or the clock reaches wake_ms; takes the
 * finished ones, oldest first. */
static struct clerk_host_call *wait_arrivals(struct smclerk *k,
					     uint64_t wake_ms)
{
	struct clerk_host_inbox *in = &k->inbox;
	pthread_mutex_lock(&in->mu);
	while (!in->arrived && clerk_host_inbox_wait_locked(in, wake_ms))
		;
	struct clerk_host_call *list = clerk_host_inbox_take_locked(in);
	pthread_mutex_unlock(&in->mu);
	return list;
}

/*
 * Runs one operation of the core to its end. Returns its status; *reply
 * (the core's, valid until the next run) and res->error set.
 */
static int run(struct smclerk *k, enum sm_method m,
	       const ProtobufCMessage *req, uint64_t deadline_ms,
	       struct smclerk_result *res, const Skv__SmReply **reply)
{
	*reply = NULL;
	uint64_t now = monotime_now_ms();
	int rc = clerk_sm_core_start(k->core, now, m, req, deadline_ms);
	if (rc) {
		if (res)
			snprintf(res->error, sizeof(res->error),
				 "cannot start the %s: %s", sm_method_name(m),
				 status_str(rc));
		return rc;
	}
	int status;
	const char *error;
	for (;;) {
		struct clerk_sm_send s;
		while (clerk_sm_core_next_send(k->core, now, &s))
			send_attempt(k, &s, now, res);
		if (clerk_sm_core_done(k->core, &status, reply, &error))
			break;
		struct clerk_host_call *list =
			wait_arrivals(k, clerk_sm_core_wake_ms(k->core));
		now = monotime_now_ms();
		while (list) {
			struct clerk_host_call *p = list;
			list = p->next;
			if (p->attempt >= k->call_first_attempt &&
			    p->status != STATUS_OK)
				note_failure(k, res, p->server, p->status,
					     p->detail);
			else if (p->attempt >= k->call_first_attempt)
				k->heard[p->server] = true;
			clerk_sm_core_on_reply(k->core, now, p->attempt,
					       p->status,
					       (const Skv__SmReply *)p->reply);
			clerk_host_call_free(p);
		}
		clerk_sm_core_tick(k->core, now);
	}
	if (res) {
		clerk_sm_core_stats(k->core, &res->stats);
		res->answered = res->answered || res->stats.answered > 0;
		res->n_answered = 0;
		for (size_t i = 0; i < k->n_addrs; i++)
			res->n_answered += k->heard[i];
		snprintf(res->error, sizeof(res->error), "%s", error);
	}
	return status;
}

/* The configuration of an OK reply into res->config. */
static int take_config(const Skv__SmReply *reply, struct smclerk_result *res)
{
	char why[200];
	if (!reply->config) {
		if (res)
			snprintf(res->error, sizeof(res->error),
				 "the shard master's reply holds no "
				 "configuration");
		return STATUS_INTERNAL;
	}
	struct sm_config *c;
	int rc = sm_config_from_proto(reply->config, &c, why, sizeof(why));
	if (rc) {
		if (res)
			snprintf(res->error, sizeof(res->error),
				 "bad configuration from the shard master: %s",
				 why);
		return rc == STATUS_NO_MEMORY ? rc : STATUS_INTERNAL;
	}
	if (res)
		res->config = c;
	else
		sm_config_free(c);
	return STATUS_OK;
}

static void result_init(struct smclerk_result *res)
{
	if (res)
		memset(res, 0, sizeof(*res));
}

static uint64_t deadline_after(uint64_t timeout_ms)
{
	uint64_t now = monotime_now_ms();
	return timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
}

/* Under call_mu: a new call starts. */
static void begin_call(struct smclerk *k)
{
	k->call_first_attempt = UINT64_MAX;
	memset(k->heard, 0, k->n_addrs * sizeof(*k->heard));
}

/* Under call_mu. */
static int query_locked(struct smclerk *k, int64_t num, uint64_t deadline_ms,
			struct smclerk_result *res)
{
	Skv__QueryRequest q = SKV__QUERY_REQUEST__INIT;
	q.num = num;
	const Skv__SmReply *reply;
	int rc = run(k, SM_METHOD_QUERY, &q.base, deadline_ms, res, &reply);
	if (rc)
		return rc;
	return take_config(reply, res);
}

/* A Join, Leave or Move, then the configuration it led to. */
static int mutate(struct smclerk *k, enum sm_method m,
		  const ProtobufCMessage *req, uint64_t timeout_ms,
		  struct smclerk_result *res)
{
	uint64_t deadline = deadline_after(timeout_ms);
	pthread_mutex_lock(&k->call_mu);
	begin_call(k);
	const Skv__SmReply *reply;
	int rc = run(k, m, req, deadline, res, &reply);
	if (rc)
		goto out;
	if (reply->config) {
		/* The shard master may answer with the new configuration;
		 * a bad one is reported like a failed read below. */
		if (take_config(reply, res) == STATUS_OK)
			goto out;
	}
	struct smclerk_result q;
	result_init(&q);
	int qrc = query_locked(k, -1, deadline, &q);
	if (res) {
		res->config = q.config;
		res->stats = q.stats;
		if (qrc)
			snprintf(res->error, sizeof(res->error),
				 "the %s applied, but reading the new "
				 "configuration failed: %s: %.150s",
				 sm_method_name(m), status_name(qrc),
				 q.error);
		else
			res->error[0] = '\0';
	} else {
		sm_config_free(q.config);
	}
out:
	pthread_mutex_unlock(&k->call_mu);
	return rc;
}

static int bad_call(struct smclerk_result *res, const char *why)
{
	if (res)
		snprintf(res->error, sizeof(res->error), "%s", why);
	return STATUS_INVALID_ARGUMENT;
}

int smclerk_join(struct smclerk *k, const struct smclerk_group *groups,
		 size_t n_groups, uint64_t timeout_ms,
		 struct smclerk_result *res)
{
	result_init(res);
	if (timeout_ms == 0)
		return bad_call(res, "timeout must be above 0 ms");
	if (n_groups == 0 || !groups)
		return bad_call(res, "join: no groups given");
	Skv__Group *gs = mem_calloc(n_groups, sizeof(*gs));
	Skv__Group **gp = mem_calloc(n_groups, sizeof(*gp));
	int rc = STATUS_NO_MEMORY;
	if (!gs || !gp) {
		if (res)
			snprintf(res->error, sizeof(res->error),
				 "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_groups; i++) {
		skv__group__init(&gs[i]);
		gs[i].gid = groups[i].gid;
		gs[i].n_servers = groups[i].n_servers;
		/* protobuf-c's field is not const; packing only reads it. */
		gs[i].servers = (char **)groups[i].servers;
		gp[i] = &gs[i];
	}
	Skv__JoinRequest r = SKV__JOIN_REQUEST__INIT;
	r.n_groups = n_groups;
	r.groups = gp;
	rc = mutate(k, SM_METHOD_JOIN, &r.base, timeout_ms, res);
out:
	mem_free(gp);
	mem_free(gs);
	return rc;
}

int smclerk_leave(struct smclerk *k, const uint64_t *gids, size_t n_gids,
		  uint64_t timeout_ms, struct smclerk_result *res)
{
	result_init(res);
	if (timeout_ms == 0)
		return bad_call(res, "timeout must be above 0 ms");
	if (n_gids == 0 || !gids)
		return bad_call(res, "leave: no gids given");
	Skv__LeaveRequest r = SKV__LEAVE_REQUEST__INIT;
	r.n_gids = n_gids;
	r.gids = (uint64_t *)gids;
	return mutate(k, SM_METHOD_LEAVE, &r.base, timeout_ms, res);
}

int smclerk_move(struct smclerk *k, uint32_t shard, uint64_t gid,
		 uint64_t timeout_ms, struct smclerk_result *res)
{
	result_init(res);
	if (timeout_ms == 0)
		return bad_call(res, "timeout must be above 0 ms");
	Skv__MoveRequest r = SKV__MOVE_REQUEST__INIT;
	r.shard = shard;
	r.gid = gid;
	return mutate(k, SM_METHOD_MOVE, &r.base, timeout_ms, res);
}

int smclerk_query(struct smclerk *k, int64_t num, uint64_t timeout_ms,
		  struct smclerk_result *res)
{
	result_init(res);
	if (timeout_ms == 0)
		return bad_call(res, "timeout must be above 0 ms");
	uint64_t deadline = deadline_after(timeout_ms);
	pthread_mutex_lock(&k->call_mu);
	begin_call(k);
	int rc = query_locked(k, num, deadline, res);
	pthread_mutex_unlock(&k->call_mu);
	return rc;
}
