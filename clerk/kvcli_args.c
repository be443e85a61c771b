/*
 * kvcli_args: see kvcli_args.h. Messages name what was wrong and show
 * the right form: the reader is someone at a shell prompt.
 */
#include "clerk/kvcli_args.h"

#include <string.h>

#include "clerk/cli.h"
#include "common/mem.h"
#include "common/shard.h"
#include "common/status.h"

static const char usage_get[] = "usage: kvcli [FLAGS] get KEY";
static const char usage_put[] = "usage: kvcli [FLAGS] put KEY [VALUE|-]";
static const char usage_append[] =
	"usage: kvcli [FLAGS] append KEY [VALUE|-]";
static const char usage_delete[] = "usage: kvcli [FLAGS] delete KEY";
static const char usage_all[] =
	"usage: kvcli [--masters ADDR,ADDR,...] [--timeout MS] [--json] "
	"COMMAND KEY [VALUE]";

const char *kvcli_cmd_usage(enum kvcli_cmd c)
{
	switch (c) {
	case KVCLI_GET:
		return usage_get;
	case KVCLI_PUT:
		return usage_put;
	case KVCLI_APPEND:
		return usage_append;
	case KVCLI_DELETE:
		return usage_delete;
	case KVCLI_NONE:
	case KVCLI_HELP:
		break;
	}
	return usage_all;
}

const char *kvcli_cmd_name(enum kvcli_cmd c)
{
	switch (c) {
	case KVCLI_GET:
		return "get";
	case KVCLI_PUT:
		return "put";
	case KVCLI_APPEND:
		return "append";
	case KVCLI_DELETE:
		return "delete";
	case KVCLI_NONE:
	case KVCLI_HELP:
		break;
	}
	return "command";
}

int kvcli_exit_code(enum kv_status st)
{
	switch (st) {
	case KV_OK:
		return KVCLI_EXIT_OK;
	case KV_NOT_FOUND:
		return KVCLI_EXIT_NOT_FOUND;
	case KV_TOO_LARGE:
	case KV_INVALID_ARGUMENT:
		return KVCLI_EXIT_REFUSED;
	case KV_TIMEOUT:
	case KV_NO_MEMORY:
	case KV_UNAVAILABLE:
	case KV_CLOSED:
	case KV_INTERNAL:
		break;
	}
	return KVCLI_EXIT_UNAVAILABLE;
}

void kvcli_usage(FILE *out)
{
	fprintf(out,
		"%s\n"
		"\n"
		"Reads and writes keys of a shardkv cluster; linearizable, "
		"and a write applies\n"
		"at most once however often it is retried within the "
		"timeout.\n"
		"\n"
		"commands:\n"
		"  get KEY                print the value, exactly its bytes "
		"(no newline added)\n"
		"  put KEY [VALUE|-]      set the value\n"
		"  append KEY [VALUE|-]   append to the value (a missing key "
		"counts as empty)\n"
		"  delete KEY             remove the key\n"
		"  help                   show this help\n"
		"\n"
		"  Without VALUE, or with \"-\", the value is read from stdin "
		"(any bytes).\n"
		"  Keys are 1 to %d bytes, values at most %u bytes (also "
		"after an append).\n"
		"  Put \"--\" before a VALUE or KEY that starts with '-'.\n"
		"\n"
		"flags (before or after the command):\n",
		usage_all, SHARD_KEY_BYTES_MAX, SHARD_VALUE_BYTES_MAX);
	cli_flags_usage(out, KVCLI_TIMEOUT_MS_DEFAULT);
	fprintf(out,
		"\n"
		"environment:\n"
		"  " KVCLI_MASTERS_ENV
		"    the shard masters (ADDR,ADDR,...) when --masters is not "
		"given\n"
		"\n"
		"output: get prints the value raw; put, append and delete "
		"print nothing.\n"
		"  With --json one object: {\"ok\":true} (get: "
		"{\"ok\":true,\"value\":\"...\"}, or\n"
		"  \"value_base64\" when the value is not UTF-8), "
		"{\"ok\":false,\"status\":\"...\",\"error\":\"...\"}\n"
		"  on failure. Errors are one line on stderr, "
		"\"kvcli: ...\".\n"
		"\n"
		"exit status:\n"
		"  0  done\n"
		"  1  not found (get or delete of a missing key)\n"
		"  2  usage error (or stdin unreadable)\n"
		"  3  no answer in time (shard masters or group unreachable, "
		"no leader),\n"
		"     or the client could not run; a put/append/delete may "
		"or may not\n"
		"     have applied\n"
		"  4  refused: key or value too large, or invalid; nothing "
		"changed\n"
		"\n"
		"example:\n"
		"  export " KVCLI_MASTERS_ENV
		"=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003\n"
		"  kvcli put greeting hello && kvcli append greeting ', "
		"world'\n"
		"  kvcli get greeting; echo\n"
		"  kvcli put photo < photo.jpg\n");
}

/* ---- the line ---- */

static int parse_cmd(struct kvcli_args *a, int n, char **args, char *err,
		     size_t cap)
{
	const char *name = kvcli_cmd_name(a->cmd);
	bool with_value = a->cmd == KVCLI_PUT || a->cmd == KVCLI_APPEND;
	int max = with_value ? 2 : 1;
	if (n == 0)
		return cli_fail(err, cap, "%s: no KEY given", name);
	if (n > max)
		return cli_fail(err, cap,
				"%s: expected KEY%s, got %d arguments (quote a "
				"value with spaces)",
				name, with_value ? " [VALUE]" : "", n);
	a->key = args[0];
	a->klen = strlen(args[0]);
	if (a->klen == 0)
		return cli_fail(err, cap,
				"%s: KEY is empty; keys are 1 to %d bytes",
				name, SHARD_KEY_BYTES_MAX);
	if (n == 2 && strcmp(args[1], "-") != 0) {
		a->value = args[1];
		a->vlen = strlen(args[1]);
	}
	return STATUS_OK;
}

int kvcli_parse(int argc, char **argv, const char *env_masters,
		struct kvcli_args *a, char *err, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->timeout_ms = KVCLI_TIMEOUT_MS_DEFAULT;
	struct cli_line l;
	int rc = cli_parse_line(argc, argv, "kvcli", KVCLI_TIMEOUT_MS_DEFAULT,
				env_masters, false, &l, err, cap);
	if (rc)
		goto out;
	a->timeout_ms = l.timeout_ms;
	a->json = l.json;
	a->masters = l.masters;
	l.masters = NULL;
	a->masters_from_env = l.masters_from_env;
	const char *what =
		l.masters_from_env ? "$" KVCLI_MASTERS_ENV : "--masters";
	int np = l.n_args;
	char **pos = l.args;

	if (l.help || (np > 0 && strcmp(pos[0], "help") == 0)) {
		a->cmd = KVCLI_HELP;
		goto out;
	}
	if (np == 0) {
		rc = cli_fail(err, cap,
			      "no command given (get, put, append, delete or "
			      "help)");
		goto out;
	}
	const char *cmd = pos[0];
	if (strcmp(cmd, "get") == 0)
		a->cmd = KVCLI_GET;
	else if (strcmp(cmd, "put") == 0)
		a->cmd = KVCLI_PUT;
	else if (strcmp(cmd, "append") == 0)
		a->cmd = KVCLI_APPEND;
	else if (strcmp(cmd, "delete") == 0)
		a->cmd = KVCLI_DELETE;
	else {
		rc = cli_fail(err, cap,
			      "unknown command '%.60s' (commands: get, put, "
			      "append, delete, help)",
			      cmd);
		goto out;
	}
	rc = parse_cmd(a, np - 1, pos + 1, err, cap);
	if (rc)
		goto out;

	if (!a->masters) {
		rc = cli_fail(err, cap,
			      "no shard masters given: pass --masters "
			      "HOST:PORT,HOST:PORT,... or set "
			      KVCLI_MASTERS_ENV);
		goto out;
	}
	char why[300];
	if (cli_check_masters(a->masters, why, sizeof(why)))
		rc = cli_fail(err, cap, "%s: %s", what, why);
out:
	cli_line_release(&l);
	return rc;
}

void kvcli_args_release(struct kvcli_args *a)
{
	mem_free(a->masters);
	memset(a, 0, sizeof(*a));
}

/* ---- JSON ---- */

bool kvcli_utf8_valid(const void *bytes, size_t len)
{
	return cli_utf8_valid(bytes, len);
}

void kvcli_json_string(FILE *out, const void *bytes, size_t len)
{
	cli_json_string(out, bytes, len);
}

void kvcli_json_base64(FILE *out, const void *bytes, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = bytes;
	fputc('"', out);
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
			     p[i + 2];
		fputc(tab[x >> 18 & 63], out);
		fputc(tab[x >> 12 & 63], out);
		fputc(tab[x >> 6 & 63], out);
		fputc(tab[x & 63], out);
	}
	if (len - i == 1) {
		uint32_t x = (uint32_t)p[i] << 16;
		fputc(tab[x >> 18 & 63], out);
		fputc(tab[x >> 12 & 63], out);
		fputs("==", out);
	} else if (len - i == 2) {
		uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		fputc(tab[x >> 18 & 63], out);
		fputc(tab[x >> 12 & 63], out);
		fputc(tab[x >> 6 & 63], out);
		fputc('=', out);
	}
	fputc('"', out);
}
