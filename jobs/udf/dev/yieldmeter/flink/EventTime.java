package dev.yieldmeter.flink;

import java.nio.charset.StandardCharsets;
import java.time.Instant;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * YM_EVENT_TIME(value): the event-time column of usage.events, read straight from the raw record
 * (a watermark can only be declared on a source column, before any validation).
 *
 * <p>Returns occurred_at when it is a valid contract timestamp between 2000-01-01 and 5 minutes
 * after this machine's clock; otherwise the epoch, which never advances a watermark. One
 * garbage timestamp in the year 2999 must not make every later event late.
 *
 * <p>Fast path: when the bytes hold "occurred_at" exactly once, followed by a plain string, that
 * string is the time and the rest of the record is not parsed (YM_PARSE_USAGE_EVENT checks it
 * against the full parse, so a valid record always gets its own time).
 */
public class EventTime extends ScalarFunction {
    private static final long serialVersionUID = 1L;
    private static final byte[] KEY = "\"occurred_at\"".getBytes(StandardCharsets.US_ASCII);

    public @DataTypeHint("TIMESTAMP_LTZ(3)") Instant eval(byte[] value) {
        return at(value, System.currentTimeMillis());
    }

    /** The rowtime of a record read when this machine's clock says {@code nowMillis}. */
    static Instant at(byte[] value, long nowMillis) {
        if (value == null) {
            return Wire.NO_TIME;
        }
        String raw = quick(value);
        if (raw == null) {
            raw = parsed(value);
        }
        if (raw == null) {
            return Wire.NO_TIME;
        }
        try {
            long millis = Wire.parseTime(raw);
            boolean inRange = millis >= Wire.EARLIEST_EVENT_MS && millis <= nowMillis + Wire.MAX_FUTURE_MS;
            return inRange ? Instant.ofEpochMilli(millis) : Wire.NO_TIME;
        } catch (Wire.BadTime e) {
            return Wire.NO_TIME;
        }
    }

    /** The string after the only "occurred_at": key, or null to fall back to a full parse. */
    private static String quick(byte[] v) {
        int at = indexOf(v, 0);
        if (at < 0 || indexOf(v, at + KEY.length) >= 0 || (at > 0 && v[at - 1] == '\\')) {
            return null;
        }
        int i = skipSpace(v, at + KEY.length);
        if (i >= v.length || v[i] != ':') {
            return null;
        }
        i = skipSpace(v, i + 1);
        if (i >= v.length || v[i] != '"') {
            return null;
        }
        int start = ++i;
        while (i < v.length && v[i] != '"') {
            if (v[i] == '\\' || v[i] < 0x20 || v[i] < 0) {
                return null; // escapes or non-ASCII: leave it to the parser
            }
            i++;
        }
        return i < v.length ? new String(v, start, i - start, StandardCharsets.US_ASCII) : null;
    }

    private static int indexOf(byte[] v, int from) {
        outer:
        for (int i = from; i <= v.length - KEY.length; i++) {
            for (int j = 0; j < KEY.length; j++) {
                if (v[i + j] != KEY[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }

    private static int skipSpace(byte[] v, int i) {
        while (i < v.length && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r')) {
            i++;
        }
        return i;
    }

    /** Top-level occurred_at through the JSON parser (the last of duplicate keys wins, as in the parser). */
    private static String parsed(byte[] value) {
        String raw = null;
        try (JsonParser p = Wire.parser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                boolean wanted = "occurred_at".equals(p.currentName());
                JsonToken t = p.nextToken();
                if (wanted) {
                    raw = t == JsonToken.VALUE_STRING ? p.getText() : null;
                } else {
                    p.skipChildren();
                }
            }
        } catch (java.io.IOException e) {
            return null;
        }
        return raw;
    }

    @Override
    public boolean isDeterministic() {
        return false; // reads the wall clock (the contract's 5-minute future limit)
    }
}
