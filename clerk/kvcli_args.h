/*
 * kvcli_args: kvcli's command line, checked before anything is sent, and
 * the small pure pieces of its output (exit codes, JSON strings), so the
 * unit tests can call them directly. Pure: the environment variable's
 * value is passed in; nothing here reads stdin or talks to a cluster.
 *
 * Ownership: kvcli_parse fills a caller's struct kvcli_args; `masters` is
 * allocated (kvcli_args_release frees it, also after a failed parse);
 * `key` and `value` point into argv.
 */
#ifndef SKV_CLERK_KVCLI_ARGS_H
#define SKV_CLERK_KVCLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clerk/clerk.h" /* enum kv_status (constants only) */

/* Exit codes. */
#define KVCLI_EXIT_OK 0
#define KVCLI_EXIT_NOT_FOUND 1	 /* get / delete of a missing key */
#define KVCLI_EXIT_USAGE 2	 /* bad command line or unreadable stdin */
#define KVCLI_EXIT_UNAVAILABLE 3 /* no answer in time, or cannot run */
#define KVCLI_EXIT_REFUSED 4	 /* too large or invalid: nothing changed */

#define KVCLI_TIMEOUT_MS_DEFAULT 5000
#define KVCLI_MASTERS_ENV "SHARDKV_MASTERS"

enum kvcli_cmd {
	KVCLI_NONE = 0, /* not known yet (an error before the command) */
	KVCLI_HELP,
	KVCLI_GET,
	KVCLI_PUT,
	KVCLI_APPEND,
	KVCLI_DELETE,
};

struct kvcli_args {
	uint64_t timeout_ms;
	bool json;
	char *masters; /* "ADDR,ADDR,...", checked; from --masters or env */
	bool masters_from_env;
	enum kvcli_cmd cmd;
	const char *key; /* argv's */
	size_t klen;
	/* put / append: the VALUE argument (argv's), or NULL when the
	 * value is to be read from stdin (no VALUE, or "-"). */
	const char *value;
	size_t vlen;
};

/*
 * Parses argv[0..argc) (argv[0] the program). Flags may come before or
 * after the command; "--" ends them (for a VALUE that starts with "-").
 * `env_masters` is SHARDKV_MASTERS's value (NULL when unset), used when
 * --masters is absent. STATUS_OK, or INVALID_ARGUMENT with a one-line
 * reason in err[0..cap) (a->cmd set when the command was known, for its
 * usage line), or NO_MEMORY.
 */
int kvcli_parse(int argc, char **argv, const char *env_masters,
		struct kvcli_args *a, char *err, size_t cap);
void kvcli_args_release(struct kvcli_args *a);

/* The whole help text. */
void kvcli_usage(FILE *out);
/* The usage line of `c` ("usage: kvcli [FLAGS] get KEY"); the general one
 * for KVCLI_NONE and KVCLI_HELP. */
const char *kvcli_cmd_usage(enum kvcli_cmd c);
/* "get", "put", "append", "delete"; "command" otherwise. */
const char *kvcli_cmd_name(enum kvcli_cmd c);

/* The exit code for an operation's status. */
int kvcli_exit_code(enum kv_status st);

/* True when bytes[0..len) are valid UTF-8 (no overlongs, surrogates). */
bool kvcli_utf8_valid(const void *bytes, size_t len);
/* Writes bytes[0..len) as a JSON string, quotes included; a byte that
 * does not start a valid UTF-8 sequence comes out as \ufffd. */
void kvcli_json_string(FILE *out, const void *bytes, size_t len);
/* Writes bytes[0..len) as a quoted base64 string (RFC 4648, padded). */
void kvcli_json_base64(FILE *out, const void *bytes, size_t len);

#endif
