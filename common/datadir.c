/*
 * Implementation notes. The identity record is short text; parsing it
 * keeps every "name=value" line, so a record of another kind (with other
 * fields) still names its kind, and a record of this kind must carry the
 * cluster and every field of `want` to be readable.
 */
#include "common/datadir.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"

#define MOD "datadir"
#define RECORD_MAX 512
#define SUFFIX "/identity"
#define SUFFIX_LEN (sizeof(SUFFIX) - 1)
#define LINES_MAX 8

bool datadir_cluster_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > DATADIR_CLUSTER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* mkdir -p. */
static int make_dirs(const char *path, char *err, size_t cap)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(tmp)) {
		snprintf(err, cap, "data dir '%s': bad path", path);
		return STATUS_INVALID_ARGUMENT;
	}
	memcpy(tmp, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != 0)
			continue;
		char saved = tmp[i];
		tmp[i] = 0;
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
			snprintf(err, cap, "data dir %s: cannot create %s: %s",
				 path, tmp, strerror(errno));
			return STATUS_IO;
		}
		tmp[i] = saved;
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, cap, "data dir %s: not a directory", path);
		return STATUS_INVALID_ARGUMENT;
	}
	return STATUS_OK;
}

/* 1 if `path` holds no entries, 0 if it does, -1 on error (errno). */
static int dir_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int empty = 1;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	return empty;
}

/* ---- the record ---- */

struct record {
	char text[RECORD_MAX]; /* the lines, '=' and '\n' replaced by NULs */
	const char *names[LINES_MAX];
	const char *values[LINES_MAX];
	size_t n;
};

static int record_format(const struct datadir_identity *idt, struct buf *out)
{
	char text[RECORD_MAX];
	size_t len = 0;
	len += (size_t)snprintf(text, sizeof(text), "kind=%s\ncluster=%s\n",
				idt->kind, idt->cluster);
	for (size_t i = 0; i < idt->n_fields && len < sizeof(text); i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"%s=%" PRIu64 "\n", idt->fields[i].name,
					idt->fields[i].value);
	if (len >= sizeof(text))
		return STATUS_INVALID_ARGUMENT;
	return buf_set(out, text, len);
}

/* Splits the stored text into lines; false if it is not "name=value"
 * lines. */
static bool record_parse(const void *data, size_t len, struct record *r)
{
	if (len >= sizeof(r->text) || memchr(data, 0, len))
		return false;
	memcpy(r->text, data, len);
	r->text[len] = 0;
	r->n = 0;
	char *save = NULL;
	for (char *line = strtok_r(r->text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq || r->n == LINES_MAX)
			return false;
		*eq = 0;
		r->names[r->n] = line;
		r->values[r->n++] = eq + 1;
	}
	return true;
}

static const char *record_get(const struct record *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->names[i], name))
			return r->values[i];
	return NULL;
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return !*end && errno == 0;
}

/* "gid=100 id=1 nodes=3" of `want`'s fields, with the values of `r`
 * (NULL: of `want`). */
static void fields_text(const struct datadir_identity *want,
			const struct record *r, char *out, size_t cap)
{
	size_t len = 0;
	out[0] = 0;
	for (size_t i = 0; i < want->n_fields && len < cap; i++) {
		const char *name = want->fields[i].name;
		if (r)
			len += (size_t)snprintf(out + len, cap - len, "%s%s=%s",
						i ? " " : "", name,
						record_get(r, name));
		else
			len += (size_t)snprintf(out + len, cap - len,
						"%s%s=%" PRIu64, i ? " " : "",
						name, want->fields[i].value);
	}
}

/* ---- checks ---- */

/* STATUS_OK if every column family of `st` is empty. */
static int store_is_empty(struct store *st, bool *empty)
{
	struct buf key;
	buf_init(&key);
	*empty = true;
	for (int cf = 0; cf < STORE_CF_COUNT_ && *empty; cf++) {
		int rc = store_last_key(st, (enum store_cf)cf, "", 0, &key);
		if (rc == STATUS_OK) {
			*empty = false;
		} else if (rc != STATUS_NOT_FOUND) {
			buf_free(&key);
			return rc;
		}
	}
	buf_free(&key);
	return STATUS_OK;
}

/* The kind named by another identity record in `default` (another
 * kind's key), into kind[0..cap); "" if there is none. */
static void other_kind(struct store *st, const char *own_key, char *kind,
		       size_t cap)
{
	kind[0] = 0;
	struct store_iter *it = store_iter_new(st, STORE_CF_DEFAULT, "", 0,
					       NULL);
	for (; it && store_iter_valid(it) && !kind[0]; store_iter_next(it)) {
		size_t klen, vlen;
		const char *k = store_iter_key(it, &klen);
		const void *v = store_iter_value(it, &vlen);
		if (klen < SUFFIX_LEN ||
		    memcmp(k + klen - SUFFIX_LEN, SUFFIX, SUFFIX_LEN) ||
		    (klen == strlen(own_key) && !memcmp(k, own_key, klen)))
			continue;
		struct record r;
		const char *other = record_parse(v, vlen, &r)
					    ? record_get(&r, "kind")
					    : NULL;
		if (other)
			snprintf(kind, cap, "%s", other);
	}
	store_iter_free(it);
}

/* A directory without our record: writes it into an empty store, else
 * says what the store is. */
static int create_identity(struct store *st, const char *dir,
			   const struct datadir_identity *want, char *err,
			   size_t cap)
{
	bool empty;
	int rc = store_is_empty(st, &empty);
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: %s", dir, store_errmsg(st));
		return rc;
	}
	if (!empty) {
		char kind[64];
		other_kind(st, want->key, kind, sizeof(kind));
		if (kind[0])
			snprintf(err, cap,
				 "data dir %s: identity mismatch: it belongs "
				 "to a %s server, not a %s data dir; refusing "
				 "to start",
				 dir, kind, want->title);
		else
			snprintf(err, cap,
				 "data dir %s holds a database without a %s "
				 "identity (not a %s data dir?); refusing to "
				 "start",
				 dir, want->title, want->title);
		return STATUS_INVALID_ARGUMENT;
	}
	struct buf val;
	buf_init(&val);
	rc = record_format(want, &val);
	if (rc == STATUS_OK)
		rc = store_put(st, STORE_CF_DEFAULT, want->key,
			       strlen(want->key), val.data, val.len, true);
	buf_free(&val);
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: cannot write the identity: %s",
			 dir, store_errmsg(st));
		return rc;
	}
	char fields[160];
	fields_text(want, NULL, fields, sizeof(fields));
	log_info(MOD, "new data dir %s: %s in %s cluster \"%s\"", dir, fields,
		 want->title, want->cluster);
	return STATUS_OK;
}

/* Checks the identity of the store at `dir`, or writes it (synced) into
 * an empty one. */
static int check_identity(struct store *st, const char *dir,
			  const struct datadir_identity *want, char *err,
			  size_t cap)
{
	struct buf val;
	buf_init(&val);
	int rc = store_get(st, STORE_CF_DEFAULT, want->key, strlen(want->key),
			   &val);
	if (rc == STATUS_NOT_FOUND) {
		buf_free(&val);
		return create_identity(st, dir, want, err, cap);
	}
	if (rc != STATUS_OK) {
		snprintf(err, cap, "data dir %s: cannot read the identity: %s",
			 dir, store_errmsg(st));
		buf_free(&val);
		return rc;
	}
	struct record r;
	bool readable = record_parse(val.data, val.len, &r);
	buf_free(&val);
	const char *kind = readable ? record_get(&r, "kind") : NULL;
	const char *cluster = readable ? record_get(&r, "cluster") : NULL;
	bool same = true;
	for (size_t i = 0; kind && i < want->n_fields; i++) {
		uint64_t v;
		if (!parse_u64(record_get(&r, want->fields[i].name), &v))
			readable = false;
		else if (v != want->fields[i].value)
			same = false;
	}
	if (kind && strcmp(kind, want->kind) != 0) {
		snprintf(err, cap,
			 "data dir %s: identity mismatch: it belongs to a %s "
			 "server, not a %s data dir; refusing to start",
			 dir, kind, want->title);
		return STATUS_INVALID_ARGUMENT;
	}
	if (!readable || !kind || !cluster) {
		snprintf(err, cap,
			 "data dir %s: unreadable identity record; refusing "
			 "to start",
			 dir);
		return STATUS_CORRUPTION;
	}
	if (!same || strcmp(cluster, want->cluster) != 0) {
		char have_f[160], want_f[160];
		fields_text(want, &r, have_f, sizeof(have_f));
		fields_text(want, NULL, want_f, sizeof(want_f));
		snprintf(err, cap,
			 "data dir %s: identity mismatch: it belongs to %s "
			 "in %s cluster \"%s\", not %s in \"%s\"; refusing to "
			 "start",
			 dir, have_f, want->title, cluster, want_f,
			 want->cluster);
		return STATUS_INVALID_ARGUMENT;
	}
	return STATUS_OK;
}

int datadir_open(const char *dir, const struct datadir_identity *want,
		 struct store **out, char *err, size_t cap)
{
	char serr[512];
	*out = NULL;
	int rc = make_dirs(dir, err, cap);
	if (rc != STATUS_OK)
		return rc;
	int empty = dir_empty(dir);
	if (empty < 0) {
		snprintf(err, cap, "data dir %s: %s", dir, strerror(errno));
		return STATUS_IO;
	}
	/* A non-empty directory must already be a database: never create
	 * one among someone else's files. */
	struct store_opts so = {.path = dir, .create_if_missing = empty == 1};
	rc = store_open(&so, out, serr, sizeof(serr));
	if (rc != STATUS_OK) {
		char current[4200];
		struct stat st;
		snprintf(current, sizeof(current), "%s/CURRENT", dir);
		if (!empty && stat(current, &st) != 0)
			snprintf(err, cap,
				 "data dir %s is not empty and holds no "
				 "database: not a %s data dir; refusing to "
				 "start",
				 dir, want->title);
		else
			snprintf(err, cap, "data dir %s: cannot open: %s", dir,
				 serr);
		return rc;
	}
	rc = check_identity(*out, dir, want, err, cap);
	if (rc != STATUS_OK) {
		store_close(*out);
		*out = NULL;
	}
	return rc;
}
