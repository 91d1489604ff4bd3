package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"

	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/services/inventory"
	"github.com/shopflow/shopflow/services/order"
	"github.com/shopflow/shopflow/services/payment"
	"github.com/shopflow/shopflow/services/shipping"
)

// The compose file is checked here against the services' real
// configuration (their Config structs, defaults, Spec), since no Docker
// engine runs where the tests do. Each check names what drifted.

// composeService is what the tests know about one application service
// beyond deployedService: its configuration type (for the variable names),
// a loader for it (the real validation), and whether compose may scale it.
type composeService struct {
	deployedService
	configType reflect.Type
	load       func(env map[string]string) (config.Common, error)
	scalable   bool
}

func composeServices() []composeService {
	loader := func(defaultAddr string, load func(...config.Option) (config.Common, error)) func(map[string]string) (config.Common, error) {
		return func(env map[string]string) (config.Common, error) {
			return load(config.WithEnvironment(env), config.WithDefault("HTTP_ADDR", defaultAddr))
		}
	}
	ds := deployedServices()
	return []composeService{
		{deployedService: ds[0], configType: reflect.TypeFor[order.Config](), scalable: false,
			load: loader(order.DefaultHTTPAddr, func(o ...config.Option) (config.Common, error) {
				c, err := config.Load[order.Config](o...)
				return c.Common, err
			})},
		{deployedService: ds[1], configType: reflect.TypeFor[payment.Config](), scalable: true,
			load: loader(payment.DefaultHTTPAddr, func(o ...config.Option) (config.Common, error) {
				c, err := config.Load[payment.Config](o...)
				return c.Common, err
			})},
		{deployedService: ds[2], configType: reflect.TypeFor[inventory.Config](), scalable: true,
			load: loader(inventory.DefaultHTTPAddr, func(o ...config.Option) (config.Common, error) {
				c, err := config.Load[inventory.Config](o...)
				return c.Common, err
			})},
		{deployedService: ds[3], configType: reflect.TypeFor[shipping.Config](), scalable: true,
			load: loader(shipping.DefaultHTTPAddr, func(o ...config.Option) (config.Common, error) {
				c, err := config.Load[shipping.Config](o...)
				return c.Common, err
			})},
	}
}

// loadCompose loads docker-compose.yml as `docker compose` would, with
// every profile enabled and only env as the environment (no process
// environment, no .env file), so the file's own defaults are what is
// checked unless a test overrides one.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithName("shopflow"), cli.WithWorkingDirectory(root), cli.WithEnv(list),
		cli.WithProfiles(profiles), cli.WithInterpolation(true), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func mustService(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q (has %v)", name, slices.Sorted(maps.Keys(p.Services)))
	}
	return s
}

// environment flattens a service's environment, failing on variables left
// to the host (`- NAME` without a value): the stack must not depend on the
// shell it is started from.
func environment(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			t.Errorf("%s: %s has no value in docker-compose.yml", s.Name, k)
			continue
		}
		env[k] = *v
	}
	return env
}

// envNames are the variables a configuration struct reads: its `env` tags,
// through embedded and nested structs (with their envPrefix).
func envNames(typ reflect.Type, prefix string) map[string]bool {
	names := map[string]bool{}
	for f := range typ.Fields() {
		if name, ok := f.Tag.Lookup("env"); ok {
			name, _, _ = strings.Cut(name, ",")
			names[prefix+name] = true
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && (f.Anonymous || f.Tag.Get("envPrefix") != "") {
			maps.Copy(names, envNames(ft, prefix+f.Tag.Get("envPrefix")))
		}
	}
	return names
}

func TestComposeServicesAndProfiles(t *testing.T) {
	all := loadCompose(t, nil, "*")
	profiles := map[string][]string{
		"kafka": nil, "kafka-init": nil, "postgres": nil,
		"order": nil, "payment": nil, "inventory": nil, "shipping": nil,
		"prometheus": {"observability"}, "grafana": {"observability"},
		"kafka-ui": {"ui"},
	}
	if got, want := slices.Sorted(maps.Keys(all.Services)), slices.Sorted(maps.Keys(profiles)); !slices.Equal(got, want) {
		t.Errorf("services %v, want %v", got, want)
	}
	for name, want := range profiles {
		if s, ok := all.Services[name]; ok && !slices.Equal(s.Profiles, want) {
			t.Errorf("%s: profiles %v, want %v", name, s.Profiles, want)
		}
	}
	// Plain `docker compose up` starts the suite and nothing else.
	plain := loadCompose(t, nil)
	if got, want := slices.Sorted(maps.Keys(plain.Services)),
		[]string{"inventory", "kafka", "kafka-init", "order", "payment", "postgres", "shipping"}; !slices.Equal(got, want) {
		t.Errorf("docker compose up starts %v, want %v", got, want)
	}

	for name, s := range all.Services {
		// Every long-running container restarts; the one-shot does not.
		if name == "kafka-init" {
			if s.Restart != types.RestartPolicyNo && !strings.HasPrefix(s.Restart, types.RestartPolicyOnFailure) {
				t.Errorf("kafka-init: restart %q: a one-shot job must not restart after success", s.Restart)
			}
		} else if !slices.Contains([]string{types.RestartPolicyUnlessStopped, types.RestartPolicyAlways}, s.Restart) {
			t.Errorf("%s: restart %q, want unless-stopped or always", name, s.Restart)
		}
		if s.ContainerName != "" {
			t.Errorf("%s: container_name %q prevents --scale and parallel stacks", name, s.ContainerName)
		}
		if name != "kafka-init" && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0) {
			t.Errorf("%s: no healthcheck", name)
		}
		for dep, d := range s.DependsOn {
			ds, ok := all.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if ds.HealthCheck == nil || len(ds.HealthCheck.Test) == 0 {
					t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if dep != "kafka-init" {
					t.Errorf("%s waits for %s to complete; only the one-shot kafka-init completes", name, dep)
				}
			default:
				t.Errorf("%s: depends_on %s with condition %q, want service_healthy or service_completed_successfully", name, dep, d.Condition)
			}
		}
		// Host ports on loopback only: the defaults (admin token,
		// passwords) are for a developer's machine, not the LAN.
		for _, p := range s.Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s: port %d is published on all interfaces; bind it to 127.0.0.1", name, p.Target)
			}
		}
	}
}

func TestComposeApplicationServices(t *testing.T) {
	p := loadCompose(t, nil, "*")
	pgEnv := environment(t, mustService(t, p, "postgres"))
	kafkaEnv := environment(t, mustService(t, p, "kafka"))

	for _, cs := range composeServices() {
		name := cs.spec.Name
		t.Run(name, func(t *testing.T) {
			s := mustService(t, p, name)
			env := environment(t, s)

			// Every variable is one the service reads.
			known := envNames(cs.configType, "")
			if !known["DATABASE_URL"] || !known["KAFKA_BROKERS"] {
				t.Fatalf("%s: env tags not found in %v (reflection broke?)", cs.configType, known)
			}
			for k := range env {
				if !known[k] {
					t.Errorf("%s: %s is not a variable the service reads (it reads %v)", name, k, slices.Sorted(maps.Keys(known)))
				}
			}
			// The ones with no usable default in a container are set.
			for _, k := range []string{"DATABASE_URL", "KAFKA_BROKERS", "HTTP_ADDR"} {
				if env[k] == "" {
					t.Errorf("%s: %s is not set", name, k)
				}
			}
			if known["ADMIN_TOKEN"] && env["ADMIN_TOKEN"] == "" {
				t.Errorf("%s: ADMIN_TOKEN is not set: its admin endpoints (shop seed) would answer 403", name)
			}

			// The service accepts the environment as a whole.
			common, err := cs.load(env)
			if err != nil {
				t.Fatalf("%s rejects its compose environment: %v", name, err)
			}

			// HTTP: the healthcheck and the published port are the
			// service's real port.
			_, port, err := net.SplitHostPort(common.HTTPAddr)
			if err != nil || port == "0" {
				t.Fatalf("%s: HTTP_ADDR %q has no fixed port", name, common.HTTPAddr)
			}
			checkServiceHealthcheck(t, s, port)
			for _, pc := range s.Ports {
				if strconv.Itoa(int(pc.Target)) != port {
					t.Errorf("%s: publishes container port %d, but HTTP_ADDR listens on %s", name, pc.Target, port)
				}
				if cs.scalable && pc.Published != "" {
					t.Errorf("%s: fixed host port %s breaks `docker compose up --scale %s=3`; publish %d alone", name, pc.Published, name, pc.Target)
				}
			}
			if !cs.scalable && len(s.Ports) == 0 {
				t.Errorf("%s: the API is not published to the host", name)
			}

			// Shutdown: Docker waits longer than the service's own drain
			// delay and deadline, which comes on top of it.
			if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= common.ShutdownDrainDelay+common.ShutdownTimeout {
				t.Errorf("%s: stop_grace_period %v must exceed SHUTDOWN_DRAIN_DELAY %s + SHUTDOWN_TIMEOUT %s, or Docker kills a draining service",
					name, s.StopGracePeriod, common.ShutdownDrainDelay, common.ShutdownTimeout)
			}

			// Kafka: the brokers are the kafka service's in-network listener.
			if !slices.Equal(common.KafkaBrokers, []string{"kafka:9092"}) {
				t.Errorf("%s: KAFKA_BROKERS %v, want [kafka:9092]", name, common.KafkaBrokers)
			}
			if !slices.Contains(strings.Split(kafkaEnv["KAFKA_ADVERTISED_LISTENERS"], ","), "PLAINTEXT://kafka:9092") {
				t.Errorf("kafka does not advertise PLAINTEXT://kafka:9092 (KAFKA_ADVERTISED_LISTENERS=%q)", kafkaEnv["KAFKA_ADVERTISED_LISTENERS"])
			}
			if common.KafkaTopicPrefix != "" {
				t.Errorf("%s: KAFKA_TOPIC_PREFIX %q: kafka-init creates the unprefixed topics", name, common.KafkaTopicPrefix)
			}

			// PostgreSQL: its own role, password and schema.
			db, err := pgconn.ParseConfig(common.DatabaseURL)
			if err != nil {
				t.Fatalf("%s: DATABASE_URL: %v", name, err)
			}
			if db.User != cs.role {
				t.Errorf("%s: connects as %q, want its own role %q", name, db.User, cs.role)
			}
			if db.Host != "postgres" || db.Port != 5432 || db.Database != pgEnv["POSTGRES_DB"] {
				t.Errorf("%s: DATABASE_URL points at %s:%d/%s, want postgres:5432/%s", name, db.Host, db.Port, db.Database, pgEnv["POSTGRES_DB"])
			}
			if pw, ok := pgEnv[cs.passwordVar]; !ok || db.Password != pw {
				t.Errorf("%s: DATABASE_URL's password is not the postgres service's %s, which 02-role-passwords.sh sets", name, cs.passwordVar)
			}
			if sp := db.RuntimeParams["search_path"]; sp != cs.spec.Schema {
				t.Errorf("%s: search_path %q in DATABASE_URL, want its schema %q", name, sp, cs.spec.Schema)
			}

			// Dependencies: the data stores healthy, the topics created.
			want := map[string]string{
				"postgres":   types.ServiceConditionHealthy,
				"kafka":      types.ServiceConditionHealthy,
				"kafka-init": types.ServiceConditionCompletedSuccessfully,
			}
			got := map[string]string{}
			for dep, d := range s.DependsOn {
				got[dep] = d.Condition
			}
			if !maps.Equal(got, want) {
				t.Errorf("%s: depends_on %v, want %v", name, got, want)
			}

			// Image: built from the one Dockerfile for this service.
			if s.Build == nil || s.Build.Context != repoRoot(t) {
				t.Fatalf("%s: not built from the repository root (build: %+v)", name, s.Build)
			}
			if df := s.Build.Dockerfile; df != "" && df != "Dockerfile" {
				t.Errorf("%s: dockerfile %q, want the shared Dockerfile", name, df)
			}
			if arg := s.Build.Args["SERVICE"]; arg == nil || *arg != name {
				t.Errorf("%s: build arg SERVICE=%v, want %s", name, arg, name)
			}
			// With image: and build: and no pull_policy, Compose pulls
			// the image first and builds only if the registry has none.
			if s.PullPolicy != types.PullPolicyBuild {
				t.Errorf("%s: pull_policy %q, want %q: Compose would first try to pull %s from a registry",
					name, s.PullPolicy, types.PullPolicyBuild, s.Image)
			}
			if _, err := os.Stat(filepath.Join(repoRoot(t), "services", name, "cmd", name, "main.go")); err != nil {
				t.Errorf("%s: the Dockerfile builds ./cmd/%s: %v", name, name, err)
			}
		})
	}
}

// checkServiceHealthcheck wants the image's probe binary asking the
// service's own port for /readyz.
func checkServiceHealthcheck(t *testing.T, s types.ServiceConfig, port string) {
	t.Helper()
	hc := s.HealthCheck
	if hc == nil || len(hc.Test) != 3 || hc.Test[0] != "CMD" || hc.Test[1] != "/app/healthcheck" {
		t.Errorf("%s: healthcheck %v, want [CMD /app/healthcheck http://127.0.0.1:%s/readyz]", s.Name, hc, port)
		return
	}
	u, err := url.Parse(hc.Test[2])
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() != port || u.Path != "/readyz" {
		t.Errorf("%s: healthcheck probes %q, want http://127.0.0.1:%s/readyz", s.Name, hc.Test[2], port)
	}
	if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil || *hc.Retries == 0 ||
		time.Duration(*hc.Timeout) >= time.Duration(*hc.Interval) {
		t.Errorf("%s: healthcheck needs interval, a shorter timeout, and retries", s.Name)
	}
}

// TestComposeConnectionBudget: five replicas of every service fit in
// PostgreSQL's max_connections with their pools full.
func TestComposeConnectionBudget(t *testing.T) {
	const replicas, extraPerReplica, reserved = 5, 5, 3 // extra: LISTEN, payment's gateway pool; reserved: superuser_reserved_connections
	p := loadCompose(t, nil)
	pgs := mustService(t, p, "postgres")
	m := regexp.MustCompile(`max_connections=(\d+)`).FindStringSubmatch(strings.Join(pgs.Command, " "))
	maxConns := 100 // PostgreSQL's default
	if m != nil {
		maxConns, _ = strconv.Atoi(m[1])
	}
	need := 0
	for _, cs := range composeServices() {
		common, err := cs.load(environment(t, mustService(t, p, cs.spec.Name)))
		if err != nil {
			t.Fatal(err)
		}
		need += replicas * (int(common.DBMaxConns) + extraPerReplica)
	}
	if need > maxConns-reserved {
		t.Errorf("%d replicas of each service may open %d connections; postgres allows %d (raise max_connections)", replicas, need, maxConns-reserved)
	}
}

// TestComposeOverrides: the variables the file documents take effect, and
// a role's password stays one value for the database and the service.
func TestComposeOverrides(t *testing.T) {
	p := loadCompose(t, map[string]string{
		"PAYMENT_DB_PASSWORD": "s3cret-override",
		"LOG_LEVEL":           "debug",
		"ORDER_HOST_PORT":     "18080",
		"KAFKA_HOST_PORT":     "39092",
	})
	if got := environment(t, mustService(t, p, "postgres"))["PAYMENT_DB_PASSWORD"]; got != "s3cret-override" {
		t.Errorf("postgres: PAYMENT_DB_PASSWORD = %q, want the override", got)
	}
	env := environment(t, mustService(t, p, "payment"))
	if db, err := pgconn.ParseConfig(env["DATABASE_URL"]); err != nil || db.Password != "s3cret-override" {
		t.Errorf("payment: DATABASE_URL does not carry PAYMENT_DB_PASSWORD (err %v)", err)
	}
	if env["LOG_LEVEL"] != "debug" {
		t.Errorf("payment: LOG_LEVEL %q, want the override", env["LOG_LEVEL"])
	}
	if ports := mustService(t, p, "order").Ports; len(ports) != 1 || ports[0].Published != "18080" {
		t.Errorf("order: ports %+v, want host port 18080", ports)
	}
	// The host listener is advertised on the port it is published on.
	k := mustService(t, p, "kafka")
	if ports := k.Ports; len(ports) != 1 || ports[0].Published != "39092" ||
		!strings.Contains(environment(t, k)["KAFKA_ADVERTISED_LISTENERS"], "EXTERNAL://localhost:39092") {
		t.Errorf("kafka: KAFKA_HOST_PORT must move both the published port and the advertised EXTERNAL listener")
	}
}

// wantTopics is every topic the services declare plus the dead-letter
// topic of each consumer group, with its partition count (the inbox
// creates dead-letter topics with one partition).
func wantTopics(t *testing.T) map[string]int {
	t.Helper()
	want := map[string]int{}
	add := func(name string, partitions int) {
		if prev, ok := want[name]; ok && prev != partitions {
			t.Fatalf("services disagree on %s: %d and %d partitions", name, prev, partitions)
		}
		want[name] = partitions
	}
	for _, s := range deployedServices() {
		for _, tp := range s.spec.Topics {
			add(tp.Name, cmpOrInt(tp.Partitions, kafkatopics.DefaultPartitions))
		}
		if len(s.spec.ConsumeTopics) > 0 {
			add(events.DLQTopic(s.spec.Name), 1)
		}
	}
	return want
}

// TestComposeKafkaInit runs kafka-init's command as compose would, with a
// stand-in for kafka-topics.sh that records its arguments, and compares
// the topics it creates with the ones the services declare.
func TestComposeKafkaInit(t *testing.T) {
	p := loadCompose(t, nil)
	s := mustService(t, p, "kafka-init")
	kafka := mustService(t, p, "kafka")
	if s.Image != kafka.Image {
		t.Errorf("kafka-init uses %s, kafka %s: use the same image so the tools match the broker", s.Image, kafka.Image)
	}
	if d, ok := s.DependsOn["kafka"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("kafka-init must wait for kafka to be healthy (depends_on %v)", s.DependsOn)
	}
	if !slices.Equal([]string(s.Entrypoint), []string{"/bin/bash", "-c"}) || len(s.Command) != 1 {
		t.Fatalf("kafka-init: entrypoint %q command %q, want [/bin/bash -c] and one script", s.Entrypoint, s.Command)
	}
	const tool = "/opt/kafka/bin/kafka-topics.sh"
	script := s.Command[0]
	if !strings.Contains(script, tool) {
		t.Fatalf("kafka-init does not run %s:\n%s", tool, script)
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "kafka-topics.sh")
	log := filepath.Join(dir, "calls")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nprintf '%s\\n' \"$*\" >> \""+log+"\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", strings.ReplaceAll(script, tool, fake))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range environment(t, s) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kafka-init's script fails: %v\n%s", err, out)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("kafka-init created no topic: %v", err)
	}
	got := map[string]int{}
	for line := range strings.Lines(strings.TrimSpace(string(calls))) {
		args := strings.Fields(line)
		flag := func(name string) string {
			if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
				return args[i+1]
			}
			return ""
		}
		if !slices.Contains(args, "--create") || !slices.Contains(args, "--if-not-exists") {
			t.Errorf("kafka-topics.sh %s: want --create --if-not-exists (the job reruns on every up)", line)
		}
		if flag("--bootstrap-server") != "kafka:9092" || flag("--replication-factor") != "1" {
			t.Errorf("kafka-topics.sh %s: want --bootstrap-server kafka:9092 --replication-factor 1", line)
		}
		n, err := strconv.Atoi(flag("--partitions"))
		if err != nil {
			t.Errorf("kafka-topics.sh %s: no partition count", line)
		}
		got[flag("--topic")] = n
		// Dead letters are kept until replayed, as the services create
		// their DLQ topics (inbox.DLQTopicConfigs); other topics keep the
		// broker's retention.
		topic, retention := flag("--topic"), flag("--config")
		if isDLQ := strings.HasPrefix(topic, "shop.dlq."); isDLQ != (retention == "retention.ms=-1") {
			t.Errorf("kafka-topics.sh %s: --config %q; want retention.ms=-1 for dead-letter topics only", line, retention)
		}
	}
	if want := wantTopics(t); !maps.Equal(got, want) {
		t.Errorf("kafka-init creates %v\nthe services declare  %v", got, want)
	}
}

func TestComposeKafkaAndPostgres(t *testing.T) {
	p := loadCompose(t, nil)
	k := mustService(t, p, "kafka")
	env := environment(t, k)
	if !strings.HasPrefix(k.Image, "apache/kafka:") {
		t.Errorf("kafka image %s, want the official apache/kafka", k.Image)
	}
	for key, want := range map[string]string{
		"KAFKA_PROCESS_ROLES":                                    "broker,controller",
		"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                        "false",
		"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":                 "1",
		"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR":         "1",
		"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":                    "1",
		"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
		"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR":            "1",
	} {
		if env[key] != want {
			t.Errorf("kafka: %s=%q, want %q", key, env[key], want)
		}
	}
	// The image refuses to start in KRaft mode without CLUSTER_ID, and
	// Kafka wants a base64url UUID.
	if id, err := base64.RawURLEncoding.DecodeString(env["CLUSTER_ID"]); err != nil || len(id) != 16 || len(env["CLUSTER_ID"]) != 22 {
		t.Errorf("kafka: CLUSTER_ID %q is not 16 bytes of unpadded base64url", env["CLUSTER_ID"])
	}
	if !strings.Contains(env["KAFKA_CONTROLLER_QUORUM_VOTERS"], env["KAFKA_NODE_ID"]+"@kafka:") {
		t.Errorf("kafka: node %q is not in the quorum %q", env["KAFKA_NODE_ID"], env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
	}
	if !slices.ContainsFunc(k.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == env["KAFKA_LOG_DIRS"] }) {
		t.Errorf("kafka: KAFKA_LOG_DIRS %q is not on a volume: the log is lost with the container", env["KAFKA_LOG_DIRS"])
	}
	if hc := strings.Join(k.HealthCheck.Test, " "); !strings.Contains(hc, "--bootstrap-server localhost:9092") {
		t.Errorf("kafka healthcheck %q does not ask the broker", hc)
	}
	if k.StopGracePeriod == nil || time.Duration(*k.StopGracePeriod) < 30*time.Second {
		t.Errorf("kafka: stop_grace_period %v, want at least 30s: Docker's 10 s default can SIGKILL a controlled shutdown", k.StopGracePeriod)
	}

	pgs := mustService(t, p, "postgres")
	// The official image, its major version and Debian (or Alpine)
	// release pinned: a data directory outlives the container, and a new
	// major needs pg_upgrade, a new C library may sort text differently.
	tag := regexp.MustCompile(`^postgres:(\d+)(?:\.\d+)?-([a-z][a-z0-9.]*)$`).FindStringSubmatch(pgs.Image)
	if tag == nil {
		t.Fatalf("postgres image %s, want the official postgres with its major and OS pinned (postgres:17-trixie)", pgs.Image)
	}
	major, _ := strconv.Atoi(tag[1])
	pgEnv := environment(t, pgs)
	if pgEnv["POSTGRES_DB"] == "" || pgEnv["POSTGRES_USER"] == "" || pgEnv["POSTGRES_PASSWORD"] == "" {
		t.Errorf("postgres: POSTGRES_DB, POSTGRES_USER and POSTGRES_PASSWORD must be set (02-role-passwords.sh uses the first two)")
	}
	if !slices.ContainsFunc(pgs.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Target == "/docker-entrypoint-initdb.d" && v.Source == initDir(t)
	}) {
		t.Errorf("postgres: deploy/postgres/init is not mounted at /docker-entrypoint-initdb.d (volumes %+v)", pgs.Volumes)
	}
	// The image's data volume: PGDATA=/var/lib/postgresql/data up to 17;
	// from 18 on PGDATA is /var/lib/postgresql/<major>/docker, and the
	// entrypoint refuses to start with a mount at .../data.
	dataVolume := "/var/lib/postgresql/data"
	if major >= 18 {
		dataVolume = "/var/lib/postgresql"
	}
	for _, v := range pgs.Volumes {
		if v.Type == types.VolumeTypeVolume && strings.HasPrefix(v.Target, "/var/lib/postgresql") && v.Target != dataVolume {
			t.Errorf("postgres %d: volume %s at %s, want it at %s", major, v.Source, v.Target, dataVolume)
		}
	}
	if !slices.ContainsFunc(pgs.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == dataVolume
	}) {
		t.Errorf("postgres %d: no named volume at %s: the data directory would be lost with the container", major, dataVolume)
	}
	// Every password variable the init script reads is given to it.
	sh, err := os.ReadFile(filepath.Join(initDir(t), "02-role-passwords.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range deployedServices() {
		if !strings.Contains(string(sh), "set_password "+s.role+` "${`+s.passwordVar+`:-`) {
			t.Errorf("02-role-passwords.sh does not set %s from %s", s.role, s.passwordVar)
		}
		if pgEnv[s.passwordVar] == "" {
			t.Errorf("postgres: %s is not passed to the init scripts", s.passwordVar)
		}
	}
	hc := strings.Join(pgs.HealthCheck.Test, " ")
	if !strings.Contains(hc, "pg_isready") || !strings.Contains(hc, "-h 127.0.0.1") {
		t.Errorf("postgres healthcheck %q: want pg_isready over TCP (-h 127.0.0.1), which fails while the init scripts run", hc)
	}
	for _, s := range deployedServices() {
		if !strings.Contains(hc, "'"+s.role+"'") {
			t.Errorf("postgres healthcheck %q does not check role %s: a failed first init would pass as healthy without it", hc, s.role)
		}
	}
}

// TestComposePostgresHealthcheck runs the postgres service's healthcheck
// command, as compose hands it to the container's /bin/sh, against a
// private cluster laid out as the image's (superuser postgres trusted on
// the Unix socket, database shopflow, TCP on 127.0.0.1): it must stay
// unhealthy until deploy/postgres/init has made every service role with
// its password, since the image never reruns the scripts after a first
// start that failed half-way. A private cluster, because roles are
// cluster-wide and the shared server's may exist already.
func TestComposePostgresHealthcheck(t *testing.T) {
	t.Parallel()
	pgs := mustService(t, loadCompose(t, nil), "postgres")
	test := pgs.HealthCheck.Test
	if len(test) != 2 || test[0] != "CMD-SHELL" {
		t.Fatalf("postgres healthcheck %q: want [CMD-SHELL <command>]", test)
	}
	command := test[1]

	dir := clusterDir(t)
	port := clusterPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := suite.ResolvePostgres(ctx, suite.PostgresPrivate, dir, port, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("this test runs its own PostgreSQL cluster (roles are cluster-wide): %v", err)
	}
	t.Cleanup(pg.Stop)
	if db, err := pgconn.ParseConfig(pg.URL); err != nil || db.Database != environment(t, pgs)["POSTGRES_DB"] {
		t.Fatalf("private cluster's database %s (%v), want the compose POSTGRES_DB", pg.URL, err)
	}

	healthy := func() (bool, string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
		// As in the container: psql without -h takes the Unix socket.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PGHOST=" + dir, "PGPORT=" + strconv.Itoa(port)}
		out, err := cmd.CombinedOutput()
		if cctx.Err() != nil {
			t.Fatalf("postgres healthcheck did not finish: %v\n%s", err, out)
		}
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("postgres healthcheck: %v", err)
		}
		return err == nil, string(out)
	}

	if ok, _ := healthy(); ok {
		t.Fatalf("postgres healthcheck passes before the init scripts ran (no service roles):\n%s", command)
	}
	passwords := map[string]string{}
	for _, s := range deployedServices() {
		passwords[s.passwordVar] = "pw-" + s.role
	}
	runInitScripts(t, pg.URL, passwords)
	if ok, out := healthy(); !ok {
		t.Fatalf("postgres healthcheck fails once the init scripts ran:\n%s\n%s", command, out)
	}
	admin, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for _, s := range deployedServices() {
		// 01-schemas-and-roles.sql ran, 02-role-passwords.sh did not
		// reach this role.
		if _, err := admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{s.role}.Sanitize()+" PASSWORD NULL"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := healthy(); ok {
			t.Errorf("postgres healthcheck passes with role %s left without its password", s.role)
		}
		runInitScripts(t, pg.URL, passwords)
	}
}

// TestDockerfile checks what compose relies on in the image: the SERVICE
// build argument, a static non-root final stage, and the probe binary at
// the path the healthchecks run.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a multi-stage build, found %d stages", len(stages))
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []string{"gcr.io/distroless/static", "USER nonroot", `ENTRYPOINT ["/app/service"]`, "/out/healthcheck /app/healthcheck"} {
		if !strings.Contains(final, want) {
			t.Errorf("Dockerfile's final stage lacks %q", want)
		}
	}
	for _, want := range []string{"ARG SERVICE", "CGO_ENABLED=0", "GOWORK=off", "./cmd/${SERVICE}", "cd deploy/healthcheck"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The build copies what a service module's replace directives reach.
	for _, s := range deployedServices() {
		gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "services", s.spec.Name, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`=>\s*\.\./\.\./(\S+)`).FindAllStringSubmatch(string(gomod), -1) {
			if !strings.HasPrefix(m[1], "pkg/") {
				t.Errorf("services/%s/go.mod replaces with ../../%s, which the Dockerfile does not copy (only pkg/)", s.spec.Name, m[1])
			}
		}
	}
	ignore, err := os.ReadFile(filepath.Join(repoRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(ignore)) {
		line = strings.TrimSpace(line)
		if line == "pkg" || line == "services" || strings.HasPrefix(line, "deploy/healthcheck") || line == "deploy" {
			t.Errorf(".dockerignore excludes %q, which the build needs", line)
		}
	}
}

// TestComposeObservability checks the observability profile against the
// services: Prometheus scrapes each one on its port (every replica, by
// DNS), and the provisioned dashboard uses the provisioned data source and
// the metrics the services export or are agreed to export.
func TestComposeObservability(t *testing.T) {
	p := loadCompose(t, nil, "observability")
	prom := mustService(t, p, "prometheus")
	promFile := mountedFile(t, prom, "/etc/prometheus/prometheus.yml")
	if !slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus command %q does not read the mounted config", prom.Command)
	}
	// command: replaces the image's CMD, --storage.tsdb.path included:
	// without it the TSDB lands wherever the image's WORKDIR is.
	tsdb := ""
	for _, arg := range prom.Command {
		if p, ok := strings.CutPrefix(arg, "--storage.tsdb.path="); ok {
			tsdb = p
		}
	}
	if tsdb == "" {
		t.Errorf("prometheus command %q does not set --storage.tsdb.path", prom.Command)
	} else if !slices.ContainsFunc(prom.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && (tsdb == v.Target || strings.HasPrefix(tsdb, v.Target+"/"))
	}) {
		t.Errorf("prometheus: --storage.tsdb.path=%s is not on a named volume: the metrics are lost with the container", tsdb)
	}
	var pc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName     string `yaml:"job_name"`
			MetricsPath string `yaml:"metrics_path"`
			DNSSD       []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, promFile, &pc)
	// The shipped alert rules (tested by deploy/alerts) are mounted and
	// loaded; every rule file Prometheus reads is one the compose mounts.
	alerts := mountedFile(t, prom, "/etc/prometheus/alerts.yml")
	if want, _ := filepath.Abs(filepath.Join(repoRoot(t), "deploy", "prometheus", "alerts.yml")); alerts != want {
		t.Errorf("prometheus: /etc/prometheus/alerts.yml is %s, want %s", alerts, want)
	}
	if !slices.Contains(pc.RuleFiles, "/etc/prometheus/alerts.yml") {
		t.Errorf("prometheus rule_files %q does not load /etc/prometheus/alerts.yml", pc.RuleFiles)
	}
	for _, f := range pc.RuleFiles {
		mountedFile(t, prom, f)
	}
	jobs := map[string]int{}
	for _, sc := range pc.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("prometheus job %s scrapes %s, want /metrics", sc.JobName, sc.MetricsPath)
		}
		if len(sc.DNSSD) != 1 || sc.DNSSD[0].Type != "A" || !slices.Equal(sc.DNSSD[0].Names, []string{sc.JobName}) {
			t.Errorf("prometheus job %s: want one A-record dns_sd_config on the service name (finds every replica)", sc.JobName)
			continue
		}
		jobs[sc.JobName] = sc.DNSSD[0].Port
	}
	for _, cs := range composeServices() {
		common, err := cs.load(environment(t, mustService(t, p, cs.spec.Name)))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(common.HTTPAddr)
		if got, ok := jobs[cs.spec.Name]; !ok || strconv.Itoa(got) != port {
			t.Errorf("prometheus scrapes %s on port %d, but it listens on %s", cs.spec.Name, got, port)
		}
	}

	graf := mustService(t, p, "grafana")
	if d, ok := graf.DependsOn["prometheus"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("grafana must wait for prometheus to be healthy")
	}
	if hc := graf.HealthCheck; hc == nil || hc.StartPeriod == nil || time.Duration(*hc.StartPeriod) < time.Minute {
		t.Errorf("grafana: healthcheck start_period under 60s: its first start (database migrations) can count as failures and show it unhealthy")
	}
	// The image ships provisioning/plugins and provisioning/alerting;
	// hiding them under a mount of the whole directory makes Grafana log
	// an error for each at every start.
	for _, v := range graf.Volumes {
		if v.Target == "/etc/grafana/provisioning" {
			t.Errorf("grafana: %s is mounted over the whole /etc/grafana/provisioning; mount its datasources and dashboards subdirectories", v.Source)
		}
	}
	var dsFile struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(mountedFile(t, graf, "/etc/grafana/provisioning/datasources"), "prometheus.yml"), &dsFile)
	if len(dsFile.Datasources) != 1 || dsFile.Datasources[0].Type != "prometheus" || dsFile.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("grafana data sources %+v, want the compose prometheus", dsFile.Datasources)
	}
	dsUID := dsFile.Datasources[0].UID
	var provFile struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(mountedFile(t, graf, "/etc/grafana/provisioning/dashboards"), "shopflow.yml"), &provFile)
	if len(provFile.Providers) != 1 {
		t.Fatalf("grafana dashboard providers: %+v", provFile.Providers)
	}
	dashDir := mountedFile(t, graf, provFile.Providers[0].Options.Path)
	checkDashboard(t, filepath.Join(dashDir, "shopflow.json"), dsUID)

	ui := loadCompose(t, nil, "ui")
	if env := environment(t, mustService(t, ui, "kafka-ui")); env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] != "kafka:9092" {
		t.Errorf("kafka-ui: bootstrap servers %q, want kafka:9092", env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"])
	}
}

// TestComposePrometheusVersion: deploy/alerts tests the alert rules with
// the Prometheus the compose file runs. Its Go module's v0.3NN.P is
// release 3.NN.P; a rule that only a newer release can load would pass
// the test and stop the compose Prometheus from starting (and Grafana,
// which waits for it).
func TestComposePrometheusVersion(t *testing.T) {
	image := mustService(t, loadCompose(t, nil, "observability"), "prometheus").Image
	m := regexp.MustCompile(`^prom/prometheus:v(\d+)\.(\d+)\.(\d+)$`).FindStringSubmatch(image)
	if m == nil {
		t.Fatalf("prometheus image %q: want prom/prometheus:vX.Y.Z, a release deploy/alerts can require", image)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	want := fmt.Sprintf("v0.%d.%s", major*100+minor, m[3])

	gomod := filepath.Join(repoRoot(t), "deploy", "alerts", "go.mod")
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	req := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/prometheus/prometheus\s+(v\S+)`).FindSubmatch(b)
	if req == nil {
		t.Fatalf("%s does not require github.com/prometheus/prometheus", gomod)
	}
	if got := string(req[1]); got != want {
		t.Errorf("deploy/alerts tests the rules with github.com/prometheus/prometheus %s, but compose runs %s (module %s): "+
			"change one of them to match", got, image, want)
	}
}

// dashboardMetrics are the metric names the dashboard may use: those of
// pkg/platform (httpserver, outbox, inbox) and the order service's
// shop_orders. This list keeps the dashboard honest without running
// anything; roles_test.go also checks each query against the /metrics of
// the running services.
var dashboardMetrics = map[string]bool{
	"shop_http_request_duration_seconds": true,
	"shop_http_requests_in_flight":       true,
	"shop_outbox_backlog":                true,
	"shop_outbox_oldest_unsent_seconds":  true,
	"shop_outbox_published_total":        true,
	"shop_consumer_processed_total":      true,
	"shop_consumer_duplicates_total":     true,
	"shop_consumer_retries_total":        true,
	"shop_consumer_dead_lettered_total":  true,
	"shop_consumer_fetch_errors_total":   true,
	"shop_consumer_lag":                  true,
	"shop_orders":                        true,
}

func checkDashboard(t *testing.T, path, dsUID string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []target `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	metricRE := regexp.MustCompile(`\bshop_[a-z_]+`)
	// Every replica exports these whole, read from shared state (the
	// group's offsets, the schema's tables): summed across replicas they
	// count N times, so a query takes one replica's value first.
	shared := map[string]bool{"shop_consumer_lag": true, "shop_outbox_backlog": true,
		"shop_outbox_oldest_unsent_seconds": true, "shop_orders": true}
	maxFirst := regexp.MustCompile(`max by \([^)]*\) \($`)
	used := map[string]bool{}
	for _, panel := range dash.Panels {
		if panel.Type == "row" {
			continue
		}
		if panel.Datasource == nil || panel.Datasource.UID != dsUID {
			t.Errorf("dashboard panel %q does not use the provisioned data source %q", panel.Title, dsUID)
		}
		if len(panel.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", panel.Title)
		}
		for _, tg := range panel.Targets {
			if tg.Datasource.UID != dsUID {
				t.Errorf("dashboard panel %q: query uses data source %q", panel.Title, tg.Datasource.UID)
			}
			for _, at := range metricRE.FindAllStringIndex(tg.Expr, -1) {
				if m := tg.Expr[at[0]:at[1]]; shared[m] && !maxFirst.MatchString(tg.Expr[:at[0]]) {
					t.Errorf("dashboard panel %q: %s is not under max by (...) first: every replica exports it whole (%s)", panel.Title, m, tg.Expr)
				}
			}
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && dashboardMetrics[b] {
						base = b
					}
				}
				if !dashboardMetrics[base] {
					t.Errorf("dashboard panel %q queries %s, which no service exports", panel.Title, m)
				}
				used[base] = true
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, m := range []string{"shop_http_request_duration_seconds", "shop_orders", "shop_outbox_backlog",
		"shop_consumer_lag", "shop_consumer_dead_lettered_total"} {
		if !used[m] {
			t.Errorf("dashboard does not show %s", m)
		}
	}
}

// dashboardQuery is one metric a dashboard query reads and the labels it
// aggregates by ("sum by (group, topic) (shop_consumer_lag)").
type dashboardQuery struct {
	metric string
	by     []string
}

// dashboardQueries parses the provisioned dashboard's queries.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "dashboards", "shopflow.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	grouped := regexp.MustCompile(`by \(([^)]*)\) \((?:[a-z_]+\()?(shop_[a-z_]+)`)
	metric := regexp.MustCompile(`\bshop_[a-z_]+`)
	var qs []dashboardQuery
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			seen := map[string]bool{}
			for _, m := range grouped.FindAllStringSubmatch(tg.Expr, -1) {
				var by []string
				for l := range strings.SplitSeq(m[1], ",") {
					by = append(by, strings.TrimSpace(l))
				}
				qs = append(qs, dashboardQuery{metric: m[2], by: by})
				seen[m[2]] = true
			}
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				if !seen[m] {
					qs = append(qs, dashboardQuery{metric: m})
				}
			}
		}
	}
	if len(qs) == 0 {
		t.Fatal("no queries found in the dashboard")
	}
	return qs
}

// mountedFile is the host path mounted read-only at target in s.
func mountedFile(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target {
			if !v.ReadOnly {
				t.Errorf("%s: %s is mounted writable; configuration mounts are :ro", s.Name, target)
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Fatalf("%s: mount source for %s: %v", s.Name, target, err)
			}
			return v.Source
		}
	}
	t.Fatalf("%s: nothing is mounted at %s", s.Name, target)
	return ""
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func cmpOrInt(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}
