-- name: facts
-- Who runs `migrate` (or `replay`), and whether it is the runtime role or a member of it
-- ($1, authledger_runtime): then it must not be the owner. A superuser counts as a member of
-- every role, and may run migrations.
SELECT current_user AS me,
       EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AS runtime_exists,
       CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = $1)
                 AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
            THEN pg_has_role(current_user, $1, 'MEMBER') ELSE false END AS runtime_member
