-- Preload :rows users (ids 1..:rows on the fresh table). :'email_fmt' is a format() pattern
-- with one %s for the row number: 'user%s@bench.example' (reads), or 'User%s@Bench.Example'
-- (mixed case, for the lowercase migration).
-- psql -v rows=10000 -v email_fmt='user%s@bench.example' -f seed.sql
INSERT INTO "user" (email, name)
SELECT format(:'email_fmt', g), format('User %s', g)
FROM generate_series(1, :rows) AS g
ORDER BY g;
VACUUM (ANALYZE) "user";
CHECKPOINT;
