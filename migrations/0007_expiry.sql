-- Deadlines for the expiry worker (workers/expiry.py), each found through a partial index
-- that holds only what is still pending, oldest first: open registrations' TTL
-- (registrations_open_expiry_idx, 0005), active credentials' expires_at
-- (credentials_active_expiry_idx, 0005), and here the third one, the link window of live
-- claim attempts (spec §6.2; `link_expired` and every terminal status leave the index).
CREATE INDEX registrations_live_link_expiry_idx ON registrations (link_expires_at)
    WHERE attempt_status IN ('initiated', 'challenged');
