/*
 * table.h — the join operator's lookup table: a CSV or JSON-lines file
 * decoded with the host's codec into batches the table keeps, indexed by
 * the canonical text of its key fields. See table.c.
 */
#ifndef SLUICE_JOIN_TABLE_H
#define SLUICE_JOIN_TABLE_H

#include "sluice/plugin.h"

#include <sys/types.h>

/* What identifies one version of the file: a change in any of these makes
 * a reload. An inode change catches a rename over the file (write a new
 * file, mv it in), mtime and size an edit in place. */
typedef struct join_file_id {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
} join_file_id;

/* The current record's key, reused per record. */
typedef struct join_key {
    char *data;
    size_t len, cap;
} join_key;

typedef struct join_table_spec {
    const sluice_host *host;
    sluice_ctx *ctx;
    const char *path;
    const char *format; /* "json" or "csv": host codec names */
    size_t non;
    const sluice_name *on;
} join_table_spec;

typedef struct join_table join_table;

/* The file's identity now (exists == false when stat() fails). */
join_file_id join_file_stat(const char *path);
bool join_file_same(const join_file_id *a, const join_file_id *b);

/* Read and index the whole file. NULL with a message in err when the file
 * cannot be read or holds a bad line (bad lines are also rejected by the
 * codec to the stage's `errors` stream, with their text). */
join_table *join_table_load(const join_table_spec *spec, char *err, size_t errlen);
void join_table_free(join_table *t);

/* Build r's key from the `on` fields into k. JOIN_KEY_NONE when one of
 * them is missing or null: such a record matches nothing. */
enum { JOIN_KEY_OK = 0, JOIN_KEY_NONE = 1, JOIN_KEY_OOM = -1 };
int join_key_build(join_key *k, const sluice_record *r, const sluice_name *on, size_t non);
void join_key_free(join_key *k);

/* The row whose key is k, or NULL. */
const sluice_record *join_table_find(const join_table *t, const join_key *k);

/* For logs and state_size. */
size_t join_table_rows(const join_table *t);
size_t join_table_duplicates(const join_table *t);
size_t join_table_keyless(const join_table *t);
size_t join_table_bytes(const join_table *t);
join_file_id join_table_file(const join_table *t);
/* Whether some row holds a field `name` (to warn about a `fields` entry
 * no row has). */
bool join_table_has_column(const join_table *t, sluice_name name);

#endif
