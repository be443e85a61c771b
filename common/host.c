/*
 * Implementation notes. A request crosses threads once, in one
 * allocation (`struct incoming`: gRPC thread -> loop). `stopped` is
 * loop-side state: set by the stop event, it makes every later request
 * refused at once; the stop event is posted before the rpc server shuts
 * down and the loop stops, so it runs either on the loop or in
 * loop_drain, and any request event it races with sees loop_stopping().
 *
 * host_node_opts only fills raft/node.h's options struct: the owner
 * calls raft_node_new, so this library does not link the node's (which
 * links this one).
 */
#include "common/host.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/addrs.h"
#include "common/codec.h"
#include "common/datadir.h"
#include "common/held.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/raft/node.h"
#include "common/status.h"
#include "proto/node.pb-c.h"

#define METHODS_MAX 16
/* The method id of /skv.Node/Status, answered by the host itself. */
#define METHOD_STATUS (-1)

struct method_ctx {
	struct host *h;
	int method;
};

struct host {
	const char *mod;
	const struct host_ops *ops;
	void *ctx;
	struct loop *loop;
	struct rpc_server *srv;
	struct rpc_client *cli;
	pthread_t thread;
	bool thread_running;
	bool stop_done; /* host_stop returned */
	int port;
	uint32_t id;
	char **peers;
	size_t n_peers;
	struct method_ctx methods[METHODS_MAX];
	size_t n_methods;
	struct method_ctx status_ctx;
	uint64_t started_ms; /* monotime_now_ms at host_new */

	/* Loop thread only (or after the loop stopped). */
	struct loop_event stop_ev;
	bool stopped;
	struct held_map held;
	uint32_t leader_seen;
	uint64_t term_seen;
};

/* A decoded request on its way to the loop. */
struct incoming {
	struct loop_event ev;
	struct host *h;
	int method;
	struct rpc_call *call;
	ProtobufCMessage *req;
};

static void incoming_run(struct loop_event *ev)
{
	struct incoming *in = (struct incoming *)ev;
	struct host *h = in->h;
	uint64_t token;

	if (in->method == METHOD_STATUS) {
		/* Answered now, from the loop's state: nothing is held. */
		if (h->stopped || loop_stopping(h->loop) || !h->ops->status)
			rpc_call_fail(in->call, STATUS_SHUTDOWN,
				      "server shutting down");
		else
			h->ops->status(h->ctx, in->call);
	} else if (h->stopped || loop_stopping(h->loop))
		h->ops->refuse(h->ctx, in->method, in->call, STATUS_SHUTDOWN,
			       "server shutting down");
	else if (held_add(&h->held, in->call, in->method, &token) !=
		 STATUS_OK)
		rpc_call_fail(in->call, STATUS_NO_MEMORY, "out of memory");
	else
		h->ops->request(h->ctx, token, in->method, in->req);
	codec_free(in->req);
	mem_free(in);
}

/* rpc_handler_fn: gRPC server thread, never blocks. */
static void on_request(void *arg, struct rpc_call *call, ProtobufCMessage *req)
{
	struct method_ctx *mc = arg;
	struct incoming *in = mem_alloc(sizeof(*in));
	if (!in) {
		rpc_call_fail(call, STATUS_NO_MEMORY, "out of memory");
		codec_free(req);
		return;
	}
	*in = (struct incoming){.ev.fn = incoming_run,
				.h = mc->h,
				.method = mc->method,
				.call = call,
				.req = req};
	loop_post(mc->h->loop, &in->ev);
}

static void on_turn(void *arg)
{
	struct host *h = arg;
	if (!h->stopped)
		h->ops->turn(h->ctx);
}

static void stop_run(struct loop_event *ev)
{
	struct host *h =
		(struct host *)(void *)((char *)ev -
					offsetof(struct host, stop_ev));
	h->stopped = true;
	h->ops->stop(h->ctx);
}

static void *loop_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

int host_new(const struct host_opts *o, struct host **out, char *err,
	     size_t cap)
{
	*out = NULL;
	struct host *h = mem_calloc(1, sizeof(*h));
	if (!h)
		goto nomem;
	h->mod = o->log_mod;
	h->ops = o->ops;
	h->ctx = o->ctx;
	h->id = o->replica->id;
	size_t n = o->replica->n_peers;
	if (n > RAFT_MAX_NODES)
		n = RAFT_MAX_NODES;
	if (addrs_copy(o->replica->peers, n, &h->peers))
		goto nomem;
	h->n_peers = n;
	h->loop = loop_new();
	h->srv = rpc_server_new(NULL);
	/* One gRPC thread for both (rpc.h): the client is freed first
	 * (host_stop), the server in host_free. */
	struct rpc_client_opts co = {.server = h->srv};
	h->cli = h->srv ? rpc_client_new(&co) : NULL;
	if (!h->loop || !h->srv || !h->cli)
		goto nomem;
	loop_set_turn_hook(h->loop, on_turn, h);
	h->started_ms = monotime_now_ms();
	h->status_ctx = (struct method_ctx){h, METHOD_STATUS};
	if (rpc_server_add_method(h->srv, HOST_STATUS_PATH,
				  &skv__node_status_request__descriptor,
				  on_request, &h->status_ctx) != STATUS_OK)
		goto nomem;
	*out = h;
	return STATUS_OK;
nomem:
	snprintf(err, cap, "out of memory");
	if (h) {
		/* Nothing ran or was posted yet. */
		rpc_client_free(h->cli);
		h->cli = NULL;
		h->stop_done = true;
		host_free(h);
	}
	return STATUS_NO_MEMORY;
}

int host_add_method(struct host *h, const char *path,
		    const ProtobufCMessageDescriptor *req, int method,
		    char *err, size_t cap)
{
	if (h->n_methods == METHODS_MAX) {
		snprintf(err, cap, "cannot register %s: too many methods",
			 path);
		return STATUS_INVALID_ARGUMENT;
	}
	struct method_ctx *mc = &h->methods[h->n_methods];
	*mc = (struct method_ctx){h, method};
	int rc = rpc_server_add_method(h->srv, path, req, on_request, mc);
	if (rc != STATUS_OK) {
		snprintf(err, cap, "cannot register %s: %s", path,
			 status_str(rc));
		return rc;
	}
	h->n_methods++;
	return STATUS_OK;
}

int host_start(struct host *h, const char *listen, char *err, size_t cap)
{
	int rc = rpc_server_start(h->srv, listen, &h->port, err, cap);
	if (rc != STATUS_OK)
		return rc;
	if (pthread_create(&h->thread, NULL, loop_thread, h->loop) != 0) {
		snprintf(err, cap, "cannot start the loop thread");
		return STATUS_NO_MEMORY;
	}
	h->thread_running = true;
	return STATUS_OK;
}

int host_port(const struct host *h)
{
	return h->port;
}

struct loop *host_loop(struct host *h)
{
	return h->loop;
}

struct rpc_server *host_server(struct host *h)
{
	return h->srv;
}

struct rpc_client *host_client(struct host *h)
{
	return h->cli;
}

uint64_t host_now_ms(const struct host *h)
{
	return loop_now_us(h->loop) / 1000;
}

bool host_stopped(const struct host *h)
{
	return h->stopped;
}

void host_reply(struct host *h, uint64_t token, const ProtobufCMessage *reply)
{
	struct rpc_call *call = held_take(&h->held, token, NULL);
	if (!call) {
		log_warn(h->mod, "reply for unknown token %" PRIu64 " dropped",
			 token);
		return;
	}
	rpc_call_reply(call, reply);
}

void host_log_leader(struct host *h, const struct raft *r)
{
	uint32_t leader = raft_leader(r);
	uint64_t term = raft_term(r);
	if (!leader || (leader == h->leader_seen && term == h->term_seen))
		return;
	h->leader_seen = leader;
	h->term_seen = term;
	if (leader == h->id)
		log_info(h->mod, "node %u leads (term %" PRIu64 ")", h->id,
			 term);
	else
		log_info(h->mod, "node %u (%s) leads (term %" PRIu64 ")",
			 leader,
			 leader <= h->n_peers ? h->peers[leader - 1] : "?",
			 term);
}

void host_status_fill(const struct host *h, const struct raft *r,
		      Skv__NodeStatusReply *rep)
{
	rep->id = h->id;
	rep->nodes = (uint32_t)h->n_peers;
	rep->address = h->id >= 1 && h->id <= h->n_peers ? h->peers[h->id - 1]
							 : "";
	rep->uptime_ms = monotime_now_ms() - h->started_ms;
	if (!r) {
		rep->role = "stopped";
		return;
	}
	rep->role = (char *)raft_role_name(raft_role(r));
	rep->term = raft_term(r);
	uint32_t leader = raft_leader(r);
	rep->leader_id = leader;
	rep->leader = leader >= 1 && leader <= h->n_peers ? h->peers[leader - 1]
							  : "";
	rep->commit_index = raft_commit_index(r);
	rep->applied_index = raft_applied_index(r);
	rep->last_index = raft_last_index(r);
	rep->snapshot_index = raft_snapshot_index(r);
	rep->log_bytes = raft_log_bytes(r);
}

void host_stop(struct host *h)
{
	if (h->stop_done)
		return;
	h->stop_done = true;
	if (h->loop) {
		h->stop_ev.fn = stop_run;
		loop_post(h->loop, &h->stop_ev);
	}
	if (h->srv)
		rpc_server_shutdown(h->srv);
	if (h->loop) {
		loop_stop(h->loop);
		if (h->thread_running)
			pthread_join(h->thread, NULL);
		h->thread_running = false;
		loop_drain(h->loop);
	}
	/* The loop is gone: this thread owns its state now. Nothing should
	 * be held; answer it anyway rather than leak a call. */
	uint64_t token;
	int method;
	struct rpc_call *call;
	while ((call = held_take_any(&h->held, &token, &method))) {
		log_warn(h->mod, "call %" PRIu64 " unanswered at shutdown",
			 token);
		h->ops->refuse(h->ctx, method, call, STATUS_SHUTDOWN,
			       "server shutting down");
	}
	held_free(&h->held);
	/* Cancels what is in flight; its callbacks may still have posted
	 * to the loop: run that too (they see the host stopped). */
	rpc_client_free(h->cli);
	h->cli = NULL;
	if (h->loop)
		loop_drain(h->loop);
}

void host_free(struct host *h)
{
	if (!h)
		return;
	host_stop(h);
	rpc_server_free(h->srv);
	loop_free(h->loop);
	addrs_free(h->peers, h->n_peers);
	mem_free(h);
}

uint64_t host_seed(uint64_t salt)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		seed = monotime_now_ns() ^ ((uint64_t)getpid() << 32);
	return seed ^ salt;
}

bool host_addr_ok(const char *a, size_t addr_max)
{
	return a && *a && strlen(a) <= addr_max && strchr(a, ':');
}

int host_check_replica(const struct host_replica *r, const char *cluster,
		       size_t addr_max, char *err, size_t cap)
{
	size_t n = r->n_peers;
	if (n < 1 || n > RAFT_MAX_NODES) {
		snprintf(err, cap, "%zu replicas; 1 to %d allowed", n,
			 RAFT_MAX_NODES);
		return STATUS_INVALID_ARGUMENT;
	}
	if (r->id < 1 || r->id > n) {
		snprintf(err, cap, "id %u is not in 1..%zu (one per peer)",
			 r->id, n);
		return STATUS_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < n; i++) {
		const char *p = r->peers[i];
		if (!host_addr_ok(p, addr_max)) {
			snprintf(err, cap,
				 "peer %zu: '%s' is not a host:port address",
				 i + 1, p ? p : "");
			return STATUS_INVALID_ARGUMENT;
		}
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(p, r->peers[j])) {
				snprintf(err, cap,
					 "peers %zu and %zu are both %s", j + 1,
					 i + 1, p);
				return STATUS_INVALID_ARGUMENT;
			}
		}
	}
	if (!r->data_dir || !*r->data_dir) {
		snprintf(err, cap, "no data dir");
		return STATUS_INVALID_ARGUMENT;
	}
	if (!datadir_cluster_ok(cluster)) {
		snprintf(err, cap,
			 "cluster name '%s': 1 to %d characters of A-Z a-z "
			 "0-9 . _ -",
			 cluster, DATADIR_CLUSTER_MAX);
		return STATUS_INVALID_ARGUMENT;
	}
	return STATUS_OK;
}

const char *host_listen_addr(const struct host_replica *r)
{
	return r->listen ? r->listen : r->peers[r->id - 1];
}

void host_node_opts(struct host *h, const struct host_replica *r,
		    uint64_t seed, size_t compaction_default,
		    struct store *store, const struct raft_fsm_ops *fsm,
		    void *fsm_ctx, struct raft_node_opts *no)
{
	size_t compact = r->compaction_log_bytes_max;
	*no = (struct raft_node_opts){
		.config = {.id = r->id,
			   .n_nodes = r->n_peers,
			   .election_timeout_ms_min = r->election_timeout_ms_min,
			   .election_timeout_ms_max = r->election_timeout_ms_max,
			   .heartbeat_ms = r->heartbeat_ms,
			   .seed = seed},
		.loop = h->loop,
		.server = h->srv,
		.client = h->cli,
		.store = store,
		.fsm = fsm,
		.fsm_ctx = fsm_ctx,
		.compaction_log_bytes_max = compact == SIZE_MAX ? 0
					    : compact	    ? compact
							    : compaction_default,
		.external_turn_hook = true,
	};
	for (size_t i = 0; i < r->n_peers; i++) {
		no->config.nodes[i] = (uint32_t)(i + 1);
		no->addrs[i] = r->peers[i];
	}
}

int host_usage_error(const char *prog, const char *msg)
{
	fprintf(stderr, "%s: %s\n", prog, msg);
	if (!strstr(msg, "--help"))
		fprintf(stderr, "run '%s --help' for usage\n", prog);
	return 2;
}

int host_parse_args(const char *prog, struct flag *flags, size_t n, int argc,
		    char **argv, struct flags_result *res,
		    void (*usage)(const struct flag *flags, size_t n,
				  FILE *out),
		    const char *const *level, enum log_level *lvl)
{
	char err[768];
	if (flags_parse(flags, n, argc, argv, res, err, sizeof(err)) !=
	    STATUS_OK)
		return host_usage_error(prog, err);
	if (res->help) {
		usage(flags, n, stdout);
		return 0;
	}
	if (res->first_arg < argc) {
		snprintf(err, sizeof(err), "unexpected argument '%s'",
			 argv[res->first_arg]);
		return host_usage_error(prog, err);
	}
	if (log_level_parse(*level, lvl) != 0) {
		snprintf(err, sizeof(err),
			 "--log-level: '%s' is not debug, info, warn or error",
			 *level);
		return host_usage_error(prog, err);
	}
	return -1;
}

int host_replica_args(const char *prog, const struct host_args *a,
		      char **list, struct host_replica *r)
{
	char err[768];
	*list = mem_strdup(a->peers);
	if (!*list) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	if (!addrs_split(*list, "--peers", r->peers, RAFT_MAX_NODES,
			 &r->n_peers, err, sizeof(err)))
		return host_usage_error(prog, err);
	if (a->id > r->n_peers) {
		snprintf(err, sizeof(err),
			 "--id %llu, but --peers lists %zu replicas",
			 (unsigned long long)a->id, r->n_peers);
		return host_usage_error(prog, err);
	}
	r->id = (uint32_t)a->id;
	r->listen = a->listen;
	r->data_dir = a->data;
	r->cluster = a->cluster;
	r->compaction_log_bytes_max = a->compact ? (size_t)a->compact
						 : SIZE_MAX;
	r->election_timeout_ms_min = a->election;
	r->election_timeout_ms_max = 2 * a->election;
	r->heartbeat_ms = a->election / 3;
	return -1;
}

int host_serve(const char *prog, const char *node, enum log_level lvl,
	       int (*start)(void *arg, char *err, size_t cap),
	       void (*stop)(void *arg), void *arg)
{
	log_set_node(node);
	log_set_clock(monotime_log_clock, NULL);
	log_set_level(lvl);

	/* Before any thread exists, so that every thread inherits the
	 * mask and only the sigwait below takes these signals. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	char err[768];
	if (start(arg, err, sizeof(err)) != STATUS_OK) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 1;
	}
	int sig = 0;
	while (sigwait(&stop_signals, &sig) != 0)
		;
	log_info("main", "%s: shutting down",
		 sig == SIGINT ? "SIGINT" : "SIGTERM");
	stop(arg);
	log_info("main", "stopped");
	return 0;
}
