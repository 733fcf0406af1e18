/*
 * cli.c — the `sluice` command: run, validate, plugins, graph, version.
 *
 * Exit status: 0 success, 1 runtime failure, 2 usage or configuration
 * error. `run` blocks SIGINT/SIGTERM in every thread and waits for them
 * here: the first one drains the pipeline (sources stop, in-flight batches
 * finish, sinks flush), a second one exits at once with status 130.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "graph.h"
#include "http.h"
#include "loader.h"
#include "log.h"
#include "runtime.h"
#include "status.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

typedef struct cli_opts {
    const char *file;
    size_t nset;
    sl_override *set;
    bool quiet;
    bool from_scratch;
} cli_opts;

/* A loaded, checked pipeline: config, plugins, graph. */
typedef struct pipeline {
    sl_pipeline_cfg *cfg;
    sl_loader *loader;
    sl_graph *graph;
} pipeline;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  run PIPELINE.yaml       run a pipeline until its input ends or a signal\n"
            "  validate PIPELINE.yaml  check a pipeline file and every plugin's options\n"
            "  plugins [NAME]          list plugins, or describe one's options\n"
            "  graph PIPELINE.yaml     print the pipeline as a Graphviz DOT graph\n"
            "  version                 print the version and ABI\n"
            "\n"
            "`sluice COMMAND --help` describes a command. Exit status: 0 success,\n"
            "1 runtime failure, 2 usage or configuration error.\n");
}

static void command_usage(const char *cmd, FILE *out)
{
    if (strcmp(cmd, "run") == 0)
        fprintf(out,
                "usage: sluice run PIPELINE.yaml [--set KEY.PATH=VALUE]... [--quiet]\n"
                "                  [--log-level error|warn|info|debug] [--from-scratch]\n"
                "\n"
                "Runs the pipeline. A bounded input (a file source in read mode) ends the\n"
                "run by itself once everything has reached the sinks. SIGINT or SIGTERM\n"
                "drains the pipeline and exits 0; a second signal exits at once (130).\n"
                "On a terminal a live status line is kept on stderr (off with --quiet).\n"
                "\n"
                "  --set KEY.PATH=VALUE  override a value of the file, e.g.\n"
                "                        --set sources.logs.path=/var/log/app.jsonl\n"
                "  --quiet, -q           no status line; only warnings and errors\n"
                "  --log-level LEVEL     error, warn, info (default) or debug\n"
                "  --from-scratch        ignore existing checkpoints\n");
    else if (strcmp(cmd, "validate") == 0)
        fprintf(out,
                "usage: sluice validate PIPELINE.yaml [--set KEY.PATH=VALUE]...\n"
                "\n"
                "Checks everything `run` checks before it starts (YAML, plugin types and\n"
                "options, inputs, cycles, unused stages, each plugin's own checks), prints\n"
                "each problem as FILE:LINE:COL: message and exits 2 if there is one.\n");
    else if (strcmp(cmd, "graph") == 0)
        fprintf(out,
                "usage: sluice graph PIPELINE.yaml [--set KEY.PATH=VALUE]...\n"
                "\n"
                "Prints the pipeline's DAG in Graphviz DOT, e.g.\n"
                "  sluice graph p.yaml | dot -Tsvg > p.svg\n");
    else if (strcmp(cmd, "plugins") == 0)
        fprintf(out,
                "usage: sluice plugins [NAME]\n"
                "\n"
                "Without NAME, lists the built-in plugins and those found in the plugin\n"
                "folders ($SLUICE_PLUGIN_PATH, then " SLUICE_PLUGIN_DIR ").\n"
                "With NAME, describes each of its options: type, default and help.\n");
    else
        fprintf(out, "usage: sluice version\n\nPrints the version and the plugin ABI.\n");
}

/* Parses `cmd FILE [--set k=v]... [run options]`. Returns -1 on a usage
 * error (message printed), 1 when --help was asked. */
static int parse_args(const char *cmd, int argc, char **argv, cli_opts *o, bool want_file)
{
    static const struct option longopts[] = {
        {"set", required_argument, NULL, 's'},
        {"quiet", no_argument, NULL, 'q'},
        {"log-level", required_argument, NULL, 'l'},
        {"from-scratch", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool run = strcmp(cmd, "run") == 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (c) {
        case 's': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "sluice %s: --set wants KEY.PATH=VALUE, got '%s'\n", cmd, optarg);
                return -1;
            }
            *eq = 0;
            o->set = realloc(o->set, (o->nset + 1) * sizeof *o->set);
            o->set[o->nset].path = optarg;
            o->set[o->nset].value = eq + 1;
            o->nset++;
            break;
        }
        case 'q':
            if (!run)
                goto bad;
            o->quiet = true;
            sl_log_set_level(SLUICE_LOG_WARN);
            break;
        case 'l': {
            int ok;
            sluice_log_level lv = sl_log_level_from(optarg, &ok);
            if (!run || !ok) {
                fprintf(stderr, "sluice %s: bad --log-level '%s'\n", cmd, optarg);
                return -1;
            }
            sl_log_set_level(lv);
            break;
        }
        case 'f':
            if (!run)
                goto bad;
            o->from_scratch = true;
            break;
        case 'h':
            command_usage(cmd, stdout);
            return 1;
        default:
        bad:
            fprintf(stderr, "sluice %s: unknown option '%s'\n", cmd, argv[optind - 1]);
            command_usage(cmd, stderr);
            return -1;
        }
    }
    if (want_file) {
        if (optind != argc - 1) {
            fprintf(stderr, "sluice %s: expected one pipeline file\n", cmd);
            command_usage(cmd, stderr);
            return -1;
        }
        o->file = argv[optind];
    } else if (optind != argc) {
        fprintf(stderr, "sluice %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return -1;
    }
    return 0;
}

static void pipeline_free(pipeline *p)
{
    sl_graph_free(p->graph);
    sl_config_free(p->cfg);
    sl_loader_free(p->loader);
}

/* Read, check and build the graph; every problem is printed. */
static int pipeline_load(const cli_opts *o, pipeline *p, sl_diag *diag)
{
    memset(p, 0, sizeof *p);
    diag->file = o->file;
    p->cfg = sl_config_read(o->file, o->set, o->nset, diag);
    if (!p->cfg)
        return -1;
    p->loader = sl_loader_new((const char *const *)p->cfg->plugin_path, p->cfg->nplugin_path);
    if (sl_config_check(p->cfg, sl_loader_find, p->loader, diag) != 0)
        return -1;
    p->graph = sl_graph_build(p->cfg, diag);
    return p->graph ? 0 : -1;
}

static int fail_config(sl_diag *diag)
{
    sl_diag_print(diag);
    if (diag->count == 0)
        fprintf(stderr, "sluice: the pipeline could not be loaded\n");
    sl_diag_free(diag);
    return EXIT_USAGE;
}

static int cmd_validate(int argc, char **argv)
{
    cli_opts o = {0};
    int rc = parse_args("validate", argc, argv, &o, true);
    if (rc)
        return free(o.set), rc > 0 ? 0 : EXIT_USAGE;
    sl_diag diag = {0};
    pipeline p;
    int status = 0;
    if (pipeline_load(&o, &p, &diag) != 0) {
        status = fail_config(&diag);
    } else {
        sl_runtime *rt = sl_runtime_new(p.cfg, p.graph, &diag);
        if (!rt) {
            status = fail_config(&diag);
        } else {
            sl_runtime_free(rt);
            sl_diag_free(&diag);
            printf("%s: ok (%zu stages)\n", o.file, p.cfg->nstages);
        }
    }
    pipeline_free(&p);
    free(o.set);
    return status;
}

static int cmd_graph(int argc, char **argv)
{
    cli_opts o = {0};
    int rc = parse_args("graph", argc, argv, &o, true);
    if (rc)
        return free(o.set), rc > 0 ? 0 : EXIT_USAGE;
    sl_diag diag = {0};
    pipeline p;
    int status = 0;
    if (pipeline_load(&o, &p, &diag) != 0)
        status = fail_config(&diag);
    else
        sl_graph_dot(p.graph, stdout), sl_diag_free(&diag);
    pipeline_free(&p);
    free(o.set);
    return status;
}

/* ---- run ---------------------------------------------------------------- */

/* A graceful stop: with checkpoints, a final one at which the sources stop
 * (so a restart continues exactly there); without, the sources just stop. */
static void drain(sl_runtime *rt, sl_checkpoint *cp)
{
    if (!cp || !sl_checkpoint_final(cp))
        sl_runtime_stop(rt);
}

static bool shutdown_file_gone(const char *path)
{
    return path && access(path, F_OK) != 0 && errno == ENOENT;
}

/* Signals while the plugins start (a sink waiting for its peer can take
 * connect_timeout): the main thread is inside start(), so a watcher takes
 * SIGINT/SIGTERM and stops the runtime, which interruptible waits in
 * start() notice. */
typedef struct start_watch {
    sl_runtime *rt;
    _Atomic bool done;
    int sig;      /* the signal it took */
    bool stopped; /* ... and stopped the runtime with it */
} start_watch;

static void *watch_start(void *arg)
{
    start_watch *w = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    while (!atomic_load(&w->done)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            w->sig = sig;
            /* Once the stage threads run, starting is over: the signal is
             * handed back for a graceful stop (start_runtime re-raises it). */
            if (atomic_load(&w->done) || atomic_load(&w->rt->running) > 0)
                return NULL;
            sl_log(SLUICE_LOG_INFO, NULL, "%s while starting: stopping",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
            sl_runtime_stop(w->rt);
            w->stopped = true;
            return NULL;
        }
    }
    return NULL;
}

static int start_runtime(sl_runtime *rt)
{
    start_watch w = {.rt = rt};
    pthread_t t;
    bool watching = pthread_create(&t, NULL, watch_start, &w) == 0;
    int rc = sl_runtime_start(rt);
    atomic_store(&w.done, true);
    if (watching)
        pthread_join(t, NULL);
    if (w.sig && !w.stopped)
        kill(getpid(), w.sig); /* blocked: pending for wait_for_end() */
    return rc;
}

static int wait_for_end(sl_runtime *rt, sl_status *status, sl_checkpoint *cp,
                        const char *shutdown_file)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1); /* the last stage thread ended */
    int signals = 0;
    bool draining = false;
    int64_t next_tick = sl_now_ns() + 1000000000;
    while (!sl_runtime_done(rt)) {
        int64_t wait_ms = cp ? sl_checkpoint_tick(cp) : 250;
        if (wait_ms > 250)
            wait_ms = 250;
        struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            if (++signals > 1) {
                sl_log(SLUICE_LOG_WARN, NULL, "second signal: exiting at once");
                _exit(130);
            }
            sl_log(SLUICE_LOG_INFO, NULL,
                   "%s: draining the pipeline (send it again to exit at once)",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
            drain(rt, cp);
            draining = true;
        }
        if (cp && !draining && sl_runtime_sources_done(rt)) {
            /* Bounded input ran out: a final checkpoint records the end, so
             * a restart does not read it again and transactional sinks
             * commit their last records. */
            if (!sl_checkpoint_final(cp))
                sl_runtime_outcomes_over(rt);
            draining = true;
        }
        if (!draining && shutdown_file_gone(shutdown_file)) {
            sl_log(SLUICE_LOG_INFO, NULL, "%s was removed: draining the pipeline",
                   shutdown_file);
            drain(rt, cp);
            draining = true;
        }
        if (sl_now_ns() >= next_tick) {
            sl_status_tick(status);
            next_tick += 1000000000;
        }
    }
    int rc = sl_runtime_join(rt);
    if (cp) {
        sl_checkpoint_tick(cp); /* finish the final checkpoint: every stage has answered */
        /* Exit 0 says the stop was clean; without its final checkpoint a
         * restart replays from an earlier one, which the user should know. */
        sl_checkpoint_stats s;
        sl_checkpoint_stats_get(cp, &s);
        uint64_t final = atomic_load(&rt->final_epoch);
        if (final && s.last_failed_epoch == final) {
            sl_log(SLUICE_LOG_ERROR, NULL, "the final checkpoint (%llu) failed: a restart "
                   "resumes from %s", (unsigned long long)final,
                   s.last_epoch ? "the last completed one" : "the beginning");
            rc = 1;
        }
    }
    return rc;
}

/* Checkpoints on: restore the newest (or discard them with --from-scratch).
 * -1 when the checkpoint does not fit the pipeline (message printed). */
static int setup_checkpoints(sl_runtime *rt, const cli_opts *o, sl_checkpoint **out)
{
    *out = NULL;
    const sl_pipeline_cfg *cfg = rt->cfg;
    if (!cfg->checkpoints)
        return 0;
    sl_checkpoint_opts co = {cfg->checkpoint_dir, cfg->name, cfg->checkpoint_interval_ms,
                             cfg->checkpoint_retain, cfg->events_log,
                             cfg->checkpoint_timeout_ms};
    sl_checkpoint *cp = sl_checkpoint_new(rt, &co);
    sl_checkpoint_event(cp, "\"event\":\"run_started\"");
    char err[2048] = "";
    if (o->from_scratch ? sl_checkpoint_discard(cp) : sl_checkpoint_restore(cp, err, sizeof err)) {
        fprintf(stderr, "sluice: %s\n", err);
        sl_checkpoint_free(cp);
        return -1;
    }
    rt->checkpoint = cp;
    *out = cp;
    return 0;
}

/* The metrics endpoint binds before the stages start, so a busy port the
 * pipeline asked for stops the run before any input is read or output
 * written; the default port only warns. */
static int start_metrics(sl_runtime *rt, sl_http **out)
{
    *out = NULL;
    const char *addr = rt->cfg->metrics_listen;
    if (!addr)
        return 0;
    char err[512];
    sl_http *h = sl_http_start(rt, addr, err, sizeof err);
    if (!h && rt->cfg->metrics_default) {
        /* Nobody asked for this port: another pipeline on the machine may
         * hold it. Say so and run without the endpoint. */
        sl_log(SLUICE_LOG_WARN, NULL, "%s; running without the metrics endpoint "
               "(set metrics.listen to another address, or false)", err);
        return 0;
    }
    if (!h) {
        sl_log(SLUICE_LOG_ERROR, NULL, "%s", err);
        return -1;
    }
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
    snprintf(host, sizeof host, "%.*s", (int)hl, addr);
    sl_log(SLUICE_LOG_INFO, NULL, "metrics on %s://%s:%u/metrics", sl_http_scheme(h), host,
           sl_http_port(h));
    *out = h;
    return 0;
}

static void make_shutdown_file(const char *path)
{
    if (!path || access(path, F_OK) == 0)
        return;
    /* 0644 whatever the umask (fopen() would make it 0666 under umask 0). */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        close(fd);
        sl_log(SLUICE_LOG_INFO, NULL, "created %s: remove it to stop the run gracefully", path);
    } else {
        sl_log(SLUICE_LOG_WARN, NULL, "cannot create shutdown_file %s: %s", path,
               strerror(errno));
    }
}

static int cmd_run(int argc, char **argv)
{
    cli_opts o = {0};
    int rc = parse_args("run", argc, argv, &o, true);
    if (rc)
        return free(o.set), rc > 0 ? 0 : EXIT_USAGE;

    /* Threads inherit this mask: signals reach only wait_for_end(). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    sl_diag diag = {0};
    pipeline p;
    int status;
    sl_runtime *rt = NULL;
    if (pipeline_load(&o, &p, &diag) != 0 || !(rt = sl_runtime_new(p.cfg, p.graph, &diag))) {
        status = fail_config(&diag);
    } else {
        sl_diag_free(&diag);
        sl_checkpoint *cp = NULL;
        if (setup_checkpoints(rt, &o, &cp) != 0) {
            status = EXIT_USAGE;
        } else {
            sl_log(SLUICE_LOG_INFO, NULL, "pipeline '%s' starting: %zu stages", p.cfg->name,
                   p.cfg->nstages);
            make_shutdown_file(p.cfg->shutdown_file);
            sl_runtime_notify_done(rt);
            sl_http *http = NULL;
            if (start_metrics(rt, &http) != 0 || start_runtime(rt) != 0) {
                status = EXIT_RUNTIME;
            } else {
                sl_status *st = sl_status_new(rt, !o.quiet && isatty(STDERR_FILENO));
                status = wait_for_end(rt, st, cp, p.cfg->shutdown_file) ? EXIT_RUNTIME : 0;
                sl_status_finish(st);
                sl_status_free(st);
            }
            sl_http_stop(http);
            char ev[64];
            snprintf(ev, sizeof ev, "\"event\":\"run_stopped\",\"status\":%d", status);
            sl_checkpoint_event(cp, ev);
        }
        sl_checkpoint_free(cp);
        sl_runtime_free(rt);
        rt = NULL;
    }
    sl_runtime_free(rt);
    pipeline_free(&p);
    free(o.set);
    return status;
}

/* ---- plugins -------------------------------------------------------------- */

static const char *opt_type_name(sluice_opt_type t)
{
    switch (t) {
    case SLUICE_OPT_STRING: return "string";
    case SLUICE_OPT_INT: return "integer";
    case SLUICE_OPT_DOUBLE: return "number";
    case SLUICE_OPT_BOOL: return "bool";
    case SLUICE_OPT_DURATION: return "duration";
    case SLUICE_OPT_SIZE: return "size";
    case SLUICE_OPT_ENUM: return "enum";
    case SLUICE_OPT_LIST: return "list";
    case SLUICE_OPT_MAP: return "map";
    case SLUICE_OPT_OBJECT: return "object";
    case SLUICE_OPT_OUTPUT: return "output";
    case SLUICE_OPT_JSON: return "any";
    case SLUICE_OPT_OBJECT_LIST: return "list of objects";
    }
    return "?";
}

static void print_options(const sluice_option *opts, int depth)
{
    for (const sluice_option *op = opts; op && op->name; op++) {
        char type[256];
        snprintf(type, sizeof type, "%s", opt_type_name(op->type));
        if (op->type == SLUICE_OPT_ENUM && op->choices) {
            size_t n = strlen(type);
            for (const char *const *c = op->choices; *c && n < sizeof type - 2; c++) {
                n += (size_t)snprintf(type + n, sizeof type - n, "%s%s",
                                      c == op->choices ? " " : "|", *c);
            }
        }
        printf("  %*s%-18s %-28s", depth * 2, "", op->name, type);
        if (op->flags & SLUICE_OPT_REQUIRED)
            printf(" required");
        else if (op->default_value)
            printf(" default: %s", op->default_value);
        printf("\n");
        if (op->help)
            printf("  %*s    %s\n", depth * 2, "", op->help);
        if (op->type == SLUICE_OPT_OBJECT || op->type == SLUICE_OPT_OBJECT_LIST)
            print_options(op->fields, depth + 1);
    }
}

static void print_common_options(sluice_kind kind)
{
    printf("  common options (the core's):\n");
    if (kind != SLUICE_SOURCE)
        printf("    input              list                         required\n"
               "        the stream(s) this stage reads: a stage's name or an output's\n");
    if (kind != SLUICE_SINK)
        printf("    errors             output\n"
               "        name of a stream receiving records this stage cannot handle\n"
               "        (fields error, stage, raw); without it they are counted and dropped\n"
               "    on_error           enum skip|fail               default: skip\n"
               "        fail: a bad record stops the run with exit status 1\n");
    if (kind == SLUICE_SOURCE)
        printf("    batch_size         integer                      default: 4096\n"
               "        the most records one batch holds\n"
               "    event_time         object (or a field name)\n"
               "      field            string                       required\n"
               "      format           enum iso8601|epoch_ms|epoch_s default: iso8601\n"
               "    watermark          object\n"
               "      max_delay        duration                     default: 0s\n"
               "        how far behind the largest event time seen the watermark trails\n"
               "      idle_timeout     duration                     default: 0 (never idle)\n");
}

typedef struct describe_arg {
    const char *name;
    int found;
} describe_arg;

static void describe_one(const sluice_plugin_def *d, const char *file, void *arg)
{
    describe_arg *a = arg;
    if (strcmp(d->name, a->name) != 0)
        return;
    a->found++;
    printf("%s %s — %s\n", d->name, sl_kind_name(d->kind), d->description ? d->description : "");
    printf("  version %s, %s\n", d->version ? d->version : "?", file ? file : "built in");
    printf("  options:\n");
    if (!d->options || !d->options->name)
        printf("    (none)\n");
    print_options(d->options, 1);
    print_common_options(d->kind);
    printf("\n");
}

static void list_one(const sluice_plugin_def *d, const char *file, void *arg)
{
    (void)arg;
    printf("  %-12s %-9s %s%s%s\n", d->name, sl_kind_name(d->kind),
           d->description ? d->description : "", file ? "  " : "", file ? file : "");
}

static int cmd_plugins(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        command_usage("plugins", stdout);
        return 0;
    }
    if (argc > 2) {
        command_usage("plugins", stderr);
        return EXIT_USAGE;
    }
    sl_loader *l = sl_loader_new(NULL, 0);
    int status = 0;
    if (argc == 2) {
        describe_arg a = {argv[1], 0};
        sl_loader_each(l, describe_one, &a);
        if (!a.found) {
            fprintf(stderr, "sluice plugins: no plugin named '%s' (see `sluice plugins`)\n",
                    argv[1]);
            status = EXIT_USAGE;
        }
    } else {
        printf("plugins:\n");
        sl_loader_each(l, list_one, NULL);
    }
    sl_loader_free(l);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(argc - 1, argv + 1);
    if (strcmp(cmd, "graph") == 0)
        return cmd_graph(argc - 1, argv + 1);
    if (strcmp(cmd, "plugins") == 0)
        return cmd_plugins(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            command_usage("version", stdout);
            return 0;
        }
        printf("sluice %s (plugin ABI %d.%d)\n", SLUICE_VERSION, SLUICE_ABI_MAJOR,
               SLUICE_ABI_MINOR);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc > 2) {
            command_usage(argv[2], stdout);
            return 0;
        }
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
