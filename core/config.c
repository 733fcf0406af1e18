/*
 * config.c — the pipeline file turned into a checked list of stages.
 *
 * Two passes, because the plugin path is itself in the file: pass 1
 * (sl_config_read) parses the YAML, applies --set overrides and reads the
 * top level: pipeline name, checkpoint, metrics, plugin_path and the stage
 * names and types. The caller then sets up the plugin loader. Pass 2
 * (sl_config_check) resolves each stage's plugin, reads the keys the core
 * owns (input, errors, on_error; for sources batch_size, event_time,
 * watermark) and fills the plugin's config struct from its option table.
 *
 * Every problem is collected in the sl_diag with its line:col, so a user
 * sees all mistakes in one run. Pass 1 returns NULL only when there is no
 * usable tree (unreadable file, YAML syntax error, not a mapping); lesser
 * problems found in pass 1 stay in diag and make pass 2 return -1, so a
 * caller that goes read → set up loader → check reports everything at once.
 *
 * What is not checked here: whether `input` names exist, cycles, unused
 * stages — the graph builder (graph.c) does that, with input_nodes and
 * output_nodes for positions. What is checked here about names: stage
 * names are unique across sources, operators and sinks, and an extra
 * output's name (errors:, or an OUTPUT option like `late:`) collides with
 * neither a stage nor another output, since they share one namespace.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include "config.h"

#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BATCH_SIZE 1048576
#define DEFAULT_CHECKPOINT_DIR "./.sluice/checkpoints"
#define DEFAULT_CHECKPOINT_RETAIN 3
#define DEFAULT_MEMORY_LIMIT (256LL * 1024 * 1024)
#define MIN_MEMORY_LIMIT (4LL * 1024 * 1024)
#define DEFAULT_CHECKPOINT_TIMEOUT_MS (10 * 60 * 1000) /* Flink's default too */
#define DEFAULT_METRICS_LISTEN "127.0.0.1:9464" /* absent or `listen: true` */

/* ---- Small helpers -------------------------------------------------------- */

static void out_of_memory(void)
{
    fprintf(stderr, "sluice: out of memory\n");
    abort();
}

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (!p)
        out_of_memory();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        out_of_memory();
    return p;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        out_of_memory();
    return d;
}

static const char *kind_word(sluice_kind kind)
{
    return kind == SLUICE_SOURCE ? "source" : kind == SLUICE_OPERATOR ? "operator" : "sink";
}

static bool valid_name(const char *s, const char *extra)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
              ('0' <= *s && *s <= '9') || strchr(extra, *s)))
            return false;
    return true;
}

static const char *describe(const sl_node *n)
{
    return n->kind == SL_NODE_MAP ? "a mapping" : n->kind == SL_NODE_SEQ ? "a list" : "nothing";
}

/* A scalar with a value, else a diagnostic naming what was expected. */
static const char *want_scalar(const sl_node *n, const char *what, const char *expects,
                               sl_diag *diag)
{
    if (n->kind == SL_NODE_SCALAR && !sl_node_is_null(n))
        return n->value;
    sl_diag_add(diag, n->line, n->col, "%s expects %s, got %s", what, expects, describe(n));
    return NULL;
}

/* Reports keys of map that are not in allowed[] (NULL-terminated) as
 * "unknown <what> 'key'<where> (known: ...)". */
static void check_keys(const sl_node *map, const char *const *allowed, const char *what,
                       const char *where, sl_diag *diag)
{
    char known[512] = "";
    size_t used = 0;
    for (size_t i = 0; allowed[i]; i++) {
        int n = snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", allowed[i]);
        if (n > 0 && (size_t)n < sizeof known - used)
            used += (size_t)n;
    }
    for (size_t k = 0; k < map->count; k++) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], map->keys[k]->value) != 0)
            i++;
        if (!allowed[i])
            sl_diag_add(diag, map->keys[k]->line, map->keys[k]->col,
                        "unknown %s '%s'%s (known: %s)", what, map->keys[k]->value, where, known);
    }
}

/* ---- --set overrides -------------------------------------------------------- */

/* Nodes made by --set stand at line -1, which sl_diag_add prints as "--set". */
static sl_node *cli_node(sl_node_kind kind, const char *value)
{
    sl_node *n = xcalloc(1, sizeof *n);
    n->kind = kind;
    n->line = -1;
    n->value = value ? xstrdup(value) : NULL;
    return n;
}

static void map_append(sl_node *map, sl_node *key, sl_node *value)
{
    map->keys = xrealloc(map->keys, (map->count + 1) * sizeof *map->keys);
    map->items = xrealloc(map->items, (map->count + 1) * sizeof *map->items);
    map->keys[map->count] = key;
    map->items[map->count++] = value;
}

static sl_node **map_slot(sl_node *map, const char *key)
{
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->keys[i]->value, key) == 0)
            return &map->items[i];
    return NULL;
}

/* The key at the start of rest: keys may hold dots themselves (Kafka's
 * `sasl.password` under `properties`), so the longest run of segments
 * that is already a key of map wins; else the first segment. Returns its
 * length. */
static size_t key_length(const sl_node *map, const char *rest)
{
    size_t first = strcspn(rest, "."), best = 0;
    for (size_t n = first;; n += 1 + strcspn(rest + n + 1, ".")) {
        for (size_t i = 0; map && map->kind == SL_NODE_MAP && i < map->count; i++)
            if (strlen(map->keys[i]->value) == n && strncmp(map->keys[i]->value, rest, n) == 0)
                best = n;
        if (!rest[n])
            break;
    }
    return best ? best : first;
}

/* Walks path ("sources.logs.path") from root, creating mappings as needed,
 * and sets the last key to value as a plain scalar. */
static void apply_override(sl_node *root, const sl_override *o, sl_diag *diag)
{
    char *path = xstrdup(o->path ? o->path : "");
    sl_node *map = root;
    if (!*path || path[0] == '.' || path[strlen(path) - 1] == '.' || strstr(path, "..")) {
        sl_diag_add(diag, -1, 0, "'%s' is not a key path like sources.logs.path", o->path);
        free(path);
        return;
    }
    for (char *seg = path;;) {
        size_t n = key_length(map, seg);
        bool last = seg[n] == 0;
        seg[n] = 0;
        char *next = last ? NULL : seg + n + 1;
        sl_node **slot = map_slot(map, seg);
        if (!next) {
            sl_node *value = cli_node(SL_NODE_SCALAR, o->value ? o->value : "");
            if (slot) {
                sl_node_free(*slot);
                *slot = value;
            } else {
                map_append(map, cli_node(SL_NODE_SCALAR, seg), value);
            }
            break;
        }
        if (!slot) {
            sl_node *child = cli_node(SL_NODE_MAP, NULL);
            map_append(map, cli_node(SL_NODE_SCALAR, seg), child);
            map = child;
        } else if (sl_node_is_null(*slot)) { /* `operators:` left empty */
            sl_node_free(*slot);
            *slot = cli_node(SL_NODE_MAP, NULL);
            map = *slot;
        } else if ((*slot)->kind == SL_NODE_MAP) {
            map = *slot;
        } else {
            sl_diag_add(diag, -1, 0, "cannot set '%s': '%s' is %s, not a mapping", o->path,
                        seg, (*slot)->kind == SL_NODE_SEQ ? "a list" : "a plain value");
            break;
        }
        seg = next;
    }
    free(path);
}

/* ---- Pass 1: the top level -------------------------------------------------- */

static char *default_pipeline_name(const char *file)
{
    const char *base = strrchr(file, '/');
    char *name = xstrdup(base ? base + 1 : file);
    char *dot = strrchr(name, '.');
    if (dot && (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0))
        *dot = '\0';
    for (char *p = name; *p; p++) /* it ends up in metric labels and paths */
        if (!valid_name((char[]){*p, 0}, "._-"))
            *p = '_';
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        free(name);
        name = xstrdup("pipeline");
    }
    return name;
}

static void read_pipeline_name(sl_pipeline_cfg *cfg, sl_diag *diag)
{
    const sl_node *n = sl_node_get(cfg->root, "pipeline");
    const char *name = n ? want_scalar(n, "pipeline", "a name", diag) : NULL;
    if (name && (!valid_name(name, "._-") || strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
        sl_diag_add(diag, n->line, n->col, "pipeline name '%s' may only contain letters, "
                    "digits, '.', '_' and '-'", name);
    cfg->name = name ? xstrdup(name) : default_pipeline_name(cfg->file);
}

static void read_checkpoint(sl_pipeline_cfg *cfg, sl_diag *diag)
{
    static const char *const keys[] = {"dir", "interval", "retain", "timeout", NULL};
    const sl_node *ck = sl_node_get(cfg->root, "checkpoint"), *n;
    cfg->checkpoint_retain = DEFAULT_CHECKPOINT_RETAIN;
    cfg->checkpoint_interval_ms = 0;
    cfg->checkpoint_timeout_ms = DEFAULT_CHECKPOINT_TIMEOUT_MS;
    cfg->checkpoints = ck != NULL;
    if (ck && !sl_node_is_null(ck) && ck->kind != SL_NODE_MAP) {
        sl_diag_add(diag, ck->line, ck->col, "checkpoint expects a mapping (dir, interval, "
                    "retain), got %s", ck->kind == SL_NODE_SEQ ? "a list" : "a plain value");
        ck = NULL;
    }
    if (ck && ck->kind == SL_NODE_MAP)
        check_keys(ck, keys, "key", " in checkpoint", diag);
    const char *dir = NULL;
    if ((n = sl_node_get(ck, "dir")))
        dir = want_scalar(n, "checkpoint.dir", "a folder", diag);
    cfg->checkpoint_dir = xstrdup(dir ? dir : DEFAULT_CHECKPOINT_DIR);
    long long v;
    if ((n = sl_node_get(ck, "interval"))) {
        if (n->kind == SL_NODE_SCALAR && sl_parse_duration(n->value, &v))
            cfg->checkpoint_interval_ms = v;
        else
            sl_diag_add(diag, n->line, n->col, "checkpoint.interval expects a duration like "
                        "10s or 1m, got '%s'", n->kind == SL_NODE_SCALAR ? n->value : "?");
    }
    if ((n = sl_node_get(ck, "timeout"))) {
        if (n->kind == SL_NODE_SCALAR && sl_parse_duration(n->value, &v))
            cfg->checkpoint_timeout_ms = v;
        else
            sl_diag_add(diag, n->line, n->col, "checkpoint.timeout expects a duration like "
                        "10m (0: none), got '%s'", n->kind == SL_NODE_SCALAR ? n->value : "?");
    }
    if ((n = sl_node_get(ck, "retain"))) {
        if (n->kind == SL_NODE_SCALAR && sl_parse_int(n->value, &v) && v >= 1 && v <= 1000000)
            cfg->checkpoint_retain = (int)v;
        else
            sl_diag_add(diag, n->line, n->col, "checkpoint.retain expects a whole number "
                        "from 1, got '%s'", n->kind == SL_NODE_SCALAR ? n->value : "?");
    }
}

/* shutdown_file and events_log: plain paths, relative to the working
 * directory like every other path a stage names. */
static void read_paths(sl_pipeline_cfg *cfg, sl_diag *diag)
{
    const sl_node *n;
    const char *v;
    if ((n = sl_node_get(cfg->root, "shutdown_file")) &&
        (v = want_scalar(n, "shutdown_file", "a file path", diag)))
        cfg->shutdown_file = xstrdup(v);
    if ((n = sl_node_get(cfg->root, "events_log")) &&
        (v = want_scalar(n, "events_log", "a file path", diag)))
        cfg->events_log = xstrdup(v);
}

/* memory_limit: a size; 0 turns the limit off. */
static void read_memory_limit(sl_pipeline_cfg *cfg, sl_diag *diag)
{
    const sl_node *n = sl_node_get(cfg->root, "memory_limit");
    long long v;
    cfg->memory_limit = DEFAULT_MEMORY_LIMIT;
    if (!n)
        return;
    if (n->kind == SL_NODE_SCALAR && sl_parse_size(n->value, &v) &&
        (v == 0 || v >= MIN_MEMORY_LIMIT))
        cfg->memory_limit = v;
    else
        sl_diag_add(diag, n->line, n->col, "memory_limit expects a size of at least 4MiB "
                    "like 256MiB or 1GiB (0: no limit), got '%s'",
                    n->kind == SL_NODE_SCALAR ? n->value : "?");
}

/* metrics.listen: host:port, or a bool (true = the default address). */
static void read_metrics_listen(sl_pipeline_cfg *cfg, const sl_node *m, sl_diag *diag)
{
    const sl_node *n = sl_node_get(m, "listen");
    bool on;
    if (!n)
        return;
    cfg->metrics_default = false;
    free(cfg->metrics_listen);
    cfg->metrics_listen = NULL;
    if (n->kind == SL_NODE_SCALAR && !n->quoted && sl_parse_bool(n->value, &on))
        cfg->metrics_listen = on ? xstrdup(DEFAULT_METRICS_LISTEN) : NULL;
    else if (want_scalar(n, "metrics.listen", "host:port or false", diag))
        cfg->metrics_listen = xstrdup(n->value);
}

/* A non-empty scalar; messages never quote the value (it may be a secret). */
static const char *want_secret(const sl_node *n, const char *what, const char *expects,
                               sl_diag *diag)
{
    const char *v = want_scalar(n, what, expects, diag);
    if (v && !*v) {
        sl_diag_add(diag, n->line, n->col, "%s is empty", what);
        return NULL;
    }
    return v;
}

/* The first line of a password file, without its line ending (as
 * Kubernetes secrets and `echo pw > file` both write it). NULL with a
 * message at the option when the file cannot be read or the line is empty. */
static char *read_password_file(const sl_node *at, const char *path, sl_diag *diag)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        sl_diag_add(diag, at->line, at->col, "metrics.password_file '%s': %s", path,
                    strerror(errno));
        return NULL;
    }
    /* Bounded: a path like /dev/zero must not grow the config reader. */
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    int saved = errno;
    bool failed = ferror(f);
    fclose(f);
    size_t len = 0;
    while (len < n && buf[len] != '\n' && buf[len] != '\r')
        len++;
    const char *why = NULL;
    if (failed)
        why = strerror(saved);
    else if (len == sizeof buf)
        why = "the first line is longer than 4095 bytes";
    else if (len == 0)
        why = "the first line is empty";
    else if (memchr(buf, '\0', len))
        why = "the first line holds a NUL byte";
    char *password = why ? NULL : strndup(buf, len);
    explicit_bzero(buf, sizeof buf);
    if (!why && !password)
        why = "out of memory";
    if (why)
        sl_diag_add(diag, at->line, at->col, "metrics.password_file '%s': %s", path, why);
    return password;
}

/* metrics.username with metrics.password or metrics.password_file: basic
 * auth takes both, so one without the other is a mistake, not "no auth". */
static void read_metrics_auth(sl_pipeline_cfg *cfg, const sl_node *m, sl_diag *diag)
{
    const sl_node *user = sl_node_get(m, "username"), *pass = sl_node_get(m, "password");
    const sl_node *file = sl_node_get(m, "password_file");
    const char *v;
    if (user && (v = want_secret(user, "metrics.username", "a user name", diag))) {
        if (strchr(v, ':'))
            sl_diag_add(diag, user->line, user->col, "metrics.username may not contain ':' "
                        "(basic auth puts one between the user name and the password)");
        else
            cfg->metrics_username = xstrdup(v);
    }
    if (pass && file) {
        const sl_node *key = sl_node_key(m, "password_file");
        sl_diag_add(diag, key->line, key->col, "metrics.password and metrics.password_file "
                    "are both set: give one");
    } else if (pass && (v = want_secret(pass, "metrics.password", "a password", diag))) {
        cfg->metrics_password = xstrdup(v);
    } else if (file && (v = want_scalar(file, "metrics.password_file", "a file path", diag))) {
        cfg->metrics_password = read_password_file(file, v, diag);
    }
    if (user && !pass && !file) {
        const sl_node *key = sl_node_key(m, "username");
        sl_diag_add(diag, key->line, key->col, "metrics.username needs metrics.password or "
                    "metrics.password_file (basic auth takes both)");
    } else if (!user && (pass || file)) {
        const char *name = pass ? "password" : "password_file";
        const sl_node *key = sl_node_key(m, name);
        sl_diag_add(diag, key->line, key->col, "metrics.%s needs metrics.username (basic "
                    "auth takes both)", name);
    }
}

/* A TLS file the endpoint will read at start: that it is there and
 * readable is known now, so say so with the option's position. */
static char *want_readable_file(const sl_node *n, const char *what, sl_diag *diag)
{
    const char *path = want_scalar(n, what, "a PEM file path", diag);
    if (!path)
        return NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        sl_diag_add(diag, n->line, n->col, "%s '%s': %s", what, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    close(fd);
    if (!S_ISREG(st.st_mode)) {
        sl_diag_add(diag, n->line, n->col, "%s '%s': not a regular file", what, path);
        return NULL;
    }
    return xstrdup(path);
}

/* metrics.tls_cert and metrics.tls_key: HTTPS needs both. */
static void read_metrics_tls(sl_pipeline_cfg *cfg, const sl_node *m, sl_diag *diag)
{
    const sl_node *cert = sl_node_get(m, "tls_cert"), *key = sl_node_get(m, "tls_key");
    if (cert)
        cfg->metrics_tls_cert = want_readable_file(cert, "metrics.tls_cert", diag);
    if (key)
        cfg->metrics_tls_key = want_readable_file(key, "metrics.tls_key", diag);
    if (cert && !key) {
        const sl_node *k = sl_node_key(m, "tls_cert");
        sl_diag_add(diag, k->line, k->col, "metrics.tls_cert needs metrics.tls_key (TLS "
                    "takes both)");
    } else if (key && !cert) {
        const sl_node *k = sl_node_key(m, "tls_key");
        sl_diag_add(diag, k->line, k->col, "metrics.tls_key needs metrics.tls_cert (TLS "
                    "takes both)");
    }
}

static void read_metrics(sl_pipeline_cfg *cfg, sl_diag *diag)
{
    static const char *const keys[] = {"listen", "username", "password", "password_file",
                                       "tls_cert", "tls_key", NULL};
    const sl_node *m = sl_node_get(cfg->root, "metrics");
    /* On by default on loopback, as Prometheus exporters are. */
    cfg->metrics_listen = xstrdup(DEFAULT_METRICS_LISTEN);
    cfg->metrics_default = true;
    if (!m || sl_node_is_null(m))
        return;
    if (m->kind != SL_NODE_MAP) {
        sl_diag_add(diag, m->line, m->col, "metrics expects a mapping (listen, username, "
                    "password, password_file, tls_cert, tls_key), got %s",
                    m->kind == SL_NODE_SEQ ? "a list" : "a plain value");
        return;
    }
    check_keys(m, keys, "key", " in metrics", diag);
    read_metrics_listen(cfg, m, diag);
    read_metrics_auth(cfg, m, diag);
    read_metrics_tls(cfg, m, diag);
    /* Securing the endpoint is asking for it: if it cannot be served (even
     * on the default port), the run stops rather than going on without it. */
    for (size_t i = 1; keys[i]; i++)
        if (sl_node_key(m, keys[i]))
            cfg->metrics_default = false;
}

static void add_plugin_dir(sl_pipeline_cfg *cfg, const char *dir)
{
    char *full;
    const char *slash = strrchr(cfg->file, '/');
    if (dir[0] == '/' || !slash) {
        full = xstrdup(dir);
    } else if (asprintf(&full, "%.*s/%s", (int)(slash - cfg->file), cfg->file, dir) < 0) {
        out_of_memory();
    }
    cfg->plugin_path = xrealloc(cfg->plugin_path, (cfg->nplugin_path + 1) * sizeof(char *));
    cfg->plugin_path[cfg->nplugin_path++] = full;
}

static void read_plugin_path(sl_pipeline_cfg *cfg, sl_diag *diag)
{
    const sl_node *n = sl_node_get(cfg->root, "plugin_path");
    if (!n || sl_node_is_null(n))
        return;
    if (n->kind == SL_NODE_SCALAR) {
        add_plugin_dir(cfg, n->value);
        return;
    }
    if (n->kind == SL_NODE_MAP) {
        sl_diag_add(diag, n->line, n->col, "plugin_path expects a folder or a list of "
                    "folders, got a mapping");
        return;
    }
    for (size_t i = 0; i < n->count; i++)
        if (want_scalar(n->items[i], "plugin_path", "a folder", diag))
            add_plugin_dir(cfg, n->items[i]->value);
}

static sl_stage_cfg *find_stage(const sl_pipeline_cfg *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nstages; i++)
        if (strcmp(cfg->stages[i].name, name) == 0)
            return &cfg->stages[i];
    return NULL;
}

static const char *section_of(sluice_kind kind)
{
    return kind == SLUICE_SOURCE ? "sources" : kind == SLUICE_OPERATOR ? "operators" : "sinks";
}

/* The line of a stage's name, for "first defined at" hints. */
static int stage_line(const sl_pipeline_cfg *cfg, const sl_stage_cfg *st)
{
    const sl_node *key = sl_node_key(sl_node_get(cfg->root, section_of(st->kind)), st->name);
    return key ? key->line : st->node->line;
}

/* One section (sources/operators/sinks): each key a stage name, each value
 * a mapping with at least `type`. Returns how many stages it names. */
static size_t read_section(sl_pipeline_cfg *cfg, const char *section, sluice_kind kind,
                           sl_diag *diag)
{
    const sl_node *sec = sl_node_get(cfg->root, section);
    if (!sec || sl_node_is_null(sec))
        return 0;
    if (sec->kind != SL_NODE_MAP) {
        sl_diag_add(diag, sec->line, sec->col, "%s expects a mapping of stage names to their "
                    "settings, got %s", section, sec->kind == SL_NODE_SEQ ? "a list"
                                                                          : "a plain value");
        return 0;
    }
    for (size_t i = 0; i < sec->count; i++) {
        const sl_node *key = sec->keys[i], *body = sec->items[i];
        const char *name = key->value;
        if (!valid_name(name, "_-")) {
            sl_diag_add(diag, key->line, key->col, "stage name '%s' may only contain letters, "
                        "digits, '_' and '-'", name);
        }
        const sl_stage_cfg *first = find_stage(cfg, name);
        if (first) {
            sl_diag_add(diag, key->line, key->col, "duplicate stage name '%s' (a %s at line %d)",
                        name, kind_word(first->kind), stage_line(cfg, first));
            continue;
        }
        if (body->kind != SL_NODE_MAP) {
            sl_diag_add(diag, body->line, body->col, "stage '%s' expects a mapping with at "
                        "least `type:`, got %s", name, body->kind == SL_NODE_SEQ
                                                           ? "a list" : "a plain value");
            continue;
        }
        const sl_node *type = sl_node_get(body, "type");
        if (!type) {
            sl_diag_add(diag, key->line, key->col, "stage '%s' has no type", name);
            continue;
        }
        if (!want_scalar(type, "type", "a plugin name", diag))
            continue;
        cfg->stages = xrealloc(cfg->stages, (cfg->nstages + 1) * sizeof *cfg->stages);
        sl_stage_cfg *st = &cfg->stages[cfg->nstages++];
        memset(st, 0, sizeof *st);
        st->name = xstrdup(name);
        st->kind = kind;
        st->type = xstrdup(type->value);
        st->node = body;
        st->errors_output = -1;
        st->batch_size = SL_DEFAULT_BATCH_SIZE;
        st->event_time_format = SL_TIME_ISO8601;
    }
    return sec->count;
}

static void require_section(const sl_pipeline_cfg *cfg, const char *section, size_t count,
                            const char *what, sl_diag *diag)
{
    const sl_node *key = sl_node_key(cfg->root, section), *sec = sl_node_get(cfg->root, section);
    if (count || (sec && sec->kind != SL_NODE_MAP && !sl_node_is_null(sec)))
        return; /* a malformed section is reported already */
    if (key)
        sl_diag_add(diag, key->line, key->col, "%s is empty: a pipeline needs at least one %s",
                    section, what);
    else
        sl_diag_add(diag, 0, 0, "no %s: a pipeline needs at least one %s (a `%s:` section)",
                    section, what, section);
}

sl_pipeline_cfg *sl_config_read(const char *file, const sl_override *ovr, size_t novr,
                                sl_diag *diag)
{
    static const char *const top_keys[] = {"pipeline", "checkpoint", "metrics", "plugin_path",
                                           "shutdown_file", "events_log", "memory_limit",
                                           "sources", "operators", "sinks", NULL};
    if (!diag->file)
        diag->file = file;
    sl_node *root = sl_yaml_parse_file(file, diag);
    if (!root)
        return NULL;
    if (root->kind != SL_NODE_MAP) {
        sl_diag_add(diag, root->line, root->col, "a pipeline file is a mapping with "
                    "sources:, sinks: and optionally operators:, not %s",
                    root->kind == SL_NODE_SEQ ? "a list" : "a plain value");
        sl_node_free(root);
        return NULL;
    }
    for (size_t i = 0; i < novr; i++)
        apply_override(root, &ovr[i], diag);

    sl_pipeline_cfg *cfg = xcalloc(1, sizeof *cfg);
    cfg->file = xstrdup(file);
    cfg->root = root;
    check_keys(root, top_keys, "top-level key", "", diag);
    read_pipeline_name(cfg, diag);
    read_checkpoint(cfg, diag);
    read_paths(cfg, diag);
    read_memory_limit(cfg, diag);
    read_metrics(cfg, diag);
    read_plugin_path(cfg, diag);
    size_t nsources = read_section(cfg, "sources", SLUICE_SOURCE, diag);
    read_section(cfg, "operators", SLUICE_OPERATOR, diag);
    size_t nsinks = read_section(cfg, "sinks", SLUICE_SINK, diag);
    require_section(cfg, "sources", nsources, "source", diag);
    require_section(cfg, "sinks", nsinks, "sink", diag);
    return cfg;
}

/* ---- Pass 2: each stage ------------------------------------------------------- */

/* The keys the core reads itself, as an option table so they get the same
 * conversions and messages as plugin options. `input` and the plain-string
 * form of event_time are read by hand (they need positions / two shapes). */
typedef struct core_opts {
    int errors;
    int on_error;
    int64_t batch_size;
    struct {
        char *field;
        int format;
    } event_time;
    struct {
        int64_t max_delay;
        int64_t idle_timeout;
    } watermark;
} core_opts;

static const char *const on_error_choices[] = {"skip", "fail", NULL};
/* In sl_time_format order. */
static const char *const time_format_choices[] = {"epoch_ms", "epoch_s", "iso8601", NULL};

static const sluice_option event_time_fields[] = {
    {.name = "field", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(core_opts, event_time.field) - offsetof(core_opts, event_time)},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "iso8601",
     .offset = offsetof(core_opts, event_time.format) - offsetof(core_opts, event_time),
     .choices = time_format_choices},
    {0}};

static const sluice_option watermark_fields[] = {
    {.name = "max_delay", .type = SLUICE_OPT_DURATION, .default_value = "0",
     .offset = offsetof(core_opts, watermark.max_delay) - offsetof(core_opts, watermark)},
    {.name = "idle_timeout", .type = SLUICE_OPT_DURATION, .default_value = "0",
     .offset = offsetof(core_opts, watermark.idle_timeout) - offsetof(core_opts, watermark)},
    {0}};

#define CORE_COMMON                                                                    \
    {.name = "errors", .type = SLUICE_OPT_OUTPUT, .offset = offsetof(core_opts, errors)}, \
    {.name = "on_error", .type = SLUICE_OPT_ENUM, .default_value = "skip",              \
     .offset = offsetof(core_opts, on_error), .choices = on_error_choices}

static const sluice_option core_source_opts[] = {
    CORE_COMMON,
    {.name = "batch_size", .type = SLUICE_OPT_INT, .default_value = "4096",
     .offset = offsetof(core_opts, batch_size)},
    {.name = "event_time", .type = SLUICE_OPT_OBJECT,
     .offset = offsetof(core_opts, event_time), .fields = event_time_fields},
    {.name = "watermark", .type = SLUICE_OPT_OBJECT,
     .offset = offsetof(core_opts, watermark), .fields = watermark_fields},
    {0}};

static const sluice_option core_other_opts[] = {CORE_COMMON, {0}};

/* What the plugin's options must not claim (handled by the core). */
static const char *const source_core_keys[] = {"type", "input", "errors", "on_error",
                                               "batch_size", "event_time", "watermark", NULL};
static const char *const other_core_keys[] = {"type", "input", "errors", "on_error", NULL};

static void add_input(sl_stage_cfg *st, const sl_node *n, sl_diag *diag)
{
    if (!want_scalar(n, "input", "a stage name", diag))
        return;
    for (size_t i = 0; i < st->ninputs; i++) {
        if (strcmp(st->inputs[i], n->value) == 0) {
            sl_diag_add(diag, n->line, n->col, "input '%s' is listed twice", n->value);
            return;
        }
    }
    st->inputs = xrealloc(st->inputs, (st->ninputs + 1) * sizeof *st->inputs);
    st->input_nodes = xrealloc(st->input_nodes, (st->ninputs + 1) * sizeof *st->input_nodes);
    st->inputs[st->ninputs] = xstrdup(n->value);
    st->input_nodes[st->ninputs++] = n;
}

static void read_input(sl_stage_cfg *st, sl_diag *diag)
{
    const sl_node *key = sl_node_key(st->node, "input"), *n = sl_node_get(st->node, "input");
    if (st->kind == SLUICE_SOURCE) {
        if (key)
            sl_diag_add(diag, key->line, key->col, "a source takes no input");
        return;
    }
    if (!n) {
        sl_diag_add(diag, st->node->line, st->node->col, "missing required option 'input'");
        return;
    }
    if (n->kind == SL_NODE_SEQ) {
        if (n->count == 0)
            sl_diag_add(diag, n->line, n->col, "input is an empty list");
        for (size_t i = 0; i < n->count; i++)
            add_input(st, n->items[i], diag);
    } else if (n->kind == SL_NODE_MAP) {
        sl_diag_add(diag, n->line, n->col, "input expects a stage name or a list of names, "
                    "got a mapping");
    } else {
        add_input(st, n, diag);
    }
}

/* The core keys, read with sl_options_fill over a table of their own; every
 * other key of the stage is the plugin's and is ignored here. */
static void read_core_keys(sl_stage_cfg *st, sl_diag *diag)
{
    const sl_node *node = st->node;
    const sl_node *et = sl_node_get(node, "event_time");
    bool et_plain = st->kind == SLUICE_SOURCE && et && et->kind == SL_NODE_SCALAR &&
                    !sl_node_is_null(et);
    const sluice_option *table = st->kind == SLUICE_SOURCE ? core_source_opts : core_other_opts;
    const char **others = xcalloc(node->count + 1, sizeof *others);
    size_t nothers = 0;
    for (size_t i = 0; i < node->count; i++) {
        const char *k = node->keys[i]->value;
        size_t j = 0;
        while (table[j].name && strcmp(table[j].name, k) != 0)
            j++;
        if (!table[j].name || (et_plain && strcmp(k, "event_time") == 0))
            others[nothers++] = k;
    }
    core_opts core;
    memset(&core, 0, sizeof core);
    sl_options_fill(table, node, &core, others, st, diag);
    free(others);

    st->errors_output = core.errors;
    st->on_error_fail = core.on_error == 1;
    if (st->kind == SLUICE_SOURCE) {
        const sl_node *bs = sl_node_get(node, "batch_size");
        if (!bs)
            bs = node;
        if (core.batch_size < 1 || core.batch_size > MAX_BATCH_SIZE)
            sl_diag_add(diag, bs->line, bs->col, "option 'batch_size' must be from 1 to %d, "
                        "got %lld", MAX_BATCH_SIZE, (long long)core.batch_size);
        else
            st->batch_size = (uint32_t)core.batch_size;
        if (et_plain) {
            st->event_time_field = xstrdup(et->value);
        } else {
            st->event_time_field = core.event_time.field; /* moved */
            core.event_time.field = NULL;
        }
        st->event_time_format = (sl_time_format)core.event_time.format;
        st->max_delay_ms = core.watermark.max_delay;
        st->idle_timeout_ms = core.watermark.idle_timeout;
    }
    sl_options_free(table, &core);
}

static void check_stage(sl_stage_cfg *st, sl_plugin_lookup lookup, void *lookup_ctx,
                        sl_diag *diag)
{
    const sl_node *type = sl_node_get(st->node, "type");
    char err[512] = "";
    const sluice_plugin_def *def = lookup(lookup_ctx, st->type, st->kind, err, sizeof err);
    if (!def) {
        if (err[0])
            sl_diag_add(diag, type->line, type->col, "%s", err);
        else
            sl_diag_add(diag, type->line, type->col, "unknown %s type '%s'",
                        kind_word(st->kind), st->type);
    } else if (def->kind != st->kind) {
        sl_diag_add(diag, type->line, type->col, "'%s' is a %s type, not a %s type", st->type,
                    kind_word(def->kind), kind_word(st->kind));
        def = NULL;
    }
    read_input(st, diag);
    read_core_keys(st, diag);
    if (!def)
        return; /* its options cannot be checked without the plugin */
    st->def = def;
    st->config = xcalloc(1, def->config_size);
    sl_options_fill(def->options, st->node, st->config,
                    st->kind == SLUICE_SOURCE ? source_core_keys : other_core_keys, st, diag);
}

/* Extra outputs share the stage names' namespace: `input: late` must mean
 * exactly one thing. */
static void check_output_names(const sl_pipeline_cfg *cfg, sl_diag *diag)
{
    for (size_t s = 0; s < cfg->nstages; s++) {
        const sl_stage_cfg *st = &cfg->stages[s];
        for (size_t o = 0; o < st->noutputs; o++) {
            const char *name = st->outputs[o];
            const sl_node *at = st->output_nodes[o];
            const sl_stage_cfg *same = find_stage(cfg, name);
            if (same) {
                sl_diag_add(diag, at->line, at->col, "output name '%s' is already the name of "
                            "a %s (line %d)", name, kind_word(same->kind), stage_line(cfg, same));
                continue;
            }
            /* Report each clash once, at the later declaration. */
            for (size_t s2 = 0; s2 <= s; s2++) {
                const sl_stage_cfg *other = &cfg->stages[s2];
                size_t end = s2 == s ? o : other->noutputs;
                for (size_t o2 = 0; o2 < end; o2++) {
                    if (strcmp(other->outputs[o2], name) == 0) {
                        sl_diag_add(diag, at->line, at->col, "output name '%s' is already "
                                    "used by stage '%s' (line %d)", name, other->name,
                                    other->output_nodes[o2]->line);
                        goto next;
                    }
                }
            }
        next:;
        }
    }
}

int sl_config_check(sl_pipeline_cfg *cfg, sl_plugin_lookup lookup, void *lookup_ctx,
                    sl_diag *diag)
{
    for (size_t i = 0; i < cfg->nstages; i++)
        check_stage(&cfg->stages[i], lookup, lookup_ctx, diag);
    check_output_names(cfg, diag);
    return diag->count ? -1 : 0;
}

/* Keys may hold dots themselves (librdkafka's `linger.ms` under
 * `properties`): at each level the rest of the path as one key wins. */
const sl_node *sl_stage_option_node(const sl_stage_cfg *st, const char *option)
{
    const sl_node *n = st->node;
    char *path = xstrdup(option);
    for (char *rest = path; rest && *rest;) {
        const sl_node *whole = sl_node_get(n, rest);
        if (whole) {
            n = whole;
            break;
        }
        char *dot = strchr(rest, '.');
        if (dot)
            *dot = 0;
        const sl_node *next = sl_node_get(n, rest);
        char *end;
        unsigned long index = strtoul(rest, &end, 10);
        if (!next && n->kind == SL_NODE_SEQ && *rest && !*end && index < n->count)
            next = n->items[index]; /* "metrics.2.value": an item of a list */
        if (!next)
            break;
        n = next;
        rest = dot ? dot + 1 : NULL;
    }
    free(path);
    return n;
}

static void free_stage(sl_stage_cfg *st)
{
    if (st->def)
        sl_options_free(st->def->options, st->config);
    free(st->config);
    free(st->name);
    free(st->type);
    for (size_t i = 0; i < st->ninputs; i++)
        free(st->inputs[i]);
    free(st->inputs);
    free(st->input_nodes);
    for (size_t i = 0; i < st->noutputs; i++)
        free(st->outputs[i]);
    free(st->outputs);
    free(st->output_nodes);
    free(st->event_time_field);
}

void sl_config_free(sl_pipeline_cfg *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nstages; i++)
        free_stage(&cfg->stages[i]);
    free(cfg->stages);
    for (size_t i = 0; i < cfg->nplugin_path; i++)
        free(cfg->plugin_path[i]);
    free(cfg->plugin_path);
    free(cfg->checkpoint_dir);
    free(cfg->shutdown_file);
    free(cfg->events_log);
    free(cfg->metrics_listen);
    free(cfg->metrics_username);
    if (cfg->metrics_password)
        explicit_bzero(cfg->metrics_password, strlen(cfg->metrics_password));
    free(cfg->metrics_password);
    free(cfg->metrics_tls_cert);
    free(cfg->metrics_tls_key);
    free(cfg->name);
    free(cfg->file);
    sl_node_free(cfg->root);
    free(cfg);
}
