package dev.yieldmeter.flink;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.TableFunction;
import org.apache.flink.types.Row;

/**
 * YM_PRICE(provider, model, service_tier, org_id, occurred_at, input, cache_read, cache_write,
 * output, reasoning, bootstrap, prices_topic): the price of one valid call, from the whole
 * catalog held in memory ({@link CatalogFeed}, {@link PriceBook}). Emits exactly one row:
 * pricing_status 'priced' with the price_id, the discount and the exact costs as decimal
 * strings, or 'unpriced' with null costs (never zero).
 *
 * <p>The connection (bootstrap servers, prices topic) comes as the last two arguments, literals
 * filled in by the job's SQL from its command line.
 */
@FunctionHint(
        output = @DataTypeHint(
                "ROW<pricing_status STRING, price_id STRING, is_context_tier BOOLEAN, discount_id STRING,"
                        + " discount_pct STRING, cost_input_usd STRING, cost_cache_read_usd STRING,"
                        + " cost_cache_write_usd STRING, cost_output_usd STRING, cost_reasoning_usd STRING,"
                        + " list_cost_usd STRING, cost_usd STRING>"))
public class CallPricer extends TableFunction<Row> {
    private static final long serialVersionUID = 1L;

    private transient CatalogFeed feed;
    private transient PriceBook.Quote quote;

    public void eval(String provider, String model, String tier, String orgId,
                     @DataTypeHint("TIMESTAMP_LTZ(3)") Instant occurredAt, Long input, Long cacheRead, Long cacheWrite,
                     Long output, Long reasoning, String bootstrap, String topic) {
        if (feed == null) { // here, not in open(): the connection arrives as arguments
            feed = CatalogFeed.open(bootstrap, topic);
            quote = new PriceBook.Quote();
        }
        feed.book().quote(quote, provider, model, tier, orgId, occurredAt.toEpochMilli(), input, cacheRead, cacheWrite,
                output, reasoning);
        collect(row(quote));
    }

    private static Row row(PriceBook.Quote q) {
        return Row.of(q.status, q.priceId, q.contextTier, q.discountId, q.discountPct, q.components[0],
                q.components[1], q.components[2], q.components[3], q.components[4], q.listCost, q.cost);
    }

    @Override
    public void close() {
        if (feed != null) {
            feed.close();
            feed = null;
        }
    }

    /**
     * Price calls offline with the same code, for the conformance tests and for checking a
     * catalog by hand: {@code java -cp <udf jar>:<flink jars> dev.yieldmeter.flink.CallPricer
     * catalog.tsv < calls.tsv}. catalog.tsv: one prices-topic record per line, key TAB value.
     * calls.tsv: provider, model, service_tier, org_id, occurred_at, input, cache_read,
     * cache_write, output, reasoning (TAB-separated, provider and model as producers send them:
     * normalised here as the decoder does). Prints one line per call: the canonical provider,
     * the catalogue model, then the priced record's fields, TAB-separated ("" for null).
     */
    public static void main(String[] args) throws IOException {
        List<PriceBook.Price> prices = new ArrayList<>();
        List<PriceBook.Discount> discounts = new ArrayList<>();
        for (String line : Files.readAllLines(Paths.get(args[0]), StandardCharsets.UTF_8)) {
            String[] kv = line.split("\t", 2);
            CatalogParser.Parsed parsed = CatalogParser.parse(kv[0], kv[1]);
            if (parsed.reason != null) {
                throw new IllegalArgumentException(kv[0] + ": " + parsed.reason);
            }
            if (parsed.price != null) {
                prices.add(parsed.price);
            } else {
                discounts.add(parsed.discount);
            }
        }
        PriceBook book = new PriceBook(prices, discounts);
        ModelResolver models = ModelResolver.bundled();
        PriceBook.Quote q = new PriceBook.Quote();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(new java.io.BufferedOutputStream(System.out, 1 << 16), false, "UTF-8");
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.split("\t", -1);
            String provider = models.provider(f[0]);
            String model = models.normalize(provider, f[1]);
            long at;
            try {
                at = Wire.parseTime(f[4]);
            } catch (Wire.BadTime e) {
                throw new IllegalArgumentException(f[4] + ": " + e.getMessage());
            }
            book.quote(q, provider, model, f[2], f[3], at, Long.parseLong(f[5]), Long.parseLong(f[6]),
                    Long.parseLong(f[7]), Long.parseLong(f[8]), Long.parseLong(f[9]));
            Row row = row(q);
            StringBuilder b = new StringBuilder(provider).append('\t').append(model);
            for (int i = 0; i < row.getArity(); i++) {
                Object v = row.getField(i);
                b.append('\t').append(v == null ? "" : v);
            }
            out.println(b);
        }
        out.flush();
    }
}
