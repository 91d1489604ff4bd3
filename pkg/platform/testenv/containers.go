package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/authconfig"
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

// defaultPull bounds the image pulls. A pull the engine refuses with an
// answer that will not change (4xx: not found, unauthorized, Docker Hub's
// rate limit; 500: dockerd's answer when it cannot reach the registry) is
// not tried again; any other
// failure (a 503) is tried 3 times in all, 2 s and then 4 s apart, so a
// test binary gives up within seconds, not after testcontainers' own
// backoff of up to 5 minutes in each of the two dozen test binaries. A
// pull that has begun is given up only when the engine has reported
// nothing for 2 minutes: a slow download keeps reporting progress, a hung
// registry connection does not.
var defaultPull = pullPolicy{attempts: 3, delay: 2 * time.Second, stall: 2 * time.Minute}

type pullPolicy struct {
	attempts int           // pulls tried in all, a permanent failure ending them early
	delay    time.Duration // before the second attempt, doubled for each next one
	stall    time.Duration // a pull the engine reports nothing about for this long is given up
}

// embeddedHint ends every error of a container that did not start.
const embeddedHint = "; SHOPFLOW_TESTENV=embedded runs the tests on the embedded broker and the local PostgreSQL instead"

// startKafkaContainer runs single-node Apache Kafka in KRaft mode and
// returns the host:port clients use.
func startKafkaContainer(ctx context.Context) (string, error) {
	if err := pullImages(ctx, kafkaImage); err != nil {
		return "", err
	}
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
	removeAtExit(c) // a container that failed to start included
	if err != nil {
		return "", err
	}
	return c.PortEndpoint(ctx, kafkaPort, "")
}

// startPostgresContainer runs PostgreSQL and returns its superuser's URL.
func startPostgresContainer(ctx context.Context) (string, error) {
	if err := pullImages(ctx, postgresImage); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c, err := tcpostgres.Run(ctx, postgresImage,
		tcpostgres.WithDatabase("postgres"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies())
	if c != nil {
		dc, _ := c.Container.(*testcontainers.DockerContainer)
		removeAtExit(dc)
	}
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

// pullImages makes sure the images a container needs are present (image,
// and Ryuk's when testcontainers runs its reaper), pulling each within
// defaultPull's bounds; testcontainers then finds them present and pulls
// nothing itself.
func pullImages(ctx context.Context, image string) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	images := []string{image}
	if !testcontainers.ReadConfig().Config.RyukDisabled {
		images = append(images, testcontainers.ReaperDefaultImage)
	}
	for _, img := range images {
		name := hubImage(img)
		if err := defaultPull.pull(ctx, cli.Client, name, registryAuth(ctx, name)); err != nil {
			return err
		}
	}
	return nil
}

// hubImage is the name testcontainers runs a Docker Hub image under: with
// a hub.image.name.prefix (TESTCONTAINERS_HUB_IMAGE_NAME_PREFIX, for a
// registry mirror) it is prefixed, as testcontainers' substitutor does
// for an image that names no registry.
func hubImage(image string) string {
	if p := testcontainers.ReadConfig().Config.HubImageNamePrefix; p != "" {
		return path.Join(p, image)
	}
	return image
}

// registryAuth is the encoded credentials testcontainers would send for
// image (from ~/.docker/config.json, for image's registry: a mirror's
// when hubImage prefixed one), or "" for none: a developer logged in to
// Docker Hub keeps the higher pull rate.
func registryAuth(ctx context.Context, image string) string {
	_, auth, err := testcontainers.DockerImageAuth(ctx, image)
	if err != nil {
		return ""
	}
	enc, err := authconfig.Encode(auth)
	if err != nil {
		return ""
	}
	return enc
}

// errPullStalled ends a pull the engine reports nothing about for a
// while.
var errPullStalled = errors.New("the engine reported no progress")

// pull pulls image unless the engine has it, within p's bounds.
func (p pullPolicy) pull(ctx context.Context, cli *client.Client, image, auth string) error {
	if _, err := cli.ImageInspect(ctx, image); err == nil {
		return nil
	}
	delay := p.delay
	for attempt := 1; ; attempt++ {
		err := p.pullOnce(ctx, cli, image, auth)
		if err == nil {
			return nil
		}
		if attempt >= p.attempts || permanentPullError(err) || ctx.Err() != nil {
			return fmt.Errorf("pull %s (attempt %d of at most %d): %w", image, attempt, p.attempts, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("pull %s: %w (after %d attempts, the last: %v)", image, ctx.Err(), attempt, err)
		}
		delay *= 2
	}
}

// pullOnce is one pull, read to its end.
func (p pullPolicy) pullOnce(ctx context.Context, cli *client.Client, image, auth string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := fmt.Errorf("%w for %v", errPullStalled, p.stall)
	stall := time.AfterFunc(p.stall, func() { cancel(stalled) })
	defer stall.Stop()
	resp, err := cli.ImagePull(ctx, image, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errPullStalled) {
			return cause
		}
		return err
	}
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errPullStalled) {
				return cause
			}
			return err
		}
		if m.Error != nil {
			return m.Error
		}
		stall.Reset(p.stall)
	}
	return nil
}

// permanentPullError reports whether the engine's answer to a pull will
// be the same on the next try. testcontainers' list (not found, invalid,
// unauthorized, forbidden, not implemented, internal: dockerd answers a
// registry it cannot reach 500), and too many requests (Docker Hub's pull
// rate limit lasts hours).
func permanentPullError(err error) bool {
	for _, is := range []func(error) bool{cerrdefs.IsNotFound, cerrdefs.IsInvalidArgument, cerrdefs.IsUnauthorized,
		cerrdefs.IsPermissionDenied, cerrdefs.IsNotImplemented, cerrdefs.IsInternal, cerrdefs.IsResourceExhausted} {
		if is(err) {
			return true
		}
	}
	return false
}
