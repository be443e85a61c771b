/*
 * shardkv: the program running one replica of a replica group
 * (server.h) until SIGINT or SIGTERM. The signals are blocked in every
 * thread and taken with sigwait on the main thread (common/host.h), so
 * shutdown runs as ordinary code, never inside a signal handler.
 *
 * Exit status: 0 after a clean stop, 1 when it cannot start (the reason
 * on one line), 2 for bad flags.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addrs.h"
#include "common/flags.h"
#include "common/host.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"
#include "shardkv/server.h"

#define PROG "shardkv"
#define MASTERS_ENV "SHARDKV_MASTERS"

static void usage(const struct flag *flags, size_t n, FILE *out)
{
	fprintf(out,
		"usage: " PROG " --gid N --id N --peers ADDR,ADDR,... "
		"--masters ADDR,... --data DIR [flags]\n"
		"\n"
		"Runs one replica of a replica group: the servers that store "
		"the keys of the\n"
		"shards the shard master assigns to the group, and hand shards "
		"to other groups\n"
		"when the configuration changes. Run 3 (or 5) replicas per "
		"group; they elect a\n"
		"leader with Raft and keep serving while a majority of them "
		"runs. Every replica\n"
		"of a group gets the same --gid and --peers list, in id order, "
		"and its own --id\n"
		"and --data. The group serves nothing until it is joined with "
		"'shardctl join',\n"
		"listing the same addresses as --peers.\n"
		"\n"
		"flags:\n");
	flags_usage(flags, n, out);
	fprintf(out,
		"\n"
		"--masters may instead come from $" MASTERS_ENV " (the flag "
		"wins).\n"
		"\n"
		"A data directory belongs to one replica. The first start "
		"records the cluster\n"
		"name, the gid, the id and the number of peers in it; a later "
		"start with other\n"
		"values, or on a directory holding anything else, refuses to "
		"run.\n"
		"\n"
		"Logs go to stderr. SIGINT or SIGTERM stops the replica "
		"cleanly. Exit status:\n"
		"0 after a clean stop, 1 if it cannot start, 2 for bad "
		"flags.\n"
		"\n"
		"Example: group 100 of three replicas on one machine, with a "
		"shard master at\n"
		"$M (see shardmaster --help), joined, then a write and a "
		"read:\n"
		"  M=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003\n"
		"  P=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103\n"
		"  " PROG " --gid 100 --id 1 --peers $P --masters $M --data "
		"/var/lib/skv/g100-1 &\n"
		"  " PROG " --gid 100 --id 2 --peers $P --masters $M --data "
		"/var/lib/skv/g100-2 &\n"
		"  " PROG " --gid 100 --id 3 --peers $P --masters $M --data "
		"/var/lib/skv/g100-3 &\n"
		"  shardctl --masters $M join 100=$P\n"
		"  kvcli --masters $M put greeting hello\n"
		"  kvcli --masters $M get greeting\n");
}

/* The server between host_serve's start and stop. */
struct run {
	const struct skv_server_opts *o;
	struct skv_server *s;
};

static int run_start(void *arg, char *err, size_t cap)
{
	struct run *r = arg;
	return skv_server_start(r->o, &r->s, err, cap);
}

static void run_stop(void *arg)
{
	struct run *r = arg;
	skv_server_stop_free(r->s);
}

int main(int argc, char **argv)
{
	uint64_t gid = 0;
	const char *masters = NULL;
	struct host_args a = {.cluster = SKV_SERVER_CLUSTER_DEFAULT,
			      .level = "info",
			      .compact = SKV_SERVER_COMPACTION_BYTES_DEFAULT,
			      .election = 300};
	struct flag flags[] = {
		{"gid", FLAG_UINT, &gid, "N",
		 "this replica group's id, as joined with shardctl (> 0)", true,
		 1, INT64_MAX, false},
		{"id", FLAG_UINT, &a.id, "N",
		 "this replica's id: its position in --peers, from 1", true, 1,
		 RAFT_MAX_NODES, false},
		{"peers", FLAG_STRING, &a.peers, "ADDR,ADDR,...",
		 "host:port of every replica of the group, in id order, this "
		 "one included",
		 true, 0, 0, false},
		{"listen", FLAG_STRING, &a.listen, "ADDR",
		 "where to listen, e.g. 0.0.0.0:7101 (default: own --peers entry)",
		 false, 0, 0, false},
		{"masters", FLAG_STRING, &masters, "ADDR,...",
		 "host:port of every shard-master server (default: "
		 "$" MASTERS_ENV ")",
		 false, 0, 0, false},
		{"data", FLAG_STRING, &a.data, "DIR",
		 "data directory of this replica; created if missing", true, 0,
		 0, false},
		HOST_ARGS_FLAGS(a),
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);
	struct flags_result res;
	char err[768];
	struct skv_server_opts o = {0};
	char *peer_list = NULL, *master_list = NULL;
	enum log_level lvl;

	int code = host_parse_args(PROG, flags, nflags, argc, argv, &res,
				   usage, &a.level, &lvl);
	if (code >= 0)
		goto out;
	if (!masters)
		masters = getenv(MASTERS_ENV);
	if (!masters || !*masters) {
		code = host_usage_error(PROG, "--masters (or $" MASTERS_ENV
					      ") is required");
		goto out;
	}
	code = host_replica_args(PROG, &a, &peer_list, &o.replica);
	if (code >= 0)
		goto out;
	code = 0;
	master_list = mem_strdup(masters);
	if (!master_list) {
		fprintf(stderr, PROG ": out of memory\n");
		code = 1;
		goto out;
	}
	if (!addrs_split(master_list, "--masters", o.masters,
			 SKV_SERVER_MASTERS_MAX, &o.n_masters, err,
			 sizeof(err))) {
		code = host_usage_error(PROG, err);
		goto out;
	}
	o.gid = gid;

	char tag[48];
	snprintf(tag, sizeof(tag), "kv%llu-%u", (unsigned long long)o.gid,
		 o.replica.id);
	struct run r = {.o = &o};
	code = host_serve(PROG, tag, lvl, run_start, run_stop, &r);
out:
	mem_free(peer_list);
	mem_free(master_list);
	flags_release(&res);
	return code;
}
