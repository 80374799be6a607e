-- Sessions with their late calls merged in: the closed session's fields, the fragments' sums.
-- depends_on: {{ ref('int_changed_keys') }}
-- Incremental by session key: a session's fragments share its key.
with fragments as (
    select f.*, m.session_uid as session_uid
    from (select * from {{ ref('stg_sessions') }} where {{ in_changed_keys('session_key') }}) as f
    inner join (
        select fragment_uid, session_uid from {{ ref('int_session_fragments') }}
        where {{ in_changed_keys('session_key') }}
    ) as m on f.fragment_uid = m.fragment_uid
)

select
    session_uid,
    -- a closed fragment's fields win over a late call's (is_correction false sorts first); of two
    -- closed sessions a late call joined, the first's (the same on every build)
    argMin(session_key, (is_correction, started_at, fragment_uid)) as session_key,
    argMin(org_id, (is_correction, started_at, fragment_uid)) as org_id,
    argMin(team, (is_correction, started_at, fragment_uid)) as team,
    argMin(user_id, (is_correction, started_at, fragment_uid)) as user_id,
    argMin(app, (is_correction, started_at, fragment_uid)) as app,
    argMin(session_id, (is_correction, started_at, fragment_uid)) as session_id,
    min(started_at) as started_at,
    max(ended_at) as ended_at,
    sum(calls) as calls,
    sum(error_calls) as error_calls,
    sum(cancelled_calls) as cancelled_calls,
    sum(retry_calls) as retry_calls,
    sum(unpriced_calls) as unpriced_calls,
    sum(input_tokens) as input_tokens,
    sum(cache_read_tokens) as cache_read_tokens,
    sum(cache_write_tokens) as cache_write_tokens,
    sum(output_tokens) as output_tokens,
    sum(reasoning_tokens) as reasoning_tokens,
    sum(total_tokens) as total_tokens,
    sum(tool_calls) as tool_calls,
    max(max_input_tokens) as max_input_tokens,
    arraySort(arrayDistinct(arrayFlatten(groupArray(models_used)))) as models_used,
    sum(list_cost_usd) as list_cost_usd,
    sum(cost_usd) as cost_usd,
    toUInt64(countIf(is_correction)) as late_calls,
    count() as fragments
from fragments
group by session_uid
