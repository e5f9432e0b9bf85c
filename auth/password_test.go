package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/ferryhq/ferry"
)

var phc = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$`)

func TestHashFormatDefault(t *testing.T) {
	enc, err := Hasher{Params: DefaultPasswordParams}.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") || !phc.MatchString(enc) {
		t.Fatalf("hash %q is not the expected PHC string", enc)
	}
	parts := strings.Split(enc, "$")
	if len(parts[4]) != 22 || len(parts[5]) != 43 { // 16 and 32 bytes, unpadded
		t.Errorf("salt %q / key %q have the wrong length", parts[4], parts[5])
	}
	// The zero Hasher means the defaults.
	if (Hasher{}).NeedsRehash(enc) {
		t.Error("zero Hasher wants to rehash a hash made with DefaultPasswordParams")
	}
}

func TestHashVerify(t *testing.T) {
	h := Hasher{Params: TestPasswordParams}
	enc, err := h.Hash("s3cret-passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if !phc.MatchString(enc) {
		t.Fatalf("hash %q is not a PHC string", enc)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{
		{"s3cret-passphrase", true},
		{"s3cret-passphrasE", false},
		{"s3cret-passphrase ", false},
		{"", false},
	} {
		ok, err := h.Verify(tc.pw, enc)
		if err != nil || ok != tc.want {
			t.Errorf("Verify(%q) = %v, %v; want %v, nil", tc.pw, ok, err, tc.want)
		}
	}
	again, _ := h.Hash("s3cret-passphrase")
	if again == enc {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestVerifyUsesStoredParams(t *testing.T) {
	old := Hasher{Params: TestPasswordParams}
	enc, err := old.Hash("password123")
	if err != nil {
		t.Fatal(err)
	}
	stronger := TestPasswordParams
	stronger.Memory, stronger.Time, stronger.KeyLen = 128, 2, 24
	cur := Hasher{Params: stronger}

	if ok, err := cur.Verify("password123", enc); !ok || err != nil {
		t.Fatalf("Verify with raised params = %v, %v; want true: the stored params must be used", ok, err)
	}
	if !cur.NeedsRehash(enc) {
		t.Error("NeedsRehash = false for a hash made with weaker params")
	}
	if old.NeedsRehash(enc) {
		t.Error("NeedsRehash = true for a hash made with the hasher's own params")
	}
	if !cur.NeedsRehash("not a hash") {
		t.Error("NeedsRehash = false for a malformed hash")
	}
	enc2, _ := cur.Hash("password123")
	if !strings.Contains(enc2, "$m=128,t=2,p=1$") {
		t.Errorf("hash %q does not record the hasher's params", enc2)
	}
	if ok, _ := old.Verify("password123", enc2); !ok {
		t.Error("a hash with other params does not verify")
	}
}

func TestVerifyMalformed(t *testing.T) {
	h := Hasher{Params: TestPasswordParams}
	good, _ := h.Hash("password123")
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	for name, enc := range map[string]string{
		"empty":          "",
		"argon2i":        "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"argon2d":        "$argon2d$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"old version":    "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"no version":     "$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"params swapped": "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key,
		"extra param":    "$argon2id$v=19$m=64,t=1,p=1,k=2$" + salt + "$" + key,
		"negative":       "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key,
		"zero time":      "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"zero threads":   "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"huge memory":    "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key,
		"huge time":      "$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key,
		"threads > 255":  "$argon2id$v=19$m=4096,t=1,p=256$" + salt + "$" + key,
		"padded salt":    "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
		"bad base64":     "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:10] + "!" + key[11:],
		"short salt":     "$argon2id$v=19$m=64,t=1,p=1$AAAA$" + key,
		"short key":      "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAAAAAA",
		"missing key":    "$argon2id$v=19$m=64,t=1,p=1$" + salt,
		"trailing part":  good + "$",
		"bcrypt":         "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
	} {
		if ok, err := h.Verify("password123", enc); ok || err == nil {
			t.Errorf("%s: Verify(%q) = %v, %v; want false and an error", name, enc, ok, err)
		}
	}
}

func TestHashRefusesBadParams(t *testing.T) {
	for name, p := range map[string]PasswordParams{
		"no time":    {Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32},
		"no threads": {Memory: 64, Time: 1, Threads: 0, SaltLen: 16, KeyLen: 32},
		"tiny salt":  {Memory: 64, Time: 1, Threads: 1, SaltLen: 4, KeyLen: 32},
		"tiny key":   {Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 4},
		"low memory": {Memory: 8, Time: 1, Threads: 4, SaltLen: 16, KeyLen: 32},
	} {
		if _, err := (Hasher{Params: p}).Hash("password123"); err == nil {
			t.Errorf("%s: Hash accepted params %+v", name, p)
		}
	}
}

func TestVerifyDummy(t *testing.T) {
	// Nothing to assert but that it does the work without failing; timing
	// equality belongs in a benchmark, not a unit test.
	Hasher{Params: TestPasswordParams}.VerifyDummy("anything at all")
	Hasher{Params: PasswordParams{Time: 0}}.VerifyDummy("bad params fall back")
}

func TestValidatePassword(t *testing.T) {
	for _, tc := range []struct {
		name string
		pw   string
		ok   bool
	}{
		{"empty", "", false},
		{"7 chars", "1234567", false},
		{"8 chars", "12345678", true},
		{"8 two-byte runes", strings.Repeat("é", 8), true},
		{"7 four-byte runes (28 bytes)", strings.Repeat("😀", 7), false},
		{"256 chars", strings.Repeat("a", 256), true},
		{"257 chars", strings.Repeat("a", 257), false},
		{"256 four-byte runes (1024 bytes)", strings.Repeat("😀", 256), true},
		{"1025 bytes", strings.Repeat("a", 1025), false},
		{"invalid UTF-8", "12345678\xff", false},
	} {
		err := ValidatePassword(tc.pw)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: ValidatePassword = %v; want nil", tc.name, err)
			}
			continue
		}
		var fe *ferry.Error
		if !errors.As(err, &fe) || fe.Code != ferry.Invalid || fe.Fields["password"] == "" {
			t.Errorf("%s: ValidatePassword = %#v; want an Invalid error on field password", tc.name, err)
		}
	}
}

func BenchmarkHashDefault(b *testing.B) {
	h := Hasher{Params: DefaultPasswordParams}
	for b.Loop() {
		if _, err := h.Hash("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
