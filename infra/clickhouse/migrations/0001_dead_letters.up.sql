-- Dead letters: every record the pipeline rejected, with its reason and where it came from.
-- Grain: one row per rejected record (source topic, partition, offset).
-- Writer: the warehouse ingest from usage.dlq.
-- ORDER BY (source_topic, source_partition, source_offset): the identity of a rejected
-- record, so a re-delivered dead letter collapses on merge (ReplacingMergeTree).
CREATE TABLE IF NOT EXISTS dead_letters
(
    source_topic      LowCardinality(String),
    source_partition  Int32,
    source_offset     Int64,
    rejected_at       DateTime64(3, 'UTC'),
    reason            String,
    payload           String,
    _topic            LowCardinality(String),
    _partition        Int32,
    _offset           Int64,
    _timestamp        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset)
COMMENT 'One row per rejected input record, with its reason (from usage.dlq).';
