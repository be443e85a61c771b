/*
 * The replica-group service (shardkv/service.h) on a group of one, driven
 * directly: the test plays the shard master (it answers the service's
 * Query calls) and the clients. What it checks is the service's answer to
 * every kind of bad or edge request, and that none of them changes what
 * was acknowledged.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/raft/replica.h"
#include "common/raft/storage.h"
#include "common/shard.h"
#include "common/status.h"
#include "common/store/store.h"
#include "shardkv/service.h"

#define GID 100
#define NS 4

static struct store_memenv *env;
static struct store *st;
static struct skv_service *svc;
static struct raft_replica *rep;
static uint64_t now;

/* The last reply and how many came. */
static ProtobufCMessage *last;
static uint64_t last_token;
static size_t n_replies;

/* Calls the service made, answered by answer_calls. */
struct call {
	uint64_t id;
	enum skv_call kind;
	struct buf req;
};
static struct call calls[64];
static size_t n_calls;
static uint64_t owner = GID; /* what the fake shard master assigns */

static void on_reply(void *arg, uint64_t token, const ProtobufCMessage *r)
{
	struct buf b;
	buf_init(&b);
	cr_assert_eq(codec_pack(r, &b), STATUS_OK);
	codec_free(last);
	last = NULL;
	cr_assert_eq(codec_unpack(r->descriptor, b.data, b.len, &last),
		     STATUS_OK);
	buf_free(&b);
	last_token = token;
	n_replies++;
}

static void on_call(void *arg, uint64_t id, const char *addr,
		    enum skv_call c, const uint8_t *bytes, size_t len,
		    uint64_t timeout_ms)
{
	cr_assert_lt(n_calls, 64);
	struct call *k = &calls[n_calls++];
	k->id = id;
	k->kind = c;
	buf_init(&k->req);
	cr_assert_eq(buf_set(&k->req, bytes, len), STATUS_OK);
}

static void open_group(void)
{
	char err[256];
	struct store_opts so = { .path = "/g", .create_if_missing = true,
				 .memenv = env,
				 .block_cache_bytes = 1 << 20 };
	cr_assert_eq(store_open(&so, &st, err, sizeof(err)), STATUS_OK);
	cr_assert_eq(raft_storage_recover(st, err, sizeof(err)), STATUS_OK);
	const char *masters[1] = { "sm1" };
	struct skv_service_opts o = {
		.store = st, .gid = GID, .self_id = 1,
		.addrs = { "g100-1" }, .n_nodes = 1,
		.masters = masters, .n_masters = 1, .seed = 1,
		.reply = on_reply, .call = on_call,
	};
	cr_assert_eq(skv_service_new(&o, &svc, err, sizeof(err)), STATUS_OK,
		     "%s", err);
	struct raft_config cfg = { .id = 1, .nodes = { 1 }, .n_nodes = 1,
				   .seed = 3 };
	cr_assert_eq(raft_replica_open(&cfg, st, &skv_service_fsm, svc, now,
				       &rep, err, sizeof(err)),
		     STATUS_OK, "%s", err);
	skv_service_attach(svc, raft_replica_raft(rep));
}

static void close_group(void)
{
	skv_service_free(svc);
	raft_replica_free(rep);
	store_close(st);
	svc = NULL;
	rep = NULL;
	st = NULL;
}

static void drop_send(void *arg, struct raft_msg *m)
{
}

/* The fake shard master: config 1 gives every shard to `owner`. */
static void answer_calls(void)
{
	size_t n = n_calls;
	n_calls = 0;
	for (size_t i = 0; i < n; i++) {
		struct call *k = &calls[i];
		cr_assert_eq(k->kind, SKV_CALL_QUERY);
		Skv__SmReply r = SKV__SM_REPLY__INIT;
		Skv__Config c = SKV__CONFIG__INIT;
		Skv__Group g = SKV__GROUP__INIT, *gp = &g;
		char *servers[1] = { "g100-1" };
		uint64_t shards[NS];
		for (int s = 0; s < NS; s++)
			shards[s] = owner;
		c.num = 1;
		c.n_shards = NS;
		c.shards = shards;
		g.gid = owner;
		g.n_servers = 1;
		g.servers = servers;
		c.n_groups = 1;
		c.groups = &gp;
		r.config = &c;
		skv_service_call_done(svc, now, k->id, STATUS_OK, &r.base);
		buf_free(&k->req);
	}
}

/* Time passes by `ms` in steps: Raft, the service's timers, the fake
 * shard master. */
static void run(uint64_t ms)
{
	for (uint64_t t = 0; t < ms; t += 10) {
		now += 10;
		raft_tick(raft_replica_raft(rep), now);
		struct raft_replica_stats a, b;
		do {
			raft_replica_stats(rep, &a);
			cr_assert_eq(raft_replica_process(rep, now, drop_send,
							  NULL),
				     STATUS_OK);
			skv_service_after_process(svc, now);
			raft_replica_stats(rep, &b);
		} while (b.readies != a.readies);
		if (skv_service_wake_ms(svc) <= now)
			skv_service_tick(svc, now);
		answer_calls();
	}
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	env = store_memenv_new();
	now = 1000;
	n_replies = 0;
	n_calls = 0;
	owner = GID;
	open_group();
	run(2000); /* leader, config 1 applied */
	cr_assert_eq(skv_config_num(skv_service_state(svc)), 1);
}

static void teardown(void)
{
	for (size_t i = 0; i < n_calls; i++)
		buf_free(&calls[i].req);
	close_group();
	codec_free(last);
	last = NULL;
	store_memenv_free(env);
}

TestSuite(kv_service, .init = setup, .fini = teardown, .timeout = 60);

/* Sends one request and runs until its reply; returns the reply. */
static const ProtobufCMessage *ask(enum skv_method m,
				   const ProtobufCMessage *req)
{
	static uint64_t token = 1;
	uint64_t t = ++token;
	size_t before = n_replies;
	skv_service_request(svc, now, t, m, req);
	for (int i = 0; i < 100 && n_replies == before; i++)
		run(10);
	cr_assert_eq(n_replies, before + 1, "one reply per request");
	cr_assert_eq(last_token, t);
	return last;
}

static const Skv__KvReply *kv(enum skv_method m, const char *key,
			      size_t klen, const void *val, size_t vlen,
			      uint64_t client, uint64_t seq)
{
	Skv__KvRequest r = SKV__KV_REQUEST__INIT;
	r.key.data = (uint8_t *)key;
	r.key.len = klen;
	r.value.data = (uint8_t *)val;
	r.value.len = vlen;
	r.client_id = client;
	r.seq = seq;
	const ProtobufCMessage *rep_ = ask(m, &r.base);
	cr_assert_eq(rep_->descriptor, &skv__kv_reply__descriptor);
	return (const Skv__KvReply *)rep_;
}

static void expect_value(const char *key, const char *want)
{
	const Skv__KvReply *r = kv(SKV_METHOD_GET, key, strlen(key), NULL, 0,
				   0, 0);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_OK, "get %s: %d", key,
		     r->status);
	cr_assert_eq(r->value.len, strlen(want));
	cr_assert(memcmp(r->value.data, want, r->value.len) == 0);
}

Test(kv_service, writes_reads_and_duplicates)
{
	const Skv__KvReply *r = kv(SKV_METHOD_PUT, "k", 1, "a", 1, 7, 1);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_OK);
	r = kv(SKV_METHOD_APPEND, "k", 1, "b", 1, 7, 2);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_OK);
	/* The same seq again (a retry): answered, not applied twice. */
	r = kv(SKV_METHOD_APPEND, "k", 1, "b", 1, 7, 2);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_OK);
	expect_value("k", "ab");
	r = kv(SKV_METHOD_DELETE, "k", 1, NULL, 0, 7, 3);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_OK);
	r = kv(SKV_METHOD_DELETE, "k", 1, NULL, 0, 7, 4);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_NOT_FOUND);
	r = kv(SKV_METHOD_GET, "k", 1, NULL, 0, 0, 0);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_NOT_FOUND);
	/* A retried delete keeps its first answer. */
	r = kv(SKV_METHOD_DELETE, "k", 1, NULL, 0, 7, 3);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_OK);
}

Test(kv_service, bad_requests_get_clear_errors_and_change_nothing)
{
	cr_assert_eq(kv(SKV_METHOD_PUT, "k", 1, "v", 1, 7, 1)->status,
		     SKV__STATUS__STATUS_OK);
	const Skv__KvReply *r = kv(SKV_METHOD_PUT, "", 0, "v", 1, 7, 2);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_INVALID_ARGUMENT);
	cr_assert(strstr(r->error, "empty"));
	char *big = mem_alloc(SHARD_VALUE_BYTES_MAX + 1);
	memset(big, 'x', SHARD_VALUE_BYTES_MAX + 1);
	r = kv(SKV_METHOD_PUT, big, SHARD_KEY_BYTES_MAX + 1, "v", 1, 7, 3);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_TOO_LARGE);
	r = kv(SKV_METHOD_GET, big, SHARD_KEY_BYTES_MAX + 1, NULL, 0, 0, 0);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_TOO_LARGE);
	r = kv(SKV_METHOD_PUT, "k", 1, big, SHARD_VALUE_BYTES_MAX + 1, 7, 4);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_TOO_LARGE);
	r = kv(SKV_METHOD_PUT, "k", 1, "v", 1, 7, 0);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_INVALID_ARGUMENT,
		     "a write without a sequence number");
	/* An append that would pass the limit is refused at apply, and a
	 * retry gets the same answer. */
	r = kv(SKV_METHOD_PUT, "big", 3, big, SHARD_VALUE_BYTES_MAX, 7, 5);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_OK);
	r = kv(SKV_METHOD_APPEND, "big", 3, "y", 1, 7, 6);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_TOO_LARGE);
	r = kv(SKV_METHOD_APPEND, "big", 3, "y", 1, 7, 6);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_TOO_LARGE);
	r = kv(SKV_METHOD_GET, "big", 3, NULL, 0, 0, 0);
	cr_assert_eq(r->value.len, SHARD_VALUE_BYTES_MAX);
	mem_free(big);
	/* A request of the wrong type for its method. */
	Skv__PullShardRequest p = SKV__PULL_SHARD_REQUEST__INIT;
	const ProtobufCMessage *any = ask(SKV_METHOD_GET, &p.base);
	cr_assert_eq(((const Skv__KvReply *)any)->status,
		     SKV__STATUS__STATUS_INVALID_ARGUMENT);
	/* A client routing by a configuration this group does not have yet
	 * is told to wait, not that the key is elsewhere. */
	Skv__KvRequest ahead = SKV__KV_REQUEST__INIT;
	ahead.key.data = (uint8_t *)"k";
	ahead.key.len = 1;
	ahead.config_num = 9;
	r = (const Skv__KvReply *)ask(SKV_METHOD_GET, &ahead.base);
	cr_assert_eq(r->status, SKV__STATUS__STATUS_NOT_READY);
	expect_value("k", "v");
}

Test(kv_service, other_groups_get_only_what_is_theirs)
{
	cr_assert_eq(kv(SKV_METHOD_PUT, "k", 1, "v", 1, 7, 1)->status,
		     SKV__STATUS__STATUS_OK);
	Skv__PullShardRequest p = SKV__PULL_SHARD_REQUEST__INIT;
	/* A configuration not applied here yet. */
	p.config_num = 2;
	p.shard = 0;
	p.gid = 101;
	const Skv__PullShardReply *pr =
		(const void *)ask(SKV_METHOD_PULL_SHARD, &p.base);
	cr_assert_eq(pr->status, SKV__STATUS__STATUS_NOT_READY);
	/* A shard this group serves and hands to nobody. */
	p.config_num = 1;
	pr = (const void *)ask(SKV_METHOD_PULL_SHARD, &p.base);
	cr_assert_eq(pr->status, SKV__STATUS__STATUS_NOT_FOUND);
	cr_assert_eq(pr->n_data, 0);
	/* Out of range. */
	p.shard = 1000;
	pr = (const void *)ask(SKV_METHOD_PULL_SHARD, &p.base);
	cr_assert_eq(pr->status, SKV__STATUS__STATUS_INVALID_ARGUMENT);
	/* A delete of a shard that is not being handed over: nothing to
	 * do, nothing deleted. */
	Skv__DeleteShardRequest d = SKV__DELETE_SHARD_REQUEST__INIT;
	d.config_num = 1;
	d.shard = shard_for_key("k", 1, NS);
	d.gid = 101;
	const Skv__DeleteShardReply *dr =
		(const void *)ask(SKV_METHOD_DELETE_SHARD, &d.base);
	cr_assert_eq(dr->status, SKV__STATUS__STATUS_OK);
	d.config_num = 5;
	dr = (const void *)ask(SKV_METHOD_DELETE_SHARD, &d.base);
	cr_assert_eq(dr->status, SKV__STATUS__STATUS_NOT_READY);
	expect_value("k", "v");
}

Test(kv_service, state_survives_a_restart_without_replay)
{
	cr_assert_eq(kv(SKV_METHOD_PUT, "k", 1, "v1", 2, 7, 1)->status,
		     SKV__STATUS__STATUS_OK);
	cr_assert_eq(kv(SKV_METHOD_APPEND, "k", 1, "+", 1, 7, 2)->status,
		     SKV__STATUS__STATUS_OK);
	close_group();
	open_group();
	cr_assert_eq(skv_config_num(skv_service_state(svc)), 1);
	run(2000);
	expect_value("k", "v1+");
	/* The dedup table came back too. */
	cr_assert_eq(kv(SKV_METHOD_APPEND, "k", 1, "+", 1, 7, 2)->status,
		     SKV__STATUS__STATUS_OK);
	expect_value("k", "v1+");
}

/* Writes proposed together apply in one batch: each reads what the ones
 * before it wrote (the batch is not in the store yet). */
Test(kv_service, writes_in_one_batch_see_each_other)
{
	static const char *const ops[][3] = {
		{ "p", "k", "a" }, { "a", "k", "b" }, { "a", "k", "c" },
		{ "d", "k", "" },  { "a", "k", "d" }, { "p", "j", "x" },
		{ "a", "j", "y" },
	};
	size_t n = sizeof(ops) / sizeof(ops[0]);
	size_t before = n_replies;
	for (size_t i = 0; i < n; i++) {
		Skv__KvRequest r = SKV__KV_REQUEST__INIT;
		r.key.data = (uint8_t *)ops[i][1];
		r.key.len = 1;
		r.value.data = (uint8_t *)ops[i][2];
		r.value.len = strlen(ops[i][2]);
		r.client_id = 100 + i;
		r.seq = 1;
		enum skv_method m = ops[i][0][0] == 'p' ? SKV_METHOD_PUT :
				    ops[i][0][0] == 'a' ? SKV_METHOD_APPEND :
							  SKV_METHOD_DELETE;
		skv_service_request(svc, now, 1000 + i, m, &r.base);
	}
	cr_assert_eq(n_replies, before, "nothing answered before it applies");
	for (int i = 0; i < 100 && n_replies < before + n; i++)
		run(10);
	cr_assert_eq(n_replies, before + n);
	expect_value("k", "d");
	expect_value("j", "xy");
}
