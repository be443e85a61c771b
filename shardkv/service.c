/*
 * skv_service: client operations and shard migration of one group
 * replica over Raft and the store (service.h).
 */
#include "shardkv/service.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/raft/waits.h"
#include "common/shard.h"
#include "common/status.h"

#define KEY_CONFIG "kv/config"
#define KEY_HOLDERS "kv/holders"
#define KEY_SHARD "kv/shard/"
#define KEY_DEDUP "kv/dedup/"
#define PULL_PAGE_BYTES_DEFAULT (4u << 20)

/* ---- method table ---- */

static const struct {
	const char *path, *name;
	const ProtobufCMessageDescriptor *req, *rep;
} methods[SKV_METHOD_COUNT + 1] = {
	[SKV_METHOD_GET] = { "/skv.ShardKV/Get", "get",
			     &skv__kv_request__descriptor,
			     &skv__kv_reply__descriptor },
	[SKV_METHOD_PUT] = { "/skv.ShardKV/Put", "put",
			     &skv__kv_request__descriptor,
			     &skv__kv_reply__descriptor },
	[SKV_METHOD_APPEND] = { "/skv.ShardKV/Append", "append",
				&skv__kv_request__descriptor,
				&skv__kv_reply__descriptor },
	[SKV_METHOD_DELETE] = { "/skv.ShardKV/Delete", "delete",
				&skv__kv_request__descriptor,
				&skv__kv_reply__descriptor },
	[SKV_METHOD_PULL_SHARD] = { "/skv.ShardKV/PullShard", "pull_shard",
				    &skv__pull_shard_request__descriptor,
				    &skv__pull_shard_reply__descriptor },
	[SKV_METHOD_DELETE_SHARD] = { "/skv.ShardKV/DeleteShard",
				      "delete_shard",
				      &skv__delete_shard_request__descriptor,
				      &skv__delete_shard_reply__descriptor },
};

static bool method_ok(enum skv_method m)
{
	return m >= SKV_METHOD_GET && m <= SKV_METHOD_DELETE_SHARD;
}

const char *skv_method_path(enum skv_method m)
{
	return method_ok(m) ? methods[m].path : NULL;
}

const ProtobufCMessageDescriptor *skv_method_request(enum skv_method m)
{
	return method_ok(m) ? methods[m].req : NULL;
}

const ProtobufCMessageDescriptor *skv_method_reply(enum skv_method m)
{
	return method_ok(m) ? methods[m].rep : NULL;
}

const char *skv_method_name(enum skv_method m)
{
	return method_ok(m) ? methods[m].name : "?";
}

/* ---- state ---- */

/* A client write or a DeleteShard proposed at `index` in `term`. */
struct pending {
	struct raft_wait w;	 /* token, index, term, decided */
	enum skv_method method;
	uint64_t client_id, seq; /* writes */
	uint64_t config_num;	 /* DeleteShard */
	uint32_t shard;		 /* DeleteShard */
	int status;		 /* when decided */
};

/* A Get waiting for its read index. */
struct read_wait {
	struct raft_wait w; /* token */
	uint64_t read_id;
	uint8_t *key; /* owned */
	size_t klen;
};

/* What the apply batch wrote but the store does not have yet, so that a
 * later entry of the same batch reads it (an Append after a Put). A
 * batch may hold a whole pulled page (tens of thousands of keys), so
 * lookups go through a hash index, not a scan. */
struct overlay_ent {
	uint8_t *dkey; /* data CF key */
	size_t dklen;
	uint8_t *val;
	size_t vlen;
	bool present;
};

struct overlay {
	struct overlay_ent *ents;
	size_t n, cap;
	uint32_t *slots; /* open addressing: entry index + 1, 0 = empty */
	size_t n_slots;	 /* 0 or a power of two, > 2 n */
	uint32_t *cleared; /* shards deleted in this batch */
	size_t n_cleared, cap_cleared;
};

struct skv_service {
	struct store *store;
	uint64_t gid;
	uint32_t self_id;
	char *addrs[RAFT_MAX_NODES];
	size_t n_nodes;
	size_t page_bytes;
	skv_reply_fn reply;
	void *reply_arg;
	skv_call_fn call;
	void *call_arg;

	struct skv *kv;
	struct skv_migrate *mig;
	struct raft *r;

	struct raft_waits waits; /* of struct pending */
	struct raft_waits reads; /* of struct read_wait */
	uint64_t next_read_id;

	struct overlay ov;
	struct skv_changes ch;
	struct buf scratch, val, dkey, prop;
	struct skv_service_stats stats;
};

/* ---- keys ---- */

static int data_key(struct buf *out, uint32_t shard, const void *key,
		    size_t klen)
{
	buf_reset(out);
	if (buf_append_u32be(out, shard) || buf_append(out, key, klen))
		return STATUS_NO_MEMORY;
	return STATUS_OK;
}

static void shard_key(uint8_t out[sizeof(KEY_SHARD) - 1 + 4], uint32_t shard)
{
	memcpy(out, KEY_SHARD, sizeof(KEY_SHARD) - 1);
	put_u32be(out + sizeof(KEY_SHARD) - 1, shard);
}

#define DEDUP_KEY_LEN (sizeof(KEY_DEDUP) - 1 + 4 + 8)
static void dedup_key(uint8_t out[DEDUP_KEY_LEN], uint32_t shard,
		      uint64_t client_id)
{
	memcpy(out, KEY_DEDUP, sizeof(KEY_DEDUP) - 1);
	put_u32be(out + sizeof(KEY_DEDUP) - 1, shard);
	put_u64be(out + sizeof(KEY_DEDUP) - 1 + 4, client_id);
}

/* ---- overlay ---- */

/* Slots kept across batches up to this many; a bigger index (after a
 * large page) is dropped at the end of its batch. */
#define OVERLAY_SLOTS_KEPT 1024

static void overlay_clear(struct overlay *o)
{
	for (size_t i = 0; i < o->n; i++) {
		mem_free(o->ents[i].dkey);
		mem_free(o->ents[i].val);
	}
	o->n = 0;
	o->n_cleared = 0;
	if (o->n_slots > OVERLAY_SLOTS_KEPT) {
		mem_free(o->slots);
		o->slots = NULL;
		o->n_slots = 0;
	} else if (o->n_slots) {
		memset(o->slots, 0, o->n_slots * sizeof(*o->slots));
	}
}

static void overlay_free(struct overlay *o)
{
	overlay_clear(o);
	mem_free(o->ents);
	mem_free(o->slots);
	mem_free(o->cleared);
}

/* The slot of dkey: its entry's, or the empty one where it would go. */
static uint32_t *overlay_slot(const struct overlay *o, const void *dkey,
			      size_t dklen)
{
	size_t mask = o->n_slots - 1;
	for (size_t i = shard_hash(dkey, dklen) & mask;; i = (i + 1) & mask) {
		uint32_t v = o->slots[i];
		if (v == 0)
			return &o->slots[i];
		const struct overlay_ent *e = &o->ents[v - 1];
		if (e->dklen == dklen && memcmp(e->dkey, dkey, dklen) == 0)
			return &o->slots[i];
	}
}

/* Rebuilds the index for the entries there are, with room to grow. */
static void overlay_reindex(struct overlay *o, size_t want)
{
	size_t n = 64;
	while (n <= 2 * want)
		n *= 2;
	if (n != o->n_slots) {
		mem_free(o->slots);
		o->slots = mem_calloc(n, sizeof(*o->slots));
		if (!o->slots)
			log_fatal("kv", "out of memory applying a batch");
		o->n_slots = n;
	} else {
		memset(o->slots, 0, n * sizeof(*o->slots));
	}
	for (size_t i = 0; i < o->n; i++)
		*overlay_slot(o, o->ents[i].dkey, o->ents[i].dklen) =
			(uint32_t)(i + 1);
}

static struct overlay_ent *overlay_find(struct overlay *o, const void *dkey,
					size_t dklen)
{
	if (o->n == 0)
		return NULL;
	uint32_t v = *overlay_slot(o, dkey, dklen);
	return v ? &o->ents[v - 1] : NULL;
}

static void overlay_set(struct overlay *o, const void *dkey, size_t dklen,
			const void *val, size_t vlen, bool present)
{
	struct overlay_ent *e = overlay_find(o, dkey, dklen);
	if (!e) {
		if (!mem_grow((void **)&o->ents, &o->cap, o->n + 1,
			      sizeof(*o->ents)))
			log_fatal("kv", "out of memory applying a batch");
		if (2 * (o->n + 1) >= o->n_slots)
			overlay_reindex(o, 2 * (o->n + 1));
		e = &o->ents[o->n];
		memset(e, 0, sizeof(*e));
		if (!(e->dkey = mem_alloc(dklen ? dklen : 1)))
			log_fatal("kv", "out of memory applying a batch");
		memcpy(e->dkey, dkey, dklen);
		e->dklen = dklen;
		*overlay_slot(o, dkey, dklen) = (uint32_t)(o->n + 1);
		o->n++;
	}
	mem_free(e->val);
	e->val = NULL;
	e->vlen = 0;
	e->present = present;
	if (present) {
		if (!(e->val = mem_alloc(vlen ? vlen : 1)))
			log_fatal("kv", "out of memory applying a batch");
		memcpy(e->val, val, vlen);
		e->vlen = vlen;
	}
}

/* Drops a shard's entries and remembers it was cleared. */
static void overlay_clear_shard(struct overlay *o, uint32_t shard)
{
	size_t j = 0;
	for (size_t i = 0; i < o->n; i++) {
		if (get_u32be(o->ents[i].dkey) == shard) {
			mem_free(o->ents[i].dkey);
			mem_free(o->ents[i].val);
		} else {
			o->ents[j++] = o->ents[i];
		}
	}
	o->n = j;
	if (o->n_slots)
		overlay_reindex(o, o->n);
	if (!mem_grow((void **)&o->cleared, &o->cap_cleared, o->n_cleared + 1,
		  sizeof(*o->cleared)))
		log_fatal("kv", "out of memory applying a batch");
	o->cleared[o->n_cleared++] = shard;
}

/* The value of data key dkey as the batch so far leaves it: STATUS_OK
 * (in s->val), NOT_FOUND, or a store error (fatal for the caller). */
static int read_applied(struct skv_service *s, const void *dkey, size_t dklen)
{
	buf_reset(&s->val);
	struct overlay_ent *e = overlay_find(&s->ov, dkey, dklen);
	if (e) {
		if (!e->present)
			return STATUS_NOT_FOUND;
		return buf_set(&s->val, e->val, e->vlen);
	}
	uint32_t shard = get_u32be(dkey);
	for (size_t i = 0; i < s->ov.n_cleared; i++)
		if (s->ov.cleared[i] == shard)
			return STATUS_NOT_FOUND;
	return store_get(s->store, STORE_CF_DATA, dkey, dklen, &s->val);
}

static void batch_put_data(struct skv_service *s, struct store_batch *b,
			   const void *dkey, size_t dklen, const void *val,
			   size_t vlen)
{
	store_batch_put(b, STORE_CF_DATA, dkey, dklen, val, vlen);
	overlay_set(&s->ov, dkey, dklen, val, vlen, true);
}

/* ---- replies ---- */

static const char *leader_hint(const struct skv_service *s)
{
	if (!s->r)
		return NULL;
	uint32_t id = raft_leader(s->r);
	if (id == 0 || id > s->n_nodes || id == s->self_id)
		return NULL;
	return s->addrs[id - 1];
}

static void reply_kv(struct skv_service *s, uint64_t token, int status,
		     const char *error, const void *value, size_t vlen)
{
	Skv__KvReply rep = SKV__KV_REPLY__INIT;
	rep.status = (Skv__Status)status;
	rep.error = (char *)(error ? error : "");
	const char *hint = status == STATUS_NOT_LEADER ? leader_hint(s) : NULL;
	rep.leader_hint = (char *)(hint ? hint : "");
	rep.value.data = (uint8_t *)value;
	rep.value.len = value ? vlen : 0;
	s->reply(s->reply_arg, token, &rep.base);
}

static void reply_delete_shard(struct skv_service *s, uint64_t token,
			       int status, const char *error)
{
	Skv__DeleteShardReply rep = SKV__DELETE_SHARD_REPLY__INIT;
	rep.status = (Skv__Status)status;
	rep.error = (char *)(error ? error : "");
	const char *hint = status == STATUS_NOT_LEADER ? leader_hint(s) : NULL;
	rep.leader_hint = (char *)(hint ? hint : "");
	s->reply(s->reply_arg, token, &rep.base);
}

static void reply_pull(struct skv_service *s, uint64_t token, int status,
		       const char *error)
{
	Skv__PullShardReply rep = SKV__PULL_SHARD_REPLY__INIT;
	rep.status = (Skv__Status)status;
	rep.error = (char *)(error ? error : "");
	s->reply(s->reply_arg, token, &rep.base);
}

/* A status-only answer to a request of method `m`. */
static void reply_status(struct skv_service *s, uint64_t token,
			 enum skv_method m, int status, const char *error)
{
	if (!error)
		error = status == STATUS_NOT_LEADER ? "not the leader" :
						      status_str(status);
	if (m == SKV_METHOD_PULL_SHARD)
		reply_pull(s, token, status, error);
	else if (m == SKV_METHOD_DELETE_SHARD)
		reply_delete_shard(s, token, status, error);
	else
		reply_kv(s, token, status, error, NULL, 0);
}

static const char *op_error(int status)
{
	switch (status) {
	case STATUS_OK: return "";
	case STATUS_NOT_FOUND: return "no such key";
	case STATUS_WRONG_GROUP:
		return "this group does not serve the key's shard";
	case STATUS_NOT_READY:
		return "the key's shard is still arriving at this group";
	case STATUS_TOO_LARGE: return "the value would exceed the size limit";
	case STATUS_NOT_LEADER: return "not the leader";
	default: return status_str(status);
	}
}

/* ---- storage ---- */

static void put_msg(struct skv_service *s, struct store_batch *b,
		    const void *key, size_t klen, const ProtobufCMessage *m)
{
	if (codec_pack(m, &s->scratch))
		log_fatal("kv", "out of memory encoding state");
	store_batch_put(b, STORE_CF_META, key, klen, s->scratch.data,
			s->scratch.len);
}

static void put_dedup(struct skv_service *s, struct store_batch *b,
		      uint32_t shard, uint64_t client_id, uint64_t seq,
		      int status)
{
	Skv__DedupEntry d = SKV__DEDUP_ENTRY__INIT;
	d.client_id = client_id;
	d.seq = seq;
	d.status = (Skv__Status)status;
	uint8_t key[DEDUP_KEY_LEN];
	dedup_key(key, shard, client_id);
	put_msg(s, b, key, sizeof(key), &d.base);
}

static void put_shard(struct skv_service *s, struct store_batch *b,
		      uint32_t shard)
{
	Skv__ShardState st;
	uint8_t key[sizeof(KEY_SHARD) - 1 + 4];
	skv_shard_to_proto(s->kv, shard, &st);
	shard_key(key, shard);
	put_msg(s, b, key, sizeof(key), &st.base);
	skv_shard_proto_release(&st);
}

static void put_config(struct skv_service *s, struct store_batch *b)
{
	Skv__Config pc;
	Skv__ShardHolders h;
	if (sm_config_to_proto(skv_config(s->kv), &pc) ||
	    skv_holders_to_proto(s->kv, &h))
		log_fatal("kv", "out of memory encoding the configuration");
	put_msg(s, b, KEY_CONFIG, sizeof(KEY_CONFIG) - 1, &pc.base);
	put_msg(s, b, KEY_HOLDERS, sizeof(KEY_HOLDERS) - 1, &h.base);
	sm_config_proto_release(&pc);
	skv_holders_proto_release(&h);
}

/* Runs fn on every entry under `prefix` of the meta CF. */
static int load_prefix(struct skv_service *s, const char *prefix, size_t klen,
		       const ProtobufCMessageDescriptor *desc,
		       int (*fn)(struct skv_service *s, const uint8_t *k,
				 ProtobufCMessage *m),
		       char *errmsg, size_t cap)
{
	size_t plen = strlen(prefix);
	struct store_iter *it = store_iter_new(s->store, STORE_CF_META,
					       prefix, plen, NULL);
	if (!it) {
		snprintf(errmsg, cap, "no iterator: out of memory");
		return STATUS_NO_MEMORY;
	}
	int rc = STATUS_OK;
	for (; rc == STATUS_OK && store_iter_valid(it); store_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = store_iter_key(it, &kl);
		const void *v = store_iter_value(it, &vl);
		ProtobufCMessage *m = NULL;
		rc = kl != plen + klen ? STATUS_CORRUPTION :
					 codec_unpack(desc, v, vl, &m);
		if (rc == STATUS_OK)
			rc = fn(s, k + plen, m);
		codec_free(m);
		if (rc == STATUS_INVALID_ARGUMENT)
			rc = STATUS_CORRUPTION;
		if (rc)
			snprintf(errmsg, cap, "meta key %s<%zu bytes> is %s",
				 prefix, kl - plen,
				 rc == STATUS_CORRUPTION ? "corrupt" :
							   "unreadable");
	}
	if (rc == STATUS_OK && store_iter_status(it)) {
		rc = store_iter_status(it);
		snprintf(errmsg, cap, "reading %s*: %s", prefix,
			 store_errmsg(s->store));
	}
	store_iter_free(it);
	return rc;
}

static int load_shard_fn(struct skv_service *s, const uint8_t *k,
			 ProtobufCMessage *m)
{
	return skv_load_shard(s->kv, get_u32be(k), (Skv__ShardState *)m);
}

static int load_dedup_fn(struct skv_service *s, const uint8_t *k,
			 ProtobufCMessage *m)
{
	const Skv__DedupEntry *d = (const Skv__DedupEntry *)m;
	uint64_t id = get_u64be(k + 4);
	if (d->client_id != id)
		return STATUS_CORRUPTION;
	return skv_load_dedup(s->kv, get_u32be(k), id, d->seq,
			      (int)d->status);
}

/* Reads one packed message of meta key `key`; NOT_FOUND leaves *out
 * NULL. */
static int get_msg(struct skv_service *s, const char *key,
		   const ProtobufCMessageDescriptor *desc,
		   ProtobufCMessage **out, char *errmsg, size_t cap)
{
	*out = NULL;
	int rc = store_get(s->store, STORE_CF_META, key, strlen(key), &s->val);
	if (rc == STATUS_NOT_FOUND)
		return STATUS_OK;
	if (rc) {
		snprintf(errmsg, cap, "reading %s: %s", key,
			 store_errmsg(s->store));
		return rc;
	}
	rc = codec_unpack(desc, s->val.data, s->val.len, out);
	if (rc) {
		snprintf(errmsg, cap, "meta key %s is %s", key,
			 rc == STATUS_NO_MEMORY ? "unreadable (out of memory)" :
						  "corrupt");
		return rc == STATUS_NO_MEMORY ? rc : STATUS_CORRUPTION;
	}
	return STATUS_OK;
}

static int load(struct skv_service *s, char *errmsg, size_t cap)
{
	ProtobufCMessage *cfg = NULL, *hold = NULL;
	skv_reset(s->kv);
	int rc = get_msg(s, KEY_CONFIG, &skv__config__descriptor, &cfg, errmsg,
			 cap);
	if (!rc)
		rc = get_msg(s, KEY_HOLDERS, &skv__shard_holders__descriptor,
			     &hold, errmsg, cap);
	if (!rc && cfg) {
		rc = skv_load_config(s->kv, (Skv__Config *)cfg,
				     (Skv__ShardHolders *)hold);
		if (rc == STATUS_INVALID_ARGUMENT) {
			rc = STATUS_CORRUPTION;
			snprintf(errmsg, cap, "meta keys %s / %s are corrupt",
				 KEY_CONFIG, KEY_HOLDERS);
		} else if (rc) {
			snprintf(errmsg, cap, "loading %s: out of memory",
				 KEY_CONFIG);
		}
	}
	codec_free(cfg);
	codec_free(hold);
	if (!rc)
		rc = load_prefix(s, KEY_SHARD, 4,
				 &skv__shard_state__descriptor, load_shard_fn,
				 errmsg, cap);
	if (!rc)
		rc = load_prefix(s, KEY_DEDUP, 12,
				 &skv__dedup_entry__descriptor, load_dedup_fn,
				 errmsg, cap);
	return rc;
}

/* ---- life cycle ---- */

int skv_service_new(const struct skv_service_opts *o,
		    struct skv_service **out, char *errmsg, size_t cap)
{
	*out = NULL;
	if (!o->store || !o->reply || !o->call || o->gid == 0 ||
	    o->n_nodes == 0 || o->n_nodes > RAFT_MAX_NODES ||
	    o->self_id == 0 || o->self_id > o->n_nodes || o->n_masters == 0) {
		snprintf(errmsg, cap, "skv_service: bad options");
		return STATUS_INVALID_ARGUMENT;
	}
	struct skv_service *s = mem_calloc(1, sizeof(*s));
	if (!s) {
		snprintf(errmsg, cap, "skv_service: out of memory");
		return STATUS_NO_MEMORY;
	}
	s->store = o->store;
	s->gid = o->gid;
	s->self_id = o->self_id;
	s->n_nodes = o->n_nodes;
	s->page_bytes = o->pull_page_bytes ? o->pull_page_bytes :
					     PULL_PAGE_BYTES_DEFAULT;
	s->reply = o->reply;
	s->reply_arg = o->reply_arg;
	s->call = o->call;
	s->call_arg = o->call_arg;
	s->next_read_id = 1;
	raft_waits_init(&s->waits, sizeof(struct pending));
	raft_waits_init(&s->reads, sizeof(struct read_wait));
	buf_init(&s->scratch);
	buf_init(&s->val);
	buf_init(&s->dkey);
	buf_init(&s->prop);
	struct skv_migrate_opts mo = {
		.gid = o->gid,
		.masters = o->masters,
		.n_masters = o->n_masters,
		.seed = o->seed,
		.poll_ms = o->poll_ms,
		.call_timeout_ms = o->call_timeout_ms,
	};
	int rc = STATUS_NO_MEMORY;
	if (!(s->kv = skv_new(o->gid)) || skv_migrate_new(&mo, &s->mig))
		goto err;
	for (size_t i = 0; i < o->n_nodes; i++)
		if (o->addrs[i] && !(s->addrs[i] = mem_strdup(o->addrs[i])))
			goto err;
	rc = load(s, errmsg, cap);
	if (rc) {
		skv_service_free(s);
		return rc;
	}
	*out = s;
	return STATUS_OK;
err:
	snprintf(errmsg, cap, "skv_service: out of memory");
	skv_service_free(s);
	return rc;
}

static void free_read(void *arg, void *item)
{
	(void)arg;
	mem_free(((struct read_wait *)item)->key);
}

void skv_service_free(struct skv_service *s)
{
	if (!s)
		return;
	skv_free(s->kv);
	skv_migrate_free(s->mig);
	for (size_t i = 0; i < RAFT_MAX_NODES; i++)
		mem_free(s->addrs[i]);
	raft_waits_free(&s->waits);
	raft_waits_take_all(&s->reads, free_read, NULL);
	overlay_free(&s->ov);
	skv_changes_free(&s->ch);
	buf_free(&s->scratch);
	buf_free(&s->val);
	buf_free(&s->dkey);
	buf_free(&s->prop);
	mem_free(s);
}

const struct skv *skv_service_state(const struct skv_service *s)
{
	return s->kv;
}

size_t skv_service_pending(const struct skv_service *s)
{
	return raft_waits_count(&s->waits) + raft_waits_count(&s->reads);
}

void skv_service_stats(const struct skv_service *s,
		       struct skv_service_stats *out)
{
	*out = s->stats;
	out->calls_started = skv_migrate_calls(s->mig);
}

struct fail_ctx {
	struct skv_service *s;
	int status;
};

static void fail_one(void *arg, void *item)
{
	const struct fail_ctx *f = arg;
	const struct pending *p = item;
	reply_status(f->s, p->w.token, p->method, f->status, NULL);
}

static void fail_read(void *arg, void *item)
{
	const struct fail_ctx *f = arg;
	struct read_wait *w = item;
	reply_status(f->s, w->w.token, SKV_METHOD_GET, f->status, NULL);
	mem_free(w->key);
}

void skv_service_fail_all(struct skv_service *s, int status)
{
	struct fail_ctx f = { s, status };
	raft_waits_take_all(&s->waits, fail_one, &f);
	raft_waits_take_all(&s->reads, fail_read, &f);
}

void skv_service_attach(struct skv_service *s, struct raft *r)
{
	if (!r)
		skv_service_fail_all(s, STATUS_UNAVAILABLE);
	s->r = r;
	skv_migrate_reset(s->mig);
}

/* ---- migration driving ---- */

static bool leading(const struct skv_service *s)
{
	return s->r && raft_role(s->r) == RAFT_LEADER;
}

/* Runs the migration driver: its proposals go to Raft, its calls out. */
static void drive(struct skv_service *s, uint64_t now_ms)
{
	if (!s->r)
		return;
	skv_migrate_update(s->mig, now_ms, s->kv, leading(s),
			   raft_term(s->r));
	while (skv_migrate_next_proposal(s->mig, &s->prop)) {
		if (raft_propose(s->r, s->prop.data, s->prop.len, NULL,
				 NULL)) {
			skv_migrate_reset(s->mig);
			break;
		}
	}
	struct skv_migrate_call c;
	while (skv_migrate_next_call(s->mig, now_ms, &c))
		s->call(s->call_arg, c.id, c.addr, c.kind, c.bytes, c.len,
			c.timeout_ms);
}

void skv_service_tick(struct skv_service *s, uint64_t now_ms)
{
	drive(s, now_ms);
}

uint64_t skv_service_wake_ms(const struct skv_service *s)
{
	return s->r ? skv_migrate_wake_ms(s->mig) : UINT64_MAX;
}

void skv_service_call_done(struct skv_service *s, uint64_t now_ms,
			   uint64_t id, int status,
			   const ProtobufCMessage *reply)
{
	skv_migrate_call_done(s->mig, now_ms, s->kv, id, status, reply);
	drive(s, now_ms);
}

void skv_service_after_process(struct skv_service *s, uint64_t now_ms)
{
	if (!s->r)
		return;
	bool leader = leading(s);
	uint64_t term = raft_term(s->r);
	/* Proposals of a term this node no longer leads may never apply
	 * here: the clerk retries them (exactly-once by client id + seq). */
	struct fail_ctx f = { s, STATUS_NOT_LEADER };
	raft_waits_fail_stale(&s->waits, leader, term, fail_one, &f);
	drive(s, now_ms);
}

/* ---- requests ---- */

static int check_key(const ProtobufCBinaryData *key, const char **why)
{
	if (key->len == 0) {
		*why = "the key is empty";
		return STATUS_INVALID_ARGUMENT;
	}
	if (key->len > SHARD_KEY_BYTES_MAX) {
		*why = "the key is longer than 4096 bytes";
		return STATUS_TOO_LARGE;
	}
	return STATUS_OK;
}

static bool is_read(void *arg, const void *item)
{
	return ((const struct read_wait *)item)->read_id ==
	       *(const uint64_t *)arg;
}

static void request_get(struct skv_service *s, uint64_t token,
			const Skv__KvRequest *req)
{
	struct read_wait w = {
		.w = { .token = token }, .read_id = s->next_read_id++,
		.key = mem_alloc(req->key.len), .klen = req->key.len,
	};
	if (!w.key || raft_waits_add(&s->reads, &w)) {
		mem_free(w.key);
		reply_kv(s, token, STATUS_NO_MEMORY, "out of memory", NULL, 0);
		return;
	}
	memcpy(w.key, req->key.data, req->key.len);
	int rc = raft_read_index(s->r, w.read_id);
	if (rc) {
		raft_waits_take_if(&s->reads, is_read, &w.read_id, &w);
		mem_free(w.key);
		reply_kv(s, token, rc, NULL, NULL, 0);
	}
}

static void propose_pending(struct skv_service *s, uint64_t token,
			    const Skv__KvCommand *cmd, struct pending p)
{
	if (codec_pack(&cmd->base, &s->scratch)) {
		reply_status(s, token, p.method, STATUS_NO_MEMORY,
			     "out of memory");
		return;
	}
	int rc = raft_propose(s->r, s->scratch.data, s->scratch.len,
			      &p.w.index, &p.w.term);
	if (rc) {
		reply_status(s, token, p.method, rc, NULL);
		return;
	}
	p.w.token = token;
	/* Without a wait the entry still applies once; the clerk retries
	 * the same seq and gets its first answer from the dedup table. */
	if (raft_waits_add(&s->waits, &p))
		reply_status(s, token, p.method, STATUS_NO_MEMORY,
			     "out of memory");
}

static void request_write(struct skv_service *s, uint64_t token,
			  enum skv_method m, const Skv__KvRequest *req)
{
	if (req->seq == 0) {
		reply_kv(s, token, STATUS_INVALID_ARGUMENT,
			 "a write needs a sequence number above 0", NULL, 0);
		return;
	}
	if (m != SKV_METHOD_DELETE && req->value.len > SHARD_VALUE_BYTES_MAX) {
		reply_kv(s, token, STATUS_TOO_LARGE,
			 "the value is longer than 1 MiB", NULL, 0);
		return;
	}
	Skv__KvRequest op = *req;
	op.op = m == SKV_METHOD_PUT	? SKV__OP__OP_PUT :
		m == SKV_METHOD_APPEND	? SKV__OP__OP_APPEND :
					  SKV__OP__OP_DELETE;
	if (m == SKV_METHOD_DELETE)
		op.value.len = 0;
	op.config_num = 0;
	Skv__KvCommand cmd = SKV__KV_COMMAND__INIT;
	cmd.cmd_case = SKV__KV_COMMAND__CMD_OP;
	cmd.op = &op;
	propose_pending(s, token, &cmd,
			(struct pending){ .method = m,
					  .client_id = req->client_id,
					  .seq = req->seq });
}

static void request_pull(struct skv_service *s, uint64_t token,
			 const Skv__PullShardRequest *req)
{
	const char *why;
	int rc = skv_pull_check(s->kv, req->config_num, req->shard, req->gid,
				&why);
	if (rc) {
		reply_pull(s, token, rc, why);
		return;
	}
	Skv__PullShardReply rep = SKV__PULL_SHARD_REPLY__INIT;
	rep.config_num = req->config_num;
	rep.shard = req->shard;
	uint8_t prefix[4];
	put_u32be(prefix, req->shard);
	struct store_iter *it = store_iter_new(s->store, STORE_CF_DATA, prefix,
					       sizeof(prefix), NULL);
	Skv__KeyValue *kvs = NULL, **kvp = NULL;
	size_t n = 0, cap = 0, bytes = 0;
	struct buf page;
	buf_init(&page);
	if (!it) {
		reply_pull(s, token, STATUS_NO_MEMORY, "out of memory");
		return;
	}
	if (req->after.len) {
		if (data_key(&s->dkey, req->shard, req->after.data,
			     req->after.len)) {
			rc = STATUS_NO_MEMORY;
			goto out;
		}
		store_iter_seek(it, s->dkey.data, s->dkey.len);
		if (store_iter_valid(it)) {
			size_t kl;
			const void *k = store_iter_key(it, &kl);
			if (kl == s->dkey.len &&
			    memcmp(k, s->dkey.data, kl) == 0)
				store_iter_next(it);
		}
	}
	/* First pass: offsets into one page buffer (its data may move while
	 * it grows); pointers are fixed up after. */
	for (; store_iter_valid(it) && (n == 0 || bytes < s->page_bytes);
	     store_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = store_iter_key(it, &kl);
		const void *v = store_iter_value(it, &vl);
		if (!mem_grow((void **)&kvs, &cap, n + 1, sizeof(*kvs)) ||
		    buf_append(&page, k + 4, kl - 4) ||
		    buf_append(&page, v, vl)) {
			rc = STATUS_NO_MEMORY;
			goto out;
		}
		skv__key_value__init(&kvs[n]);
		kvs[n].key.len = kl - 4;
		kvs[n].value.len = vl;
		n++;
		bytes += kl + vl;
	}
	if ((rc = store_iter_status(it))) {
		log_error("kv", "reading shard %" PRIu32 " for a pull: %s",
			  req->shard, store_errmsg(s->store));
		goto out;
	}
	rep.more = store_iter_valid(it);
	if (n && !(kvp = mem_calloc(n, sizeof(*kvp)))) {
		rc = STATUS_NO_MEMORY;
		goto out;
	}
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		kvs[i].key.data = page.data + off;
		off += kvs[i].key.len;
		kvs[i].value.data = page.data + off;
		off += kvs[i].value.len;
		kvp[i] = &kvs[i];
	}
	rep.data = kvp;
	rep.n_data = n;
	Skv__DedupEntry **dd = NULL;
	size_t nd = 0;
	if (!rep.more &&
	    (rc = skv_dedup_list(s->kv, req->shard, &dd, &nd)))
		goto out;
	rep.dedup = dd;
	rep.n_dedup = nd;
	rep.status = SKV__STATUS__STATUS_OK;
	rep.error = "";
	s->stats.pulls_served++;
	s->reply(s->reply_arg, token, &rep.base);
	skv_dedup_list_free(dd, nd);
out:
	if (rc)
		reply_pull(s, token, rc, status_str(rc));
	store_iter_free(it);
	mem_free(kvs);
	mem_free(kvp);
	buf_free(&page);
}

static void request_delete_shard(struct skv_service *s, uint64_t token,
				 const Skv__DeleteShardRequest *req)
{
	bool propose;
	int rc = skv_delete_check(s->kv, req->config_num, req->shard,
				  req->gid, &propose);
	if (rc || !propose) {
		reply_delete_shard(s, token, rc, rc ? status_str(rc) : "");
		return;
	}
	if (!leading(s)) {
		reply_delete_shard(s, token, STATUS_NOT_LEADER,
				   "not the leader");
		return;
	}
	Skv__ShardRef ref = SKV__SHARD_REF__INIT;
	ref.config_num = req->config_num;
	ref.shard = req->shard;
	Skv__KvCommand cmd = SKV__KV_COMMAND__INIT;
	cmd.cmd_case = SKV__KV_COMMAND__CMD_DELETE_SHARD;
	cmd.delete_shard = &ref;
	propose_pending(s, token, &cmd,
			(struct pending){ .method = SKV_METHOD_DELETE_SHARD,
					  .config_num = req->config_num,
					  .shard = req->shard });
}

void skv_service_request(struct skv_service *s, uint64_t now_ms,
			 uint64_t token, enum skv_method m,
			 const ProtobufCMessage *req)
{
	(void)now_ms;
	if (!method_ok(m) || !req || req->descriptor != methods[m].req) {
		reply_status(s, token, method_ok(m) ? m : SKV_METHOD_GET,
			     STATUS_INVALID_ARGUMENT,
			     "unknown method or wrong request type");
		return;
	}
	if (!s->r) {
		reply_status(s, token, m, STATUS_UNAVAILABLE,
			     "this replica is not running");
		return;
	}
	if (m == SKV_METHOD_PULL_SHARD) {
		request_pull(s, token, (const Skv__PullShardRequest *)req);
		return;
	}
	if (m == SKV_METHOD_DELETE_SHARD) {
		request_delete_shard(s, token,
				     (const Skv__DeleteShardRequest *)req);
		return;
	}
	const Skv__KvRequest *kr = (const Skv__KvRequest *)req;
	const char *why;
	int rc = check_key(&kr->key, &why);
	if (rc) {
		reply_kv(s, token, rc, why, NULL, 0);
		return;
	}
	if (!leading(s)) {
		reply_kv(s, token, STATUS_NOT_LEADER, NULL, NULL, 0);
		return;
	}
	if (kr->config_num > skv_config_num(s->kv)) {
		/* The clerk routes by a newer configuration than this group
		 * has applied: it is behind, not wrong. */
		reply_kv(s, token, STATUS_NOT_READY,
			 "this group has not reached the client's "
			 "configuration yet",
			 NULL, 0);
		return;
	}
	if (m == SKV_METHOD_GET)
		request_get(s, token, kr);
	else
		request_write(s, token, m, kr);
}

/* ---- Raft state machine callbacks ---- */

/* Decides what waits for `index` (and anything before it that was passed
 * over) now that the entry at `index` applied: `same` says whether it is
 * the proposal waiting there. */
struct decision {
	bool (*same)(const struct pending *p, const void *cmd);
	const void *cmd;
	int status;
};

static bool is_own(void *arg, const void *item)
{
	const struct decision *d = arg;
	return d->same && d->same(item, d->cmd);
}

static void set_status(void *arg, void *item, bool own)
{
	const struct decision *d = arg;
	((struct pending *)item)->status = own ? d->status : STATUS_NOT_LEADER;
}

static void decide(struct skv_service *s, uint64_t index,
		   bool (*same)(const struct pending *p, const void *cmd),
		   const void *cmd, int status)
{
	struct decision d = { same, cmd, status };
	raft_waits_decide(&s->waits, index, is_own, set_status, &d);
}

static bool same_op(const struct pending *p, const void *cmd)
{
	const Skv__KvRequest *r = cmd;
	return p->method != SKV_METHOD_DELETE_SHARD &&
	       p->client_id == r->client_id && p->seq == r->seq;
}

static bool same_delete(const struct pending *p, const void *cmd)
{
	const Skv__ShardRef *r = cmd;
	return p->method == SKV_METHOD_DELETE_SHARD &&
	       p->config_num == r->config_num && p->shard == r->shard;
}

/* Applies one client write; returns its status. */
static int apply_op(struct skv_service *s, const Skv__KvRequest *r,
		    struct store_batch *b)
{
	uint32_t n = skv_nshards(s->kv);
	if (r->key.len == 0 || r->key.len > SHARD_KEY_BYTES_MAX ||
	    r->value.len > SHARD_VALUE_BYTES_MAX)
		return STATUS_INVALID_ARGUMENT;
	if (n == 0)
		return STATUS_WRONG_GROUP;
	uint32_t shard = shard_for_key(r->key.data, r->key.len, n);
	int status;
	switch (skv_op_check(s->kv, shard, r->client_id, r->seq, &status)) {
	case SKV_OP_WRONG_GROUP: return STATUS_WRONG_GROUP;
	case SKV_OP_NOT_READY: return STATUS_NOT_READY;
	case SKV_OP_DUPLICATE: return status;
	case SKV_OP_APPLY: break;
	}
	if (data_key(&s->dkey, shard, r->key.data, r->key.len))
		log_fatal("kv", "out of memory applying a write");
	int rc = STATUS_OK;
	switch (r->op) {
	case SKV__OP__OP_PUT:
		batch_put_data(s, b, s->dkey.data, s->dkey.len, r->value.data,
			       r->value.len);
		status = STATUS_OK;
		break;
	case SKV__OP__OP_APPEND:
		rc = read_applied(s, s->dkey.data, s->dkey.len);
		if (rc == STATUS_NOT_FOUND)
			rc = STATUS_OK;
		if (rc)
			break;
		if (s->val.len + r->value.len > SHARD_VALUE_BYTES_MAX) {
			status = STATUS_TOO_LARGE;
			break;
		}
		if (buf_append(&s->val, r->value.data, r->value.len))
			log_fatal("kv", "out of memory applying an append");
		batch_put_data(s, b, s->dkey.data, s->dkey.len, s->val.data,
			       s->val.len);
		status = STATUS_OK;
		break;
	case SKV__OP__OP_DELETE:
		rc = read_applied(s, s->dkey.data, s->dkey.len);
		if (rc == STATUS_NOT_FOUND) {
			rc = STATUS_OK;
			status = STATUS_NOT_FOUND;
			break;
		}
		if (rc)
			break;
		store_batch_delete(b, STORE_CF_DATA, s->dkey.data,
				   s->dkey.len);
		overlay_set(&s->ov, s->dkey.data, s->dkey.len, NULL, 0, false);
		status = STATUS_OK;
		break;
	default:
		return STATUS_INVALID_ARGUMENT;
	}
	if (rc)
		log_fatal("kv", "reading the store while applying: %s",
			  store_errmsg(s->store));
	if (skv_dedup_record(s->kv, shard, r->client_id, r->seq, status))
		log_fatal("kv", "out of memory recording a write");
	put_dedup(s, b, shard, r->client_id, r->seq, status);
	return status;
}

static void persist_changes(struct skv_service *s, struct store_batch *b)
{
	for (size_t i = 0; i < s->ch.n_shards; i++)
		put_shard(s, b, s->ch.shards[i]);
}

static void log_config(struct skv_service *s)
{
	char in[128] = "", out[128] = "";
	size_t li = 0, lo = 0;
	for (size_t i = 0; i < s->ch.n_shards; i++) {
		struct skv_shard_info info;
		uint32_t sh = s->ch.shards[i];
		skv_shard(s->kv, sh, &info);
		if (info.state == SKV_SHARD_PULLING && li < sizeof(in) - 12)
			li += (size_t)snprintf(in + li, sizeof(in) - li,
					       "%s%" PRIu32, li ? "," : "",
					       sh);
		else if (info.state == SKV_SHARD_BEPULLING &&
			 lo < sizeof(out) - 12)
			lo += (size_t)snprintf(out + lo, sizeof(out) - lo,
					       "%s%" PRIu32, lo ? "," : "",
					       sh);
	}
	log_info("kv", "gid %" PRIu64 ": config %" PRIu64
		       " applied; pulling shards [%s], handing over [%s]",
		 s->gid, skv_config_num(s->kv), in, out);
}

static void apply_config(struct skv_service *s, const Skv__Config *c,
			 struct store_batch *b)
{
	int rc = skv_apply_config(s->kv, c, &s->ch);
	if (rc == STATUS_NO_MEMORY)
		log_fatal("kv", "out of memory applying config %" PRIu64,
			  c->num);
	if (rc == STATUS_INVALID_ARGUMENT)
		log_error("kv", "config %" PRIu64 " is malformed; ignored",
			  c->num);
	if (rc)
		return;
	put_config(s, b);
	persist_changes(s, b);
	s->stats.configs_applied++;
	log_config(s);
}

static void apply_insert(struct skv_service *s, const Skv__InsertShard *ins,
			 struct store_batch *b)
{
	int rc = skv_apply_insert(s->kv, ins, &s->ch);
	if (rc == STATUS_NO_MEMORY)
		log_fatal("kv", "out of memory inserting shard %" PRIu32,
			  ins->shard);
	if (rc)
		return;
	for (size_t i = 0; i < ins->n_data; i++) {
		const Skv__KeyValue *kv = ins->data[i];
		if (kv->key.len == 0 || kv->key.len > SHARD_KEY_BYTES_MAX)
			continue;
		if (data_key(&s->dkey, ins->shard, kv->key.data, kv->key.len))
			log_fatal("kv", "out of memory inserting a shard");
		batch_put_data(s, b, s->dkey.data, s->dkey.len,
			       kv->value.data, kv->value.len);
	}
	if (!ins->last)
		return;
	for (size_t i = 0; i < ins->n_dedup; i++)
		put_dedup(s, b, ins->shard, ins->dedup[i]->client_id,
			  ins->dedup[i]->seq, (int)ins->dedup[i]->status);
	persist_changes(s, b);
	s->stats.shards_inserted++;
	log_info("kv", "gid %" PRIu64 ": shard %" PRIu32 " of config %" PRIu64
		       " arrived; serving it",
		 s->gid, ins->shard, ins->config_num);
}

static int apply_delete(struct skv_service *s, const Skv__ShardRef *ref,
			struct store_batch *b)
{
	int rc = skv_apply_delete(s->kv, ref->config_num, ref->shard, &s->ch);
	if (rc)
		return STATUS_OK; /* deleted before */
	uint8_t lo[4], hi[4];
	put_u32be(lo, ref->shard);
	put_u32be(hi, ref->shard + 1);
	store_batch_delete_range(b, STORE_CF_DATA, lo, sizeof(lo), hi,
				 sizeof(hi));
	uint8_t dlo[sizeof(KEY_DEDUP) - 1 + 4], dhi[sizeof(KEY_DEDUP) - 1 + 4];
	memcpy(dlo, KEY_DEDUP, sizeof(KEY_DEDUP) - 1);
	memcpy(dhi, KEY_DEDUP, sizeof(KEY_DEDUP) - 1);
	memcpy(dlo + sizeof(KEY_DEDUP) - 1, lo, 4);
	memcpy(dhi + sizeof(KEY_DEDUP) - 1, hi, 4);
	store_batch_delete_range(b, STORE_CF_META, dlo, sizeof(dlo), dhi,
				 sizeof(dhi));
	overlay_clear_shard(&s->ov, ref->shard);
	persist_changes(s, b);
	s->stats.shards_deleted++;
	log_info("kv", "gid %" PRIu64 ": shard %" PRIu32 " of config %" PRIu64
		       " handed over; old copy deleted",
		 s->gid, ref->shard, ref->config_num);
	return STATUS_OK;
}

static void fsm_apply(void *ctx, uint64_t index, const void *data, size_t len,
		      struct store_batch *b)
{
	struct skv_service *s = ctx;
	ProtobufCMessage *m = NULL;
	if (codec_unpack(&skv__kv_command__descriptor, data, len, &m)) {
		/* Only this service proposes; every replica skips it the
		 * same way. */
		log_error("kv", "entry %" PRIu64 " is not a group command; "
				"skipped",
			  index);
		decide(s, index, NULL, NULL, STATUS_NOT_LEADER);
		return;
	}
	const Skv__KvCommand *cmd = (const Skv__KvCommand *)m;
	skv_changes_clear(&s->ch);
	switch (cmd->cmd_case) {
	case SKV__KV_COMMAND__CMD_OP: {
		int st = apply_op(s, cmd->op, b);
		decide(s, index, same_op, cmd->op, st);
		break;
	}
	case SKV__KV_COMMAND__CMD_CONFIG:
		apply_config(s, cmd->config, b);
		decide(s, index, NULL, NULL, STATUS_NOT_LEADER);
		break;
	case SKV__KV_COMMAND__CMD_INSERT:
		apply_insert(s, cmd->insert, b);
		decide(s, index, NULL, NULL, STATUS_NOT_LEADER);
		break;
	case SKV__KV_COMMAND__CMD_DELETE_SHARD: {
		int st = apply_delete(s, cmd->delete_shard, b);
		decide(s, index, same_delete, cmd->delete_shard, st);
		break;
	}
	case SKV__KV_COMMAND__CMD_GC_DONE:
		if (skv_apply_gc_done(s->kv, cmd->gc_done->config_num,
				      cmd->gc_done->shard, &s->ch) == STATUS_OK)
			persist_changes(s, b);
		decide(s, index, NULL, NULL, STATUS_NOT_LEADER);
		break;
	default:
		decide(s, index, NULL, NULL, STATUS_NOT_LEADER);
		break;
	}
	codec_free(m);
}

static void fsm_restore(void *ctx, uint64_t index)
{
	struct skv_service *s = ctx;
	char err[256];
	overlay_clear(&s->ov);
	if (load(s, err, sizeof(err)))
		log_fatal("kv", "cannot load the state of snapshot %" PRIu64
				": %s",
			  index, err);
	/* Requests whose entries the snapshot covers never apply here. */
	decide(s, index, NULL, NULL, STATUS_NOT_LEADER);
	skv_migrate_reset(s->mig);
	log_info("kv", "gid %" PRIu64 ": installed a snapshot at index %" PRIu64
		       ", config %" PRIu64,
		 s->gid, index, skv_config_num(s->kv));
}

static void answer_one(void *arg, void *item)
{
	const struct pending *p = item;
	reply_status(arg, p->w.token, p->method, p->status,
		     op_error(p->status));
}

static void fsm_durable(void *ctx, uint64_t applied_index)
{
	struct skv_service *s = ctx;
	overlay_clear(&s->ov);
	raft_waits_release(&s->waits, applied_index, answer_one, s);
}

static void serve_get(struct skv_service *s, const struct read_wait *w)
{
	uint64_t token = w->w.token;
	uint32_t n = skv_nshards(s->kv);
	uint32_t shard = n ? shard_for_key(w->key, w->klen, n) : 0;
	int st = STATUS_WRONG_GROUP;
	if (n) {
		struct skv_shard_info info;
		skv_shard(s->kv, shard, &info);
		if (info.state == SKV_SHARD_PULLING)
			st = STATUS_NOT_READY;
		else if (skv_serves(s->kv, shard))
			st = STATUS_OK;
	}
	if (st != STATUS_OK) {
		reply_kv(s, token, st, op_error(st), NULL, 0);
		return;
	}
	if (data_key(&s->dkey, shard, w->key, w->klen)) {
		reply_kv(s, token, STATUS_NO_MEMORY, "out of memory", NULL, 0);
		return;
	}
	int rc = store_get(s->store, STORE_CF_DATA, s->dkey.data, s->dkey.len,
			   &s->val);
	if (rc == STATUS_OK)
		reply_kv(s, token, STATUS_OK, "", s->val.data, s->val.len);
	else if (rc == STATUS_NOT_FOUND)
		reply_kv(s, token, STATUS_NOT_FOUND, op_error(rc), NULL, 0);
	else
		log_fatal("kv", "reading the store: %s",
			  store_errmsg(s->store));
}

static void fsm_read_done(void *ctx, uint64_t id, int status)
{
	struct skv_service *s = ctx;
	struct read_wait w;
	if (!raft_waits_take_if(&s->reads, is_read, &id, &w))
		return;
	if (status != STATUS_OK)
		reply_kv(s, w.w.token, status, NULL, NULL, 0);
	else
		serve_get(s, &w);
	mem_free(w.key);
}

const struct raft_fsm_ops skv_service_fsm = {
	.apply = fsm_apply,
	.restore = fsm_restore,
	.durable = fsm_durable,
	.read_done = fsm_read_done,
};
