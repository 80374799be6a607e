package dev.yieldmeter.flink;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The whole price catalog, every version of every price and discount, and the rules of
 * docs/pricing.md: which price and discount are in force for a call, and its exact cost.
 *
 * <p>Immutable: {@link CatalogFeed} builds a new book whenever the prices topic changes and
 * swaps it in, so a call is priced from one consistent catalog. Money is integer arithmetic
 * on longs (rates in nano-dollars per million tokens, costs in 1e-15 USD) whenever it fits,
 * which for real rates and counts it always does; BigDecimal otherwise. Both are exact and
 * written as the decimal strings the rest of yieldmeter reads: costs with 15 decimals, the
 * discounted cost with 21 (PriceRecord.cost_usd and OrgDiscount.apply to the last digit).
 */
final class PriceBook {
    private static final int RATES = 5; // input, output, cache_read, cache_write, reasoning
    private static final int INPUT = 0, OUTPUT = 1, CACHE_READ = 2, CACHE_WRITE = 3, REASONING = 4;
    private static final long DAY_MS = 86_400_000L;
    private static final BigDecimal NANO = BigDecimal.valueOf(1_000_000_000L);
    private static final BigDecimal PCT_UNITS = BigDecimal.valueOf(10_000L);

    /** One PriceRecord. Rates are USD per million tokens; null = falls back (see rates()). */
    static final class Price {
        final String id, provider, model, tier;
        final long effectiveFrom;
        final int windowStart, windowEnd; // millis of the UTC day; -1 = all day
        final BigDecimal[] base, above;
        final Long threshold;

        Price(String id, String provider, String model, String tier, long effectiveFrom, int windowStart, int windowEnd,
              BigDecimal[] base, BigDecimal[] above, Long threshold) {
            this.id = id;
            this.provider = provider;
            this.model = model;
            this.tier = tier;
            this.effectiveFrom = effectiveFrom;
            this.windowStart = windowStart;
            this.windowEnd = windowEnd;
            this.base = base;
            this.above = above;
            this.threshold = threshold;
        }

        boolean windowed() {
            return windowStart >= 0;
        }

        boolean appliesAt(long at) {
            if (at < effectiveFrom) {
                return false;
            }
            if (!windowed()) {
                return true;
            }
            long t = Math.floorMod(at, DAY_MS);
            return windowStart < windowEnd ? t >= windowStart && t < windowEnd : t >= windowStart || t < windowEnd;
        }

        /** PriceRecord.rates_for: the five rates that apply below or above the context tier. */
        BigDecimal[] rates(boolean aboveTier) {
            BigDecimal[] r = new BigDecimal[RATES];
            if (!aboveTier) {
                r[INPUT] = base[INPUT];
                r[OUTPUT] = base[OUTPUT];
                r[CACHE_READ] = first(base[CACHE_READ], base[INPUT]);
                r[CACHE_WRITE] = first(base[CACHE_WRITE], base[INPUT]);
                r[REASONING] = first(base[REASONING], base[OUTPUT]);
            } else {
                r[INPUT] = above[INPUT];
                r[OUTPUT] = above[OUTPUT];
                r[CACHE_READ] = first(above[CACHE_READ], first(base[CACHE_READ], above[INPUT]));
                r[CACHE_WRITE] = first(above[CACHE_WRITE], first(base[CACHE_WRITE], above[INPUT]));
                r[REASONING] = first(above[REASONING], first(base[REASONING], above[OUTPUT]));
            }
            return r;
        }

        boolean isAboveTier(long inputTokens) {
            return threshold != null && inputTokens > threshold;
        }
    }

    /** One OrgDiscount; provider "*" = every provider of the org. */
    static final class Discount {
        final String id, orgId, provider;
        final long effectiveFrom;
        final BigDecimal pct;

        Discount(String id, String orgId, String provider, long effectiveFrom, BigDecimal pct) {
            this.id = id;
            this.orgId = orgId;
            this.provider = provider;
            this.effectiveFrom = effectiveFrom;
            this.pct = pct;
        }
    }

    /** A price with its rates precomputed in both forms, for the hot path. */
    private static final class Version {
        final Price price;
        final long[][] nanos; // [below, above][rate]; null when a rate does not fit a long
        final BigDecimal[][] rates;

        Version(Price price) {
            this.price = price;
            rates = new BigDecimal[][] {price.rates(false), price.threshold == null ? null : price.rates(true)};
            nanos = new long[2][];
            for (int side = 0; side < 2; side++) {
                nanos[side] = rates[side] == null ? null : toNanos(rates[side]);
            }
        }
    }

    /** What the pricing of one call gives: everything the priced record carries. */
    static final class Quote {
        String status = "unpriced", priceId, discountId, discountPct;
        boolean contextTier;
        final String[] components = new String[RATES]; // input, cache_read, cache_write, output, reasoning
        String listCost, cost;
    }

    private final Map<String, Version[]> prices = new HashMap<>(); // provider \0 model \0 tier -> newest first
    private final Map<String, Discount[]> discounts = new HashMap<>(); // org \0 provider -> newest first

    PriceBook(Iterable<Price> priceRecords, Iterable<Discount> discountRecords) {
        Map<String, List<Version>> p = new HashMap<>();
        for (Price price : priceRecords) {
            p.computeIfAbsent(key(price.provider, price.model, price.tier), k -> new ArrayList<>()).add(new Version(price));
        }
        // Newest first; on equal effective_from the windowed one first: the first that applies wins.
        Comparator<Version> order = Comparator.<Version>comparingLong(v -> v.price.effectiveFrom)
                .thenComparing(v -> v.price.windowed()).reversed();
        for (Map.Entry<String, List<Version>> e : p.entrySet()) {
            e.getValue().sort(order);
            prices.put(e.getKey(), e.getValue().toArray(new Version[0]));
        }
        Map<String, List<Discount>> d = new HashMap<>();
        for (Discount discount : discountRecords) {
            d.computeIfAbsent(discount.orgId + '\u0000' + discount.provider, k -> new ArrayList<>()).add(discount);
        }
        for (Map.Entry<String, List<Discount>> e : d.entrySet()) {
            e.getValue().sort(Comparator.<Discount>comparingLong(x -> x.effectiveFrom).reversed());
            discounts.put(e.getKey(), e.getValue().toArray(new Discount[0]));
        }
    }

    static PriceBook empty() {
        return new PriceBook(List.of(), List.of());
    }

    private static String key(String provider, String model, String tier) {
        return provider + '\u0000' + model + '\u0000' + tier;
    }

    /** The price in force for a call (docs/pricing.md), or null: the call is unpriced. */
    private Version find(String provider, String model, String tier, long at) {
        Version[] history = prices.get(key(provider, model, tier));
        if (history != null) {
            for (Version v : history) {
                if (v.price.appliesAt(at)) {
                    return v;
                }
            }
        }
        return "default".equals(tier) ? null : find(provider, model, "default", at);
    }

    /** The org's discount in force for the provider, else its all-provider one, or null. */
    Discount discountFor(String orgId, String provider, long at) {
        Discount d = latest(discounts.get(orgId + '\u0000' + provider), at);
        return d != null ? d : latest(discounts.get(orgId + "\u0000*"), at);
    }

    private static Discount latest(Discount[] history, long at) {
        if (history != null) {
            for (Discount d : history) {
                if (d.effectiveFrom <= at) {
                    return d;
                }
            }
        }
        return null;
    }

    /** Price one call into {@code q} (tokens as the contract has them: cached in input, reasoning in output). */
    void quote(Quote q, String provider, String model, String tier, String orgId, long at,
               long input, long cacheRead, long cacheWrite, long output, long reasoning) {
        Version v = find(provider, model, tier, at);
        Discount d = discountFor(orgId, provider, at);
        q.discountId = d == null ? null : d.id;
        q.discountPct = d == null ? null : d.pct.setScale(4).toPlainString();
        if (v == null) {
            q.status = "unpriced";
            q.priceId = null;
            q.contextTier = false;
            Arrays.fill(q.components, null);
            q.listCost = null;
            q.cost = null;
            return;
        }
        q.status = "priced";
        q.priceId = v.price.id;
        q.contextTier = v.price.isAboveTier(input);
        int side = q.contextTier ? 1 : 0;
        // Token counts per component, in the order of the priced record's columns.
        long[] counts = {input - cacheRead - cacheWrite, cacheRead, cacheWrite, output - reasoning, reasoning};
        int[] rate = {INPUT, CACHE_READ, CACHE_WRITE, OUTPUT, REASONING};
        long[] nanos = v.nanos[side];
        if (nanos != null && costCompact(q, counts, rate, nanos, d)) {
            return;
        }
        BigDecimal list = BigDecimal.ZERO.setScale(15);
        for (int i = 0; i < RATES; i++) {
            BigDecimal c = v.rates[side][rate[i]].multiply(BigDecimal.valueOf(counts[i])).movePointLeft(6).setScale(15);
            q.components[i] = c.toPlainString();
            list = list.add(c);
        }
        q.listCost = list.toPlainString();
        q.cost = discounted(list, d).toPlainString();
    }

    /** The integer path: false (nothing written) when a product does not fit a long. */
    private static boolean costCompact(Quote q, long[] counts, int[] rate, long[] nanos, Discount d) {
        long list = 0;
        long[] femto = new long[RATES];
        try {
            for (int i = 0; i < RATES; i++) {
                femto[i] = Math.multiplyExact(counts[i], nanos[rate[i]]); // tokens x 1e-9 USD/MTok = 1e-15 USD
                list = Math.addExact(list, femto[i]);
            }
        } catch (ArithmeticException overflow) {
            return false;
        }
        for (int i = 0; i < RATES; i++) {
            q.components[i] = plain(femto[i], 15);
        }
        q.listCost = plain(list, 15);
        if (d == null || d.pct.signum() == 0) {
            q.cost = plain(list, 15) + "000000";
            return true;
        }
        // cost = list x (100 - pct) / 100 = list x (1e6 - pct x 1e4) / 1e6: 1e-15 x 1e-6 = 1e-21 USD.
        long factor = 1_000_000L - d.pct.multiply(PCT_UNITS).longValueExact();
        long high = Math.multiplyHigh(list, factor);
        long low = list * factor;
        q.cost = high == 0 && low >= 0 ? plain(low, 21)
                : new BigDecimal(BigInteger.valueOf(list).multiply(BigInteger.valueOf(factor)), 21).toPlainString();
        return true;
    }

    private static BigDecimal discounted(BigDecimal list, Discount d) {
        BigDecimal factor = d == null ? BigDecimal.ONE : BigDecimal.valueOf(100).subtract(d.pct).movePointLeft(2);
        return list.multiply(factor).setScale(21);
    }

    /** A non-negative integer of 10^-scale units as a plain decimal string with exactly scale decimals. */
    static String plain(long units, int scale) {
        String digits = Long.toString(units);
        if (digits.length() <= scale) {
            StringBuilder out = new StringBuilder(scale + 2).append("0.");
            for (int i = digits.length(); i < scale; i++) {
                out.append('0');
            }
            return out.append(digits).toString();
        }
        int point = digits.length() - scale;
        return digits.substring(0, point) + "." + digits.substring(point);
    }

    private static long[] toNanos(BigDecimal[] rates) {
        long[] out = new long[RATES];
        for (int i = 0; i < RATES; i++) {
            try {
                out[i] = rates[i].multiply(NANO).longValueExact(); // the contract allows 9 decimals at most
            } catch (ArithmeticException tooLarge) {
                return null;
            }
        }
        return out;
    }

    private static BigDecimal first(BigDecimal a, BigDecimal b) {
        return a != null ? a : b;
    }
}
