package postgres

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/runner"
)

// The database itself has properties a restore into an existing database
// does not carry: settings (ALTER DATABASE … SET, with list-valued ones as
// lists), per-role settings (ALTER ROLE … IN DATABASE … SET), its owner,
// its privileges, its comment, its connection limit and security labels.
// pg_dump --create writes them as its own entries; the refresh takes those
// entries, from production or from the backup, points them at the shadow
// and applies them once the data is in (a statement_timeout or
// default_transaction_read_only set on production's database must not
// apply to the restore itself).

// dbIdent matches a database name as pg_dump writes it.
const dbIdent = `("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`

// dbStatement finds the database a database-level statement names, at the
// start of a statement.
var dbStatement = regexp.MustCompile(`^(ALTER DATABASE |COMMENT ON DATABASE |ALTER ROLE (?:"(?:[^"]|"")+"|\S+) IN DATABASE |(?:GRANT|REVOKE) [^;]*? ON DATABASE |SECURITY LABEL FOR \S+ ON DATABASE )` + dbIdent)

// retarget points a database-level statement at db instead of the database
// it names; other statements come back unchanged, and ok is false.
func retarget(stmt, db string) (string, bool) {
	loc := dbStatement.FindStringSubmatchIndex(stmt)
	if loc == nil {
		return stmt, false
	}
	return stmt[:loc[3]] + quoteIdent(db) + stmt[loc[1]:], true
}

// databaseProps picks the database-level statements out of pg_dump's or
// pg_restore's plain output made with --create: everything of the DATABASE
// entry but CREATE DATABASE, and the DATABASE PROPERTIES entry, the
// database's comment, privileges and security labels.
func databaseProps(sql string) []string {
	_, entries := splitPostData(sql)
	var out []string
	for _, e := range entries {
		onDB := strings.HasPrefix(e.name, "DATABASE ")
		switch {
		case e.kind == "COMMENT" && onDB, e.kind == "SECURITY LABEL" && onDB:
			// One statement, whose text may span lines.
			out = append(out, e.sql)
		case e.kind == "DATABASE", e.kind == "DATABASE PROPERTIES", e.kind == "ACL" && onDB:
			for _, s := range statements(e.sql) {
				switch {
				case strings.HasPrefix(s, "CREATE DATABASE "):
				case strings.HasPrefix(s, "SET "), strings.HasPrefix(s, "SELECT pg_catalog.set_config("):
					// The settings of pg_dump's own restore session,
					// written after its \connect: not properties.
				default:
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// statements splits an entry into its statements: each ends a line with a
// semicolon (pg_dump writes these entries one statement a line).
func statements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if cur.Len() == 0 && (strings.TrimSpace(line) == "" || strings.HasPrefix(line, "--")) {
			continue
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(line)
		if strings.HasSuffix(line, ";") {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// liveProps reads production's database-level properties with pg_dump
// --create (no schema, no data).
func (r *Refresh) liveProps(ctx context.Context, env *runner.Env, tl tools) ([]string, error) {
	t := r.Target
	pconn, penv, releaseProd, err := libpq(t.ProductionDSN, "", readOnly)
	if err != nil {
		return nil, err
	}
	defer releaseProd()
	args := []string{"--create", "--schema-only", "--exclude-schema=*", "--no-blobs", "--no-password", "-d", pconn}
	if t.NoOwner {
		args = append(args, "--no-owner")
	}
	if t.NoACL {
		args = append(args, "--no-acl")
	}
	var out bytes.Buffer
	cmd := tool(ctx, env, penv, tl.dump, args...)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("read production's database properties (pg_dump --create): %w", cmdErrOf(ctx, err, cmd))
	}
	return databaseProps(out.String()), nil
}

// archiveSchema is an archive's schema as pg_restore --create writes it
// (database-level entries included); custom and directory formats only.
func (r *Refresh) archiveSchema(ctx context.Context, tl tools, path string, fm format) (string, error) {
	t := r.Target
	cmd := tool(ctx, &runner.Env{Log: io.Discard}, nil, tl.restore, "--create", "--schema-only", "-f", "-")
	if t.NoOwner {
		cmd.Args = append(cmd.Args, "--no-owner")
	}
	if t.NoACL {
		cmd.Args = append(cmd.Args, "--no-acl")
	}
	if fm.compression == "" {
		cmd.Args = append(cmd.Args, path)
	} else {
		// The schema is at the head of the archive: pg_restore stops
		// reading once it has it.
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		src, err := decompress(f, fm.compression)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", path, err)
		}
		cmd.Stdin = src
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("read the schema of %s (pg_restore --schema-only): %w: %s", path, cmdErr(ctx, err), strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// applyProps gives the shadow the database-level properties stmts set
// (written for another database's name).
func (t *Target) applyProps(ctx context.Context, env *runner.Env, next string, stmts []string) error {
	if len(stmts) == 0 {
		return nil
	}
	start := time.Now()
	c, err := t.maintenance(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, c)
	n := 0
	for _, s := range stmts {
		s, ok := retarget(s, next)
		if !ok {
			fmt.Fprintf(env.Log, "left out a database-level statement stagebot does not recognise: %.80s\n", s)
			continue
		}
		if _, err := c.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("give %s production's database properties: %.120s: %w", next, s, err)
		}
		n++
	}
	fmt.Fprintf(env.Log, "%d database-level properties (owner, privileges, comment, settings) applied to %s in %s\n", n, next, time.Since(start).Round(time.Millisecond))
	return nil
}

// analyze gathers the shadow's statistics, jobs tables at a time, so that
// staging plans queries as production does from its first query (pg_restore
// and psql leave that to autovacuum).
func (t *Target) analyze(ctx context.Context, env *runner.Env, next string) error {
	start := time.Now()
	c, err := connect(ctx, t.StagingDSN, next, false)
	if err != nil {
		return err
	}
	rows, err := c.Query(ctx, `select format('%I.%I', n.nspname, c.relname) from pg_class c
		join pg_namespace n on n.oid = c.relnamespace
		where c.relkind in ('r', 'm', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
		and n.nspname not like 'pg\_toast%' and c.relpersistence <> 't'
		order by pg_relation_size(c.oid) desc`)
	var names []string
	if err == nil {
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	c.Close(ctx)
	if err != nil {
		return fmt.Errorf("list the shadow's tables: %w", err)
	}
	work := make(chan string)
	errs := make(chan error, t.jobs())
	var wg sync.WaitGroup
	for range min(t.jobs(), max(len(names), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := connect(ctx, t.StagingDSN, next, false)
			if err != nil {
				errs <- err
				for range work {
				}
				return
			}
			defer closeConn(ctx, c)
			for name := range work {
				if err != nil {
					continue
				}
				if _, err = c.Exec(ctx, "analyze "+name); err != nil {
					errs <- fmt.Errorf("analyze %s: %w", name, err)
				}
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(env.Log, "analyzed %d tables in %s\n", len(names), time.Since(start).Round(time.Millisecond))
	return nil
}
