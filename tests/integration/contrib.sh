#!/usr/bin/env bash
# contrib.sh — the Prometheus alert rules shipped in contrib/ load, and fire
# (and stay quiet) as their unit tests say: `promtool check rules` and
# `promtool test rules` against synthetic series of sluice's metric names.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd promtool || done_testing
RULES=$SRCDIR/contrib/prometheus/sluice-alerts.yml
T=$(tmpdir)

if promtool check rules "$RULES" >"$T/check.out" 2>&1; then
    pass "promtool check rules: the alert rules load"
else
    fail "promtool check rules: the alert rules load"
    diag "$(cat "$T/check.out")"
fi
like "$(cat "$T/check.out")" "SUCCESS: [0-9]+ rules found" "promtool found the rules"
for alert in SluicePipelineDown SluiceCheckpointsFailing SluiceKafkaLagGrowing \
    SluiceWatermarkLagGrowing SluiceBatchTimeAboveInterval; do
    like "$(cat "$RULES")" "alert: $alert" "an alert rule $alert"
done
# promtool resolves rule_files relative to the test file's folder.
if (cd "$SRCDIR/contrib/prometheus" && promtool test rules sluice-alerts.test.yml) >"$T/test.out" 2>&1; then
    pass "promtool test rules: down, failing checkpoints and error rate fire as expected"
else
    fail "promtool test rules: down, failing checkpoints and error rate fire as expected"
    diag "$(cat "$T/test.out")"
fi

done_testing
