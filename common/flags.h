/*
 * flags: the command-line and config-file parser every binary shares.
 *
 * A binary describes its flags in a table of `struct flag`; flags_parse
 * fills the destinations from argv (`--name=value`, `--name value`, bare
 * `--name` for booleans), stopping at the first positional argument or at
 * `--`. `--config FILE` (when the table has no flag of that name) reads
 * `name = value` lines first, so the command line overrides the file.
 * `-h`/`--help` is reported, not handled, so each binary prints its own
 * usage (flags_usage formats the table).
 *
 * Ownership: string destinations point into argv or into memory the parser
 * keeps until flags_release(); the table itself is the caller's.
 */
#ifndef SKV_COMMON_FLAGS_H
#define SKV_COMMON_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum flag_type {
	FLAG_STRING, /* dest: const char ** */
	FLAG_INT,    /* dest: int64_t *, checked against [min, max] */
	FLAG_UINT,   /* dest: uint64_t *, checked against [min, max] */
	FLAG_BOOL,   /* dest: bool *; `--x`, `--x=true|false|1|0` */
};

struct flag {
	const char *name; /* without the leading "--" */
	enum flag_type type;
	void *dest;
	const char *metavar; /* e.g. "ADDR"; NULL for booleans */
	const char *help;
	bool required;
	int64_t min, max; /* numeric range; ignored when min == max == 0 */
	bool seen;        /* out: set when given on the line or in the file */
};

struct flags_result {
	bool help;          /* -h or --help was given */
	int first_arg;      /* argv index of the first positional argument */
	char **owned;       /* strings read from a config file */
	size_t owned_count;
};

/*
 * Parses argv[1..argc). Returns STATUS_OK or STATUS_INVALID_ARGUMENT with a
 * one-line message in err (unknown flag, missing value, bad number, out of
 * range, missing required flag, unreadable config file). On --help returns
 * STATUS_OK with res->help set and required flags unchecked.
 */
int flags_parse(struct flag *flags, size_t n, int argc, char **argv,
		struct flags_result *res, char *err, size_t errcap);

/* Applies `name = value` lines (# comments, blank lines) from text; used by
 * --config and usable directly. Same errors as flags_parse, with the line. */
int flags_parse_text(struct flag *flags, size_t n, const char *text,
		     struct flags_result *res, char *err, size_t errcap);

/* Frees strings held for config-file values; call after every parse,
 * successful or not. */
void flags_release(struct flags_result *res);

/* Writes "  --name METAVAR   help (default ...)" lines for the table. */
void flags_usage(const struct flag *flags, size_t n, FILE *out);

#endif
