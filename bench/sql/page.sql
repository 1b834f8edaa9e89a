\set after random(0, :n - 50)
SELECT id, email, name, created_at, updated_at FROM "user" WHERE id > :after ORDER BY id LIMIT 50;
