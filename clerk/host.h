/*
 * clerk/host: the production plumbing both blocking clerks (clerk.h's
 * key/value clerk, smclerk.h's shard-master clerk) put around their
 * sans-IO core: the random bits that seed it, and an inbox through which
 * RPCs started on a common/rpc client come back to the one thread that
 * drives the core.
 *
 * The inbox: a call is allocated before its RPC starts, so the RPC's
 * `done` callback (on the RPC client's thread) needs no allocation: it
 * fills the call in and links it under `mu`, then signals `cond`. The
 * driving thread takes the finished calls, oldest first, under `mu`, and
 * waits on `cond` (on CLOCK_MONOTONIC, the clock of common/monotime)
 * until its core's wake time. The owner may guard state of its own with
 * `mu` and signal `cond` for reasons of its own (a submitted operation, a
 * shutdown); the inbox never holds `mu` across anything but the list.
 * An owner that drives its core from other threads too sets `arrival`:
 * a finished call then calls it (after linking the call, `mu` released)
 * instead of signalling `cond`.
 *
 * Ownership: a call belongs to the inbox from the moment its RPC started
 * (or it was handed to clerk_host_call_done) until it is taken; then to
 * the taker (clerk_host_call_free). clerk_host_inbox_destroy frees the
 * calls not taken; it runs after rpc_client_free, which runs every
 * outstanding `done`.
 */
#ifndef SKV_CLERK_HOST_H
#define SKV_CLERK_HOST_H

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rpc_client;

struct clerk_host_inbox {
	pthread_mutex_t mu;
	pthread_cond_t cond;		 /* CLOCK_MONOTONIC */
	struct clerk_host_call *arrived; /* finished, newest first */
	/* NULL (clerk_host_inbox_init): an arrival signals `cond`. Else
	 * called instead, on the thread that finished the call (the RPC
	 * client's, so it must not block), without `mu`. Set before the
	 * first call starts. */
	void (*arrival)(void *arg);
	void *arrival_arg;
};

/* One RPC of a core's attempt; in flight, then finished. */
struct clerk_host_call {
	struct clerk_host_inbox *inbox;
	uint64_t attempt; /* the core's attempt id */
	size_t server;	  /* the owner's index of the server asked */
	/* Set when finished: */
	int status;		 /* enum status */
	ProtobufCMessage *reply; /* the call's: clerk_host_call_free */
	char detail[200];	 /* the RPC layer's message, "" if none */
	struct clerk_host_call *next;
};

/* 64 bits from getrandom(). STATUS_OK, or INTERNAL. */
int clerk_host_random_u64(uint64_t *out);

void clerk_host_inbox_init(struct clerk_host_inbox *in);
/* Frees the calls not taken, then the mutex and condition variable. */
void clerk_host_inbox_destroy(struct clerk_host_inbox *in);

/* A call for `attempt` on `server`, not started; NULL when out of
 * memory. */
struct clerk_host_call *clerk_host_call_new(struct clerk_host_inbox *in,
					    uint64_t attempt, size_t server);
/* Starts the RPC (common/rpc's rpc_client_call_bytes); when it ends the
 * call lands in its inbox. STATUS_OK, or the status the RPC did not start
 * with: the call is then still the caller's and nothing was posted. */
int clerk_host_call_start(struct clerk_host_call *c, struct rpc_client *rpc,
			  const char *addr, const char *method,
			  const void *bytes, size_t len,
			  const ProtobufCMessageDescriptor *reply_type,
			  uint64_t timeout_ms);
/* Finishes `c` with `status` (`reply` given over to it, `errmsg` copied;
 * either may be NULL) and posts it to its inbox. The RPC's `done`; also
 * for the owner to post a failure itself. */
void clerk_host_call_done(void *c, int status, const char *errmsg,
			  ProtobufCMessage *reply);
/* Frees a taken (or never started) call and its reply. NULL ok. */
void clerk_host_call_free(struct clerk_host_call *c);

/* Under `mu`: false at once when the monotonic clock has reached
 * wake_ms; else waits on `cond` once (at most a minute, or until
 * signalled or woken spuriously) and returns true. Loop on the owner's
 * own condition. */
bool clerk_host_inbox_wait_locked(struct clerk_host_inbox *in,
				  uint64_t wake_ms);
/* Under `mu`: takes every finished call, oldest first (the taker's). */
struct clerk_host_call *clerk_host_inbox_take_locked(
	struct clerk_host_inbox *in);

#endif
