/*
 * tests/lin: see lin.h.
 *
 * Per key, the ops (in call order) become 2n events in a doubly linked list
 * sorted by time, calls before returns at equal times (touching intervals
 * count as concurrent, which can only accept more). The search walks the
 * list: at a call it tries to linearize that op now (the model accepts its
 * outcome, and the pair (linearized set, new state) was not explored
 * before), lifting the op's call and return out of the list; at a return
 * it backtracks, since that op would have had to be linearized already.
 * Every loop turn is one step of the budget.
 *
 * Register states are not stored as bytes: a state is (length, two
 * polynomial hashes mod 2^61 - 1), interned to a small id (0 = absent).
 * The hash of s || v is h(s) * B^|v| + h(v), so an Append costs O(1)
 * whatever the sizes; equal ids mean equal bytes up to a ~2^-80 collision
 * chance per pair of distinct values.
 *
 * The memo cache keys on the linearized bitset in a canonical, short form:
 * the words from the first one not all ones to the last nonzero one (ops
 * are numbered in call order, so that window stays about as wide as the
 * concurrency), hashed incrementally (Zobrist: one fixed random word per
 * op, xored in and out).
 *
 * An illegal key is explained by the shortest prefix (by call time) that
 * is already illegal, where the writes called later stay in as writes of
 * unknown outcome and the Gets called later are left out: a relaxation of
 * the whole history, so "prefix m illegal" is monotone in m and found by
 * bisection, and each such prefix is a real witness. Gets whose outcome
 * the failure does not need are then dropped, in halving chunks, and
 * unknown-outcome writes called after every other op of the slice returned
 * are left out (they could only be linearized last).
 */
#include "tests/lin/lin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/status.h"

#define ABSENT 0u
#define NIL UINT32_MAX
#define CACHE_BYTES_MAX ((size_t)256 << 20)	/* per key: then "unknown" */
#define MINIMIZE_STEPS_MIN ((uint64_t)20000000)
#define EXPLAIN_OPS_MAX 200
#define EXPLAIN_OPS_HEAD 20
#define EXPLAIN_KEYS_MAX 10
#define BYTES_SHORT 64
#define OBS_PREFIXES_MAX ((size_t)1 << 22) /* bytes of Get outputs, per key */

/* ---- the history ---- */

struct lin_history {
	struct lin_op *ops;
	size_t n, cap;
};

static uint8_t *dup_bytes(const uint8_t *p, size_t n, bool *oom)
{
	if (n == 0)
		return NULL;
	uint8_t *c = mem_alloc(n);
	if (!c) {
		*oom = true;
		return NULL;
	}
	memcpy(c, p, n);
	return c;
}

static void op_free(struct lin_op *o)
{
	mem_free((void *)o->key);
	mem_free((void *)o->value);
	mem_free((void *)o->out);
}

struct lin_history *lin_history_new(void)
{
	return mem_calloc(1, sizeof(struct lin_history));
}

void lin_history_free(struct lin_history *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++)
		op_free(&h->ops[i]);
	mem_free(h->ops);
	mem_free(h);
}

int lin_history_add(struct lin_history *h, const struct lin_op *op)
{
	if (!h || !op)
		return STATUS_INVALID_ARGUMENT;
	if ((unsigned)op->kind > LIN_DELETE)
		return STATUS_INVALID_ARGUMENT;
	if (op->known && op->ret < op->call)
		return STATUS_INVALID_ARGUMENT;
	/* normalized: only the fields that mean something for this kind and
	 * outcome are kept, so equal histories write equal text */
	bool has_value = op->kind == LIN_PUT || op->kind == LIN_APPEND;
	bool has_found = op->known &&
			 (op->kind == LIN_GET || op->kind == LIN_DELETE);
	bool has_out = op->known && op->kind == LIN_GET && op->found;
	if ((op->klen && !op->key) || (has_value && op->vlen && !op->value) ||
	    (has_out && op->outlen && !op->out))
		return STATUS_INVALID_ARGUMENT;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct lin_op *ops = mem_realloc(h->ops, cap * sizeof(*ops));
		if (!ops)
			return STATUS_NO_MEMORY;
		h->ops = ops;
		h->cap = cap;
	}
	struct lin_op c = {
		.client = op->client,
		.kind = op->kind,
		.klen = op->klen,
		.vlen = has_value ? op->vlen : 0,
		.known = op->known,
		.found = has_found && op->found,
		.outlen = has_out ? op->outlen : 0,
		.call = op->call,
		.ret = op->known ? op->ret : 0,
	};
	bool oom = false;
	c.key = dup_bytes(op->key, c.klen, &oom);
	c.value = dup_bytes(op->value, c.vlen, &oom);
	c.out = dup_bytes(op->out, c.outlen, &oom);
	if (oom) {
		op_free(&c);
		return STATUS_NO_MEMORY;
	}
	h->ops[h->n++] = c;
	return STATUS_OK;
}

size_t lin_history_len(const struct lin_history *h)
{
	return h ? h->n : 0;
}

void lin_history_get(const struct lin_history *h, size_t i,
		     struct lin_op *out)
{
	*out = h->ops[i];
}

/* ---- short printable bytes ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

/* Bounded writer into a fixed buffer (lin_bytes_str). */
struct fixed {
	char *p;
	size_t len, cap;
};

static void fixed_putc(struct fixed *f, char c)
{
	if (f->len + 1 < f->cap)
		f->p[f->len++] = c;
}

static void fixed_puts(struct fixed *f, const char *s)
{
	while (*s)
		fixed_putc(f, *s++);
}

char *lin_bytes_str(const uint8_t *p, size_t n, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	struct fixed f = { buf, 0, cap };
	bool printable = true;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			printable = false;
	size_t shown;
	if (printable) {
		shown = n < 40 ? n : 32;
		fixed_putc(&f, '"');
		for (size_t i = 0; i < shown; i++) {
			if (p[i] == '"' || p[i] == '\\')
				fixed_putc(&f, '\\');
			fixed_putc(&f, (char)p[i]);
		}
		fixed_putc(&f, '"');
	} else {
		shown = n < 20 ? n : 16;
		fixed_puts(&f, "0x");
		for (size_t i = 0; i < shown; i++) {
			fixed_putc(&f, hex[p[i] >> 4]);
			fixed_putc(&f, hex[p[i] & 15]);
		}
	}
	if (shown < n) {
		char tail[48];
		snprintf(tail, sizeof(tail), "...(%zu bytes)", n);
		fixed_puts(&f, tail);
	}
	if (cap)
		buf[f.len] = '\0';
	return buf;
}

/* ---- growable text ---- */

static void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->p ? b->p + b->len : NULL,
				  b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->oom = true;
			return;
		}
		if (b->p && b->len + (size_t)k < b->cap) {
			b->len += (size_t)k;
			return;
		}
		size_t cap = b->cap ? b->cap : 256;
		while (cap <= b->len + (size_t)k)
			cap *= 2;
		char *p = mem_realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

static const char *kind_name(enum lin_kind k)
{
	switch (k) {
	case LIN_GET:
		return "get";
	case LIN_PUT:
		return "put";
	case LIN_APPEND:
		return "append";
	case LIN_DELETE:
		return "delete";
	}
	return "?";
}

const char *lin_result_str(enum lin_result r)
{
	switch (r) {
	case LIN_OK:
		return "ok";
	case LIN_ILLEGAL:
		return "illegal";
	case LIN_UNKNOWN:
		return "unknown";
	}
	return "?";
}

/* One op as a line of an explanation. */
static void sb_op(struct sbuf *b, const struct lin_op *o, size_t hid,
		  const char *note)
{
	char v[BYTES_SHORT + 32];
	sb_printf(b, "  #%zu client %" PRIu64 " [%" PRIu64 ", ", hid,
		  o->client, o->call);
	if (o->known)
		sb_printf(b, "%" PRIu64 "]", o->ret);
	else
		sb_printf(b, "-]");
	sb_printf(b, " %s", kind_name(o->kind));
	if (o->kind == LIN_PUT || o->kind == LIN_APPEND)
		sb_printf(b, " %s",
			  lin_bytes_str(o->value, o->vlen, v, sizeof(v)));
	if (!o->known)
		sb_printf(b, " -> (outcome unknown)");
	else if (o->kind == LIN_GET && o->found)
		sb_printf(b, " -> %s",
			  lin_bytes_str(o->out, o->outlen, v, sizeof(v)));
	else if (o->kind == LIN_GET || o->kind == LIN_DELETE)
		sb_printf(b, " -> %s", o->found ? "found" : "not found");
	else
		sb_printf(b, " -> ok");
	sb_printf(b, "%s\n", note ? note : "");
}

/* ---- register states: (length, two hashes mod 2^61 - 1), interned ---- */

#define MP ((uint64_t)0x1fffffffffffffff)
#define BASE1 ((uint64_t)0x0b7e151628aed2a6)
#define BASE2 ((uint64_t)0x13c6ef372fe94f82)

static uint64_t mulmod(uint64_t a, uint64_t b)
{
	unsigned __int128 p = (unsigned __int128)a * b;
	uint64_t r = (uint64_t)(p & MP) + (uint64_t)(p >> 61);
	r = (r & MP) + (r >> 61);
	return r == MP ? 0 : r;
}

static uint64_t addmod(uint64_t a, uint64_t b)
{
	uint64_t r = a + b; /* both < 2^61: no overflow */
	return r >= MP ? r - MP : r;
}

static uint64_t powmod(uint64_t b, uint64_t e)
{
	uint64_t r = 1;
	while (e) {
		if (e & 1)
			r = mulmod(r, b);
		b = mulmod(b, b);
		e >>= 1;
	}
	return r;
}

struct st {
	uint64_t len, h1, h2;
};

static struct st st_of(const uint8_t *p, size_t n)
{
	struct st s = { n, 0, 0 };
	for (size_t i = 0; i < n; i++) {
		s.h1 = addmod(mulmod(s.h1, BASE1), p[i]);
		s.h2 = addmod(mulmod(s.h2, BASE2), p[i]);
	}
	return s;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t st_hash(const struct st *s)
{
	return mix64(s->h1 ^ mix64(s->h2 ^ mix64(s->len)));
}

struct states {
	struct st *v; /* v[0]: absent (unused) */
	size_t n, cap;
	uint32_t *tab; /* id, 0 = empty slot */
	size_t tabcap;  /* power of two */
};

static void states_clear(struct states *t)
{
	mem_free(t->v);
	mem_free(t->tab);
	memset(t, 0, sizeof(*t));
}

static int states_grow_tab(struct states *t)
{
	size_t cap = t->tabcap ? t->tabcap * 2 : 1024;
	uint32_t *tab = mem_calloc(cap, sizeof(*tab));
	if (!tab)
		return STATUS_NO_MEMORY;
	for (size_t id = 1; id < t->n; id++) {
		size_t i = st_hash(&t->v[id]) & (cap - 1);
		while (tab[i])
			i = (i + 1) & (cap - 1);
		tab[i] = (uint32_t)id;
	}
	mem_free(t->tab);
	t->tab = tab;
	t->tabcap = cap;
	return STATUS_OK;
}

static bool st_eq(const struct st *a, const struct st *b)
{
	return a->len == b->len && a->h1 == b->h1 && a->h2 == b->h2;
}

static bool states_has(const struct states *t, const struct st *s)
{
	if (!t->tabcap)
		return false;
	for (size_t i = st_hash(s) & (t->tabcap - 1); t->tab[i];
	     i = (i + 1) & (t->tabcap - 1))
		if (st_eq(&t->v[t->tab[i]], s))
			return true;
	return false;
}

static int states_intern(struct states *t, const struct st *s, uint32_t *id)
{
	if (t->n == 0) {
		t->v = mem_alloc(64 * sizeof(*t->v));
		if (!t->v)
			return STATUS_NO_MEMORY;
		t->cap = 64;
		t->n = 1;
	}
	if (t->n * 2 >= t->tabcap && states_grow_tab(t) != STATUS_OK)
		return STATUS_NO_MEMORY;
	size_t i = st_hash(s) & (t->tabcap - 1);
	for (; t->tab[i]; i = (i + 1) & (t->tabcap - 1)) {
		if (st_eq(&t->v[t->tab[i]], s)) {
			*id = t->tab[i];
			return STATUS_OK;
		}
	}
	if (t->n == t->cap) {
		struct st *v = mem_realloc(t->v, t->cap * 2 * sizeof(*v));
		if (!v)
			return STATUS_NO_MEMORY;
		t->v = v;
		t->cap *= 2;
	}
	t->v[t->n] = *s;
	t->tab[i] = (uint32_t)t->n;
	*id = (uint32_t)t->n++;
	return STATUS_OK;
}

/* ---- one key's ops, ready for the model ---- */

struct kop {
	const struct lin_op *op;
	size_t hid;	/* index in the history */
	uint32_t sid;	/* Put: the value's state; Get found: the out's */
	struct st app;	/* Append: the value's state */
	uint64_t p1, p2; /* Append: BASE^|value| */
};

struct checker {
	struct states states;
	/* every prefix of every value a known Get of the key read, or
	 * !obs_on when there were too many to keep */
	struct states obs;
	bool obs_on;
};

static int model_step(struct checker *c, uint32_t s, const struct kop *k,
		      bool known, bool *ok, uint32_t *ns)
{
	const struct lin_op *o = k->op;
	*ok = true;
	*ns = s;
	switch (o->kind) {
	case LIN_GET:
		if (known)
			*ok = o->found ? s == k->sid : s == ABSENT;
		return STATUS_OK;
	case LIN_PUT:
		*ns = k->sid;
		return STATUS_OK;
	case LIN_APPEND: {
		struct st base = { 0, 0, 0 };
		if (s != ABSENT)
			base = c->states.v[s];
		struct st r = {
			base.len + k->app.len,
			addmod(mulmod(base.h1, k->p1), k->app.h1),
			addmod(mulmod(base.h2, k->p2), k->app.h2),
		};
		return states_intern(&c->states, &r, ns);
	}
	case LIN_DELETE:
		if (known)
			*ok = o->found == (s != ABSENT);
		*ns = ABSENT;
		return STATUS_OK;
	}
	return STATUS_INTERNAL;
}

/* ---- the memo cache of (linearized set, state) ---- */

/*
 * A configuration of the search is (K, s, U): the known-outcome ops
 * linearized, the state, and the unknown-outcome writes linearized. If
 * (K, s, U) was explored and failed, so does (K, s, U') for any U' ⊇ U:
 * every way on from (K, s, U') works from (K, s, U) too, with the extra
 * writes of U' placed last (nothing waits for their return). So the cache
 * keeps, per (K, s), the U sets explored, and prunes a U' that contains
 * one of them (equal sets included).
 */
struct centry {
	uint64_t h;
	size_t off; /* into words: K's window, then U (unw words) */
	uint32_t state, lo, nw;
};

struct cache {
	struct centry *e;
	size_t n, cap;
	uint32_t *tab; /* entry index + 1, 0 = empty */
	size_t tabcap;
	uint64_t *words;
	size_t nwords, wcap;
};

static void cache_clear(struct cache *c)
{
	mem_free(c->e);
	mem_free(c->tab);
	mem_free(c->words);
	memset(c, 0, sizeof(*c));
}

static size_t cache_bytes(const struct cache *c)
{
	return c->cap * sizeof(*c->e) + c->tabcap * sizeof(*c->tab) +
	       c->wcap * sizeof(*c->words);
}

/* K, the known-outcome ops linearized, by position in call order. The
 * positions of unknown-outcome ops are always set, so that they do not
 * hold the window open. */
struct bits {
	uint64_t *w;
	size_t nw;
	uint32_t lo, hi; /* canonical window, see the top of the file */
	uint64_t z;	 /* xor of the set ops' Zobrist words */
};

static uint64_t zobrist(size_t i)
{
	return mix64(0x9e3779b97f4a7c15ULL * (i + 1));
}

static void bits_lo_hi(struct bits *b)
{
	while (b->lo < b->nw && b->w[b->lo] == UINT64_MAX)
		b->lo++;
	while (b->hi > b->lo && b->w[b->hi - 1] == 0)
		b->hi--;
}

static void bits_set(struct bits *b, size_t i)
{
	uint32_t w = (uint32_t)(i >> 6);
	b->w[w] |= (uint64_t)1 << (i & 63);
	b->z ^= zobrist(i);
	if (w >= b->hi)
		b->hi = w + 1;
	while (b->lo < b->nw && b->w[b->lo] == UINT64_MAX)
		b->lo++;
}

static void bits_clear(struct bits *b, size_t i)
{
	uint32_t w = (uint32_t)(i >> 6);
	b->w[w] &= ~((uint64_t)1 << (i & 63));
	b->z ^= zobrist(i);
	if (w < b->lo)
		b->lo = w;
	while (b->hi > b->lo && b->w[b->hi - 1] == 0)
		b->hi--;
}

static uint64_t cache_key(const struct bits *b, uint32_t state)
{
	return mix64(b->z ^ mix64((uint64_t)state + 0x51ed27));
}

/* Is (K, state, U) subsumed by an explored configuration? */
static bool cache_has(const struct cache *c, const struct bits *b,
		      uint32_t state, const uint64_t *u, size_t unw,
		      uint64_t h)
{
	if (!c->tabcap)
		return false;
	uint32_t nw = b->hi - b->lo;
	for (size_t i = h & (c->tabcap - 1); c->tab[i];
	     i = (i + 1) & (c->tabcap - 1)) {
		const struct centry *e = &c->e[c->tab[i] - 1];
		if (e->h != h || e->state != state || e->lo != b->lo ||
		    e->nw != nw ||
		    memcmp(c->words + e->off, b->w + b->lo,
			   nw * sizeof(uint64_t)))
			continue;
		const uint64_t *eu = c->words + e->off + nw;
		size_t j = 0;
		while (j < unw && !(eu[j] & ~u[j]))
			j++;
		if (j == unw)
			return true;
	}
	return false;
}

static int cache_add(struct cache *c, const struct bits *b, uint32_t state,
		     const uint64_t *u, size_t unw, uint64_t h)
{
	uint32_t nw = b->hi - b->lo;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct centry *e = mem_realloc(c->e, cap * sizeof(*e));
		if (!e)
			return STATUS_NO_MEMORY;
		c->e = e;
		c->cap = cap;
	}
	if ((c->n + 1) * 2 > c->tabcap) {
		size_t cap = c->tabcap ? c->tabcap * 2 : 2048;
		uint32_t *tab = mem_calloc(cap, sizeof(*tab));
		if (!tab)
			return STATUS_NO_MEMORY;
		for (size_t k = 0; k < c->n; k++) {
			size_t i = c->e[k].h & (cap - 1);
			while (tab[i])
				i = (i + 1) & (cap - 1);
			tab[i] = (uint32_t)k + 1;
		}
		mem_free(c->tab);
		c->tab = tab;
		c->tabcap = cap;
	}
	if (c->nwords + nw + unw > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 1024;
		while (cap < c->nwords + nw + unw)
			cap *= 2;
		uint64_t *w = mem_realloc(c->words, cap * sizeof(*w));
		if (!w)
			return STATUS_NO_MEMORY;
		c->words = w;
		c->wcap = cap;
	}
	memcpy(c->words + c->nwords, b->w + b->lo, nw * sizeof(uint64_t));
	if (unw)
		memcpy(c->words + c->nwords + nw, u, unw * sizeof(uint64_t));
	c->e[c->n] = (struct centry){ h, c->nwords, state, b->lo, nw };
	c->nwords += nw + unw;
	size_t i = h & (c->tabcap - 1);
	while (c->tab[i])
		i = (i + 1) & (c->tabcap - 1);
	c->tab[i] = (uint32_t)++c->n;
	return STATUS_OK;
}

/* ---- the search ---- */

/* One op of a search: a kop, recorded outcome or relaxed to unknown. */
struct sop {
	const struct kop *k;
	bool known;
};

struct search {
	uint32_t *prev, *next; /* nodes: call i = i, return i = n + i, head */
	uint32_t *stack_op, *stack_state;
	uint32_t *uidx;	       /* op -> index among the unknown-outcome ops */
	struct bits bits;      /* K */
	uint64_t *u;	       /* U, unw words */
	size_t unw;
	struct cache cache;
	uint64_t *ev_time; /* sort keys of the 2n events */
	uint32_t *ev, *tmp;
};

static void search_free(struct search *s)
{
	mem_free(s->prev);
	mem_free(s->next);
	mem_free(s->stack_op);
	mem_free(s->stack_state);
	mem_free(s->uidx);
	mem_free(s->bits.w);
	mem_free(s->u);
	mem_free(s->ev_time);
	mem_free(s->ev);
	mem_free(s->tmp);
	cache_clear(&s->cache);
}

/* Sorts indexes a[0..len) by before(ctx, x, y), a strict total order,
 * bottom-up merge sort through tmp (len entries): no qsort, whose
 * comparator takes no context. */
static void sort_idx(uint32_t *a, uint32_t *tmp, size_t len,
		     bool (*before)(const void *ctx, uint32_t x, uint32_t y),
		     const void *ctx)
{
	for (size_t w = 1; w < len; w *= 2) {
		for (size_t lo = 0; lo < len; lo += 2 * w) {
			size_t mid = lo + w < len ? lo + w : len;
			size_t hi = lo + 2 * w < len ? lo + 2 * w : len;
			size_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi)
				tmp[k++] = before(ctx, a[j], a[i]) ? a[j++]
								   : a[i++];
			while (i < mid)
				tmp[k++] = a[i++];
			while (j < hi)
				tmp[k++] = a[j++];
		}
		memcpy(a, tmp, len * sizeof(*a));
	}
}

/* Events of n ops: e < n is the call of op e, else the return of op
 * e - n; t[e] its time. */
struct ev_times {
	const uint64_t *t;
	size_t n;
};

/* Event e before event f? */
static bool ev_before(const void *ctx, uint32_t e, uint32_t f)
{
	const struct ev_times *et = ctx;
	const uint64_t *t = et->t;
	if (t[e] != t[f])
		return t[e] < t[f];
	bool er = e >= et->n, fr = f >= et->n;
	if (er != fr)
		return !er; /* calls first */
	return e < f;
}

static void lift(struct search *s, uint32_t call, uint32_t ret)
{
	s->next[s->prev[call]] = s->next[call];
	s->prev[s->next[call]] = s->prev[call];
	s->next[s->prev[ret]] = s->next[ret];
	if (s->next[ret] != NIL)
		s->prev[s->next[ret]] = s->prev[ret];
}

static void unlift(struct search *s, uint32_t call, uint32_t ret)
{
	s->next[s->prev[ret]] = ret;
	if (s->next[ret] != NIL)
		s->prev[s->next[ret]] = ret;
	s->next[s->prev[call]] = call;
	s->prev[s->next[call]] = call;
}

static void mark(struct search *s, const struct sop *ops, uint32_t i,
		 bool on)
{
	if (ops[i].known) {
		if (on)
			bits_set(&s->bits, i);
		else
			bits_clear(&s->bits, i);
	} else {
		uint64_t m = (uint64_t)1 << (s->uidx[i] & 63);
		if (on)
			s->u[s->uidx[i] >> 6] |= m;
		else
			s->u[s->uidx[i] >> 6] &= ~m;
	}
}

static bool blind(const struct lin_op *o)
{
	return o->kind == LIN_PUT || o->kind == LIN_DELETE;
}

/*
 * Would linearizing unknown-outcome write `i` now (state -> ns) only
 * repeat what another branch covers? Two cases, each dominated by a
 * configuration with the same known ops and state but fewer unknown
 * writes applied, so pruning them loses no linearization:
 *   - a Put/Delete right after another unknown-outcome Put/Delete: the
 *     branch applying only the second one;
 *   - a Put/Append while the key is present, making a value that no known
 *     Get read a value starting with: until the next Put or Delete the
 *     state only grows by appends, so no Get can read it, and Deletes and
 *     Appends see the key present either way; the write may as well come
 *     last, where it changes nothing.
 */
static bool pointless(const struct checker *c, const struct sop *ops,
		      const struct search *s, uint32_t depth, uint32_t i,
		      uint32_t state, uint32_t ns)
{
	const struct lin_op *o = ops[i].k->op;
	if (o->kind != LIN_DELETE && state != ABSENT && c->obs_on &&
	    !states_has(&c->obs, &c->states.v[ns]))
		return true;
	if (blind(o) && depth > 0) {
		uint32_t t = s->stack_op[depth - 1];
		if (!ops[t].known && blind(ops[t].k->op))
			return true;
	}
	return false;
}

/*
 * Checks ops[0..n) (in call order). *res: LIN_OK, LIN_ILLEGAL, or
 * LIN_UNKNOWN when `budget` steps or the cache limit ran out. Returns
 * STATUS_OK or STATUS_NO_MEMORY.
 *
 * The candidates at any point are the calls before the first return in
 * the list; known-outcome ones are tried first (phase 0), then the
 * unknown-outcome writes (phase 1), so that configurations with few of
 * those applied are explored, and cached, first.
 */
static int search_run(struct checker *c, const struct sop *ops, size_t n,
		      uint64_t budget, uint64_t *steps, enum lin_result *res)
{
	struct search s = { 0 };
	int rc = STATUS_NO_MEMORY;
	*steps = 0;
	*res = LIN_OK;
	if (n == 0)
		return STATUS_OK;
	size_t nodes = 2 * n + 1, nu = 0, known_left = 0;
	uint32_t head = (uint32_t)(2 * n);
	for (size_t i = 0; i < n; i++)
		nu += !ops[i].known;
	known_left = n - nu;
	s.unw = (nu + 63) / 64;
	s.prev = mem_alloc(nodes * sizeof(uint32_t));
	s.next = mem_alloc(nodes * sizeof(uint32_t));
	s.stack_op = mem_alloc(n * sizeof(uint32_t));
	s.stack_state = mem_alloc(n * sizeof(uint32_t));
	s.uidx = mem_alloc(n * sizeof(uint32_t));
	s.bits.nw = (n + 63) / 64;
	s.bits.w = mem_calloc(s.bits.nw, sizeof(uint64_t));
	s.u = mem_calloc(s.unw + 1, sizeof(uint64_t));
	s.ev_time = mem_alloc(2 * n * sizeof(uint64_t));
	s.ev = mem_alloc(2 * n * sizeof(uint32_t));
	s.tmp = mem_alloc(2 * n * sizeof(uint32_t));
	if (!s.prev || !s.next || !s.stack_op || !s.stack_state || !s.uidx ||
	    !s.bits.w || !s.u || !s.ev_time || !s.ev || !s.tmp)
		goto out;
	for (size_t i = 0, u = 0; i < n; i++) {
		s.ev_time[i] = ops[i].k->op->call;
		s.ev_time[n + i] = ops[i].known ? ops[i].k->op->ret
						: UINT64_MAX;
		s.ev[i] = (uint32_t)i;
		s.ev[n + i] = (uint32_t)(n + i);
		s.uidx[i] = ops[i].known ? NIL : (uint32_t)u++;
		if (!ops[i].known)
			s.bits.w[i >> 6] |= (uint64_t)1 << (i & 63);
	}
	s.bits.hi = (uint32_t)s.bits.nw;
	bits_lo_hi(&s.bits);
	struct ev_times et = { s.ev_time, n };
	sort_idx(s.ev, s.tmp, 2 * n, ev_before, &et);
	uint32_t last = head;
	for (size_t i = 0; i < 2 * n; i++) {
		s.next[last] = s.ev[i];
		s.prev[s.ev[i]] = last;
		last = s.ev[i];
	}
	s.next[last] = NIL;
	s.prev[head] = NIL;

	uint32_t state = ABSENT, depth = 0, cur = s.next[head];
	bool phase1 = false;
	while (known_left) {
		if (++*steps > budget) {
			*res = LIN_UNKNOWN;
			break;
		}
		if (cur >= n) {
			/* the end of the candidates */
			if (!phase1) {
				phase1 = true;
				cur = s.next[head];
				continue;
			}
			/* a return whose op is not linearized: backtrack */
			if (depth == 0) {
				*res = LIN_ILLEGAL;
				break;
			}
			depth--;
			uint32_t i = s.stack_op[depth];
			state = s.stack_state[depth];
			mark(&s, ops, i, false);
			known_left += ops[i].known;
			unlift(&s, i, (uint32_t)(n + i));
			cur = s.next[i];
			phase1 = !ops[i].known;
			continue;
		}
		if (ops[cur].known == phase1) {
			cur = s.next[cur];
			continue;
		}
		bool ok;
		uint32_t ns;
		if (model_step(c, state, ops[cur].k, ops[cur].known, &ok,
			       &ns) != STATUS_OK)
			goto out;
		if (ok && phase1 && pointless(c, ops, &s, depth, cur, state, ns))
			ok = false;
		if (ok) {
			mark(&s, ops, cur, true);
			uint64_t h = cache_key(&s.bits, ns);
			if (!cache_has(&s.cache, &s.bits, ns, s.u, s.unw, h)) {
				if (cache_add(&s.cache, &s.bits, ns, s.u,
					      s.unw, h) != STATUS_OK)
					goto out;
				if (cache_bytes(&s.cache) > CACHE_BYTES_MAX) {
					*res = LIN_UNKNOWN;
					break;
				}
				s.stack_op[depth] = cur;
				s.stack_state[depth] = state;
				depth++;
				known_left -= ops[cur].known;
				state = ns;
				lift(&s, cur, (uint32_t)(n + cur));
				cur = s.next[head];
				phase1 = false;
				continue;
			}
			mark(&s, ops, cur, false);
		}
		cur = s.next[cur];
	}
	rc = STATUS_OK;
out:
	search_free(&s);
	return rc;
}

/* ---- sorting ops by (key, call, index) ---- */

static int key_cmp(const struct lin_op *a, const struct lin_op *b)
{
	size_t m = a->klen < b->klen ? a->klen : b->klen;
	int r = m ? memcmp(a->key, b->key, m) : 0;
	if (r)
		return r;
	return a->klen < b->klen ? -1 : a->klen > b->klen;
}

static bool op_before(const void *ctx, uint32_t a, uint32_t b)
{
	const struct lin_history *h = ctx;
	int r = key_cmp(&h->ops[a], &h->ops[b]);
	if (r)
		return r < 0;
	if (h->ops[a].call != h->ops[b].call)
		return h->ops[a].call < h->ops[b].call;
	return a < b;
}

/* ---- explaining an illegal key ---- */

/* The slice: which of the key's ops (0..n, call order) take part, and
 * which of them count with their recorded outcome. */
struct slice {
	bool *in, *known;
	struct sop *ops;
};

static int slice_check(struct checker *c, const struct kop *k, size_t n,
		       const struct slice *sl, uint64_t budget,
		       uint64_t *used, enum lin_result *res)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (sl->in[i])
			sl->ops[m++] = (struct sop){ &k[i], sl->known[i] };
	uint64_t steps;
	int rc = search_run(c, sl->ops, m, budget, &steps, res);
	*used += steps;
	return rc;
}

/* Prefix m: ops [0, m) as recorded, later writes with unknown outcome,
 * later Gets out. */
static void slice_prefix(struct slice *sl, const struct kop *k, size_t n,
			 size_t m)
{
	for (size_t i = 0; i < n; i++) {
		bool get = k[i].op->kind == LIN_GET;
		sl->in[i] = i < m || !get;
		sl->known[i] = i < m && k[i].op->known;
	}
}

static int explain_key(struct checker *c, const struct kop *k, size_t n,
		       uint64_t budget, struct sbuf *b)
{
	struct slice sl = { 0 };
	int rc = STATUS_NO_MEMORY;
	size_t *cand = NULL;
	sl.in = mem_calloc(n, sizeof(bool));
	sl.known = mem_calloc(n, sizeof(bool));
	sl.ops = mem_calloc(n, sizeof(struct sop));
	cand = mem_calloc(n, sizeof(size_t));
	if (!sl.in || !sl.known || !sl.ops || !cand)
		goto out;
	uint64_t used = 0, limit = budget * 4;
	if (limit < MINIMIZE_STEPS_MIN)
		limit = MINIMIZE_STEPS_MIN;
	bool exact = true; /* no check on the way ran out of budget */
	enum lin_result r;

	/* the shortest illegal prefix: prefix n (the key) is illegal */
	size_t lo = 1, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		slice_prefix(&sl, k, n, mid);
		if (slice_check(c, k, n, &sl, budget, &used, &r) != STATUS_OK)
			goto out;
		if (r == LIN_ILLEGAL) {
			hi = mid;
		} else {
			if (r == LIN_UNKNOWN)
				exact = false;
			lo = mid + 1;
		}
	}
	size_t m = hi;
	slice_prefix(&sl, k, n, m);

	/* drop the Gets the failure does not need, in halving chunks */
	size_t nc = 0;
	for (size_t i = 0; i + 1 < m; i++)
		if (k[i].op->kind == LIN_GET)
			cand[nc++] = i;
	for (size_t chunk = nc / 2 ? nc / 2 : 1; nc && used < limit;
	     chunk /= 2) {
		for (size_t at = 0; at < nc && used < limit; at += chunk) {
			size_t end = at + chunk < nc ? at + chunk : nc;
			bool any = false;
			for (size_t j = at; j < end; j++) {
				any |= sl.in[cand[j]];
				sl.in[cand[j]] = false;
			}
			if (!any)
				continue;
			if (slice_check(c, k, n, &sl, budget, &used, &r) !=
			    STATUS_OK)
				goto out;
			if (r != LIN_ILLEGAL)
				for (size_t j = at; j < end; j++)
					sl.in[cand[j]] = true;
		}
		if (chunk == 1)
			break;
	}

	/* unknown-outcome writes called after every constrained op of the
	 * slice returned can only come last: leave them out */
	uint64_t last_ret = 0;
	for (size_t i = 0; i < n; i++)
		if (sl.in[i] && sl.known[i] && k[i].op->ret > last_ret)
			last_ret = k[i].op->ret;
	for (size_t i = 0; i < n; i++)
		if (sl.in[i] && !sl.known[i] && k[i].op->call > last_ret)
			sl.in[i] = false;

	size_t shown = 0, total = 0;
	for (size_t i = 0; i < n; i++)
		total += sl.in[i];
	sb_printf(b, "  shortest failing slice: %zu of the key's %zu ops, "
		     "in call order:\n", total, n);
	/* a long slice: its first ops, then the ones nearest the failure */
	size_t head = total > EXPLAIN_OPS_MAX ? EXPLAIN_OPS_HEAD : total;
	size_t tail_from = total > EXPLAIN_OPS_MAX
				   ? total - (EXPLAIN_OPS_MAX - EXPLAIN_OPS_HEAD)
				   : total;
	for (size_t i = 0; i < n; i++) {
		if (!sl.in[i])
			continue;
		size_t at = shown++;
		if (at == head && head < tail_from)
			sb_printf(b, "  ... (%zu ops)\n", tail_from - head);
		if (at >= head && at < tail_from)
			continue;
		const char *note = NULL;
		if (i == m - 1)
			note = "   <- cannot be placed";
		else if (i >= m && k[i].op->known)
			note = "   (called later: outcome left open)";
		sb_op(b, k[i].op, k[i].hid, note);
	}
	sb_printf(b,
		  "  why: no order of these ops that respects their real-time "
		  "order and the register model (put sets, append extends, "
		  "delete removes, get reads) gives every outcome shown; "
		  "#%zu is the first op, by call time, whose outcome cannot "
		  "be explained by any order of the ops called before it "
		  "(writes called later may take effect or not)%s.\n",
		  k[m - 1].hid,
		  exact ? "" : "; some shorter prefixes ran out of budget, "
			       "so a shorter slice may exist");
	rc = STATUS_OK;
out:
	mem_free(sl.in);
	mem_free(sl.known);
	mem_free(sl.ops);
	mem_free(cand);
	return rc;
}

/* ---- lin_check ---- */

static char oom_text[] = "lin_check: out of memory, history not checked\n";

static void key_str(const struct lin_op *o, char *buf, size_t cap)
{
	lin_bytes_str(o->key, o->klen, buf, cap);
}

/* c->obs for the key ops k[0..n): fails only on memory. */
static int obs_build(struct checker *c, const struct kop *k, size_t n)
{
	size_t total = 0;
	c->obs_on = false;
	for (size_t i = 0; i < n; i++) {
		const struct lin_op *o = k[i].op;
		if (o->kind == LIN_GET && o->known && o->found)
			total += o->outlen + 1;
	}
	if (total > OBS_PREFIXES_MAX)
		return STATUS_OK;
	for (size_t i = 0; i < n; i++) {
		const struct lin_op *o = k[i].op;
		if (o->kind != LIN_GET || !o->known || !o->found)
			continue;
		struct st p = { 0, 0, 0 };
		uint32_t id;
		for (size_t j = 0;; j++) {
			if (states_intern(&c->obs, &p, &id) != STATUS_OK)
				return STATUS_NO_MEMORY;
			if (j == o->outlen)
				break;
			p.len++;
			p.h1 = addmod(mulmod(p.h1, BASE1), o->out[j]);
			p.h2 = addmod(mulmod(p.h2, BASE2), o->out[j]);
		}
	}
	c->obs_on = true;
	return STATUS_OK;
}

/* Fills k[0..n) for the key ops idx[0..n). */
static int kops_build(struct checker *c, const struct lin_history *h,
		      const uint32_t *idx, size_t n, struct kop *k)
{
	for (size_t i = 0; i < n; i++) {
		const struct lin_op *o = &h->ops[idx[i]];
		struct kop *x = &k[i];
		memset(x, 0, sizeof(*x));
		x->op = o;
		x->hid = idx[i];
		x->sid = ABSENT;
		struct st s;
		if (o->kind == LIN_PUT) {
			s = st_of(o->value, o->vlen);
			if (states_intern(&c->states, &s, &x->sid) != STATUS_OK)
				return STATUS_NO_MEMORY;
		} else if (o->kind == LIN_GET && o->found) {
			s = st_of(o->out, o->outlen);
			if (states_intern(&c->states, &s, &x->sid) != STATUS_OK)
				return STATUS_NO_MEMORY;
		} else if (o->kind == LIN_APPEND) {
			x->app = st_of(o->value, o->vlen);
			x->p1 = powmod(BASE1, o->vlen);
			x->p2 = powmod(BASE2, o->vlen);
		}
	}
	return obs_build(c, k, n);
}

enum lin_result lin_check(const struct lin_history *h,
			  const struct lin_opts *opts, struct lin_report *out)
{
	memset(out, 0, sizeof(*out));
	uint64_t budget = opts && opts->max_steps_per_key
				  ? opts->max_steps_per_key
				  : LIN_MAX_STEPS_PER_KEY_DEFAULT;
	struct checker c = { 0 };
	struct sbuf illegal = { 0 }, unknown = { 0 };
	uint32_t *idx = NULL, *tmp = NULL;
	struct kop *k = NULL;
	struct sop *ops = NULL;
	size_t n_illegal = 0;
	size_t total = h ? h->n : 0;

	idx = mem_alloc((total + 1) * sizeof(*idx));
	tmp = mem_alloc((total + 1) * sizeof(*tmp));
	k = mem_alloc((total + 1) * sizeof(*k));
	ops = mem_alloc((total + 1) * sizeof(*ops));
	if (!idx || !tmp || !k || !ops)
		goto oom;
	size_t n = 0;
	for (size_t i = 0; i < total; i++)
		if (h->ops[i].known || h->ops[i].kind != LIN_GET)
			idx[n++] = (uint32_t)i;
	sort_idx(idx, tmp, n, op_before, h);
	out->ops = n;

	for (size_t a = 0; a < n;) {
		size_t e = a + 1;
		while (e < n && !key_cmp(&h->ops[idx[a]], &h->ops[idx[e]]))
			e++;
		size_t kn = e - a;
		out->keys++;
		states_clear(&c.states);
		states_clear(&c.obs);
		if (kops_build(&c, h, idx + a, kn, k) != STATUS_OK)
			goto oom;
		for (size_t i = 0; i < kn; i++)
			ops[i] = (struct sop){ &k[i], k[i].op->known };
		uint64_t steps;
		enum lin_result r;
		if (search_run(&c, ops, kn, budget, &steps, &r) != STATUS_OK)
			goto oom;
		out->steps += steps;
		char ks[BYTES_SHORT + 32];
		key_str(k[0].op, ks, sizeof(ks));
		if (r == LIN_ILLEGAL && n_illegal++ == 0) {
			sb_printf(&illegal,
				  "key %s (%zu ops) is not linearizable\n", ks,
				  kn);
			if (explain_key(&c, k, kn, budget, &illegal) !=
			    STATUS_OK)
				goto oom;
		} else if (r == LIN_UNKNOWN) {
			if (out->unknown_keys++ < EXPLAIN_KEYS_MAX)
				sb_printf(&unknown,
					  "key %s (%zu ops): search budget "
					  "ran out after %" PRIu64
					  " steps: unknown\n",
					  ks, kn, steps);
		}
		if (illegal.oom || unknown.oom)
			goto oom;
		a = e;
	}
	if (n_illegal) {
		out->result = LIN_ILLEGAL;
		if (n_illegal > 1)
			sb_printf(&illegal, "(%zu keys are not linearizable; "
					    "the first is shown)\n",
				  n_illegal);
		if (out->unknown_keys)
			sb_printf(&illegal, "(%zu keys unknown)\n",
				  out->unknown_keys);
		if (illegal.oom)
			goto oom;
		out->explain = illegal.p;
		illegal.p = NULL;
	} else if (out->unknown_keys) {
		out->result = LIN_UNKNOWN;
		if (out->unknown_keys > EXPLAIN_KEYS_MAX)
			sb_printf(&unknown, "... %zu keys unknown in all\n",
				  out->unknown_keys);
		if (unknown.oom)
			goto oom;
		out->explain = unknown.p;
		unknown.p = NULL;
	}
	goto done;
oom:
	out->result = LIN_UNKNOWN;
	out->explain = oom_text;
done:
	mem_free(illegal.p);
	mem_free(unknown.p);
	mem_free(idx);
	mem_free(tmp);
	mem_free(k);
	mem_free(ops);
	states_clear(&c.states);
	states_clear(&c.obs);
	return out->result;
}

void lin_report_free(struct lin_report *r)
{
	if (!r)
		return;
	if (r->explain != oom_text)
		mem_free(r->explain);
	r->explain = NULL;
}

/* ---- the text form ---- */

#define HEADER "skv-lin-history 1"

static void write_hex(FILE *f, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (n == 0) {
		fputc('-', f);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		fputc(hex[p[i] >> 4], f);
		fputc(hex[p[i] & 15], f);
	}
}

int lin_history_write(const struct lin_history *h, FILE *f)
{
	fprintf(f, "%s\n", HEADER);
	for (size_t i = 0; i < h->n; i++) {
		const struct lin_op *o = &h->ops[i];
		fprintf(f, "%" PRIu64 " %s ", o->client, kind_name(o->kind));
		write_hex(f, o->key, o->klen);
		fputc(' ', f);
		write_hex(f, o->value, o->vlen);
		const char *oc;
		if (!o->known)
			oc = "unknown";
		else if (o->kind == LIN_PUT || o->kind == LIN_APPEND)
			oc = "ok";
		else
			oc = o->found ? "found" : "missing";
		fprintf(f, " %s ", oc);
		write_hex(f, o->out, o->outlen);
		fprintf(f, " %" PRIu64 " ", o->call);
		if (o->known)
			fprintf(f, "%" PRIu64 "\n", o->ret);
		else
			fputs("-\n", f);
	}
	if (fflush(f) != 0 || ferror(f))
		return STATUS_IO;
	return STATUS_OK;
}

struct reader {
	FILE *f;
	char *line;
	size_t len, cap;
	size_t lineno;
	char *err;
	size_t errcap;
};

static void rd_err(struct reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void rd_err(struct reader *r, const char *fmt, ...)
{
	if (!r->errcap)
		return;
	int k = snprintf(r->err, r->errcap, "line %zu: ", r->lineno);
	if (k < 0 || (size_t)k >= r->errcap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err + k, r->errcap - (size_t)k, fmt, ap);
	va_end(ap);
}

/* Reads one line (without '\n') into r->line. Returns STATUS_OK,
 * STATUS_NOT_FOUND at EOF, STATUS_IO or STATUS_NO_MEMORY. */
static int rd_line(struct reader *r)
{
	int ch;
	r->len = 0;
	bool any = false;
	while ((ch = getc(r->f)) != EOF) {
		any = true;
		if (ch == '\n')
			break;
		if (r->len + 1 >= r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 256;
			char *p = mem_realloc(r->line, cap);
			if (!p)
				return STATUS_NO_MEMORY;
			r->line = p;
			r->cap = cap;
		}
		r->line[r->len++] = (char)ch;
	}
	if (ferror(r->f))
		return STATUS_IO;
	if (!any)
		return STATUS_NOT_FOUND;
	if (!r->line) {
		r->line = mem_alloc(1);
		if (!r->line)
			return STATUS_NO_MEMORY;
		r->cap = 1;
	}
	r->line[r->len] = '\0';
	r->lineno++;
	return STATUS_OK;
}

static bool parse_u64(const char *s, uint64_t *v)
{
	if (*s < '0' || *s > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes field s (hex, "-" = empty) in place; *p points into s. */
static bool parse_hex(char *s, const uint8_t **p, size_t *n)
{
	*p = NULL;
	*n = 0;
	if (!strcmp(s, "-"))
		return true;
	size_t len = strlen(s);
	if (len == 0 || len % 2)
		return false;
	uint8_t *o = (uint8_t *)s;
	for (size_t i = 0; i < len; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		o[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	*p = o;
	*n = len / 2;
	return true;
}

#define FIELDS 8

static int parse_op(struct reader *r, struct lin_op *o)
{
	char *f[FIELDS];
	size_t nf = 0;
	char *s = r->line;
	for (;;) {
		if (nf == FIELDS) {
			rd_err(r, "more than %d fields", FIELDS);
			return STATUS_CORRUPTION;
		}
		f[nf++] = s;
		char *sp = strchr(s, ' ');
		if (!sp)
			break;
		*sp = '\0';
		s = sp + 1;
	}
	if (nf != FIELDS) {
		rd_err(r, "%zu fields, want %d: client kind key value outcome "
			  "out call ret", nf, FIELDS);
		return STATUS_CORRUPTION;
	}
	memset(o, 0, sizeof(*o));
	if (!parse_u64(f[0], &o->client)) {
		rd_err(r, "bad client '%s'", f[0]);
		return STATUS_CORRUPTION;
	}
	if (!strcmp(f[1], "get"))
		o->kind = LIN_GET;
	else if (!strcmp(f[1], "put"))
		o->kind = LIN_PUT;
	else if (!strcmp(f[1], "append"))
		o->kind = LIN_APPEND;
	else if (!strcmp(f[1], "delete"))
		o->kind = LIN_DELETE;
	else {
		rd_err(r, "bad kind '%s' (get, put, append or delete)", f[1]);
		return STATUS_CORRUPTION;
	}
	bool writes = o->kind == LIN_PUT || o->kind == LIN_APPEND;
	if (!strcmp(f[4], "unknown")) {
		o->known = false;
	} else if (writes && !strcmp(f[4], "ok")) {
		o->known = true;
	} else if (!writes && !strcmp(f[4], "found")) {
		o->known = o->found = true;
	} else if (!writes && !strcmp(f[4], "missing")) {
		o->known = true;
	} else {
		rd_err(r, "bad outcome '%s' for %s (%s or unknown)", f[4], f[1],
		       writes ? "ok" : "found, missing");
		return STATUS_CORRUPTION;
	}
	if (!parse_u64(f[6], &o->call)) {
		rd_err(r, "bad call time '%s'", f[6]);
		return STATUS_CORRUPTION;
	}
	if (!o->known ? strcmp(f[7], "-") != 0 : !parse_u64(f[7], &o->ret)) {
		rd_err(r, "bad return time '%s' (%s)", f[7],
		       o->known ? "a number" : "'-' for an unknown outcome");
		return STATUS_CORRUPTION;
	}
	if (o->known && o->ret < o->call) {
		rd_err(r, "return time %" PRIu64 " before call time %" PRIu64,
		       o->ret, o->call);
		return STATUS_CORRUPTION;
	}
	if (!parse_hex(f[2], &o->key, &o->klen)) {
		rd_err(r, "bad key: hex or '-'");
		return STATUS_CORRUPTION;
	}
	if (!parse_hex(f[3], &o->value, &o->vlen) || (!writes && o->vlen)) {
		rd_err(r, "bad value: %s", writes ? "hex or '-'"
						  : "'-' for get and delete");
		return STATUS_CORRUPTION;
	}
	bool has_out = o->kind == LIN_GET && o->found;
	if (!parse_hex(f[5], &o->out, &o->outlen) || (!has_out && o->outlen)) {
		rd_err(r, "bad out: %s", has_out ? "hex or '-'"
				 : "'-' unless a get was found");
		return STATUS_CORRUPTION;
	}
	return STATUS_OK;
}

int lin_history_read(FILE *f, struct lin_history **out, char *err, size_t cap)
{
	struct reader r = { .f = f, .err = err, .errcap = cap };
	struct lin_history *h = NULL;
	int rc;
	*out = NULL;
	if (cap)
		err[0] = '\0';
	rc = rd_line(&r);
	if (rc == STATUS_NOT_FOUND) {
		r.lineno = 1;
		rd_err(&r, "empty file, want '%s'", HEADER);
		rc = STATUS_CORRUPTION;
		goto fail;
	}
	if (rc != STATUS_OK)
		goto fail_status;
	if (strcmp(r.line, HEADER) != 0) {
		rd_err(&r, "not a history: want '%s'", HEADER);
		rc = STATUS_CORRUPTION;
		goto fail;
	}
	h = lin_history_new();
	if (!h) {
		rc = STATUS_NO_MEMORY;
		goto fail_status;
	}
	while ((rc = rd_line(&r)) == STATUS_OK) {
		if (r.len == 0 || r.line[0] == '#')
			continue;
		struct lin_op o;
		rc = parse_op(&r, &o);
		if (rc != STATUS_OK)
			goto fail;
		rc = lin_history_add(h, &o);
		if (rc != STATUS_OK)
			goto fail_status;
	}
	if (rc != STATUS_NOT_FOUND)
		goto fail_status;
	mem_free(r.line);
	*out = h;
	return STATUS_OK;
fail_status:
	rd_err(&r, "%s", status_str(rc));
fail:
	mem_free(r.line);
	lin_history_free(h);
	return rc;
}
