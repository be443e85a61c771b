/*
 * clerk: the key/value client library applications link (skv_clerk).
 * Linearizable, exactly-once Get / Put / Append / Delete on a shardkv
 * cluster, given only the shard masters' addresses.
 *
 * Each call blocks until its operation is done, refused, or its timeout
 * passes. Any number of threads may call at once; their operations run
 * in parallel. The clerk caches the configuration (which replica group
 * serves which shard; key -> shard is FNV-1a-32 of the key's bytes mod
 * the shard count, common/shard.h), remembers each group's leader,
 * follows leader hints, refetches the configuration when a group says
 * the key is not its own, and retries with backoff until the timeout.
 * A write is applied at most once, however often it is retried: each
 * write runs on a session of its own (a random 64-bit client id and a
 * sequence number) that the servers deduplicate by.
 *
 * Errors are returned, never fatal: the library does not exit or abort,
 * and writes nothing of its own to stdout or stderr. KV_TIMEOUT after a
 * write means it may or may not have applied (a Put can be retried as
 * is; an Append retried may apply twice).
 *
 * What it owns: the sans-IO core (clerk/kv_core.h), a background thread
 * that drives it when callers and the gRPC client's thread do not
 * (clerk.c: a lone operation is started by its caller and finished on
 * the reply's thread), and the gRPC client (one channel per server).
 * Keys and values passed in are borrowed for the call; a Get's value
 * belongs to the caller (kv_free).
 *
 * Example:
 *
 *	#include <stdio.h>
 *	#include "clerk/clerk.h"
 *
 *	int main(void)
 *	{
 *		char err[256];
 *		struct kv_clerk *kv;
 *		if (kv_clerk_open("127.0.0.1:7001,127.0.0.1:7002,"
 *				  "127.0.0.1:7003", NULL, &kv, err,
 *				  sizeof(err)) != KV_OK) {
 *			fprintf(stderr, "open: %s\n", err);
 *			return 1;
 *		}
 *		enum kv_status st = kv_put(kv, "greeting", 8, "hello", 5, 0);
 *		if (st == KV_OK)
 *			st = kv_append(kv, "greeting", 8, ", world", 7, 0);
 *		void *v;
 *		size_t n;
 *		if (st == KV_OK)
 *			st = kv_get(kv, "greeting", 8, &v, &n, 2000);
 *		if (st == KV_OK) {
 *			printf("%.*s\n", (int)n, (const char *)v);
 *			kv_free(v);
 *		} else {
 *			fprintf(stderr, "kv: %s\n", kv_strerror(st));
 *		}
 *		kv_clerk_close(kv);
 *		return st == KV_OK ? 0 : 1;
 *	}
 */
#ifndef SKV_CLERK_CLERK_H
#define SKV_CLERK_CLERK_H

#include <stddef.h>
#include <stdint.h>

/* Limits: keys are 1..KV_KEY_BYTES_MAX bytes, values at most
 * KV_VALUE_BYTES_MAX (also after an Append); any bytes. */
#define KV_KEY_BYTES_MAX 4096
#define KV_VALUE_BYTES_MAX (1u << 20)

enum kv_status {
	KV_OK = 0,
	KV_NOT_FOUND,	     /* Get / Delete: the key does not exist */
	KV_TIMEOUT,	     /* not done in time: a write may have applied */
	KV_TOO_LARGE,	     /* key or value past the limits, or an Append
				would pass KV_VALUE_BYTES_MAX: no change */
	KV_INVALID_ARGUMENT, /* empty key, NULL pointer, bad masters
				list, or refused by the servers */
	KV_NO_MEMORY,	     /* out of memory (in this process) */
	KV_UNAVAILABLE,	     /* the clerk cannot start (RPC client,
				thread, random source) */
	KV_CLOSED,	     /* kv_clerk_shutdown was called */
	KV_INTERNAL,	     /* a server answered an unexpected error */
};

/* "not found", ... ; never NULL. */
const char *kv_strerror(enum kv_status s);
/* "NOT_FOUND", ... (for logs and JSON); never NULL. */
const char *kv_status_name(enum kv_status s);

struct kv_clerk_opts {
	uint64_t timeout_ms;	     /* for calls passing 0; 0 = 10,000 */
	uint64_t attempt_timeout_ms; /* one RPC; 0 = 1,000 */
	uint64_t backoff_ms_min;     /* 0 = 20 */
	uint64_t backoff_ms_max;     /* 0 = 1,000 */
};

struct kv_clerk;

/*
 * A clerk for the cluster whose shard masters are `masters`
 * ("host:port,host:port,..."; copied). `opts` NULL = the defaults.
 * KV_OK and *out, or KV_INVALID_ARGUMENT (bad list), KV_NO_MEMORY,
 * KV_UNAVAILABLE, with *out NULL and a one-line reason in err[0..cap)
 * (err may be NULL). No connection is made before the first call.
 */
enum kv_status kv_clerk_open(const char *masters,
			     const struct kv_clerk_opts *opts,
			     struct kv_clerk **out, char *err, size_t cap);

/* Makes every running call return KV_CLOSED soon, and every later one at
 * once; the clerk stays valid. Any thread; idempotent. */
void kv_clerk_shutdown(struct kv_clerk *c);

/* Shuts down, waits for the background thread, frees. No call may be
 * running or start (after kv_clerk_shutdown: wait for the callers to
 * return first). NULL ok. */
void kv_clerk_close(struct kv_clerk *c);

/*
 * The operations. timeout_ms 0 = the clerk's default. Each returns KV_OK,
 * or a status above. Keys and values are any bytes (borrowed).
 *   kv_get     *value (malloc'd, the caller's: kv_free; never NULL on
 *              KV_OK, even for an empty value) and *vlen; both NULL/0 on
 *              any other status. KV_NOT_FOUND when there is no such key.
 *   kv_put     sets the value.
 *   kv_append  appends to the value (a missing key counts as empty).
 *   kv_delete  removes the key; KV_NOT_FOUND if it did not exist.
 */
enum kv_status kv_get(struct kv_clerk *c, const void *key, size_t klen,
		      void **value, size_t *vlen, uint64_t timeout_ms);
enum kv_status kv_put(struct kv_clerk *c, const void *key, size_t klen,
		      const void *value, size_t vlen, uint64_t timeout_ms);
enum kv_status kv_append(struct kv_clerk *c, const void *key, size_t klen,
			 const void *value, size_t vlen, uint64_t timeout_ms);
enum kv_status kv_delete(struct kv_clerk *c, const void *key, size_t klen,
			 uint64_t timeout_ms);

/* Frees a value from kv_get or kv_do. NULL ok. */
void kv_free(void *value);

enum kv_op {
	KV_OP_GET = 0,
	KV_OP_PUT = 1,
	KV_OP_APPEND = 2,
	KV_OP_DELETE = 3,
};

/*
 * The general form of the four: `value`/`vlen` for Put and Append
 * (ignored otherwise); `out`/`out_len` (may be NULL) receive a Get's
 * value as kv_get's; err[0..cap) (may be NULL) receives a one-line
 * reason on any status but KV_OK ("" then): what the clerk met last on
 * KV_TIMEOUT (no shard master answered, no group serves the shard, no
 * leader, ...), the server's reason on a refusal.
 */
enum kv_status kv_do(struct kv_clerk *c, enum kv_op op, const void *key,
		     size_t klen, const void *value, size_t vlen,
		     uint64_t timeout_ms, void **out, size_t *out_len,
		     char *err, size_t cap);

#endif
