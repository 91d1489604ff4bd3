// Command healthcheck is the container health probe of shopflow's service
// images. The images are distroless (no shell, curl or wget), so compose's
// healthcheck runs this static binary instead:
//
//	healthcheck [URL]
//
// It GETs URL (default http://127.0.0.1:<port of HTTP_ADDR>/readyz) and
// exits 0 for a 2xx answer, 1 for anything else (another status, no answer
// within -timeout), and 2 for bad usage. The reason goes to stderr, where
// `docker inspect` shows it in the health log.
//
// It is its own module, standard library only, so the image build compiles
// it without the services' dependencies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: healthcheck [-timeout D] [URL]  (default URL: http://127.0.0.1:<HTTP_ADDR port>/readyz)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 1 || *timeout <= 0 {
		fs.Usage()
		return 2
	}
	target := fs.Arg(0)
	if target == "" {
		var err error
		if target, err = defaultURL(getenv("HTTP_ADDR")); err != nil {
			fmt.Fprintln(stderr, "healthcheck:", err)
			return 2
		}
	} else if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "healthcheck: %q is not an http(s) URL\n", target)
		return 2
	}
	if err := probe(target, *timeout); err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	return 0
}

// defaultURL is the readiness endpoint of the service listening on
// httpAddr, reached over loopback whatever interface it binds.
func defaultURL(httpAddr string) (string, error) {
	if httpAddr == "" {
		return "", errors.New("no URL given and HTTP_ADDR is not set")
	}
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil || port == "" || port == "0" {
		return "", fmt.Errorf("HTTP_ADDR %q has no fixed port", httpAddr)
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + "/readyz", nil
}

// probe GETs target and wants a 2xx answer within timeout.
func probe(target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	// The readiness body names the failing check: worth showing.
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s: %s", target, res.Status, body)
	}
	return nil
}
