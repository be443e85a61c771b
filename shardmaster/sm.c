/*
 * sm: the shard master's configurations and dedup table (sm.h).
 *
 * A new configuration is built as a full copy of the latest, changed and
 * checked, and only then appended, so a refused request or a failed
 * allocation leaves the state as it was.
 */
#include "shardmaster/sm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addrs.h"
#include "common/mem.h"
#include "common/status.h"

/* ---- methods ---- */

const char *sm_method_path(enum sm_method m)
{
	switch (m) {
	case SM_METHOD_JOIN: return "/skv.ShardMaster/Join";
	case SM_METHOD_LEAVE: return "/skv.ShardMaster/Leave";
	case SM_METHOD_MOVE: return "/skv.ShardMaster/Move";
	case SM_METHOD_QUERY: return "/skv.ShardMaster/Query";
	}
	return NULL;
}

const ProtobufCMessageDescriptor *sm_method_request(enum sm_method m)
{
	switch (m) {
	case SM_METHOD_JOIN: return &skv__join_request__descriptor;
	case SM_METHOD_LEAVE: return &skv__leave_request__descriptor;
	case SM_METHOD_MOVE: return &skv__move_request__descriptor;
	case SM_METHOD_QUERY: return &skv__query_request__descriptor;
	}
	return NULL;
}

const char *sm_method_name(enum sm_method m)
{
	switch (m) {
	case SM_METHOD_JOIN: return "join";
	case SM_METHOD_LEAVE: return "leave";
	case SM_METHOD_MOVE: return "move";
	case SM_METHOD_QUERY: return "query";
	}
	return "?";
}

/* ---- dedup table: open addressing, looked up, never iterated ---- */

struct dedup {
	uint64_t client_id;
	uint64_t seq;
	bool used;
	struct sm_outcome outcome;
};

struct sm {
	uint32_t nshards;
	struct sm_config **configs; /* configs[num] */
	size_t n_configs, cap_configs;
	struct dedup *dedup;
	size_t n_dedup, cap_dedup; /* cap: 0 or a power of two */
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static struct dedup *dedup_slot(struct dedup *t, size_t cap, uint64_t id)
{
	size_t i = (size_t)mix64(id) & (cap - 1);
	while (t[i].used && t[i].client_id != id)
		i = (i + 1) & (cap - 1);
	return &t[i];
}

static const struct dedup *dedup_find(const struct sm *m, uint64_t id)
{
	if (m->cap_dedup == 0)
		return NULL;
	const struct dedup *d = dedup_slot(m->dedup, m->cap_dedup, id);
	return d->used ? d : NULL;
}

/* Makes room for one more entry (load kept under 3/4). */
static int dedup_reserve(struct sm *m)
{
	if ((m->n_dedup + 1) * 4 <= m->cap_dedup * 3)
		return STATUS_OK;
	size_t cap = m->cap_dedup ? m->cap_dedup * 2 : 64;
	struct dedup *t = mem_calloc(cap, sizeof(*t));
	if (!t)
		return STATUS_NO_MEMORY;
	for (size_t i = 0; i < m->cap_dedup; i++)
		if (m->dedup[i].used)
			*dedup_slot(t, cap, m->dedup[i].client_id) =
				m->dedup[i];
	mem_free(m->dedup);
	m->dedup = t;
	m->cap_dedup = cap;
	return STATUS_OK;
}

/* After dedup_reserve: cannot fail. */
static void dedup_put(struct sm *m, uint64_t id, uint64_t seq,
		      const struct sm_outcome *o)
{
	struct dedup *d = dedup_slot(m->dedup, m->cap_dedup, id);
	if (!d->used)
		m->n_dedup++;
	d->used = true;
	d->client_id = id;
	d->seq = seq;
	d->outcome = *o;
}

/* ---- configurations ---- */

/* Frees a group's server list. */
static void group_clear(struct sm_group *g)
{
	addrs_free(g->servers, g->n_servers);
	g->servers = NULL;
	g->n_servers = 0;
}

void sm_config_free(struct sm_config *c)
{
	if (!c)
		return;
	for (size_t g = 0; g < c->n_groups; g++)
		group_clear(&c->groups[g]);
	mem_free(c->groups);
	mem_free(c->shards);
	mem_free(c);
}

static struct sm_config *config_new(uint32_t nshards, size_t n_groups)
{
	struct sm_config *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->nshards = nshards;
	c->shards = mem_calloc(nshards ? nshards : 1, sizeof(*c->shards));
	c->groups = mem_calloc(n_groups ? n_groups : 1, sizeof(*c->groups));
	if (!c->shards || !c->groups) {
		sm_config_free(c);
		return NULL;
	}
	return c;
}

/* Copies the server list into g (which owns it after STATUS_OK). */
static int group_set(struct sm_group *g, uint64_t gid, char *const *servers,
		     size_t n)
{
	g->gid = gid;
	g->n_servers = 0;
	int rc = addrs_copy((const char *const *)servers, n, &g->servers);
	if (rc == STATUS_OK)
		g->n_servers = n;
	return rc;
}

/* A copy of `src` with room for `extra_groups` more groups. */
static struct sm_config *config_copy(const struct sm_config *src,
				     size_t extra_groups)
{
	struct sm_config *c = config_new(src->nshards,
					 src->n_groups + extra_groups);
	if (!c)
		return NULL;
	c->num = src->num;
	memcpy(c->shards, src->shards, src->nshards * sizeof(*c->shards));
	for (size_t g = 0; g < src->n_groups; g++) {
		c->n_groups++;
		if (group_set(&c->groups[g], src->groups[g].gid,
			      src->groups[g].servers,
			      src->groups[g].n_servers)) {
			sm_config_free(c);
			return NULL;
		}
	}
	return c;
}

static const struct sm_group *config_group(const struct sm_config *c,
					   uint64_t gid)
{
	size_t lo = 0, hi = c->n_groups;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->groups[mid].gid < gid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->n_groups && c->groups[lo].gid == gid ? &c->groups[lo]
							    : NULL;
}

/* Rebalances c over its own groups. */
static int config_rebalance(struct sm_config *c)
{
	uint64_t *gids = mem_calloc(c->n_groups ? c->n_groups : 1,
				    sizeof(*gids));
	if (!gids)
		return STATUS_NO_MEMORY;
	for (size_t g = 0; g < c->n_groups; g++)
		gids[g] = c->groups[g].gid;
	int rc = sm_rebalance(c->shards, c->nshards, gids, c->n_groups);
	mem_free(gids);
	return rc;
}

static int config_append(struct sm *m, struct sm_config *c)
{
	if (m->n_configs == m->cap_configs) {
		size_t cap = m->cap_configs ? m->cap_configs * 2 : 16;
		void *p = mem_realloc(m->configs, cap * sizeof(*m->configs));
		if (!p)
			return STATUS_NO_MEMORY;
		m->configs = p;
		m->cap_configs = cap;
	}
	m->configs[m->n_configs++] = c;
	return STATUS_OK;
}

/* ---- life cycle and observers ---- */

struct sm *sm_new(void)
{
	return mem_calloc(1, sizeof(struct sm));
}

void sm_reset(struct sm *m)
{
	for (size_t i = 0; i < m->n_configs; i++)
		sm_config_free(m->configs[i]);
	mem_free(m->configs);
	mem_free(m->dedup);
	memset(m, 0, sizeof(*m));
}

void sm_free(struct sm *m)
{
	if (!m)
		return;
	sm_reset(m);
	mem_free(m);
}

uint32_t sm_nshards(const struct sm *m)
{
	return m->nshards;
}

uint64_t sm_latest_num(const struct sm *m)
{
	return m->n_configs ? m->configs[m->n_configs - 1]->num : 0;
}

const struct sm_config *sm_config(const struct sm *m, int64_t num)
{
	if (m->n_configs == 0)
		return NULL;
	if (num < 0 || (uint64_t)num >= m->n_configs)
		return m->configs[m->n_configs - 1];
	return m->configs[num];
}

bool sm_dedup_get(const struct sm *m, uint64_t client_id, uint64_t *seq,
		  struct sm_outcome *out)
{
	const struct dedup *d = dedup_find(m, client_id);
	if (!d)
		return false;
	if (seq)
		*seq = d->seq;
	if (out)
		*out = d->outcome;
	return true;
}

/* ---- request checks ---- */

static int refuse(char *err, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int refuse(char *err, size_t cap, const char *fmt, ...)
{
	if (cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, cap, fmt, ap);
		va_end(ap);
	}
	return STATUS_INVALID_ARGUMENT;
}

static int check_gid(uint64_t gid, const char *what, char *err, size_t cap)
{
	if (gid == 0 || gid > (uint64_t)SM_GID_MAX)
		return refuse(err, cap,
			      "%s: gid %llu is out of range (1..%lld)", what,
			      (unsigned long long)gid, (long long)SM_GID_MAX);
	return STATUS_OK;
}

static int check_addr(const char *a, uint64_t gid, char *err, size_t cap)
{
	size_t len = a ? strlen(a) : 0;
	if (len == 0)
		return refuse(err, cap, "gid %llu: empty server address",
			      (unsigned long long)gid);
	if (len > SM_ADDR_BYTES_MAX)
		return refuse(err, cap,
			      "gid %llu: server address longer than %d bytes",
			      (unsigned long long)gid, SM_ADDR_BYTES_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)a[i];
		if (ch <= ' ' || ch == 0x7f || ch == ',')
			return refuse(err, cap,
				      "gid %llu: server address \"%.40s\" "
				      "contains a space, comma or control "
				      "character",
				      (unsigned long long)gid, a);
	}
	return STATUS_OK;
}

static int check_servers(uint64_t gid, char *const *servers, size_t n,
			 char *err, size_t cap)
{
	if (n == 0)
		return refuse(err, cap,
			      "join: gid %llu has no servers (give at least "
			      "one address)",
			      (unsigned long long)gid);
	if (n > SM_SERVERS_MAX)
		return refuse(err, cap,
			      "join: gid %llu lists %zu servers, at most %d",
			      (unsigned long long)gid, n, SM_SERVERS_MAX);
	for (size_t i = 0; i < n; i++) {
		int rc = check_addr(servers[i], gid, err, cap);
		if (rc)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(servers[i], servers[j]) == 0)
				return refuse(err, cap,
					      "join: gid %llu lists server "
					      "%s twice",
					      (unsigned long long)gid,
					      servers[i]);
	}
	return STATUS_OK;
}

int sm_check_join(const Skv__JoinRequest *r, char *err, size_t cap)
{
	if (r->n_groups == 0)
		return refuse(err, cap, "join: no groups given");
	if (r->n_groups > SM_GROUPS_MAX)
		return refuse(err, cap, "join: %zu groups, at most %d",
			      r->n_groups, SM_GROUPS_MAX);
	for (size_t i = 0; i < r->n_groups; i++) {
		const Skv__Group *g = r->groups[i];
		int rc = check_gid(g->gid, "join", err, cap);
		if (!rc)
			rc = check_servers(g->gid, g->servers, g->n_servers,
					   err, cap);
		if (rc)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (r->groups[j]->gid == g->gid)
				return refuse(err, cap,
					      "join: gid %llu given twice",
					      (unsigned long long)g->gid);
	}
	return STATUS_OK;
}

int sm_check_leave(const Skv__LeaveRequest *r, char *err, size_t cap)
{
	if (r->n_gids == 0)
		return refuse(err, cap, "leave: no gids given");
	if (r->n_gids > SM_GROUPS_MAX)
		return refuse(err, cap, "leave: %zu gids, at most %d",
			      r->n_gids, SM_GROUPS_MAX);
	for (size_t i = 0; i < r->n_gids; i++) {
		int rc = check_gid(r->gids[i], "leave", err, cap);
		if (rc)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (r->gids[j] == r->gids[i])
				return refuse(err, cap,
					      "leave: gid %llu given twice",
					      (unsigned long long)r->gids[i]);
	}
	return STATUS_OK;
}

int sm_check_move(const Skv__MoveRequest *r, uint32_t nshards, char *err,
		  size_t cap)
{
	if (nshards && r->shard >= nshards)
		return refuse(err, cap,
			      "move: shard %u is out of range (shards are "
			      "0..%u)",
			      r->shard, nshards - 1);
	return check_gid(r->gid, "move", err, cap);
}

/* ---- applying commands ---- */

static int cmp_group(const void *a, const void *b)
{
	const struct sm_group *x = a, *y = b;
	return x->gid < y->gid ? -1 : x->gid > y->gid;
}

/* Builds the config after a Join into *out, or refuses. */
static int make_join(const struct sm *m, const Skv__JoinRequest *r,
		     struct sm_config **out, char *err, size_t cap)
{
	const struct sm_config *cur = m->configs[m->n_configs - 1];
	int rc = sm_check_join(r, err, cap);
	if (rc)
		return rc;
	for (size_t i = 0; i < r->n_groups; i++)
		if (config_group(cur, r->groups[i]->gid))
			return refuse(err, cap,
				      "join: gid %llu is already in the "
				      "configuration (leave it first, or "
				      "pick another gid)",
				      (unsigned long long)r->groups[i]->gid);
	if (cur->n_groups + r->n_groups > SM_GROUPS_MAX)
		return refuse(err, cap,
			      "join: would make %zu groups, at most %d",
			      cur->n_groups + r->n_groups, SM_GROUPS_MAX);
	struct sm_config *c = config_copy(cur, r->n_groups);
	if (!c)
		return STATUS_NO_MEMORY;
	for (size_t i = 0; i < r->n_groups; i++) {
		struct sm_group *g = &c->groups[c->n_groups++];
		if (group_set(g, r->groups[i]->gid, r->groups[i]->servers,
			      r->groups[i]->n_servers)) {
			sm_config_free(c);
			return STATUS_NO_MEMORY;
		}
	}
	qsort(c->groups, c->n_groups, sizeof(*c->groups), cmp_group);
	if (config_rebalance(c)) {
		sm_config_free(c);
		return STATUS_NO_MEMORY;
	}
	*out = c;
	return STATUS_OK;
}

static int make_leave(const struct sm *m, const Skv__LeaveRequest *r,
		      struct sm_config **out, char *err, size_t cap)
{
	const struct sm_config *cur = m->configs[m->n_configs - 1];
	int rc = sm_check_leave(r, err, cap);
	if (rc)
		return rc;
	for (size_t i = 0; i < r->n_gids; i++)
		if (!config_group(cur, r->gids[i]))
			return refuse(err, cap,
				      "leave: gid %llu is not in the "
				      "configuration",
				      (unsigned long long)r->gids[i]);
	struct sm_config *c = config_copy(cur, 0);
	if (!c)
		return STATUS_NO_MEMORY;
	/* Drop the leaving groups, keeping the order. */
	size_t kept = 0;
	for (size_t g = 0; g < c->n_groups; g++) {
		bool leaves = false;
		for (size_t i = 0; i < r->n_gids && !leaves; i++)
			leaves = r->gids[i] == c->groups[g].gid;
		if (leaves) {
			group_clear(&c->groups[g]);
		} else {
			c->groups[kept++] = c->groups[g];
		}
	}
	c->n_groups = kept;
	if (config_rebalance(c)) {
		sm_config_free(c);
		return STATUS_NO_MEMORY;
	}
	*out = c;
	return STATUS_OK;
}

static int make_move(const struct sm *m, const Skv__MoveRequest *r,
		     struct sm_config **out, char *err, size_t cap)
{
	const struct sm_config *cur = m->configs[m->n_configs - 1];
	int rc = sm_check_move(r, m->nshards, err, cap);
	if (rc)
		return rc;
	if (!config_group(cur, r->gid))
		return refuse(err, cap,
			      "move: gid %llu is not in the configuration "
			      "(join it first)",
			      (unsigned long long)r->gid);
	struct sm_config *c = config_copy(cur, 0);
	if (!c)
		return STATUS_NO_MEMORY;
	c->shards[r->shard] = r->gid;
	*out = c;
	return STATUS_OK;
}

int sm_apply(struct sm *m, const Skv__SmCommand *cmd, struct sm_effects *fx)
{
	memset(fx, 0, sizeof(*fx));
	uint64_t client_id, seq;
	switch (cmd->op_case) {
	case SKV__SM_COMMAND__OP_INIT: {
		uint32_t n = cmd->init->nshards;
		fx->outcome.status = STATUS_OK;
		if (m->nshards != 0 || n == 0 || n > SM_SHARDS_MAX) {
			/* Only the first valid Init counts. */
			fx->duplicate = true;
		} else {
			int rc = sm_load_init(m, n);
			if (rc)
				return rc;
			fx->initialized = true;
			fx->config_added = true;
		}
		fx->outcome.config_num = sm_latest_num(m);
		return STATUS_OK;
	}
	case SKV__SM_COMMAND__OP_JOIN:
		client_id = cmd->join->client_id;
		seq = cmd->join->seq;
		break;
	case SKV__SM_COMMAND__OP_LEAVE:
		client_id = cmd->leave->client_id;
		seq = cmd->leave->seq;
		break;
	case SKV__SM_COMMAND__OP_MOVE:
		client_id = cmd->move->client_id;
		seq = cmd->move->seq;
		break;
	default:
		fx->duplicate = true;
		fx->outcome.status = STATUS_INVALID_ARGUMENT;
		snprintf(fx->outcome.error, sizeof(fx->outcome.error),
			 "empty command");
		return STATUS_OK;
	}
	fx->client_id = client_id;

	const struct dedup *d = dedup_find(m, client_id);
	if (d && seq <= d->seq) {
		fx->duplicate = true;
		if (seq == d->seq) {
			fx->outcome = d->outcome;
		} else {
			fx->outcome.status = STATUS_OK;
			fx->outcome.config_num = sm_latest_num(m);
		}
		return STATUS_OK;
	}
	if (m->nshards == 0) {
		/* Not recorded: the retry after Init must apply. */
		fx->outcome.status = STATUS_NOT_READY;
		snprintf(fx->outcome.error, sizeof(fx->outcome.error),
			 "the shard master is not initialized yet");
		return STATUS_OK;
	}

	int rc = dedup_reserve(m);
	if (rc)
		return rc;
	if (m->n_configs == m->cap_configs) {
		/* Reserve the slot so the append below cannot fail. */
		size_t cap = m->cap_configs ? m->cap_configs * 2 : 16;
		void *p = mem_realloc(m->configs, cap * sizeof(*m->configs));
		if (!p)
			return STATUS_NO_MEMORY;
		m->configs = p;
		m->cap_configs = cap;
	}

	struct sm_config *c = NULL;
	struct sm_outcome *o = &fx->outcome;
	switch (cmd->op_case) {
	case SKV__SM_COMMAND__OP_JOIN:
		rc = make_join(m, cmd->join, &c, o->error, sizeof(o->error));
		break;
	case SKV__SM_COMMAND__OP_LEAVE:
		rc = make_leave(m, cmd->leave, &c, o->error,
				sizeof(o->error));
		break;
	default:
		rc = make_move(m, cmd->move, &c, o->error, sizeof(o->error));
		break;
	}
	if (rc == STATUS_NO_MEMORY)
		return rc;
	if (rc == STATUS_OK) {
		c->num = sm_latest_num(m) + 1;
		(void)config_append(m, c); /* room reserved above */
		fx->config_added = true;
		o->error[0] = '\0';
	}
	o->status = rc;
	o->config_num = sm_latest_num(m);
	dedup_put(m, client_id, seq, o);
	fx->dedup_changed = true;
	return STATUS_OK;
}

/* ---- loading ---- */

int sm_load_init(struct sm *m, uint32_t nshards)
{
	if (m->nshards != 0 || m->n_configs != 0 || nshards == 0 ||
	    nshards > SM_SHARDS_MAX)
		return STATUS_INVALID_ARGUMENT;
	struct sm_config *c = config_new(nshards, 0);
	if (!c)
		return STATUS_NO_MEMORY;
	if (config_append(m, c)) {
		sm_config_free(c);
		return STATUS_NO_MEMORY;
	}
	m->nshards = nshards;
	return STATUS_OK;
}

int sm_load_config(struct sm *m, const Skv__Config *pc)
{
	char err[128];
	if (m->nshards == 0 || pc->num != sm_latest_num(m) + 1 ||
	    pc->n_shards != m->nshards)
		return STATUS_INVALID_ARGUMENT;
	struct sm_config *c;
	int rc = sm_config_from_proto(pc, &c, err, sizeof(err));
	if (rc)
		return rc;
	if (config_append(m, c)) {
		sm_config_free(c);
		return STATUS_NO_MEMORY;
	}
	return STATUS_OK;
}

int sm_load_dedup(struct sm *m, uint64_t client_id, uint64_t seq,
		  const struct sm_outcome *o)
{
	int rc = dedup_reserve(m);
	if (rc)
		return rc;
	dedup_put(m, client_id, seq, o);
	return STATUS_OK;
}

/* ---- conversions ---- */

int sm_config_to_proto(const struct sm_config *c, Skv__Config *out)
{
	skv__config__init(out);
	out->num = c->num;
	out->n_shards = c->nshards;
	out->shards = c->shards;
	if (c->n_groups == 0)
		return STATUS_OK;
	Skv__Group *gs = mem_calloc(c->n_groups, sizeof(*gs));
	Skv__Group **gp = mem_calloc(c->n_groups, sizeof(*gp));
	if (!gs || !gp) {
		mem_free(gs);
		mem_free(gp);
		return STATUS_NO_MEMORY;
	}
	for (size_t g = 0; g < c->n_groups; g++) {
		skv__group__init(&gs[g]);
		gs[g].gid = c->groups[g].gid;
		gs[g].n_servers = c->groups[g].n_servers;
		gs[g].servers = c->groups[g].servers;
		gp[g] = &gs[g];
	}
	out->n_groups = c->n_groups;
	out->groups = gp;
	return STATUS_OK;
}

int sm_config_from_proto(const Skv__Config *pc, struct sm_config **out,
			 char *err, size_t cap)
{
	*out = NULL;
	int rc = sm_config_proto_check(pc, err, cap);
	if (rc)
		return rc;
	struct sm_config *c = config_new((uint32_t)pc->n_shards, pc->n_groups);
	if (!c)
		goto err_nomem;
	c->num = pc->num;
	memcpy(c->shards, pc->shards, pc->n_shards * sizeof(*c->shards));
	for (size_t g = 0; g < pc->n_groups; g++) {
		c->n_groups++;
		if (group_set(&c->groups[g], pc->groups[g]->gid,
			      pc->groups[g]->servers,
			      pc->groups[g]->n_servers)) {
			sm_config_free(c);
			goto err_nomem;
		}
	}
	*out = c;
	return STATUS_OK;

err_nomem:
	snprintf(err, cap, "out of memory copying the configuration");
	return STATUS_NO_MEMORY;
}

void sm_config_proto_release(Skv__Config *out)
{
	if (out->n_groups)
		mem_free(out->groups[0]); /* the array of groups */
	mem_free(out->groups);
	out->groups = NULL;
	out->n_groups = 0;
}

int sm_config_proto_check(const Skv__Config *c, char *err, size_t cap)
{
	if (c->n_shards == 0 || c->n_shards > SM_SHARDS_MAX)
		return refuse(err, cap, "config %llu has %zu shards",
			      (unsigned long long)c->num, c->n_shards);
	if (c->n_groups > SM_GROUPS_MAX)
		return refuse(err, cap, "config %llu has %zu groups",
			      (unsigned long long)c->num, c->n_groups);
	for (size_t g = 0; g < c->n_groups; g++) {
		const Skv__Group *gr = c->groups[g];
		int rc = check_gid(gr->gid, "config", err, cap);
		if (!rc)
			rc = check_servers(gr->gid, gr->servers,
					   gr->n_servers, err, cap);
		if (rc)
			return rc;
		if (g > 0 && c->groups[g - 1]->gid >= gr->gid)
			return refuse(err, cap,
				      "config %llu: groups not sorted by gid",
				      (unsigned long long)c->num);
	}
	for (size_t s = 0; s < c->n_shards; s++) {
		uint64_t gid = c->shards[s];
		bool known = gid == 0;
		size_t lo = 0, hi = c->n_groups;
		while (!known && lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (c->groups[mid]->gid == gid)
				known = true;
			else if (c->groups[mid]->gid < gid)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (!known)
			return refuse(err, cap,
				      "config %llu: shard %zu on gid %llu, "
				      "which is not listed",
				      (unsigned long long)c->num, s,
				      (unsigned long long)gid);
	}
	return STATUS_OK;
}
