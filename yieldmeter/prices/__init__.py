"""The price catalog: genai-prices seed + user overrides + per-organisation discounts.

Everything the price job prices with travels on the compacted prices topic
(``Settings.topic_prices``) as JSON, one message per record:

==================  ===========================================================  =================
record              Kafka key                                                     header ``kind``
==================  ===========================================================  =================
:class:`PriceRecord` ``PriceRecord.price_id``: ``<provider>/<model>/<service_tier>``  ``price``
                     (+ ``/<HH:MM:SS>-<HH:MM:SS>`` for a daily window) ``@<effective_from>``
:class:`OrgDiscount` ``discount/<org_id>/<provider or *>@<effective_from>``        ``org_discount``
                     (= ``OrgDiscount.discount_id``)
==================  ===========================================================  =================

Why the key carries ``effective_from``: compaction keeps only the latest message per key,
and pricing needs the whole price HISTORY (a price change must not rewrite past calls).
Keyed by ``price_id`` every (price, effective_from) survives compaction, and loading the
same catalog twice still collapses to one message per key. Deleting a price is a tombstone
(null value) on its ``price_id``. A discount's key starts with ``discount/``, which no price
key can (a provider id never is ``discount``; :func:`build_catalog` refuses it).

Modules: :mod:`.seed` (genai-prices -> PriceRecords), :mod:`.files` (user YAML/CSV files),
:mod:`.catalog` (the catalog and which price or discount applies to a call), :mod:`.kafka`
(publishing to and reading the topic). docs/pricing.md states the pricing rules.
"""

from yieldmeter.contracts import DISCOUNT_PREFIX, OrgDiscount
from yieldmeter.prices.catalog import Catalog, build_catalog, discount_for, in_force, price_for
from yieldmeter.prices.files import PriceFileError, UserRecords, read_price_file
from yieldmeter.prices.kafka import TopicContents, ensure_prices_topic, publish, read_topic
from yieldmeter.prices.seed import SERVICE_TIERS, SeedReport, seed_prices

__all__ = [
    "DISCOUNT_PREFIX", "SERVICE_TIERS", "Catalog", "OrgDiscount", "PriceFileError", "SeedReport",
    "TopicContents", "UserRecords", "build_catalog", "discount_for", "ensure_prices_topic", "in_force", "price_for", "publish",
    "read_price_file", "read_topic", "seed_prices",
]
