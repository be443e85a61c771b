/*
 * Implementation notes. The `done` callbacks run on the rpc client's
 * thread: they only fill their result in and count down under `mu`.
 * rpc_client_free runs any `done` still due (CANCELLED) before it
 * returns, so nothing touches the results after the wait.
 */
#include "clerk/status.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/codec.h"
#include "common/host.h"
#include "common/rpc/rpc.h"
#include "common/status.h"

struct ask {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	size_t left;
};

struct one {
	struct ask *ask;
	struct node_status_result *res;
};

static void on_done(void *arg, int status, const char *errmsg,
		    ProtobufCMessage *reply)
{
	struct one *o = arg;
	o->res->status = status;
	if (status == STATUS_OK)
		o->res->reply = (Skv__NodeStatusReply *)reply;
	else
		snprintf(o->res->err, sizeof(o->res->err), "%s%s%s",
			 status_str(status), *errmsg ? ": " : "", errmsg);
	pthread_mutex_lock(&o->ask->mu);
	o->ask->left--;
	pthread_cond_signal(&o->ask->cond);
	pthread_mutex_unlock(&o->ask->mu);
}

static void fail_all(struct node_status_result *res, size_t n, int status,
		     const char *why)
{
	for (size_t i = 0; i < n; i++) {
		res[i].status = status;
		res[i].reply = NULL;
		snprintf(res[i].err, sizeof(res[i].err), "%s", why);
	}
}

int node_status_get_many(const char *const *addrs, size_t n,
			 uint64_t timeout_ms, struct node_status_result *res)
{
	if (n > NODE_STATUS_MANY_MAX) {
		fail_all(res, n, STATUS_INVALID_ARGUMENT,
			 "too many servers to ask at once");
		return STATUS_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < n; i++)
		res[i] = (struct node_status_result){.status = STATUS_INTERNAL};
	if (!n)
		return STATUS_OK;
	struct rpc_client *cli = rpc_client_new(NULL);
	if (!cli) {
		fail_all(res, n, STATUS_NO_MEMORY, "out of memory");
		return STATUS_NO_MEMORY;
	}
	struct ask ask = {.left = 0};
	pthread_mutex_init(&ask.mu, NULL);
	pthread_cond_init(&ask.cond, NULL);
	struct one o[NODE_STATUS_MANY_MAX];
	Skv__NodeStatusRequest req = SKV__NODE_STATUS_REQUEST__INIT;
	for (size_t i = 0; i < n; i++) {
		o[i] = (struct one){&ask, &res[i]};
		pthread_mutex_lock(&ask.mu);
		ask.left++;
		pthread_mutex_unlock(&ask.mu);
		int rc = rpc_client_call(cli, addrs[i], HOST_STATUS_PATH,
					 &req.base,
					 &skv__node_status_reply__descriptor,
					 timeout_ms ? timeout_ms : 1, on_done,
					 &o[i]);
		if (rc != STATUS_OK) {
			res[i].status = rc;
			snprintf(res[i].err, sizeof(res[i].err),
				 "%s: cannot ask %s", status_str(rc),
				 addrs[i]);
			pthread_mutex_lock(&ask.mu);
			ask.left--;
			pthread_mutex_unlock(&ask.mu);
		}
	}
	pthread_mutex_lock(&ask.mu);
	while (ask.left)
		pthread_cond_wait(&ask.cond, &ask.mu);
	pthread_mutex_unlock(&ask.mu);
	rpc_client_free(cli);
	pthread_cond_destroy(&ask.cond);
	pthread_mutex_destroy(&ask.mu);
	return STATUS_OK;
}

int node_status_get(const char *addr, uint64_t timeout_ms,
		    Skv__NodeStatusReply **out, char *err, size_t cap)
{
	struct node_status_result r;
	const char *addrs[1] = {addr};
	node_status_get_many(addrs, 1, timeout_ms, &r);
	*out = r.reply;
	if (r.status != STATUS_OK)
		snprintf(err, cap, "%s: %s", addr, r.err);
	return r.status;
}

void node_status_free(Skv__NodeStatusReply *r)
{
	codec_free(r ? &r->base : NULL);
}

void node_status_results_free(struct node_status_result *res, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		node_status_free(res[i].reply);
		res[i].reply = NULL;
	}
}
