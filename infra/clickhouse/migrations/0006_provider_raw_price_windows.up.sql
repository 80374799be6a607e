-- Provider ids as producers sent them, and daily price windows (docs/pricing.md).
-- calls.provider is the canonical provider (normalize.normalize_provider); provider_raw keeps
-- the value the producer sent ('google', 'vertex_ai', 'bedrock' ...), '' for calls stored
-- before this migration.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS provider_raw LowCardinality(String) DEFAULT '' AFTER provider;

-- A price with a daily UTC window (genai-prices' time-of-day prices) applies only from
-- time_of_day_start (inclusive) to time_of_day_end (exclusive, wrapping past midnight when
-- it is earlier); empty = all day (no DEFAULT: ClickHouse refuses a new sorting-key column with one; a String's own default is ''). HH:MM:SS text, as on the wire. The window is part of a
-- price's identity (its price_id), so it joins the sorting key: a windowed price and the
-- all-day one of the same effective_from must not collapse into one row.
ALTER TABLE prices
    ADD COLUMN time_of_day_start LowCardinality(String) AFTER reasoning_above_per_mtok,
    ADD COLUMN time_of_day_end LowCardinality(String) AFTER time_of_day_start,
    MODIFY ORDER BY (provider, model, service_tier, effective_from, time_of_day_start, time_of_day_end);
