package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stagebot/stagebot/internal/pgbin"
	"github.com/stagebot/stagebot/runner"
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

// Target is one staging database and the production database it copies.
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

	repairMu     sync.Mutex
	repairCancel context.CancelFunc // a background repair is pending
	repairDone   chan struct{}

	regOnce sync.Once

	fromBase atomic.Bool // the shadow is a copy of the base (Reset)

	mu      sync.Mutex     // one swap (or drop of a replaced copy) at a time
	bg      sync.WaitGroup // background drops
	dropped atomic.Int64   // background drops not yet over
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

// serverID identifies a server by its system identifier, which initdb
// chose and every login reads alike (pg_control_system() is open to every
// role). A standby, or a server made from a copy of another's files, shares
// it: for the guards that is the same server, which is the safe answer.
// When it cannot be read, the server cannot be told apart for certain and
// the caller refuses.
func serverID(ctx context.Context, c *pgx.Conn) (string, error) {
	var id string
	if err := c.QueryRow(ctx, "select system_identifier::text from pg_catalog.pg_control_system()").Scan(&id); err != nil {
		return "", fmt.Errorf("cannot tell which server %s is (reading its system identifier failed: %w); stagebot refuses to write where it cannot tell staging from production: let the role execute pg_catalog.pg_control_system()", describeConn(c), err)
	}
	if id == "" || id == "0" {
		return "", fmt.Errorf("cannot tell which server %s is (it reports no system identifier); stagebot refuses to write where it cannot tell staging from production", describeConn(c))
	}
	return id, nil
}

func describeConn(c *pgx.Conn) string {
	cfg := c.Config()
	return hostPort(cfg) + "/" + cfg.Database
}

// seenServers remembers the identity of every production DSN that was
// reached, so that one that is down for a while can still be told apart
// from staging's server.
var seenServers sync.Map // dsn → [2]string{id, database}

// productionID connects to a production DSN and returns its server's
// identity and its database's name; when it is unreachable, what was seen
// the last time it was reached.
func productionID(ctx context.Context, dsn string) (id, db string, err error) {
	p, err := connect(ctx, dsn, "", true)
	if err != nil {
		if seen, ok := seenServers.Load(dsn); ok && !isAuthError(err) {
			v := seen.([2]string)
			return v[0], v[1], nil
		}
		return "", "", err
	}
	defer p.Close(ctx)
	if id, err = serverID(ctx, p); err != nil {
		return "", "", err
	}
	if err := p.QueryRow(ctx, "select current_database()").Scan(&db); err != nil {
		return "", "", err
	}
	seenServers.Store(dsn, [2]string{id, db})
	return id, db, nil
}

// isAuthError reports whether the server answered and refused the login:
// it is up, so what was seen before may no longer be true of it.
func isAuthError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
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

// Guard checks, without changing anything, that the destination may be
// written: it is not the source, not on a production server, and was
// created by stagebot (or the target says to adopt it).
func (t *Target) Guard(ctx context.Context) error {
	db, _, _, err := t.names()
	if err != nil {
		return err
	}
	stg, err := t.maintenance(ctx)
	if err != nil {
		return err
	}
	defer stg.Close(ctx)
	stgID, err := serverID(ctx, stg)
	if err != nil {
		return err
	}
	servers := append([]string{t.ProductionDSN}, t.ProductionServers...)
	var storeID, storeDB string
	if t.StoreDSN != "" {
		if storeID, storeDB, err = productionID(ctx, t.StoreDSN); err != nil {
			return fmt.Errorf("cannot tell which server the bot's store is on: %w", err)
		}
		if storeID == stgID && storeDB == db {
			return fmt.Errorf("refused: the destination %s is the bot's own store (store.dsn); give the store a database of its own", Describe(t.StagingDSN))
		}
	}
	for i, dsn := range servers {
		if dsn == "" {
			continue
		}
		pid, pdb, err := productionID(ctx, dsn)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("production: %w", err)
			}
			// An unreachable server that was never seen cannot be told
			// apart from staging's: say so rather than guess.
			return fmt.Errorf("refused: production server %s is unreachable and was not seen before, so stagebot cannot check that staging is not on it: %w", Describe(dsn), err)
		}
		if pid == storeID {
			return fmt.Errorf("refused: the bot's store (store.dsn) is on production server %s (system identifier %s), and the bot writes its state there; move the store to a server that is not production", Describe(dsn), pid)
		}
		if pid == stgID {
			if i == 0 && pdb == db {
				return fmt.Errorf("refused: the destination %s is the source database itself (same server and database)", Describe(t.StagingDSN))
			}
			return fmt.Errorf("refused: the destination server %s is a production server (it is %s's server, or a standby or file copy of it: both report system identifier %s); point staging at a server of its own", Describe(t.StagingDSN), Describe(dsn), pid)
		}
	}
	info, err := database(ctx, stg, db)
	if err != nil {
		return err
	}
	if info.exists && !t.Adopt {
		_, managed, err := t.madeBy(ctx, stg, db)
		if err != nil {
			return err
		}
		if !managed {
			return fmt.Errorf("refused: database %s on %s was not created by stagebot (or this bot's state file has no record of it); set adopt: true on the target to let stagebot replace it", db, Describe(t.StagingDSN))
		}
	}
	return nil
}

// MissingRoles lists roles production's objects are owned by or granted to
// that the staging server lacks, unless NoOwner or NoACL make them moot.
func (t *Target) MissingRoles(ctx context.Context) ([]string, error) {
	p, err := t.production(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Close(ctx)
	want := map[string]string{} // role → why
	const userNS = `n.nspname not in ('pg_catalog','information_schema') and n.nspname not like 'pg\_toast%' and n.nspname not like 'pg\_temp%'`
	if !t.NoOwner {
		rows, err := p.Query(ctx, `
			select distinct r.rolname from (
				select c.relowner o from pg_class c join pg_namespace n on n.oid = c.relnamespace where `+userNS+`
				union select n.nspowner from pg_namespace n where `+userNS+` and n.nspname <> 'public'
				union select p.proowner from pg_proc p join pg_namespace n on n.oid = p.pronamespace where `+userNS+`
				union select t.typowner from pg_type t join pg_namespace n on n.oid = t.typnamespace where `+userNS+`
				union select datdba from pg_database where datname = current_database()
			) x join pg_roles r on r.oid = x.o`)
		if err != nil {
			return nil, fmt.Errorf("list owners on production: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			want[n] = "owns objects"
		}
	}
	if !t.NoACL {
		rows, err := p.Query(ctx, `
			select distinct r.rolname from (
				select (aclexplode(c.relacl)).grantee g from pg_class c join pg_namespace n on n.oid = c.relnamespace where `+userNS+`
				union select (aclexplode(n.nspacl)).grantee from pg_namespace n where `+userNS+`
				union select (aclexplode(p.proacl)).grantee from pg_proc p join pg_namespace n on n.oid = p.pronamespace where `+userNS+`
				union select (aclexplode(datacl)).grantee from pg_database where datname = current_database()
			) x join pg_roles r on r.oid = x.g`)
		if err != nil {
			return nil, fmt.Errorf("list grantees on production: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if _, ok := want[n]; !ok {
				want[n] = "has privileges"
			}
		}
	}
	// Settings a role has in the database go with it whatever no_owner
	// and no_acl say.
	rows, err := p.Query(ctx, `select r.rolname from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
		where s.setdatabase = (select oid from pg_database where datname = current_database())`)
	if err != nil {
		return nil, fmt.Errorf("list roles with settings in the database on production: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := want[n]; !ok {
			want[n] = "has settings in the database"
		}
	}
	return t.lacking(ctx, want)
}

// lacking lists the roles of want (role → why it is needed) that staging's
// server does not have, as "role (why)", sorted.
func (t *Target) lacking(ctx context.Context, want map[string]string) ([]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	stg, err := t.maintenance(ctx)
	if err != nil {
		return nil, err
	}
	defer stg.Close(ctx)
	rows, err := stg.Query(ctx, "select rolname from pg_roles")
	if err != nil {
		return nil, err
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, h := range have {
		delete(want, h)
	}
	var out []string
	for n, why := range want {
		out = append(out, fmt.Sprintf("%s (%s)", n, why))
	}
	sort.Strings(out)
	return out, nil
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

// BetweenRenames, when set, is called inside the swap's transaction just
// before its last rename. Nothing in stagebot sets it: tests do, to kill the
// process at exactly that point.
var BetweenRenames func()

// AfterSwap, when set, is called once the swap has committed, before it
// returns. Only tests set it.
var AfterSwap func()

// exchange puts database in into staging's place, moving staging to out,
// in one transaction; retire, when given, is renamed to old in the same
// transaction, making room for out. Staging refuses new connections and the
// sessions on all of them are ended first. It returns how long staging was
// unavailable.
func (t *Target) exchange(ctx context.Context, c *pgx.Conn, db, in, out, retire, old string, log io.Writer) (time.Duration, error) {
	cur, err := database(ctx, c, db)
	if err != nil {
		return 0, err
	}
	if !cur.exists {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(in)+" rename to "+quoteIdent(db)); err != nil {
			return 0, fmt.Errorf("rename %s to %s: %w", in, db, err)
		}
		fmt.Fprintf(log, "%s did not exist; %s renamed into place\n", db, in)
		return 0, nil
	}
	start := time.Now()
	if _, err := c.Exec(ctx, "alter database "+quoteIdent(db)+" with allow_connections false"); err != nil {
		return 0, fmt.Errorf("block connections to %s: %w", db, err)
	}
	restore := func() {
		actx, cancel := afterwards(ctx)
		defer cancel()
		if _, err := c.Exec(actx, "alter database "+quoteIdent(db)+" with allow_connections true"); err != nil {
			fmt.Fprintf(log, "could not allow connections to %s again: %v\n", db, err)
		}
	}
	if retire != "" {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(retire)+" with allow_connections false"); err != nil {
			restore()
			return 0, fmt.Errorf("block connections to %s: %w", retire, err)
		}
	}
	// End the sessions still open on staging and on the incoming copy.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := c.QueryRow(ctx, `select count(pg_terminate_backend(pid)) from pg_stat_activity where datname in ($1, $2, $3) and pid <> pg_backend_pid()`, db, in, retire).Scan(&n)
		if err != nil {
			restore()
			return 0, fmt.Errorf("end sessions on %s: %w", db, err)
		}
		if n == 0 {
			break
		}
		fmt.Fprintf(log, "ended %d session(s) on %s\n", n, db)
		if err := t.fence(swapBudget); err != nil {
			restore()
			return 0, err
		}
		if time.Now().After(deadline) {
			restore()
			return 0, fmt.Errorf("sessions on %s would not end within 30s", db)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := t.fence(swapBudget); err != nil {
		restore()
		return 0, err
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		restore()
		return 0, err
	}
	defer rollbackTx(ctx, tx)
	bound := fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL statement_timeout = %d", swapBudget.Milliseconds(), swapBudget.Milliseconds())
	if _, err := tx.Exec(ctx, bound); err != nil {
		rollbackTx(ctx, tx)
		restore()
		return 0, err
	}
	renames := [][2]string{{db, out}, {in, db}}
	if retire != "" {
		renames = append([][2]string{{retire, old}}, renames...)
	}
	for i, rn := range renames {
		if i == len(renames)-1 && BetweenRenames != nil {
			BetweenRenames()
		}
		if _, err := tx.Exec(ctx, "alter database "+quoteIdent(rn[0])+" rename to "+quoteIdent(rn[1])); err != nil {
			rollbackTx(ctx, tx)
			restore()
			return 0, fmt.Errorf("rename %s to %s: %w", rn[0], rn[1], err)
		}
	}
	if _, err := tx.Exec(ctx, "alter database "+quoteIdent(db)+" with allow_connections true"); err != nil {
		rollbackTx(ctx, tx)
		restore()
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		restore()
		return 0, fmt.Errorf("commit the swap: %w", err)
	}
	if AfterSwap != nil {
		AfterSwap()
	}
	return time.Since(start), nil
}

// Swap puts the shadow into staging's place. The replaced copy becomes the
// previous one (KeepPrevious), or goes; so does the previous copy it
// replaces. Dropping a database makes PostgreSQL write out everything the
// refresh wrote (a checkpoint), which can take seconds: that happens in
// the background once staging is back, and Wait waits for it. It returns
// how long staging was unavailable.
func (t *Target) Swap(ctx context.Context, log io.Writer) (time.Duration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	db, next, prev, err := t.names()
	if err != nil {
		return 0, err
	}
	old := db + OldSuffix
	c, err := t.maintenance(ctx)
	if err != nil {
		return 0, err
	}
	defer closeConn(ctx, c)
	shadow, err := database(ctx, c, next)
	if err != nil {
		return 0, err
	}
	if !shadow.exists {
		return 0, fmt.Errorf("there is no %s to swap in: a pg_refresh step must run first", next)
	}
	// Left by a background drop the bot did not live to finish.
	if err := dropDatabase(ctx, c, old); err != nil {
		return 0, err
	}
	out, retire := old, ""
	if t.KeepPrevious {
		p, err := database(ctx, c, prev)
		if err != nil {
			return 0, err
		}
		out = prev
		if p.exists {
			retire = prev
		}
	} else if err := dropDatabase(ctx, c, prev); err != nil { // kept before keep_previous was turned off
		return 0, err
	}
	took, err := t.exchange(ctx, c, db, next, out, retire, old, log)
	if err != nil {
		return 0, err
	}
	if ex, err := database(ctx, c, old); err == nil && ex.exists {
		fmt.Fprintf(log, "the replaced copy (%s) is dropped in the background\n", old)
		t.dropLater(old)
	}
	return took, nil
}

// dropLater drops name in the background, after the swap that retired it.
// If it fails (or the bot stops first), the next swap or start drops it.
func (t *Target) dropLater(name string) {
	t.bg.Add(1)
	t.dropped.Add(1)
	go func() {
		defer t.bg.Done()
		defer t.dropped.Add(-1)
		t.mu.Lock()
		defer t.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		start := time.Now()
		c, err := t.maintenance(ctx)
		if err == nil {
			err = dropDatabase(ctx, c, name)
			c.Close(ctx)
		}
		if err != nil {
			t.logger().Warn("could not drop a replaced staging copy; the next refresh drops it", "target", t.Name, "database", name, "err", err)
			return
		}
		t.logger().Info("dropped the replaced staging copy", "target", t.Name, "database", name, "took", time.Since(start).Round(time.Millisecond))
	}()
}

// Wait waits for background drops of replaced copies to end, and gives up
// a background repair (the next start repairs what is left).
func (t *Target) Wait() {
	if t.stopRepair() {
		t.logger().Warn("stopping while staging's server does not answer; the next start repairs what the last run left", "target", t.Name)
	}
	if n := t.dropped.Load(); n > 0 {
		t.logger().Info("waiting for a replaced staging copy to be dropped", "target", t.Name, "drops", n)
	}
	t.bg.Wait()
}

// Rollback swaps the previous copy back into place; the copy it replaces
// becomes the previous one, so a second rollback undoes the first.
func (t *Target) Rollback(ctx context.Context, log io.Writer) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	db, _, prev, err := t.names()
	if err != nil {
		return "", err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return "", err
	}
	defer closeConn(ctx, c)
	p, err := database(ctx, c, prev)
	if err != nil {
		return "", err
	}
	if !p.exists {
		return "", fmt.Errorf("there is no previous copy (%s) to roll back to", prev)
	}
	tmp := db + swapSuffix
	if err := dropDatabase(ctx, c, tmp); err != nil {
		return "", err
	}
	if _, err := c.Exec(ctx, "alter database "+quoteIdent(prev)+" with allow_connections true"); err != nil {
		return "", err
	}
	took, err := t.exchange(ctx, c, db, prev, tmp, "", "", log)
	if err != nil {
		return "", err
	}
	if _, err := c.Exec(ctx, "alter database "+quoteIdent(tmp)+" rename to "+quoteIdent(prev)); err != nil {
		return "", fmt.Errorf("keep the replaced copy as %s: %w", prev, err)
	}
	return fmt.Sprintf("%s is back to the copy the last refresh replaced (unavailable for %s); the replaced copy is kept as %s", db, took.Round(time.Millisecond), prev), nil
}

// Recover repairs what a crash left: it drops the shadow and any replaced
// copy whose background drop did not finish, finishes a rollback that was
// cut short, puts the previous copy back if staging is missing, and lets
// connections into staging again. It returns what it did ("" when nothing
// was needed).
func (t *Target) Recover(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.recoverLocked(ctx)
}

func (t *Target) recoverLocked(ctx context.Context) (string, error) {
	db, next, prev, err := t.names()
	if err != nil {
		return "", err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return "", err
	}
	defer closeConn(ctx, c)
	var did []string
	for _, gone := range []struct{ name, what string }{{next, "the unfinished copy"}, {db + OldSuffix, "the replaced copy"}} {
		if d, err := database(ctx, c, gone.name); err != nil {
			return "", err
		} else if d.exists {
			if err := dropDatabase(ctx, c, gone.name); err != nil {
				return "", err
			}
			did = append(did, "dropped "+gone.what+" "+gone.name)
		}
	}
	cur, err := database(ctx, c, db)
	if err != nil {
		return "", err
	}
	p, err := database(ctx, c, prev)
	if err != nil {
		return "", err
	}
	// A rollback renames staging to tmp and the previous copy into place
	// in one transaction, then tmp to the previous copy's name.
	tmp := db + swapSuffix
	if tm, err := database(ctx, c, tmp); err != nil {
		return "", err
	} else if tm.exists {
		to, what := prev, "kept the copy a rollback replaced as "+prev
		if !cur.exists {
			to, what = db, db+" was missing: put back the copy a rollback had moved aside"
		}
		if to == prev && p.exists {
			if err := dropDatabase(ctx, c, tmp); err != nil {
				return "", err
			}
			did = append(did, "dropped "+tmp+", left by a rollback")
		} else {
			if _, err := c.Exec(ctx, "alter database "+quoteIdent(tmp)+" rename to "+quoteIdent(to)); err != nil {
				return "", fmt.Errorf("rename %s to %s: %w", tmp, to, err)
			}
			did = append(did, what)
			if to == db {
				cur, err = database(ctx, c, db)
			} else {
				p, err = database(ctx, c, prev)
			}
			if err != nil {
				return "", err
			}
		}
	}
	if !cur.exists && p.exists {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(prev)+" rename to "+quoteIdent(db)); err != nil {
			return "", err
		}
		cur = p
		did = append(did, fmt.Sprintf("%s was missing: put the previous copy back", db))
	}
	managed := t.Adopt
	if cur.exists && !managed {
		if _, managed, err = t.madeBy(ctx, c, db); err != nil {
			return "", err
		}
	}
	if cur.exists && !cur.allowConn && managed {
		if _, err := c.Exec(ctx, "alter database "+quoteIdent(db)+" with allow_connections true"); err != nil {
			return "", err
		}
		did = append(did, "let connections into "+db+" again")
	}
	return strings.Join(did, "; "), nil
}

// MadeBy returns the run that made the copy staging holds now: 0 when
// staging does not exist or no record says which run made it.
func (t *Target) MadeBy(ctx context.Context) (uint64, error) {
	db, err := t.StagingDB()
	if err != nil {
		return 0, err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return 0, err
	}
	defer closeConn(ctx, c)
	run, _, err := t.madeBy(ctx, c, db)
	return run, err
}

// Holding says which copy staging holds, as seen from run.
func (t *Target) Holding(ctx context.Context, run uint64) string {
	db, _ := t.StagingDB()
	made, err := t.MadeBy(ctx)
	switch {
	case err != nil:
		return fmt.Sprintf("I cannot tell which copy %s holds (%v)", db, err)
	case made == run && run != 0:
		return fmt.Sprintf("%s holds the new copy, made by run %d", db, run)
	case made != 0:
		return fmt.Sprintf("%s holds the copy it had before run %d (made by run %d)", db, run, made)
	}
	return fmt.Sprintf("%s holds the copy it had before run %d", db, run)
}

// repairLater keeps trying, in the background, to repair what run left
// when staging's server stopped answering (a shadow it could not drop, a
// swap cut short that left staging refusing connections). Once it has, it
// says what it did through Notify. The next run on the target, and Wait,
// end it.
func (t *Target) repairLater(run uint64, why error) {
	t.repairMu.Lock()
	defer t.repairMu.Unlock()
	if t.repairCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.repairCancel, t.repairDone = cancel, done
	t.logger().Warn("staging's server does not answer; repairing what the run left once it does", "target", t.Name, "run", run, "err", why)
	go func() {
		defer close(done)
		delay := repairEvery
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			did, err := t.Recover(ctx)
			if err != nil {
				delay = min(2*delay, 30*time.Second)
				continue
			}
			t.repairMu.Lock()
			if ctx.Err() == nil {
				t.repairCancel, t.repairDone = nil, nil
			}
			t.repairMu.Unlock()
			if did == "" {
				did = "nothing was left to repair"
			}
			msg := fmt.Sprintf("Staging's server for %s answers again after run %d: %s. %s.", t.Name, run, did, t.Holding(ctx, run))
			t.logger().Info("repaired what a run left", "target", t.Name, "run", run, "did", did)
			if t.Notify != nil {
				t.Notify(msg)
			}
			return
		}
	}()
}

// afterFailedSwap makes sure a swap that failed part-way (staging's server
// died, the connection broke) leaves staging usable: it repairs at once
// when the server answers, or as soon as it answers again. It returns the
// swap's error with what it found.
func (t *Target) afterFailedSwap(ctx context.Context, env *runner.Env, swapErr error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	did, err := t.Recover(rctx)
	switch {
	case err != nil:
		t.repairLater(env.Run, err)
		return fmt.Errorf("%w; staging's server does not answer (%v): stagebot repairs staging as soon as it answers again, and says so", swapErr, err)
	case did != "":
		fmt.Fprintf(env.Log, "after the failed swap: %s\n", did)
	}
	return fmt.Errorf("%w; %s", swapErr, t.Holding(rctx, env.Run))
}

// repairEvery is how soon a background repair first tries again.
var repairEvery = time.Second

// stopRepair ends a pending background repair and reports whether there
// was one.
func (t *Target) stopRepair() bool {
	t.repairMu.Lock()
	cancel, done := t.repairCancel, t.repairDone
	t.repairCancel, t.repairDone = nil, nil
	t.repairMu.Unlock()
	if cancel == nil {
		return false
	}
	cancel()
	<-done
	return true
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
