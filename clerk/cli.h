/*
 * cli: what the two command-line clients (shardctl, kvcli) share: their
 * common flags (--masters, --timeout, --json) and the way a line is taken
 * apart (flags before or after the command, "--" ending them), the check
 * of one HOST:PORT address, and JSON strings. Pure: the environment
 * variable's value is passed in; nothing here reads or writes a file
 * other than the FILE it is handed.
 *
 * Ownership: cli_parse_line fills a caller's struct cli_line whose
 * `masters` and `args` array it allocates (cli_line_release frees them,
 * also after a failed parse); the strings `args` points to are argv's.
 */
#ifndef SKV_CLERK_CLI_H
#define SKV_CLERK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The environment variable naming the shard masters. */
#define CLI_MASTERS_ENV "SHARDKV_MASTERS"
/* The right form of one address, for messages. */
#define CLI_ADDR_FORM \
	"HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:7001"

/* Formats a one-line reason into err[0..cap); returns
 * STATUS_INVALID_ARGUMENT. */
int cli_fail(char *err, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A command line taken apart. */
struct cli_line {
	uint64_t timeout_ms; /* --timeout, else the default */
	bool json;	     /* --json */
	bool help;	     /* -h or --help */
	/* --masters, else the environment's value when set and not empty;
	 * NULL when neither (or both empty). Allocated. */
	char *masters;
	bool masters_from_env;
	/* The positional arguments, in order (argv's strings). */
	int n_args;
	char **args;
};

/*
 * Parses argv[0..argc) (argv[0] the program; `prog` stands for it when
 * argc is 0). Flags may come before or after the positional arguments;
 * "--" makes every later token positional. A lone "-" is positional, and
 * so is "-N" (a negative number) when `numbers_are_args`. `env_masters`
 * is CLI_MASTERS_ENV's value (NULL when unset). STATUS_OK, or
 * INVALID_ARGUMENT with a one-line reason in err[0..cap), or NO_MEMORY.
 */
int cli_parse_line(int argc, char **argv, const char *prog,
		   uint64_t timeout_ms_default, const char *env_masters,
		   bool numbers_are_args, struct cli_line *l, char *err,
		   size_t cap);
void cli_line_release(struct cli_line *l);

/* The flags' part of the help text, one line per flag. */
void cli_flags_usage(FILE *out, uint64_t timeout_ms_default);

/*
 * Checks one address s[0..len): no space, control character, ',', '='
 * or '/'; "HOST:PORT" with a host (IPv6 in brackets) and a port 1..65535.
 * STATUS_OK or INVALID_ARGUMENT with why[0..cap) (without the address).
 */
int cli_check_addr(const char *s, size_t len, char *why, size_t cap);

/* Checks a list "HOST:PORT,HOST:PORT,...": no empty entry, each address
 * as cli_check_addr says, none twice. STATUS_OK or INVALID_ARGUMENT with
 * why[0..cap) naming the bad entry. */
int cli_check_masters(const char *s, char *why, size_t cap);

/* True when bytes[0..len) are valid UTF-8 (no overlongs, surrogates). */
bool cli_utf8_valid(const void *bytes, size_t len);
/* Writes bytes[0..len) as a JSON string, quotes included; a byte that
 * does not start a valid UTF-8 sequence comes out as \ufffd. */
void cli_json_string(FILE *out, const void *bytes, size_t len);

#endif
