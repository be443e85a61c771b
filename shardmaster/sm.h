/*
 * sm: the shard master's state machine. Pure: no clock, no I/O, no
 * threads; the same commands in the same order give the same state on
 * every replica, byte for byte.
 *
 * What it owns: every configuration ever made (config 0 .. latest; they
 * are never dropped, so Query(n) answers any n), the shard count, and the
 * dedup table (client id -> last sequence applied and its outcome).
 *
 * A new state machine is uninitialized (nshards 0, no configurations).
 * The first Init command fixes the shard count and creates config 0: no
 * groups, every shard on gid 0. Join, Leave and Move each make the next
 * configuration, or, when the request is bad, change nothing but the
 * dedup entry (a retry gets the same error).
 *
 * Invariant a reader must not break: nothing here may depend on hash-map
 * iteration order, pointer values or anything outside the commands; the
 * dedup table is looked up, never iterated, while applying.
 */
#ifndef SKV_SHARDMASTER_SM_H
#define SKV_SHARDMASTER_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/shardmaster.pb-c.h"

/* Limits, enforced when a command is applied (bad requests change
 * nothing) and when stored state is loaded. */
#define SM_SHARDS_DEFAULT 10
#define SM_SHARDS_MAX 4096
#define SM_GROUPS_MAX 1024	  /* groups in one configuration */
#define SM_SERVERS_MAX 16	  /* servers listed for one group */
#define SM_ADDR_BYTES_MAX 255	  /* one server address, "host:port" */
#define SM_GID_MAX INT64_MAX	  /* gids are 1..SM_GID_MAX; 0 = no group */
#define SM_ERROR_BYTES_MAX 200	  /* an outcome's error text */

/* The four client methods of skv.ShardMaster. */
enum sm_method {
	SM_METHOD_JOIN = 1,
	SM_METHOD_LEAVE = 2,
	SM_METHOD_MOVE = 3,
	SM_METHOD_QUERY = 4,
};

/* "/skv.ShardMaster/Join" ...; NULL for an unknown method. */
const char *sm_method_path(enum sm_method m);
/* The request message type of `m`; NULL for an unknown method. */
const ProtobufCMessageDescriptor *sm_method_request(enum sm_method m);
/* "join", "leave", "move", "query"; "?" for an unknown method. */
const char *sm_method_name(enum sm_method m);

struct sm_group {
	uint64_t gid;
	size_t n_servers;
	char **servers; /* n_servers NUL-terminated addresses */
};

struct sm_config {
	uint64_t num;
	uint32_t nshards;
	uint64_t *shards;	 /* shard -> gid, nshards entries */
	size_t n_groups;
	struct sm_group *groups; /* sorted by gid, gids unique */
};

/* The outcome of one client request, as kept for dedup. */
struct sm_outcome {
	int status;			     /* enum status */
	char error[SM_ERROR_BYTES_MAX + 1];  /* "" when status is OK */
	uint64_t config_num; /* latest configuration after the request */
};

/* What sm_apply changed, so the host can persist exactly that. */
struct sm_effects {
	bool initialized;	/* Init took effect: nshards and config 0 */
	bool config_added;	/* the latest configuration is new */
	bool dedup_changed;	/* the entry of `client_id` changed */
	uint64_t client_id;
	struct sm_outcome outcome; /* the answer for the request */
	bool duplicate;		/* seq already applied: nothing changed */
};

struct sm;

/* An empty, uninitialized state machine; NULL when out of memory. */
struct sm *sm_new(void);
void sm_free(struct sm *m); /* NULL ok */

/* Drops everything: back to the state of sm_new. */
void sm_reset(struct sm *m);

/* 0 until initialized. */
uint32_t sm_nshards(const struct sm *m);

/* Number of the latest configuration (0 also when uninitialized). */
uint64_t sm_latest_num(const struct sm *m);

/* Configuration `num`; num < 0 or past the latest gives the latest. NULL
 * when uninitialized. Owned by `m`, valid until the next apply/load/reset. */
const struct sm_config *sm_config(const struct sm *m, int64_t num);

/* The dedup entry of `client_id`: true and *seq, *out set if it has one. */
bool sm_dedup_get(const struct sm *m, uint64_t client_id, uint64_t *seq,
		  struct sm_outcome *out);

/*
 * Applies one replicated command (borrowed). Returns STATUS_OK with *fx
 * describing the change, or STATUS_NO_MEMORY, after which `m` is
 * unchanged... except that the host must treat it as fatal (replicas would
 * diverge). A request that is bad in the current state (join of an
 * existing gid, leave of an unknown gid, move to an unknown gid, shard out
 * of range, empty or oversized server list, gid 0, a request before Init)
 * is not an error here: it gives fx->outcome.status INVALID_ARGUMENT (or
 * NOT_READY before Init) with a one-line reason, and changes nothing else.
 * A request whose seq is not above its client's last applied seq changes
 * nothing (fx->duplicate): for seq equal to the last, fx->outcome is the
 * stored outcome; for an older seq, OK with the latest config number.
 */
int sm_apply(struct sm *m, const Skv__SmCommand *cmd, struct sm_effects *fx);

/*
 * Checks a request on its own, without the state: gids in range and
 * distinct, server lists non-empty and within limits, no empty address.
 * `nshards` 0 skips the shard range check. STATUS_OK or INVALID_ARGUMENT
 * with the reason in err[0..cap). The server uses it to refuse a request
 * before it reaches the log; sm_apply checks again.
 */
int sm_check_join(const Skv__JoinRequest *r, char *err, size_t cap);
int sm_check_leave(const Skv__LeaveRequest *r, char *err, size_t cap);
int sm_check_move(const Skv__MoveRequest *r, uint32_t nshards, char *err,
		  size_t cap);

/* ---- loading stored state (host: on open and after a snapshot) ---- */

/* Sets the shard count and config 0; the state must be empty. */
int sm_load_init(struct sm *m, uint32_t nshards);
/* Appends configuration `c` (borrowed, copied), which must be number
 * latest+1 with nshards shards and groups sorted by gid. INVALID_ARGUMENT
 * (CORRUPTION for the host) or NO_MEMORY. */
int sm_load_config(struct sm *m, const Skv__Config *c);
int sm_load_dedup(struct sm *m, uint64_t client_id, uint64_t seq,
		  const struct sm_outcome *o);

/* ---- conversions ---- */

/* Fills `out` (caller's, skv__config__init'ed by this call) to point into
 * `c` and into scratch arrays allocated here; release them with
 * sm_config_proto_release. STATUS_OK or NO_MEMORY. */
int sm_config_to_proto(const struct sm_config *c, Skv__Config *out);
void sm_config_proto_release(Skv__Config *out);

/* Copies a received configuration into *out (the caller's:
 * sm_config_free) after sm_config_proto_check. STATUS_OK,
 * INVALID_ARGUMENT (reason in err[0..cap)) or NO_MEMORY. */
int sm_config_from_proto(const Skv__Config *pc, struct sm_config **out,
			 char *err, size_t cap);
/* Frees a configuration from sm_config_from_proto. NULL ok. */
void sm_config_free(struct sm_config *c);

/* Checks a received configuration: nshards entries, groups sorted and
 * unique, gids and addresses within limits, every shard on 0 or a listed
 * group. STATUS_OK or INVALID_ARGUMENT with the reason. */
int sm_config_proto_check(const Skv__Config *c, char *err, size_t cap);

/* ---- rebalancing (rebalance.c) ---- */

/*
 * Reassigns shards[0..nshards) among the groups gids[0..n_gids) (sorted,
 * unique) so that each group owns floor or ceil of nshards / n_gids (with
 * more groups than shards: 1 or 0) and as few shards as possible change
 * owner: groups that already own the most keep the larger share (ties:
 * lower gid first), an over-full group gives up its highest-numbered
 * shards, and free shards (on gid 0 or a gid not in the list) go in
 * ascending order to under-full groups in ascending gid order. With no
 * groups every shard goes to gid 0. Deterministic; allocation-free except
 * for the NO_MEMORY it may return when n_gids is large.
 */
int sm_rebalance(uint64_t *shards, uint32_t nshards, const uint64_t *gids,
		 size_t n_gids);

#endif
