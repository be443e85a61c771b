/*
 * Implementation notes. The request plumbing, the loop thread and the
 * ordered stop are the host's (common/host.h), the data directory's
 * identity common/datadir.h's, as for the shard master. What is added
 * here: the service's outgoing calls and its timer.
 *
 * An outgoing call is one allocation (`struct outcall`: loop -> client
 * thread -> loop). A call that cannot start, or whose outcome cannot be
 * allocated, is queued in `failed` (no allocation) and reported by the
 * `failed_ev` event, so the service never hears of it from inside its own
 * call_fn. Everything posted by the client thread runs before host_stop
 * returns (host_stop drains the loop after freeing the client), and
 * finds the host stopped: it is freed unreported.
 */
#include "shardkv/server.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/codec.h"
#include "common/datadir.h"
#include "common/host.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/raft/node.h"
#include "common/raft/storage.h"
#include "common/status.h"
#include "common/store/store.h"
#include "shardkv/kv.h"
#include "shardkv/service.h"
#include "shardmaster/sm.h"

#define MOD "skv_server"
#define FAILED_MAX 256

struct failed_call {
	uint64_t id;
	int status;
};

struct skv_server {
	struct store *store;
	struct host *host;
	struct raft_node *node;
	struct skv_service *svc;
	uint64_t gid;
	char cluster[DATADIR_CLUSTER_MAX + 1];

	/* Loop thread only (or after the loop stopped). */
	struct raft *attached; /* the core the service is attached to */
	struct loop_timer wake;
	struct loop_event failed_ev;
	bool failed_posted;
	struct failed_call failed[FAILED_MAX];
	size_t n_failed;
};

/* An outgoing call of the service, and then its outcome. */
struct outcall {
	struct loop_event ev;
	struct skv_server *s;
	uint64_t id;
	int status;
	ProtobufCMessage *reply;
};

static bool running(const struct skv_server *s)
{
	return !host_stopped(s->host) && !loop_stopping(host_loop(s->host));
}

/* Re-arms the loop timer at the service's next wake-up. */
static void arm_wake(struct skv_server *s)
{
	struct loop *l = host_loop(s->host);
	uint64_t at = skv_service_wake_ms(s->svc);
	if (at == UINT64_MAX) {
		loop_timer_stop(l, &s->wake);
		return;
	}
	uint64_t now = host_now_ms(s->host);
	uint64_t delay_us = at > now ? (at - now) * 1000 : 0;
	if (loop_timer_start(l, &s->wake, delay_us) != STATUS_OK)
		log_error(MOD, "cannot arm the service timer: out of memory");
}

static void on_wake(struct loop_timer *t)
{
	struct skv_server *s =
		(struct skv_server *)(void *)((char *)t -
					      offsetof(struct skv_server,
						       wake));
	if (running(s))
		skv_service_tick(s->svc, host_now_ms(s->host));
}

/* ---- outgoing calls ---- */

static void failed_run(struct loop_event *ev)
{
	struct skv_server *s =
		(struct skv_server *)(void *)((char *)ev -
					      offsetof(struct skv_server,
						       failed_ev));
	s->failed_posted = false;
	/* Reporting may start calls that fail again: take the batch. */
	struct failed_call batch[FAILED_MAX];
	size_t n = s->n_failed;
	memcpy(batch, s->failed, n * sizeof(batch[0]));
	s->n_failed = 0;
	for (size_t i = 0; i < n && running(s); i++)
		skv_service_call_done(s->svc, host_now_ms(s->host),
				      batch[i].id, batch[i].status, NULL);
}

/* Loop thread: reports call `id` failed with `status` in a later event. */
static void call_failed(struct skv_server *s, uint64_t id, int status)
{
	if (s->n_failed == FAILED_MAX) {
		/* The service's own deadline covers it. */
		log_error(MOD, "call %" PRIu64 " failed (%s), not reported",
			  id, status_name(status));
		return;
	}
	s->failed[s->n_failed++] = (struct failed_call){id, status};
	if (!s->failed_posted) {
		s->failed_posted = true;
		s->failed_ev.fn = failed_run;
		loop_post(host_loop(s->host), &s->failed_ev);
	}
}

static void outcall_run(struct loop_event *ev)
{
	struct outcall *oc = (struct outcall *)ev;
	struct skv_server *s = oc->s;
	if (running(s))
		skv_service_call_done(s->svc, host_now_ms(s->host), oc->id,
				      oc->status, oc->reply);
	codec_free(oc->reply);
	mem_free(oc);
}

/* rpc_done_fn: client thread, never blocks. */
static void on_call_done(void *arg, int status, const char *errmsg,
			 ProtobufCMessage *reply)
{
	struct outcall *oc = arg;
	oc->status = status;
	oc->reply = reply;
	loop_post(host_loop(oc->s->host), &oc->ev);
}

/* skv_call_fn: loop thread. */
static void on_service_call(void *arg, uint64_t id, const char *addr,
			    enum skv_call c, const uint8_t *bytes, size_t len,
			    uint64_t timeout_ms)
{
	struct skv_server *s = arg;
	struct outcall *oc = mem_calloc(1, sizeof(*oc));
	if (!oc) {
		call_failed(s, id, STATUS_NO_MEMORY);
		return;
	}
	*oc = (struct outcall){.ev.fn = outcall_run, .s = s, .id = id};
	uint64_t deadline = timeout_ms ? timeout_ms : 1;
	int rc = rpc_client_call_bytes(host_client(s->host), addr,
				       skv_call_path(c), bytes, len,
				       skv_call_reply(c), deadline,
				       on_call_done, oc);
	if (rc != STATUS_OK) {
		mem_free(oc);
		call_failed(s, id, rc);
	}
}

/* ---- requests ---- */

/* skv_reply_fn: loop thread. */
static void on_service_reply(void *arg, uint64_t token,
			     const ProtobufCMessage *reply)
{
	struct skv_server *s = arg;
	host_reply(s->host, token, reply);
}

static void on_request(void *ctx, uint64_t token, int method,
		       const ProtobufCMessage *req)
{
	struct skv_server *s = ctx;
	skv_service_request(s->svc, host_now_ms(s->host), token,
			    (enum skv_method)method, req);
}

/* Every reply type has a status and an error. */
static void on_refuse(void *ctx, int method, struct rpc_call *call,
		      int status, const char *msg)
{
	switch ((enum skv_method)method) {
	case SKV_METHOD_PULL_SHARD: {
		Skv__PullShardReply r = SKV__PULL_SHARD_REPLY__INIT;
		r.status = (Skv__Status)status;
		r.error = (char *)msg;
		rpc_call_reply(call, &r.base);
		return;
	}
	case SKV_METHOD_DELETE_SHARD: {
		Skv__DeleteShardReply r = SKV__DELETE_SHARD_REPLY__INIT;
		r.status = (Skv__Status)status;
		r.error = (char *)msg;
		rpc_call_reply(call, &r.base);
		return;
	}
	default: {
		Skv__KvReply r = SKV__KV_REPLY__INIT;
		r.status = (Skv__Status)status;
		r.error = (char *)msg;
		rpc_call_reply(call, &r.base);
		return;
	}
	}
}

/* The loop's turn hook: one Raft process per turn, then the service,
 * then its timer. */
static void on_turn(void *ctx)
{
	struct skv_server *s = ctx;
	raft_node_turn(s->node);
	/* The node rebuilds its core after a bad snapshot from a peer. */
	struct raft *r = raft_node_raft(s->node);
	if (r != s->attached) {
		skv_service_attach(s->svc, NULL);
		skv_service_attach(s->svc, r);
		s->attached = r;
	}
	skv_service_after_process(s->svc, host_now_ms(s->host));
	host_log_leader(s->host, r);
	arm_wake(s);
}

static void on_stop(void *ctx)
{
	struct skv_server *s = ctx;
	loop_timer_stop(host_loop(s->host), &s->wake);
	skv_service_fail_all(s->svc, STATUS_SHUTDOWN);
	skv_service_attach(s->svc, NULL);
	s->attached = NULL;
}

/* host_ops.status: the replica, the applied configuration and every
 * shard the group holds some state for. */
static void on_status(void *ctx, struct rpc_call *call)
{
	struct skv_server *s = ctx;
	const struct skv *k = skv_service_state(s->svc);
	Skv__NodeStatusReply rep = SKV__NODE_STATUS_REPLY__INIT;
	host_status_fill(s->host, s->attached, &rep);
	rep.kind = "shardkv";
	rep.cluster = s->cluster;
	rep.gid = s->gid;
	rep.config_num = skv_config_num(k);

	uint32_t n = skv_nshards(k);
	Skv__ShardStatus *sh = n ? mem_calloc(n, sizeof(*sh)) : NULL;
	Skv__ShardStatus **shp = n ? mem_calloc(n, sizeof(*shp)) : NULL;
	if (n && (!sh || !shp)) {
		mem_free(sh);
		mem_free(shp);
		rpc_call_fail(call, STATUS_NO_MEMORY, "out of memory");
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct skv_shard_info si;
		skv_shard(k, i, &si);
		if (si.state == SKV_SHARD_NONE)
			continue;
		Skv__ShardStatus *e = &sh[rep.n_shards];
		skv__shard_status__init(e);
		e->shard = i;
		e->state = (char *)skv_shard_state_name(si.state);
		e->config_num = si.config_num;
		shp[rep.n_shards++] = e;
	}
	rep.shards = shp;
	rpc_call_reply(call, &rep.base);
	mem_free(shp);
	mem_free(sh);
}

static const struct host_ops skv_host_ops = {
	.request = on_request,
	.status = on_status,
	.refuse = on_refuse,
	.turn = on_turn,
	.stop = on_stop,
};

/* ---- start / stop ---- */

static int check_opts(const struct skv_server_opts *o, const char *cluster,
		      char *err, size_t cap)
{
	if (o->gid == 0) {
		snprintf(err, cap, "gid 0 is not a group; gids start at 1");
		return STATUS_INVALID_ARGUMENT;
	}
	int rc = host_check_replica(&o->replica, cluster, SM_ADDR_BYTES_MAX,
				    err, cap);
	if (rc != STATUS_OK)
		return rc;
	if (o->n_masters < 1 || o->n_masters > SKV_SERVER_MASTERS_MAX) {
		snprintf(err, cap, "%zu shard-master servers; 1 to %d allowed",
			 o->n_masters, SKV_SERVER_MASTERS_MAX);
		return STATUS_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < o->n_masters; i++) {
		const char *m = o->masters[i];
		if (!host_addr_ok(m, SM_ADDR_BYTES_MAX)) {
			snprintf(err, cap,
				 "shard master %zu: '%s' is not a host:port "
				 "address",
				 i + 1, m ? m : "");
			return STATUS_INVALID_ARGUMENT;
		}
	}
	return STATUS_OK;
}

/* node.h's order, for a running server and for a start that failed
 * part way (anything may be missing). */
static void teardown(struct skv_server *s)
{
	if (s->node)
		raft_node_stop(s->node);
	if (s->host)
		host_stop(s->host);
	raft_node_free(s->node);
	skv_service_free(s->svc);
	store_close(s->store);
	host_free(s->host);
	mem_free(s);
}

static int new_service(struct skv_server *s, const struct skv_server_opts *o,
		       char *err, size_t cap)
{
	const struct host_replica *r = &o->replica;
	char why[512];
	struct skv_service_opts so = {
		.store = s->store,
		.gid = o->gid,
		.self_id = r->id,
		.n_nodes = r->n_peers,
		.masters = o->masters,
		.n_masters = o->n_masters,
		.seed = host_seed(o->gid << 8 | r->id),
		.poll_ms = o->poll_ms,
		.call_timeout_ms = o->call_timeout_ms,
		.reply = on_service_reply,
		.reply_arg = s,
		.call = on_service_call,
		.call_arg = s,
	};
	for (size_t i = 0; i < r->n_peers; i++)
		so.addrs[i] = r->peers[i];
	int rc = skv_service_new(&so, &s->svc, why, sizeof(why));
	if (rc != STATUS_OK)
		snprintf(err, cap, "data dir %s: %s", r->data_dir, why);
	return rc;
}

/* The Raft node over the host, the service attached to its core. */
static int start_node(struct skv_server *s, const struct skv_server_opts *o,
		      char *err, size_t cap)
{
	const struct host_replica *r = &o->replica;
	char why[512];
	struct raft_node_opts no;
	host_node_opts(s->host, r, host_seed(o->gid << 8 | r->id),
		       SKV_SERVER_COMPACTION_BYTES_DEFAULT, s->store,
		       &skv_service_fsm, s->svc, &no);
	int rc = raft_node_new(&no, &s->node, why, sizeof(why));
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: %s", r->data_dir, why);
		return rc;
	}
	/* The loop does not run yet: this thread owns the core. */
	s->attached = raft_node_raft(s->node);
	skv_service_attach(s->svc, s->attached);
	return STATUS_OK;
}

int skv_server_start(const struct skv_server_opts *o, struct skv_server **out,
		     char *err, size_t cap)
{
	const struct host_replica *r = &o->replica;
	const char *cluster = r->cluster ? r->cluster
					 : SKV_SERVER_CLUSTER_DEFAULT;
	char why[512];
	int rc;

	*out = NULL;
	rc = check_opts(o, cluster, err, cap);
	if (rc != STATUS_OK)
		return rc;
	struct skv_server *s = mem_calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, cap, "out of memory");
		return STATUS_NO_MEMORY;
	}
	loop_timer_init(&s->wake, on_wake);
	s->gid = o->gid;
	snprintf(s->cluster, sizeof(s->cluster), "%s", cluster);

	struct datadir_identity want = {
		.kind = "shardkv",
		.title = "shardkv",
		.key = "kv/identity",
		.cluster = cluster,
		.fields = {{"gid", o->gid},
			   {"id", r->id},
			   {"nodes", r->n_peers}},
		.n_fields = 3,
	};
	rc = datadir_open(r->data_dir, &want, &s->store, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	/* Before anything reads the store: an interrupted snapshot install
	 * is finished here. */
	rc = raft_storage_recover(s->store, why, sizeof(why));
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: %s", r->data_dir, why);
		goto fail;
	}
	rc = new_service(s, o, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	struct host_opts ho = {
		.log_mod = MOD, .replica = r, .ops = &skv_host_ops, .ctx = s};
	rc = host_new(&ho, &s->host, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	rc = start_node(s, o, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	for (int m = 1; m <= SKV_METHOD_COUNT; m++) {
		enum skv_method meth = (enum skv_method)m;
		rc = host_add_method(s->host, skv_method_path(meth),
				     skv_method_request(meth), m, err, cap);
		if (rc != STATUS_OK)
			goto fail;
	}

	/* Read before the loop owns the state machine. */
	uint64_t config = skv_config_num(skv_service_state(s->svc));

	const char *listen = host_listen_addr(r);
	rc = host_start(s->host, listen, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	log_info(MOD,
		 "started: node %u of %zu in group %" PRIu64
		 " of cluster \"%s\", listening on %s (port %d), data dir %s, "
		 "%zu shard-master server%s, config %" PRIu64,
		 r->id, r->n_peers, o->gid, cluster, listen,
		 host_port(s->host), r->data_dir, o->n_masters,
		 o->n_masters == 1 ? "" : "s", config);
	*out = s;
	return STATUS_OK;

fail:
	teardown(s);
	return rc;
}

int skv_server_port(const struct skv_server *s)
{
	return host_port(s->host);
}

void skv_server_stop_free(struct skv_server *s)
{
	if (!s)
		return;
	teardown(s);
}
