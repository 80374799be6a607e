with source as (
    select * from {{ source('warehouse', 'dead_letters') }} final
),

renamed as (
    select
        source_topic,
        source_partition,
        source_offset,
        rejected_at,
        reason,
        payload
    from source
)

select * from renamed
