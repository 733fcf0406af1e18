/*
 * yaml.c — the pipeline file read into a tree of positioned nodes.
 *
 * Why a tree of our own rather than libyaml's document API: the checker
 * needs every node's line:col for its messages, interpolated scalar text,
 * aliases already expanded and merge keys applied, and it needs to report
 * several problems in one run. libyaml's event parser gives us marks and
 * leaves all of that to us, so we build the tree by recursive descent over
 * the event stream (one function per node kind).
 *
 * Design notes
 *   - libyaml marks are 0-based; nodes store them 1-based.
 *   - Aliases are resolved by deep copy. An anchor is registered only when
 *     its node is complete, so an alias inside its own anchor is "unknown"
 *     and no cycle can form. Copies are counted against a node budget so a
 *     "billion laughs" file fails instead of eating the machine.
 *   - Nodes dropped from the tree (the second of duplicate keys, merge
 *     sources) go to a graveyard freed at the end of the parse, because an
 *     anchor registered inside them may still be aliased later on.
 *   - Interpolation happens per scalar as it is read, so an unset variable
 *     is reported at the scalar that uses it.
 *
 * Build note: this file includes libyaml's <yaml.h> next to our "yaml.h";
 * the build puts core/ on the -iquote path only, so <yaml.h> is libyaml's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include "yaml.h"

#include "redact.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_DEPTH 200
#define MAX_NODES 1000000

/* ---- Diagnostics ------------------------------------------------------ */

void sl_diag_add(sl_diag *d, int line, int col, const char *fmt, ...)
{
    char *msg = NULL, *full = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    const char *file = d->file ? d->file : "<string>";
    if (line > 0)
        n = asprintf(&full, "%s:%d:%d: %s", file, line, col, msg);
    else if (line == 0)
        n = asprintf(&full, "%s: %s", file, msg);
    else
        n = asprintf(&full, "--set: %s", msg);
    free(msg);
    if (n < 0)
        return;
    /* A value quoted back may be a URL with a password in it. */
    size_t room = sl_redact_room(full);
    char *roomy = realloc(full, room);
    if (!roomy) {
        free(full);
        return;
    }
    full = roomy;
    sl_redact_url_passwords(full, room);
    char **grown = realloc(d->messages, (d->count + 1) * sizeof *grown);
    if (!grown) {
        free(full);
        return;
    }
    d->messages = grown;
    d->messages[d->count++] = full;
}

void sl_diag_print(const sl_diag *d)
{
    for (size_t i = 0; i < d->count; i++)
        fprintf(stderr, "%s\n", d->messages[i]);
}

void sl_diag_free(sl_diag *d)
{
    for (size_t i = 0; i < d->count; i++)
        free(d->messages[i]);
    free(d->messages);
    d->messages = NULL;
    d->count = 0;
}

/* ---- Nodes ------------------------------------------------------------ */

void sl_node_free(sl_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->count; i++) {
        if (n->keys)
            sl_node_free(n->keys[i]);
        if (n->items)
            sl_node_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->value);
    free(n);
}

bool sl_node_is_null(const sl_node *n)
{
    if (!n || n->kind != SL_NODE_SCALAR || n->quoted)
        return false;
    const char *v = n->value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const sl_node *sl_node_key(const sl_node *n, const char *key)
{
    if (!n || n->kind != SL_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->keys[i]->value, key) == 0)
            return n->keys[i];
    return NULL;
}

const sl_node *sl_node_get(const sl_node *n, const char *key)
{
    if (!n || n->kind != SL_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->keys[i]->value, key) == 0)
            return n->items[i];
    return NULL;
}

/* ---- Parser state ----------------------------------------------------- */

typedef struct anchor {
    char *name;
    const sl_node *node;
} anchor;

typedef struct parser {
    yaml_parser_t yp;
    sl_diag *diag;
    const char *text; /* the input, to turn a reader error's offset into line:col */
    size_t len;
    anchor *anchors;
    size_t nanchors;
    sl_node **graveyard;
    size_t ngraveyard;
    size_t nodes;     /* made so far, against MAX_NODES */
    bool too_big;     /* reported once */
} parser;

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q) {
        fprintf(stderr, "sluice: out of memory\n");
        abort();
    }
    return q;
}

static char *xstrndup(const char *s, size_t len)
{
    char *d = xrealloc(NULL, len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

static bool count_node(parser *p, int line, int col)
{
    if (++p->nodes <= MAX_NODES)
        return true;
    if (!p->too_big)
        sl_diag_add(p->diag, line, col, "document too large (more than %d nodes after "
                    "expanding aliases)", MAX_NODES);
    p->too_big = true;
    return false;
}

static sl_node *new_node(sl_node_kind kind, const yaml_mark_t *mark)
{
    sl_node *n = xrealloc(NULL, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = (int)mark->line + 1;
    n->col = (int)mark->column + 1;
    return n;
}

static void bury(parser *p, sl_node *n)
{
    p->graveyard = xrealloc(p->graveyard, (p->ngraveyard + 1) * sizeof *p->graveyard);
    p->graveyard[p->ngraveyard++] = n;
}

static void append_pair(sl_node *m, size_t *cap, sl_node *k, sl_node *v)
{
    if (m->count == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        m->items = xrealloc(m->items, *cap * sizeof *m->items);
        if (m->kind == SL_NODE_MAP)
            m->keys = xrealloc(m->keys, *cap * sizeof *m->keys);
    }
    if (m->kind == SL_NODE_MAP)
        m->keys[m->count] = k;
    m->items[m->count++] = v;
}

/* Deep copy for aliases and merges; NULL when over the node budget. */
static sl_node *copy_node(parser *p, const sl_node *src)
{
    if (!count_node(p, src->line, src->col))
        return NULL;
    sl_node *n = xrealloc(NULL, sizeof *n);
    *n = *src;
    n->value = src->value ? xstrndup(src->value, strlen(src->value)) : NULL;
    n->keys = NULL;
    n->items = NULL;
    n->count = 0;
    size_t cap = 0;
    for (size_t i = 0; i < src->count; i++) {
        sl_node *k = NULL, *v;
        if (src->kind == SL_NODE_MAP && !(k = copy_node(p, src->keys[i]))) {
            sl_node_free(n);
            return NULL;
        }
        if (!(v = copy_node(p, src->items[i]))) {
            sl_node_free(k);
            sl_node_free(n);
            return NULL;
        }
        append_pair(n, &cap, k, v);
    }
    return n;
}

static void register_anchor(parser *p, const yaml_char_t *name, const sl_node *n)
{
    if (!name)
        return;
    p->anchors = xrealloc(p->anchors, (p->nanchors + 1) * sizeof *p->anchors);
    p->anchors[p->nanchors].name = xstrndup((const char *)name, strlen((const char *)name));
    p->anchors[p->nanchors].node = n;
    p->nanchors++;
}

static const sl_node *find_anchor(parser *p, const char *name)
{
    for (size_t i = p->nanchors; i-- > 0;) /* the latest definition wins */
        if (strcmp(p->anchors[i].name, name) == 0)
            return p->anchors[i].node;
    return NULL;
}

/* Turn libyaml's error into one diagnostic. Reader errors (bad UTF-8) carry
 * only a byte offset, which we map to line:col over the input text. */
static void syntax_error(parser *p)
{
    const yaml_parser_t *yp = &p->yp;
    if (yp->error == YAML_MEMORY_ERROR) {
        sl_diag_add(p->diag, 0, 0, "out of memory while reading YAML");
        return;
    }
    if (yp->error == YAML_READER_ERROR) {
        int line = 1, col = 1;
        for (size_t i = 0; i < yp->problem_offset && i < p->len; i++) {
            unsigned char c = (unsigned char)p->text[i];
            if (c == '\n') {
                line++;
                col = 1;
            } else if ((c & 0xC0) != 0x80) {
                col++;
            }
        }
        sl_diag_add(p->diag, line, col, "%s", yp->problem ? yp->problem : "unreadable input");
        return;
    }
    int line = (int)yp->problem_mark.line + 1, col = (int)yp->problem_mark.column + 1;
    const char *problem = yp->problem ? yp->problem : "syntax error";
    if (yp->context)
        sl_diag_add(p->diag, line, col, "%s (%s started at %d:%d)", problem, yp->context,
                    (int)yp->context_mark.line + 1, (int)yp->context_mark.column + 1);
    else
        sl_diag_add(p->diag, line, col, "%s", problem);
}

static bool next_event(parser *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(&p->yp, ev))
        return true;
    syntax_error(p);
    return false;
}

/* ---- Interpolation ------------------------------------------------------ */

typedef struct strbuf {
    char *data;
    size_t len, cap;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap)
            b->cap = b->cap ? b->cap * 2 : 64;
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static bool is_var_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static bool is_var_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Expands one "${...}" starting at s[i] == '$', s[i+1] == '{'. Returns the
 * index just past it. */
static size_t expand_reference(parser *p, const char *s, size_t len, size_t i, strbuf *out,
                               int line, int col)
{
    size_t close = i + 2;
    while (close < len && s[close] != '}')
        close++;
    if (close >= len) {
        sl_diag_add(p->diag, line, col, "unterminated '${' in '%.*s'", (int)len, s);
        sb_add(out, s + i, len - i);
        return len;
    }
    size_t name_end = i + 2;
    if (name_end < close && is_var_start(s[name_end]))
        while (name_end < close && is_var_char(s[name_end]))
            name_end++;
    bool has_default = close >= name_end + 2 && s[name_end] == ':' && s[name_end + 1] == '-';
    if (name_end == i + 2 || (name_end != close && !has_default)) {
        sl_diag_add(p->diag, line, col, "bad variable reference '%.*s' (use ${NAME} or "
                    "${NAME:-default}; $$ for a literal $)", (int)(close + 1 - i), s + i);
        return close + 1;
    }
    char *name = xstrndup(s + i + 2, name_end - (i + 2));
    const char *value = getenv(name);
    if (has_default && (!value || !*value))
        sb_add(out, s + name_end + 2, close - (name_end + 2));
    else if (value)
        sb_add(out, value, strlen(value));
    else
        sl_diag_add(p->diag, line, col, "environment variable %s is not set", name);
    free(name);
    return close + 1;
}

static char *interpolate(parser *p, const char *s, size_t len, int line, int col)
{
    strbuf out = {0};
    sb_add(&out, "", 0);
    size_t i = 0;
    while (i < len) {
        const char *dollar = memchr(s + i, '$', len - i);
        if (!dollar) {
            sb_add(&out, s + i, len - i);
            break;
        }
        size_t at = (size_t)(dollar - s);
        sb_add(&out, s + i, at - i);
        if (at + 1 < len && s[at + 1] == '$') {
            sb_add(&out, "$", 1);
            i = at + 2;
        } else if (at + 1 < len && s[at + 1] == '{') {
            i = expand_reference(p, s, len, at, &out, line, col);
        } else {
            sb_add(&out, "$", 1);
            i = at + 1;
        }
    }
    return out.data;
}

/* ---- Tree building ------------------------------------------------------ */

static sl_node *parse_node(parser *p, yaml_event_t *ev, int depth);

static sl_node *parse_scalar(parser *p, yaml_event_t *ev)
{
    sl_node *n = new_node(SL_NODE_SCALAR, &ev->start_mark);
    yaml_scalar_style_t style = ev->data.scalar.style;
    n->quoted = style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    n->value = interpolate(p, (const char *)ev->data.scalar.value, ev->data.scalar.length,
                           n->line, n->col);
    register_anchor(p, ev->data.scalar.anchor, n);
    return n;
}

static sl_node *parse_alias(parser *p, yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    const sl_node *target = find_anchor(p, name);
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (!target) {
        sl_diag_add(p->diag, line, col, "unknown anchor '%s'", name);
        return NULL;
    }
    sl_node *n = copy_node(p, target);
    if (n) { /* the copy stands where the alias was written */
        n->line = line;
        n->col = col;
    }
    return n;
}

static sl_node *parse_seq(parser *p, yaml_event_t *start, int depth)
{
    sl_node *s = new_node(SL_NODE_SEQ, &start->start_mark);
    size_t cap = 0;
    for (;;) {
        yaml_event_t ev;
        if (!next_event(p, &ev))
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        sl_node *item = parse_node(p, &ev, depth + 1);
        if (!item)
            goto fail;
        append_pair(s, &cap, NULL, item);
    }
    register_anchor(p, start->data.sequence_start.anchor, s);
    return s;
fail:
    sl_node_free(s);
    return NULL;
}

/* `<<: *base` or `<<: [*a, *b]`: keys the mapping does not set itself come
 * from the merged mappings, earlier ones first. */
static bool apply_merges(parser *p, sl_node *m, size_t *cap, sl_node **merges, size_t nmerges)
{
    for (size_t i = 0; i < nmerges; i++) {
        const sl_node *src = merges[i];
        size_t nsrc = src->kind == SL_NODE_SEQ ? src->count : 1;
        for (size_t j = 0; j < nsrc; j++) {
            const sl_node *one = src->kind == SL_NODE_SEQ ? src->items[j] : src;
            if (one->kind != SL_NODE_MAP) {
                sl_diag_add(p->diag, one->line, one->col,
                            "'<<' merges mappings only (a mapping or a list of mappings)");
                continue;
            }
            for (size_t k = 0; k < one->count; k++) {
                if (sl_node_key(m, one->keys[k]->value))
                    continue;
                sl_node *key = copy_node(p, one->keys[k]);
                sl_node *value = key ? copy_node(p, one->items[k]) : NULL;
                if (!value) {
                    sl_node_free(key);
                    return false;
                }
                append_pair(m, cap, key, value);
            }
        }
    }
    return true;
}

static sl_node *parse_map(parser *p, yaml_event_t *start, int depth)
{
    sl_node *m = new_node(SL_NODE_MAP, &start->start_mark);
    size_t cap = 0, nmerges = 0;
    sl_node **merges = NULL;
    for (;;) {
        yaml_event_t ev;
        if (!next_event(p, &ev))
            goto fail;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        sl_node *k = parse_node(p, &ev, depth + 1);
        if (!k)
            goto fail;
        sl_node *v = NULL;
        if (!next_event(p, &ev) || !(v = parse_node(p, &ev, depth + 1))) {
            sl_node_free(k);
            goto fail;
        }
        if (k->kind != SL_NODE_SCALAR) {
            sl_diag_add(p->diag, k->line, k->col, "mapping keys must be plain values, "
                        "not a %s", k->kind == SL_NODE_MAP ? "mapping" : "list");
            bury(p, k);
            bury(p, v);
            continue;
        }
        if (!k->quoted && strcmp(k->value, "<<") == 0) {
            merges = xrealloc(merges, (nmerges + 1) * sizeof *merges);
            merges[nmerges++] = v;
            bury(p, k);
            bury(p, v);
            continue;
        }
        const sl_node *first = sl_node_key(m, k->value);
        if (first) {
            sl_diag_add(p->diag, k->line, k->col, "duplicate key '%s' (first at line %d)",
                        k->value, first->line);
            bury(p, k);
            bury(p, v);
            continue;
        }
        append_pair(m, &cap, k, v);
    }
    if (!apply_merges(p, m, &cap, merges, nmerges))
        goto fail;
    free(merges);
    register_anchor(p, start->data.mapping_start.anchor, m);
    return m;
fail:
    free(merges);
    sl_node_free(m);
    return NULL;
}

/* Builds the node that starts with *ev (and consumes ev). NULL on a fatal
 * problem, already reported. */
static sl_node *parse_node(parser *p, yaml_event_t *ev, int depth)
{
    sl_node *n = NULL;
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    if (depth > MAX_DEPTH) {
        sl_diag_add(p->diag, line, col, "nesting deeper than %d levels", MAX_DEPTH);
    } else if (ev->type == YAML_ALIAS_EVENT) {
        n = parse_alias(p, ev);
    } else if (count_node(p, line, col)) {
        switch (ev->type) {
        case YAML_SCALAR_EVENT:
            n = parse_scalar(p, ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            n = parse_seq(p, ev, depth);
            break;
        case YAML_MAPPING_START_EVENT:
            n = parse_map(p, ev, depth);
            break;
        default:
            sl_diag_add(p->diag, line, col, "unexpected YAML event");
            break;
        }
    }
    yaml_event_delete(ev);
    return n;
}

/* stream-start, document-start, node, document-end, stream-end. */
static sl_node *parse_stream(parser *p)
{
    yaml_event_t ev;
    sl_node *root = NULL;
    if (!next_event(p, &ev))
        return NULL;
    yaml_event_delete(&ev); /* stream start */
    if (!next_event(p, &ev))
        return NULL;
    if (ev.type != YAML_DOCUMENT_START_EVENT) {
        yaml_event_delete(&ev);
        sl_diag_add(p->diag, 0, 0, "the file is empty");
        return NULL;
    }
    yaml_event_delete(&ev);
    if (!next_event(p, &ev) || !(root = parse_node(p, &ev, 0)))
        return NULL;
    if (!next_event(p, &ev)) /* document end */
        goto fail;
    yaml_event_delete(&ev);
    if (!next_event(p, &ev))
        goto fail;
    if (ev.type != YAML_STREAM_END_EVENT) {
        sl_diag_add(p->diag, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                    "only one YAML document is allowed");
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);
    return root;
fail:
    sl_node_free(root);
    return NULL;
}

sl_node *sl_yaml_parse_string(const char *text, size_t len, sl_diag *diag)
{
    parser p;
    memset(&p, 0, sizeof p);
    p.diag = diag;
    p.text = text;
    p.len = len;
    if (!yaml_parser_initialize(&p.yp)) {
        sl_diag_add(diag, 0, 0, "out of memory while reading YAML");
        return NULL;
    }
    yaml_parser_set_input_string(&p.yp, (const unsigned char *)text, len);
    sl_node *root = parse_stream(&p);
    yaml_parser_delete(&p.yp);
    for (size_t i = 0; i < p.nanchors; i++)
        free(p.anchors[i].name);
    free(p.anchors);
    for (size_t i = 0; i < p.ngraveyard; i++)
        sl_node_free(p.graveyard[i]);
    free(p.graveyard);
    return root;
}

sl_node *sl_yaml_parse_file(const char *path, sl_diag *diag)
{
    if (!diag->file)
        diag->file = path;
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl_diag_add(diag, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    /* Read it whole: pipeline files are small, and a reader error's byte
     * offset can then be turned into line:col. */
    strbuf text = {0};
    char chunk[8192];
    size_t n;
    sb_add(&text, "", 0);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sb_add(&text, chunk, n);
    int failed = ferror(f);
    fclose(f);
    sl_node *root = NULL;
    if (failed)
        sl_diag_add(diag, 0, 0, "cannot read: %s", strerror(errno));
    else
        root = sl_yaml_parse_string(text.data, text.len, diag);
    free(text.data);
    return root;
}

/* ---- Scalar conversions ------------------------------------------------- */

bool sl_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

bool sl_parse_int(const char *s, long long *out)
{
    const char *digits = (*s == '+' || *s == '-') ? s + 1 : s;
    if (!isdigit((unsigned char)*digits))
        return false; /* also rejects "", leading spaces, "0x" prefixes' sign forms */
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return false;
    *out = v;
    return true;
}

bool sl_parse_double(const char *s, double *out)
{
    if (*s == '\0' || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* Reads a run of digits as a non-negative number; false on overflow or
 * when there is no digit. */
static bool read_digits(const char **s, long long *out)
{
    long long v = 0;
    const char *p = *s;
    if (!isdigit((unsigned char)*p))
        return false;
    for (; isdigit((unsigned char)*p); p++)
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
            return false;
    *s = p;
    *out = v;
    return true;
}

bool sl_parse_duration(const char *s, long long *ms)
{
    static const struct {
        const char *unit;
        long long ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    long long total = 0, n;
    const char *p = s;
    if (!read_digits(&p, &n))
        return false;
    if (*p == '\0') { /* a bare number: milliseconds */
        *ms = n;
        return true;
    }
    for (;;) {
        size_t u = 0, best = SIZE_MAX;
        for (; u < sizeof units / sizeof units[0]; u++) {
            size_t ul = strlen(units[u].unit);
            /* "ms" before "m": take the longest unit that matches */
            if (strncmp(p, units[u].unit, ul) == 0 &&
                (best == SIZE_MAX || ul > strlen(units[best].unit)))
                best = u;
        }
        if (best == SIZE_MAX)
            return false;
        p += strlen(units[best].unit);
        long long part;
        if (__builtin_mul_overflow(n, units[best].ms, &part) ||
            __builtin_add_overflow(total, part, &total))
            return false;
        if (*p == '\0')
            break;
        if (!read_digits(&p, &n))
            return false;
    }
    *ms = total;
    return true;
}

bool sl_parse_size(const char *s, long long *bytes)
{
    static const struct {
        const char *unit;
        long long mult;
    } units[] = {{"b", 1},
                 {"kb", 1000LL}, {"kib", 1024LL},
                 {"mb", 1000LL * 1000}, {"mib", 1024LL * 1024},
                 {"gb", 1000LL * 1000 * 1000}, {"gib", 1024LL * 1024 * 1024},
                 {"tb", 1000LL * 1000 * 1000 * 1000}, {"tib", 1024LL * 1024 * 1024 * 1024}};
    const char *p = s;
    long long n;
    if (!read_digits(&p, &n))
        return false;
    if (*p == ' ')
        p++;
    if (*p == '\0') {
        if (p != s && p[-1] == ' ')
            return false; /* "10 " */
        *bytes = n;
        return true;
    }
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        if (strcasecmp(p, units[u].unit) == 0) {
            long long v;
            if (__builtin_mul_overflow(n, units[u].mult, &v))
                return false;
            *bytes = v;
            return true;
        }
    }
    return false;
}
