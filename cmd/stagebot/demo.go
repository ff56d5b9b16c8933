package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagebot/stagebot/internal/pgtest"
)

//go:embed demo.yaml
var demoConfig []byte

// demoSeed is production's sample data: a small shop.
var demoSeed = []string{
	`create table customers (id bigserial primary key, email text not null unique, name text not null, created timestamptz not null default now())`,
	`create table products (id serial primary key, sku text unique not null, title text not null, price numeric(10,2) not null check (price >= 0))`,
	`create table orders (id bigserial primary key, customer_id bigint not null references customers(id), placed timestamptz not null, status text not null default 'new')`,
	`create table order_lines (order_id bigint references orders(id), product_id int references products(id), qty int not null check (qty > 0), primary key (order_id, product_id))`,
	`create index orders_customer_idx on orders(customer_id)`,
	`create index orders_placed_idx on orders(placed)`,
	`insert into customers (email, name) select 'person' || g || '@shop.example', 'Customer ' || g from generate_series(1, 5000) g`,
	`insert into products (sku, title, price) select 'SKU-' || g, 'Product ' || g, (g % 90) + 9.99 from generate_series(1, 300) g`,
	`insert into orders (customer_id, placed, status) select 1 + (g % 5000), timestamptz '2026-01-01' + g * interval '7 minutes', (array['new','paid','shipped'])[1 + g % 3] from generate_series(1, 20000) g`,
	`insert into order_lines select g, 1 + (g % 300), 1 + (g % 4) from generate_series(1, 20000) g`,
	`create view revenue as select date_trunc('month', o.placed) as month, sum(l.qty * p.price) as total from orders o join order_lines l on l.order_id = o.id join products p on p.id = l.product_id group by 1`,
	`analyze`,
}

// demo starts two throwaway PostgreSQL servers, fills "production" with a
// sample database and runs the console with a target that refreshes
// "staging" from it. The servers stop when the demo ends.
func demo(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, as string) error {
	fmt.Fprintln(stdout, "stagebot demo: starting two throwaway PostgreSQL servers (production and staging)…")
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	prod, err := pgtest.Start(sctx, pgtest.Options{})
	if err != nil {
		return fmt.Errorf("start the production server: %w", err)
	}
	defer prod.Stop()
	stg, err := pgtest.Start(sctx, pgtest.Options{})
	if err != nil {
		return fmt.Errorf("start the staging server: %w", err)
	}
	defer stg.Stop()
	if err := seedDemo(sctx, prod); err != nil {
		return err
	}
	os.Setenv("STAGEBOT_DEMO_PRODUCTION", prod.DSN("shop"))
	os.Setenv("STAGEBOT_DEMO_STAGING", stg.DSN("shop"))
	cfg, err := ParseConfig(demoConfig, "demo.yaml")
	if err != nil {
		return err
	}
	cfg.Store.Path = filepath.Join(stg.Dir, "stagebot.db")
	cfg.Log.Level = "warn"
	// A free port, known before the bot starts, so that its replies link
	// to the run pages (!stage log).
	cfg.HTTP.Listen = freeAddr()
	cfg.HTTP.URL = "http://" + cfg.HTTP.Listen
	httpAddr = func(addr string) {
		fmt.Fprintf(stdout, "Status page: http://%s/ · health and metrics: /healthz, /metrics\n\n", addr)
	}
	fmt.Fprintf(stdout, `Production: %s (5000 customers, 20000 orders). Staging: %s (empty until the first refresh).
Try: !stage help · !stage resync demo now · !stage status · !stage log 1
     !stage hold demo 1h testing the login · !stage resync demo now · !stage release demo
     !stage resync demo broken now (fails before the swap: staging stays as it was)
     !stage rollback demo now (after a second refresh: puts back the copy it replaced)
Connect with: psql "%s"
Type /quit or Ctrl-D to end; the servers are removed.

`, prod.DSN("shop"), stg.DSN("shop"), stg.DSN("shop"))
	return run(ctx, cfg, stdin, stdout, stderr, as, "")
}

func seedDemo(ctx context.Context, prod *pgtest.Server) error {
	c, err := pgx.Connect(ctx, prod.DSN("postgres"))
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, "create database shop"); err != nil {
		c.Close(ctx)
		return err
	}
	c.Close(ctx)
	c, err = pgx.Connect(ctx, prod.DSN("shop"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, q := range demoSeed {
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("seed the demo: %w", err)
		}
	}
	return nil
}

// freeAddr is a loopback address with a port nothing listens on now
// (127.0.0.1:0, letting the server pick, when none can be found).
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}
