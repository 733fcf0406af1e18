/*
 * kafka_mock.c — a Kafka cluster for tests and benchmarks: librdkafka's
 * built-in mock brokers on 127.0.0.1, driven over stdin.
 *
 *   kafka-mock [--brokers N] [--topic NAME:PARTITIONS ...]
 *
 * Prints `BOOTSTRAP host:port,...` once the cluster listens, then reads one
 * command per line and answers `ok` or `error ...`:
 *
 *   topic NAME PARTITIONS   create a topic
 *   down ID | up ID         take broker ID (1..N) down or bring it back
 *   missing NAME            report topic NAME as unknown to every client
 *   quit                    stop (so does end of input)
 *
 * kcat 1.7.1 has no -M flag, hence this program. Tests wait for the
 * BOOTSTRAP line instead of sleeping.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *name, int partitions,
                        int brokers)
{
    int replication = brokers < 3 ? brokers : 3;
    return rd_kafka_mock_topic_create(mc, name, partitions, replication) ==
                   RD_KAFKA_RESP_ERR_NO_ERROR
               ? 0
               : -1;
}

static int parse_topic_arg(rd_kafka_mock_cluster_t *mc, char *arg, int brokers)
{
    char *colon = strrchr(arg, ':');
    int partitions = 4;
    if (colon) {
        *colon = 0;
        partitions = atoi(colon + 1);
    }
    if (!*arg || partitions < 1) {
        fprintf(stderr, "kafka-mock: bad --topic, want NAME:PARTITIONS\n");
        return -1;
    }
    if (create_topic(mc, arg, partitions, brokers) != 0) {
        fprintf(stderr, "kafka-mock: cannot create topic %s\n", arg);
        return -1;
    }
    return 0;
}

static void command(rd_kafka_mock_cluster_t *mc, char *line, int brokers)
{
    char verb[32] = "", name[256] = "";
    int n = 0;
    int got = sscanf(line, "%31s %255s %d", verb, name, &n);
    rd_kafka_resp_err_t rc = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (got >= 3 && strcmp(verb, "topic") == 0 && n > 0) {
        if (create_topic(mc, name, n, brokers) != 0)
            rc = RD_KAFKA_RESP_ERR__FAIL;
    } else if (got >= 2 && strcmp(verb, "down") == 0) {
        rc = rd_kafka_mock_broker_set_down(mc, atoi(name));
    } else if (got >= 2 && strcmp(verb, "up") == 0) {
        rc = rd_kafka_mock_broker_set_up(mc, atoi(name));
    } else if (got >= 2 && strcmp(verb, "missing") == 0) {
        /* The mock creates any topic a client asks about; this one it
         * reports as unknown, as a real cluster without auto-create does. */
        rd_kafka_mock_topic_set_error(mc, name, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    } else {
        printf("error unknown command: %s\n", line);
        fflush(stdout);
        return;
    }
    if (rc == RD_KAFKA_RESP_ERR_NO_ERROR)
        printf("ok\n");
    else
        printf("error %s\n", rd_kafka_err2str(rc));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int brokers = 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc)
            brokers = atoi(argv[++i]);
    if (brokers < 1) {
        fprintf(stderr, "kafka-mock: --brokers wants a number >= 1\n");
        return 2;
    }

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The mock lives in a client handle's threads; this one never connects. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "kafka-mock: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "kafka-mock: cannot start the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--brokers") == 0)
            i++;
        else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
            rc = parse_topic_arg(mc, argv[++i], brokers);
        else {
            fprintf(stderr, "usage: kafka-mock [--brokers N] [--topic NAME:PARTITIONS ...]\n");
            rc = 2;
        }
    }
    if (rc == 0) {
        printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
        fflush(stdout);
        char line[512];
        while (fgets(line, sizeof line, stdin)) {
            line[strcspn(line, "\r\n")] = 0;
            if (strcmp(line, "quit") == 0)
                break;
            if (*line)
                command(mc, line, brokers);
        }
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}
