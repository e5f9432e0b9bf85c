package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestServeJobs drives /ai/jobs through the whole server on each engine:
// a job answered, one failed by the upstream, one cancelled while it
// streams, and another user kept out of all of them.
func TestServeJobs(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			fake := llmtest.Start(t)
			fake.SetScript(llmtest.Script{Deltas: []string{"The answer", " is 42."}})
			env := withFake(engineEnv(t, engine), fake)
			env.vars["FERRY_METRICS_ADDR"] = "127.0.0.1:0"
			in := start(t, env)
			ann, _ := in.signUp(t, "ann@example.com", "correct horse battery")
			bob, _ := in.signUp(t, "bob@example.com", "correct horse battery")

			job := in.must(t, http.StatusAccepted, "POST", "/ai/jobs", ann,
				map[string]any{"message": "what is the answer?", "model": "claude-sonnet-4-6"})
			id, _ := job["id"].(string)
			if id == "" || job["state"] != "queued" {
				t.Fatalf("submitted job: %v", job)
			}
			done := waitJob(t, in, ann, id)
			if done["state"] != "succeeded" || done["text"] != "The answer is 42." || done["error"] != nil {
				t.Fatalf("job: %v", done)
			}
			conv := in.must(t, http.StatusOK, "GET", "/conversations/"+done["conversation_id"].(string), ann, nil)
			msgs, _ := conv["messages"].([]any)
			if len(msgs) != 2 || msgs[1].(map[string]any)["content"] != "The answer is 42." {
				t.Fatalf("conversation: %v", conv)
			}

			// Another user: not found, whatever the method.
			in.must(t, http.StatusNotFound, "GET", "/ai/jobs/"+id, bob, nil)
			in.must(t, http.StatusNotFound, "DELETE", "/ai/jobs/"+id, bob, nil)
			in.must(t, http.StatusNotFound, "GET", "/ai/jobs/no-such-job", ann, nil)
			in.must(t, http.StatusUnauthorized, "GET", "/ai/jobs/"+id, "", nil)
			// Refused at once, as /ai/chat refuses it.
			in.must(t, http.StatusBadRequest, "POST", "/ai/jobs", ann, map[string]any{"message": "   "})
			// A finished job cannot be cancelled.
			in.must(t, http.StatusConflict, "DELETE", "/ai/jobs/"+id, ann, nil)

			// The upstream refuses: failed, with the reason in the error shape.
			fake.SetScript(llmtest.Script{FailFirst: 1, FailStatus: 400, FailMessage: "max_tokens: too large"})
			job = in.must(t, http.StatusAccepted, "POST", "/ai/jobs", ann, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
			done = waitJob(t, in, ann, job["id"].(string))
			e, _ := done["error"].(map[string]any)
			if done["state"] != "failed" || e == nil || !strings.Contains(e["message"].(string), "max_tokens: too large") ||
				e["code"] == "" || e["status"] == nil {
				t.Fatalf("failed job: %v", done)
			}

			// Cancelled while it streams: the upstream call ends.
			fake.Reset()
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 50 * time.Millisecond})
			job = in.must(t, http.StatusAccepted, "POST", "/ai/jobs", ann, map[string]any{"message": "go on", "model": "claude-sonnet-4-6"})
			id = job["id"].(string)
			deadline := time.Now().Add(20 * time.Second)
			for r := fake.Last(); r == nil || r.DeltasSent() == 0; r = fake.Last() {
				if time.Now().After(deadline) {
					t.Fatal("the job's upstream call never began")
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancelled := in.must(t, http.StatusOK, "DELETE", "/ai/jobs/"+id, ann, nil)
			if cancelled["state"] != "cancelled" {
				t.Fatalf("cancelled job: %v", cancelled)
			}
			if !fake.WaitCancelled(5 * time.Second) {
				t.Fatal("the upstream call went on after the job was cancelled")
			}
			if got := in.must(t, http.StatusOK, "GET", "/ai/jobs/"+id, ann, nil); got["state"] != "cancelled" {
				t.Fatalf("job after cancel: %v", got)
			}

			// Prometheus sees them all, by state.
			fams := scrape(t, in.metricsAddr())
			for state, want := range map[string]float64{"succeeded": 1, "failed": 1, "cancelled": 1, "queued": 0, "running": 0} {
				if got := sample(fams, "ferry_jobs", map[string]string{"state": state}); got != want {
					t.Errorf("ferry_jobs{state=%q} = %v, want %v", state, got, want)
				}
			}
			if fams["ferry_jobs"] == nil || len(fams["ferry_jobs"].Metric) != 5 {
				t.Errorf("ferry_jobs has not every state: %v", fams["ferry_jobs"])
			}
		})
	}
}

// waitJob polls the job until it is final and returns it.
func waitJob(t *testing.T, in *instance, bearer, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := in.must(t, http.StatusOK, "GET", "/ai/jobs/"+id, bearer, nil)
		switch m["state"] {
		case "succeeded", "failed", "cancelled":
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %v", id, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
