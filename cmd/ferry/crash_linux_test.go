package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// TestMain lets a test run this binary as a ferry process of its own
// (startChild): with FERRY_TEST_MAIN=1 it is main, not the tests. Building
// the command takes too long for the suite; this is the same code.
func TestMain(m *testing.M) {
	if os.Getenv("FERRY_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is `ferry serve` in a process of its own, which a test can kill.
type child struct {
	cmd    *exec.Cmd
	url    string
	out    *syncBuffer
	exited chan struct{}
}

// startChild runs `ferry serve` on a free port in dir with exactly env,
// and returns once /readyz answers 200. The test's end kills it if it is
// still running, and fails the test if it reported a data race.
func startChild(t *testing.T, dir string, env []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--addr", "127.0.0.1:0")
	cmd.Dir, cmd.Env = dir, append(env, "FERRY_TEST_MAIN=1")
	// However the test process dies, the child dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.out.Write(append(sc.Bytes(), '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
		cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.exited
		if s := c.out.String(); strings.Contains(s, "WARNING: DATA RACE") {
			t.Errorf("ferry reported a data race:\n%s", s)
		} else if t.Failed() {
			t.Logf("ferry's output:\n%s", s)
		}
	})
	select {
	case a := <-addr:
		c.url = "http://" + a
	case <-c.exited:
		t.Fatalf("ferry exited before listening:\n%s", c.out)
	case <-time.After(60 * time.Second):
		t.Fatalf("ferry not listening after 60 s:\n%s", c.out)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if res, err := client.Get(c.url + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 after 30 s:\n%s", c.out)
		}
	}
}

// kill9 kills the process as kill -9 does: nothing of it runs after.
func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
}

// signUp registers a user over HTTP and returns an access token.
func (c *child) signUp(t *testing.T, email string) string {
	t.Helper()
	body := `{"email":"` + email + `","password":"password123"}`
	client := &http.Client{Timeout: 30 * time.Second}
	for _, path := range []string{"/auth/register", "/auth/login"} {
		res, err := client.Post(c.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if res.StatusCode >= 300 {
			t.Fatalf("%s: %d", path, res.StatusCode)
		}
		if out.AccessToken != "" {
			return out.AccessToken
		}
	}
	t.Fatal("no access token")
	return ""
}

// startStream starts a turn on /ai/chat/stream and returns its
// conversation and answer ids, once the start event came; the rest of the
// stream is read, and dropped, in the background.
func (c *child) startStream(t *testing.T, token string) (convID, answerID string) {
	t.Helper()
	// Long enough for every check on the answer; a stream that never
	// starts fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "POST", c.url+"/ai/chat/stream",
		strings.NewReader(`{"message":"tell me a long story","model":"claude-sonnet-4-6"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(res.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no start event: %v", err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var start struct {
				ConversationID string `json:"conversation_id"`
				MessageID      string `json:"message_id"`
			}
			if err := json.Unmarshal([]byte(data), &start); err != nil || start.MessageID == "" {
				t.Fatalf("first event %q: %v", data, err)
			}
			go func() {
				io.Copy(io.Discard, br)
				res.Body.Close()
			}()
			return start.ConversationID, start.MessageID
		}
	}
}

// answerOf returns the stored answer of a conversation of one turn.
func answerOf(t *testing.T, st *store.Store, convID string) *ferry.Message {
	t.Helper()
	msgs, err := st.Messages(context.Background(), convID)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("conversation %s holds %d messages, want 2", convID, len(msgs))
	}
	return msgs[1]
}

// waitSaved waits until the answer's text has been saved while it streams.
func waitSaved(t *testing.T, st *store.Store, convID string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// The turn's rows may not be committed yet.
		msgs, err := st.Messages(context.Background(), convID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 2 && msgs[1].Status == ferry.StatusStreaming && msgs[1].Content != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no text of the streaming answer saved after 20 s")
		}
	}
}

// TestKilledProcessLeavesInterruptedAnswers kills a ferry process with
// SIGKILL in the middle of an answer: the text it saved as it streamed is
// kept, and once no process can be writing the answer any more it is
// marked interrupted, with its usage estimated. Another instance's live
// answer on the same database is left alone.
func TestKilledProcessLeavesInterruptedAnswers(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			fake := llmtest.Start(t)
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(1000), Delay: 20 * time.Millisecond}) // 20 s
			dir := t.TempDir()
			env := []string{"FERRY_DATA_DIR=" + dir, "FERRY_SHUTDOWN_GRACE=0s",
				"ANTHROPIC_API_KEY=sk-ant-test", "ANTHROPIC_BASE_URL=" + fake.AnthropicURL()}
			db := config.Database{Driver: "sqlite", DSN: filepath.Join(dir, "ferry.db")}
			if engine == "postgres" {
				db = storetest.Database(t, engine)
				env = append(env, "DATABASE_URL="+db.DSN, "SECRET_KEY="+testSecretKey)
			}

			a := startChild(t, dir, env)
			token := a.signUp(t, "crash@example.com")
			st, err := store.Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			convID, answerID := a.startStream(t, token)
			waitSaved(t, st, convID)
			a.kill9(t)
			saved := answerOf(t, st, convID)
			if saved.Status != ferry.StatusStreaming || !strings.HasPrefix(saved.Content, "tok0 tok1 ") {
				t.Fatalf("after kill -9 the answer is %s: %q; want streaming with the text saved", saved.Status, saved.Content)
			}

			// Restarted at once, an instance cannot tell a dead process's
			// answer from another instance's live one, and leaves it.
			b := startChild(t, dir, env)
			if got := answerOf(t, st, convID); got.Status != ferry.StatusStreaming {
				t.Fatalf("an answer written moments ago was marked %s at start", got.Status)
			}
			liveConv, _ := b.startStream(t, token)
			waitSaved(t, st, liveConv)

			// A minute on, nothing has written the killed process's answer:
			// the next start finds it a leftover.
			raw := rawDB(t, db)
			if _, err := raw.Exec(`UPDATE messages SET updated_at = $1 WHERE id = $2`, time.Now().UTC().Add(-2*time.Minute), answerID); err != nil {
				t.Fatal(err)
			}
			startChild(t, dir, env)
			got := answerOf(t, st, convID)
			if got.Status != ferry.StatusInterrupted || got.Content != saved.Content {
				t.Errorf("the killed process's answer is %s: %q; want interrupted with %q", got.Status, got.Content, saved.Content)
			}
			if got.OutputTokens != chat.EstimateTokens(saved.Content) || got.InputTokens == 0 {
				t.Errorf("the interrupted answer's usage is %d in, %d out; want estimates (%d out)",
					got.InputTokens, got.OutputTokens, chat.EstimateTokens(saved.Content))
			}
			if live := answerOf(t, st, liveConv); live.Status != ferry.StatusStreaming {
				t.Errorf("another instance's live answer was marked %s", live.Status)
			}
		})
	}
}

// rawDB opens d outside the store, for writes no store method makes.
func rawDB(t *testing.T, d config.Database) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", d.DSN
	if d.Driver == "sqlite" {
		driver, dsn = "sqlite", "file:"+d.DSN+"?_pragma=busy_timeout(5000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
