package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

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

// productionID connects to a production DSN and returns its server's
// identity and its database's name; when it is unreachable, what was seen
// the last time it was reached.
func (t *Target) productionID(ctx context.Context, dsn string) (id, db string, err error) {
	p, err := connect(ctx, dsn, "", true)
	if err != nil {
		if seen, ok := t.servers().recall(dsn); ok && !serverAnswered(err) {
			return seen.id, seen.database, nil
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
	t.servers().remember(dsn, serverIdentity{id, db})
	return id, db, nil
}

// serverAnswered reports whether the server answered the connection with
// an error of its own (a refused login, a missing database, too many
// connections) rather than not answering: it is up, so what was seen of
// it before may no longer be true, and only a fresh answer will do.
func serverAnswered(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
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
		if storeID, storeDB, err = t.productionID(ctx, t.StoreDSN); err != nil {
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
		pid, pdb, err := t.productionID(ctx, dsn)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("production: %w", err)
			}
			// An unreachable server that was never seen cannot be told
			// apart from staging's: say so rather than guess.
			if serverAnswered(err) {
				return fmt.Errorf("refused: production server %s answered with an error, so stagebot cannot check that staging is not on it; correct its DSN in production_servers: %w", Describe(dsn), err)
			}
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
