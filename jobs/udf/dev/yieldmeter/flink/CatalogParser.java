package dev.yieldmeter.flink;

import java.math.BigDecimal;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;

/**
 * One record of the prices topic, checked against PriceRecord (yieldmeter/contracts.py) or, when
 * its key starts with "discount/", OrgDiscount: {@link #parse} gives a {@link PriceBook.Price}, a
 * {@link PriceBook.Discount}, or the reason the record cannot be used (one line per problem, as
 * contracts.explain words it). A null value is a tombstone: the record with that key is deleted.
 *
 * <p>Rates are read exactly (the contract's 12 integer digits and 9 decimals), discounts with 4.
 */
final class CatalogParser {
    static final String DISCOUNT_PREFIX = "discount/";
    private static final BigDecimal HUNDRED = new BigDecimal(100);
    private static final String[] RATES = {"input", "output", "cache_read", "cache_write", "reasoning"};
    private static final String[] PRICE_KEYS = {
        "schema_version", "provider", "model", "service_tier", "effective_from", "currency", "input_per_mtok",
        "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok", "reasoning_per_mtok",
        "tier_threshold_input_tokens", "input_above_per_mtok", "output_above_per_mtok", "cache_read_above_per_mtok",
        "cache_write_above_per_mtok", "reasoning_above_per_mtok", "time_of_day_start", "time_of_day_end", "source",
    };
    private static final String[] DISCOUNT_KEYS = {
        "schema_version", "kind", "org_id", "provider", "discount_pct", "effective_from", "source",
    };
    private static final java.util.regex.Pattern DAILY_TIME =
            java.util.regex.Pattern.compile("([01]\\d|2[0-3]):([0-5]\\d)(?::([0-5]\\d))?");

    private CatalogParser() {
    }

    /** A parsed record: a price, a discount, or the reason it is unusable. */
    static final class Parsed {
        final PriceBook.Price price;
        final PriceBook.Discount discount;
        final String reason;

        Parsed(PriceBook.Price price, PriceBook.Discount discount, String reason) {
            this.price = price;
            this.discount = discount;
            this.reason = reason;
        }
    }

    /** The record of one message (value not null: a null value is a tombstone). */
    static Parsed parse(String key, String value) {
        boolean discount = key != null && key.startsWith(DISCOUNT_PREFIX);
        Wire.Problems problems = new Wire.Problems();
        Map<String, Object> v = read(value, discount ? DISCOUNT_KEYS : PRICE_KEYS, problems);
        if (v == null) {
            return new Parsed(null, null, problems.text());
        }
        return discount ? discount(v, problems) : price(v, problems);
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

    private static Parsed price(Map<String, Object> v, Wire.Problems problems) {
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
        String start = dailyTime(v, "time_of_day_start", problems);
        String end = dailyTime(v, "time_of_day_end", problems);
        if ((start == null) != (end == null) || (start != null && start.equals(end))) {
            problems.add("(record)", "time_of_day_start and time_of_day_end go together and must differ");
        }
        if (!problems.isEmpty()) {
            return new Parsed(null, null, problems.text());
        }
        String key = provider + "/" + model + "/" + tier + (start == null ? "" : "/" + start + "-" + end);
        return new Parsed(new PriceBook.Price(key + "@" + Wire.wireTime(effective), provider, model, tier, effective,
                start == null ? -1 : millisOfDay(start), end == null ? -1 : millisOfDay(end), base, above, threshold),
                null, null);
    }

    /** contracts.DailyTime: HH:MM or HH:MM:SS, written HH:MM:SS; null when absent. */
    private static String dailyTime(Map<String, Object> v, String field, Wire.Problems problems) {
        Object raw = v.get(field);
        if (raw == null || raw == Wire.NULL) {
            return null;
        }
        java.util.regex.Matcher m = raw instanceof String ? DAILY_TIME.matcher((String) raw) : null;
        if (m == null || !m.matches()) {
            problems.add(field, "String should match pattern '^([01]\\d|2[0-3]):[0-5]\\d(:[0-5]\\d)?$'", raw);
            return null;
        }
        return m.group(1) + ":" + m.group(2) + ":" + (m.group(3) == null ? "00" : m.group(3));
    }

    private static int millisOfDay(String hhmmss) {
        return ((Integer.parseInt(hhmmss.substring(0, 2)) * 60 + Integer.parseInt(hhmmss.substring(3, 5))) * 60
                + Integer.parseInt(hhmmss.substring(6, 8))) * 1000;
    }

    private static Parsed discount(Map<String, Object> v, Wire.Problems problems) {
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
            return new Parsed(null, null, problems.text());
        }
        String id = DISCOUNT_PREFIX + orgId + "/" + provider + "@" + Wire.wireTime(effective);
        return new Parsed(null, new PriceBook.Discount(id, orgId, provider, effective, pct), null);
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
}
