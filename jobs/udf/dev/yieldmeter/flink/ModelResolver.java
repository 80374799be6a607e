package dev.yieldmeter.flink;

import java.io.IOException;
import java.io.InputStream;
import java.time.DateTimeException;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * yieldmeter.normalize.normalize_model in Java: a call's model id -> the price catalogue's id.
 *
 * <p>The rules (genai-prices' providers, their models' match clauses, fallback providers, and
 * normalize.py's alias table and suffix patterns) are exported by the app
 * (yieldmeter.pipeline_jobs.export_model_rules) into model_rules.json, which the job bundles
 * into this jar, so the job prices with exactly the catalogue the prices were seeded from.
 * Results are cached: a stream has few distinct (provider, model) pairs.
 */
final class ModelResolver {
    static final String RESOURCE = "/dev/yieldmeter/flink/model_rules.json";
    private static final int CACHE_LIMIT = 100_000;
    private static final Pattern COMPACT_DATE =
            Pattern.compile("(-)(20\\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\\d|3[01])(?=-|:|$)");

    private interface Clause {
        boolean matches(String text);
    }

    private static final class CatalogueModel {
        final String id;
        final Clause match;

        CatalogueModel(String id, Clause match) {
            this.id = id;
            this.match = match;
        }
    }

    private static final class Provider {
        final String id;
        final Clause providerMatch;
        final List<CatalogueModel> models = new ArrayList<>();
        final List<String> fallback = new ArrayList<>();

        Provider(String id, Clause providerMatch) {
            this.id = id;
            this.providerMatch = providerMatch;
        }
    }

    private final List<Provider> providers = new ArrayList<>();
    private final Map<String, String> providerCatalogue = new HashMap<>();
    private final Map<String, String> providerSpellings = new HashMap<>();
    private final Map<String, String> canonical = new HashMap<>(); // genai-prices id -> its first canonical name
    private final Map<String, String> providerCache = new HashMap<>();
    private final Map<String, String> aliases = new HashMap<>();
    private final Pattern trailingDate;
    private final Pattern geminiVersion;
    private final Map<String, String> cache = new HashMap<>();

    private ModelResolver(JsonNode rules) {
        rules.get("provider_catalogue").fields().forEachRemaining(e -> providerCatalogue.put(e.getKey(), e.getValue().asText()));
        rules.get("provider_spellings").fields().forEachRemaining(e -> providerSpellings.put(e.getKey(), e.getValue().asText()));
        rules.get("canonical").fields().forEachRemaining(e -> canonical.put(e.getKey(), e.getValue().asText()));
        rules.get("aliases").fields().forEachRemaining(e -> aliases.put(e.getKey(), e.getValue().asText()));
        trailingDate = Pattern.compile(rules.get("trailing_date").asText());
        geminiVersion = Pattern.compile(rules.get("gemini_version").asText());
        for (JsonNode p : rules.get("providers")) {
            JsonNode match = p.get("provider_match");
            Provider provider = new Provider(p.get("id").asText(), match == null || match.isNull() ? null : clause(match));
            for (JsonNode m : p.get("models")) {
                provider.models.add(new CatalogueModel(m.get("id").asText().toLowerCase(Locale.ROOT), clause(m.get("match"))));
            }
            for (JsonNode f : p.get("fallback")) {
                provider.fallback.add(f.asText());
            }
            providers.add(provider);
        }
    }

    /** The rules bundled in the jar; without them every model id is only trimmed and lower-cased. */
    static ModelResolver bundled() {
        try (InputStream in = ModelResolver.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("model_rules.json is missing from the yieldmeter UDF jar; rebuild it");
            }
            return new ModelResolver(new ObjectMapper().readTree(in));
        } catch (IOException e) {
            throw new IllegalStateException("cannot read model_rules.json: " + e, e);
        }
    }

    private static Clause clause(JsonNode node) {
        if (node.has("equals")) {
            String v = node.get("equals").asText().toLowerCase(Locale.ROOT);
            return text -> text.toLowerCase(Locale.ROOT).equals(v);
        }
        if (node.has("starts_with")) {
            String v = node.get("starts_with").asText().toLowerCase(Locale.ROOT);
            return text -> text.toLowerCase(Locale.ROOT).startsWith(v);
        }
        if (node.has("ends_with")) {
            String v = node.get("ends_with").asText().toLowerCase(Locale.ROOT);
            return text -> text.toLowerCase(Locale.ROOT).endsWith(v);
        }
        if (node.has("contains")) {
            String v = node.get("contains").asText().toLowerCase(Locale.ROOT);
            return text -> text.toLowerCase(Locale.ROOT).contains(v);
        }
        if (node.has("regex")) {
            Pattern v = Pattern.compile(node.get("regex").asText());
            return text -> v.matcher(text).find(); // Python re.search, on the lower-cased ref
        }
        List<Clause> parts = new ArrayList<>();
        boolean any = node.has("or");
        for (JsonNode part : any ? node.get("or") : node.get("and")) {
            parts.add(clause(part));
        }
        return any ? text -> parts.stream().anyMatch(c -> c.matches(text)) : text -> parts.stream().allMatch(c -> c.matches(text));
    }

    /**
     * normalize_provider(provider): the spelling table, a canonical name as it is, genai-prices'
     * provider id, then its provider_match rules (catalogue order), else the name as sent.
     */
    String provider(String sent) {
        String hit = providerCache.get(sent);
        if (hit == null) {
            hit = resolveProvider(strip(sent).toLowerCase(Locale.ROOT));
            if (providerCache.size() >= CACHE_LIMIT) {
                providerCache.clear();
            }
            providerCache.put(sent, hit);
        }
        return hit;
    }

    private String resolveProvider(String name) {
        if (providerSpellings.containsKey(name)) {
            return providerSpellings.get(name);
        }
        if (providerCatalogue.containsKey(name)) {
            return name;
        }
        for (Provider p : providers) {
            if (p.id.equals(name)) {
                return canonical.getOrDefault(p.id, p.id);
            }
        }
        for (Provider p : providers) {
            if (p.providerMatch != null && p.providerMatch.matches(name)) {
                return canonical.getOrDefault(p.id, p.id);
            }
        }
        return name;
    }

    /**
     * Python's str.strip(): Java's strip() keeps U+0085, U+00A0, U+2007 and U+202F, which Python
     * counts as white space (found by the validator corpus: "m\u0085" resolved differently).
     */
    static String strip(String s) {
        int start = 0, end = s.length();
        while (start < end && pythonSpace(s.charAt(start))) {
            start++;
        }
        while (end > start && pythonSpace(s.charAt(end - 1))) {
            end--;
        }
        return s.substring(start, end);
    }

    private static boolean pythonSpace(char c) {
        return Character.isWhitespace(c) || c == '\u0085' || c == '\u00a0' || c == '\u2007' || c == '\u202f';
    }

    /** normalize_model(provider, model), the provider in any spelling; both non-blank (the contract says so). */
    String normalize(String provider, String model) {
        String key = provider + '\u0000' + model;
        String hit = cache.get(key);
        if (hit == null) {
            hit = resolve(provider(provider), strip(model).toLowerCase(Locale.ROOT));
            if (cache.size() >= CACHE_LIMIT) {
                cache.clear();
            }
            cache.put(key, hit);
        }
        return hit;
    }

    private String resolve(String provider, String raw) {
        String hit = catalogueId(provider, raw);
        if (hit != null) {
            return hit;
        }
        String ref = raw.substring(raw.lastIndexOf('/') + 1);
        ref = aliases.getOrDefault(ref, ref);
        hit = catalogueId(provider, ref);
        if (hit != null) {
            return hit;
        }
        if ("aws".equals(providerCatalogue.getOrDefault(provider, provider))) {
            return ref;
        }
        String stripped = geminiVersion.matcher(trailingDate.matcher(ref).replaceFirst("")).replaceFirst("$1");
        if (!stripped.equals(ref) && (hit = catalogueId(provider, stripped)) != null) {
            return hit;
        }
        return stripped;
    }

    private String catalogueId(String provider, String ref) {
        Provider entry = findProvider(providerCatalogue.getOrDefault(provider, provider));
        if (entry == null) {
            return null;
        }
        ref = ref.toLowerCase(Locale.ROOT);
        CatalogueModel model = matchModel(entry, ref, true);
        if (model == null) {
            String compact = compactDate(ref);
            if (!compact.equals(ref)) {
                model = matchModel(entry, compact, true);
            }
        }
        return model == null ? null : model.id;
    }

    private Provider findProvider(String id) {
        String normalized = strip(id.toLowerCase(Locale.ROOT));
        for (Provider p : providers) {
            if (p.id.equals(normalized)) {
                return p;
            }
        }
        for (Provider p : providers) {
            if (p.providerMatch != null && p.providerMatch.matches(normalized)) {
                return p;
            }
        }
        return null;
    }

    private CatalogueModel matchModel(Provider provider, String ref, boolean withFallback) {
        for (CatalogueModel m : provider.models) {
            if (m.match.matches(ref)) {
                return m;
            }
        }
        if (withFallback) {
            for (String id : provider.fallback) {
                for (Provider p : providers) {
                    if (p.id.equals(id)) {
                        CatalogueModel m = matchModel(p, ref, false); // one step of fallback, as genai-prices
                        if (m != null) {
                            return m;
                        }
                        break;
                    }
                }
            }
        }
        return null;
    }

    /** genai-prices' _normalize_compact_dated_ref: -20251211 -> -2025-12-11 when it is a real date. */
    private static String compactDate(String ref) {
        Matcher m = COMPACT_DATE.matcher(ref);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            int y = Integer.parseInt(m.group(2)), mo = Integer.parseInt(m.group(3)), d = Integer.parseInt(m.group(4));
            String replacement;
            try {
                LocalDate.of(y, mo, d);
                replacement = String.format("%s%04d-%02d-%02d", m.group(1), y, mo, d);
            } catch (DateTimeException e) {
                replacement = m.group(0);
            }
            m.appendReplacement(out, Matcher.quoteReplacement(replacement));
        }
        m.appendTail(out);
        return out.toString();
    }

    /** For the parity test: java -cp jar dev.yieldmeter.flink.ModelResolver < "provider\tmodel" lines. */
    public static void main(String[] args) throws IOException {
        ModelResolver resolver = bundled();
        java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in, "UTF-8"));
        for (String line; (line = in.readLine()) != null; ) {
            String[] parts = line.split("\t", 2);
            System.out.println(resolver.normalize(parts[0], parts[1]));
        }
    }
}
