/*
 * shardmaster: the program running one shard-master replica (server.h)
 * until SIGINT or SIGTERM. The signals are blocked in every thread and
 * taken with sigwait on the main thread (common/host.h), so shutdown
 * runs as ordinary code, never inside a signal handler.
 *
 * Exit status: 0 after a clean stop, 1 when it cannot start (the reason
 * on one line), 2 for bad flags.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/flags.h"
#include "common/host.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/status.h"
#include "shardmaster/server.h"
#include "shardmaster/sm.h"

#define PROG "shardmaster"

static void usage(const struct flag *flags, size_t n, FILE *out)
{
	fprintf(out,
		"usage: " PROG " --id N --peers ADDR,ADDR,... --data DIR "
		"[flags]\n"
		"\n"
		"Runs one replica of the shard master, the service that holds "
		"the numbered\n"
		"configurations of a shardkv cluster: which replica group "
		"serves each shard,\n"
		"and the servers of each group. Run 3 (or 5) replicas; they "
		"elect a leader\n"
		"with Raft and keep serving while a majority of them runs. "
		"Every replica gets\n"
		"the same --peers list, in id order, and its own --id and "
		"--data.\n"
		"\n"
		"flags:\n");
	flags_usage(flags, n, out);
	fprintf(out,
		"\n"
		"--shards only matters when the cluster is created: its first "
		"leader proposes\n"
		"that count. After that the count is fixed, and a different "
		"--shards is\n"
		"ignored (with a warning in the log).\n"
		"\n"
		"A data directory belongs to one replica. The first start "
		"records the cluster\n"
		"name, the id and the number of peers in it; a later start "
		"with other values,\n"
		"or on a directory holding anything else, refuses to run.\n"
		"\n"
		"Logs go to stderr. SIGINT or SIGTERM stops the replica "
		"cleanly. Exit status:\n"
		"0 after a clean stop, 1 if it cannot start, 2 for bad "
		"flags.\n"
		"\n"
		"Example: three replicas on one machine, then a query:\n"
		"  P=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003\n"
		"  " PROG " --id 1 --peers $P --data /var/lib/skv/sm1 &\n"
		"  " PROG " --id 2 --peers $P --data /var/lib/skv/sm2 &\n"
		"  " PROG " --id 3 --peers $P --data /var/lib/skv/sm3 &\n"
		"  shardctl --masters $P query\n");
}

static bool flag_seen(const struct flag *flags, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(flags[i].name, name))
			return flags[i].seen;
	return false;
}

/* The server between host_serve's start and stop. */
struct run {
	const struct sm_server_opts *o;
	struct sm_server *s;
};

static int run_start(void *arg, char *err, size_t cap)
{
	struct run *r = arg;
	return sm_server_start(r->o, &r->s, err, cap);
}

static void run_stop(void *arg)
{
	struct run *r = arg;
	sm_server_stop_free(r->s);
}

int main(int argc, char **argv)
{
	uint64_t shards = SM_SHARDS_DEFAULT;
	struct host_args a = {.cluster = SM_CLUSTER_DEFAULT,
			      .level = "info",
			      .compact = SM_COMPACTION_BYTES_DEFAULT,
			      .election = 300};
	struct flag flags[] = {
		{"id", FLAG_UINT, &a.id, "N",
		 "this replica's id: its position in --peers, from 1", true, 1,
		 RAFT_MAX_NODES, false},
		{"peers", FLAG_STRING, &a.peers, "ADDR,ADDR,...",
		 "host:port of every replica, in id order, this one included",
		 true, 0, 0, false},
		{"listen", FLAG_STRING, &a.listen, "ADDR",
		 "where to listen, e.g. 0.0.0.0:7001 (default: own --peers entry)",
		 false, 0, 0, false},
		{"data", FLAG_STRING, &a.data, "DIR",
		 "data directory of this replica; created if missing", true, 0,
		 0, false},
		{"shards", FLAG_UINT, &shards, "N",
		 "number of shards of a new cluster (1..4096)", false, 1,
		 SM_SHARDS_MAX, false},
		HOST_ARGS_FLAGS(a),
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);
	struct flags_result res;
	struct sm_server_opts o = {0};
	char *peer_list = NULL;
	enum log_level lvl;

	int code = host_parse_args(PROG, flags, nflags, argc, argv, &res,
				   usage, &a.level, &lvl);
	if (code >= 0)
		goto out;
	code = host_replica_args(PROG, &a, &peer_list, &o.replica);
	if (code >= 0)
		goto out;
	code = 0;
	/* Only a value given explicitly is compared with the cluster's. */
	o.nshards = flag_seen(flags, nflags, "shards") ? (uint32_t)shards : 0;

	char tag[16];
	snprintf(tag, sizeof(tag), "sm%u", o.replica.id);
	struct run r = {.o = &o};
	code = host_serve(PROG, tag, lvl, run_start, run_stop, &r);
out:
	mem_free(peer_list);
	flags_release(&res);
	return code;
}
