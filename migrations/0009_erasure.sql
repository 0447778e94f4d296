-- Erasure (crypto-shredding): when a person's keys were destroyed, the users row keeps only
-- the fact and the time; registrations lose the blind index of the address they held.
ALTER TABLE users ADD COLUMN erased_at timestamptz;
ALTER TABLE registrations ADD COLUMN erased_at timestamptz;
