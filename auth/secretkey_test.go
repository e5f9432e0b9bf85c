package auth

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateSecretKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "secret.key")
	key, err := LoadOrCreateSecretKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("new key is %d bytes; want 32", len(key))
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %o; want 600", perm)
	}
	raw, _ := os.ReadFile(path)
	if strings.TrimSpace(string(raw)) != hex.EncodeToString(key) {
		t.Errorf("key file holds %q; want the key in hex", raw)
	}
	again, err := LoadOrCreateSecretKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("second load = %x, %v; want the same key", again, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries; temporary files were left behind", len(entries))
	}
}

func TestLoadSecretKeyNarrowsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	want := bytes.Repeat([]byte{0xab}, 48)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(want)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644) // in case the umask narrowed it already
	got, err := LoadOrCreateSecretKey(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("load = %x, %v; want %x", got, err, want)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %o left as is; want 600", info.Mode().Perm())
	}
}

func TestLoadSecretKeyRefusesBadFiles(t *testing.T) {
	for name, content := range map[string]string{
		"short":   strings.Repeat("ab", 31),
		"not hex": strings.Repeat("zz", 32),
		"empty":   "",
	} {
		path := filepath.Join(t.TempDir(), "secret.key")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if key, err := LoadOrCreateSecretKey(path); err == nil {
			t.Errorf("%s: loaded %x; want an error", name, key)
		}
		if raw, _ := os.ReadFile(path); string(raw) != content {
			t.Errorf("%s: the bad file was replaced", name)
		}
	}
}

func TestCreateSecretKeyConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadOrCreateSecretKey(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatal("instances starting together ended up with different keys")
		}
	}
}
