package dev.yieldmeter.flink;

import java.time.Instant;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.TableFunction;
import org.apache.flink.types.Row;

/**
 * YM_PARSE_USAGE_EVENT(value, occurred_at): decodes one usage.events record (its raw bytes, UTF-8
 * JSON) and checks it against
 * the UsageEvent contract (yieldmeter/contracts.py) in a single pass over the JSON.
 *
 * <p>Always emits exactly one row, so every input record is either valid ({@code reason} null)
 * or a dead letter ({@code reason} says why, one line per problem, naming the field and rule).
 * Valid rows carry the normalised event: lower-cased identifiers, defaults filled in,
 * response_model defaulted to request_model, the canonical {@code provider} (the value sent kept in
 * {@code provider_raw}), the catalogue {@code model} id, and the session key.
 *
 * <p>Why Java and not JSON_VALUE: Flink 2.2 parses the document again for every JSON_VALUE
 * call; reading the 26 fields that way was measured at ~14k events/s per core, this at ~150k.
 *
 * <p>{@code occurred_at} is the source's rowtime (YM_EVENT_TIME of the same value): a record
 * whose time the source refused (sentinel epoch) is never valid, so a valid row's rowtime is
 * always its own time.
 */
@FunctionHint(
        output = @DataTypeHint(
                "ROW<event_id STRING, org_id STRING, team STRING, user_id STRING, app STRING, feature STRING,"
                        + " provider STRING, provider_raw STRING, request_model STRING, response_model STRING, model STRING, operation STRING,"
                        + " input_tokens BIGINT, cache_read_tokens BIGINT, cache_write_tokens BIGINT, output_tokens BIGINT,"
                        + " reasoning_tokens BIGINT, service_tier STRING, session_id STRING, trace_id STRING,"
                        + " latency_ms BIGINT, status STRING, error_type STRING, retry_of STRING, tool_calls BIGINT,"
                        + " attributes MAP<STRING, STRING>, session_key STRING, reason STRING>"))
public class UsageEventParser extends TableFunction<Row> {
    private static final long serialVersionUID = 1L;

    // Field slots; each wire key (snake_case name or an OTel alias) maps to (slot, rank).
    private static final int SCHEMA_VERSION = 0, EVENT_ID = 1, OCCURRED_AT = 2, ORG_ID = 3, TEAM = 4, USER_ID = 5,
            APP = 6, FEATURE = 7, PROVIDER = 8, REQUEST_MODEL = 9, RESPONSE_MODEL = 10, OPERATION = 11,
            INPUT_TOKENS = 12, CACHE_READ_TOKENS = 13, CACHE_WRITE_TOKENS = 14, OUTPUT_TOKENS = 15,
            REASONING_TOKENS = 16, SERVICE_TIER = 17, SESSION_ID = 18, TRACE_ID = 19, LATENCY_MS = 20, STATUS = 21,
            ERROR_TYPE = 22, RETRY_OF = 23, TOOL_CALLS = 24, ATTRIBUTES = 25, SLOTS = 26;
    private static final String[][] KEYS = {
        {"schema_version"}, {"event_id"}, {"occurred_at"}, {"org_id"}, {"team"}, {"user_id", "user.id"}, {"app"},
        {"feature"}, {"provider", "gen_ai.provider.name", "gen_ai.system"}, {"request_model", "gen_ai.request.model"},
        {"response_model", "gen_ai.response.model"}, {"operation", "gen_ai.operation.name"},
        {"input_tokens", "gen_ai.usage.input_tokens"}, {"cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"},
        {"cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens"}, {"output_tokens", "gen_ai.usage.output_tokens"},
        {"reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"}, {"service_tier", "openai.response.service_tier"},
        {"session_id", "gen_ai.conversation.id"}, {"trace_id"}, {"latency_ms"}, {"status"}, {"error_type", "error.type"},
        {"retry_of"}, {"tool_calls"}, {"attributes"},
    };
    private static final Map<String, int[]> SLOT_OF = new HashMap<>();

    static {
        for (int slot = 0; slot < KEYS.length; slot++) {
            for (int rank = 0; rank < KEYS[slot].length; rank++) {
                SLOT_OF.put(KEYS[slot][rank], new int[] {slot, rank});
            }
        }
    }

    private static final int MAX_ATTRIBUTES = 64;

    private transient ModelResolver models;
    private transient Object[][] values; // [slot][rank], reused across records
    private transient int[][] positions; // [slot][rank]: where the key first came in the record
    private transient String[] sentAs; // [slot]: the key a field came under, which a problem names (as pydantic does)
    private transient LongSupplier clock; // the validator's clock, named in a future-time reason

    @Override
    public void open(FunctionContext context) {
        open(System::currentTimeMillis);
    }

    private void open(LongSupplier clock) {
        models = ModelResolver.bundled();
        values = new Object[SLOTS][3];
        positions = new int[SLOTS][3];
        sentAs = new String[SLOTS];
        this.clock = clock;
    }

    public void eval(byte[] value, @DataTypeHint("TIMESTAMP_LTZ(3)") Instant occurredAt) {
        Wire.Problems problems = new Wire.Problems();
        if (value == null) {
            problems.add("(event)", "empty record (null value)");
            collect(invalid(problems));
            return;
        }
        for (Object[] ranks : values) {
            java.util.Arrays.fill(ranks, null);
        }
        Map<String, Object[]> unknown = null; // key -> {value, position}: a repeated key keeps its first place
        int position = 0;
        try (JsonParser p = Wire.parser(value)) {
            JsonToken first = p.nextToken();
            if (first == null) {
                throw new java.io.EOFException("no JSON value");
            }
            if (first != JsonToken.START_OBJECT) {
                Object got = Wire.scalar(p, first);
                Wire.expectEnd(p);
                problems.add("(event)", "Input should be an object", got);
                collect(invalid(problems));
                return;
            }
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                String key = p.currentName();
                t = p.nextToken();
                int[] at = SLOT_OF.get(key);
                position++;
                if (at == null) {
                    Object v = Wire.scalar(p, t);
                    if (unknown == null) {
                        unknown = new LinkedHashMap<>();
                    }
                    Object[] seen = unknown.get(Wire.checked(key));
                    if (seen == null) {
                        unknown.put(key, new Object[] {v, position});
                    } else {
                        seen[0] = v;
                    }
                    continue;
                }
                if (values[at[0]][at[1]] == null) {
                    positions[at[0]][at[1]] = position;
                }
                if (at[0] == ATTRIBUTES && t == JsonToken.START_OBJECT) {
                    values[ATTRIBUTES][at[1]] = readAttributes(p); // its map, or its problems
                } else {
                    values[at[0]][at[1]] = Wire.scalar(p, t);
                }
            }
            Wire.expectEnd(p);
        } catch (java.io.IOException e) {
            problems.add("(event)", "not valid JSON: " + firstLine(e.getMessage()));
            collect(invalid(problems));
            return;
        }
        collect(check(problems, unknown, occurredAt));
    }

    private static String firstLine(String message) {
        if (message == null) {
            return "unreadable";
        }
        int cut = message.indexOf('\n');
        return cut < 0 ? message : message.substring(0, cut);
    }

    /**
     * attributes: at most 64 string -> string entries, keys 1..128 and values up to 1024 characters.
     * As pydantic checks a dict: each entry's key, then its value; more than 64 valid entries is
     * the one problem reported, whatever else is wrong.
     */
    private static Object readAttributes(JsonParser p) throws java.io.IOException {
        Map<String, String> out = new LinkedHashMap<>();
        Wire.Problems problems = new Wire.Problems();
        JsonToken t;
        while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
            String key = Wire.checked(p.currentName());
            t = p.nextToken();
            Object v = Wire.scalar(p, t);
            int n = Wire.length(key);
            String path = "attributes." + Wire.part(key);
            boolean ok = n >= 1 && n <= 128;
            if (!ok) {
                problems.add(path + ".[key]", n < 1 ? "String should have at least 1 character"
                        : "String should have at most 128 characters", key);
            }
            if (!(v instanceof String)) {
                problems.add(path, "Input should be a valid string", v);
            } else if (Wire.length((String) v) > 1024) {
                problems.add(path, "String should have at most 1024 characters", v);
            } else if (ok) {
                out.put(key, (String) v);
            }
        }
        if (out.size() > MAX_ATTRIBUTES) {
            problems = new Wire.Problems();
            problems.add("attributes", "Dictionary should have at most 64 items after validation, not more");
        }
        return problems.isEmpty() ? out : problems;
    }

    /** The value of a field and the wire key it came from; a second alias of one field is an unknown key. */
    private Object pick(int slot, Map<String, Object[]> extra) {
        Object found = null;
        sentAs[slot] = KEYS[slot][0];
        for (int rank = 0; rank < KEYS[slot].length; rank++) {
            Object v = values[slot][rank];
            if (v == null) {
                continue;
            }
            if (found == null) {
                found = v;
                sentAs[slot] = KEYS[slot][rank];
            } else {
                extra.put(KEYS[slot][rank], new Object[] {v, positions[slot][rank]});
            }
        }
        return found;
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private Row check(Wire.Problems problems, Map<String, Object[]> unknown, Instant occurredAt) {
        Map<String, Object[]> extra = unknown == null ? new LinkedHashMap<>() : unknown;
        Object[] v = new Object[SLOTS];
        for (int slot = 0; slot < SLOTS; slot++) {
            v[slot] = pick(slot, extra);
        }
        Object version = v[SCHEMA_VERSION];
        if (version != null && !isOne(version)) {
            problems.add("schema_version", "Input should be 1", version);
        }
        String eventId = required(problems, v, EVENT_ID, 128);
        checkTime(problems, v[OCCURRED_AT], occurredAt);
        String orgId = required(problems, v, ORG_ID, 128);
        String team = required(problems, v, TEAM, 128);
        String userId = required(problems, v, USER_ID, 128);
        String app = required(problems, v, APP, 128);
        String feature = optional(problems, v, FEATURE, 128);
        String provider = v[PROVIDER] == null ? missing(problems, PROVIDER) : Wire.identifier(problems, sentAs[PROVIDER], v[PROVIDER]);
        String requestModel = required(problems, v, REQUEST_MODEL, 256);
        String responseModel = optional(problems, v, RESPONSE_MODEL, 256);
        String operation = v[OPERATION] == null ? "chat" : Wire.identifier(problems, sentAs[OPERATION], v[OPERATION]);
        Long input = v[INPUT_TOKENS] == null ? missingCount(problems, INPUT_TOKENS) : Wire.count(problems, sentAs[INPUT_TOKENS], v[INPUT_TOKENS], Wire.MAX_COUNT);
        Long cacheRead = countOrZero(problems, v, CACHE_READ_TOKENS);
        Long cacheWrite = countOrZero(problems, v, CACHE_WRITE_TOKENS);
        Long output = v[OUTPUT_TOKENS] == null ? missingCount(problems, OUTPUT_TOKENS) : Wire.count(problems, sentAs[OUTPUT_TOKENS], v[OUTPUT_TOKENS], Wire.MAX_COUNT);
        Long reasoning = countOrZero(problems, v, REASONING_TOKENS);
        String serviceTier = v[SERVICE_TIER] == null ? "default" : Wire.identifier(problems, sentAs[SERVICE_TIER], v[SERVICE_TIER]);
        String sessionId = optional(problems, v, SESSION_ID, 128);
        String traceId = optional(problems, v, TRACE_ID, 128);
        Long latency = v[LATENCY_MS] == null || v[LATENCY_MS] == Wire.NULL ? null : Wire.count(problems, "latency_ms", v[LATENCY_MS], Wire.MAX_COUNT);
        String status = "ok";
        if (v[STATUS] != null) {
            Object s = v[STATUS];
            if ("ok".equals(s) || "error".equals(s) || "cancelled".equals(s)) {
                status = (String) s;
            } else {
                problems.add("status", "Input should be 'ok', 'error' or 'cancelled'", s);
            }
        }
        String errorType = optional(problems, v, ERROR_TYPE, 128);
        String retryOf = optional(problems, v, RETRY_OF, 128);
        Long toolCalls = countOrZero(problems, v, TOOL_CALLS);
        Object attrs = v[ATTRIBUTES];
        Map<String, String> attributes = null;
        if (attrs == null) {
            attributes = new HashMap<>();
        } else if (attrs instanceof Map) {
            attributes = (Map<String, String>) attrs;
        } else if (attrs instanceof Wire.Problems) {
            problems.addAll((Wire.Problems) attrs);
        } else {
            problems.add("attributes", "Input should be an object", attrs);
        }
        if (!extra.isEmpty()) { // in the order they came, as pydantic lists them
            List<Map.Entry<String, Object[]>> keys = new java.util.ArrayList<>(extra.entrySet());
            keys.sort(java.util.Comparator.comparingInt(e -> (Integer) e.getValue()[1]));
            for (Map.Entry<String, Object[]> e : keys) {
                problems.add(Wire.part(e.getKey()), "unknown field (free-form data goes in 'attributes')", e.getValue()[0]);
            }
        }
        if (problems.isEmpty()) {
            long cached = cacheRead + cacheWrite;
            if (cached > input) {
                problems.add("(event)", "cache_read_tokens + cache_write_tokens (" + cached + ") must not exceed input_tokens ("
                        + input + "): input_tokens counts every input token, cached ones included");
            } else if (reasoning > output) { // one at a time, as the contract's model validator raises
                problems.add("(event)", "reasoning_tokens (" + reasoning + ") must not exceed output_tokens (" + output
                        + "): output_tokens counts every output token, reasoning included");
            }
        }
        if (!problems.isEmpty()) {
            return invalid(problems);
        }
        if (responseModel == null) {
            responseModel = requestModel;
        }
        String canonical = models.provider(provider);
        String model = models.normalize(canonical, responseModel);
        return Row.of(eventId, orgId, team, userId, app, feature, canonical, provider, requestModel, responseModel, model, operation,
                input, cacheRead, cacheWrite, output, reasoning, serviceTier, sessionId, traceId, latency, status,
                errorType, retryOf, toolCalls, attributes, sessionKey(orgId, userId, app, sessionId), null);
    }

    /**
     * The sessionizer's key, as a JSON array so no value can collide with another: the
     * explicit session id (within its org) when the call has one, else (org, user, app).
     */
    static String sessionKey(String orgId, String userId, String app, String sessionId) {
        StringBuilder out = new StringBuilder(64).append('[');
        if (sessionId != null) {
            out.append("\"session\",");
            Wire.appendJsonString(out, orgId);
            out.append(',');
            Wire.appendJsonString(out, sessionId);
        } else {
            out.append("\"user\",");
            Wire.appendJsonString(out, orgId);
            out.append(',');
            Wire.appendJsonString(out, userId);
            out.append(',');
            Wire.appendJsonString(out, app);
        }
        return out.append(']').toString();
    }

    private static boolean isOne(Object v) {
        return (v instanceof Long && (Long) v == 1L)
                || Boolean.TRUE.equals(v)
                || (v instanceof java.math.BigDecimal && ((java.math.BigDecimal) v).compareTo(java.math.BigDecimal.ONE) == 0);
    }

    private static String missing(Wire.Problems problems, int slot) {
        problems.add(KEYS[slot][0], "required field is missing");
        return null;
    }

    private static Long missingCount(Wire.Problems problems, int slot) {
        missing(problems, slot);
        return null;
    }

    private String required(Wire.Problems problems, Object[] v, int slot, int max) {
        return v[slot] == null ? missing(problems, slot) : Wire.name(problems, sentAs[slot], v[slot], max);
    }

    private String optional(Wire.Problems problems, Object[] v, int slot, int max) {
        return v[slot] == null || v[slot] == Wire.NULL ? null : Wire.name(problems, sentAs[slot], v[slot], max);
    }

    private Long countOrZero(Wire.Problems problems, Object[] v, int slot) {
        return v[slot] == null ? Long.valueOf(0) : Wire.count(problems, sentAs[slot], v[slot], Wire.MAX_COUNT);
    }

    private void checkTime(Wire.Problems problems, Object raw, Instant occurredAt) {
        if (raw == null) {
            problems.add("occurred_at", "required field is missing");
            return;
        }
        if (!(raw instanceof String)) {
            problems.add("occurred_at", "must be an ISO-8601 string with a UTC offset, e.g. 2026-11-22T13:00:00.123Z", raw);
            return;
        }
        long millis;
        try {
            millis = Wire.parseTime((String) raw);
        } catch (Wire.BadTime e) {
            problems.add("occurred_at", e.getMessage(), raw);
            return;
        }
        if (millis < Wire.EARLIEST_EVENT_MS) {
            problems.add("occurred_at", "must not be before 2000-01-01T00:00:00Z", raw);
        } else if (occurredAt == null || occurredAt.toEpochMilli() != millis) {
            // The source refused the time: more than 5 minutes ahead of its clock when it read it.
            problems.add("occurred_at", "must not be more than 5 minutes in the future (validator clock "
                    + Wire.wireTime(clock.getAsLong()) + "); check the producer's clock", raw);
        }
    }

    private static Row invalid(Wire.Problems problems) {
        Row row = Row.withPositions(28);
        row.setField(27, problems.text());
        return row;
    }

    // --- offline check -------------------------------------------------------------------------

    private static final String[] COLUMNS = {
        "event_id", "org_id", "team", "user_id", "app", "feature", "provider", "provider_raw", "request_model",
        "response_model", "model", "operation", "input_tokens", "cache_read_tokens", "cache_write_tokens",
        "output_tokens", "reasoning_tokens", "service_tier", "session_id", "trace_id", "latency_ms", "status",
        "error_type", "retry_of", "tool_calls", "attributes", "session_key", "reason",
    };

    /**
     * The decoder without Flink, for the contract corpus (tests/unit/test_validator_corpus.py): the
     * validator's clock in epoch milliseconds as the argument, one record per line on stdin in
     * base64 ("-" for a null value), optionally followed by a space and a clock for that record. Each record goes through YM_EVENT_TIME and this function as in
     * the job, and prints one line: the row as a JSON object (non-ASCII escaped) with its rowtime as occurred_at, reason included.
     */
    public static void main(String[] args) throws java.io.IOException {
        long[] now = {Long.parseLong(args[0])};
        long defaultNow = now[0];
        UsageEventParser parser = new UsageEventParser();
        parser.open(() -> now[0]);
        java.io.BufferedReader in = new java.io.BufferedReader(
                new java.io.InputStreamReader(System.in, java.nio.charset.StandardCharsets.US_ASCII));
        java.io.OutputStream out = new java.io.BufferedOutputStream(System.out, 1 << 16);
        org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonGenerator json = Wire.JSON.createGenerator(out);
        json.enable(org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonGenerator.Feature.ESCAPE_NON_ASCII);
        json.setRootValueSeparator(new org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.io.SerializedString("\n"));
        Instant[] rowtime = new Instant[1];
        parser.setCollector(new org.apache.flink.util.Collector<Row>() {
            @Override
            public void collect(Row row) {
                try {
                    json.writeStartObject();
                    json.writeStringField("occurred_at", row.getField(27) == null ? Wire.wireTime(rowtime[0].toEpochMilli()) : null);
                    for (int i = 0; i < COLUMNS.length; i++) {
                        Object v = row.getField(i);
                        json.writeFieldName(COLUMNS[i]);
                        if (v instanceof Map) {
                            json.writeStartObject();
                            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                                json.writeStringField((String) e.getKey(), (String) e.getValue());
                            }
                            json.writeEndObject();
                        } else if (v instanceof Long) {
                            json.writeNumber((Long) v);
                        } else if (v == null) {
                            json.writeNull();
                        } else {
                            json.writeString((String) v);
                        }
                    }
                    json.writeEndObject();
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }

            @Override
            public void close() {}
        });
        for (String line; (line = in.readLine()) != null; ) {
            int space = line.indexOf(' ');
            now[0] = space < 0 ? defaultNow : Long.parseLong(line.substring(space + 1));
            String record = space < 0 ? line : line.substring(0, space);
            byte[] value = record.equals("-") ? null : java.util.Base64.getDecoder().decode(record);
            rowtime[0] = EventTime.at(value, now[0]);
            parser.eval(value, rowtime[0]);
        }
        json.writeRaw('\n');
        json.flush();
    }
}
