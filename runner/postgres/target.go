package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/stagebot/stagebot/internal/pgbin"
)

// Suffixes of the databases a refresh keeps beside staging.
const (
	NextSuffix = "__stagebot_next"
	PrevSuffix = "__stagebot_prev"
	// OldSuffix names a replaced copy on its way out: it is dropped in the
	// background once staging is back.
	OldSuffix = "__stagebot_old"
	// swapSuffix names staging for a moment during a rollback.
	swapSuffix = "__stagebot_swap"
	// commentPrefix marked databases stagebot created before the Registry
	// took over; such databases still count as stagebot's.
	commentPrefix = "stagebot:"
)

// Target is one staging database and the production database it copies:
// its exported fields are its configuration, set before first use and
// never changed by stagebot; what it holds while it runs (locks,
// background drops and repairs, what it learned of the servers) is rt's.
type Target struct {
	Name          string
	ProductionDSN string
	StagingDSN    string
	// ProductionServers lists other servers (DSNs) staging must never be.
	ProductionServers []string
	// Adopt lets the bot replace a staging database it did not create.
	Adopt bool
	// NoOwner and NoACL restore without ownership or privileges, for a
	// staging server that lacks production's roles.
	NoOwner, NoACL bool
	// KeepPrevious keeps the replaced staging copy for rollback.
	KeepPrevious bool
	// SpacePermitting (with KeepPrevious) drops the previous copy before a
	// copy starts, unless DiskBudget says both fit: the kept copy never
	// stands between a refresh and the disk it needs.
	SpacePermitting bool
	// DiskBudget is how much the databases on staging's server may take
	// (0: unknown); a refresh that would not fit is warned of at plan time.
	DiskBudget int64
	// KeepBase keeps a template copy of each finished shadow (after its
	// sql and check steps) as <db>__stagebot_base, for Reset: one more
	// copy of staging's size on staging's server.
	KeepBase bool
	// Jobs is the parallelism of dumps and restores (default 2).
	Jobs int
	// WorkDir is where dumps are written (default the system temp dir).
	WorkDir string
	// BinDir holds pg_dump, pg_restore and psql (default: found).
	BinDir string
	// Logger reports what happens after a step has ended: the background
	// drop of a replaced copy. Default: discarded.
	Logger *slog.Logger
	// Registry remembers the databases stagebot made (default: in memory,
	// for this process only).
	Registry Registry
	// Notify tells people what a background repair did, once staging's
	// server answered again after a failed step could not clean up.
	Notify func(msg string)
	// Fence, when set, says whether this process may still change staging
	// for the next need: with several bots sharing one store, only the
	// one holding the lease may, and only while it surely holds it. Every
	// change to staging's server asks first.
	Fence func(need time.Duration) error
	// StoreDSN, when the bot keeps its state in PostgreSQL, is that
	// database: it must not be staging's database, nor on a production
	// server (the bot writes its state there).
	StoreDSN string

	// Masking, when set, masks production's rows on their way into the
	// shadow: in the stream, or, for a backup or pg_dump's copy, as plain
	// SQL passing through the bot (maskfile.go).
	Masking *Masking

	// Servers remembers the production servers seen, to tell them from
	// staging's while they are down (default: this Target's own memory).
	Servers *Servers

	rt runtime // see runtime.go
}

func (t *Target) jobs() int {
	if t.Jobs > 0 {
		return t.Jobs
	}
	return 2
}

// StagingDB is the staging database's name.
func (t *Target) StagingDB() (string, error) {
	cfg, err := pgx.ParseConfig(t.StagingDSN)
	if err != nil {
		return "", fmt.Errorf("staging dsn: %w", err)
	}
	if cfg.Database == "" || cfg.Database == "postgres" || strings.HasPrefix(cfg.Database, "template") {
		return "", fmt.Errorf("the staging DSN must name the staging database (not %q)", cfg.Database)
	}
	// PostgreSQL cuts names at 63 bytes: the shadow's and the previous
	// copy's names must stay whole and distinct.
	if n := len(cfg.Database) + len(swapSuffix); n > 63 {
		return "", fmt.Errorf("the staging database's name %q is %d bytes; stagebot needs at most %d, to name its shadow %q: use a shorter name", cfg.Database, len(cfg.Database), 63-len(swapSuffix), cfg.Database+NextSuffix)
	}
	return cfg.Database, nil
}

func (t *Target) names() (db, next, prev string, err error) {
	db, err = t.StagingDB()
	return db, db + NextSuffix, db + PrevSuffix, err
}

func (t *Target) logger() *slog.Logger {
	if t.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Logger
}

// readBuffer is how much a connection reads from its socket at once.
const readBuffer = 256 << 10

// connect opens a connection to dsn with its database replaced by db ("" to
// keep it). Production connections are read-only.
func connect(ctx context.Context, dsn, db string, readOnly bool) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	if db != "" {
		cfg.Database = db
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	// A peer that stops answering (a host gone, a firewall that dropped the
	// connection's state) is noticed in about a minute, not the kernel's two
	// hours.
	cfg.DialFunc = (&net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}}).DialContext
	// A COPY from production arrives as one message a row: read from the
	// socket in big pieces, not pgx's 8 kB, so that a gigabyte costs the
	// bot thousands of reads and not a hundred thousand.
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBuffer), w)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "stagebot"
	// A timeout set on the database or the role (production often has
	// one) must not cut a COPY or an index build short; pg_dump does the
	// same.
	for _, p := range []string{"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"} {
		cfg.RuntimeParams[p] = "0"
	}
	if readOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s/%s: %w", hostPort(cfg), cfg.Database, err)
	}
	return c, nil
}

func hostPort(cfg *pgx.ConnConfig) string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// Describe shows a DSN without its password.
func Describe(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable dsn)"
	}
	return hostPort(cfg) + "/" + cfg.Database
}

func (t *Target) production(ctx context.Context) (*pgx.Conn, error) {
	return connect(ctx, t.ProductionDSN, "", true)
}

// maintenance connects to the staging server's postgres database, for a
// change: only while the lease (Fence) allows it.
func (t *Target) maintenance(ctx context.Context) (*pgx.Conn, error) {
	if err := t.fence(0); err != nil {
		return nil, err
	}
	return connect(ctx, t.StagingDSN, "postgres", false)
}

// swapBudget is how long the lease must still last when the renames
// that swap staging begin; the renames may take no longer (their lock and
// statement timeouts). It is under half the shortest lease (3s), which a
// leader always holds for at least that long between renewals.
const swapBudget = time.Second

func (t *Target) fence(need time.Duration) error {
	if t.Fence == nil {
		return nil
	}
	if err := t.Fence(need); err != nil {
		return fmt.Errorf("staging not touched: %w", err)
	}
	return nil
}

type dbInfo struct {
	exists    bool
	comment   string
	allowConn bool
}

func database(ctx context.Context, c *pgx.Conn, name string) (dbInfo, error) {
	var d dbInfo
	err := c.QueryRow(ctx, `select coalesce(shobj_description(oid, 'pg_database'), ''), datallowconn from pg_database where datname = $1`, name).Scan(&d.comment, &d.allowConn)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("look up database %s: %w", name, err)
	}
	d.exists = true
	return d, nil
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// cleanupTimeout bounds each thing undone or closed after a failure: the
// connection it goes over may lead to a server that no longer answers, and
// nothing may wait on a silent peer for ever.
const cleanupTimeout = 10 * time.Second

// afterwards is a context for undoing or closing after ctx ended: not
// cancelled with it, but bounded by cleanupTimeout.
func afterwards(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// closeConn closes c within cleanupTimeout, whatever became of ctx.
func closeConn(ctx context.Context, c *pgx.Conn) {
	actx, cancel := afterwards(ctx)
	defer cancel()
	c.Close(actx)
}

// rollbackTx rolls tx back within cleanupTimeout, whatever became of ctx.
func rollbackTx(ctx context.Context, tx pgx.Tx) {
	actx, cancel := afterwards(ctx)
	defer cancel()
	tx.Rollback(actx)
}

// dropDatabase drops name if it exists, ending its sessions.
func dropDatabase(ctx context.Context, c *pgx.Conn, name string) error {
	if _, err := c.Exec(ctx, "drop database if exists "+quoteIdent(name)+" with (force)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// DropShadow removes the shadow database if it exists.
func (t *Target) DropShadow(ctx context.Context) error {
	_, next, _, err := t.names()
	if err != nil {
		return err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return dropDatabase(ctx, c, next)
}

// FindBinDir returns the directory of pg_dump, pg_restore and psql:
// $PG_BINDIR, else the newest /usr/lib/postgresql/*/bin, else $PATH.
func FindBinDir() (string, error) {
	d, err := pgbin.Find("pg_restore")
	if err != nil {
		return "", errors.New("pg_dump and pg_restore not found: install Debian's postgresql-client package, or set PG_BINDIR")
	}
	return d, nil
}
