package dev.yieldmeter.flink;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.PartitionInfo;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.TopicPartition;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.errors.WakeupException;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The prices topic, read whole and followed: the current {@link PriceBook} of a running job.
 *
 * <p>Why a consumer inside a function and not a Flink source: pricing needs every version of
 * every price (a call is priced with the one in force at its time, however late it comes), and
 * the catalog is small (a few thousand records). Held in memory by each pricing task, it prices
 * a call in the operator that decodes it: no keyed shuffle, no waiting for a watermark, and no
 * version ever cleaned from state, as Flink's event-time temporal joins do (jobs/README.md). The
 * consumer assigns every partition (no consumer group, no commits) and reads read_committed:
 * {@link #open} returns once it has read to the end offsets present then, so no call is priced
 * before the whole catalog is in; a thread then applies what is published later (a record with
 * the same key replaces the earlier one, a tombstone deletes it) and swaps in a new book.
 *
 * <p>It keeps no Flink state: a restarted job reads the topic again. One feed per topic serves
 * every pricing task in the JVM (shared, counted).
 */
final class CatalogFeed implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(CatalogFeed.class);
    private static final Duration LOAD_TIMEOUT = Duration.ofMinutes(2);
    private static final Map<String, CatalogFeed> SHARED = new HashMap<>();

    private final String name;
    private final String topic;
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final Map<String, PriceBook.Price> prices = new HashMap<>();
    private final Map<String, PriceBook.Discount> discounts = new HashMap<>();
    private volatile PriceBook book = PriceBook.empty();
    private volatile boolean running = true;
    private boolean assigned;
    private long skipped;
    private int users;
    private Thread follower;

    /** The shared feed of this topic, loaded (blocks until the whole catalog is read). */
    static synchronized CatalogFeed open(String bootstrap, String topic) {
        String name = bootstrap + "|" + topic;
        CatalogFeed feed = SHARED.get(name);
        if (feed == null) {
            feed = new CatalogFeed(name, bootstrap, topic);
            feed.load();
            SHARED.put(name, feed);
        }
        feed.users++;
        return feed;
    }

    private CatalogFeed(String name, String bootstrap, String topic) {
        this.name = name;
        this.topic = topic;
        Properties p = new Properties();
        p.setProperty("bootstrap.servers", bootstrap);
        p.setProperty("isolation.level", "read_committed");
        p.setProperty("enable.auto.commit", "false");
        p.setProperty("auto.offset.reset", "earliest");
        p.setProperty("client.id", "yieldmeter-price-catalog");
        consumer = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    PriceBook book() {
        return book;
    }

    private void load() {
        long start = System.nanoTime();
        long deadline = start + LOAD_TIMEOUT.toNanos();
        if (assign()) {
            Map<TopicPartition, Long> end = consumer.endOffsets(consumer.assignment());
            while (!caughtUp(end)) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("reading the price catalog from " + topic + " took longer than "
                            + LOAD_TIMEOUT + "; is the broker healthy?");
                }
                apply(consumer.poll(Duration.ofMillis(200)));
            }
        } else {
            LOG.warn("Topic {} does not exist yet: calls are unpriced until prices are published to it", topic);
        }
        book = new PriceBook(prices.values(), discounts.values());
        LOG.info("Price catalog from {}: {} prices and {} discounts in {} ms ({} records skipped as invalid)", topic,
                prices.size(), discounts.size(), (System.nanoTime() - start) / 1_000_000, skipped);
        follower = new Thread(this::follow, "yieldmeter-price-catalog");
        follower.setDaemon(true);
        follower.start();
    }

    private boolean assign() {
        List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(30));
        if (infos == null || infos.isEmpty()) {
            return false;
        }
        List<TopicPartition> partitions = new ArrayList<>();
        for (PartitionInfo info : infos) {
            partitions.add(new TopicPartition(topic, info.partition()));
        }
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
        assigned = true;
        return true;
    }

    private boolean caughtUp(Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (consumer.position(e.getKey()) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    private void follow() {
        while (running) {
            try {
                if (!assigned) {
                    if (!assign()) {
                        Thread.sleep(5_000);
                        continue;
                    }
                }
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(500));
                if (!records.isEmpty()) {
                    apply(records);
                    book = new PriceBook(prices.values(), discounts.values());
                    LOG.info("Price catalog from {} updated: {} prices, {} discounts", topic, prices.size(), discounts.size());
                }
            } catch (WakeupException | InterruptedException stop) {
                break;
            } catch (RuntimeException e) { // a broker outage: keep the book we have, try again
                LOG.warn("Following the price catalog {} failed, retrying: {}", topic, e.toString());
                try {
                    Thread.sleep(1_000);
                } catch (InterruptedException stop) {
                    break;
                }
            }
        }
        consumer.close(Duration.ofSeconds(5));
    }

    private void apply(ConsumerRecords<byte[], byte[]> records) {
        for (ConsumerRecord<byte[], byte[]> r : records) {
            String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
            if (r.value() == null) { // tombstone: the record with this key is deleted
                prices.remove(key);
                discounts.remove(key);
                continue;
            }
            CatalogParser.Parsed parsed = CatalogParser.parse(key, new String(r.value(), StandardCharsets.UTF_8));
            if (parsed.price != null) {
                prices.put(key != null ? key : parsed.price.id, parsed.price); // as compaction keys it
            } else if (parsed.discount != null) {
                discounts.put(key, parsed.discount);
            } else {
                skipped++; // the warehouse ingest dead-letters it with the reason
            }
        }
    }

    @Override
    public void close() {
        synchronized (CatalogFeed.class) {
            if (--users > 0) {
                return;
            }
            SHARED.remove(name);
        }
        running = false;
        consumer.wakeup();
        try {
            follower.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
