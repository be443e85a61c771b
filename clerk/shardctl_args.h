/*
 * shardctl_args: shardctl's command line, parsed and checked before
 * anything is sent, so a typo gets a message naming the bad piece and
 * its right form (exit 2) instead of a refusal from the cluster. Pure:
 * the environment variable's value is passed in.
 *
 * Ownership: shardctl_parse fills a caller's struct shardctl_args whose
 * arrays and strings it allocates; shardctl_args_release frees them
 * (also after a failed parse).
 */
#ifndef SKV_CLERK_SHARDCTL_ARGS_H
#define SKV_CLERK_SHARDCTL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes. */
#define SHARDCTL_EXIT_OK 0
#define SHARDCTL_EXIT_REFUSED 1	    /* the shard master said no */
#define SHARDCTL_EXIT_USAGE 2	    /* bad command line */
#define SHARDCTL_EXIT_UNREACHABLE 3 /* no answer or no leader in time */

#define SHARDCTL_TIMEOUT_MS_DEFAULT 5000
#define SHARDCTL_MASTERS_ENV "SHARDKV_MASTERS"

enum shardctl_cmd {
	SHARDCTL_NONE = 0, /* not known yet (an error before the command) */
	SHARDCTL_HELP,
	SHARDCTL_JOIN,
	SHARDCTL_LEAVE,
	SHARDCTL_MOVE,
	SHARDCTL_QUERY,
	SHARDCTL_STATUS,
};

struct shardctl_group {
	uint64_t gid;
	size_t n_servers;
	char **servers;
};

struct shardctl_args {
	/* flags */
	uint64_t timeout_ms;
	bool json;
	/* the shard masters, from --masters or the environment */
	char **masters;
	size_t n_masters;
	bool masters_from_env;
	/* the command and its arguments */
	enum shardctl_cmd cmd;
	struct shardctl_group *groups; /* join */
	size_t n_groups;
	uint64_t *gids;		       /* leave */
	size_t n_gids;
	uint32_t shard;		       /* move */
	uint64_t gid;		       /* move */
	int64_t num;		       /* query; -1 = latest */
	char **addrs;		       /* status: more servers to ask */
	size_t n_addrs;
};

/*
 * Parses argv[0..argc) (argv[0] the program). Flags may come before or
 * after the command. `env_masters` is the value of SHARDKV_MASTERS (NULL
 * when unset), used when --masters is absent. STATUS_OK, or
 * INVALID_ARGUMENT with a one-line reason in err[0..cap) (a->cmd set
 * when the command was known, for its usage line), or NO_MEMORY.
 */
int shardctl_parse(int argc, char **argv, const char *env_masters,
		   struct shardctl_args *a, char *err, size_t cap);
void shardctl_args_release(struct shardctl_args *a);

/* The whole help text. */
void shardctl_usage(FILE *out);
/* "usage: shardctl [FLAGS] join GID=ADDR[,ADDR...] ..." for `c`; the
 * general one for SHARDCTL_NONE and SHARDCTL_HELP. */
const char *shardctl_cmd_usage(enum shardctl_cmd c);

/* A gid: decimal, 1..2^63-1. */
bool shardctl_parse_gid(const char *s, uint64_t *out);
/* "host:port": a host without spaces, commas or '=' (IPv6 in brackets),
 * a port 1..65535. STATUS_OK or INVALID_ARGUMENT with why[0..cap). */
int shardctl_check_addr(const char *s, char *why, size_t cap);
/* "ADDR,ADDR,..." into *out (n_out entries, the caller's: free with
 * shardctl_free_strings), each checked, none twice. `what` names the
 * list in messages ("--masters", "group 100"). */
int shardctl_parse_addr_list(const char *s, const char *what, char ***out,
			     size_t *n_out, char *err, size_t cap);
void shardctl_free_strings(char **v, size_t n);

#endif
