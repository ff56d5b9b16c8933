package bolt_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/bolt"
	"github.com/stagebot/stagebot/store/storetest"
)

func TestStore_Contract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		path := filepath.Join(t.TempDir(), "stagebot.db")
		s := MustOpen(t, path)
		return s, func() store.Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = MustOpen(t, path)
			return s
		}
	})
}

func TestOpen_FileInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagebot.db")
	MustOpen(t, path)
	_, err := bolt.Open(path)
	if err == nil {
		t.Fatal("second Open of a file in use succeeded")
	}
	if !strings.Contains(err.Error(), "another stagebot process is using this file") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not say what is wrong: %v", err)
	}
}

func TestOpen_NotABoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.Repeat("targets: {}\n", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bolt.Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a non-store file: error = %v, want one naming the file", err)
	}
}

// MustOpen opens a store at path and closes it when the test ends.
func MustOpen(tb testing.TB, path string) *bolt.Store {
	tb.Helper()
	s, err := bolt.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
