-- After a bounded run every session has closed, so every call must be in one; a call left out
-- would be spend missing from every session-based figure. (In a continuous run calls of open
-- sessions are ''; this warns then instead of failing.)
{{ config(severity='warn') }}
select event_id, occurred_at, session_key
from {{ ref('fct_calls') }}
where session_uid = ''
