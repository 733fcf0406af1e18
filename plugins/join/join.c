/*
 * join.c — the `join` operator: enrich records from a static table (a CSV
 * or JSON-lines file), reloaded when the file changes.
 *
 *     operators:
 *       enriched:
 *         type: join
 *         input: events
 *         table: /etc/sluice/users.csv   # .csv, or .json/.jsonl/.ndjson; else `format:`
 *         on: [user_id]                  # fields of the record AND columns of the table
 *         how: left                      # left (default): unmatched pass unchanged
 *                                        # inner: unmatched are dropped (counted in a log line)
 *         fields: [name, plan]           # default: every non-key column
 *         prefix: "user_"                # added fields are named prefix + column
 *         reload: 10s                    # check the file's mtime this often; 0: never
 *
 * A matched record gets the row's fields (or the listed `fields`; one the
 * row does not have is not added) under prefix + name, REPLACING a record
 * field of that name if there is one (choose a prefix to keep both). Keys
 * compare by their text (table.c), so CSV "1" matches JSON 1; a record with
 * a missing or null key field matches nothing. Duplicate keys in the table:
 * the last row wins, and the load logs how many there were.
 *
 * The table is loaded in start(): a missing or unreadable file, or one with
 * a bad line, fails the start with a message naming the path. Every
 * `reload` (on the stage's thread, via on_tick) the file is stat()ed; when
 * its inode, size or mtime changed it is loaded again into a new table,
 * which replaces the old one only if the load succeeded — a bad reload logs
 * an error and the old table keeps serving, until the file changes again.
 * Table values are copied into each output batch's arena, so a table can
 * be freed while batches enriched from it are still downstream.
 */
#include "sluice/plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "table.h"

enum { FORMAT_AUTO, FORMAT_JSON, FORMAT_CSV };
enum { HOW_INNER, HOW_LEFT };

static const char *const format_choices[] = {"auto", "json", "csv", NULL};
static const char *const how_choices[] = {"inner", "left", NULL};

#define DROP_LOG_MS 10000 /* at most one "dropped N unmatched" line this often */

typedef struct join_config {
    char *table;
    int format;
    sluice_list on;
    int how;
    sluice_list fields;
    char *prefix;
    int64_t reload;
} join_config;

static const sluice_option join_options[] = {
    {.name = "table",
     .type = SLUICE_OPT_STRING,
     .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(join_config, table),
     .help = "path of the table file: CSV with a header row, or JSON lines; loaded at "
             "start (a missing file fails the start)"},
    {.name = "format",
     .type = SLUICE_OPT_ENUM,
     .default_value = "auto",
     .offset = offsetof(join_config, format),
     .help = "the table's format; auto: by extension (.csv; .json, .jsonl, .ndjson)",
     .choices = format_choices},
    {.name = "on",
     .type = SLUICE_OPT_LIST,
     .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(join_config, on),
     .help = "key fields, named the same in the records and the table; compared by text "
             "(1 matches \"1\"); a missing or null key matches nothing"},
    {.name = "how",
     .type = SLUICE_OPT_ENUM,
     .default_value = "left",
     .offset = offsetof(join_config, how),
     .help = "left: records without a match pass unchanged; inner: they are dropped "
             "(counted in a log line)",
     .choices = how_choices},
    {.name = "fields",
     .type = SLUICE_OPT_LIST,
     .offset = offsetof(join_config, fields),
     .help = "table columns to add (default: every non-key column); they replace record "
             "fields of the same name"},
    {.name = "prefix",
     .type = SLUICE_OPT_STRING,
     .default_value = "",
     .offset = offsetof(join_config, prefix),
     .help = "put before the names of added fields, e.g. `user_`"},
    {.name = "reload",
     .type = SLUICE_OPT_DURATION,
     .default_value = "10s",
     .offset = offsetof(join_config, reload),
     .help = "how often to check the table file's mtime and reload it when it changed "
             "(a bad reload keeps the old table); 0: never"},
    {.name = NULL},
};

/* A table column and the record field it becomes (prefix + column). */
typedef struct renamed {
    sluice_name from, to;
} renamed;

typedef struct join_op {
    const sluice_host *host;
    sluice_ctx *ctx;
    char *path;
    const char *format;
    const char *prefix;
    bool inner;
    int64_t reload_ms;

    size_t non;
    sluice_name *on;
    size_t nfields; /* 0: every non-key column */
    renamed *fields;
    renamed *names; /* the default mode's column -> field names, learnt as met */
    size_t nnames, cap_names;

    join_table *table;
    join_file_id seen; /* the file as last looked at, loaded or not */
    int64_t next_check_ms;

    join_key key;
    uint64_t unmatched, unmatched_logged;
    int64_t next_drop_log_ms;
} join_op;

/* ---- setup ------------------------------------------------------------------- */

static const char *format_from_extension(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/'))
        return NULL;
    if (strcasecmp(dot, ".csv") == 0)
        return "csv";
    if (strcasecmp(dot, ".json") == 0 || strcasecmp(dot, ".jsonl") == 0 ||
        strcasecmp(dot, ".ndjson") == 0)
        return "json";
    return NULL;
}

static sluice_name intern_prefixed(join_op *j, const char *name, size_t len)
{
    size_t plen = strlen(j->prefix);
    if (!plen)
        return j->host->intern(name, len);
    char *full = malloc(plen + len + 1);
    if (!full)
        return 0;
    memcpy(full, j->prefix, plen);
    memcpy(full + plen, name, len);
    sluice_name n = j->host->intern(full, plen + len);
    free(full);
    return n;
}

static void join_destroy(void *self)
{
    join_op *j = self;
    if (!j)
        return;
    join_table_free(j->table);
    join_key_free(&j->key);
    free(j->path);
    free(j->on);
    free(j->fields);
    free(j->names);
    free(j);
}

static bool check_options(const sluice_host *host, sluice_ctx *ctx, const join_config *cfg)
{
    bool ok = true;
    if (!cfg->table || !cfg->table[0]) {
        host->config_error(ctx, "table", "the table's path cannot be empty");
        ok = false;
    } else if (cfg->format == FORMAT_AUTO && !format_from_extension(cfg->table)) {
        host->config_error(ctx, "table",
                           "cannot tell the format of '%s' from its extension (.csv, .json, "
                           ".jsonl, .ndjson): set `format: csv` or `format: json`",
                           cfg->table);
        ok = false;
    }
    if (cfg->on.count == 0) {
        host->config_error(ctx, "on", "join needs at least one key field");
        ok = false;
    }
    for (size_t i = 0; i < cfg->on.count; i++)
        if (!cfg->on.items[i][0]) {
            host->config_error(ctx, "on", "a key field name cannot be empty");
            ok = false;
        }
    for (size_t i = 0; i < cfg->fields.count; i++)
        if (!cfg->fields.items[i][0]) {
            host->config_error(ctx, "fields", "a field name cannot be empty");
            ok = false;
        }
    if (cfg->reload < 0) {
        host->config_error(ctx, "reload", "cannot be negative (0 turns reloading off)");
        ok = false;
    }
    return ok;
}

static int join_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                       void **self, char *err, size_t errlen)
{
    const join_config *cfg = config;
    if (!check_options(host, ctx, cfg)) {
        snprintf(err, errlen, "join: invalid options");
        return SLUICE_ERROR;
    }
    join_op *j = calloc(1, sizeof *j);
    if (!j)
        goto oom;
    j->host = host;
    j->ctx = ctx;
    j->path = strdup(cfg->table);
    j->format = cfg->format == FORMAT_CSV    ? "csv"
                : cfg->format == FORMAT_JSON ? "json"
                                             : format_from_extension(cfg->table);
    j->prefix = cfg->prefix ? cfg->prefix : "";
    j->inner = cfg->how == HOW_INNER;
    j->reload_ms = cfg->reload;
    j->non = cfg->on.count;
    j->nfields = cfg->fields.count;
    j->on = calloc(j->non, sizeof *j->on);
    j->fields = calloc(j->nfields + 1, sizeof *j->fields);
    if (!j->path || !j->on || !j->fields)
        goto oom;
    for (size_t i = 0; i < j->non; i++)
        j->on[i] = host->intern(cfg->on.items[i], strlen(cfg->on.items[i]));
    for (size_t i = 0; i < j->nfields; i++) {
        const char *f = cfg->fields.items[i];
        j->fields[i].from = host->intern(f, strlen(f));
        if (!(j->fields[i].to = intern_prefixed(j, f, strlen(f))))
            goto oom;
    }
    *self = j;
    return SLUICE_OK;
oom:
    join_destroy(j);
    snprintf(err, errlen, "join: out of memory");
    return SLUICE_ERROR;
}

/* ---- the table ----------------------------------------------------------------- */

static join_table *load(join_op *j, char *err, size_t errlen)
{
    join_table_spec spec = {
        .host = j->host,
        .ctx = j->ctx,
        .path = j->path,
        .format = j->format,
        .non = j->non,
        .on = j->on,
    };
    return join_table_load(&spec, err, errlen);
}

/* Log what a (re)load found and publish the size. */
static void describe(join_op *j, const char *verb)
{
    const join_table *t = j->table;
    j->host->log(j->ctx, SLUICE_LOG_INFO, "%s table '%s': %zu keys", verb, j->path,
                 join_table_rows(t));
    if (join_table_duplicates(t))
        j->host->log(j->ctx, SLUICE_LOG_WARN,
                     "table '%s': %zu row(s) repeat an earlier row's key (the last one wins)",
                     j->path, join_table_duplicates(t));
    if (join_table_keyless(t))
        j->host->log(j->ctx, SLUICE_LOG_WARN,
                     "table '%s': %zu row(s) with a missing or null key field skipped",
                     j->path, join_table_keyless(t));
    for (size_t i = 0; i < j->nfields; i++)
        if (!join_table_has_column(t, j->fields[i].from))
            j->host->log(j->ctx, SLUICE_LOG_WARN, "table '%s' has no column '%s' (fields)",
                         j->path, j->host->name_of(j->fields[i].from));
    j->host->state_size(j->ctx, join_table_rows(t), join_table_bytes(t));
}

static int join_start(void *self, char *err, size_t errlen)
{
    join_op *j = self;
    char msg[1024];
    j->table = load(j, msg, sizeof msg);
    if (!j->table) {
        snprintf(err, errlen, "join: %s", msg);
        return SLUICE_ERROR;
    }
    j->seen = join_table_file(j->table);
    describe(j, "loaded");
    return SLUICE_OK;
}

/* The file changed since it was last looked at: load it again; keep the
 * old table when that fails. */
static void reload(join_op *j, const join_file_id *now)
{
    char msg[1024];
    j->seen = *now;
    if (!now->exists) {
        j->host->log(j->ctx, SLUICE_LOG_ERROR,
                     "table '%s' is gone; keeping the table loaded before (%zu keys)", j->path,
                     join_table_rows(j->table));
        return;
    }
    join_table *t = load(j, msg, sizeof msg);
    if (!t) {
        j->host->log(j->ctx, SLUICE_LOG_ERROR,
                     "reloading failed: %s; keeping the table loaded before (%zu keys)", msg,
                     join_table_rows(j->table));
        return;
    }
    /* What was read may be newer than what stat() saw: remember that. */
    j->seen = join_table_file(t);
    join_table_free(j->table);
    j->table = t;
    describe(j, "reloaded");
}

static void log_unmatched(join_op *j)
{
    uint64_t n = j->unmatched - j->unmatched_logged;
    if (!n)
        return;
    j->host->log(j->ctx, SLUICE_LOG_INFO,
                 "dropped %llu record%s without a match in '%s' (how: inner; %llu in all)",
                 (unsigned long long)n, n == 1 ? "" : "s", j->path,
                 (unsigned long long)j->unmatched);
    j->unmatched_logged = j->unmatched;
}

static int join_on_tick(void *self, int64_t now_ms, char *err, size_t errlen)
{
    join_op *j = self;
    if (j->inner && now_ms >= j->next_drop_log_ms && j->unmatched != j->unmatched_logged) {
        log_unmatched(j);
        j->next_drop_log_ms = now_ms + DROP_LOG_MS;
    }
    if (j->reload_ms <= 0 || !j->table)
        return SLUICE_OK;
    if (!j->next_check_ms)
        j->next_check_ms = now_ms + j->reload_ms;
    if (now_ms < j->next_check_ms)
        return SLUICE_OK;
    j->next_check_ms = now_ms + j->reload_ms;
    join_file_id now = join_file_stat(j->path);
    if (!join_file_same(&now, &j->seen))
        reload(j, &now);
    return SLUICE_OK;
}

/* ---- records -------------------------------------------------------------------- */

/* The record field a table column becomes, in the default (all columns)
 * mode; learnt the first time the column is met. 0 on out of memory. */
static sluice_name renamed_to(join_op *j, sluice_name column)
{
    for (size_t i = 0; i < j->nnames; i++)
        if (j->names[i].from == column)
            return j->names[i].to;
    if (j->nnames == j->cap_names) {
        size_t cap = j->cap_names ? j->cap_names * 2 : 16;
        renamed *q = realloc(j->names, cap * sizeof *q);
        if (!q)
            return 0;
        j->names = q;
        j->cap_names = cap;
    }
    const char *s = j->host->name_of(column);
    sluice_name to = intern_prefixed(j, s, strlen(s));
    if (to)
        j->names[j->nnames++] = (renamed){column, to};
    return to;
}

static bool is_key(const join_op *j, sluice_name name)
{
    for (size_t i = 0; i < j->non; i++)
        if (j->on[i] == name)
            return true;
    return false;
}

/* Set one table value on r, its bytes copied into out's arena. */
static bool add_value(join_op *j, sluice_batch *out, sluice_record *r, sluice_name to,
                      sluice_value v)
{
    if (v.type == SLUICE_STRING || v.type == SLUICE_JSON) {
        v.u.s = j->host->str(out, v.u.s.ptr, v.u.s.len);
        if (!v.u.s.ptr && v.u.s.len)
            return false;
    }
    return j->host->set(out, r, to, v) == SLUICE_OK;
}

static bool enrich(join_op *j, sluice_batch *out, sluice_record *r, const sluice_record *row)
{
    if (j->nfields) {
        for (size_t i = 0; i < j->nfields; i++) {
            const sluice_value *v = sluice_get(row, j->fields[i].from);
            if (v && !add_value(j, out, r, j->fields[i].to, *v))
                return false;
        }
        return true;
    }
    for (uint32_t i = 0; i < row->nfields; i++) {
        const sluice_field *f = &row->fields[i];
        if (is_key(j, f->name))
            continue;
        sluice_name to = renamed_to(j, f->name);
        if (!to || !add_value(j, out, r, to, f->value))
            return false;
    }
    return true;
}

/* Append rec (enriched when it matches) to out, or drop it (inner). */
static int join_record(join_op *j, const sluice_batch *in, const sluice_record *rec,
                       sluice_batch *out)
{
    const sluice_record *row = NULL;
    int rc = join_key_build(&j->key, rec, j->on, j->non);
    if (rc == JOIN_KEY_OOM)
        return SLUICE_ERROR;
    if (rc == JOIN_KEY_OK)
        row = join_table_find(j->table, &j->key);
    if (!row && j->inner) {
        j->unmatched++;
        return SLUICE_OK;
    }
    sluice_record *r = j->host->record_copy(out, in, rec);
    if (!r || (row && !enrich(j, out, r, row)))
        return SLUICE_ERROR;
    return SLUICE_OK;
}

static int join_process(void *self, const sluice_batch *in, unsigned input, char *err,
                        size_t errlen)
{
    join_op *j = self;
    const sluice_host *h = j->host;
    sluice_batch *out = NULL;
    for (uint32_t i = 0; i < in->count; i++) {
        /* Room first: the copied values must land in the record's batch. */
        if (out && out->count == out->capacity) {
            sluice_batch *full = out;
            out = NULL;
            if (h->emit(j->ctx, full) != SLUICE_OK) {
                snprintf(err, errlen, "join: emitting a batch failed");
                return SLUICE_ERROR;
            }
        }
        if (!out && !(out = h->batch_new(j->ctx)))
            goto oom;
        if (join_record(j, in, &in->records[i], out) != SLUICE_OK)
            goto oom;
    }
    if (!out)
        return SLUICE_OK;
    if (out->count == 0) {
        h->batch_free(out);
        return SLUICE_OK;
    }
    if (h->emit(j->ctx, out) != SLUICE_OK) {
        snprintf(err, errlen, "join: emitting a batch failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
oom:
    if (out)
        h->batch_free(out);
    snprintf(err, errlen, "join: out of memory");
    return SLUICE_ERROR;
}

static int join_flush(void *self, char *err, size_t errlen)
{
    join_op *j = self;
    if (j->inner)
        log_unmatched(j);
    return SLUICE_OK;
}

const sluice_plugin_def sl_plugin_join_operator = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "join",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "enrich records from a CSV or JSON-lines table on key fields "
                   "(inner/left), reloaded when the file changes",
    .config_size = sizeof(join_config),
    .options = join_options,
    .create = join_create,
    .start = join_start,
    .destroy = join_destroy,
    .process = join_process,
    .flush = join_flush,
    .on_tick = join_on_tick,
};
