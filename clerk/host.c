/*
 * clerk/host: see host.h.
 */
#include "clerk/host.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#include "common/codec.h"
#include "common/mem.h"
#include "common/monotime.h"
#include "common/rpc/rpc.h"
#include "common/status.h"

/* The longest single wait; the caller re-reads the clock after it. */
#define WAIT_MS_MAX 60000

int clerk_host_random_u64(uint64_t *out)
{
	uint8_t b[8];
	size_t got = 0;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return STATUS_INTERNAL;
		}
		got += (size_t)n;
	}
	uint64_t x = 0;
	for (size_t i = 0; i < sizeof(b); i++)
		x = x << 8 | b[i];
	*out = x;
	return STATUS_OK;
}

void clerk_host_inbox_init(struct clerk_host_inbox *in)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&in->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&in->mu, NULL);
	in->arrived = NULL;
	in->arrival = NULL;
	in->arrival_arg = NULL;
}

void clerk_host_inbox_destroy(struct clerk_host_inbox *in)
{
	while (in->arrived) {
		struct clerk_host_call *c = in->arrived;
		in->arrived = c->next;
		clerk_host_call_free(c);
	}
	pthread_cond_destroy(&in->cond);
	pthread_mutex_destroy(&in->mu);
}

struct clerk_host_call *clerk_host_call_new(struct clerk_host_inbox *in,
					    uint64_t attempt, size_t server)
{
	struct clerk_host_call *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->inbox = in;
	c->attempt = attempt;
	c->server = server;
	return c;
}

int clerk_host_call_start(struct clerk_host_call *c, struct rpc_client *rpc,
			  const char *addr, const char *method,
			  const void *bytes, size_t len,
			  const ProtobufCMessageDescriptor *reply_type,
			  uint64_t timeout_ms)
{
	return rpc_client_call_bytes(rpc, addr, method, bytes, len,
				     reply_type, timeout_ms,
				     clerk_host_call_done, c);
}

void clerk_host_call_done(void *arg, int status, const char *errmsg,
			  ProtobufCMessage *reply)
{
	struct clerk_host_call *c = arg;
	struct clerk_host_inbox *in = c->inbox;
	c->status = status;
	c->reply = reply;
	snprintf(c->detail, sizeof(c->detail), "%s", errmsg ? errmsg : "");
	void (*arrival)(void *) = in->arrival;
	pthread_mutex_lock(&in->mu);
	c->next = in->arrived;
	in->arrived = c;
	if (!arrival)
		pthread_cond_signal(&in->cond);
	pthread_mutex_unlock(&in->mu);
	if (arrival)
		arrival(in->arrival_arg);
}

void clerk_host_call_free(struct clerk_host_call *c)
{
	if (!c)
		return;
	codec_free(c->reply);
	mem_free(c);
}

bool clerk_host_inbox_wait_locked(struct clerk_host_inbox *in,
				  uint64_t wake_ms)
{
	uint64_t now = monotime_now_ms();
	if (now >= wake_ms)
		return false;
	uint64_t wait = wake_ms - now;
	if (wait > WAIT_MS_MAX)
		wait = WAIT_MS_MAX;
	/* `cond` runs on CLOCK_MONOTONIC, the clock of monotime. */
	uint64_t at_ns = monotime_now_ns() + wait * 1000000u;
	struct timespec ts = {
		.tv_sec = (time_t)(at_ns / 1000000000u),
		.tv_nsec = (long)(at_ns % 1000000000u),
	};
	pthread_cond_timedwait(&in->cond, &in->mu, &ts);
	return true;
}

struct clerk_host_call *clerk_host_inbox_take_locked(
	struct clerk_host_inbox *in)
{
	struct clerk_host_call *list = in->arrived;
	in->arrived = NULL;
	struct clerk_host_call *rev = NULL;
	while (list) {
		struct clerk_host_call *c = list;
		list = c->next;
		c->next = rev;
		rev = c;
	}
	return rev;
}
