package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagebot/stagebot/internal/pgtest"
)

// A failure for lack of space says what stagebot keeps on staging's
// server that could make room; any other failure is left as it is.
func TestExplainDiskFull(t *testing.T) {
	srv := pgtest.New(t)
	pgtest.Exec(t, srv.DSN("postgres"), "create database shop", "create database shop__stagebot_prev")
	tg := &Target{Name: "shop", StagingDSN: srv.DSN("shop")}
	full := &pgconn.PgError{Code: "53100", Message: `could not extend file "base/16384/16385": No space left on device`}
	err := tg.explainDiskFull(context.Background(), full)
	if !errors.Is(err, full) || !strings.Contains(err.Error(), "staging's server is out of disk space") || !strings.Contains(err.Error(), "shop__stagebot_prev (the previous copy kept for rollback) holds") {
		t.Errorf("disk full: %v", err)
	}
	other := errors.New("connection refused")
	if got := tg.explainDiskFull(context.Background(), other); got != other {
		t.Errorf("another failure was changed: %v", got)
	}
	if got := tg.explainDiskFull(context.Background(), nil); got != nil {
		t.Errorf("no failure became %v", got)
	}
}
