-- One row per price as the catalog holds it now: FINAL keeps the latest publication of each
-- price_id (provider, model, service_tier, daily window, effective_from), so a corrected price
-- replaces the old one here; int_calls_priced reprices the calls it covers.
with source as (
    select * from {{ source('warehouse', 'prices') }} final
),

renamed as (
    select
        -- PriceRecord.price_id (provider/model/tier[/start-end]@effective_from): a computed key,
        -- not on the wire, so rebuilt here when a producer left it out
        if(price_id != '', price_id,
           concat(provider, '/', model, '/', service_tier,
                  if(time_of_day_start != '', concat('/', time_of_day_start, '-', time_of_day_end), ''),
                  '@', {{ wire_time('effective_from') }})) as price_id,
        provider,
        model,
        service_tier,
        effective_from,
        time_of_day_start,
        time_of_day_end,
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
        _timestamp as published_at,
        _ingested_at as ingested_at
    from source
)

select * from renamed
