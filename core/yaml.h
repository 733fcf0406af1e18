/*
 * yaml.h — the pipeline file as a tree of nodes that remember where they
 * stood (line:col), read with libyaml's event parser.
 *
 * Scalars are interpolated as they are read: ${VAR} and ${VAR:-default}
 * (the default is used when VAR is unset or empty, as in the shell; an unset
 * VAR without a default is an error at that scalar's position; $$ is a
 * literal $). Anchors and aliases are resolved by copying, and merge keys
 * (`<<: *base`) are honoured, so the tree the checker sees is plain: maps,
 * sequences and strings, nothing shared.
 *
 * Problems go to an sl_diag as finished "file:line:col: message" strings.
 * A syntax error ends the parse (libyaml cannot go on); other problems
 * (unset variable, duplicate key) are recorded and parsing continues, so one
 * run reports them all.
 */
#ifndef SLUICE_YAML_H
#define SLUICE_YAML_H

#include <stdbool.h>
#include <stddef.h>

typedef enum sl_node_kind { SL_NODE_SCALAR, SL_NODE_MAP, SL_NODE_SEQ } sl_node_kind;

typedef struct sl_node {
    sl_node_kind kind;
    int line, col;          /* 1-based, of the node's first character */
    char *value;            /* SCALAR: the interpolated text */
    bool quoted;            /* SCALAR: was quoted ('...' or "...") in the file */
    size_t count;           /* MAP: pairs; SEQ: items */
    struct sl_node **keys;  /* MAP: scalar key nodes */
    struct sl_node **items; /* MAP: values; SEQ: items */
} sl_node;

/* Diagnostics: "file:line:col: message" lines collected in order.
 * Zero-initialise it; `file` names the file in every message ("<string>"
 * when NULL). The pointer is kept, not copied. sl_diag_add() positions:
 * line > 0: "file:line:col: msg"; line == 0: "file: msg" (no position);
 * line < 0: "--set: msg" (a value given on the command line). */
typedef struct sl_diag {
    const char *file;
    size_t count;
    char **messages;
} sl_diag;

void sl_diag_add(sl_diag *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sl_diag_print(const sl_diag *d); /* to stderr, one per line */
void sl_diag_free(sl_diag *d);

/* Parse one whole document. NULL (with diagnostics) when the text cannot
 * be read as YAML at all: unreadable file, syntax error, empty or several
 * documents, nesting deeper than 200 or alias expansion beyond a million
 * nodes. Otherwise the tree, which the caller frees with sl_node_free();
 * problems that did not stop the parse (unset variable, duplicate key) are
 * in diag, so callers check diag->count too. parse_file sets diag->file to
 * path when it is NULL. */
sl_node *sl_yaml_parse_file(const char *path, sl_diag *diag);
sl_node *sl_yaml_parse_string(const char *text, size_t len, sl_diag *diag);
void sl_node_free(sl_node *n);

/* A plain (unquoted) scalar meaning "no value": empty, ~ or null. */
bool sl_node_is_null(const sl_node *n);

/* MAP lookup by key; NULL when absent or n is not a map. */
const sl_node *sl_node_get(const sl_node *n, const char *key);
const sl_node *sl_node_key(const sl_node *n, const char *key); /* the key node */

/* Scalar conversions; false when the text does not fit the type, and *out
 * is then untouched. The whole string must match: no spaces around, no
 * trailing junk. int: decimal with optional sign, false on overflow.
 * double: finite only. duration: one or more <digits><unit> with unit ms,
 * s, m, h or d ("1m30s"), or bare digits meaning ms; no sign, false on
 * overflow. size: <digits>[ ]<unit>, unit B, kB/KB (1000), KiB (1024),
 * MB, MiB, GB, GiB, TB, TiB (case-insensitive), or bare digits (bytes). */
bool sl_parse_bool(const char *s, bool *out);     /* true/false/yes/no/on/off */
bool sl_parse_int(const char *s, long long *out);
bool sl_parse_double(const char *s, double *out);
bool sl_parse_duration(const char *s, long long *ms); /* 250ms 10s 5m 1h 2d; bare = ms */
bool sl_parse_size(const char *s, long long *bytes);  /* 64KiB 16MiB 1GiB 100MB 10kB; bare = bytes */

#endif /* SLUICE_YAML_H */

