-- One row per outcome: FINAL collapses a re-delivered outcome.
with source as (
    select * from {{ source('warehouse', 'outcomes') }} final
),

renamed as (
    select
        outcome_id,
        occurred_at,
        org_id,
        team,
        user_id,
        app,
        session_id,
        trace_id,
        outcome_type,
        success as is_success,
        value_usd,
        attributes,
        _ingested_at as ingested_at
    from source
)

select * from renamed
