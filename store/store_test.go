package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

var ctx = context.Background()

func newUser(t *testing.T, s *store.Store, id, email string) *ferry.User {
	t.Helper()
	u := &ferry.User{ID: id, Email: email, Name: "N", PasswordHash: "h", Role: ferry.RoleUser}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	return u
}

func wantCode(t *testing.T, err error, code ferry.Code) {
	t.Helper()
	if got := ferry.ErrorCode(err); err == nil || got != code {
		t.Fatalf("error = %v (code %s), want code %s", err, got, code)
	}
}

func TestUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		u := newUser(t, s, "u1", "a@example.com")
		wantCode(t, s.CreateUser(ctx, &ferry.User{ID: "u2", Email: "a@example.com", PasswordHash: "h", Role: ferry.RoleUser}), ferry.Conflict)

		got, err := s.UserByEmail(ctx, "a@example.com")
		if err != nil || got.ID != "u1" || got.Disabled || got.Role != ferry.RoleUser {
			t.Fatalf("UserByEmail = %+v, %v", got, err)
		}
		if !got.CreatedAt.Equal(u.CreatedAt.Truncate(time.Microsecond)) && !got.CreatedAt.Equal(u.CreatedAt) {
			t.Errorf("CreatedAt round-trip: got %v want %v", got.CreatedAt, u.CreatedAt)
		}
		_, err = s.UserByID(ctx, "nope")
		wantCode(t, err, ferry.NotFound)

		got.Disabled, got.Role, got.Name = true, ferry.RoleAdmin, "New"
		if err := s.UpdateUser(ctx, got); err != nil {
			t.Fatal(err)
		}
		again, _ := s.UserByID(ctx, "u1")
		if !again.Disabled || again.Role != ferry.RoleAdmin || again.Name != "New" {
			t.Fatalf("update not saved: %+v", again)
		}
		wantCode(t, s.UpdateUser(ctx, &ferry.User{ID: "nope", Role: ferry.RoleUser}), ferry.NotFound)

		newUser(t, s, "u3", "b_x@example.com")
		newUser(t, s, "u4", "bax@example.com")
		list, total, err := s.ListUsers(ctx, store.UserFilter{Email: "b_", Page: ferry.Page{Limit: 10}})
		if err != nil || total != 1 || len(list) != 1 || list[0].ID != "u3" {
			t.Fatalf("filter with LIKE metacharacter: %d %v %v", total, list, err)
		}
		list, total, _ = s.ListUsers(ctx, store.UserFilter{Page: ferry.Page{Limit: 2, Offset: 1}})
		if total != 3 || len(list) != 2 || list[0].ID != "u3" {
			t.Fatalf("page: total %d, %d users", total, len(list))
		}

		if err := s.DeleteUser(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, s.DeleteUser(ctx, "u1"), ferry.NotFound)
	})
}

func TestRefreshRotation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		now := time.Now().UTC()
		sess := &ferry.Session{ID: "s1", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateSession(ctx, sess, "r1"); err != nil {
			t.Fatal(err)
		}
		got, err := s.RotateRefreshToken(ctx, "r1", "r2", now)
		if err != nil || got.ID != "s1" {
			t.Fatalf("rotate: %v %v", got, err)
		}
		if _, _, err := s.SessionUser(ctx, "s1", now); err != nil {
			t.Fatalf("session should be live: %v", err)
		}
		// Reusing r1 is theft: refused, and the session (with r2) is revoked.
		_, err = s.RotateRefreshToken(ctx, "r1", "r3", now)
		wantCode(t, err, ferry.Unauthorized)
		_, err = s.RotateRefreshToken(ctx, "r2", "r4", now)
		wantCode(t, err, ferry.Unauthorized)
		_, _, err = s.SessionUser(ctx, "s1", now)
		wantCode(t, err, ferry.Unauthorized)

		_, err = s.RotateRefreshToken(ctx, "unknown", "r5", now)
		wantCode(t, err, ferry.Unauthorized)

		// Expired session.
		s.CreateSession(ctx, &ferry.Session{ID: "s2", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}, "e1")
		_, err = s.RotateRefreshToken(ctx, "e1", "e2", now.Add(2*time.Minute))
		wantCode(t, err, ferry.Unauthorized)
	})
}

func TestRefreshRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		now := time.Now().UTC()
		s.CreateSession(ctx, &ferry.Session{ID: "s1", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, "r1")
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.RotateRefreshToken(ctx, "r1", "n"+string(rune('a'+i)), now); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d concurrent refreshes with one token succeeded, want 1", wins)
		}
	})
}

func TestAPIKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		newUser(t, s, "u1", "a@example.com")
		newUser(t, s, "u2", "b@example.com")
		k := &ferry.APIKey{ID: "k1", UserID: "u1", Name: "ci", Prefix: "fk_abc", Hash: "hash1"}
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		gk, gu, err := s.APIKeyUser(ctx, "hash1")
		if err != nil || gk.ID != "k1" || gu.ID != "u1" {
			t.Fatalf("APIKeyUser: %v %v %v", gk, gu, err)
		}
		at := time.Now().UTC().Truncate(time.Millisecond)
		s.TouchAPIKey(ctx, "k1", at)
		keys, _ := s.APIKeys(ctx, "u1")
		if len(keys) != 1 || keys[0].LastUsedAt == nil || !keys[0].LastUsedAt.Equal(at) {
			t.Fatalf("keys = %+v", keys)
		}
		wantCode(t, s.DeleteAPIKey(ctx, "u2", "k1"), ferry.NotFound)
		if err := s.DeleteAPIKey(ctx, "u1", "k1"); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.APIKeyUser(ctx, "hash1")
		wantCode(t, err, ferry.NotFound)
	})
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			db := storetest.Database(t, engine)
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := store.Open(ctx, db)
					if err != nil {
						errs[i] = err
						return
					}
					defer s.Close()
					errs[i] = s.Migrate(ctx)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			s, _ := store.Open(ctx, db)
			defer s.Close()
			ms, err := s.Migrations(ctx)
			if err != nil || len(ms) < 2 {
				t.Fatalf("migrations: %v %v", ms, err)
			}
			for _, m := range ms {
				if m.AppliedAt == nil {
					t.Errorf("migration %d not applied", m.Version)
				}
			}
		})
	}
}
