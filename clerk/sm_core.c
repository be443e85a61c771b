/*
 * clerk/sm_core: see sm_core.h. At most one attempt is in flight: an
 * attempt ends by a reply, by a transport failure the host reports, or by
 * its own timeout here; then the next one is due at once or after the
 * backoff clerk/retry chose. Attempt ids only grow, over every operation,
 * so a late reply to any earlier attempt can never be taken for the
 * current one.
 */
#include "clerk/sm_core.h"

#include <stdio.h>
#include <string.h>

#include "common/addrs.h"
#include "common/codec.h"
#include "common/mem.h"
#include "common/status.h"

#define ATTEMPT_TIMEOUT_MS_DEFAULT 1000
#define ERROR_BYTES 256

struct clerk_sm_core {
	size_t n_servers;
	char **servers;
	uint64_t client_id;
	uint64_t attempt_timeout_ms;
	struct clerk_retry retry;

	uint64_t seq;	       /* last seq given to a Join/Leave/Move */
	uint64_t attempt_seq;  /* last attempt id handed out */

	/* the operation: running (busy), or ended (done) and kept for
	 * clerk_sm_core_retry */
	bool busy, done, has_op;
	enum sm_method method;
	struct buf req;	       /* packed, client_id and seq filled in */
	uint64_t deadline_ms;

	/* the attempt in flight, or the next one */
	bool in_flight;
	uint64_t attempt;	     /* id of the attempt in flight */
	size_t attempt_server;
	uint64_t attempt_deadline_ms;
	bool send_due;		     /* an attempt is to start at send_at_ms */
	uint64_t send_at_ms;

	struct clerk_sm_stats stats;

	/* the outcome */
	int status;
	char error[ERROR_BYTES];
	struct buf reply_bytes;
	Skv__SmReply *reply;
};

int clerk_sm_core_new(const struct clerk_sm_core_opts *o,
		      struct clerk_sm_core **out)
{
	*out = NULL;
	if (!o || o->n_servers == 0 || !o->servers)
		return STATUS_INVALID_ARGUMENT;
	for (size_t i = 0; i < o->n_servers; i++)
		if (!o->servers[i])
			return STATUS_INVALID_ARGUMENT;
	struct clerk_sm_core *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return STATUS_NO_MEMORY;
	if (addrs_copy(o->servers, o->n_servers, &c->servers)) {
		mem_free(c);
		return STATUS_NO_MEMORY;
	}
	c->n_servers = o->n_servers;
	c->client_id = o->client_id;
	c->attempt_timeout_ms = o->attempt_timeout_ms
					? o->attempt_timeout_ms
					: ATTEMPT_TIMEOUT_MS_DEFAULT;
	clerk_retry_init(&c->retry, o->n_servers, o->seed, o->backoff_ms_min,
			 o->backoff_ms_max);
	buf_init(&c->req);
	buf_init(&c->reply_bytes);
	*out = c;
	return STATUS_OK;
}

static void drop_reply(struct clerk_sm_core *c)
{
	codec_free(c->reply ? &c->reply->base : NULL);
	c->reply = NULL;
	buf_reset(&c->reply_bytes);
}

void clerk_sm_core_free(struct clerk_sm_core *c)
{
	if (!c)
		return;
	drop_reply(c);
	buf_free(&c->reply_bytes);
	buf_free(&c->req);
	addrs_free(c->servers, c->n_servers);
	mem_free(c);
}

/* The state every run of an operation (start or retry) begins in. */
static void begin(struct clerk_sm_core *c, uint64_t now_ms,
		  uint64_t deadline_ms)
{
	drop_reply(c);
	c->busy = true;
	c->done = false;
	c->deadline_ms = deadline_ms;
	c->in_flight = false;
	c->send_due = true;
	c->send_at_ms = now_ms;
	c->status = STATUS_OK;
	c->error[0] = '\0';
	memset(&c->stats, 0, sizeof(c->stats));
	/* A new operation starts where the policy would go next, without
	 * the backoff the last one may have built up. */
	c->retry.misses = 0;
	c->retry.rounds = 0;
}

int clerk_sm_core_start(struct clerk_sm_core *c, uint64_t now_ms,
			enum sm_method m, const ProtobufCMessage *req,
			uint64_t deadline_ms)
{
	const ProtobufCMessageDescriptor *desc = sm_method_request(m);
	if (c->busy || !desc || !req || req->descriptor != desc)
		return STATUS_INVALID_ARGUMENT;
	uint64_t seq = c->seq + 1;
	int rc;
	/* Shallow copies: the request is borrowed, only the two fields
	 * change, and packing reads the rest where it is. */
	switch (m) {
	case SM_METHOD_JOIN: {
		Skv__JoinRequest r = *(const Skv__JoinRequest *)req;
		r.client_id = c->client_id;
		r.seq = seq;
		rc = codec_pack(&r.base, &c->req);
		break;
	}
	case SM_METHOD_LEAVE: {
		Skv__LeaveRequest r = *(const Skv__LeaveRequest *)req;
		r.client_id = c->client_id;
		r.seq = seq;
		rc = codec_pack(&r.base, &c->req);
		break;
	}
	case SM_METHOD_MOVE: {
		Skv__MoveRequest r = *(const Skv__MoveRequest *)req;
		r.client_id = c->client_id;
		r.seq = seq;
		rc = codec_pack(&r.base, &c->req);
		break;
	}
	case SM_METHOD_QUERY:
	default:
		rc = codec_pack(req, &c->req);
		break;
	}
	if (rc) {
		/* The buffer may hold part of nothing useful now. */
		c->has_op = false;
		return rc;
	}
	if (m != SM_METHOD_QUERY)
		c->seq = seq;
	c->method = m;
	c->has_op = true;
	begin(c, now_ms, deadline_ms);
	return STATUS_OK;
}

int clerk_sm_core_retry(struct clerk_sm_core *c, uint64_t now_ms,
			uint64_t deadline_ms)
{
	if (c->busy || !c->has_op || !c->done ||
	    (c->status != STATUS_TIMEOUT && c->status != STATUS_NO_MEMORY))
		return STATUS_INVALID_ARGUMENT;
	begin(c, now_ms, deadline_ms);
	return STATUS_OK;
}

/* Ends the operation. `reply` (borrowed) is copied. */
static void finish(struct clerk_sm_core *c, int status, const char *error,
		   const Skv__SmReply *reply)
{
	c->busy = false;
	c->done = true;
	c->in_flight = false;
	c->send_due = false;
	c->status = status;
	snprintf(c->error, sizeof(c->error), "%s", error ? error : "");
	/* One line, whatever the server wrote. */
	for (char *p = c->error; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (!reply)
		return;
	ProtobufCMessage *copy = NULL;
	if (codec_pack(&reply->base, &c->reply_bytes) != STATUS_OK ||
	    codec_unpack(&skv__sm_reply__descriptor, c->reply_bytes.data,
			 c->reply_bytes.len, &copy) != STATUS_OK) {
		c->status = STATUS_NO_MEMORY;
		snprintf(c->error, sizeof(c->error),
			 "out of memory keeping the reply (the %s may have "
			 "applied)",
			 sm_method_name(c->method));
		return;
	}
	c->reply = (Skv__SmReply *)copy;
}

static void finish_timeout(struct clerk_sm_core *c)
{
	const struct clerk_sm_stats *s = &c->stats;
	char why[ERROR_BYTES];
	if (s->answered > 0)
		snprintf(why, sizeof(why),
			 "deadline passed with no leader: %u attempts, %u "
			 "answered not leader, %u not ready",
			 s->attempts, s->not_leader, s->not_ready);
	else
		snprintf(why, sizeof(why),
			 "deadline passed with no answer: %u attempts, %u "
			 "timed out, %u failed (last: %s)",
			 s->attempts, s->timed_out, s->failed,
			 s->last_failure ? status_name(s->last_failure)
					 : "none");
	finish(c, STATUS_TIMEOUT, why, NULL);
}

/* The attempt in flight got no usable answer; `delay_ms` from retry. */
static void schedule(struct clerk_sm_core *c, uint64_t now_ms,
		     uint64_t delay_ms)
{
	c->in_flight = false;
	c->send_due = true;
	c->send_at_ms = delay_ms > UINT64_MAX - now_ms ? UINT64_MAX
						       : now_ms + delay_ms;
}

/* Index of `addr` among the servers; (size_t)-1 when absent. */
static size_t server_index(const struct clerk_sm_core *c, const char *addr)
{
	if (!addr || !*addr)
		return (size_t)-1;
	for (size_t i = 0; i < c->n_servers; i++)
		if (strcmp(c->servers[i], addr) == 0)
			return i;
	return (size_t)-1;
}

bool clerk_sm_core_next_send(struct clerk_sm_core *c, uint64_t now_ms,
			     struct clerk_sm_send *out)
{
	if (!c->busy)
		return false;
	if (now_ms >= c->deadline_ms) {
		finish_timeout(c);
		return false;
	}
	if (c->in_flight || !c->send_due || now_ms < c->send_at_ms)
		return false;
	c->send_due = false;
	c->in_flight = true;
	c->attempt = ++c->attempt_seq;
	c->attempt_server = clerk_retry_pick(&c->retry);
	uint64_t left = c->deadline_ms - now_ms;
	uint64_t t = c->attempt_timeout_ms < left ? c->attempt_timeout_ms
						  : left;
	c->attempt_deadline_ms = now_ms + t;
	c->stats.attempts++;
	out->attempt = c->attempt;
	out->server = c->attempt_server;
	out->method = c->method;
	out->bytes = c->req.data;
	out->len = c->req.len;
	out->timeout_ms = t;
	return true;
}

void clerk_sm_core_on_reply(struct clerk_sm_core *c, uint64_t now_ms,
			    uint64_t attempt, int status,
			    const Skv__SmReply *reply)
{
	if (!c->busy || !c->in_flight || attempt != c->attempt)
		return; /* stale: an earlier attempt or operation */
	size_t server = c->attempt_server;
	if (status != STATUS_OK || !reply) {
		c->stats.failed++;
		c->stats.last_failure = status != STATUS_OK ? status
							    : STATUS_INTERNAL;
		c->stats.last_failure_server = server;
		schedule(c, now_ms, clerk_retry_failed(&c->retry, server));
		return;
	}
	c->stats.answered++;
	switch ((int)reply->status) {
	case STATUS_NOT_LEADER: {
		c->stats.not_leader++;
		size_t hint = server_index(c, reply->leader_hint);
		schedule(c, now_ms,
			 clerk_retry_not_leader(&c->retry, server, hint));
		return;
	}
	case STATUS_NOT_READY:
	case STATUS_UNAVAILABLE:
	case STATUS_SHUTDOWN:
		c->stats.not_ready++;
		schedule(c, now_ms, clerk_retry_failed(&c->retry, server));
		return;
	default:
		break;
	}
	clerk_retry_answered(&c->retry, server);
	int st = (int)reply->status;
	const char *err = st == STATUS_OK ? ""
		: reply->error && *reply->error ? reply->error
		: status_str(st);
	finish(c, st, err, reply);
}

void clerk_sm_core_tick(struct clerk_sm_core *c, uint64_t now_ms)
{
	if (!c->busy)
		return;
	if (now_ms >= c->deadline_ms) {
		finish_timeout(c);
		return;
	}
	if (c->in_flight && now_ms >= c->attempt_deadline_ms) {
		c->stats.timed_out++;
		schedule(c, now_ms,
			 clerk_retry_failed(&c->retry, c->attempt_server));
	}
}

uint64_t clerk_sm_core_wake_ms(const struct clerk_sm_core *c)
{
	if (!c->busy)
		return UINT64_MAX;
	uint64_t w = c->deadline_ms;
	if (c->in_flight && c->attempt_deadline_ms < w)
		w = c->attempt_deadline_ms;
	else if (!c->in_flight && c->send_due && c->send_at_ms < w)
		w = c->send_at_ms;
	return w;
}

bool clerk_sm_core_done(const struct clerk_sm_core *c, int *status,
			const Skv__SmReply **reply, const char **error)
{
	if (!c->done)
		return false;
	if (status)
		*status = c->status;
	if (reply)
		*reply = c->reply;
	if (error)
		*error = c->error;
	return true;
}

void clerk_sm_core_stats(const struct clerk_sm_core *c,
			 struct clerk_sm_stats *out)
{
	*out = c->stats;
}

bool clerk_sm_core_busy(const struct clerk_sm_core *c)
{
	return c->busy;
}

uint64_t clerk_sm_core_client_id(const struct clerk_sm_core *c)
{
	return c->client_id;
}
