package testenv

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	kafkaImage    = "apache/kafka:3.9.1"
	postgresImage = "postgres:16-alpine"

	kafkaPort     = "9093/tcp"
	starterScript = "/tmp/testcontainers_start.sh"
	// The advertised address is the host's mapped port, known only after
	// the container starts, so the container waits for this script (the
	// approach of testcontainers-go's own Kafka module, which supports only
	// Confluent images in the version we can use).
	starterContent = `#!/bin/bash
export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://%s,BROKER://%s:9092
exec /etc/kafka/docker/run
`
	// kafkaStartup bounds the wait for "Kafka Server started" (the
	// library's default is 60 s): several test binaries start a broker
	// each at once, and a laptop's Docker VM is often small.
	kafkaStartup = 3 * time.Minute
)

// startKafkaContainer runs single-node Apache Kafka in KRaft mode and
// returns the host:port clients use.
func startKafkaContainer(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaStartup+time.Minute)
	defer cancel()
	c, err := testcontainers.Run(ctx, kafkaImage,
		testcontainers.WithExposedPorts(kafkaPort),
		testcontainers.WithEnv(map[string]string{
			"CLUSTER_ID":                                     "shopflow-testenv-0001",
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://0.0.0.0:9093,BROKER://0.0.0.0:9092,CONTROLLER://0.0.0.0:9094",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "BROKER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9094",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS":             "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
			"KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS":             "1000",
			// The image's default heap is 1 GB, fixed; a test broker
			// needs far less, and several run at once.
			"KAFKA_HEAP_OPTS": "-Xmx512m -Xms256m",
		}),
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", "while [ ! -f "+starterScript+" ]; do sleep 0.1; done; bash "+starterScript),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{func(ctx context.Context, c testcontainers.Container) error {
				if err := wait.ForMappedPort(kafkaPort).WaitUntilReady(ctx, c); err != nil {
					return fmt.Errorf("wait for mapped port: %w", err)
				}
				endpoint, err := c.PortEndpoint(ctx, kafkaPort, "")
				if err != nil {
					return fmt.Errorf("port endpoint: %w", err)
				}
				inspect, err := c.Inspect(ctx)
				if err != nil {
					return fmt.Errorf("inspect: %w", err)
				}
				script := fmt.Sprintf(starterContent, endpoint, inspect.Config.Hostname)
				if err := c.CopyToContainer(ctx, []byte(script), starterScript, 0o755); err != nil {
					return fmt.Errorf("copy starter script: %w", err)
				}
				return wait.ForLog("Kafka Server started").WithStartupTimeout(kafkaStartup).WaitUntilReady(ctx, c)
			}},
		}),
	)
	if err != nil {
		return "", err
	}
	return c.PortEndpoint(ctx, kafkaPort, "")
}

// startPostgresContainer runs PostgreSQL and returns its superuser's URL.
func startPostgresContainer(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c, err := tcpostgres.Run(ctx, postgresImage,
		tcpostgres.WithDatabase("postgres"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies())
	if err != nil {
		return "", err
	}
	return c.ConnectionString(ctx, "sslmode=disable")
}

// dockerAnswers reports whether a Docker engine answers, and if not, why.
func dockerAnswers(ctx context.Context) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		if host := os.Getenv("DOCKER_HOST"); host != "" {
			return false, "DOCKER_HOST=" + host + ": " + firstLine(err.Error())
		}
		// testcontainers' own words are those of the last place it
		// looked ("rootless Docker not found"), which reads as if a
		// rootless Docker were wanted.
		return false, "no Docker engine found (DOCKER_HOST is unset; looked for ~/.testcontainers.properties' tc.host, " +
			"the docker context, /var/run/docker.sock and rootless Docker's sockets: " + firstLine(err.Error()) + ")"
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		return false, "the Docker engine at " + cli.DaemonHost() + " does not answer: " + firstLine(err.Error())
	}
	return true, ""
}
