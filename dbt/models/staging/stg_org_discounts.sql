with source as (
    select * from {{ source('warehouse', 'org_discounts') }} final
),

renamed as (
    select
        org_id,
        provider,
        discount_pct,
        effective_from,
        source as discount_source
    from source
)

select * from renamed
