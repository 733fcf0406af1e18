/* test_batch.c — records, batches, arenas and interned names. */
#include <stdlib.h>

#include "record.h"
#include "tap.h"

static void test_intern(void)
{
    sluice_name a = sl_intern("status", 6), b = sl_intern("status", 6);
    sluice_name c = sl_intern("service", 7);
    ok(a != 0, "interned ids are never 0");
    is_int(a, b, "the same name interns to the same id");
    ok(a != c, "different names get different ids");
    is_str(sl_name_of(c), "service", "name_of gives the name back");
    is_int(sl_name_len(c), 7, "name_len");
    /* Many names: the table grows without changing existing ids. */
    char buf[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof buf, "field_%d", i);
        sl_intern(buf, strlen(buf));
    }
    is_int(sl_intern("status", 6), a, "ids are stable after the table grows");
    is_str(sl_name_of(a), "status", "and still name the same string");
}

static void test_capacity(void)
{
    sluice_batch *b = sl_batch_new(3);
    ok(b && b->capacity == 3, "a batch has the capacity asked for");
    ok(sl_record_append(b) && sl_record_append(b) && sl_record_append(b), "three appends fit");
    ok(sl_record_append(b) == NULL, "the fourth append returns NULL: the batch is full");
    is_int(b->count, 3, "count stays at capacity");
    ok(b->records[0].time == SLUICE_TIME_NONE, "a new record has no event time");
    sl_batch_unref(b);
    sluice_batch *d = sl_batch_new(0);
    is_int(d->capacity, SL_DEFAULT_BATCH_SIZE, "capacity 0 means the default 4096");
    sl_batch_unref(d);
}

static void test_fields(void)
{
    sluice_name n_a = sl_intern("a", 1), n_s = sl_intern("s", 1), n_x = sl_intern("x", 1);
    sluice_batch *b = sl_batch_new(16);
    sluice_record *r = sl_record_append(b);
    for (int i = 0; i < 20; i++) { /* past the first field-array growth */
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        sl_set(b, r, sl_intern(name, strlen(name)), sluice_int(i));
    }
    sl_set(b, r, n_a, sluice_int(42));
    sl_set(b, r, n_s, sluice_string(sl_str(b, "hello", 5)));
    const sluice_value *v = sluice_get(r, n_a);
    ok(v && v->type == SLUICE_INT && v->u.i == 42, "an int field reads back");
    v = sluice_get(r, sl_intern("f13", 3));
    ok(v && v->u.i == 13, "fields survive the array growing");
    v = sluice_get(r, n_s);
    ok(v && v->type == SLUICE_STRING && v->u.s.len == 5 && memcmp(v->u.s.ptr, "hello", 5) == 0,
       "a string field reads back from the arena");
    sl_set(b, r, n_a, sluice_double(1.5));
    v = sluice_get(r, n_a);
    ok(v && v->type == SLUICE_DOUBLE && v->u.d == 1.5, "set replaces a field in place");
    is_int(r->nfields, 22, "replacing adds no field");
    sl_unset(b, r, n_a);
    ok(sluice_get(r, n_a) == NULL, "unset removes the field");
    is_int(r->nfields, 21, "and the count drops");
    ok(sluice_get(r, n_x) == NULL, "an absent field is NULL");
    ok(sl_batch_bytes(b) > 0, "the arena accounts its bytes");
    sl_batch_unref(b);
}

static void test_copy_keeps_source(void)
{
    sluice_name n_a = sl_intern("a", 1), n_b = sl_intern("b", 1);
    sluice_batch *in = sl_batch_new(4);
    sluice_record *src = sl_record_append(in);
    sl_set(in, src, n_a, sluice_string(sl_str(in, "kept", 4)));
    src->time = 1234;
    sluice_batch *out = sl_batch_new(4);
    sluice_record *r = sl_record_copy(out, in, src);
    sl_set(out, r, n_b, sluice_int(7)); /* copy-on-write of the shared field array */
    is_int(src->nfields, 1, "setting a field on the copy leaves the source record alone");
    sl_batch_unref(in); /* the output batch keeps the input alive */
    const sluice_value *v = sluice_get(r, n_a);
    ok(v && v->u.s.len == 4 && memcmp(v->u.s.ptr, "kept", 4) == 0,
       "a copied record's strings outlive the source batch's own reference");
    is_int(r->time, 1234, "copy keeps event time");
    sl_unset(out, r, n_a);
    is_int(r->nfields, 1, "unset on a copy works");
    sl_batch_unref(out);

    sluice_batch *x = sl_batch_new(2), *y = sl_batch_new(2);
    sluice_record *s = sl_record_append(x);
    sl_set(x, s, n_a, sluice_string(sl_str(x, "deep", 4)));
    sluice_record *c = sl_record_clone(y, s);
    sl_batch_unref(x);
    v = sluice_get(c, n_a);
    ok(v && memcmp(v->u.s.ptr, "deep", 4) == 0, "a clone owns its strings");
    sl_batch_unref(y);
}

static void test_refcount(void)
{
    sluice_batch *b = sl_batch_new(2);
    sl_record_append(b);
    sl_batch_ref(b);
    sl_batch_unref(b);
    ok(b->count == 1, "a batch with a reference left is still usable");
    sl_batch_unref(b); /* freed: ASan would report a leak or a double free */
    sl_batch_unref(NULL);
    ok(1, "unref(NULL) is harmless");
}

static void test_big_alloc(void)
{
    sluice_batch *b = sl_batch_new(1);
    char *p = sl_alloc(b, 10 * 1024 * 1024);
    ok(p != NULL, "an allocation larger than a chunk works");
    memset(p, 1, 10 * 1024 * 1024);
    ok(((uintptr_t)sl_alloc(b, 3) & 7) == 0, "arena allocations are 8-aligned");
    sl_batch_unref(b);
}

int main(void)
{
    test_intern();
    test_capacity();
    test_fields();
    test_copy_keeps_source();
    test_refcount();
    test_big_alloc();
    return tap_done();
}
