/*
 * shardmaster: the program running one shard-master replica (server.h)
 * until SIGINT or SIGTERM. The signals are blocked in every thread and
 * taken with sigwait on the main thread (common/host.h), so shutdown
 * runs as ordinary code, never inside a signal handler.
 *
 * Exit status: 0 after a clean stop, 1 when it cannot start (the reason
 * on one line), 2 for bad flags.
 */
#include <signal.h>
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

int main(int argc, char **argv)
{
	uint64_t id = 0, shards = SM_SHARDS_DEFAULT,
		 compact = SM_COMPACTION_BYTES_DEFAULT, election = 300;
	const char *peers = NULL, *listen = NULL, *data = NULL,
		   *cluster = SM_CLUSTER_DEFAULT, *level = "info";
	struct flag flags[] = {
		{"id", FLAG_UINT, &id, "N",
		 "this replica's id: its position in --peers, from 1", true, 1,
		 RAFT_MAX_NODES, false},
		{"peers", FLAG_STRING, &peers, "ADDR,ADDR,...",
		 "host:port of every replica, in id order, this one included",
		 true, 0, 0, false},
		{"listen", FLAG_STRING, &listen, "ADDR",
		 "where to listen, e.g. 0.0.0.0:7001 (default: own --peers entry)",
		 false, 0, 0, false},
		{"data", FLAG_STRING, &data, "DIR",
		 "data directory of this replica; created if missing", true, 0,
		 0, false},
		{"shards", FLAG_UINT, &shards, "N",
		 "number of shards of a new cluster (1..4096)", false, 1,
		 SM_SHARDS_MAX, false},
		{"cluster", FLAG_STRING, &cluster, "NAME",
		 "cluster name, recorded in the data directory", false, 0, 0,
		 false},
		{"log-level", FLAG_STRING, &level, "LEVEL",
		 "debug, info, warn or error", false, 0, 0, false},
		{"compact-bytes", FLAG_UINT, &compact, "N",
		 "compact the Raft log past this many bytes; 0 = never", false,
		 0, INT64_MAX, false},
		{"election-ms", FLAG_UINT, &election, "MS",
		 "election timeout, randomized in [MS, 2*MS); heartbeat MS/3",
		 false, 30, 60000, false},
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);
	struct flags_result res;
	char err[768];
	struct sm_server_opts o = {0};
	char *peer_list = NULL;
	enum log_level lvl;

	int code = host_parse_args(PROG, flags, nflags, argc, argv, &res,
				   usage, &level, &lvl);
	if (code >= 0)
		goto out;
	code = 0;
	peer_list = mem_strdup(peers);
	if (!peer_list) {
		fprintf(stderr, PROG ": out of memory\n");
		code = 1;
		goto out;
	}
	if (!addrs_split(peer_list, "--peers", o.peers, RAFT_MAX_NODES,
			 &o.n_peers, err, sizeof(err))) {
		code = host_usage_error(PROG, err);
		goto out;
	}
	if (id > o.n_peers) {
		snprintf(err, sizeof(err),
			 "--id %llu, but --peers lists %zu replicas",
			 (unsigned long long)id, o.n_peers);
		code = host_usage_error(PROG, err);
		goto out;
	}
	o.id = (uint32_t)id;
	o.listen = listen;
	o.data_dir = data;
	/* Only a value given explicitly is compared with the cluster's. */
	o.nshards = flag_seen(flags, nflags, "shards") ? (uint32_t)shards : 0;
	o.cluster = cluster;
	o.compaction_log_bytes_max = compact ? (size_t)compact : SIZE_MAX;
	o.election_timeout_ms_min = election;
	o.election_timeout_ms_max = 2 * election;
	o.heartbeat_ms = election / 3;

	char tag[16];
	snprintf(tag, sizeof(tag), "sm%u", o.id);
	host_log_setup(tag, lvl);

	/* Before any thread exists, so that every thread inherits the mask
	 * and only host_wait_signal below takes these signals. */
	host_block_signals();

	struct sm_server *s;
	int rc = sm_server_start(&o, &s, err, sizeof(err));
	if (rc != STATUS_OK) {
		fprintf(stderr, PROG ": %s\n", err);
		code = 1;
		goto out;
	}
	int sig = host_wait_signal();
	log_info("main", "%s: shutting down",
		 sig == SIGINT ? "SIGINT" : "SIGTERM");
	sm_server_stop_free(s);
	log_info("main", "stopped");
out:
	mem_free(peer_list);
	flags_release(&res);
	return code;
}
