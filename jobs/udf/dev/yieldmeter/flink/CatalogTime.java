package dev.yieldmeter.flink;

import java.time.Instant;
import java.util.Map;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * YM_CATALOG_TIME(value): effective_from of a prices-topic record, the versioned prices'
 * time attribute; the epoch for a record without a valid one (such records are not used).
 */
public class CatalogTime extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    public @DataTypeHint("TIMESTAMP_LTZ(3)") Instant eval(String value) {
        if (value == null) {
            return Wire.NO_TIME;
        }
        Wire.Problems ignored = new Wire.Problems();
        Map<String, Object> fields = CatalogParser.read(value, new String[0], ignored);
        Long millis = fields == null ? null : CatalogParser.effectiveFrom(fields, ignored);
        return millis == null ? Wire.NO_TIME : Instant.ofEpochMilli(millis);
    }
}
