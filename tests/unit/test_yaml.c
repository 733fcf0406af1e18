/*
 * test_yaml.c — the YAML reader (node tree, positions, interpolation,
 * aliases, merge keys, errors) and the scalar conversions.
 */
#include "yaml.h"

#include "../tap.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sl_node *parse(const char *text, sl_diag *d)
{
    d->file = "t.yaml";
    return sl_yaml_parse_string(text, strlen(text), d);
}

/* Parses text expecting exactly one diagnostic; returns it (static copy). */
static const char *one_error(const char *text)
{
    static char msg[512];
    sl_diag d = {0};
    sl_node *n = parse(text, &d);
    snprintf(msg, sizeof msg, "%s", d.count == 1 ? d.messages[0] : "(not exactly one)");
    if (d.count != 1)
        sl_diag_print(&d);
    sl_node_free(n);
    sl_diag_free(&d);
    return msg;
}

static void test_parse_bool(void)
{
    bool b = false;
    ok(sl_parse_bool("true", &b) && b, "true");
    ok(sl_parse_bool("YES", &b) && b, "YES");
    ok(sl_parse_bool("On", &b) && b, "On");
    ok(sl_parse_bool("false", &b) && !b, "false");
    ok(sl_parse_bool("no", &b) && !b, "no");
    ok(sl_parse_bool("OFF", &b) && !b, "OFF");
    ok(!sl_parse_bool("1", &b), "1 is not a bool");
    ok(!sl_parse_bool("", &b), "empty is not a bool");
    ok(!sl_parse_bool("truth", &b), "truth is not a bool");
}

static void test_parse_int(void)
{
    long long v = 0;
    ok(sl_parse_int("42", &v) && v == 42, "42");
    ok(sl_parse_int("-7", &v) && v == -7, "-7");
    ok(sl_parse_int("+7", &v) && v == 7, "+7");
    ok(sl_parse_int("9223372036854775807", &v) && v == LLONG_MAX, "LLONG_MAX");
    ok(sl_parse_int("-9223372036854775808", &v) && v == LLONG_MIN, "LLONG_MIN");
    ok(!sl_parse_int("9223372036854775808", &v), "overflow rejected");
    ok(!sl_parse_int("", &v), "empty rejected");
    ok(!sl_parse_int(" 1", &v), "leading space rejected");
    ok(!sl_parse_int("1 ", &v), "trailing space rejected");
    ok(!sl_parse_int("12abc", &v), "trailing junk rejected");
    ok(!sl_parse_int("1.5", &v), "fraction rejected");
    ok(!sl_parse_int("0x10", &v), "hex rejected");
    ok(!sl_parse_int("-", &v), "lone sign rejected");
    v = 5;
    sl_parse_int("bad", &v);
    is_int(v, 5, "out untouched on failure");
}

static void test_parse_double(void)
{
    double d = 0;
    ok(sl_parse_double("1.5", &d) && d == 1.5, "1.5");
    ok(sl_parse_double("-2", &d) && d == -2, "-2");
    ok(sl_parse_double("1e3", &d) && d == 1000, "1e3");
    ok(!sl_parse_double("fast", &d), "fast rejected");
    ok(!sl_parse_double("", &d), "empty rejected");
    ok(!sl_parse_double("1.5x", &d), "junk rejected");
    ok(!sl_parse_double("inf", &d), "inf rejected");
    ok(!sl_parse_double("nan", &d), "nan rejected");
    ok(!sl_parse_double("1e999", &d), "overflow rejected");
}

static void test_parse_duration(void)
{
    long long ms = 0;
    ok(sl_parse_duration("250ms", &ms) && ms == 250, "250ms");
    ok(sl_parse_duration("10s", &ms) && ms == 10000, "10s");
    ok(sl_parse_duration("5m", &ms) && ms == 300000, "5m");
    ok(sl_parse_duration("1h", &ms) && ms == 3600000, "1h");
    ok(sl_parse_duration("2d", &ms) && ms == 172800000, "2d");
    ok(sl_parse_duration("1m30s", &ms) && ms == 90000, "1m30s");
    ok(sl_parse_duration("1h2m3s4ms", &ms) && ms == 3723004, "1h2m3s4ms");
    ok(sl_parse_duration("1500", &ms) && ms == 1500, "bare number = ms");
    ok(sl_parse_duration("0", &ms) && ms == 0, "0");
    ok(sl_parse_duration("0s", &ms) && ms == 0, "0s");
    ok(!sl_parse_duration("-5s", &ms), "negative rejected");
    ok(!sl_parse_duration("-5", &ms), "negative bare rejected");
    ok(!sl_parse_duration("", &ms), "empty rejected");
    ok(!sl_parse_duration("s", &ms), "unit alone rejected");
    ok(!sl_parse_duration("10 s", &ms), "space rejected");
    ok(!sl_parse_duration("10x", &ms), "unknown unit rejected");
    ok(!sl_parse_duration("10sec", &ms), "trailing junk rejected");
    ok(!sl_parse_duration("1m30", &ms), "number without unit after a unit rejected");
    ok(!sl_parse_duration("1.5s", &ms), "fraction rejected");
    ok(!sl_parse_duration("9999999999999999999d", &ms), "digit overflow rejected");
    ok(!sl_parse_duration("999999999999999d", &ms), "unit overflow rejected");
    ok(!sl_parse_duration("9223372036854775807ms1ms", &ms), "sum overflow rejected");
}

static void test_parse_size(void)
{
    long long b = 0;
    ok(sl_parse_size("100", &b) && b == 100, "bare = bytes");
    ok(sl_parse_size("100B", &b) && b == 100, "100B");
    ok(sl_parse_size("10kB", &b) && b == 10000, "10kB");
    ok(sl_parse_size("10KB", &b) && b == 10000, "10KB");
    ok(sl_parse_size("64KiB", &b) && b == 65536, "64KiB");
    ok(sl_parse_size("100MB", &b) && b == 100000000, "100MB");
    ok(sl_parse_size("16MiB", &b) && b == 16777216, "16MiB");
    ok(sl_parse_size("1GB", &b) && b == 1000000000, "1GB");
    ok(sl_parse_size("1GiB", &b) && b == 1073741824, "1GiB");
    ok(sl_parse_size("2TiB", &b) && b == 2199023255552LL, "2TiB");
    ok(sl_parse_size("64 KiB", &b) && b == 65536, "one space before the unit");
    ok(!sl_parse_size("", &b), "empty rejected");
    ok(!sl_parse_size("-1", &b), "negative rejected");
    ok(!sl_parse_size("1.5MB", &b), "fraction rejected");
    ok(!sl_parse_size("10XB", &b), "unknown unit rejected");
    ok(!sl_parse_size("10 ", &b), "trailing space rejected");
    ok(!sl_parse_size("KiB", &b), "unit alone rejected");
    ok(!sl_parse_size("99999999999TiB", &b), "overflow rejected");
}

static void test_positions(void)
{
    sl_diag d = {0};
    sl_node *root = parse("pipeline: demo\n"
                          "sources:\n"
                          "  logs:\n"
                          "    type: file\n"
                          "    path: \"a b\"\n"
                          "    tags: [x, 'y']\n"
                          "    seq:\n"
                          "      - one\n"
                          "      - two\n",
                          &d);
    is_int(d.count, 0, "no diagnostics");
    ok(root && root->kind == SL_NODE_MAP, "root is a map");
    is_int(root->line, 1, "root line");
    is_int(root->col, 1, "root col");
    const sl_node *logs = sl_node_get(sl_node_get(root, "sources"), "logs");
    ok(logs && logs->kind == SL_NODE_MAP, "sources.logs is a map");
    is_int(logs->line, 4, "block map starts at its first key: line");
    is_int(logs->col, 5, "block map starts at its first key: col");
    const sl_node *key = sl_node_key(logs, "type");
    is_int(key->line, 4, "key line");
    is_int(key->col, 5, "key col");
    const sl_node *type = sl_node_get(logs, "type");
    is_str(type->value, "file", "type value");
    is_int(type->line, 4, "value line");
    is_int(type->col, 11, "value col");
    ok(!type->quoted, "plain scalar not quoted");
    const sl_node *path = sl_node_get(logs, "path");
    is_str(path->value, "a b", "quoted value");
    ok(path->quoted, "double-quoted scalar flagged");
    is_int(path->col, 11, "quoted scalar starts at the quote");
    const sl_node *tags = sl_node_get(logs, "tags");
    ok(tags->kind == SL_NODE_SEQ && tags->count == 2, "flow seq of 2");
    is_int(tags->col, 11, "flow seq at '['");
    is_int(tags->items[1]->col, 15, "second flow item col");
    ok(tags->items[1]->quoted, "single-quoted flagged");
    const sl_node *seq = sl_node_get(logs, "seq");
    ok(seq->kind == SL_NODE_SEQ && seq->count == 2, "block seq of 2");
    is_int(seq->line, 8, "block seq line");
    is_int(seq->col, 7, "block seq col at '-'");
    is_int(seq->items[1]->line, 9, "second item line");
    is_int(seq->items[1]->col, 9, "second item col");
    ok(sl_node_get(root, "missing") == NULL, "absent key is NULL");
    ok(sl_node_get(type, "x") == NULL, "get on a scalar is NULL");
    sl_node_free(root);
    sl_diag_free(&d);
}

static void test_null(void)
{
    sl_diag d = {0};
    sl_node *root = parse("a:\nb: ~\nc: null\nd: ''\ne: x\n", &d);
    ok(sl_node_is_null(sl_node_get(root, "a")), "empty is null");
    ok(sl_node_is_null(sl_node_get(root, "b")), "~ is null");
    ok(sl_node_is_null(sl_node_get(root, "c")), "null is null");
    ok(!sl_node_is_null(sl_node_get(root, "d")), "quoted '' is not null");
    ok(!sl_node_is_null(sl_node_get(root, "e")), "x is not null");
    ok(!sl_node_is_null(root), "a map is not null");
    sl_node_free(root);
    sl_diag_free(&d);
}

static void test_interpolation(void)
{
    setenv("SL_T_HOST", "example.org", 1);
    setenv("SL_T_EMPTY", "", 1);
    unsetenv("SL_T_UNSET");
    sl_diag d = {0};
    sl_node *root = parse("a: http://${SL_T_HOST}:80/\n"
                          "b: ${SL_T_UNSET:-fallback}\n"
                          "c: ${SL_T_EMPTY:-used when empty}\n"
                          "d: ${SL_T_HOST:-x}\n"
                          "e: cost $$5 and $ alone, $HOME stays\n"
                          "f: \"${SL_T_HOST}\"\n"
                          "g: ${SL_T_UNSET:-}\n",
                          &d);
    is_int(d.count, 0, "no diagnostics");
    is_str(sl_node_get(root, "a")->value, "http://example.org:80/", "${VAR}");
    is_str(sl_node_get(root, "b")->value, "fallback", "${VAR:-default} unset");
    is_str(sl_node_get(root, "c")->value, "used when empty", "${VAR:-default} empty");
    is_str(sl_node_get(root, "d")->value, "example.org", "${VAR:-default} set");
    is_str(sl_node_get(root, "e")->value, "cost $5 and $ alone, $HOME stays", "$$ and lone $");
    is_str(sl_node_get(root, "f")->value, "example.org", "inside quotes too");
    is_str(sl_node_get(root, "g")->value, "", "empty default");
    sl_node_free(root);
    sl_diag_free(&d);

    is_str(one_error("x: 1\ny:   pre-${SL_T_UNSET}-post\n"),
           "t.yaml:2:6: environment variable SL_T_UNSET is not set",
           "unset variable reported at the scalar");
    is_str(one_error("x: ${SL_T_HOST\n"), "t.yaml:1:4: unterminated '${' in '${SL_T_HOST'",
           "unterminated reference");
    is_str(one_error("x: ${1X}\n"),
           "t.yaml:1:4: bad variable reference '${1X}' (use ${NAME} or ${NAME:-default}; "
           "$$ for a literal $)",
           "bad variable name");

    /* Several unset variables: all reported, parsing goes on. */
    d = (sl_diag){0};
    root = parse("a: ${SL_T_UNSET}\nb: [\"${SL_T_UNSET}\"]\n", &d);
    ok(root != NULL, "tree still returned");
    is_int(d.count, 2, "both reported");
    if (d.count == 2)
        is_str(d.messages[1], "t.yaml:2:5: environment variable SL_T_UNSET is not set",
               "second at its own position");
    sl_node_free(root);
    sl_diag_free(&d);
}

static void test_aliases_and_merges(void)
{
    sl_diag d = {0};
    sl_node *root = parse("base: &b {x: 1, y: 2}\n"
                          "list: &l [a, b]\n"
                          "copy: *b\n"
                          "more: *l\n"
                          "merged:\n"
                          "  <<: *b\n"
                          "  y: 20\n"
                          "  z: 30\n"
                          "two:\n"
                          "  <<: [{p: 1}, {p: 2, q: 3}]\n",
                          &d);
    is_int(d.count, 0, "no diagnostics");
    const sl_node *copy = sl_node_get(root, "copy");
    ok(copy && copy->kind == SL_NODE_MAP && copy->count == 2, "alias copies the map");
    ok(copy != sl_node_get(root, "base"), "a copy, not shared");
    is_int(copy->line, 3, "copy stands at the alias: line");
    is_int(copy->col, 7, "copy stands at the alias: col");
    is_str(sl_node_get(copy, "y")->value, "2", "copied value");
    ok(sl_node_get(root, "more")->kind == SL_NODE_SEQ, "alias of a list");
    const sl_node *merged = sl_node_get(root, "merged");
    is_int(merged->count, 3, "merge adds missing keys");
    is_str(sl_node_get(merged, "x")->value, "1", "merged key");
    is_str(sl_node_get(merged, "y")->value, "20", "own key wins over merged");
    ok(sl_node_key(merged, "<<") == NULL, "no '<<' key left");
    const sl_node *two = sl_node_get(root, "two");
    is_str(sl_node_get(two, "p")->value, "1", "earlier merge source wins");
    is_str(sl_node_get(two, "q")->value, "3", "later source fills the rest");
    sl_node_free(root);
    sl_diag_free(&d);

    is_str(one_error("a: *nope\n"), "t.yaml:1:4: unknown anchor 'nope'", "unknown anchor");
    is_str(one_error("a: &r [1, *r]\n"), "t.yaml:1:11: unknown anchor 'r'",
           "self-reference is unknown (no cycle)");
    is_str(one_error("a:\n  <<: 5\n"),
           "t.yaml:2:7: '<<' merges mappings only (a mapping or a list of mappings)",
           "merge of a scalar");

    /* Billion laughs: refused, not expanded. */
    char big[2048] = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
    for (char c = 'b'; c <= 'j'; c++) {
        char line[128];
        snprintf(line, sizeof line, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n",
                 c, c, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
        strcat(big, line);
    }
    d = (sl_diag){0};
    root = parse(big, &d);
    ok(root == NULL, "alias bomb refused");
    ok(d.count == 1 && strstr(d.messages[0], "document too large"), "alias bomb message");
    sl_diag_free(&d);
}

static void test_duplicates_and_keys(void)
{
    is_str(one_error("a: 1\nb: 2\na: 3\n"), "t.yaml:3:1: duplicate key 'a' (first at line 1)",
           "duplicate key at the second");
    is_str(one_error("s:\n  x: 1\n  x: &k 2\nt: *k\n"),
           "t.yaml:3:3: duplicate key 'x' (first at line 2)",
           "duplicate's anchor still usable (no use-after-free)");
    is_str(one_error("? [a]\n: 1\n"), "t.yaml:1:3: mapping keys must be plain values, not a list",
           "complex key");
    sl_diag d = {0};
    sl_node *root = parse("a: 1\nb: 2\na: 3\n", &d);
    is_int(root->count, 2, "duplicate dropped");
    is_str(sl_node_get(root, "a")->value, "1", "first kept");
    sl_node_free(root);
    sl_diag_free(&d);
}

static void test_syntax_errors(void)
{
    is_str(one_error("a: [1, 2\nb: 3\n"),
           "t.yaml:2:2: did not find expected ',' or ']' (while parsing a flow sequence "
           "started at 1:4)",
           "unclosed flow sequence");
    is_str(one_error("a:\n  b: 1\n c: 2\n"),
           "t.yaml:3:2: did not find expected key (while parsing a block mapping started at 1:1)",
           "bad indentation");
    is_str(one_error("a: b: c\n"), "t.yaml:1:5: mapping values are not allowed in this context",
           "mapping value in a plain scalar");
    is_str(one_error("a: 'open\n"),
           "t.yaml:2:1: found unexpected end of stream (while scanning a quoted scalar "
           "started at 1:4)",
           "unterminated quote");
    is_str(one_error("a: 1\nb: \xff\n"), "t.yaml:2:4: invalid leading UTF-8 octet",
           "bad UTF-8 at its line:col");
    is_str(one_error(""), "t.yaml: the file is empty", "empty document");
    is_str(one_error("a: 1\n---\nb: 2\n"), "t.yaml:2:1: only one YAML document is allowed",
           "two documents");
    char deep[1024] = "";
    for (int i = 0; i < 250; i++)
        strcat(deep, "[");
    is_str(one_error(deep), "t.yaml:1:202: nesting deeper than 200 levels", "depth limit");

    sl_diag d = {0};
    sl_node *root = parse("a: [1\n", &d);
    ok(root == NULL, "NULL on syntax error");
    sl_diag_free(&d);
}

static void test_files_and_diag(void)
{
    char path[] = "/tmp/sl-test-yaml-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "k: v\nbad: [\n";
    ok(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "temp file written");
    close(fd);
    sl_diag d = {0};
    sl_node *root = sl_yaml_parse_file(path, &d);
    ok(root == NULL, "file with syntax error");
    ok(d.file == path, "diag->file set to the path");
    ok(d.count == 1 && strncmp(d.messages[0], path, strlen(path)) == 0 &&
           strstr(d.messages[0], ":3:1: "),
       "message names the file and line:col (%s)", d.count ? d.messages[0] : "");
    sl_diag_free(&d);
    unlink(path);

    d = (sl_diag){.file = "named.yaml"};
    root = sl_yaml_parse_file("/nonexistent/p.yaml", &d);
    ok(root == NULL, "missing file");
    is_str(d.count ? d.messages[0] : NULL, "named.yaml: cannot open: No such file or directory",
           "missing file message keeps diag->file");
    sl_diag_free(&d);

    d = (sl_diag){0};
    sl_diag_add(&d, 3, 4, "at %s", "pos");
    sl_diag_add(&d, 0, 0, "no position");
    sl_diag_add(&d, -1, 0, "from the command line");
    is_int(d.count, 3, "three messages");
    is_str(d.messages[0], "<string>:3:4: at pos", "positioned, default file name");
    is_str(d.messages[1], "<string>: no position", "line 0: no position");
    is_str(d.messages[2], "--set: from the command line", "line -1: --set");
    sl_diag_free(&d);
    is_int(d.count, 0, "freed diag is empty");
}

int main(void)
{
    test_parse_bool();
    test_parse_int();
    test_parse_double();
    test_parse_duration();
    test_parse_size();
    test_positions();
    test_null();
    test_interpolation();
    test_aliases_and_merges();
    test_duplicates_and_keys();
    test_syntax_errors();
    test_files_and_diag();
    return tap_done();
}
