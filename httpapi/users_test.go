package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func me(cred string) request { return request{method: "GET", path: "/users/me", auth: cred} }

func refreshWith(token string) request {
	return request{method: "POST", path: "/auth/refresh", body: map[string]string{"refresh_token": token}}
}

func TestUpdateMe(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		a2, r2 := h.login(t, u.email, u.password) // another device
		patch := func(body any) request { return request{method: "PATCH", path: "/users/me", auth: u.access, body: body} }
		h.run(t, []scenario{
			{name: "me", request: me(u.access), status: 200,
				contains: []string{`"id":"` + u.id, `"email":"alice@example.com"`, `"role":"user"`}, excludes: []string{"password", "hash"}},
			{name: "rename", request: patch(map[string]string{"name": " Alice "}), status: 200, contains: []string{`"name":"Alice"`}},
			{name: "name too long", request: patch(map[string]string{"name": strings.Repeat("n", 201)}), status: 422, problem: true, contains: []string{"body.name"}},
			{name: "role is not the user's to change", request: patch(map[string]string{"role": "admin"}), status: 422, problem: true, contains: []string{"body.role"}},
			{name: "nor disabled", request: patch(map[string]bool{"disabled": false}), status: 422, problem: true},
			{name: "still a user", request: me(u.access), status: 200, contains: []string{`"role":"user"`}},
			{name: "new password without the current one", request: patch(map[string]string{"password": "brand new password"}),
				status: 400, problem: true, contains: []string{"body.current_password"}},
			{name: "new password with a wrong current one", request: patch(map[string]string{"password": "brand new password", "current_password": "not it"}),
				status: 401, problem: true, contains: []string{"current_password"}},
			{name: "new password too short", request: patch(map[string]string{"password": "short", "current_password": u.password}),
				status: 422, problem: true, contains: []string{"body.password"}},
			{name: "nothing changed yet: the other session lives", request: me(a2), status: 200},
			{name: "old password still signs in", request: loginFrom(u.email, u.password, ""), status: 200},
			{name: "change the password", request: patch(map[string]string{"password": "brand new password", "current_password": u.password}),
				status: 200, excludes: []string{"brand new password", "password"}},
			{name: "the other session's access token stops working", request: me(a2), status: 401},
			{name: "the other session's refresh token stops working", request: refreshWith(r2), status: 401},
			{name: "this session goes on", request: me(u.access), status: 200},
			{name: "and refreshes", request: refreshWith(u.refresh), status: 200},
			{name: "the old password no longer signs in", request: loginFrom(u.email, u.password, ""), status: 401},
			{name: "the new one does", request: loginFrom(u.email, "brand new password", ""), status: 200},
		})
	})
}

func TestDeleteMe(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		_, key := h.newAPIKey(t, u.access, "k")
		admin := h.signUpAdmin(t, "admin@example.com")
		h.run(t, []scenario{
			{name: "token works", request: me(u.access), status: 200},
			{name: "key works", request: me(key), status: 200},
			{name: "delete", request: request{method: "DELETE", path: "/users/me", auth: u.access}, status: 204},
			{name: "the token stops working", request: me(u.access), status: 401, problem: true},
			{name: "the key stops working", request: me(key), status: 401, problem: true},
			{name: "the refresh token stops working", request: refreshWith(u.refresh), status: 401},
			{name: "signing in is like an unknown email", request: loginFrom(u.email, u.password, ""), status: 401, contains: []string{"incorrect email or password"}},
			{name: "the admin cannot find the user", request: request{method: "GET", path: "/users/" + u.id, auth: admin.access}, status: 404, problem: true},
			{name: "the email is free again", request: request{method: "POST", path: "/auth/register", body: map[string]string{"email": u.email, "password": "another password"}}, status: 201},
		})
	})
}

func TestAdminOnly(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		u := h.signUp(t, "alice@example.com")
		_, key := h.newAPIKey(t, u.access, "k")
		admin := h.signUpAdmin(t, "admin@example.com")
		for _, cred := range []struct{ name, value string }{{"token", u.access}, {"key", key}} {
			h.run(t, []scenario{
				{name: cred.name + ": list users", request: request{method: "GET", path: "/users", auth: cred.value}, status: 403, problem: true},
				{name: cred.name + ": get a user", request: request{method: "GET", path: "/users/" + admin.id, auth: cred.value}, status: 403, problem: true},
				{name: cred.name + ": get self by id", request: request{method: "GET", path: "/users/" + u.id, auth: cred.value}, status: 403},
				{name: cred.name + ": promote self", request: request{method: "PATCH", path: "/users/" + u.id, auth: cred.value, body: map[string]string{"role": "admin"}}, status: 403, problem: true},
				{name: cred.name + ": disable the admin", request: request{method: "PATCH", path: "/users/" + admin.id, auth: cred.value, body: map[string]bool{"disabled": true}}, status: 403},
				{name: cred.name + ": delete the admin", request: request{method: "DELETE", path: "/users/" + admin.id, auth: cred.value}, status: 403},
			})
		}
		h.run(t, []scenario{
			{name: "still a user", request: me(u.access), status: 200, contains: []string{`"role":"user"`}},
			{name: "the admin is untouched", request: me(admin.access), status: 200, contains: []string{`"role":"admin"`, `"disabled":false`}},
			{name: "unauthenticated", request: request{method: "GET", path: "/users"}, status: 401, problem: true},
		})
	})
}

func TestAdminUsers(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		admin := h.signUpAdmin(t, "admin@example.com")
		u := h.signUp(t, "alice@example.com")
		missing := "01900000-0000-7000-8000-000000000000"
		as := func(method, path string, body any) request {
			return request{method: method, path: path, auth: admin.access, body: body}
		}
		h.run(t, []scenario{
			{name: "get a user", request: as("GET", "/users/"+u.id, nil), status: 200,
				contains: []string{`"email":"alice@example.com"`}, excludes: []string{"password", "hash"}},
			{name: "get a nonexistent user", request: as("GET", "/users/"+missing, nil), status: 404, problem: true},
			{name: "update a nonexistent user", request: as("PATCH", "/users/"+missing, map[string]string{"name": "x"}), status: 404, problem: true},
			{name: "delete a nonexistent user", request: as("DELETE", "/users/"+missing, nil), status: 404, problem: true},
			{name: "an overlong id", request: as("GET", "/users/"+strings.Repeat("x", 65), nil), status: 422, problem: true},
			{name: "an unknown role", request: as("PATCH", "/users/"+u.id, map[string]string{"role": "root"}), status: 422, problem: true, contains: []string{"body.role"}},
			{name: "rename", request: as("PATCH", "/users/"+u.id, map[string]string{"name": "Alice"}), status: 200, contains: []string{`"name":"Alice"`}},
			{name: "the user is not an admin", request: request{method: "GET", path: "/users", auth: u.access}, status: 403},
			{name: "promote", request: as("PATCH", "/users/"+u.id, map[string]string{"role": "admin"}), status: 200, contains: []string{`"role":"admin"`}},
			{name: "the user's token is an admin's at once", request: request{method: "GET", path: "/users", auth: u.access}, status: 200},
			{name: "demote", request: as("PATCH", "/users/"+u.id, map[string]string{"role": "user"}), status: 200, contains: []string{`"role":"user"`}},
			{name: "and no longer at once", request: request{method: "GET", path: "/users", auth: u.access}, status: 403},
			{name: "delete", request: as("DELETE", "/users/"+u.id, nil), status: 204},
			{name: "their token stops working", request: me(u.access), status: 401},
			{name: "gone", request: as("GET", "/users/"+u.id, nil), status: 404},
			{name: "delete again", request: as("DELETE", "/users/"+u.id, nil), status: 404},
		})
	})
}

// TestDisabledUser: disabling a user ends their access at once, whatever the
// credential, even one verified a moment before.
func TestDisabledUser(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		admin := h.signUpAdmin(t, "admin@example.com")
		u := h.signUp(t, "alice@example.com")
		_, key := h.newAPIKey(t, u.access, "k")
		a2, r2 := h.login(t, u.email, u.password)
		set := func(disabled bool) request {
			return request{method: "PATCH", path: "/users/" + u.id, auth: admin.access, body: map[string]bool{"disabled": disabled}}
		}
		h.run(t, []scenario{
			{name: "token works", request: me(u.access), status: 200},
			{name: "key works", request: me(key), status: 200},
			{name: "disable", request: set(true), status: 200, contains: []string{`"disabled":true`}},
			{name: "the token stops working", request: me(u.access), status: 401, problem: true},
			{name: "the key stops working", request: me(key), status: 401, problem: true},
			{name: "the other session's token too", request: me(a2), status: 401},
			{name: "refresh is refused", request: refreshWith(r2), status: 401},
			{name: "sign-in is refused", request: loginFrom(u.email, u.password, ""), status: 403, problem: true, contains: []string{"disabled"}},
			{name: "a wrong password says nothing about it", request: loginFrom(u.email, "wrong password", ""), status: 401, excludes: []string{"disabled"}},
			{name: "the admin sees it", request: request{method: "GET", path: "/users/" + u.id, auth: admin.access}, status: 200, contains: []string{`"disabled":true`}},
			{name: "enable", request: set(false), status: 200, contains: []string{`"disabled":false`}},
			{name: "sign-in works again", request: loginFrom(u.email, u.password, ""), status: 200},
			{name: "the key works again", request: me(key), status: 200},
		})
	})
}

func TestListUsers(t *testing.T) {
	eachEngine(t, options{}, func(t *testing.T, h *harness) {
		admin := h.signUpAdmin(t, "admin@example.com")
		for i := range 5 {
			h.signUp(t, fmt.Sprintf("user%d@example.com", i))
		}
		h.signUp(t, "user_x@other.org")
		list := func(query string) request {
			return request{method: "GET", path: "/users" + query, auth: admin.access}
		}
		type page struct {
			Items []struct {
				Email string `json:"email"`
			} `json:"items"`
			Total  int `json:"total"`
			Limit  int `json:"limit"`
			Offset int `json:"offset"`
		}
		for _, tc := range []struct {
			query  string
			emails []string
			total  int
			limit  int
			offset int
		}{
			{"", []string{"admin@example.com", "user0@example.com", "user1@example.com", "user2@example.com", "user3@example.com", "user4@example.com", "user_x@other.org"}, 7, 20, 0},
			{"?limit=2", []string{"admin@example.com", "user0@example.com"}, 7, 2, 0},
			{"?limit=2&offset=2", []string{"user1@example.com", "user2@example.com"}, 7, 2, 2},
			{"?limit=5&offset=5", []string{"user4@example.com", "user_x@other.org"}, 7, 5, 5},
			{"?offset=50", nil, 7, 20, 50},
			{"?email=USER3", []string{"user3@example.com"}, 1, 20, 0},
			{"?email=example.com&limit=1&offset=1", []string{"user0@example.com"}, 6, 1, 1},
			{"?email=_", []string{"user_x@other.org"}, 1, 20, 0},
			{"?email=%25", nil, 0, 20, 0},
			{"?email=nobody", nil, 0, 20, 0},
		} {
			t.Run(tc.query, func(t *testing.T) {
				res := h.do(t, list(tc.query))
				if res.status != http.StatusOK {
					t.Fatalf("status %d: %s", res.status, res.body)
				}
				var p page
				if err := json.Unmarshal([]byte(res.body), &p); err != nil {
					t.Fatal(err)
				}
				var emails []string
				for _, it := range p.Items {
					emails = append(emails, it.Email)
				}
				if strings.Join(emails, ",") != strings.Join(tc.emails, ",") || p.Total != tc.total || p.Limit != tc.limit || p.Offset != tc.offset {
					t.Errorf("got %v total %d limit %d offset %d, want %v total %d limit %d offset %d",
						emails, p.Total, p.Limit, p.Offset, tc.emails, tc.total, tc.limit, tc.offset)
				}
				if strings.Contains(res.body, "password") {
					t.Errorf("list shows passwords: %s", res.body)
				}
			})
		}
		h.run(t, []scenario{
			{name: "limit 0", request: list("?limit=0"), status: 422, problem: true, contains: []string{"query.limit"}},
			{name: "limit over 100", request: list("?limit=101"), status: 422, problem: true, contains: []string{"query.limit"}},
			{name: "negative offset", request: list("?offset=-1"), status: 422, problem: true, contains: []string{"query.offset"}},
			{name: "limit not a number", request: list("?limit=ten"), status: 422, problem: true},
		})
	})
}
