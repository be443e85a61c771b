/*
 * sm_service: requests in, Raft proposals and read indexes out, replies
 * once applied state is durable (service.h).
 */
#include "shardmaster/service.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/raft/waits.h"
#include "common/status.h"

#define KEY_NSHARDS "sm/nshards"
#define KEY_CONFIG "sm/config/"
#define KEY_CLIENT "sm/client/"

/* A Join/Leave/Move proposed at `index` in `term`. */
struct pending {
	struct raft_wait w; /* token, index, term, decided */
	enum sm_method method;
	uint64_t client_id, seq;
	struct sm_outcome outcome; /* when decided */
};

/* A Query waiting for its read index. */
struct read_wait {
	struct raft_wait w; /* token */
	uint64_t read_id;
	int64_t num;
};

struct sm_service {
	struct store *store;
	uint32_t self_id;
	char *addrs[RAFT_MAX_NODES];
	size_t n_nodes;
	uint32_t nshards_init;
	sm_reply_fn reply;
	void *reply_arg;

	struct sm *sm;
	struct raft *r;
	uint64_t init_term; /* term Init was last proposed in; 0 = never */

	struct raft_waits waits; /* of struct pending */
	struct raft_waits reads; /* of struct read_wait */
	uint64_t next_read_id;

	struct buf scratch;
};

/* ---- replies ---- */

static const char *leader_hint(const struct sm_service *s)
{
	if (!s->r)
		return NULL;
	uint32_t id = raft_leader(s->r);
	if (id == 0 || id > s->n_nodes || id == s->self_id)
		return NULL;
	return s->addrs[id - 1];
}

/* Sends one reply, with configuration `c` attached unless NULL. */
static void send_reply(struct sm_service *s, uint64_t token, int status,
		       const char *error, const struct sm_config *c)
{
	Skv__SmReply rep = SKV__SM_REPLY__INIT;
	Skv__Config pc;
	bool have_config = false;
	rep.status = (Skv__Status)status;
	rep.error = (char *)(error ? error : "");
	const char *hint = status == STATUS_NOT_LEADER ? leader_hint(s) : NULL;
	rep.leader_hint = (char *)(hint ? hint : "");
	if (c && sm_config_to_proto(c, &pc) == STATUS_OK) {
		rep.config = &pc;
		have_config = true;
	} else if (c) {
		rep.status = SKV__STATUS__STATUS_NO_MEMORY;
		rep.error = "out of memory building the reply";
	}
	s->reply(s->reply_arg, token, &rep);
	if (have_config)
		sm_config_proto_release(&pc);
}

static void reply_not_leader(struct sm_service *s, uint64_t token)
{
	send_reply(s, token, STATUS_NOT_LEADER, "not the leader", NULL);
}

/* Answers a request the core refused (raft_propose, raft_read_index). */
static void reply_refused(struct sm_service *s, uint64_t token, int rc)
{
	if (rc == STATUS_NOT_LEADER)
		reply_not_leader(s, token);
	else
		send_reply(s, token, rc, status_str(rc), NULL);
}

/* ---- storage ---- */

static int put_config(struct sm_service *s, struct store_batch *b,
		      const struct sm_config *c)
{
	Skv__Config pc;
	uint8_t key[sizeof(KEY_CONFIG) - 1 + 8];
	memcpy(key, KEY_CONFIG, sizeof(KEY_CONFIG) - 1);
	put_u64be(key + sizeof(KEY_CONFIG) - 1, c->num);
	if (sm_config_to_proto(c, &pc))
		return STATUS_NO_MEMORY;
	int rc = codec_pack(&pc.base, &s->scratch);
	sm_config_proto_release(&pc);
	if (rc)
		return rc;
	store_batch_put(b, STORE_CF_META, key, sizeof(key), s->scratch.data,
			s->scratch.len);
	return STATUS_OK;
}

static int put_dedup(struct sm_service *s, struct store_batch *b,
		     uint64_t client_id)
{
	uint64_t seq;
	struct sm_outcome o;
	if (!sm_dedup_get(s->sm, client_id, &seq, &o))
		return STATUS_INTERNAL;
	Skv__SmDedup d = SKV__SM_DEDUP__INIT;
	d.seq = seq;
	d.status = (Skv__Status)o.status;
	d.error = o.error;
	d.config_num = o.config_num;
	uint8_t key[sizeof(KEY_CLIENT) - 1 + 8];
	memcpy(key, KEY_CLIENT, sizeof(KEY_CLIENT) - 1);
	put_u64be(key + sizeof(KEY_CLIENT) - 1, client_id);
	int rc = codec_pack(&d.base, &s->scratch);
	if (rc)
		return rc;
	store_batch_put(b, STORE_CF_META, key, sizeof(key), s->scratch.data,
			s->scratch.len);
	return STATUS_OK;
}

/* Loads nshards, every config and every dedup entry from the store into
 * a fresh state machine. */
static int load(struct sm_service *s, char *errmsg, size_t cap)
{
	struct buf v;
	buf_init(&v);
	sm_reset(s->sm);
	int rc = store_get(s->store, STORE_CF_META, KEY_NSHARDS,
			   sizeof(KEY_NSHARDS) - 1, &v);
	if (rc == STATUS_NOT_FOUND) {
		buf_free(&v);
		return STATUS_OK; /* not initialized yet */
	}
	if (rc) {
		snprintf(errmsg, cap, "reading %s: %s", KEY_NSHARDS,
			 store_errmsg(s->store));
		buf_free(&v);
		return rc;
	}
	if (v.len != 4 || sm_load_init(s->sm, get_u32be(v.data))) {
		snprintf(errmsg, cap, "meta key %s is corrupt", KEY_NSHARDS);
		buf_free(&v);
		return STATUS_CORRUPTION;
	}
	buf_free(&v);

	static const char *const prefixes[2] = { KEY_CONFIG, KEY_CLIENT };
	for (int p = 0; p < 2 && rc == STATUS_OK; p++) {
		size_t plen = strlen(prefixes[p]);
		struct store_iter *it = store_iter_new(s->store, STORE_CF_META,
						       prefixes[p], plen,
						       NULL);
		if (!it) {
			snprintf(errmsg, cap, "no iterator: out of memory");
			return STATUS_NO_MEMORY;
		}
		for (; rc == STATUS_OK && store_iter_valid(it);
		     store_iter_next(it)) {
			size_t kl, vl;
			const uint8_t *k = store_iter_key(it, &kl);
			const void *val = store_iter_value(it, &vl);
			uint64_t n = kl == plen + 8 ? get_u64be(k + plen) : 0;
			ProtobufCMessage *m = NULL;
			if (kl != plen + 8) {
				rc = STATUS_CORRUPTION;
			} else if (p == 0) {
				rc = codec_unpack(&skv__config__descriptor,
						  val, vl, &m);
				if (!rc && n == 0)
					rc = ((Skv__Config *)m)->num == 0 ?
						     STATUS_OK :
						     STATUS_CORRUPTION;
				else if (!rc)
					rc = ((Skv__Config *)m)->num != n ?
						     STATUS_CORRUPTION :
						     sm_load_config(
							     s->sm,
							     (Skv__Config *)m);
			} else {
				rc = codec_unpack(&skv__sm_dedup__descriptor,
						  val, vl, &m);
				if (!rc) {
					Skv__SmDedup *d = (Skv__SmDedup *)m;
					struct sm_outcome o = {
						.status = (int)d->status,
						.config_num = d->config_num,
					};
					snprintf(o.error, sizeof(o.error),
						 "%s", d->error);
					rc = sm_load_dedup(s->sm, n, d->seq,
							   &o);
				}
			}
			codec_free(m);
			if (rc == STATUS_INVALID_ARGUMENT)
				rc = STATUS_CORRUPTION;
			if (rc)
				snprintf(errmsg, cap,
					 "meta key %s%" PRIu64 " is %s",
					 prefixes[p], n,
					 rc == STATUS_CORRUPTION ?
						 "corrupt" :
						 "unreadable (out of memory)");
		}
		if (rc == STATUS_OK && store_iter_status(it)) {
			rc = store_iter_status(it);
			snprintf(errmsg, cap, "reading %s*: %s", prefixes[p],
				 store_errmsg(s->store));
		}
		store_iter_free(it);
	}
	return rc;
}

/* ---- life cycle ---- */

int sm_service_new(const struct sm_service_opts *o, struct sm_service **out,
		   char *errmsg, size_t cap)
{
	*out = NULL;
	if (!o->store || !o->reply || o->n_nodes == 0 ||
	    o->n_nodes > RAFT_MAX_NODES || o->self_id == 0 ||
	    o->self_id > o->n_nodes || o->nshards > SM_SHARDS_MAX) {
		snprintf(errmsg, cap, "sm_service: bad options");
		return STATUS_INVALID_ARGUMENT;
	}
	struct sm_service *s = mem_calloc(1, sizeof(*s));
	if (!s || !(s->sm = sm_new())) {
		mem_free(s);
		snprintf(errmsg, cap, "sm_service: out of memory");
		return STATUS_NO_MEMORY;
	}
	raft_waits_init(&s->waits, sizeof(struct pending));
	raft_waits_init(&s->reads, sizeof(struct read_wait));
	s->store = o->store;
	s->self_id = o->self_id;
	s->n_nodes = o->n_nodes;
	s->nshards_init = o->nshards ? o->nshards : SM_SHARDS_DEFAULT;
	s->reply = o->reply;
	s->reply_arg = o->reply_arg;
	s->next_read_id = 1;
	buf_init(&s->scratch);
	for (size_t i = 0; i < o->n_nodes; i++) {
		if (o->addrs[i] && !(s->addrs[i] = mem_strdup(o->addrs[i]))) {
			sm_service_free(s);
			snprintf(errmsg, cap, "sm_service: out of memory");
			return STATUS_NO_MEMORY;
		}
	}
	int rc = load(s, errmsg, cap);
	if (rc) {
		sm_service_free(s);
		return rc;
	}
	*out = s;
	return STATUS_OK;
}

void sm_service_free(struct sm_service *s)
{
	if (!s)
		return;
	sm_free(s->sm);
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		mem_free(s->addrs[i]);
	raft_waits_free(&s->waits);
	raft_waits_free(&s->reads);
	buf_free(&s->scratch);
	mem_free(s);
}

const struct sm *sm_service_sm(const struct sm_service *s)
{
	return s->sm;
}

size_t sm_service_pending(const struct sm_service *s)
{
	return raft_waits_count(&s->waits) + raft_waits_count(&s->reads);
}

struct fail_ctx {
	struct sm_service *s;
	int status;
};

static void fail_one(void *arg, void *item)
{
	const struct fail_ctx *f = arg;
	send_reply(f->s, ((const struct raft_wait *)item)->token, f->status,
		   status_str(f->status), NULL);
}

void sm_service_fail_all(struct sm_service *s, int status)
{
	struct fail_ctx f = { s, status };
	raft_waits_take_all(&s->waits, fail_one, &f);
	raft_waits_take_all(&s->reads, fail_one, &f);
}

void sm_service_attach(struct sm_service *s, struct raft *r)
{
	if (!r)
		sm_service_fail_all(s, STATUS_UNAVAILABLE);
	s->r = r;
	s->init_term = 0;
}

/* ---- requests ---- */

static bool is_read(void *arg, const void *item)
{
	return ((const struct read_wait *)item)->read_id ==
	       *(const uint64_t *)arg;
}

static void request_query(struct sm_service *s, uint64_t token,
			  const Skv__QueryRequest *q)
{
	if (sm_nshards(s->sm) == 0) {
		send_reply(s, token, STATUS_NOT_READY,
			   "the shard master is not initialized yet", NULL);
		return;
	}
	struct read_wait w = {
		.w = { .token = token }, .read_id = s->next_read_id++,
		.num = q->num,
	};
	if (raft_waits_add(&s->reads, &w)) {
		send_reply(s, token, STATUS_NO_MEMORY, "out of memory", NULL);
		return;
	}
	int rc = raft_read_index(s->r, w.read_id);
	if (rc) {
		raft_waits_take_if(&s->reads, is_read, &w.read_id, &w);
		reply_refused(s, token, rc);
	}
}

static void request_update(struct sm_service *s, uint64_t token,
			   enum sm_method m, const ProtobufCMessage *req)
{
	char err[SM_ERROR_BYTES_MAX + 1];
	Skv__SmCommand cmd = SKV__SM_COMMAND__INIT;
	uint64_t client_id, seq;
	int rc;
	switch (m) {
	case SM_METHOD_JOIN: {
		const Skv__JoinRequest *r = (const Skv__JoinRequest *)req;
		rc = sm_check_join(r, err, sizeof(err));
		cmd.op_case = SKV__SM_COMMAND__OP_JOIN;
		cmd.join = (Skv__JoinRequest *)r;
		client_id = r->client_id;
		seq = r->seq;
		break;
	}
	case SM_METHOD_LEAVE: {
		const Skv__LeaveRequest *r = (const Skv__LeaveRequest *)req;
		rc = sm_check_leave(r, err, sizeof(err));
		cmd.op_case = SKV__SM_COMMAND__OP_LEAVE;
		cmd.leave = (Skv__LeaveRequest *)r;
		client_id = r->client_id;
		seq = r->seq;
		break;
	}
	default: {
		const Skv__MoveRequest *r = (const Skv__MoveRequest *)req;
		rc = sm_check_move(r, sm_nshards(s->sm), err, sizeof(err));
		cmd.op_case = SKV__SM_COMMAND__OP_MOVE;
		cmd.move = (Skv__MoveRequest *)r;
		client_id = r->client_id;
		seq = r->seq;
		break;
	}
	}
	if (rc) {
		/* Refused on its own: the same request always is, so a
		 * retry gets the same answer without a log entry. */
		send_reply(s, token, rc, err, NULL);
		return;
	}
	if (codec_pack(&cmd.base, &s->scratch)) {
		send_reply(s, token, STATUS_NO_MEMORY, "out of memory", NULL);
		return;
	}
	uint64_t index, term;
	rc = raft_propose(s->r, s->scratch.data, s->scratch.len, &index,
			  &term);
	if (rc) {
		reply_refused(s, token, rc);
		return;
	}
	struct pending p = {
		.w = { .token = token, .index = index, .term = term },
		.method = m, .client_id = client_id, .seq = seq,
	};
	/* Without a wait the entry still applies once; the clerk retries
	 * the same seq and gets its outcome from the dedup table. */
	if (raft_waits_add(&s->waits, &p))
		send_reply(s, token, STATUS_NO_MEMORY, "out of memory", NULL);
}

void sm_service_request(struct sm_service *s, uint64_t token,
			enum sm_method m, const ProtobufCMessage *req)
{
	if (!sm_method_request(m) || !req ||
	    req->descriptor != sm_method_request(m)) {
		send_reply(s, token, STATUS_INVALID_ARGUMENT,
			   "unknown method or wrong request type", NULL);
		return;
	}
	if (!s->r) {
		send_reply(s, token, STATUS_UNAVAILABLE,
			   "this replica is not running", NULL);
		return;
	}
	if (raft_role(s->r) != RAFT_LEADER) {
		reply_not_leader(s, token);
		return;
	}
	if (m == SM_METHOD_QUERY)
		request_query(s, token, (const Skv__QueryRequest *)req);
	else
		request_update(s, token, m, req);
}

static void not_leader_one(void *arg, void *item)
{
	reply_not_leader(arg, ((const struct pending *)item)->w.token);
}

void sm_service_after_process(struct sm_service *s)
{
	if (!s->r)
		return;
	bool leader = raft_role(s->r) == RAFT_LEADER;
	uint64_t term = raft_term(s->r);
	/* Proposals of a term this node no longer leads may never apply
	 * here: the clerk retries them (exactly-once by client id + seq). */
	raft_waits_fail_stale(&s->waits, leader, term, not_leader_one, s);
	if (leader && sm_nshards(s->sm) == 0 && s->init_term != term) {
		Skv__InitRequest init = SKV__INIT_REQUEST__INIT;
		Skv__SmCommand cmd = SKV__SM_COMMAND__INIT;
		init.nshards = s->nshards_init;
		cmd.op_case = SKV__SM_COMMAND__OP_INIT;
		cmd.init = &init;
		uint64_t index, t;
		if (codec_pack(&cmd.base, &s->scratch) == STATUS_OK &&
		    raft_propose(s->r, s->scratch.data, s->scratch.len, &index,
				 &t) == STATUS_OK) {
			s->init_term = term;
			log_info("sm", "proposing a new shard master with %u "
				       "shards",
				 s->nshards_init);
		}
	}
}

/* ---- Raft state machine callbacks ---- */

/* What decides the waits at one index. */
struct decision {
	const Skv__SmCommand *cmd; /* NULL: passed over */
	const struct sm_outcome *o;
};

static bool same_request(const struct pending *p, const Skv__SmCommand *c)
{
	switch (c->op_case) {
	case SKV__SM_COMMAND__OP_JOIN:
		return p->method == SM_METHOD_JOIN &&
		       p->client_id == c->join->client_id &&
		       p->seq == c->join->seq;
	case SKV__SM_COMMAND__OP_LEAVE:
		return p->method == SM_METHOD_LEAVE &&
		       p->client_id == c->leave->client_id &&
		       p->seq == c->leave->seq;
	case SKV__SM_COMMAND__OP_MOVE:
		return p->method == SM_METHOD_MOVE &&
		       p->client_id == c->move->client_id &&
		       p->seq == c->move->seq;
	default:
		return false;
	}
}

/* Decides what waits for `index` (and anything before it that was
 * skipped) now that the entry at `index` applied as `cmd` (NULL: passed
 * over by a snapshot). */
static bool is_own(void *arg, const void *item)
{
	const struct decision *d = arg;
	return d->cmd && same_request(item, d->cmd);
}

static void set_outcome(void *arg, void *item, bool own)
{
	const struct decision *d = arg;
	struct pending *p = item;
	if (own) {
		p->outcome = *d->o;
	} else {
		memset(&p->outcome, 0, sizeof(p->outcome));
		p->outcome.status = STATUS_NOT_LEADER;
		snprintf(p->outcome.error, sizeof(p->outcome.error),
			 "not the leader");
	}
}

static void decide(struct sm_service *s, uint64_t index,
		   const Skv__SmCommand *cmd, const struct sm_outcome *o)
{
	struct decision d = { cmd, o };
	raft_waits_decide(&s->waits, index, is_own, set_outcome, &d);
}

static void fsm_apply(void *ctx, uint64_t index, const void *data, size_t len,
		      struct store_batch *b)
{
	struct sm_service *s = ctx;
	ProtobufCMessage *m = NULL;
	if (codec_unpack(&skv__sm_command__descriptor, data, len, &m)) {
		/* Only this service proposes; every replica skips it the
		 * same way. */
		log_error("sm", "entry %" PRIu64 " is not a shard-master "
				"command; skipped",
			  index);
		decide(s, index, NULL, NULL);
		return;
	}
	const Skv__SmCommand *cmd = (const Skv__SmCommand *)m;
	struct sm_effects fx;
	if (sm_apply(s->sm, cmd, &fx))
		log_fatal("sm", "out of memory applying entry %" PRIu64,
			  index);
	int rc = STATUS_OK;
	if (fx.initialized) {
		uint8_t v[4];
		put_u32be(v, sm_nshards(s->sm));
		store_batch_put(b, STORE_CF_META, KEY_NSHARDS,
				sizeof(KEY_NSHARDS) - 1, v, sizeof(v));
		log_info("sm", "initialized with %u shards",
			 sm_nshards(s->sm));
	}
	if (fx.config_added)
		rc = put_config(s, b, sm_config(s->sm, -1));
	if (!rc && fx.dedup_changed)
		rc = put_dedup(s, b, fx.client_id);
	if (rc)
		log_fatal("sm", "cannot encode the state of entry %" PRIu64
				": %s",
			  index, status_str(rc));
	if (fx.config_added && !fx.initialized)
		log_info("sm", "config %" PRIu64 " (%s)",
			 sm_latest_num(s->sm),
			 cmd->op_case == SKV__SM_COMMAND__OP_JOIN    ? "join" :
			 cmd->op_case == SKV__SM_COMMAND__OP_LEAVE ? "leave" :
								      "move");
	decide(s, index, cmd, &fx.outcome);
	codec_free(m);
}

static void fsm_restore(void *ctx, uint64_t index)
{
	struct sm_service *s = ctx;
	char err[256];
	if (load(s, err, sizeof(err)))
		log_fatal("sm", "cannot load the state of snapshot %" PRIu64
				": %s",
			  index, err);
	/* Requests whose entries the snapshot covers never apply here. */
	decide(s, index, NULL, NULL);
	log_info("sm", "installed a snapshot at index %" PRIu64
		       ", config %" PRIu64,
		 index, sm_latest_num(s->sm));
}

static void answer_one(void *arg, void *item)
{
	struct sm_service *s = arg;
	const struct pending *p = item;
	const struct sm_config *c =
		p->outcome.status == STATUS_NOT_LEADER ?
			NULL :
			sm_config(s->sm, (int64_t)p->outcome.config_num);
	send_reply(s, p->w.token, p->outcome.status, p->outcome.error, c);
}

static void fsm_durable(void *ctx, uint64_t applied_index)
{
	struct sm_service *s = ctx;
	raft_waits_release(&s->waits, applied_index, answer_one, s);
}

static void fsm_read_done(void *ctx, uint64_t id, int status)
{
	struct sm_service *s = ctx;
	struct read_wait w;
	if (!raft_waits_take_if(&s->reads, is_read, &id, &w))
		return;
	if (status == STATUS_NOT_LEADER)
		reply_not_leader(s, w.w.token);
	else if (status != STATUS_OK)
		send_reply(s, w.w.token, status, status_str(status), NULL);
	else if (sm_nshards(s->sm) == 0)
		send_reply(s, w.w.token, STATUS_NOT_READY,
			   "the shard master is not initialized yet", NULL);
	else
		send_reply(s, w.w.token, STATUS_OK, "",
			   sm_config(s->sm, w.num));
}

const struct raft_fsm_ops sm_service_fsm = {
	.apply = fsm_apply,
	.restore = fsm_restore,
	.durable = fsm_durable,
	.read_done = fsm_read_done,
};
