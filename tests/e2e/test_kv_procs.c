/* The key/value store as real processes: a shard master of three
 * `shardmaster` programs and replica groups of three `shardkv` programs
 * on 127.0.0.1, their stores on disk, administered with `shardctl` and
 * read and written with `kvcli`, exactly as an operator would.
 *
 * The scenario: groups 100 and 101 join; 20 keys, two on each of the 10
 * shards, are put and read back. Group 102 joins and 100 leaves: every
 * key still reads its value, served by the groups that pulled the
 * shards. Once 100 has deleted its copies, its processes are stopped
 * and every key reads again (the data really moved). Appends and
 * deletes work, and a delete of a missing key says not found. Then the
 * leader of group 101 is killed with kill -9: writes and reads still
 * work, enough of them to compact the other replicas' logs past it; it
 * restarts and catches up by snapshot, and another replica of 101 is
 * killed, so the group needs the restarted one for a majority: writes
 * and reads work again.
 * At the end SIGTERM stops every process cleanly (exit 0, no sanitizer
 * report in its log).
 *
 * kvcli runs for all keys at once (one process per key), each with its
 * own deadline, so a pass costs one process start, not twenty. Every
 * wait polls a condition with a deadline; every child is killed in the
 * suite's fini, also after a failed assertion. Each server's output goes
 * to a log in the temporary directory; failures quote its tail
 * (tests/e2e/procs.h). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clerk/status.h"
#include "common/addrs.h"
#include "common/monotime.h"
#include "common/shard.h"
#include "common/status.h"
#include "tests/e2e/procs.h"
#include "tests/e2e/settled.h"
#include "tests/port.h"

#ifndef SHARDMASTER_BIN
#error "SHARDMASTER_BIN must name the shardmaster program"
#endif
#ifndef SHARDKV_BIN
#error "SHARDKV_BIN must name the shardkv program"
#endif
#ifndef SHARDCTL_BIN
#error "SHARDCTL_BIN must name the shardctl program"
#endif
#ifndef KVCLI_BIN
#error "KVCLI_BIN must name the kvcli program"
#endif

#define NREP 3	  /* replicas per Raft group, shard master included */
#define NGROUPS 3 /* gids 100, 101, 102 */
#define NSHARDS 10
#define NKEYS 20
/* The clients' own deadline: covers an election after a kill -9 and a
 * shard move. */
#define CLI_TIMEOUT "20000"
/* Log compaction threshold of the groups: a dozen small writes, so the
 * writes made while a replica is down compact the log past it and it
 * catches up by snapshot. */
#define KV_COMPACT_BYTES "512"

/* ======== processes ======== */

struct proc {
	bool kv;      /* shardkv, else shardmaster */
	uint64_t gid; /* shardkv */
	uint32_t id;
	struct procs_server s; /* "sm1", "kv100-2" */
};

static char tmpdir[] = "/tmp/skv_kv_procs.XXXXXX";
static struct proc masters[NREP];
static struct proc groups[NGROUPS][NREP];
static const uint64_t gids[NGROUPS] = {100, 101, 102};
static char master_list[NREP * 32];
static char peer_list[NGROUPS][NREP * 32];

/* Starts p (again: same directory and port) without waiting; output
 * appended to its log. */
static void proc_spawn(struct proc *p)
{
	char id[16], gid[24];
	snprintf(id, sizeof(id), "%u", p->id);
	snprintf(gid, sizeof(gid), "%" PRIu64, p->gid);
	char *sm_argv[] = {SHARDMASTER_BIN, "--id", id, "--peers",
			   master_list, "--data", p->s.dir, "--shards", "10",
			   NULL};
	char *peers = p->kv ? peer_list[p->gid - gids[0]] : master_list;
	char *kv_argv[] = {SHARDKV_BIN, "--gid", gid, "--id", id, "--peers",
			   peers, "--masters",
			   master_list, "--data", p->s.dir, "--compact-bytes",
			   KV_COMPACT_BYTES, NULL};
	procs_server_spawn(&p->s, p->kv ? kv_argv : sm_argv);
}

/* Starts n processes at once and waits until each has started (its
 * "started" line past where its log ended). A port a killed process
 * held may still be busy for a moment: a start that failed only for
 * that is retried. */
static void start_all(struct proc *ps, int n)
{
	long from[NREP];
	cr_assert_leq(n, NREP);
	for (int i = 0; i < n; i++) {
		from[i] = procs_file_size(ps[i].s.log);
		proc_spawn(&ps[i]);
	}
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	for (int i = 0; i < n; i++) {
		while (!procs_server_wait_started(&ps[i].s, from[i], end)) {
			procs_pause();
			from[i] = procs_file_size(ps[i].s.log);
			proc_spawn(&ps[i]);
		}
	}
}

/* ======== tools ======== */

static struct procs_run ctl_run;

/* shardctl --masters M --json --timeout T <a0> [a1]; its exit code,
 * output in ctl_run. */
static int shardctl(const char *a0, const char *a1)
{
	char *argv[] = {SHARDCTL_BIN, "--masters", master_list, "--json",
			"--timeout", CLI_TIMEOUT, (char *)a0, (char *)a1,
			NULL};
	char **argvs[] = {argv};
	procs_run_all(argvs, &ctl_run, 1);
	return ctl_run.rc;
}

/* The configuration number of a change's --json output. */
static uint64_t change_num(const struct procs_run *r)
{
	const char *p = strstr(r->out, "\"config\":{\"num\":");
	cr_assert(r->rc == 0 && strstr(r->out, "{\"ok\":true") && p,
		  "shardctl exit %d: %s%s", r->rc, r->out, r->err);
	return strtoull(p + strlen("\"config\":{\"num\":"), NULL, 10);
}

static uint64_t join(int g)
{
	char arg[160];
	snprintf(arg, sizeof(arg), "%" PRIu64 "=%s", gids[g], peer_list[g]);
	shardctl("join", arg);
	return change_num(&ctl_run);
}

static uint64_t leave(int g)
{
	char arg[32];
	snprintf(arg, sizeof(arg), "%" PRIu64, gids[g]);
	shardctl("leave", arg);
	return change_num(&ctl_run);
}

/* The owner of every shard in configuration `num` (NSHARDS of them). */
static void owners_of(uint64_t num, uint64_t owners[NSHARDS])
{
	char arg[32];
	snprintf(arg, sizeof(arg), "%" PRIu64, num);
	int rc = shardctl("query", arg);
	const char *p = strstr(ctl_run.out, "\"shards\":[");
	cr_assert(rc == 0 && p, "query %s: exit %d: %s%s", arg, rc,
		  ctl_run.out, ctl_run.err);
	p += strlen("\"shards\":[");
	for (int s = 0; s < NSHARDS; s++) {
		char *end;
		owners[s] = strtoull(p, &end, 10);
		cr_assert(end != p, "query %s: %s", arg, ctl_run.out);
		p = end + 1;
	}
}

/* The shards configuration `num` gives to group g, as a bit set. */
static uint32_t shards_of(uint64_t num, int g)
{
	uint64_t owners[NSHARDS];
	owners_of(num, owners);
	uint32_t set = 0;
	for (int s = 0; s < NSHARDS; s++)
		if (owners[s] == gids[g])
			set |= 1u << s;
	return set;
}

/* ======== keys ======== */

static char keys[NKEYS][16];
static char values[NKEYS][256]; /* the model */
static bool present[NKEYS];

/* Two keys on each shard. */
static void pick_keys(void)
{
	int per_shard[NSHARDS] = {0}, n = 0;
	for (int i = 0; n < NKEYS; i++) {
		char k[16];
		snprintf(k, sizeof(k), "key%d", i);
		uint32_t s = shard_for_key(k, strlen(k), NSHARDS);
		if (per_shard[s] == NKEYS / NSHARDS)
			continue;
		per_shard[s]++;
		memcpy(keys[n++], k, sizeof(k));
	}
}

/* kvcli <cmd> <key> [value] for every key in [from, to) at once; each
 * must exit with `want`. Updates the model. */
static void kv_all(const char *cmd, int from, int to, const char *suffix,
		   int want)
{
	char *argv[NKEYS][12];
	char **argvs[NKEYS];
	char vals[NKEYS][64];
	struct procs_run *runs = calloc(NKEYS, sizeof(*runs));
	cr_assert_not_null(runs);
	int n = to - from;
	for (int k = 0; k < n; k++) {
		int i = from + k, a = 0;
		snprintf(vals[k], sizeof(vals[k]), "%s-%s", keys[i],
			 suffix ? suffix : "");
		argv[k][a++] = KVCLI_BIN;
		argv[k][a++] = "--masters";
		argv[k][a++] = master_list;
		argv[k][a++] = "--timeout";
		argv[k][a++] = CLI_TIMEOUT;
		argv[k][a++] = (char *)cmd;
		argv[k][a++] = keys[i];
		if (suffix)
			argv[k][a++] = vals[k];
		argv[k][a] = NULL;
		argvs[k] = argv[k];
	}
	procs_run_all(argvs, runs, n);
	for (int k = 0; k < n; k++) {
		int i = from + k;
		cr_assert_eq(runs[k].rc, want,
			     "kvcli %s %s: exit %d, not %d: %s", cmd, keys[i],
			     runs[k].rc, want, runs[k].err);
		if (!strcmp(cmd, "put")) {
			snprintf(values[i], sizeof(values[i]), "%.200s", vals[k]);
			present[i] = true;
		} else if (!strcmp(cmd, "append")) {
			cr_assert_lt(strlen(values[i]) + strlen(vals[k]),
				     sizeof(values[i]));
			strcat(values[i], vals[k]);
			present[i] = true;
		} else if (!strcmp(cmd, "delete")) {
			values[i][0] = 0;
			present[i] = false;
		} else if (!strcmp(cmd, "get") && want == 0) {
			cr_assert_str_eq(runs[k].out, values[i],
					 "get %s: '%s', expected '%s'", keys[i],
					 runs[k].out, values[i]);
		}
	}
	free(runs);
}

/* Every key reads as the model says: its value, or not found. */
static void expect_all(void)
{
	uint64_t t0 = monotime_now_ms();
	for (int from = 0; from < NKEYS;) {
		int to = from;
		while (to < NKEYS && present[to] == present[from])
			to++;
		kv_all("get", from, to, NULL, present[from] ? 0 : 1);
		from = to;
	}
	cr_log_info("all %d keys read as expected (%" PRIu64 " ms)", NKEYS,
		    monotime_now_ms() - t0);
}

/* ======== groups ======== */

/* Waits until every running replica of group g logged that it deleted
 * its copy of each shard in `set` at configuration `num`. */
static void wait_handed_over(int g, uint64_t num, uint32_t set)
{
	for (int r = 0; r < NREP; r++) {
		struct proc *p = &groups[g][r];
		for (int s = 0; s < NSHARDS; s++) {
			if (!(set & (1u << s)))
				continue;
			char what[96];
			snprintf(what, sizeof(what),
				 "shard %d of config %" PRIu64
				 " handed over; old copy deleted",
				 s, num);
			procs_server_wait_log(&p->s, 0, what);
		}
	}
}

/* The replica of group g that most recently said it leads (the highest
 * term any of its replicas' logs reports a leader for). */
static struct proc *group_leader(int g)
{
	uint32_t leader = 0;
	uint64_t best = 0;
	for (int r = 0; r < NREP; r++) {
		char *text = procs_file_from(groups[g][r].s.log, 0);
		for (char *p = text; (p = strstr(p, "skv_server: node "));) {
			p += strlen("skv_server: node ");
			unsigned id;
			uint64_t term;
			char *t = strstr(p, "leads (term ");
			char *nl = strchr(p, '\n');
			if (!t || (nl && t > nl) || sscanf(p, "%u", &id) != 1)
				continue;
			term = strtoull(t + strlen("leads (term "), NULL, 10);
			if (term > best) {
				best = term;
				leader = id;
			}
		}
		free(text);
	}
	cr_assert(leader >= 1 && leader <= NREP,
		  "no leader of group %" PRIu64 " in the logs", gids[g]);
	cr_log_info("group %" PRIu64 ": node %u leads (term %" PRIu64 ")",
		    gids[g], leader, best);
	return &groups[g][leader - 1];
}

/* ======== status ======== */

/* The latest configuration's number. */
static uint64_t latest_num(void)
{
	int rc = shardctl("query", NULL);
	const char *p = strstr(ctl_run.out, "{\"num\":");
	cr_assert(rc == 0 && p, "query: exit %d: %s%s", rc, ctl_run.out,
		  ctl_run.err);
	return strtoull(p + strlen("{\"num\":"), NULL, 10);
}

/* Whether the replicas ps[0..NREP) at `list` ("a,b,c") have settled on
 * configuration `num` with shard owners `owners` (tests/e2e/settled.h),
 * and name one leader, each the same; each reports its kind, gid, id
 * and address. Why not, into why. */
static bool status_settled(const struct proc *ps, const char *list,
			   uint64_t num, const uint64_t owners[NSHARDS],
			   char *why, size_t cap)
{
	char copy[NREP * 32], err[128];
	const char *addrs[NREP];
	size_t n;
	snprintf(copy, sizeof(copy), "%s", list);
	cr_assert(addrs_split(copy, "peers", addrs, NREP, &n, err,
			      sizeof(err)) &&
		  n == NREP, "%s", err);
	struct node_status_result res[NREP];
	bool ok = settled_status(addrs, NREP, ps[0].gid, num, owners,
				 NSHARDS, 2000, res, why, cap);
	int leaders = 0;
	for (int i = 0; ok && i < NREP; i++) {
		const Skv__NodeStatusReply *r = res[i].reply;
		cr_assert_str_eq(r->kind, ps[i].kv ? "shardkv" : "shardmaster");
		cr_assert_eq(r->gid, ps[i].gid);
		cr_assert_eq(r->id, ps[i].id);
		cr_assert_eq(r->nodes, NREP);
		cr_assert_str_eq(r->address, addrs[i]);
		leaders += strcmp(r->role, "leader") == 0;
		if (strcmp(r->leader, res[0].reply->leader) != 0) {
			snprintf(why, cap, "%s: leader '%s', %s: '%s'",
				 addrs[i], r->leader, addrs[0],
				 res[0].reply->leader);
			ok = false;
		}
	}
	if (ok && leaders != 1) {
		snprintf(why, cap, "%d leaders", leaders);
		ok = false;
	}
	node_status_results_free(res, NREP);
	return ok;
}

/* Waits until the shard master and the groups g in [from, NGROUPS) all
 * report the latest configuration, settled (status_settled); then
 * `shardctl status --json` shows the same. */
static void expect_status(int from)
{
	uint64_t num = latest_num();
	uint64_t owners[NSHARDS];
	owners_of(num, owners);
	uint64_t end = monotime_now_ms() + PROCS_DEADLINE_MS;
	char why[512] = "";
	bool ok;
	do {
		ok = status_settled(masters, master_list, num, owners, why,
				    sizeof(why));
		for (int g = from; ok && g < NGROUPS; g++)
			ok = status_settled(groups[g], peer_list[g], num,
					    owners, why, sizeof(why));
	} while (!ok && monotime_now_ms() < end && (procs_pause(), true));
	cr_assert(ok, "status never settled at config %" PRIu64 ": %s", num,
		  why);

	int rc = shardctl("status", NULL);
	cr_assert(rc == 0 && strstr(ctl_run.out, "{\"ok\":true"),
		  "status: exit %d: %s%s", rc, ctl_run.out, ctl_run.err);
	const char *p = ctl_run.out;
	int n_leaders = 0, n_nodes = 0;
	while ((p = strstr(p, "\"reachable\":true"))) {
		n_nodes++;
		p++;
	}
	for (p = ctl_run.out; (p = strstr(p, "\"role\":\"leader\""));
	     p++)
		n_leaders++;
	cr_assert_eq(n_nodes, NREP * (1 + NGROUPS - from), "%s",
		     ctl_run.out);
	cr_assert_eq(n_leaders, 1 + NGROUPS - from, "%s", ctl_run.out);
	cr_log_info("status settled at config %" PRIu64, num);
}

/* ======== suite ======== */

static void proc_init(struct proc *p, bool kv, uint64_t gid, uint32_t id)
{
	char name[24];
	*p = (struct proc){.kv = kv, .gid = gid, .id = id};
	if (kv)
		snprintf(name, sizeof(name), "kv%" PRIu64 "-%u", gid, id);
	else
		snprintf(name, sizeof(name), "sm%u", id);
	procs_server_init(&p->s, name);
}

static void list_ports(char *out, size_t cap)
{
	size_t off = 0;
	for (int i = 0; i < NREP; i++)
		off += (size_t)snprintf(out + off, cap - off, "%s127.0.0.1:%d",
					i ? "," : "", test_port_reserve());
}

static void setup(void)
{
	procs_setup(tmpdir);
	list_ports(master_list, sizeof(master_list));
	for (int i = 0; i < NREP; i++)
		proc_init(&masters[i], false, 0, (uint32_t)(i + 1));
	for (int g = 0; g < NGROUPS; g++) {
		list_ports(peer_list[g], sizeof(peer_list[g]));
		for (int i = 0; i < NREP; i++)
			proc_init(&groups[g][i], true, gids[g],
				  (uint32_t)(i + 1));
	}
	pick_keys();
}

/* Also after a failed assertion: no child outlives the test. */
static void teardown(void)
{
	for (int g = 0; g < NGROUPS; g++)
		for (int i = 0; i < NREP; i++)
			procs_server_kill9(&groups[g][i].s);
	for (int i = 0; i < NREP; i++)
		procs_server_kill9(&masters[i].s);
	procs_teardown();
}

TestSuite(kv_procs, .init = setup, .fini = teardown, .timeout = 300);

Test(kv_procs, keys_survive_moves_group_shutdown_and_kill_9)
{
	uint64_t t0 = monotime_now_ms();
	start_all(masters, NREP);
	start_all(groups[0], NREP);
	start_all(groups[1], NREP);
	join(0);
	join(1);
	cr_log_info("shard master and groups 100, 101 up (%" PRIu64 " ms)",
		    monotime_now_ms() - t0);

	kv_all("put", 0, NKEYS, "v1", 0);
	expect_all();

	/* 102 joins, 100 leaves: its shards move to 101 and 102. */
	start_all(groups[2], NREP);
	join(2);
	uint64_t num = leave(0);
	uint32_t moved = shards_of(num - 1, 0);
	cr_assert_neq(moved, 0, "group 100 had no shard before it left");
	expect_all();
	/* Once 100 deleted its copies the data lives only in 101 and 102:
	 * stop 100 and read everything again. */
	wait_handed_over(0, num, moved);
	for (int i = 0; i < NREP; i++)
		procs_server_stop(&groups[0][i].s);
	cr_log_info("group 100 left and stopped at config %" PRIu64
		    " (%" PRIu64 " ms)",
		    num, monotime_now_ms() - t0);
	expect_all();

	/* Append and delete; a delete of a missing key is not found. */
	kv_all("append", 0, NKEYS / 2, "a1", 0);
	kv_all("delete", NKEYS / 2, NKEYS * 3 / 4, NULL, 0);
	expect_all();
	kv_all("delete", NKEYS / 2, NKEYS / 2 + 1, NULL, 1);

	/* kill -9 of 101's leader: the other two serve, and write enough
	 * to compact their logs past it. */
	struct proc *down = group_leader(1);
	cr_log_info("kill -9 %s", down->s.name);
	procs_server_kill9(&down->s);
	kv_all("put", NKEYS / 2, NKEYS, "v2", 0);
	kv_all("append", 0, NKEYS, "a2", 0);
	kv_all("append", 0, NKEYS, "a3", 0);
	expect_all();

	/* Back up, it catches up by snapshot; then another replica goes
	 * down, so the group needs the restarted one for its majority. */
	long from = procs_file_size(down->s.log);
	start_all(down, 1);
	procs_server_wait_log(&down->s, from, "installed a snapshot");
	struct proc *other = &groups[1][down->id % NREP];
	cr_log_info("%s restarted and caught up; kill -9 %s", down->s.name,
		    other->s.name);
	procs_server_kill9(&other->s);
	kv_all("append", 0, NKEYS, "a4", 0);
	expect_all();
	start_all(other, 1);
	expect_all();
	expect_status(1);

	for (int g = 1; g < NGROUPS; g++)
		for (int i = 0; i < NREP; i++)
			procs_server_stop(&groups[g][i].s);
	for (int i = 0; i < NREP; i++)
		procs_server_stop(&masters[i].s);
	cr_log_info("done in %" PRIu64 " ms", monotime_now_ms() - t0);
}
