/*
 * kvcli: reads and writes one key of a shardkv cluster (get, put,
 * append, delete) through the clerk library. One process, one operation.
 * A Get's value goes to stdout exactly as stored; with --json every
 * outcome is one JSON object on stdout. Errors are one line on stderr
 * prefixed "kvcli: ". The exit code says what kind of outcome it was
 * (kvcli_args.h), so scripts can tell "no such key" from "your request
 * is wrong" from "try again later".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clerk/clerk.h"
#include "clerk/kvcli_args.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/shard.h"

/* One attempt at one server; --timeout bounds the retries. */
#define ATTEMPT_TIMEOUT_MS 1000

static void json_text(FILE *out, const char *s)
{
	kvcli_json_string(out, s, strlen(s));
}

static void json_error(const char *status, const char *error)
{
	fputs("{\"ok\":false,\"status\":", stdout);
	json_text(stdout, status);
	fputs(",\"error\":", stdout);
	json_text(stdout, error);
	fputs("}\n", stdout);
}

/* The key for messages: printable ASCII as is, other bytes as \xNN,
 * cut at 64 bytes. */
static void show_key(const struct kvcli_args *a, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < a->klen && i < 64 && used + 5 < cap; i++) {
		unsigned char ch = (unsigned char)a->key[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '\'')
			buf[used++] = (char)ch;
		else
			used += (size_t)snprintf(buf + used, cap - used,
						 "\\x%02x", ch);
	}
	if (a->klen > 64 && used + 4 < cap) {
		memcpy(buf + used, "...", 3);
		used += 3;
	}
	buf[used] = '\0';
}

/* Reads all of stdin, at most SHARD_VALUE_BYTES_MAX bytes, into *out
 * (the caller's: mem_free). 0, or the exit code after the message. */
static int read_stdin(const struct kvcli_args *a, char **out, size_t *len)
{
	size_t cap = 64 * 1024, n = 0;
	char *b = mem_alloc(cap);
	char msg[200];
	int code = 0;
	for (;;) {
		if (!b) {
			code = KVCLI_EXIT_UNAVAILABLE;
			snprintf(msg, sizeof(msg),
				 "out of memory reading stdin");
			break;
		}
		if (n == cap && n > SHARD_VALUE_BYTES_MAX)
			break; /* too large, said below */
		if (n == cap) {
			char *nb = mem_realloc(b, cap * 2);
			if (!nb) {
				mem_free(b);
				b = NULL;
				continue;
			}
			b = nb;
			cap *= 2;
		}
		size_t got = fread(b + n, 1, cap - n, stdin);
		n += got;
		if (got == 0 && ferror(stdin)) {
			code = KVCLI_EXIT_USAGE;
			snprintf(msg, sizeof(msg),
				 "cannot read the value from stdin: %s",
				 strerror(errno));
		}
		if (got == 0)
			break;
	}
	if (!code && n > SHARD_VALUE_BYTES_MAX) {
		code = KVCLI_EXIT_REFUSED;
		snprintf(msg, sizeof(msg),
			 "the value on stdin is longer than %u bytes (the "
			 "limit); nothing sent",
			 SHARD_VALUE_BYTES_MAX);
	}
	if (code) {
		if (a->json)
			json_error(code == KVCLI_EXIT_REFUSED ? "TOO_LARGE"
							      : "STDIN",
				   msg);
		fprintf(stderr, "kvcli: %s\n", msg);
		mem_free(b);
		return code;
	}
	*out = b;
	*len = n;
	return 0;
}

static void report_success(const struct kvcli_args *a, const void *value,
			   size_t vlen)
{
	if (a->cmd == KVCLI_GET && a->json) {
		if (kvcli_utf8_valid(value, vlen)) {
			fputs("{\"ok\":true,\"value\":", stdout);
			kvcli_json_string(stdout, value, vlen);
		} else {
			fputs("{\"ok\":true,\"value_base64\":", stdout);
			kvcli_json_base64(stdout, value, vlen);
		}
		fputs("}\n", stdout);
	} else if (a->cmd == KVCLI_GET) {
		fwrite(value, 1, vlen, stdout);
	} else if (a->json) {
		fputs("{\"ok\":true}\n", stdout);
	}
}

static int report_failure(const struct kvcli_args *a, enum kv_status st,
			  const char *err)
{
	char key[300];
	show_key(a, key, sizeof(key));
	const char *name = kvcli_cmd_name(a->cmd);
	bool write = a->cmd != KVCLI_GET;
	char msg[1400];
	switch (st) {
	case KV_NOT_FOUND:
		snprintf(msg, sizeof(msg), "%s: key '%s' not found", name,
			 key);
		break;
	case KV_TIMEOUT:
		snprintf(msg, sizeof(msg),
			 "%s '%s': no answer in time (TIMEOUT after %llu ms): "
			 "%s [shard masters %s from %s]%s",
			 name, key, (unsigned long long)a->timeout_ms, err,
			 a->masters,
			 a->masters_from_env ? "$" KVCLI_MASTERS_ENV
					     : "--masters",
			 write ? "; the write may or may not have applied"
			       : "");
		break;
	case KV_TOO_LARGE:
	case KV_INVALID_ARGUMENT:
		snprintf(msg, sizeof(msg), "%s '%s' refused: %s; nothing "
					   "changed",
			 name, key, err);
		break;
	default:
		snprintf(msg, sizeof(msg), "%s '%s' failed: %s: %s%s", name,
			 key, kv_status_name(st), err,
			 write ? "; the write may or may not have applied"
			       : "");
		break;
	}
	if (a->json)
		json_error(kv_status_name(st), msg);
	fprintf(stderr, "kvcli: %s\n", msg);
	return kvcli_exit_code(st);
}

static enum kv_op kv_op_of(enum kvcli_cmd c)
{
	switch (c) {
	case KVCLI_PUT:
		return KV_OP_PUT;
	case KVCLI_APPEND:
		return KV_OP_APPEND;
	case KVCLI_DELETE:
		return KV_OP_DELETE;
	default:
		return KV_OP_GET;
	}
}

int main(int argc, char **argv)
{
	struct kvcli_args a;
	char err[512];
	int rc = kvcli_parse(argc, argv, getenv(KVCLI_MASTERS_ENV), &a, err,
			     sizeof(err));
	if (rc) {
		if (a.json)
			json_error("USAGE", err);
		fprintf(stderr, "kvcli: %s\n%s\n", err,
			kvcli_cmd_usage(a.cmd));
		kvcli_args_release(&a);
		return KVCLI_EXIT_USAGE;
	}
	if (a.cmd == KVCLI_HELP) {
		kvcli_usage(stdout);
		kvcli_args_release(&a);
		return KVCLI_EXIT_OK;
	}

	char *input = NULL;
	const void *value = a.value;
	size_t vlen = a.vlen;
	if ((a.cmd == KVCLI_PUT || a.cmd == KVCLI_APPEND) && !a.value) {
		int code = read_stdin(&a, &input, &vlen);
		if (code) {
			kvcli_args_release(&a);
			return code;
		}
		value = input;
	}

	/* The library's own log lines (a failed call, a reconnect) would
	 * repeat what the one error line says. */
	log_set_level(LOG_ERROR);
	struct kv_clerk_opts o = {.attempt_timeout_ms = ATTEMPT_TIMEOUT_MS};
	struct kv_clerk *kv;
	enum kv_status st = kv_clerk_open(a.masters, &o, &kv, err, sizeof(err));
	int code;
	if (st != KV_OK) {
		char msg[600];
		snprintf(msg, sizeof(msg), "cannot start the client: %s", err);
		if (a.json)
			json_error(kv_status_name(st), msg);
		fprintf(stderr, "kvcli: %s\n", msg);
		code = st == KV_INVALID_ARGUMENT ? KVCLI_EXIT_USAGE
						 : KVCLI_EXIT_UNAVAILABLE;
		goto out;
	}
	void *got = NULL;
	size_t got_len = 0;
	st = kv_do(kv, kv_op_of(a.cmd), a.key, a.klen, value, vlen,
		   a.timeout_ms, &got, &got_len, err, sizeof(err));
	if (st == KV_OK) {
		report_success(&a, got, got_len);
		code = KVCLI_EXIT_OK;
	} else {
		code = report_failure(&a, st, err);
	}
	kv_free(got);
	kv_clerk_close(kv);
out:
	if (fflush(stdout) != 0 && code == KVCLI_EXIT_OK) {
		fprintf(stderr, "kvcli: cannot write to stdout: %s\n",
			strerror(errno));
		code = KVCLI_EXIT_UNAVAILABLE;
	}
	mem_free(input);
	kvcli_args_release(&a);
	return code;
}
