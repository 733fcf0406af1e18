/*
 * kafka.c — the entry point of kafka.so: the source's descriptor, whose
 * `next` is the sink's, so `type: kafka` finds both kinds in one file.
 * Kafka is a loadable plugin rather than built in, so the sluice binary
 * itself does not depend on librdkafka being installed.
 */
#include "common.h"

__attribute__((visibility("default"))) const sluice_plugin_def *sluice_plugin(void)
{
    return &sk_kafka_source;
}
