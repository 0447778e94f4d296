-- name: forget_mail
-- The outbox rows of erased claim attempts: their recipient no longer opens, and the row
-- goes too (a mailer holding its lease then finds nothing to mark).
DELETE FROM mail_outbox WHERE tenant_id = $1 AND attempt_id = ANY($2::text[])
