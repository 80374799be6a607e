package dev.yieldmeter.flink;

import java.math.BigDecimal;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.TableFunction;
import org.apache.flink.types.Row;

/**
 * YM_PARSE_CATALOG(key, value): one record of the prices topic, checked against PriceRecord
 * (yieldmeter/contracts.py) or, when its key starts with "discount/", OrgDiscount
 * (yieldmeter/prices.py). Emits exactly one row whose {@code kind} is 'price', 'discount',
 * 'tombstone' (null value: a deletion, see jobs/README.md) or 'invalid' (with the reason).
 *
 * <p>Rates come out as DECIMAL(21, 9) (the contract's 12 integer digits and 9 decimals),
 * discounts as DECIMAL(7, 4); the ids are PriceRecord.price_id and OrgDiscount.discount_id.
 */
@FunctionHint(
        output = @DataTypeHint(
                "ROW<kind STRING, reason STRING, provider STRING, model STRING, service_tier STRING, price_id STRING,"
                        + " input_per_mtok DECIMAL(21, 9), output_per_mtok DECIMAL(21, 9),"
                        + " cache_read_per_mtok DECIMAL(21, 9), cache_write_per_mtok DECIMAL(21, 9),"
                        + " reasoning_per_mtok DECIMAL(21, 9), tier_threshold_input_tokens BIGINT,"
                        + " input_above_per_mtok DECIMAL(21, 9), output_above_per_mtok DECIMAL(21, 9),"
                        + " cache_read_above_per_mtok DECIMAL(21, 9), cache_write_above_per_mtok DECIMAL(21, 9),"
                        + " reasoning_above_per_mtok DECIMAL(21, 9),"
                        + " org_id STRING, discount_pct DECIMAL(7, 4), discount_id STRING>"))
public class CatalogParser extends TableFunction<Row> {
    private static final long serialVersionUID = 1L;
    static final String DISCOUNT_PREFIX = "discount/";
    private static final BigDecimal HUNDRED = new BigDecimal(100);
    private static final String[] RATES = {"input", "output", "cache_read", "cache_write", "reasoning"};
    private static final String[] PRICE_KEYS = {
        "schema_version", "provider", "model", "service_tier", "effective_from", "currency", "input_per_mtok",
        "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok", "reasoning_per_mtok",
        "tier_threshold_input_tokens", "input_above_per_mtok", "output_above_per_mtok", "cache_read_above_per_mtok",
        "cache_write_above_per_mtok", "reasoning_above_per_mtok", "source",
    };
    private static final String[] DISCOUNT_KEYS = {
        "schema_version", "kind", "org_id", "provider", "discount_pct", "effective_from", "source",
    };

    public void eval(String key, String value) {
        if (value == null) {
            collect(row("tombstone", null));
            return;
        }
        boolean discount = key != null && key.startsWith(DISCOUNT_PREFIX);
        Wire.Problems problems = new Wire.Problems();
        Map<String, Object> v = read(value, discount ? DISCOUNT_KEYS : PRICE_KEYS, problems);
        if (v == null) {
            collect(row("invalid", problems.text()));
            return;
        }
        collect(discount ? discount(v, problems) : price(v, problems));
    }

    /** Top-level fields of a JSON object (the last of duplicate keys wins); null when unreadable. */
    static Map<String, Object> read(String value, String[] known, Wire.Problems problems) {
        Map<String, Object> out = new HashMap<>();
        try (JsonParser p = Wire.parser(value)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                problems.add("(record)", "must be a JSON object");
                return null;
            }
            JsonToken t;
            while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                out.put(name, Wire.scalar(p, p.nextToken()));
            }
            Wire.expectEnd(p);
        } catch (java.io.IOException e) {
            String message = e.getMessage() == null ? "unreadable" : e.getMessage().split("\n", 2)[0];
            problems.add("(record)", "not valid JSON: " + message);
            return null;
        }
        java.util.List<String> names = java.util.Arrays.asList(known);
        for (String name : out.keySet()) {
            if (!names.contains(name)) {
                problems.add(name, "unknown field");
            }
        }
        return out;
    }

    private static Row price(Map<String, Object> v, Wire.Problems problems) {
        checkVersion(v, problems);
        String provider = requiredIdentifier(v, "provider", problems);
        Object rawModel = v.get("model");
        String model = rawModel == null ? missing("model", problems)
                : Wire.name(problems, "model", rawModel instanceof String ? ((String) rawModel).toLowerCase(java.util.Locale.ROOT) : rawModel, 256);
        String tier = v.get("service_tier") == null ? "default" : Wire.identifier(problems, "service_tier", v.get("service_tier"));
        Long effective = effectiveFrom(v, problems);
        if (v.get("currency") != null && !"USD".equals(v.get("currency"))) {
            problems.add("currency", "Input should be 'USD'", v.get("currency"));
        }
        if (!"genai-prices".equals(v.get("source")) && !"user".equals(v.get("source"))) {
            if (v.get("source") == null) {
                missing("source", problems);
            } else {
                problems.add("source", "Input should be 'genai-prices' or 'user'", v.get("source"));
            }
        }
        BigDecimal[] base = new BigDecimal[5], above = new BigDecimal[5];
        for (int i = 0; i < 5; i++) {
            base[i] = usd(v, RATES[i] + "_per_mtok", i < 2, problems);
            above[i] = usd(v, RATES[i] + "_above_per_mtok", false, problems);
        }
        Long threshold = null;
        Object t = v.get("tier_threshold_input_tokens");
        if (t != null && t != Wire.NULL) {
            threshold = Wire.count(problems, "tier_threshold_input_tokens", t, Wire.MAX_COUNT);
            if (threshold != null && threshold == 0) {
                problems.add("tier_threshold_input_tokens", "Input should be greater than 0", t);
                threshold = null;
            }
        }
        if (problems.isEmpty()) {
            StringBuilder given = new StringBuilder();
            for (int i = 0; i < 5; i++) {
                if (above[i] != null) {
                    given.append(given.length() == 0 ? "" : ", ").append(RATES[i]).append("_above_per_mtok");
                }
            }
            if (threshold == null && given.length() > 0) {
                problems.add("(record)", given + " given without tier_threshold_input_tokens");
            } else if (threshold != null && (above[0] == null || above[1] == null)) {
                problems.add("(record)", "tier_threshold_input_tokens needs input_above_per_mtok and output_above_per_mtok");
            }
        }
        if (!problems.isEmpty()) {
            return row("invalid", problems.text());
        }
        String priceId = provider + "/" + model + "/" + tier + "@" + Wire.wireTime(effective);
        Row row = row("price", null);
        row.setField(2, provider);
        row.setField(3, model);
        row.setField(4, tier);
        row.setField(5, priceId);
        for (int i = 0; i < 5; i++) {
            row.setField(6 + i, base[i]);
            row.setField(12 + i, above[i]);
        }
        row.setField(11, threshold);
        return row;
    }

    private static Row discount(Map<String, Object> v, Wire.Problems problems) {
        checkVersion(v, problems);
        if (v.get("kind") != null && !"org_discount".equals(v.get("kind"))) {
            problems.add("kind", "Input should be 'org_discount'", v.get("kind"));
        }
        Object rawOrg = v.get("org_id");
        String orgId = rawOrg == null ? missing("org_id", problems) : Wire.name(problems, "org_id", rawOrg, 128);
        Object rawProvider = v.get("provider");
        String provider = rawProvider == null || rawProvider == Wire.NULL ? "*" : Wire.identifier(problems, "provider", rawProvider);
        Object rawPct = v.get("discount_pct");
        BigDecimal pct = rawPct == null ? null : Wire.decimal(problems, "discount_pct", rawPct, 8, 4, HUNDRED);
        if (rawPct == null) {
            missing("discount_pct", problems);
        }
        Long effective = effectiveFrom(v, problems);
        if (v.get("source") != null && !"user".equals(v.get("source"))) {
            problems.add("source", "Input should be 'user'", v.get("source"));
        }
        if (!problems.isEmpty()) {
            return row("invalid", problems.text());
        }
        Row row = row("discount", null);
        row.setField(2, provider);
        row.setField(17, orgId);
        row.setField(18, pct);
        row.setField(19, DISCOUNT_PREFIX + orgId + "/" + provider + "@" + Wire.wireTime(effective));
        return row;
    }

    private static void checkVersion(Map<String, Object> v, Wire.Problems problems) {
        Object version = v.get("schema_version");
        boolean one = version == null || (version instanceof Long && (Long) version == 1L) || Boolean.TRUE.equals(version)
                || (version instanceof BigDecimal && ((BigDecimal) version).compareTo(BigDecimal.ONE) == 0);
        if (!one) {
            problems.add("schema_version", "Input should be 1", version);
        }
    }

    private static String missing(String field, Wire.Problems problems) {
        problems.add(field, "required field is missing");
        return null;
    }

    private static String requiredIdentifier(Map<String, Object> v, String field, Wire.Problems problems) {
        Object raw = v.get(field);
        return raw == null ? missing(field, problems) : Wire.identifier(problems, field, raw);
    }

    private static BigDecimal usd(Map<String, Object> v, String field, boolean required, Wire.Problems problems) {
        Object raw = v.get(field);
        if (raw == null || (raw == Wire.NULL && !required)) {
            if (required) {
                missing(field, problems);
            }
            return null;
        }
        return Wire.decimal(problems, field, raw, 21, 9, null);
    }

    /** effective_from as epoch millis (contracts.PriceTime: an ISO timestamp from 1970 on). */
    static Long effectiveFrom(Map<String, Object> v, Wire.Problems problems) {
        Object raw = v.get("effective_from");
        if (raw == null) {
            missing("effective_from", problems);
            return null;
        }
        if (!(raw instanceof String)) {
            problems.add("effective_from", "must be an ISO-8601 string with a UTC offset, e.g. 2026-11-22T13:00:00.123Z", raw);
            return null;
        }
        try {
            long millis = Wire.parseTime((String) raw);
            if (millis < 0) {
                problems.add("effective_from", "must not be before 1970-01-01T00:00:00Z", raw);
                return null;
            }
            return millis;
        } catch (Wire.BadTime e) {
            problems.add("effective_from", e.getMessage(), raw);
            return null;
        }
    }

    private static Row row(String kind, String reason) {
        Row row = Row.withPositions(20);
        row.setField(0, kind);
        row.setField(1, reason);
        return row;
    }
}
