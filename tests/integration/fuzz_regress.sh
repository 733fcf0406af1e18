#!/bin/bash
# fuzz_regress.sh — every fuzz target builds, and runs its seed corpus and
# every input that once crashed it without a crash, leak, sanitizer report
# or failed check (`scripts/fuzz regress`, one target at a time).
#
# Two test points per target: "builds", then "corpus and crashes pass".
# This is the fast regression half of fuzzing (seconds); the fuzzing itself
# is `make fuzz-smoke` / scripts/fuzz. It needs clang-14 with
# libclang-rt-14-dev: when they are missing the test fails, naming the
# packages (tests never skip). The targets build under $BUILDDIR/fuzz.
. "${SRCDIR:-$(dirname "$0")/../..}/tests/lib/tap.sh"

FUZZ=$SRCDIR/scripts/fuzz
export FUZZ_BUILD=${FUZZ_BUILD:-$BUILDDIR/fuzz}
targets=$(sed -n 's/^TARGETS="\(.*\)"$/\1/p' "$FUZZ")
[ -n "$targets" ] || bail_out "no TARGETS line in $FUZZ"

# ---- the tools ---------------------------------------------------------------
if command -v clang-14 >/dev/null; then
    pass "clang-14 is installed"
else
    fail "clang-14 is installed"
    diag "apt-get install clang-14 libclang-rt-14-dev (tests do not skip)"
    done_testing
fi
runtime=$(clang-14 -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a
if [ -f "$runtime" ]; then
    pass "libFuzzer's runtime is installed"
else
    fail "libFuzzer's runtime is installed"
    diag "missing $runtime: apt-get install libclang-rt-14-dev"
    done_testing
fi

# ---- each target ---------------------------------------------------------------
for t in $targets; do
    if ok "fuzz_$t builds" "$FUZZ" build "$t"; then
        ok "fuzz_$t: seed corpus and saved crashes pass" "$FUZZ" regress "$t"
    else
        fail "fuzz_$t: seed corpus and saved crashes pass (not built)"
    fi
    [ -d "$SRCDIR/tests/fuzz/corpus/$t" ] || diag "fuzz_$t has no seed corpus"
done

done_testing
