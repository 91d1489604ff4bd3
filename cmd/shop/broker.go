package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/shopflow/shopflow/pkg/platform/broker"
)

func cmdBroker(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("shop broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9092", "host:port to listen on")
	dataDir := fs.String("data-dir", filepath.Join(".data", "kafka"), "directory persisting topics, records and group offsets (empty: memory only)")
	syncWrites := fs.Bool("sync", false, "fsync every produced batch (survives power loss, slower)")
	mechanism := fs.String("sasl-mechanism", broker.MechanismSCRAMSHA256, "SASL mechanism of --sasl-user: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
	user := fs.String("sasl-user", "", "require SASL authentication as this user (clients: KAFKA_SASL_USERNAME)")
	password := fs.String("sasl-password", "", "password of --sasl-user (clients: KAFKA_SASL_PASSWORD); visible in the process list: for development")
	tlsCert := fs.String("tls-cert", "", "PEM server certificate: listen with TLS only (clients: KAFKA_TLS=true, KAFKA_TLS_CA_FILE)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM CA client certificates must chain to: require mutual TLS (clients: KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("broker: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	users, tlsCfg, err := brokerSecurity(set, *mechanism, *user, *password, *tlsCert, *tlsKey, *tlsClientCA)
	if err != nil {
		return err
	}
	b, err := broker.Start(broker.Config{Addr: *addr, DataDir: *dataDir, SyncWrites: *syncWrites, Logger: log,
		SASL: users, TLS: tlsCfg})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "broker listening on %s (%s; data: %s); Ctrl-C stops it\n", b.Addr(),
		describeSecurity(users, tlsCfg), orMemory(*dataDir))
	<-ctx.Done()
	b.Close()
	fmt.Fprintln(stdout, "broker stopped; state saved")
	return nil
}

// brokerSecurity checks the security flags together (set names those
// given explicitly) and builds the broker's users and TLS configuration.
func brokerSecurity(set map[string]bool, mechanism, user, password, cert, key, clientCA string) ([]broker.SASLUser, *tls.Config, error) {
	var users []broker.SASLUser
	switch {
	case user == "" && (set["sasl-password"] || set["sasl-mechanism"]):
		return nil, nil, errors.New("broker: --sasl-password and --sasl-mechanism need --sasl-user")
	case user != "" && password == "":
		return nil, nil, errors.New("broker: --sasl-user needs --sasl-password")
	case user != "":
		m := strings.ToUpper(mechanism)
		if m != broker.MechanismSCRAMSHA256 && m != broker.MechanismSCRAMSHA512 && m != broker.MechanismPlain {
			return nil, nil, fmt.Errorf("broker: --sasl-mechanism %q is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN", mechanism)
		}
		users = []broker.SASLUser{{Mechanism: m, User: user, Password: password}}
	}
	if cert == "" && key == "" {
		if clientCA != "" {
			return nil, nil, errors.New("broker: --tls-client-ca needs --tls-cert and --tls-key")
		}
		return users, nil, nil
	}
	if cert == "" || key == "" {
		return nil, nil, errors.New("broker: --tls-cert and --tls-key go together")
	}
	tlsCfg, err := broker.ServerTLS(cert, key, clientCA)
	if err != nil {
		return nil, nil, err
	}
	return users, tlsCfg, nil
}

func describeSecurity(users []broker.SASLUser, tlsCfg *tls.Config) string {
	var parts []string
	switch {
	case tlsCfg == nil:
		parts = append(parts, "plain text")
	case tlsCfg.ClientCAs != nil:
		parts = append(parts, "mutual TLS")
	default:
		parts = append(parts, "TLS")
	}
	for _, u := range users {
		parts = append(parts, fmt.Sprintf("SASL %s user %q", u.Mechanism, u.User))
	}
	if len(users) == 0 {
		parts = append(parts, "no authentication")
	}
	return strings.Join(parts, ", ")
}

func orMemory(dir string) string {
	if dir == "" {
		return "memory only"
	}
	return dir
}
