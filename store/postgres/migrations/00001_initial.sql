-- +goose Up
-- Records are kept as JSON, as the bolt store keeps them; the columns
-- beside them are what queries select and order by.
create table stagebot_runs (
    id       bigint primary key,
    target   text not null,
    active   boolean not null,
    ended_at timestamptz,
    version  bigint not null,
    record   jsonb not null
);
create index stagebot_runs_active on stagebot_runs (id) where active;

create table stagebot_logs (
    run_id bigint primary key references stagebot_runs (id) on delete cascade,
    text   bytea not null
);

create table stagebot_holds (
    id       bigint primary key,
    active   boolean not null,
    ended_at timestamptz,
    record   jsonb not null
);

create table stagebot_approvals (
    seq     bigserial primary key,
    run_id  bigint not null references stagebot_runs (id) on delete cascade,
    user_id text not null,
    record  jsonb not null,
    unique (run_id, user_id)
);

create table stagebot_watchers (
    target  text not null,
    user_id text not null,
    record  jsonb not null,
    primary key (target, user_id)
);

create table stagebot_events (
    id     bigint primary key,
    target text not null,
    run_id bigint not null,
    record jsonb not null
);

create table stagebot_marks (
    name text primary key,
    at   text not null -- time.Time's text form: keeps the nanoseconds and the zone
);

create table stagebot_databases (
    key    text primary key,
    run_id bigint not null
);

-- The next number of each kind of record. Taken in the transaction that
-- writes the record, so a refused write leaves no gap in run numbers.
create table stagebot_counters (
    name  text primary key,
    value bigint not null
);
insert into stagebot_counters values ('runs', 0), ('holds', 0), ('events', 0);

-- The leadership lease: one row. token grows with every new leader; every
-- write checks it (fencing), and expires says until when the holder may
-- act without renewing.
create table stagebot_lease (
    id       int primary key check (id = 1),
    holder   text not null default '',
    token    bigint not null default 0,
    expires  timestamptz not null default '-infinity',
    acquired timestamptz
);
insert into stagebot_lease (id) values (1);

-- +goose Down
drop table stagebot_lease, stagebot_counters, stagebot_databases, stagebot_marks, stagebot_events,
    stagebot_watchers, stagebot_approvals, stagebot_holds, stagebot_logs, stagebot_runs;
