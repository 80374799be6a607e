with source as (
    select * from {{ source('warehouse', 'budgets') }} final
),

renamed as (
    select
        budget_id,
        kind,
        org_id,
        team,
        user_id,
        app,
        api_key,
        outcome_type,
        period,
        time_zone,
        limit_usd,
        warn_at_pct,
        action,
        throttle_per_minute
    from source
    where not is_deleted
)

select * from renamed
