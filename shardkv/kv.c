/*
 * skv: shard states, configurations and dedup tables of one replica
 * group (kv.h).
 */
#include "shardkv/kv.h"

#include <stdlib.h>
#include <string.h>

#include "common/addrs.h"
#include "common/mem.h"
#include "common/status.h"

struct dedup_slot {
	uint64_t client_id;
	uint64_t seq;
	int status;
	bool used;
};

/* Open addressing, linear probing; cap is 0 or a power of two. */
struct dedup {
	struct dedup_slot *slots;
	size_t cap, n;
};

struct shard {
	enum skv_shard_state state;
	uint64_t config_num;
	uint64_t from_gid;
	size_t n_from;
	char **from_servers;
	struct dedup dedup;
};

struct skv {
	uint64_t gid;
	uint64_t version; /* skv_version */
	uint32_t nshards;
	struct sm_config *cur; /* NULL at configuration 0 */
	struct shard *shards;  /* nshards */
	uint64_t *holder;      /* nshards */
	size_t n_hgroups;
	struct sm_group *hgroups; /* sorted by gid */
};

const char *skv_shard_state_name(enum skv_shard_state st)
{
	switch (st) {
	case SKV_SHARD_NONE: return "none";
	case SKV_SHARD_SERVING: return "serving";
	case SKV_SHARD_PULLING: return "pulling";
	case SKV_SHARD_BEPULLING: return "bepulling";
	case SKV_SHARD_GCING: return "gcing";
	case SKV_SHARD_HELD: return "held";
	}
	return "?";
}

/* ---- small helpers ---- */

/* A copy of a server list (NULL for none). */
static int servers_copy(char *const *v, size_t n, char ***out)
{
	return addrs_copy((const char *const *)v, n, out);
}

static void groups_free(struct sm_group *g, size_t n)
{
	for (size_t i = 0; i < n; i++)
		addrs_free(g[i].servers, g[i].n_servers);
	mem_free(g);
}

static const struct sm_group *group_find(const struct sm_group *g, size_t n,
					 uint64_t gid)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (g[mid].gid == gid)
			return &g[mid];
		if (g[mid].gid < gid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- dedup tables ---- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

static struct dedup_slot *dedup_find(const struct dedup *d, uint64_t id)
{
	if (d->cap == 0)
		return NULL;
	for (size_t i = mix64(id) & (d->cap - 1);; i = (i + 1) & (d->cap - 1)) {
		if (!d->slots[i].used)
			return NULL;
		if (d->slots[i].client_id == id)
			return &d->slots[i];
	}
}

static int dedup_set(struct dedup *d, uint64_t id, uint64_t seq, int status)
{
	struct dedup_slot *e = dedup_find(d, id);
	if (e) {
		e->seq = seq;
		e->status = status;
		return STATUS_OK;
	}
	if ((d->n + 1) * 4 > d->cap * 3) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct dedup_slot *slots = mem_calloc(cap, sizeof(*slots));
		if (!slots)
			return STATUS_NO_MEMORY;
		for (size_t i = 0; i < d->cap; i++) {
			if (!d->slots[i].used)
				continue;
			size_t j = mix64(d->slots[i].client_id) & (cap - 1);
			while (slots[j].used)
				j = (j + 1) & (cap - 1);
			slots[j] = d->slots[i];
		}
		mem_free(d->slots);
		d->slots = slots;
		d->cap = cap;
	}
	size_t i = mix64(id) & (d->cap - 1);
	while (d->slots[i].used)
		i = (i + 1) & (d->cap - 1);
	d->slots[i] = (struct dedup_slot){
		.client_id = id, .seq = seq, .status = status, .used = true,
	};
	d->n++;
	return STATUS_OK;
}

static void dedup_clear(struct dedup *d)
{
	mem_free(d->slots);
	memset(d, 0, sizeof(*d));
}

/* ---- life cycle ---- */

static void shard_set_from(struct shard *sh, uint64_t gid, char **servers,
			   size_t n)
{
	addrs_free(sh->from_servers, sh->n_from);
	sh->from_gid = gid;
	sh->from_servers = servers;
	sh->n_from = n;
}

static void shards_free(struct skv *k)
{
	for (uint32_t i = 0; i < k->nshards && k->shards; i++) {
		shard_set_from(&k->shards[i], 0, NULL, 0);
		dedup_clear(&k->shards[i].dedup);
	}
	mem_free(k->shards);
	k->shards = NULL;
}

void skv_reset(struct skv *k)
{
	shards_free(k);
	sm_config_free(k->cur);
	k->cur = NULL;
	mem_free(k->holder);
	k->holder = NULL;
	groups_free(k->hgroups, k->n_hgroups);
	k->hgroups = NULL;
	k->n_hgroups = 0;
	k->nshards = 0;
	k->version++;
}

struct skv *skv_new(uint64_t gid)
{
	struct skv *k = mem_calloc(1, sizeof(*k));
	if (k) {
		k->gid = gid;
		k->version = 1;
	}
	return k;
}

void skv_free(struct skv *k)
{
	if (!k)
		return;
	skv_reset(k);
	mem_free(k);
}

/* Sizes the per-shard arrays for `n` shards (from configuration 0). */
static int shards_alloc(struct skv *k, uint32_t n)
{
	k->shards = mem_calloc(n, sizeof(*k->shards));
	k->holder = mem_calloc(n, sizeof(*k->holder));
	if (!k->shards || !k->holder) {
		mem_free(k->shards);
		mem_free(k->holder);
		k->shards = NULL;
		k->holder = NULL;
		return STATUS_NO_MEMORY;
	}
	k->nshards = n;
	return STATUS_OK;
}

/* ---- observers ---- */

uint64_t skv_gid(const struct skv *k)
{
	return k->gid;
}

uint64_t skv_version(const struct skv *k)
{
	return k->version;
}

uint32_t skv_nshards(const struct skv *k)
{
	return k->nshards;
}

const struct sm_config *skv_config(const struct skv *k)
{
	return k->cur;
}

uint64_t skv_config_num(const struct skv *k)
{
	return k->cur ? k->cur->num : 0;
}

void skv_shard(const struct skv *k, uint32_t shard,
	       struct skv_shard_info *out)
{
	const struct shard *sh = &k->shards[shard];
	out->state = sh->state;
	out->config_num = sh->config_num;
	out->from_gid = sh->from_gid;
	out->n_from = sh->n_from;
	out->from_servers = sh->from_servers;
}

bool skv_serves(const struct skv *k, uint32_t shard)
{
	if (shard >= k->nshards)
		return false;
	enum skv_shard_state st = k->shards[shard].state;
	return st == SKV_SHARD_SERVING || st == SKV_SHARD_GCING;
}

bool skv_stable(const struct skv *k)
{
	for (uint32_t i = 0; i < k->nshards; i++) {
		enum skv_shard_state st = k->shards[i].state;
		if (st == SKV_SHARD_PULLING || st == SKV_SHARD_BEPULLING ||
		    st == SKV_SHARD_GCING)
			return false;
	}
	return true;
}

uint64_t skv_holder(const struct skv *k, uint32_t shard,
		    const char *const **servers, size_t *n)
{
	*servers = NULL;
	*n = 0;
	if (shard >= k->nshards)
		return 0;
	uint64_t gid = k->holder[shard];
	const struct sm_group *g = group_find(k->hgroups, k->n_hgroups, gid);
	if (g) {
		*servers = (const char *const *)g->servers;
		*n = g->n_servers;
	}
	return gid;
}

/* ---- client operations ---- */

enum skv_op_check skv_op_check(const struct skv *k, uint32_t shard,
			       uint64_t client_id, uint64_t seq,
			       int *status)
{
	*status = STATUS_OK;
	if (shard >= k->nshards)
		return SKV_OP_WRONG_GROUP;
	const struct shard *sh = &k->shards[shard];
	if (sh->state == SKV_SHARD_PULLING)
		return SKV_OP_NOT_READY;
	if (sh->state != SKV_SHARD_SERVING && sh->state != SKV_SHARD_GCING)
		return SKV_OP_WRONG_GROUP;
	const struct dedup_slot *e = dedup_find(&sh->dedup, client_id);
	if (e && seq <= e->seq) {
		*status = seq == e->seq ? e->status : STATUS_OK;
		return SKV_OP_DUPLICATE;
	}
	return SKV_OP_APPLY;
}

int skv_dedup_record(struct skv *k, uint32_t shard, uint64_t client_id,
		     uint64_t seq, int status)
{
	if (shard >= k->nshards)
		return STATUS_INVALID_ARGUMENT;
	return dedup_set(&k->shards[shard].dedup, client_id, seq, status);
}

size_t skv_dedup_count(const struct skv *k, uint32_t shard)
{
	return shard < k->nshards ? k->shards[shard].dedup.n : 0;
}

static int cmp_dedup(const void *a, const void *b)
{
	const Skv__DedupEntry *x = *(Skv__DedupEntry *const *)a;
	const Skv__DedupEntry *y = *(Skv__DedupEntry *const *)b;
	return x->client_id < y->client_id ? -1 : x->client_id > y->client_id;
}

int skv_dedup_list(const struct skv *k, uint32_t shard,
		   Skv__DedupEntry ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (shard >= k->nshards || k->shards[shard].dedup.n == 0)
		return STATUS_OK;
	const struct dedup *d = &k->shards[shard].dedup;
	/* One block: the pointers, then the entries they point to. */
	Skv__DedupEntry **list =
		mem_calloc(d->n, sizeof(*list) + sizeof(Skv__DedupEntry));
	if (!list)
		return STATUS_NO_MEMORY;
	Skv__DedupEntry *ents = (Skv__DedupEntry *)(list + d->n);
	size_t j = 0;
	for (size_t i = 0; i < d->cap; i++) {
		if (!d->slots[i].used)
			continue;
		skv__dedup_entry__init(&ents[j]);
		ents[j].client_id = d->slots[i].client_id;
		ents[j].seq = d->slots[i].seq;
		ents[j].status = (Skv__Status)d->slots[i].status;
		list[j] = &ents[j];
		j++;
	}
	qsort(list, j, sizeof(*list), cmp_dedup);
	*out = list;
	*n = j;
	return STATUS_OK;
}

void skv_dedup_list_free(Skv__DedupEntry **list, size_t n)
{
	(void)n;
	mem_free(list); /* the entries live in the same block */
}

/* ---- changes ---- */

void skv_changes_clear(struct skv_changes *ch)
{
	ch->config = false;
	ch->n_shards = 0;
	ch->delete_data = false;
	ch->dedup = false;
}

void skv_changes_free(struct skv_changes *ch)
{
	mem_free(ch->shards);
	memset(ch, 0, sizeof(*ch));
}

static int changed(struct skv_changes *ch, uint32_t shard)
{
	if (!ch)
		return STATUS_OK;
	if (ch->n_shards == ch->cap_shards) {
		size_t cap = ch->cap_shards ? ch->cap_shards * 2 : 16;
		uint32_t *p = mem_realloc(ch->shards, cap * sizeof(*p));
		if (!p)
			return STATUS_NO_MEMORY;
		ch->shards = p;
		ch->cap_shards = cap;
	}
	ch->shards[ch->n_shards++] = shard;
	return STATUS_OK;
}

/* ---- configurations ---- */

/* The holder groups after `next`: every gid in holder[] (sorted, unique),
 * with servers from `next` if it lists the group, else as known. */
static int holders_next(const struct skv *k, const struct sm_config *next,
			const uint64_t *holder, struct sm_group **out,
			size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	uint64_t *gids = mem_alloc(next->nshards * sizeof(*gids));
	if (!gids)
		return STATUS_NO_MEMORY;
	size_t n = 0;
	for (uint32_t s = 0; s < next->nshards; s++) {
		if (holder[s] == 0)
			continue;
		bool seen = false;
		for (size_t i = 0; i < n && !seen; i++)
			seen = gids[i] == holder[s];
		if (!seen)
			gids[n++] = holder[s];
	}
	/* Insertion sort: n is at most the number of groups. */
	for (size_t i = 1; i < n; i++) {
		uint64_t v = gids[i];
		size_t j = i;
		for (; j > 0 && gids[j - 1] > v; j--)
			gids[j] = gids[j - 1];
		gids[j] = v;
	}
	struct sm_group *g = n ? mem_calloc(n, sizeof(*g)) : NULL;
	if (n && !g) {
		mem_free(gids);
		return STATUS_NO_MEMORY;
	}
	for (size_t i = 0; i < n; i++) {
		const struct sm_group *src =
			group_find(next->groups, next->n_groups, gids[i]);
		if (!src)
			src = group_find(k->hgroups, k->n_hgroups, gids[i]);
		g[i].gid = gids[i];
		if (src) {
			if (servers_copy(src->servers, src->n_servers,
					 &g[i].servers)) {
				groups_free(g, i);
				mem_free(gids);
				return STATUS_NO_MEMORY;
			}
			g[i].n_servers = src->n_servers;
		}
	}
	mem_free(gids);
	*out = g;
	*n_out = n;
	return STATUS_OK;
}

int skv_apply_config(struct skv *k, const Skv__Config *next,
		     struct skv_changes *ch)
{
	char err[160];
	if (next->num != skv_config_num(k) + 1 || !skv_stable(k))
		return STATUS_ALREADY_EXISTS;
	if (sm_config_proto_check(next, err, sizeof(err)) ||
	    next->n_shards == 0 || next->n_shards > SM_SHARDS_MAX ||
	    (k->cur && next->n_shards != k->nshards))
		return STATUS_INVALID_ARGUMENT;
	struct sm_config *c = NULL;
	int rc = sm_config_from_proto(next, &c, err, sizeof(err));
	if (rc)
		return rc;
	if (!k->cur && (rc = shards_alloc(k, c->nshards))) {
		sm_config_free(c);
		return rc;
	}
	uint64_t *holder = mem_alloc(c->nshards * sizeof(*holder));
	if (!holder) {
		sm_config_free(c);
		return STATUS_NO_MEMORY;
	}
	for (uint32_t s = 0; s < c->nshards; s++)
		holder[s] = c->shards[s] ? c->shards[s] : k->holder[s];
	struct sm_group *hg;
	size_t n_hg;
	if ((rc = holders_next(k, c, holder, &hg, &n_hg))) {
		mem_free(holder);
		sm_config_free(c);
		return rc;
	}

	/* Nothing below allocates except the PULLING sources and the change
	 * list; a failure there is fatal for the host (kv.h). */
	for (uint32_t s = 0; s < c->nshards; s++) {
		struct shard *sh = &k->shards[s];
		uint64_t o = c->shards[s];
		enum skv_shard_state st = sh->state;
		if (st == SKV_SHARD_SERVING || st == SKV_SHARD_HELD) {
			if (o == k->gid)
				st = SKV_SHARD_SERVING;
			else if (o == 0)
				st = SKV_SHARD_HELD;
			else
				st = SKV_SHARD_BEPULLING;
		} else if (o == k->gid) {
			uint64_t h = k->holder[s];
			if (h == 0 || h == k->gid) {
				st = SKV_SHARD_SERVING;
			} else {
				const struct sm_group *g = group_find(
					k->hgroups, k->n_hgroups, h);
				char **sv = NULL;
				size_t n = g ? g->n_servers : 0;
				if (n && servers_copy(g->servers, n, &sv))
					rc = STATUS_NO_MEMORY;
				shard_set_from(sh, h, sv, sv ? n : 0);
				st = SKV_SHARD_PULLING;
			}
		}
		if (st != sh->state) {
			sh->state = st;
			sh->config_num = c->num;
			if (st != SKV_SHARD_PULLING)
				shard_set_from(sh, 0, NULL, 0);
			if (!rc)
				rc = changed(ch, s);
		}
	}
	sm_config_free(k->cur);
	k->cur = c;
	mem_free(k->holder);
	k->holder = holder;
	groups_free(k->hgroups, k->n_hgroups);
	k->hgroups = hg;
	k->n_hgroups = n_hg;
	if (ch)
		ch->config = true;
	k->version++;
	return rc;
}

int skv_apply_insert(struct skv *k, const Skv__InsertShard *ins,
		     struct skv_changes *ch)
{
	if (ins->shard >= k->nshards)
		return k->nshards ? STATUS_INVALID_ARGUMENT :
				    STATUS_ALREADY_EXISTS;
	struct shard *sh = &k->shards[ins->shard];
	if (sh->state != SKV_SHARD_PULLING ||
	    sh->config_num != ins->config_num ||
	    skv_config_num(k) != ins->config_num)
		return STATUS_ALREADY_EXISTS;
	if (!ins->last)
		return STATUS_OK;
	dedup_clear(&sh->dedup);
	for (size_t i = 0; i < ins->n_dedup; i++) {
		const Skv__DedupEntry *e = ins->dedup[i];
		int rc = dedup_set(&sh->dedup, e->client_id, e->seq,
				   (int)e->status);
		if (rc)
			return rc;
	}
	sh->state = SKV_SHARD_GCING;
	k->version++;
	if (ch)
		ch->dedup = true;
	return changed(ch, ins->shard);
}

int skv_apply_delete(struct skv *k, uint64_t config_num, uint32_t shard,
		     struct skv_changes *ch)
{
	if (shard >= k->nshards)
		return STATUS_ALREADY_EXISTS;
	struct shard *sh = &k->shards[shard];
	if (sh->state != SKV_SHARD_BEPULLING || sh->config_num != config_num)
		return STATUS_ALREADY_EXISTS;
	sh->state = SKV_SHARD_NONE;
	k->version++;
	dedup_clear(&sh->dedup);
	if (ch)
		ch->delete_data = true;
	return changed(ch, shard);
}

int skv_apply_gc_done(struct skv *k, uint64_t config_num, uint32_t shard,
		      struct skv_changes *ch)
{
	if (shard >= k->nshards)
		return STATUS_ALREADY_EXISTS;
	struct shard *sh = &k->shards[shard];
	if (sh->state != SKV_SHARD_GCING || sh->config_num != config_num)
		return STATUS_ALREADY_EXISTS;
	sh->state = SKV_SHARD_SERVING;
	k->version++;
	shard_set_from(sh, 0, NULL, 0);
	return changed(ch, shard);
}

/* ---- answering other groups ---- */

int skv_pull_check(const struct skv *k, uint64_t config_num, uint32_t shard,
		   uint64_t gid, const char **why)
{
	*why = "";
	if (skv_config_num(k) < config_num) {
		*why = "that configuration is not applied here yet";
		return STATUS_NOT_READY;
	}
	if (shard >= k->nshards) {
		*why = "no such shard";
		return STATUS_INVALID_ARGUMENT;
	}
	const struct shard *sh = &k->shards[shard];
	if (sh->state != SKV_SHARD_BEPULLING || sh->config_num != config_num) {
		*why = "the shard is not held here for that configuration "
		       "(handed over already)";
		return STATUS_NOT_FOUND;
	}
	if (k->cur->shards[shard] != gid) {
		*why = "the shard goes to another group";
		return STATUS_NOT_FOUND;
	}
	return STATUS_OK;
}

int skv_delete_check(const struct skv *k, uint64_t config_num,
		     uint32_t shard, uint64_t gid, bool *propose)
{
	*propose = false;
	if (skv_config_num(k) < config_num)
		return STATUS_NOT_READY;
	if (shard >= k->nshards)
		return STATUS_INVALID_ARGUMENT;
	const struct shard *sh = &k->shards[shard];
	if (sh->state != SKV_SHARD_BEPULLING || sh->config_num != config_num)
		return STATUS_OK; /* deleted already */
	if (k->cur->shards[shard] != gid)
		return STATUS_INVALID_ARGUMENT;
	*propose = true;
	return STATUS_OK;
}

/* ---- stored form ---- */

int skv_load_config(struct skv *k, const Skv__Config *cur,
		    const Skv__ShardHolders *holders)
{
	char err[160];
	skv_reset(k);
	if (!cur || cur->num == 0)
		return STATUS_OK;
	if (!holders || sm_config_proto_check(cur, err, sizeof(err)) ||
	    cur->n_shards == 0 || holders->n_holder != cur->n_shards)
		return STATUS_INVALID_ARGUMENT;
	int rc = sm_config_from_proto(cur, &k->cur, err, sizeof(err));
	if (rc || (rc = shards_alloc(k, k->cur->nshards))) {
		skv_reset(k);
		return rc;
	}
	memcpy(k->holder, holders->holder, k->nshards * sizeof(uint64_t));
	if (holders->n_groups) {
		k->hgroups = mem_calloc(holders->n_groups, sizeof(*k->hgroups));
		if (!k->hgroups) {
			skv_reset(k);
			return STATUS_NO_MEMORY;
		}
	}
	for (size_t i = 0; i < holders->n_groups; i++) {
		const Skv__Group *g = holders->groups[i];
		if (i > 0 && g->gid <= k->hgroups[i - 1].gid) {
			skv_reset(k);
			return STATUS_INVALID_ARGUMENT;
		}
		k->hgroups[i].gid = g->gid;
		k->n_hgroups = i + 1;
		if (servers_copy(g->servers, g->n_servers,
				 &k->hgroups[i].servers)) {
			skv_reset(k);
			return STATUS_NO_MEMORY;
		}
		k->hgroups[i].n_servers = g->n_servers;
	}
	return STATUS_OK;
}

int skv_load_shard(struct skv *k, uint32_t shard, const Skv__ShardState *st)
{
	if (shard >= k->nshards || st->state > SKV_SHARD_HELD ||
	    st->config_num > skv_config_num(k))
		return STATUS_INVALID_ARGUMENT;
	struct shard *sh = &k->shards[shard];
	char **sv;
	if (servers_copy(st->from_servers, st->n_from_servers, &sv))
		return STATUS_NO_MEMORY;
	sh->state = (enum skv_shard_state)st->state;
	sh->config_num = st->config_num;
	k->version++;
	shard_set_from(sh, st->from_gid, sv, sv ? st->n_from_servers : 0);
	return STATUS_OK;
}

int skv_load_dedup(struct skv *k, uint32_t shard, uint64_t client_id,
		   uint64_t seq, int status)
{
	if (shard >= k->nshards)
		return STATUS_INVALID_ARGUMENT;
	return dedup_set(&k->shards[shard].dedup, client_id, seq, status);
}

int skv_holders_to_proto(const struct skv *k, Skv__ShardHolders *out)
{
	skv__shard_holders__init(out);
	out->n_holder = k->nshards;
	out->holder = k->holder;
	if (k->n_hgroups == 0)
		return STATUS_OK;
	Skv__Group **gp = mem_calloc(k->n_hgroups, sizeof(*gp));
	Skv__Group *gs = mem_calloc(k->n_hgroups, sizeof(*gs));
	if (!gp || !gs) {
		mem_free(gp);
		mem_free(gs);
		return STATUS_NO_MEMORY;
	}
	for (size_t i = 0; i < k->n_hgroups; i++) {
		skv__group__init(&gs[i]);
		gs[i].gid = k->hgroups[i].gid;
		gs[i].n_servers = k->hgroups[i].n_servers;
		gs[i].servers = k->hgroups[i].servers;
		gp[i] = &gs[i];
	}
	out->groups = gp;
	out->n_groups = k->n_hgroups;
	return STATUS_OK;
}

void skv_holders_proto_release(Skv__ShardHolders *h)
{
	if (h->n_groups) {
		mem_free(h->groups[0]);
		mem_free(h->groups);
	}
	skv__shard_holders__init(h);
}

int skv_shard_to_proto(const struct skv *k, uint32_t shard,
		       Skv__ShardState *out)
{
	skv__shard_state__init(out);
	if (shard >= k->nshards)
		return STATUS_INVALID_ARGUMENT;
	const struct shard *sh = &k->shards[shard];
	out->state = (uint32_t)sh->state;
	out->config_num = sh->config_num;
	out->from_gid = sh->from_gid;
	out->n_from_servers = sh->n_from;
	out->from_servers = sh->from_servers;
	return STATUS_OK;
}

void skv_shard_proto_release(Skv__ShardState *st)
{
	skv__shard_state__init(st);
}
