-- One row per price as the catalog holds it now: FINAL keeps the latest publication of each
-- (provider, model, service_tier, effective_from), so a corrected price replaces the old one here
-- while calls keep the price they were charged (see repricing_audit).
with source as (
    select * from {{ source('warehouse', 'prices') }} final
),

renamed as (
    select
        -- PriceRecord.price_id (provider/model/tier@effective_from): a computed key, not on the wire
        if(price_id != '', price_id,
           concat(provider, '/', model, '/', service_tier, '@', {{ wire_time('effective_from') }})) as price_id,
        provider,
        model,
        service_tier,
        effective_from,
        currency,
        input_per_mtok,
        output_per_mtok,
        cache_read_per_mtok,
        cache_write_per_mtok,
        reasoning_per_mtok,
        tier_threshold_input_tokens,
        input_above_per_mtok,
        output_above_per_mtok,
        cache_read_above_per_mtok,
        cache_write_above_per_mtok,
        reasoning_above_per_mtok,
        source as price_source,
        _ingested_at as ingested_at
    from source
)

select * from renamed
