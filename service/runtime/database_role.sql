-- name: facts
-- Who this connection is, and whether it could rewrite the log: a superuser, or the owner of
-- `events` (or a member of the owner) may disable its triggers. NULL owner: not migrated yet.
SELECT current_user AS role, r.rolsuper AS superuser, t.tableowner AS owner,
       coalesce(pg_has_role(current_user, t.tableowner, 'MEMBER'), false) AS owns_log
FROM pg_roles r
LEFT JOIN pg_tables t ON t.schemaname = 'public' AND t.tablename = 'events'
WHERE r.rolname = current_user
