#include "common/flags.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/status.h"

static int fail(char *err, size_t errcap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errcap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errcap, fmt, ap);
	va_end(ap);
	return STATUS_INVALID_ARGUMENT;
}

static struct flag *find(struct flag *flags, size_t n, const char *name,
			 size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(flags[i].name) == len &&
		    memcmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static bool has_range(const struct flag *f)
{
	return f->min != 0 || f->max != 0;
}

static int set_value(struct flag *f, const char *v, char *err, size_t errcap)
{
	char *end;
	switch (f->type) {
	case FLAG_STRING:
		*(const char **)f->dest = v;
		break;
	case FLAG_BOOL:
		if (!strcmp(v, "true") || !strcmp(v, "1"))
			*(bool *)f->dest = true;
		else if (!strcmp(v, "false") || !strcmp(v, "0"))
			*(bool *)f->dest = false;
		else
			return fail(err, errcap,
				    "--%s: expected true or false, got '%s'",
				    f->name, v);
		break;
	case FLAG_INT: {
		errno = 0;
		long long x = strtoll(v, &end, 0);
		if (errno || end == v || *end)
			return fail(err, errcap,
				    "--%s: '%s' is not an integer", f->name, v);
		if (has_range(f) && (x < f->min || x > f->max))
			return fail(err, errcap,
				    "--%s: %lld is out of range [%" PRId64
				    ", %" PRId64 "]",
				    f->name, x, f->min, f->max);
		*(int64_t *)f->dest = x;
		break;
	}
	case FLAG_UINT: {
		errno = 0;
		if (v[0] == '-')
			return fail(err, errcap,
				    "--%s: '%s' must not be negative", f->name,
				    v);
		unsigned long long x = strtoull(v, &end, 0);
		if (errno || end == v || *end)
			return fail(err, errcap,
				    "--%s: '%s' is not a non-negative integer",
				    f->name, v);
		if (has_range(f) && (x < (uint64_t)f->min ||
				     x > (uint64_t)f->max))
			return fail(err, errcap,
				    "--%s: %llu is out of range [%" PRId64
				    ", %" PRId64 "]",
				    f->name, x, f->min, f->max);
		*(uint64_t *)f->dest = x;
		break;
	}
	}
	f->seen = true;
	return STATUS_OK;
}

static int keep_string(struct flags_result *res, const char *s, size_t len,
		       char **out)
{
	char **owned = mem_realloc(res->owned,
				   (res->owned_count + 1) * sizeof(*owned));
	if (!owned)
		return STATUS_NO_MEMORY;
	res->owned = owned;
	char *copy = mem_strndup(s, len);
	if (!copy)
		return STATUS_NO_MEMORY;
	res->owned[res->owned_count++] = copy;
	*out = copy;
	return STATUS_OK;
}

static char *trim(char *s, char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
			   end[-1] == '\r'))
		end--;
	*end = '\0';
	return s;
}

int flags_parse_text(struct flag *flags, size_t n, const char *text,
		     struct flags_result *res, char *err, size_t errcap)
{
	char *copy;
	int rc = keep_string(res, text, strlen(text), &copy);
	if (rc)
		return fail(err, errcap, "out of memory reading config");
	int lineno = 0;
	for (char *line = copy; line && *line;) {
		char *nl = strchr(line, '\n');
		char *end = nl ? nl : line + strlen(line);
		char *next = nl ? nl + 1 : NULL;
		lineno++;
		char *hash = memchr(line, '#', (size_t)(end - line));
		if (hash)
			end = hash;
		char *s = trim(line, end);
		line = next;
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq)
			return fail(err, errcap,
				    "config line %d: expected 'name = value'",
				    lineno);
		char *name = trim(s, eq);
		char *value = trim(eq + 1, eq + 1 + strlen(eq + 1));
		struct flag *f = find(flags, n, name, strlen(name));
		if (!f)
			return fail(err, errcap,
				    "config line %d: unknown setting '%s'",
				    lineno, name);
		rc = set_value(f, value, err, errcap);
		if (rc)
			return rc;
	}
	return STATUS_OK;
}

static int load_file(struct flag *flags, size_t n, const char *path,
		     struct flags_result *res, char *err, size_t errcap)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return fail(err, errcap, "--config %s: %s", path,
			    strerror(errno));
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc = STATUS_OK;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *t = mem_realloc(text, cap);
			if (!t) {
				rc = fail(err, errcap, "--config %s: too large",
					  path);
				goto out;
			}
			text = t;
		}
		size_t got = fread(text + len, 1, cap - len - 1, fp);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(fp)) {
		rc = fail(err, errcap, "--config %s: read error", path);
		goto out;
	}
	text[len] = '\0';
	if (strlen(text) != len) {
		rc = fail(err, errcap, "--config %s: contains a NUL byte",
			  path);
		goto out;
	}
	rc = flags_parse_text(flags, n, text, res, err, errcap);
	if (rc) {
		size_t used = strlen(err);
		char prefix[256];
		snprintf(prefix, sizeof(prefix), "--config %s: ", path);
		if (used + strlen(prefix) < errcap) {
			memmove(err + strlen(prefix), err, used + 1);
			memcpy(err, prefix, strlen(prefix));
		}
	}
out:
	mem_free(text);
	fclose(fp);
	return rc;
}

/*
 * One walk over argv. With `config_only` it loads --config files and skips
 * every other flag (with its value); otherwise it applies the other flags
 * and skips --config. Two walks let the command line override the file.
 */
static int scan(struct flag *flags, size_t n, int argc, char **argv,
		bool config_only, struct flags_result *res, char *err,
		size_t errcap)
{
	bool own_config = find(flags, n, "config", 6) != NULL;
	int rc;
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			res->help = true;
			continue;
		}
		if (a[0] != '-' || a[1] == '\0')
			break; /* first positional argument */
		if (a[1] != '-')
			return fail(err, errcap,
				    "unknown option '%s' (flags are --name)",
				    a);
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		if (!own_config && len == 6 && !memcmp(name, "config", 6)) {
			const char *path = eq ? eq + 1 : NULL;
			if (!eq) {
				if (i + 1 >= argc)
					return fail(err, errcap,
						    "--config: missing FILE");
				path = argv[++i];
			}
			if (config_only) {
				rc = load_file(flags, n, path, res, err,
					       errcap);
				if (rc)
					return rc;
			}
			continue;
		}
		struct flag *f = find(flags, n, name, len);
		if (!f)
			return fail(err, errcap,
				    "unknown flag '--%.*s' (see --help)",
				    (int)len, name);
		const char *value;
		if (eq) {
			value = eq + 1;
		} else if (f->type == FLAG_BOOL) {
			value = "true";
		} else {
			if (i + 1 >= argc)
				return fail(err, errcap, "--%s: missing %s",
					    f->name,
					    f->metavar ? f->metavar : "value");
			value = argv[++i];
		}
		if (!config_only) {
			rc = set_value(f, value, err, errcap);
			if (rc)
				return rc;
		}
	}
	res->first_arg = i;
	return STATUS_OK;
}

int flags_parse(struct flag *flags, size_t n, int argc, char **argv,
		struct flags_result *res, char *err, size_t errcap)
{
	memset(res, 0, sizeof(*res));
	res->first_arg = argc;
	int rc = scan(flags, n, argc, argv, true, res, err, errcap);
	if (rc == STATUS_OK)
		rc = scan(flags, n, argc, argv, false, res, err, errcap);
	if (rc || res->help)
		return rc;
	for (size_t k = 0; k < n; k++)
		if (flags[k].required && !flags[k].seen)
			return fail(err, errcap, "missing required flag --%s",
				    flags[k].name);
	return STATUS_OK;
}

void flags_release(struct flags_result *res)
{
	for (size_t i = 0; i < res->owned_count; i++)
		mem_free(res->owned[i]);
	mem_free(res->owned);
	res->owned = NULL;
	res->owned_count = 0;
}

void flags_usage(const struct flag *flags, size_t n, FILE *out)
{
	for (size_t i = 0; i < n; i++) {
		const struct flag *f = &flags[i];
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", f->name,
			 f->metavar ? " " : "", f->metavar ? f->metavar : "");
		fprintf(out, "  %-26s %s", left, f->help ? f->help : "");
		if (f->required) {
			fprintf(out, " (required)");
		} else if (f->dest) {
			switch (f->type) {
			case FLAG_STRING:
				if (*(const char *const *)f->dest)
					fprintf(out, " (default %s)",
						*(const char *const *)f->dest);
				break;
			case FLAG_INT:
				fprintf(out, " (default %" PRId64 ")",
					*(const int64_t *)f->dest);
				break;
			case FLAG_UINT:
				fprintf(out, " (default %" PRIu64 ")",
					*(const uint64_t *)f->dest);
				break;
			case FLAG_BOOL:
				break;
			}
		}
		fputc('\n', out);
	}
	bool own_config = false;
	for (size_t i = 0; i < n; i++)
		own_config |= !strcmp(flags[i].name, "config");
	if (!own_config)
		fprintf(out, "  %-26s %s\n", "--config FILE",
			"read 'name = value' lines (flags on the line win)");
	fprintf(out, "  %-26s %s\n", "-h, --help", "show this help");
}
