-- Alert incidents: every incident state change the alert engine decided to tell people about.
-- Grain: one row per notice = one incident state change (opened, worsened, repeated after its
-- cooldown, resolved); each notice is worth exactly one Slack message. Suppressed repeats
-- (same incident, within its cooldown, not worse) write nothing.
-- Writer: yieldmeter.alerts.engine.cycle (the main job's alert step, `yieldmeter alerts`).
-- Append-only: an incident's current state is its latest notice (ORDER BY evaluated_at,
-- created_at ... LIMIT 1 BY incident_key), so nothing is ever mutated.
-- ORDER BY (incident_key, evaluated_at): every cycle reads the latest notice per incident.
-- Numbers are Decimal: value, baseline and threshold may be money (USD), shares or counts (unit says).
-- route is the route name, never the webhook URL (a secret).
CREATE TABLE IF NOT EXISTS alerts
(
    notice_id     UUID,
    incident_id   UUID,                          -- shared by the notices of one opening of an incident
    incident_key  String,                        -- stable: rule/entity, e.g. spend_spike/org=acme/team=support
    event         LowCardinality(String),        -- opened | worsened | repeated | resolved
    rule          LowCardinality(String),
    severity      LowCardinality(String),        -- warning | critical
    title         String,
    summary       String,
    entity        Map(LowCardinality(String), String),
    value         Decimal(38, 12),
    baseline      Decimal(38, 12),
    threshold     Decimal(38, 12),
    unit          LowCardinality(String),
    observed_at   DateTime64(3, 'UTC'),          -- start of the window the numbers describe
    opened_at     DateTime64(3, 'UTC'),          -- when this opening of the incident began
    evaluated_at  DateTime64(3, 'UTC'),          -- the evaluation that produced the notice
    query         String,                        -- SQL to investigate
    details       Map(String, String),
    route         LowCardinality(String),
    created_at    DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (incident_key, evaluated_at)
COMMENT 'One row per alert incident state change (opened, worsened, repeated, resolved); see alert_deliveries.';

-- Alert deliveries: every attempt to deliver a notice.
-- Grain: one row per delivery attempt of one notice (an attempt may include a few HTTP
-- retries inside it: 429 Retry-After, 500/503, connection errors; `retries` counts them).
-- Writer: yieldmeter.alerts.engine (after each attempt, before the next notice).
-- A notice is pending while it has no 'delivered' or 'printed' row and its latest
-- next_retry_at has passed; failed attempts are retried on later cycles, never dropped.
-- status: delivered (Slack said ok) | failed (kept, retried) | printed (no webhook configured).
-- ORDER BY (notice_id, attempt): every cycle reads the attempts per notice.
CREATE TABLE IF NOT EXISTS alert_deliveries
(
    notice_id      UUID,
    incident_key   String,
    attempt        UInt32,                       -- 1, 2, ... per notice
    route          LowCardinality(String),
    status         LowCardinality(String),
    http_status    UInt16,                       -- 0: no HTTP response (connection error, no webhook)
    retries        UInt8,
    error          String,                       -- '' when delivered; never contains the webhook URL
    attempted_at   DateTime64(3, 'UTC'),
    next_retry_at  DateTime64(3, 'UTC'),         -- for failed attempts; = attempted_at otherwise
    created_at     DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (notice_id, attempt)
COMMENT 'One row per attempt to deliver an alert notice to Slack (or print it when no webhook is set).';
