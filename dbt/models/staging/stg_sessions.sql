-- One row per session fragment: a closed session or one late call (is_correction).
with source as (
    select * from {{ source('warehouse', 'sessions') }} final
),

renamed as (
    select
        session_uid as fragment_uid,
        session_key,
        is_correction,
        org_id,
        team,
        user_id,
        app,
        session_id,
        started_at,
        ended_at,
        calls,
        errors as error_calls,
        cancelled as cancelled_calls,
        retries as retry_calls,
        unpriced_calls,
        input_tokens,
        cache_read_tokens,
        cache_write_tokens,
        output_tokens,
        reasoning_tokens,
        input_tokens + output_tokens as total_tokens,
        tool_calls,
        max_input_tokens,
        models_used,
        list_cost_usd,
        cost_usd,
        _ingested_at as ingested_at
    from source
)

select * from renamed
