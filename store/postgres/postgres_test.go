package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/store"
	"github.com/stagebot/stagebot/store/postgres"
	"github.com/stagebot/stagebot/store/storetest"
)

var server *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	s, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "store/postgres tests need PostgreSQL:", err)
		return 1
	}
	defer s.Stop()
	server = s
	return m.Run()
}

var dbs atomic.Int64

// freshDB makes an empty database for one test.
func freshDB(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("store_%d", dbs.Add(1))
	pgtest.Exec(t, server.DSN("postgres"), "create database "+name)
	return server.DSN(name)
}

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore_Contract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		dsn := freshDB(t)
		s := open(t, dsn)
		return s, func() store.Store {
			s.Close()
			s = open(t, dsn)
			return s
		}
	})
}
