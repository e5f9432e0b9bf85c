package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MinSecretKeyLen is the shortest server secret key accepted, in bytes.
const MinSecretKeyLen = 32

// LoadOrCreateSecretKey returns the server's secret key stored hex-encoded
// at path. When there is no file, it creates one holding 32 new random bytes,
// readable only by its owner. An existing file that others can read is
// narrowed to mode 0600; one holding anything but hex of at least
// MinSecretKeyLen bytes is an error, never silently replaced, because
// replacing the key signs everyone out.
func LoadOrCreateSecretKey(path string) ([]byte, error) {
	key, err := readSecretKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = make([]byte, MinSecretKeyLen)
	rand.Read(key)
	created, err := writeSecretKey(path, key)
	if err != nil {
		return nil, err
	}
	if !created {
		// Another process started at the same moment and won: use its key,
		// so both sign with the same one.
		return readSecretKey(path)
	}
	return key, nil
}

func readSecretKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: secret key %s: %w", path, err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return nil, fmt.Errorf("auth: secret key %s is readable by others and chmod failed: %w", path, err)
		}
	}
	// A key is 64 hex characters; refuse to read a huge file wholesale.
	raw, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("auth: secret key %s: %w", path, err)
	}
	key, err := hex.DecodeString(string(bytes.TrimSpace(raw)))
	if err != nil {
		return nil, fmt.Errorf("auth: secret key %s is not hex", path)
	}
	if len(key) < MinSecretKeyLen {
		return nil, fmt.Errorf("auth: secret key %s is %d bytes, need at least %d", path, len(key), MinSecretKeyLen)
	}
	return key, nil
}

// writeSecretKey writes key to a temporary file and links it into place, so
// readers never see a partial key and a concurrent creator's key is never
// overwritten. created is false when path already existed.
func writeSecretKey(path string, key []byte) (created bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("auth: secret key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".secret-key-*") // CreateTemp uses mode 0600
	if err != nil {
		return false, fmt.Errorf("auth: create secret key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("auth: write secret key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		// Some filesystems have no hard links. Rename is atomic too, only
		// not exclusive, which matters only if two instances start at once.
		if err := os.Rename(tmp.Name(), path); err != nil {
			return false, fmt.Errorf("auth: install secret key %s: %w", path, err)
		}
	}
	syncDir(dir)
	return true, nil
}

// syncDir makes the new directory entry durable; a failure only weakens
// crash safety, so it is not reported.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
