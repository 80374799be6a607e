-- Smoke job: proves the chain Kafka -> Flink -> Kafka with the real connector.
-- Each input record (any bytes) is copied to the output as JSON with its origin and
-- whether it parsed as JSON. Later jobs replace this logic; the plumbing stays.
CREATE TABLE smoke_in (
  `value`     STRING,
  `partition` INT    METADATA VIRTUAL,
  `offset`    BIGINT METADATA VIRTUAL
) WITH (
  ${source_options},
  'format' = 'raw'
);

CREATE TABLE smoke_out (
  payload          STRING,
  source_partition INT,
  source_offset    BIGINT,
  is_json          BOOLEAN
) WITH (
  ${sink_options},
  'format' = 'json'
);

INSERT INTO smoke_out
SELECT `value`, `partition`, `offset`, `value` IS JSON
FROM smoke_in;
