package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/store"
)

// handleHealthz answers while the process is alive.
func handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ok"}`))
}

// handleReadyz answers 200 when the database answers, 503 otherwise, so a
// load balancer sends traffic only to instances that can serve it.
func handleReadyz(st *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			writeProblem(w, http.StatusServiceUnavailable, "database is not reachable", nil)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ready"}`))
	}
}
