/*
 * datadir: a server's data directory, and the identity that ties it to
 * one replica.
 *
 * What it is for: opening the store of a shardmaster or shardkv process
 * so that a directory is only ever used by the replica that created it.
 * The first start on an empty (or missing) directory creates it (with
 * missing parents) and writes, with a synced write before anything else,
 * an identity record in the `default` column family:
 *     "kind=<kind>\ncluster=<name>\n<field>=<n>\n..."
 * Every later start reads it and refuses the directory when the kind,
 * the cluster name or any field differs, when it holds a database
 * without an identity, or files that are no database.
 *
 * The record lives in `default`, not `meta`: installing a Raft snapshot
 * replaces all of `meta` (and `data`) with the leader's, which would give
 * this node the leader's identity. Each kind keeps it under its own key
 * ending in "/identity" ("sm/identity", "kv/identity"); a directory of
 * another kind is recognized by that suffix and named in the refusal.
 *
 * Ownership: datadir_open hands the caller a store to close; the
 * identity is borrowed for the call.
 */
#ifndef SKV_COMMON_DATADIR_H
#define SKV_COMMON_DATADIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/store/store.h"

/* A cluster name: 1..DATADIR_CLUSTER_MAX bytes of [A-Za-z0-9._-]. */
#define DATADIR_CLUSTER_MAX 64
#define DATADIR_FIELDS_MAX 4

struct datadir_identity {
	const char *kind;  /* "shardmaster", "shardkv" */
	const char *title; /* in messages: "shard-master", "shardkv" */
	const char *key;   /* its key in `default`: "sm/identity" */
	const char *cluster;
	/* The numbers naming this replica, in the order written:
	 * {"gid", 100}, {"id", 2}, {"nodes", 3}. Names are [a-z]+. */
	struct {
		const char *name;
		uint64_t value;
	} fields[DATADIR_FIELDS_MAX];
	size_t n_fields;
};

/* True if `name` is a valid cluster name. */
bool datadir_cluster_ok(const char *name);

/*
 * Opens the store at `dir` and checks its identity against `want`, or
 * creates both. STATUS_OK and *out (the caller closes it); else *out is
 * NULL and err[0..cap) holds one line naming the directory:
 * INVALID_ARGUMENT (another replica's directory, "identity mismatch";
 * a directory that is no data dir of this kind, "not a <title> data
 * dir"; a bad path), CORRUPTION (unreadable identity), IO and other
 * store errors.
 */
int datadir_open(const char *dir, const struct datadir_identity *want,
		 struct store **out, char *err, size_t cap);

#endif
