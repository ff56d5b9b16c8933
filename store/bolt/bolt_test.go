package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

func TestOpen_EmptyFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagebot.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bolt.Open(path)
	if err == nil || !strings.Contains(err.Error(), "the file is empty") {
		t.Fatalf("Open of an empty file: error = %v", err)
	}
	if st, _ := os.Stat(path); st.Size() != 0 {
		t.Fatal("the empty file was written to")
	}
}

// TestOpen_DamageIsAnErrorNotAPanic overwrites each page of a store in
// turn with random bytes: opening and reading it either works or fails with
// an error, never a panic.
func TestOpen_DamageIsAnErrorNotAPanic(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := bolt.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 120 {
		r := &store.Run{Target: "fas2", Pipeline: "default", State: store.RunSucceeded, Reason: strings.Repeat("x", i)}
		if err := s.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		s.AppendLog(ctx, r.ID, []byte(strings.Repeat("log line\n", 20)))
	}
	s.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	damagedSeen := 0
	for off := 0; off < len(data); off += page {
		bad := append([]byte(nil), data...)
		for i := off; i < min(off+page, len(bad)); i++ {
			bad[i] = byte(rng.UintN(256))
		}
		path := filepath.Join(dir, fmt.Sprintf("bad-%d.db", off/page))
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("page at %d damaged: panic %v", off, p)
				}
			}()
			s, err := bolt.Open(path)
			if err != nil {
				if errors.Is(err, bolt.ErrDamaged) && strings.Contains(err.Error(), "restore it from a backup") {
					damagedSeen++
				} else if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "another stagebot process") {
					t.Errorf("page at %d damaged: unclear error %v", off, err)
				}
				return
			}
			defer s.Close()
			// Reading everything meets the damage, as an error.
			_, err1 := s.Runs(ctx, store.RunFilter{})
			_, err2 := s.Log(ctx, 60)
			_, err3 := s.Holds(ctx, false)
			for _, err := range []error{err1, err2, err3} {
				if errors.Is(err, bolt.ErrDamaged) {
					damagedSeen++
					break
				}
			}
		}()
	}
	if damagedSeen == 0 {
		t.Fatal("no damaged page was reported as damage")
	}
	t.Logf("%d of %d damaged pages reported as damage", damagedSeen, (len(data)+page-1)/page)
}
