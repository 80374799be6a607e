ALTER TABLE prices MODIFY ORDER BY (provider, model, service_tier, effective_from);
ALTER TABLE prices DROP COLUMN IF EXISTS time_of_day_end, DROP COLUMN IF EXISTS time_of_day_start;
ALTER TABLE calls DROP COLUMN IF EXISTS provider_raw;
