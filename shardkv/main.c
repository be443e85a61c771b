/*
 * shardkv: the program running one replica of a replica group
 * (server.h) until SIGINT or SIGTERM. The signals are blocked in every
 * thread and taken with sigwait on the main thread (common/host.h), so
 * shutdown runs as ordinary code, never inside a signal handler.
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

int main(int argc, char **argv)
{
	uint64_t gid = 0, id = 0, compact = SKV_SERVER_COMPACTION_BYTES_DEFAULT,
		 election = 300;
	const char *peers = NULL, *listen = NULL, *masters = NULL,
		   *data = NULL, *cluster = SKV_SERVER_CLUSTER_DEFAULT,
		   *level = "info";
	struct flag flags[] = {
		{"gid", FLAG_UINT, &gid, "N",
		 "this replica group's id, as joined with shardctl (> 0)", true,
		 1, INT64_MAX, false},
		{"id", FLAG_UINT, &id, "N",
		 "this replica's id: its position in --peers, from 1", true, 1,
		 RAFT_MAX_NODES, false},
		{"peers", FLAG_STRING, &peers, "ADDR,ADDR,...",
		 "host:port of every replica of the group, in id order, this "
		 "one included",
		 true, 0, 0, false},
		{"listen", FLAG_STRING, &listen, "ADDR",
		 "where to listen, e.g. 0.0.0.0:7101 (default: own --peers entry)",
		 false, 0, 0, false},
		{"masters", FLAG_STRING, &masters, "ADDR,...",
		 "host:port of every shard-master server (default: "
		 "$" MASTERS_ENV ")",
		 false, 0, 0, false},
		{"data", FLAG_STRING, &data, "DIR",
		 "data directory of this replica; created if missing", true, 0,
		 0, false},
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
	struct skv_server_opts o = {0};
	char *peer_list = NULL, *master_list = NULL;
	enum log_level lvl;

	int code = host_parse_args(PROG, flags, nflags, argc, argv, &res,
				   usage, &level, &lvl);
	if (code >= 0)
		goto out;
	code = 0;
	if (!masters)
		masters = getenv(MASTERS_ENV);
	if (!masters || !*masters) {
		code = host_usage_error(PROG, "--masters (or $" MASTERS_ENV
					      ") is required");
		goto out;
	}
	peer_list = mem_strdup(peers);
	master_list = mem_strdup(masters);
	if (!peer_list || !master_list) {
		fprintf(stderr, PROG ": out of memory\n");
		code = 1;
		goto out;
	}
	if (!addrs_split(peer_list, "--peers", o.peers, RAFT_MAX_NODES,
			 &o.n_peers, err, sizeof(err)) ||
	    !addrs_split(master_list, "--masters", o.masters,
			 SKV_SERVER_MASTERS_MAX, &o.n_masters, err,
			 sizeof(err))) {
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
	o.gid = gid;
	o.id = (uint32_t)id;
	o.listen = listen;
	o.data_dir = data;
	o.cluster = cluster;
	o.compaction_log_bytes_max = compact ? (size_t)compact : SIZE_MAX;
	o.election_timeout_ms_min = election;
	o.election_timeout_ms_max = 2 * election;
	o.heartbeat_ms = election / 3;

	char tag[48];
	snprintf(tag, sizeof(tag), "kv%llu-%u", (unsigned long long)o.gid,
		 o.id);
	host_log_setup(tag, lvl);

	/* Before any thread exists, so that every thread inherits the mask
	 * and only host_wait_signal below takes these signals. */
	host_block_signals();

	struct skv_server *s;
	int rc = skv_server_start(&o, &s, err, sizeof(err));
	if (rc != STATUS_OK) {
		fprintf(stderr, PROG ": %s\n", err);
		code = 1;
		goto out;
	}
	int sig = host_wait_signal();
	log_info("main", "%s: shutting down",
		 sig == SIGINT ? "SIGINT" : "SIGTERM");
	skv_server_stop_free(s);
	log_info("main", "stopped");
out:
	mem_free(peer_list);
	mem_free(master_list);
	flags_release(&res);
	return code;
}
