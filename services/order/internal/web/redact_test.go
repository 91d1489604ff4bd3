package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPeerErrorHidesPassword: a peer (OPS_PEERS) whose /metrics answers
// other than 200 is logged by the dashboard with its URL, the password
// masked. The WARN "ops dashboard: figure unavailable" showed
// "GET http://opsuser:PEERSECRET@...".
func TestPeerErrorHidesPassword(t *testing.T) {
	t.Parallel()
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer peer.Close()
	wb := &Web{http: peer.Client()}
	base := strings.Replace(peer.URL, "http://", "http://opsuser:PEERSECRET@", 1)
	_, err := wb.peerBacklog(context.Background(), base)
	if err == nil || strings.Contains(err.Error(), "PEERSECRET") || !strings.Contains(err.Error(), "opsuser:***@") {
		t.Errorf("peer error = %v; want one naming the peer with its password masked", err)
	}
}
