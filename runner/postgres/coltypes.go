package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// textOnlyTables marks the tables binary COPY cannot carry from one
// database to another, even of the same major version, with the types
// that say why:
//
//   - a type with no binary input or output function (aclitem, many
//     user-defined base types, contrib's isn, seg and intarray's query_int),
//     reached through domains, arrays, composites and ranges as well;
//   - a user-defined type inside an array or a composite: their binary form
//     carries the element's or field's type OID, which is another number in
//     the shadow (pg_dump creates the type anew), and PostgreSQL refuses
//     the row ("wrong element type").
//
// Such a table is copied in text format; the others stay binary.
func textOnlyTables(ctx context.Context, c *pgx.Conn, tables []*streamTable) error {
	if len(tables) == 0 {
		return nil
	}
	byOID := make(map[uint32]*streamTable, len(tables))
	oids := make([]uint32, 0, len(tables))
	for _, tb := range tables {
		byOID[tb.oid] = tb
		oids = append(oids, tb.oid)
	}
	rows, err := c.Query(ctx, textOnlyQuery, oids)
	if err != nil {
		return fmt.Errorf("production: read column types: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var types string
		if err := rows.Scan(&oid, &types); err != nil {
			return err
		}
		if tb := byOID[oid]; tb != nil {
			tb.textOnly = types
		}
	}
	return rows.Err()
}

// textOnlyQuery walks each table's column types down through domains
// (typbasetype), arrays (typelem), composites (their attributes) and ranges
// and multiranges (their subtype); nested says the type sits inside an array
// or a composite. 16384 is PostgreSQL's FirstNormalObjectId: types below it
// are built in and have the same OID in every database.
const textOnlyQuery = `
with recursive dep (rel, typ, nested) as (
	select a.attrelid, a.atttypid, false
	from pg_attribute a
	where a.attrelid = any($1::oid[]) and a.attnum > 0 and not a.attisdropped
  union
	select dep.rel, sub.typ, dep.nested or sub.wraps
	from dep join pg_type t on t.oid = dep.typ
	cross join lateral (
		select t.typbasetype, false where t.typtype = 'd'
		union all
		select t.typelem, true where t.typelem <> 0 and t.typlen = -1
		union all
		select a.atttypid, true from pg_attribute a
		where t.typtype = 'c' and a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped
		union all
		select r.rngsubtype, false from pg_range r where r.rngtypid = t.oid or r.rngmultitypid = t.oid
	) sub (typ, wraps)
)
select dep.rel, string_agg(distinct format_type(t.oid, null), ', ')
from dep join pg_type t on t.oid = dep.typ
where t.typsend = 0 or t.typreceive = 0 or (dep.nested and t.oid >= 16384)
group by dep.rel`
