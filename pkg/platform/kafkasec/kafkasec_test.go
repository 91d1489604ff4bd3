package kafkasec_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "validate")
	cert, key := ca.issue("client", nil)
	_, otherKey := ca.issue("other", nil)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mangled := filepath.Join(dir, "mangled.pem")
	if err := os.WriteFile(mangled, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	scram := func(c kafkasec.Config) kafkasec.Config {
		c.SASLMechanism, c.SASLUsername, c.SASLPassword = "SCRAM-SHA-512", "svc", "pw"
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  kafkasec.Config
		// want maps each variable expected in the errors to a fragment
		// of its message; none means valid.
		want map[string]string
	}{
		{"nothing set", kafkasec.Config{}, nil},
		{"SCRAM-SHA-256", kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "p"}, nil},
		{"SCRAM-SHA-512 in lower case", kafkasec.Config{SASLMechanism: "scram-sha-512", SASLUsername: "u", SASLPassword: "p"}, nil},
		{"PLAIN", kafkasec.Config{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p"}, nil},
		{"TLS with system roots", kafkasec.Config{TLS: true}, nil},
		{"TLS with everything", scram(kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: cert, TLSKeyFile: key, TLSServerName: "kafka"}), nil},
		{"TLS without verification", kafkasec.Config{TLS: true, TLSInsecureSkipVerify: true}, nil},

		{"unknown mechanism", kafkasec.Config{SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: "p"},
			map[string]string{"KAFKA_SASL_MECHANISM": `"GSSAPI" is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN`}},
		{"username without password", kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u"},
			map[string]string{"KAFKA_SASL_PASSWORD": "missing"}},
		{"password without username", kafkasec.Config{SASLMechanism: "PLAIN", SASLPassword: "p"},
			map[string]string{"KAFKA_SASL_USERNAME": "missing"}},
		{"mechanism without credentials", kafkasec.Config{SASLMechanism: "SCRAM-SHA-512"},
			map[string]string{"KAFKA_SASL_USERNAME": "missing", "KAFKA_SASL_PASSWORD": "missing"}},
		{"credentials without mechanism", kafkasec.Config{SASLUsername: "u", SASLPassword: "p"},
			map[string]string{"KAFKA_SASL_MECHANISM": "missing"}},
		{"SCRAM username SASLprep rejects", kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u\u0007", SASLPassword: "p"},
			map[string]string{"KAFKA_SASL_USERNAME": "SASLprep"}},
		{"SCRAM password SASLprep rejects", kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "top\u0007secret"},
			map[string]string{"KAFKA_SASL_PASSWORD": "SASLprep"}},
		{"PLAIN password with NUL", kafkasec.Config{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "top\x00secret"},
			map[string]string{"KAFKA_SASL_PASSWORD": "NUL"}},

		{"certificate without key", kafkasec.Config{TLS: true, TLSCertFile: cert},
			map[string]string{"KAFKA_TLS_KEY_FILE": "missing"}},
		{"key without certificate", kafkasec.Config{TLS: true, TLSKeyFile: key},
			map[string]string{"KAFKA_TLS_CERT_FILE": "missing"}},
		{"unreadable CA file", kafkasec.Config{TLS: true, TLSCAFile: missing},
			map[string]string{"KAFKA_TLS_CA_FILE": "cannot read"}},
		{"CA file without certificates", kafkasec.Config{TLS: true, TLSCAFile: garbage},
			map[string]string{"KAFKA_TLS_CA_FILE": "no PEM CERTIFICATE block"}},
		{"CA file with a broken certificate", kafkasec.Config{TLS: true, TLSCAFile: mangled},
			map[string]string{"KAFKA_TLS_CA_FILE": "certificate 1"}},
		{"unreadable certificate file", kafkasec.Config{TLS: true, TLSCertFile: missing, TLSKeyFile: key},
			map[string]string{"KAFKA_TLS_CERT_FILE": "cannot read"}},
		{"certificate file without certificates", kafkasec.Config{TLS: true, TLSCertFile: garbage, TLSKeyFile: key},
			map[string]string{"KAFKA_TLS_CERT_FILE": "no PEM CERTIFICATE block"}},
		{"unreadable key file", kafkasec.Config{TLS: true, TLSCertFile: cert, TLSKeyFile: missing},
			map[string]string{"KAFKA_TLS_KEY_FILE": "cannot read"}},
		{"key of another certificate", kafkasec.Config{TLS: true, TLSCertFile: cert, TLSKeyFile: otherKey},
			map[string]string{"KAFKA_TLS_KEY_FILE": "does not match"}},
		{"key file that is a certificate", kafkasec.Config{TLS: true, TLSCertFile: cert, TLSKeyFile: cert},
			map[string]string{"KAFKA_TLS_KEY_FILE": "found a certificate rather than a key"}},
		{"skip verification with a CA", kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile, TLSInsecureSkipVerify: true},
			map[string]string{"KAFKA_TLS_INSECURE_SKIP_VERIFY": "KAFKA_TLS_CA_FILE"}},
		{"TLS settings without KAFKA_TLS", kafkasec.Config{TLSCAFile: ca.CAFile, TLSCertFile: cert, TLSKeyFile: key,
			TLSServerName: "kafka", TLSInsecureSkipVerify: true},
			map[string]string{
				"KAFKA_TLS_CA_FILE": "KAFKA_TLS is not true", "KAFKA_TLS_CERT_FILE": "KAFKA_TLS is not true",
				"KAFKA_TLS_KEY_FILE": "KAFKA_TLS is not true", "KAFKA_TLS_SERVER_NAME": "KAFKA_TLS is not true",
				"KAFKA_TLS_INSECURE_SKIP_VERIFY": "KAFKA_TLS is not true",
			}},
		{"every problem at once", kafkasec.Config{SASLMechanism: "OAUTHBEARER", TLS: true, TLSCAFile: missing, TLSCertFile: cert},
			map[string]string{"KAFKA_SASL_MECHANISM": "OAUTHBEARER", "KAFKA_TLS_CA_FILE": "cannot read", "KAFKA_TLS_KEY_FILE": "missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			got := map[string]string{}
			for _, e := range leaves(err) {
				var ve *kafkasec.VarError
				if !errors.As(e, &ve) {
					t.Fatalf("error %v is not a *kafkasec.VarError", e)
				}
				if _, dup := got[ve.Var]; dup {
					t.Errorf("%s reported twice", ve.Var)
				}
				got[ve.Var] = e.Error()
				if !strings.HasPrefix(e.Error(), "config: "+ve.Var+": ") {
					t.Errorf("message %q does not start with the variable", e)
				}
				// (Passwords of the cases that must not leak are long
				// enough not to occur in an ordinary message.)
				if len(tc.cfg.SASLPassword) >= 8 && strings.Contains(e.Error(), tc.cfg.SASLPassword) {
					t.Errorf("message %q shows the password", e)
				}
			}
			for v, frag := range tc.want {
				msg, ok := got[v]
				switch {
				case !ok:
					t.Errorf("no error for %s; got %v", v, err)
				case !strings.Contains(msg, frag):
					t.Errorf("%s: %q does not say %q", v, msg, frag)
				}
			}
			for v := range got {
				if _, ok := tc.want[v]; !ok {
					t.Errorf("unexpected error for %s: %s", v, got[v])
				}
			}
			// Transport and Dialer refuse exactly what Validate does.
			_, terr := tc.cfg.Transport()
			_, derr := tc.cfg.Dialer()
			if (terr == nil) != (err == nil) || (derr == nil) != (err == nil) {
				t.Errorf("Validate: %v; Transport: %v; Dialer: %v", err, terr, derr)
			}
		})
	}
}

func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

func TestBuilt(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "built")
	cert, key := ca.issue("client", nil)

	off := kafkasec.Config{}
	if off.Enabled() {
		t.Error("zero Config is Enabled")
	}
	tr, err := off.Transport()
	if err != nil || tr == nil || tr.TLS != nil || tr.SASL != nil || tr.DialTimeout != kafkasec.DialTimeout {
		t.Errorf("Transport with security off = %+v, %v; want plain, non-nil, with DialTimeout", tr, err)
	}
	d, err := off.Dialer()
	if err != nil || d == nil || d.TLS != nil || d.SASLMechanism != nil || d.Timeout != kafkasec.DialTimeout {
		t.Errorf("Dialer with security off = %+v, %v; want plain, non-nil, with Timeout", d, err)
	}

	on := kafkasec.Config{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p",
		TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: cert, TLSKeyFile: key, TLSServerName: "kafka.internal"}
	if !on.Enabled() {
		t.Error("Config with SASL and TLS is not Enabled")
	}
	tr, err = on.Transport()
	if err != nil {
		t.Fatal(err)
	}
	// The credentials themselves are proven against SASL brokers (broker_test.go).
	if tr.SASL == nil || tr.SASL.Name() != "PLAIN" {
		t.Errorf("Transport SASL = %#v", tr.SASL)
	}
	if tr.TLS == nil || tr.TLS.ServerName != "kafka.internal" || tr.TLS.RootCAs == nil || len(tr.TLS.Certificates) != 1 || tr.TLS.InsecureSkipVerify {
		t.Errorf("Transport TLS = %+v", tr.TLS)
	}
	d, err = on.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	if d.SASLMechanism == nil || d.SASLMechanism.Name() != "PLAIN" || d.TLS == nil || d.TLS.ServerName != "kafka.internal" {
		t.Errorf("Dialer = %+v", d)
	}
	for _, m := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		tr, err := kafkasec.Config{SASLMechanism: strings.ToLower(m), SASLUsername: "u", SASLPassword: "p"}.Transport()
		if err != nil || tr.SASL == nil || tr.SASL.Name() != m {
			t.Errorf("%s: Transport SASL = %v, %v", m, tr, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  kafkasec.Config
		want []string // a fragment per warning, in order
	}{
		{"nothing set", kafkasec.Config{}, nil},
		{"SCRAM without TLS", kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "p"}, nil},
		{"PLAIN with TLS", kafkasec.Config{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p", TLS: true}, nil},
		{"PLAIN without TLS", kafkasec.Config{SASLMechanism: "plain", SASLUsername: "u", SASLPassword: "p"}, []string{"clear text"}},
		{"verification off", kafkasec.Config{TLS: true, TLSInsecureSkipVerify: true}, []string{"NOT verified"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.cfg.Warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("Warnings() = %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not say %q", got[i], w)
				}
			}
			if !slices.Equal(got, tc.cfg.Warnings()) {
				t.Error("Warnings is not deterministic")
			}
		})
	}
}
