/*
 * options.c — a plugin's option table applied to a YAML mapping: defaults
 * first, then the values written in the file, every problem reported at the
 * node it concerns.
 *
 * Why here and not in the plugins: plugins never parse YAML (nginx's
 * ngx_command_t, Fluent Bit's config map). The table says each option's
 * type, default and offset into the plugin's config struct; this file is the
 * only code that turns text into those typed members, so every plugin gets
 * the same checks and the same messages.
 *
 * Design notes
 *   - Defaults are written "as in YAML", so they go through the same
 *     conversion as file values. A default that does not convert is a plugin
 *     bug and is reported as such, at the stage.
 *   - A value given in the file replaces the default; the default's memory
 *     is freed first, so filling never leaks and sl_options_free() always
 *     sees a consistent struct, even after errors.
 *   - Problems are collected, not returned at the first one: a user fixing a
 *     pipeline wants to see all its mistakes in one run.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"

typedef struct filler {
    sl_stage_cfg *stage;   /* may be NULL (no OUTPUT options then) */
    sl_diag *diag;
} filler;

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "sluice: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        fprintf(stderr, "sluice: out of memory\n");
        abort();
    }
    return d;
}

/* How a value looks in a message: 'text', a mapping, a list, nothing. */
static const char *describe(const sl_node *n, char *buf, size_t len)
{
    if (n->kind == SL_NODE_MAP)
        return "a mapping";
    if (n->kind == SL_NODE_SEQ)
        return "a list";
    if (sl_node_is_null(n))
        return "nothing";
    snprintf(buf, len, "'%s'", n->value);
    return buf;
}

static void dotted(char *buf, size_t len, const char *prefix, const char *name)
{
    if (prefix)
        snprintf(buf, len, "%s.%s", prefix, name);
    else
        snprintf(buf, len, "%s", name);
}

static const char *kind_word(sluice_kind kind)
{
    return kind == SLUICE_SOURCE ? "source" : kind == SLUICE_OPERATOR ? "operator" : "sink";
}

/* ---- Suggestions -------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void consider(const char *key, const char *candidate, const char **best, size_t *best_d)
{
    size_t d = edit_distance(key, candidate);
    size_t limit = strlen(key) <= 4 ? 1 : 2;
    if (d <= limit && d < *best_d) {
        *best = candidate;
        *best_d = d;
    }
}

static void report_unknown(filler *f, const sluice_option *opts, const char *const *ignore,
                           const sl_node *key, const char *prefix)
{
    char path[256], known[1024] = "", hint[300] = "";
    const char *best = NULL;
    size_t best_d = (size_t)-1, used = 0;
    for (size_t i = 0; opts && opts[i].name; i++) {
        consider(key->value, opts[i].name, &best, &best_d);
        int n = snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "",
                         opts[i].name);
        if (n > 0 && (size_t)n < sizeof known - used)
            used += (size_t)n;
    }
    for (size_t i = 0; ignore && ignore[i]; i++)
        consider(key->value, ignore[i], &best, &best_d);
    if (best)
        snprintf(hint, sizeof hint, "did you mean '%s'? ", best);
    dotted(path, sizeof path, prefix, key->value);
    char where[200] = "";
    if (f->stage && f->stage->type)
        snprintf(where, sizeof where, " for %s %s", f->stage->type, kind_word(f->stage->kind));
    if (used)
        sl_diag_add(f->diag, key->line, key->col, "unknown option '%s'%s (%sknown: %s)", path,
                    where, hint, known);
    else
        sl_diag_add(f->diag, key->line, key->col, "unknown option '%s'%s (%sit takes no "
                    "options of its own)", path, where, hint);
}

/* ---- Freeing ------------------------------------------------------------ */

static void free_value(const sluice_option *opt, void *field)
{
    switch (opt->type) {
    case SLUICE_OPT_STRING: {
        char **s = field;
        free(*s);
        *s = NULL;
        break;
    }
    case SLUICE_OPT_LIST: {
        sluice_list *l = field;
        for (size_t i = 0; i < l->count; i++)
            free(l->items[i]);
        free(l->items);
        memset(l, 0, sizeof *l);
        break;
    }
    case SLUICE_OPT_MAP: {
        sluice_map *m = field;
        for (size_t i = 0; i < m->count; i++) {
            free(m->keys[i]);
            free(m->values[i]);
        }
        free(m->keys);
        free(m->values);
        memset(m, 0, sizeof *m);
        break;
    }
    case SLUICE_OPT_OBJECT:
        sl_options_free(opt->fields, field);
        break;
    case SLUICE_OPT_JSON: {
        char **s = field;
        free(*s);
        *s = NULL;
        break;
    }
    case SLUICE_OPT_OBJECT_LIST: {
        sluice_objects *l = field;
        for (size_t i = 0; i < l->count; i++) {
            sl_options_free(opt->fields, l->items[i]);
            free(l->items[i]);
        }
        free(l->items);
        memset(l, 0, sizeof *l);
        break;
    }
    default:
        break;
    }
}

void sl_options_free(const sluice_option *opts, void *config)
{
    if (!config)
        return;
    for (size_t i = 0; opts && opts[i].name; i++)
        free_value(&opts[i], (char *)config + opts[i].offset);
}

/* ---- Conversions ---------------------------------------------------------- */

static int fill_table(filler *f, const sluice_option *opts, const sl_node *map, void *base,
                      const char *const *ignore, const char *prefix, const sl_node *pos,
                      bool check_required);

static bool type_error(filler *f, const sl_node *n, const char *path, const char *expects)
{
    char buf[300];
    sl_diag_add(f->diag, n->line, n->col, "option '%s' expects %s, got %s", path, expects,
                describe(n, buf, sizeof buf));
    return false;
}

static bool valid_stream_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
              ('0' <= *s && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

static bool set_enum(filler *f, const sluice_option *opt, const sl_node *n, const char *path,
                     int *out)
{
    const char *const *c = opt->choices;
    for (int i = 0; c && c[i]; i++)
        if (strcasecmp(c[i], n->value) == 0) {
            *out = i;
            return true;
        }
    char list[512] = "";
    size_t used = 0;
    for (int i = 0; c && c[i]; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", c[i]);
        if (w > 0 && (size_t)w < sizeof list - used)
            used += (size_t)w;
    }
    char expects[600];
    snprintf(expects, sizeof expects, "one of %s", list);
    return type_error(f, n, path, expects);
}

static bool set_list(filler *f, const sl_node *n, const char *path, sluice_list *l)
{
    if (n->kind == SL_NODE_MAP)
        return type_error(f, n, path, "a value or a list of values");
    if (n->kind == SL_NODE_SCALAR) {
        l->items = xcalloc(1, sizeof *l->items);
        l->items[0] = xstrdup(n->value);
        l->count = 1;
        return true;
    }
    bool ok = true;
    l->items = xcalloc(n->count, sizeof *l->items);
    for (size_t i = 0; i < n->count; i++) {
        const sl_node *item = n->items[i];
        if (item->kind != SL_NODE_SCALAR) {
            ok = type_error(f, item, path, "a list of plain values");
            continue;
        }
        l->items[l->count++] = xstrdup(item->value);
    }
    return ok;
}

static bool set_map(filler *f, const sl_node *n, const char *path, sluice_map *m)
{
    if (n->kind != SL_NODE_MAP)
        return type_error(f, n, path, "a mapping of names to values");
    bool ok = true;
    m->keys = xcalloc(n->count, sizeof *m->keys);
    m->values = xcalloc(n->count, sizeof *m->values);
    for (size_t i = 0; i < n->count; i++) {
        if (n->items[i]->kind != SL_NODE_SCALAR) {
            char sub[300];
            dotted(sub, sizeof sub, path, n->keys[i]->value);
            ok = type_error(f, n->items[i], sub, "a plain value");
            continue;
        }
        m->keys[m->count] = xstrdup(n->keys[i]->value);
        m->values[m->count++] = xstrdup(n->items[i]->value);
    }
    return ok;
}

/* ---- Any value, as JSON ---------------------------------------------------- */

static void out_of_memory(void)
{
    fprintf(stderr, "sluice: out of memory\n");
    abort();
}

static void json_text(sluice_buf *b, const char *p, size_t len)
{
    if (sl_json_encode_string(p, len, b) != 0)
        out_of_memory();
}

static void json_raw(sluice_buf *b, const char *p)
{
    if (sl_buf_append(b, p, strlen(p)) != 0)
        out_of_memory();
}

/* A plain scalar typed as YAML 1.2's core schema would: null, bool, integer,
 * number, else a string. Numbers are re-printed, so JSON sees 1e3 or +5 in
 * its own syntax. */
static void scalar_json(const sl_node *n, sluice_buf *b)
{
    long long ll;
    double d;
    char num[64];
    if (n->quoted) {
        json_text(b, n->value, strlen(n->value));
    } else if (sl_node_is_null(n)) {
        json_raw(b, "null");
    } else if (strcasecmp(n->value, "true") == 0 || strcasecmp(n->value, "false") == 0) {
        json_raw(b, (n->value[0] == 't' || n->value[0] == 'T') ? "true" : "false");
    } else if (sl_parse_int(n->value, &ll)) {
        snprintf(num, sizeof num, "%lld", ll);
        json_raw(b, num);
    } else if (sl_parse_double(n->value, &d) && isfinite(d)) {
        snprintf(num, sizeof num, "%.17g", d);
        if (!strpbrk(num, ".eEn")) /* keep it a float: 2.0 must not come back as 2 */
            strcat(num, ".0");
        json_raw(b, num);
    } else {
        json_text(b, n->value, strlen(n->value));
    }
}

static void node_json(const sl_node *n, sluice_buf *b)
{
    switch (n->kind) {
    case SL_NODE_SCALAR:
        scalar_json(n, b);
        return;
    case SL_NODE_SEQ:
        json_raw(b, "[");
        for (size_t i = 0; i < n->count; i++) {
            if (i)
                json_raw(b, ",");
            node_json(n->items[i], b);
        }
        json_raw(b, "]");
        return;
    case SL_NODE_MAP:
        json_raw(b, "{");
        for (size_t i = 0; i < n->count; i++) {
            if (i)
                json_raw(b, ",");
            json_text(b, n->keys[i]->value, strlen(n->keys[i]->value));
            json_raw(b, ":");
            node_json(n->items[i], b);
        }
        json_raw(b, "}");
        return;
    }
}

static bool set_json(const sl_node *n, char **out)
{
    sluice_buf b = {0};
    node_json(n, &b);
    if (sl_buf_append(&b, "", 1) != 0)
        out_of_memory();
    *out = b.data;
    return true;
}

/* ---- Lists of objects ----------------------------------------------------- */

/* One item's size: what the plugin wrote in the terminator (the struct's
 * real size), else the end of its furthest member. */
static size_t item_size(const sluice_option *fields)
{
    size_t n = 0;
    while (fields && fields[n].name)
        n++;
    return fields && fields[n].offset ? fields[n].offset : 0;
}

static bool set_object_list(filler *f, const sluice_option *opt, const sl_node *n,
                            const char *path, sluice_objects *l)
{
    if (n->kind == SL_NODE_MAP) /* one object alone is a list of one */
        return set_object_list(f, opt, &(sl_node){.kind = SL_NODE_SEQ, .line = n->line,
                                                  .col = n->col, .count = 1,
                                                  .items = (sl_node **)&n},
                               path, l);
    if (n->kind != SL_NODE_SEQ)
        return type_error(f, n, path, "a list of mappings");
    size_t size = item_size(opt->fields);
    if (!size) {
        sl_diag_add(f->diag, n->line, n->col, "option '%s' does not say its items' size "
                    "(plugin bug: end its fields with SLUICE_OPTIONS_END_SIZED)", path);
        return false;
    }
    size_t before = f->diag->count;
    l->items = xcalloc(n->count, sizeof *l->items);
    for (size_t i = 0; i < n->count; i++) {
        const sl_node *item = n->items[i];
        char sub[300];
        snprintf(sub, sizeof sub, "%s.%zu", path, i);
        if (item->kind != SL_NODE_MAP) {
            type_error(f, item, sub, "a mapping");
            continue;
        }
        l->items[l->count] = xcalloc(1, size);
        fill_table(f, opt->fields, item, l->items[l->count++], NULL, sub, item, true);
    }
    return f->diag->count == before;
}

/* An extra named output: its name joins stage->outputs (n, a node of the
 * pipeline tree, gives its position), its index goes into the config. */
static bool set_output(filler *f, const sl_node *n, const char *path, int *out)
{
    if (n->kind != SL_NODE_SCALAR)
        return type_error(f, n, path, "a stream name");
    if (!valid_stream_name(n->value))
        return type_error(f, n, path, "a stream name (letters, digits, '_' and '-')");
    sl_stage_cfg *st = f->stage;
    if (!st) {
        *out = -1;
        return true;
    }
    size_t k = st->noutputs;
    char **names = realloc(st->outputs, (k + 1) * sizeof *names);
    const sl_node **nodes = names ? realloc(st->output_nodes, (k + 1) * sizeof *nodes) : NULL;
    if (names)
        st->outputs = names;
    if (!names || !nodes) {
        fprintf(stderr, "sluice: out of memory\n");
        abort();
    }
    st->output_nodes = nodes;
    st->outputs[k] = xstrdup(n->value);
    st->output_nodes[k] = n;
    st->noutputs = k + 1;
    *out = (int)k;
    return true;
}

/* Converts node n into the member at field, replacing (and freeing) what
 * the default put there. */
static bool apply_value(filler *f, const sluice_option *opt, const sl_node *n, void *field,
                        const char *path)
{
    long long ll;
    bool scalar = n->kind == SL_NODE_SCALAR;
    const char *text = scalar ? n->value : "";
    switch (opt->type) {
    case SLUICE_OPT_STRING:
        if (!scalar)
            return type_error(f, n, path, "a string");
        free_value(opt, field);
        *(char **)field = xstrdup(text);
        return true;
    case SLUICE_OPT_INT:
        if (!scalar || !sl_parse_int(text, &ll))
            return type_error(f, n, path, "an integer");
        *(int64_t *)field = ll;
        return true;
    case SLUICE_OPT_DOUBLE:
        if (!scalar || !sl_parse_double(text, (double *)field))
            return type_error(f, n, path, "a number");
        return true;
    case SLUICE_OPT_BOOL:
        if (!scalar || !sl_parse_bool(text, (bool *)field))
            return type_error(f, n, path, "true or false");
        return true;
    case SLUICE_OPT_DURATION:
        if (!scalar || !sl_parse_duration(text, &ll))
            return type_error(f, n, path, "a duration like 250ms, 10s, 5m, 1h or 2d");
        *(int64_t *)field = ll;
        return true;
    case SLUICE_OPT_SIZE:
        if (!scalar || !sl_parse_size(text, &ll))
            return type_error(f, n, path, "a size like 512KiB, 16MiB or 1GB");
        *(int64_t *)field = ll;
        return true;
    case SLUICE_OPT_ENUM:
        if (!scalar)
            return type_error(f, n, path, "a plain value");
        return set_enum(f, opt, n, path, (int *)field);
    case SLUICE_OPT_LIST:
        free_value(opt, field);
        return set_list(f, n, path, field);
    case SLUICE_OPT_MAP:
        free_value(opt, field);
        return set_map(f, n, path, field);
    case SLUICE_OPT_OBJECT: {
        if (n->kind != SL_NODE_MAP)
            return type_error(f, n, path, "a mapping");
        free_value(opt, field);
        size_t before = f->diag->count;
        fill_table(f, opt->fields, n, field, NULL, path, n, true);
        return f->diag->count == before;
    }
    case SLUICE_OPT_OUTPUT:
        return set_output(f, n, path, (int *)field);
    case SLUICE_OPT_JSON:
        free_value(opt, field);
        return set_json(n, (char **)field);
    case SLUICE_OPT_OBJECT_LIST:
        free_value(opt, field);
        return set_object_list(f, opt, n, path, field);
    }
    sl_diag_add(f->diag, n->line, n->col, "option '%s' has an unknown type %d (plugin bug)",
                path, (int)opt->type);
    return false;
}

/* Applies opt's default, if any; an OBJECT's own fields get their defaults
 * even when the object has none. An OUTPUT starts at -1 and ignores any
 * default: an extra output exists only when the user names it (and a
 * default's name would linger in stage->outputs once the user gives
 * another). A default that does not convert is the plugin's bug, reported
 * at pos. */
static void apply_default(filler *f, const sluice_option *opt, void *field, const char *path,
                          const sl_node *pos)
{
    if (opt->type == SLUICE_OPT_OUTPUT) {
        *(int *)field = -1;
        return;
    }
    if (!opt->default_value) {
        if (opt->type == SLUICE_OPT_OBJECT)
            fill_table(f, opt->fields, NULL, field, NULL, path, pos, false);
        return;
    }
    sl_diag scratch = {.file = ""}; /* its messages are quoted in ours, minus the position */
    filler quiet = {.stage = f->stage, .diag = &scratch};
    sl_node *tree = NULL;
    sl_node text = {.kind = SL_NODE_SCALAR, .line = pos->line, .col = pos->col,
                    .value = (char *)opt->default_value};
    const sl_node *n = &text;
    if (opt->type == SLUICE_OPT_LIST || opt->type == SLUICE_OPT_MAP ||
        opt->type == SLUICE_OPT_OBJECT || opt->type == SLUICE_OPT_JSON ||
        opt->type == SLUICE_OPT_OBJECT_LIST) {
        tree = sl_yaml_parse_string(opt->default_value, strlen(opt->default_value), &scratch);
        n = tree;
    }
    if (n && scratch.count == 0)
        apply_value(&quiet, opt, n, field, path);
    if (scratch.count)
        sl_diag_add(f->diag, pos->line, pos->col,
                    "plugin bug: the default '%s' of option '%s' is not valid (%s)",
                    opt->default_value, path, strstr(scratch.messages[0], ": ") + 2);
    sl_node_free(tree);
    sl_diag_free(&scratch);
}

static bool ignored(const char *const *ignore, const char *key)
{
    for (size_t i = 0; ignore && ignore[i]; i++)
        if (strcmp(ignore[i], key) == 0)
            return true;
    return false;
}

/* One level of options: defaults, then the map's values, then the check
 * for required options. pos is where "missing" is reported. */
static int fill_table(filler *f, const sluice_option *opts, const sl_node *map, void *base,
                      const char *const *ignore, const char *prefix, const sl_node *pos,
                      bool check_required)
{
    size_t before = f->diag->count, nopts = 0;
    char path[256];
    while (opts && opts[nopts].name)
        nopts++;
    bool *given = xcalloc(nopts, sizeof *given);

    for (size_t i = 0; i < nopts; i++) {
        dotted(path, sizeof path, prefix, opts[i].name);
        apply_default(f, &opts[i], (char *)base + opts[i].offset, path, pos);
    }
    for (size_t k = 0; map && map->kind == SL_NODE_MAP && k < map->count; k++) {
        const sl_node *key = map->keys[k], *value = map->items[k];
        if (ignored(ignore, key->value))
            continue;
        size_t i = 0;
        while (i < nopts && strcmp(opts[i].name, key->value) != 0)
            i++;
        if (i == nopts) {
            report_unknown(f, opts, ignore, key, prefix);
            continue;
        }
        given[i] = true;
        dotted(path, sizeof path, prefix, opts[i].name);
        if (sl_node_is_null(value))
            sl_diag_add(f->diag, value->line, value->col, "option '%s' has no value", path);
        else
            apply_value(f, &opts[i], value, (char *)base + opts[i].offset, path);
    }
    for (size_t i = 0; check_required && i < nopts; i++) {
        if ((opts[i].flags & SLUICE_OPT_REQUIRED) && !given[i]) {
            dotted(path, sizeof path, prefix, opts[i].name);
            sl_diag_add(f->diag, pos->line, pos->col, "missing required option '%s'", path);
        }
    }
    free(given);
    return f->diag->count == before ? 0 : -1;
}

int sl_options_fill(const sluice_option *opts, const sl_node *map, void *config,
                    const char *const *ignore_keys, sl_stage_cfg *stage, sl_diag *diag)
{
    filler f = {.stage = stage, .diag = diag};
    const sl_node *pos = map ? map : stage ? stage->node : NULL;
    sl_node nowhere = {.kind = SL_NODE_MAP};
    if (!pos)
        pos = &nowhere;
    if (map && map->kind != SL_NODE_MAP && !sl_node_is_null(map)) {
        char buf[300];
        sl_diag_add(diag, map->line, map->col, "expected a mapping of options, got %s",
                    describe(map, buf, sizeof buf));
        map = NULL;
    }
    return fill_table(&f, opts, map, config, ignore_keys, NULL, pos, true);
}
