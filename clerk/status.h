/*
 * clerk/status: asking servers for their status (proto/node.proto), for
 * `shardctl status`, the local cluster's scripts and the tests.
 *
 * What it is for: one blocking call that asks any number of servers at
 * once, each with the same deadline, and returns when every one has
 * answered or failed. Each ask is one RPC to /skv.Node/Status, which
 * every server (shard master and replica group) answers from its loop.
 *
 * Ownership: the replies are the caller's (node_status_free, or
 * node_status_results_free for an array of results). Addresses are
 * borrowed for the call.
 *
 * Threads: any thread; each call makes and frees its own rpc client.
 */
#ifndef SKV_CLERK_STATUS_H
#define SKV_CLERK_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/node.pb-c.h"

/* At most this many servers asked in one node_status_get_many. */
#define NODE_STATUS_MANY_MAX 256

/* One server's answer. */
struct node_status_result {
	int status;		     /* enum status */
	char err[200];		     /* why, when status is not OK */
	Skv__NodeStatusReply *reply; /* when OK; the caller's */
};

/* Asks the server at addr ("host:port") for its status, waiting at most
 * timeout_ms (> 0). STATUS_OK and *out (the caller frees it with
 * node_status_free), or an error (UNAVAILABLE, TIMEOUT, NO_MEMORY, ...)
 * with a one-line reason in err and *out NULL. */
int node_status_get(const char *addr, uint64_t timeout_ms,
		    Skv__NodeStatusReply **out, char *err, size_t cap);

/* Asks addrs[0..n) at once (n <= NODE_STATUS_MANY_MAX), each waiting at
 * most timeout_ms (> 0); res[i] is addrs[i]'s. Returns when all are
 * done: STATUS_OK (whatever each answered), or INVALID_ARGUMENT (n too
 * large) / NO_MEMORY with every res[i] failed alike. */
int node_status_get_many(const char *const *addrs, size_t n,
			 uint64_t timeout_ms, struct node_status_result *res);

void node_status_free(Skv__NodeStatusReply *r); /* NULL ok */
/* Frees res[0..n)'s replies (and sets them NULL). */
void node_status_results_free(struct node_status_result *res, size_t n);

#endif
