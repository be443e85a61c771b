/*
 * Implementation notes. The request plumbing, the loop thread and the
 * ordered stop are the host's (common/host.h); the data directory and
 * its identity are common/datadir.h's. What is left here is the shard
 * master's: its methods and reply type, the Raft node around
 * sm_service, and the --shards warning.
 */
#include "shardmaster/server.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/datadir.h"
#include "common/host.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/raft/node.h"
#include "common/raft/storage.h"
#include "common/status.h"
#include "common/store/store.h"
#include "shardmaster/service.h"
#include "shardmaster/sm.h"

#define MOD "sm_server"

_Static_assert(SM_CLUSTER_NAME_MAX == DATADIR_CLUSTER_MAX,
	       "one cluster name limit");

struct sm_server {
	struct store *store;
	struct host *host;
	struct raft_node *node;
	struct sm_service *svc;
	uint32_t nshards_given; /* 0: not given, no warning */
	char cluster[DATADIR_CLUSTER_MAX + 1];

	/* Loop thread only (or after the loop stopped). */
	struct raft *attached; /* the core the service is attached to */
	bool nshards_warned;
};

/* sm_reply_fn: loop thread. */
static void on_service_reply(void *arg, uint64_t token, const Skv__SmReply *r)
{
	struct sm_server *s = arg;
	host_reply(s->host, token, &r->base);
}

/* host_ops: every method answers an SmReply. */
static void on_request(void *ctx, uint64_t token, int method,
		       const ProtobufCMessage *req)
{
	struct sm_server *s = ctx;
	sm_service_request(s->svc, token, (enum sm_method)method, req);
}

static void on_refuse(void *ctx, int method, struct rpc_call *call,
		      int status, const char *msg)
{
	Skv__SmReply r = SKV__SM_REPLY__INIT;
	r.status = (Skv__Status)status;
	r.error = (char *)msg;
	rpc_call_reply(call, &r.base);
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
static void on_turn(void *ctx)
{
	struct sm_server *s = ctx;
	raft_node_turn(s->node);
	/* The node rebuilds its core after a bad snapshot from a peer. */
	struct raft *r = raft_node_raft(s->node);
	if (r != s->attached) {
		sm_service_attach(s->svc, NULL);
		sm_service_attach(s->svc, r);
		s->attached = r;
	}
	sm_service_after_process(s->svc);
	host_log_leader(s->host, r);
	warn_nshards(s);
}

static void on_stop(void *ctx)
{
	struct sm_server *s = ctx;
	sm_service_fail_all(s->svc, STATUS_SHUTDOWN);
	sm_service_attach(s->svc, NULL);
	s->attached = NULL;
}

/* host_ops.status: the replica, and the latest configuration. */
static void on_status(void *ctx, struct rpc_call *call)
{
	struct sm_server *s = ctx;
	Skv__NodeStatusReply rep = SKV__NODE_STATUS_REPLY__INIT;
	host_status_fill(s->host, s->attached, &rep);
	rep.kind = "shardmaster";
	rep.cluster = s->cluster;
	rep.config_num = sm_latest_num(sm_service_sm(s->svc));
	rpc_call_reply(call, &rep.base);
}

static const struct host_ops sm_host_ops = {
	.request = on_request,
	.status = on_status,
	.refuse = on_refuse,
	.turn = on_turn,
	.stop = on_stop,
};

/* ---- start / stop ---- */

static int check_opts(const struct sm_server_opts *o, const char *cluster,
		      char *err, size_t cap)
{
	int rc = host_check_replica(&o->replica, cluster, SM_ADDR_BYTES_MAX,
				    err, cap);
	if (rc != STATUS_OK)
		return rc;
	if (o->nshards > SM_SHARDS_MAX) {
		snprintf(err, cap, "%u shards; at most %d", o->nshards,
			 SM_SHARDS_MAX);
		return STATUS_INVALID_ARGUMENT;
	}
	return STATUS_OK;
}

/* node.h's order, for a running server and for a start that failed
 * part way (anything but the store may be missing). */
static void teardown(struct sm_server *s)
{
	if (s->node)
		raft_node_stop(s->node);
	if (s->host)
		host_stop(s->host);
	raft_node_free(s->node);
	sm_service_free(s->svc);
	store_close(s->store);
	host_free(s->host);
	mem_free(s);
}

/* The Raft node over the host, the service attached to its core. */
static int start_node(struct sm_server *s, const struct host_replica *r,
		      char *err, size_t cap)
{
	char why[512];
	struct raft_node_opts no;
	host_node_opts(s->host, r, host_seed(r->id),
		       SM_COMPACTION_BYTES_DEFAULT, s->store, &sm_service_fsm,
		       s->svc, &no);
	int rc = raft_node_new(&no, &s->node, why, sizeof(why));
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: %s", r->data_dir, why);
		return rc;
	}
	/* The loop does not run yet: this thread owns the core. */
	s->attached = raft_node_raft(s->node);
	sm_service_attach(s->svc, s->attached);
	return STATUS_OK;
}

int sm_server_start(const struct sm_server_opts *o, struct sm_server **out,
		    char *err, size_t cap)
{
	const struct host_replica *r = &o->replica;
	const char *cluster = r->cluster ? r->cluster : SM_CLUSTER_DEFAULT;
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
	s->nshards_given = o->nshards;
	snprintf(s->cluster, sizeof(s->cluster), "%s", cluster);

	struct datadir_identity want = {
		.kind = "shardmaster",
		.title = "shard-master",
		.key = "sm/identity",
		.cluster = cluster,
		.fields = {{"id", r->id}, {"nodes", r->n_peers}},
		.n_fields = 2,
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

	struct sm_service_opts so = {
		.store = s->store,
		.self_id = r->id,
		.n_nodes = r->n_peers,
		.nshards = o->nshards,
		.reply = on_service_reply,
		.reply_arg = s,
	};
	for (size_t i = 0; i < r->n_peers; i++)
		so.addrs[i] = r->peers[i];
	rc = sm_service_new(&so, &s->svc, why, sizeof(why));
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: %s", r->data_dir, why);
		goto fail;
	}

	struct host_opts ho = {
		.log_mod = MOD, .replica = r, .ops = &sm_host_ops, .ctx = s};
	rc = host_new(&ho, &s->host, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	rc = start_node(s, r, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	for (int m = SM_METHOD_JOIN; m <= SM_METHOD_QUERY; m++) {
		rc = host_add_method(s->host, sm_method_path((enum sm_method)m),
				     sm_method_request((enum sm_method)m), m,
				     err, cap);
		if (rc != STATUS_OK)
			goto fail;
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

	const char *listen = host_listen_addr(r);
	rc = host_start(s->host, listen, err, cap);
	if (rc != STATUS_OK)
		goto fail;
	log_info(MOD,
		 "started: node %u of %zu in shard-master cluster \"%s\", "
		 "listening on %s (port %d), data dir %s, %s",
		 r->id, r->n_peers, cluster, listen, host_port(s->host),
		 r->data_dir, state);
	*out = s;
	return STATUS_OK;

fail:
	teardown(s);
	return rc;
}

int sm_server_port(const struct sm_server *s)
{
	return host_port(s->host);
}

void sm_server_stop_free(struct sm_server *s)
{
	if (!s)
		return;
	teardown(s);
}
