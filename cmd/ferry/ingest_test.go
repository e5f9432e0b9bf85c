package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store/storetest"
)

// TestServeIngests checks the wiring of ingestion in serve: River's
// migrations run at start, the workers index a posted document, and a
// second start on the same database finds it (and migrates again without
// harm).
func TestServeIngests(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			env := engineEnv(t, engine)
			in := start(t, env)
			access, _ := in.signUp(t, "ann@example.com", "correct horse battery")
			m := in.must(t, http.StatusAccepted, "POST", "/collections/default/documents", access,
				map[string]string{"external_id": "k", "title": "Tides", "text": "The moon pulls the oceans into tides."})
			id := m["items"].([]any)[0].(map[string]any)["id"].(string)
			waitStatus(t, in, access, id, "indexed")
			if err := in.stop(t); err != nil {
				t.Fatal(err)
			}
			again := start(t, env)
			access, _ = again.login(t, "ann@example.com", "correct horse battery")
			waitStatus(t, again, access, id, "indexed")
		})
	}
}

// waitStatus polls the document of the default collection until it has
// status.
func waitStatus(t *testing.T, in *instance, access, id, status string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := in.must(t, http.StatusOK, "GET", "/collections/default/documents/"+id, access, nil)
		if m["status"] == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("document %s is %v, want %s", id, m, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
