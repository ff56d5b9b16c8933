// Package mask holds stagebot's masking: the rules a target's config
// gives (which function masks which column), the plan that checks them
// against production's columns before anything is copied (the gate fails
// closed: a column no rule covers, a rule that covers nothing, a function
// that cannot produce a column's type), and the functions themselves.
//
// It is pure: columns and rows in, rows out, no database. runner/postgres
// reads production's catalog into Tables, asks Plan for each table's
// masks, and passes each COPY stream in text format through a Writer, so
// that an unmasked value never reaches staging's server.
//
// Where things are: funcs.go (the functions and their parsing), apply.go
// (a function applied to one value of one column), permute.go (keyed
// permutations of integers, so that masked keys stay unique), words.go
// (the names masked names are made of), rules.go (rules, matching and the
// plan), copytext.go (PostgreSQL's COPY text format and the Writer).
package mask
