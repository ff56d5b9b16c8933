-- +goose Up
-- Small named values parts of the bot keep (a target's write counters at
-- its last refresh).
create table stagebot_values (
    name  text primary key,
    value bytea not null
);

-- +goose Down
drop table stagebot_values;
