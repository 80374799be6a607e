-- One row per org discount as the catalog holds it now (FINAL: the latest publication wins).
with source as (
    select * from {{ source('warehouse', 'org_discounts') }} final
),

renamed as (
    select
        -- OrgDiscount.discount_id, the id the pipeline writes on the calls it discounts
        concat('discount/', org_id, '/', provider, '@', {{ wire_time('effective_from') }}) as discount_id,
        org_id,
        provider,
        discount_pct,
        effective_from,
        source as discount_source,
        _timestamp as published_at
    from source
)

select * from renamed
