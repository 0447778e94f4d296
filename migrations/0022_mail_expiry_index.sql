-- The mailer's expiry of pending claim mails reads only the ones due to expire.
--
-- Every mailer round first expires the pending rows whose link window is over
-- (workers/mailer.sql `expire`). mail_outbox_due_idx leads with status, so that statement
-- read every pending row to find the few expired: at 12,000 queued mails (a burst of
-- verified-email registrations, issue 11's bench) 3.4 ms a round, growing with the queue,
-- once for every 16 mails sent. A partial index on the link's end over the pending rows
-- makes it a range scan that stops at the first row still live; rows leave it when they are
-- sent, expired or failed (tests/integration/test_mailer_plans.py).
CREATE INDEX mail_outbox_pending_expiry_idx ON mail_outbox (link_expires_at)
WHERE status = 'pending';
