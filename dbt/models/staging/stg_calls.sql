-- One row per call, as the pipeline priced it: FINAL collapses a call the ReplacingMergeTree has
-- not merged yet.
with source as (
    select * from {{ source('warehouse', 'calls') }} final
),

renamed as (
    select
        event_id,
        occurred_at,
        org_id,
        team,
        user_id,
        app,
        feature,
        provider,
        provider_raw,
        request_model,
        response_model,
        model,
        operation,
        service_tier,
        input_tokens,
        cache_read_tokens,
        cache_write_tokens,
        output_tokens,
        reasoning_tokens,
        input_tokens + output_tokens as total_tokens,
        session_id,
        session_key,
        trace_id,
        latency_ms,
        status,
        error_type,
        retry_of,
        tool_calls,
        pricing_status,
        price_id,
        is_context_tier,
        discount_id,
        discount_pct,
        cost_input_usd,
        cost_cache_read_usd,
        cost_cache_write_usd,
        cost_output_usd,
        cost_reasoning_usd,
        list_cost_usd,
        cost_usd,
        is_late,
        _ingested_at as ingested_at
    from source
)

select * from renamed
