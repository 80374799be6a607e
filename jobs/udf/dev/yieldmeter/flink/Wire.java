package dev.yieldmeter.flink;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.time.DateTimeException;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.json.JsonReadFeature;

/**
 * The wire rules of yieldmeter/contracts.py, shared by the decoders: how a JSON value is read,
 * how timestamps parse, and how a problem is worded ("field: rule (got value)").
 *
 * <p>Jackson comes from Flink's own distribution (flink-shaded), so the jar ships no dependency.
 */
final class Wire {
    private Wire() {}

    /**
     * The JSON the contract's parser (pydantic's) reads: also NaN and ±Infinity as numbers (no
     * field takes one, so the reason names the field rather than the syntax), containers nested at
     * most 201 deep, integers of at most 4300 digits (checked in scalar()), numbers and strings
     * otherwise of any length.
     */
    static final JsonFactory JSON = JsonFactory.builder()
            .enable(JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS)
            .streamReadConstraints(StreamReadConstraints.builder()
                    .maxNestingDepth(201).maxNumberLength(Integer.MAX_VALUE).maxStringLength(Integer.MAX_VALUE).build())
            .build();
    private static final int MAX_INTEGER_DIGITS = 4300; // Python's int() limit, which pydantic's parser keeps

    /** The rowtime of a record that has no valid time: far behind any watermark, so it never moves one. */
    static final Instant NO_TIME = Instant.EPOCH;

    static final long EARLIEST_EVENT_MS = 946_684_800_000L; // 2000-01-01T00:00:00Z
    static final long MAX_FUTURE_MS = 5 * 60 * 1000L;
    static final long LATEST_MS = 253_402_300_799_999L; // 9999-12-31T23:59:59.999Z
    static final long MAX_COUNT = 1_000_000_000L;

    private static final Pattern NOT_SPACE = Pattern.compile("[^\\p{IsWhite_Space}]");
    private static final DateTimeFormatter WIRE_TIME =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

    /** A JSON value that is not a scalar (object or array); its text is not kept. */
    static final Object COMPOUND = new Object() {
        @Override
        public String toString() {
            return "an object or array";
        }
    };

    /** JSON null, as opposed to an absent key (Java null). */
    static final Object NULL = new Object() {
        @Override
        public String toString() {
            return "null";
        }
    };

    /**
     * Reads the scalar at the parser's current token; an object or array is skipped, its content
     * checked as pydantic's parser checks a whole document (see {@link #checkToken}).
     */
    static Object scalar(JsonParser p, JsonToken t) throws java.io.IOException {
        checkToken(p, t);
        switch (t) {
            case VALUE_STRING:
                return p.getText();
            case VALUE_NUMBER_INT:
                return p.getNumberType() == JsonParser.NumberType.BIG_INTEGER ? p.getBigIntegerValue() : (Object) p.getLongValue();
            case VALUE_NUMBER_FLOAT:
                if (p.isNaN()) {
                    return p.getDoubleValue(); // NaN, ±Infinity: a Double
                }
                BigDecimal d = p.getDecimalValue();
                return d.signum() == 0 && p.getText().startsWith("-") ? (Object) (-0.0) : d; // BigDecimal has no -0
            case VALUE_TRUE:
                return Boolean.TRUE;
            case VALUE_FALSE:
                return Boolean.FALSE;
            case VALUE_NULL:
                return NULL;
            default:
                for (int depth = 1; depth > 0; ) {
                    JsonToken inner = p.nextToken();
                    if (inner == null) {
                        throw new java.io.EOFException("unexpected end of input");
                    }
                    depth += inner.isStructStart() ? 1 : inner.isStructEnd() ? -1 : 0;
                    checkToken(p, inner);
                }
                return COMPOUND;
        }
    }

    /**
     * What Jackson reads and pydantic's parser does not: a lone surrogate (only a \\u escape can
     * make one: the bytes were checked), an integer of more than 4300 digits, +Infinity.
     */
    private static void checkToken(JsonParser p, JsonToken t) throws java.io.IOException {
        if (t == JsonToken.VALUE_STRING) {
            checked(p.getText());
        } else if (t == JsonToken.FIELD_NAME) {
            checked(p.currentName());
        } else if (t == JsonToken.VALUE_NUMBER_INT) {
            if (p.getTextLength() > MAX_INTEGER_DIGITS && p.getText().replace("-", "").length() > MAX_INTEGER_DIGITS) {
                throw new java.io.CharConversionException("number out of range (more than " + MAX_INTEGER_DIGITS + " digits)");
            }
        } else if (t == JsonToken.VALUE_NUMBER_FLOAT && p.isNaN() && p.getText().startsWith("+")) {
            throw new java.io.CharConversionException("+Infinity is not a number");
        }
    }

    /** {@code s}, unless it holds a lone surrogate (an error: no Unicode text holds one). */
    static String checked(String s) throws java.io.CharConversionException {
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (Character.isSurrogate(c)) {
                if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                    i++;
                } else {
                    throw new java.io.CharConversionException(String.format("a lone surrogate \\u%04x in a string", (int) c));
                }
            }
        }
        return s;
    }

    /** After the top-level value: anything but the end of input is an error. */
    static void expectEnd(JsonParser p) throws java.io.IOException {
        if (p.nextToken() != null) {
            throw new java.io.IOException("unexpected content after the JSON object");
        }
    }

    // --- problems ------------------------------------------------------------------------------

    /** Problems of one record, one line each, worded like yieldmeter.contracts.explain. */
    static final class Problems {
        private final List<String> lines = new ArrayList<>(2);

        void add(String field, String message) {
            lines.add((field.isEmpty() ? "(event)" : field) + ": " + message); // an empty key, as explain() shows it
        }

        void addAll(Problems other) {
            lines.addAll(other.lines);
        }

        /** As pydantic shows it: the offending value for strings and numbers, nothing for null or objects. */
        void add(String field, String message, Object got) {
            boolean show = got instanceof String || got instanceof Number || got instanceof Boolean;
            add(field, message + (show ? " (got " + shown(got) + ")" : "")); // Python's repr, as explain() shows it
        }

        boolean isEmpty() {
            return lines.isEmpty();
        }

        String text() {
            return lines.isEmpty() ? null : String.join("\n", lines);
        }
    }

    static String shown(Object value) {
        if (value instanceof Boolean) {
            return (Boolean) value ? "True" : "False";
        }
        if (value instanceof Double) { // NaN, ±Infinity or -0.0
            return pythonFloat((Double) value);
        }
        if (value instanceof String) {
            return clip(repr((String) value), 80);
        }
        if (value instanceof BigDecimal) { // a JSON number with a fraction or exponent: Python reads a float
            return clip(pythonFloat(((BigDecimal) value).doubleValue()), 80);
        }
        return clip(String.valueOf(value), 80);
    }

    /** Python's repr() of a float: the shortest digits that read back, fixed from 1e-4 to 1e16. */
    static String pythonFloat(double d) {
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            return Double.isNaN(d) ? "nan" : d > 0 ? "inf" : "-inf";
        }
        if (d == 0) {
            return 1 / d < 0 ? "-0.0" : "0.0";
        }
        String sci = null;
        for (int precision = 0; precision < 17; precision++) { // %.{p}e has p + 1 significant digits
            sci = String.format(java.util.Locale.ROOT, "%." + precision + "e", d);
            if (Double.parseDouble(sci) == d) {
                break;
            }
        }
        int e = sci.indexOf('e');
        String mantissa = sci.substring(0, e);
        int exponent = Integer.parseInt(sci.substring(e + 1));
        boolean negative = mantissa.startsWith("-");
        String digits = mantissa.replace("-", "").replace(".", "");
        String out;
        if (exponent >= -5 + 1 && exponent < 16) {
            BigDecimal plain = new BigDecimal(new BigInteger(digits), digits.length() - 1 - exponent);
            out = plain.toPlainString();
            if (!out.contains(".")) {
                out += ".0";
            }
        } else {
            out = digits.charAt(0) + (digits.length() > 1 ? "." + digits.substring(1) : "")
                    + String.format("e%s%02d", exponent < 0 ? "-" : "+", Math.abs(exponent));
        }
        return negative ? "-" + out : out;
    }

    /** Python's repr() of a str: quotes, backslash escapes for control and other unprintable characters. */
    static String repr(String s) {
        char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        StringBuilder out = new StringBuilder(s.length() + 2).append(quote);
        for (int i = 0; i < s.length(); ) {
            int c = s.codePointAt(i);
            i += Character.charCount(c);
            if (c == quote || c == '\\') {
                out.append('\\').appendCodePoint(c);
            } else if (c == '\t') {
                out.append("\\t");
            } else if (c == '\n') {
                out.append("\\n");
            } else if (c == '\r') {
                out.append("\\r");
            } else if (c == ' ' || printable(c)) {
                out.appendCodePoint(c);
            } else if (c < 0x100) {
                out.append(String.format("\\x%02x", c));
            } else if (c < 0x10000) {
                out.append(String.format("\\u%04x", c));
            } else {
                out.append(String.format("\\U%08x", c));
            }
        }
        return out.append(quote).toString();
    }

    /** str.isprintable(): not a control, format, surrogate, private-use, unassigned or separator character. */
    private static boolean printable(int c) {
        switch (Character.getType(c)) {
            case Character.CONTROL:
            case Character.FORMAT:
            case Character.SURROGATE:
            case Character.PRIVATE_USE:
            case Character.UNASSIGNED:
            case Character.SPACE_SEPARATOR:
            case Character.LINE_SEPARATOR:
            case Character.PARAGRAPH_SEPARATOR:
                return false;
            default:
                return true;
        }
    }

    /** The first {@code max} characters (code points, as Python counts them). */
    static String clip(String s, int max) {
        return s.codePointCount(0, s.length()) <= max ? s : s.substring(0, s.offsetByCodePoints(0, max));
    }

    /** A key as a part of a field path: as contracts.explain shows it, at most 64 characters. */
    static String part(String key) {
        return clip(key, 64);
    }

    // --- field rules ---------------------------------------------------------------------------

    static int length(String s) {
        return s.codePointCount(0, s.length());
    }

    /** contracts.Name / ModelId: a string of 1..max characters with at least one non-blank one. */
    static String name(Problems problems, String field, Object value, int max) {
        if (!(value instanceof String)) {
            problems.add(field, "Input should be a valid string", value);
            return null;
        }
        String s = (String) value;
        int n = length(s);
        if (n < 1) {
            problems.add(field, "String should have at least 1 character", value);
        } else if (n > max) {
            problems.add(field, "String should have at most " + max + " characters", value);
        } else if (!NOT_SPACE.matcher(s).find()) {
            problems.add(field, "String should match pattern '\\S'", value);
        } else {
            return s;
        }
        return null;
    }

    /** contracts.Identifier: lower-cased, then [a-z0-9][a-z0-9._-]{0,63}. */
    static String identifier(Problems problems, String field, Object value) {
        if (!(value instanceof String)) {
            problems.add(field, "Input should be a valid string", value);
            return null;
        }
        String s = ((String) value).toLowerCase(java.util.Locale.ROOT);
        int n = s.length();
        boolean ok = n >= 1 && n <= 64 && isAlnum(s.charAt(0));
        for (int i = 1; ok && i < n; i++) {
            char c = s.charAt(i);
            ok = isAlnum(c) || c == '.' || c == '_' || c == '-';
        }
        if (!ok) { // checked after lower-casing: the rule and the value as pydantic words them
            problems.add(field, "String should match pattern '^[a-z0-9][a-z0-9._-]{0,63}$'", s);
            return null;
        }
        return s;
    }

    private static boolean isAlnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    }

    /** A strict JSON integer in [0, max]: true, 12.0 and "12" are not counts. */
    static Long count(Problems problems, String field, Object value, long max) {
        if (value instanceof Long) {
            long v = (Long) value;
            if (v < 0) {
                problems.add(field, "Input should be greater than or equal to 0", value);
            } else if (v > max) {
                problems.add(field, "Input should be less than or equal to " + max, value);
            } else {
                return v;
            }
        } else if (value instanceof BigInteger) {
            boolean negative = ((BigInteger) value).signum() < 0;
            problems.add(field, negative ? "Input should be greater than or equal to 0"
                    : "Input should be less than or equal to " + max, value);
        } else {
            problems.add(field, "Input should be a valid integer", value);
        }
        return null;
    }

    /**
     * contracts.Usd / Percent: a non-negative decimal written as a string (or a JSON number, read
     * exactly), with at most maxDigits digits of which at most places after the point.
     */
    static BigDecimal decimal(Problems problems, String field, Object value, int maxDigits, int places, BigDecimal max) {
        BigDecimal d = null;
        if (value instanceof String) {
            String s = ((String) value).trim();
            if (s.matches("[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?")) {
                d = new BigDecimal(s);
            }
        } else if (value instanceof BigDecimal) {
            d = (BigDecimal) value;
        } else if (value instanceof Long || value instanceof BigInteger) {
            d = new BigDecimal(value.toString());
        } else if (value instanceof Double && (Double) value == 0) { // -0.0
            d = BigDecimal.ZERO;
        }
        if (d == null) {
            problems.add(field, "Input should be a valid decimal", value);
            return null;
        }
        BigDecimal plain = d.stripTrailingZeros();
        int scale = Math.max(plain.scale(), 0);
        int digits = Math.max(plain.precision() - plain.scale(), 0) + scale;
        if (d.signum() < 0) {
            problems.add(field, "Input should be greater than or equal to 0", value);
        } else if (max != null && d.compareTo(max) > 0) {
            problems.add(field, "Input should be less than or equal to " + max.toPlainString(), value);
        } else if (scale > places) {
            problems.add(field, "Decimal input should have no more than " + places + " decimal places", value);
        } else if (digits > maxDigits) {
            problems.add(field, "Decimal input should have no more than " + maxDigits + " digits in total", value);
        } else {
            return d.setScale(places);
        }
        return null;
    }

    // --- time ----------------------------------------------------------------------------------

    /** Why a timestamp string does not parse; the message is the contract's. */
    static final class BadTime extends Exception {
        BadTime(String message) {
            super(message, null, false, false);
        }
    }

    /**
     * Epoch milliseconds of an ISO-8601 timestamp with a UTC offset, truncated to milliseconds,
     * accepting what the contract's parser accepts: YYYY-MM-DD, a separator (T, t, space or _),
     * HH:MM[:SS[.fraction]] (fraction after '.' or ','), then Z/z or +HH:MM / +HHMM.
     * Unix numbers, naive times and dates alone are refused.
     */
    static long parseTime(String s) throws BadTime {
        int n = s.length();
        if (n < 10 || !digits(s, 0, 4) || s.charAt(4) != '-' || !digits(s, 5, 2) || s.charAt(7) != '-' || !digits(s, 8, 2)) {
            throw new BadTime("must be an ISO-8601 string with a UTC offset, e.g. 2026-11-22T13:00:00.123Z");
        }
        int year = num(s, 0, 4), month = num(s, 5, 2), day = num(s, 8, 2);
        LocalDate date;
        try {
            date = LocalDate.of(year, month, day);
        } catch (DateTimeException e) {
            throw new BadTime("Input should be a valid datetime or date, day value is outside expected range");
        }
        if (n == 10) {
            throw new BadTime("must carry a UTC offset or 'Z'; naive times are ambiguous");
        }
        char sep = s.charAt(10);
        if (sep != 'T' && sep != 't' && sep != ' ' && sep != '_') {
            throw bad();
        }
        int i = 11;
        if (n < i + 5 || !digits(s, i, 2) || s.charAt(i + 2) != ':' || !digits(s, i + 3, 2)) {
            throw bad();
        }
        int hour = num(s, i, 2), minute = num(s, i + 3, 2), second = 0, millis = 0;
        i += 5;
        if (i < n && s.charAt(i) == ':') {
            if (!digits(s, i + 1, 2)) {
                throw bad();
            }
            second = num(s, i + 1, 2);
            i += 3;
            if (i < n && (s.charAt(i) == '.' || s.charAt(i) == ',')) {
                int start = ++i;
                while (i < n && Character.isDigit(s.charAt(i)) && s.charAt(i) < 128) {
                    i++;
                }
                if (i == start) {
                    throw bad();
                }
                String fraction = (s.substring(start, Math.min(i, start + 3)) + "00").substring(0, 3);
                millis = Integer.parseInt(fraction);
            }
        }
        if (hour > 23 || minute > 59 || second > 59) {
            throw bad();
        }
        if (i == n) {
            throw new BadTime("must carry a UTC offset or 'Z'; naive times are ambiguous");
        }
        int offsetMinutes;
        char z = s.charAt(i);
        if ((z == 'Z' || z == 'z') && i + 1 == n) {
            offsetMinutes = 0;
        } else if (z == '+' || z == '-') {
            int oh, om;
            if (n - i == 6 && digits(s, i + 1, 2) && s.charAt(i + 3) == ':' && digits(s, i + 4, 2)) {
                oh = num(s, i + 1, 2);
                om = num(s, i + 4, 2);
            } else if (n - i == 5 && digits(s, i + 1, 4)) {
                oh = num(s, i + 1, 2);
                om = num(s, i + 3, 2);
            } else {
                throw bad();
            }
            if (oh > 23 || om > 59) {
                throw bad();
            }
            offsetMinutes = (z == '-' ? -1 : 1) * (oh * 60 + om);
        } else {
            throw bad();
        }
        long epochDay = date.toEpochDay();
        long local = ((epochDay * 24 + hour) * 60 + minute) * 60_000L + second * 1000L + millis;
        long utc = local - offsetMinutes * 60_000L;
        if (utc > LATEST_MS) { // past year 9999 once in UTC: a time Python cannot hold
            throw new BadTime("must be before 9999-12-31T23:59:59.999Z");
        }
        return utc;
    }

    private static BadTime bad() {
        return new BadTime("Input should be a valid datetime or date");
    }

    private static boolean digits(String s, int from, int count) {
        if (from + count > s.length()) {
            return false;
        }
        for (int i = from; i < from + count; i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                return false;
            }
        }
        return true;
    }

    private static int num(String s, int from, int count) {
        return Integer.parseInt(s.substring(from, from + count));
    }

    static String wireTime(long epochMillis) {
        return WIRE_TIME.format(Instant.ofEpochMilli(epochMillis));
    }

    /** A JSON string literal, for keys built from several fields. */
    static void appendJsonString(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        out.append('"');
    }

    static JsonParser parser(String text) throws java.io.IOException {
        return JSON.createParser(text);
    }

    /**
     * Jackson reads UTF-8 bytes directly (no String first). It does not check them strictly,
     * though: it decodes overlong forms, surrogates and code points above U+10FFFF, and takes a
     * byte order mark or zero bytes as UTF-16/32. So the bytes are checked first, as strictly as
     * pydantic's parser does: not UTF-8 is a parse error.
     */
    static JsonParser parser(byte[] utf8) throws java.io.IOException {
        String problem = notUtf8(utf8);
        if (problem != null) {
            throw new java.io.CharConversionException(problem);
        }
        return JSON.createParser(utf8);
    }

    /** Why the bytes are not UTF-8 text (Unicode's well-formed sequences, table 3-7), or null. */
    static String notUtf8(byte[] b) {
        int n = b.length;
        if (n >= 3 && b[0] == (byte) 0xEF && b[1] == (byte) 0xBB && b[2] == (byte) 0xBF) {
            return "a byte order mark before the JSON";
        }
        for (int i = 0; i < Math.min(n, 4); i++) {
            if (b[i] == 0) {
                return "a zero byte at " + i + " (UTF-16 or UTF-32?)";
            }
        }
        for (int i = 0; i < n; ) {
            int c = b[i];
            if (c >= 0) { // ASCII, most of every record
                i++;
                continue;
            }
            c &= 0xFF;
            int more, low = 0x80, high = 0xBF;
            if (c >= 0xC2 && c <= 0xDF) {
                more = 1;
            } else if (c >= 0xE0 && c <= 0xEF) {
                more = 2;
                low = c == 0xE0 ? 0xA0 : 0x80; // not overlong
                high = c == 0xED ? 0x9F : 0xBF; // not a surrogate
            } else if (c >= 0xF0 && c <= 0xF4) {
                more = 3;
                low = c == 0xF0 ? 0x90 : 0x80; // not overlong
                high = c == 0xF4 ? 0x8F : 0xBF; // not above U+10FFFF
            } else {
                return String.format("invalid UTF-8 byte 0x%02x at %d", c, i);
            }
            if (i + more >= n) {
                return "a truncated UTF-8 sequence at " + i;
            }
            int second = b[i + 1] & 0xFF;
            boolean ok = second >= low && second <= high;
            for (int k = 2; ok && k <= more; k++) {
                ok = (b[i + k] & 0xC0) == 0x80;
            }
            if (!ok) {
                return String.format("invalid UTF-8 sequence at %d (lead byte 0x%02x)", i, c);
            }
            i += more + 1;
        }
        return null;
    }
}
