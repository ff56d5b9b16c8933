package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stagebot/stagebot/internal/pgtest"
	"github.com/stagebot/stagebot/runner/postgres"
)

// TestGuard_RemembersProductionWhileItIsDown: a production server that
// was reached once can still be told apart from staging's while it does
// not answer, by every target sharing the memory (a config reload makes
// new targets); a target that never saw it refuses, and so does one whose
// server answers with an error of its own (it is up, so only a fresh
// answer will do).
func TestGuard_RemembersProductionWhileItIsDown(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	other := pgtest.New(t)
	pgtest.Exec(t, other.DSN("postgres"), "create database gone")
	mem := &postgres.Servers{}
	target := func(mem *postgres.Servers, servers ...string) *postgres.Target {
		return &postgres.Target{Name: "app", ProductionDSN: f.target.ProductionDSN, StagingDSN: f.target.StagingDSN, Adopt: true, ProductionServers: servers, Servers: mem}
	}
	if err := target(mem, other.DSN("postgres"), other.DSN("gone")).Guard(ctx); err != nil {
		t.Fatalf("guard with the other production server up: %v", err)
	}
	// The database is dropped: the server answers, and refuses.
	pgtest.Exec(t, other.DSN("postgres"), "drop database gone")
	if err := target(mem, other.DSN("gone")).Guard(ctx); err == nil || !strings.Contains(err.Error(), "answered with an error") {
		t.Fatalf("guard while the server says the database is gone: %v, want a refusal", err)
	}
	if err := other.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := target(mem, other.DSN("postgres")).Guard(ctx); err != nil {
		t.Fatalf("guard while a remembered production server is down: %v", err)
	}
	err := target(nil, other.DSN("postgres")).Guard(ctx)
	if err == nil || !strings.Contains(err.Error(), "unreachable and was not seen before") {
		t.Fatalf("guard by a target that never saw the server: %v, want a refusal", err)
	}
}
