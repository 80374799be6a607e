package dev.yieldmeter.flink;

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
 */
public class EventTime extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    public @DataTypeHint("TIMESTAMP_LTZ(3)") Instant eval(String value) {
        if (value == null) {
            return Wire.NO_TIME;
        }
        String raw = null;
        try (JsonParser p = Wire.parser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return Wire.NO_TIME;
            }
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                boolean wanted = "occurred_at".equals(p.currentName());
                t = p.nextToken();
                if (wanted) {
                    raw = t == JsonToken.VALUE_STRING ? p.getText() : null; // the last one wins, as in the parser
                } else {
                    p.skipChildren();
                }
            }
        } catch (java.io.IOException e) {
            return Wire.NO_TIME;
        }
        if (raw == null) {
            return Wire.NO_TIME;
        }
        try {
            long millis = Wire.parseTime(raw);
            boolean inRange = millis >= Wire.EARLIEST_EVENT_MS && millis <= System.currentTimeMillis() + Wire.MAX_FUTURE_MS;
            return inRange ? Instant.ofEpochMilli(millis) : Wire.NO_TIME;
        } catch (Wire.BadTime e) {
            return Wire.NO_TIME;
        }
    }

    @Override
    public boolean isDeterministic() {
        return false; // reads the wall clock (the contract's 5-minute future limit)
    }
}
