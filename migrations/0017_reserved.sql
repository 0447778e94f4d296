-- Placeholder: number 0017 belongs to a branch written in parallel (security issue 12). The
-- runner wants numbers without gaps; when the branches merge, the real 0017 replaces this file.
SELECT 1;
