-- name: retained
SELECT purpose, wrapped FROM retained_keys ORDER BY purpose
