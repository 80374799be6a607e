"""One UsageEvent contract, two validators: pydantic (yieldmeter/contracts.py, what producers and
the SDK check) and the price job's Java decoder (UsageEventParser, what the pipeline checks).

Both meet the corpus of schemas/corpus/usage_event.jsonl (hand-written cases with the expected
verdict and the fields the reason names) and a few thousand generated records (hypothesis, then
byte-level mutations of valid records; both derandomized, so every run sees the same records).
On every record they must give the same verdict, name the same fields in the same order, and
for a valid one produce the same event. The Java decoder runs offline through its main method
(the jar the job runs, no broker, no Flink cluster), fed the whole corpus in one JVM.

The differences kept on purpose are in schemas/README.md ("The corpus"), each tested here.
"""

from __future__ import annotations

import base64
import json
import random
import re
from unittest import mock
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.java_udf import run_main, udf_classpath
from yieldmeter.contracts import ContractError, explain, parse_outcome, parse_usage, to_json_bytes
from yieldmeter_sdk.contracts import _wire_time  # the contract's own time format (private; one copy, in the SDK)
from yieldmeter.normalize import normalize_model, normalize_provider

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parents[2] / "schemas" / "corpus" / "usage_event.jsonl"
OUTCOMES = CORPUS.with_name("outcome_event.jsonl")
NOW = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
"""The validators' clock for the whole corpus (its times are chosen around it)."""
GENERATED = 1000
MUTATED = 3000
VALID = {"event_id": "e-1", "occurred_at": "2026-11-22T12:00:00Z", "org_id": "acme", "team": "support",
         "user_id": "u-1", "app": "helpdesk", "provider": "openai", "request_model": "gpt-4o",
         "input_tokens": 1500, "output_tokens": 120}  # fmt: skip
EVENT_FIELDS = ("event_id", "org_id", "team", "user_id", "app", "feature", "request_model", "response_model",
                "operation", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
                "reasoning_tokens", "service_tier", "session_id", "trace_id", "latency_ms", "status", "error_type",
                "retry_of", "tool_calls", "attributes")  # fmt: skip


@dataclass
class Case:
    name: str
    value: bytes | None
    valid: bool | None = None  # None: generated, only the two validators' agreement is known
    fields: list[str] = field(default_factory=list)
    expect: dict = field(default_factory=dict)


@dataclass
class Verdict:
    valid: bool
    reason: str | None
    event: dict | None

    @property
    def fields(self) -> list[str]:
        """The field each problem line names (``field: rule``), in order."""
        return [line.split(": ", 1)[0] for line in (self.reason or "").splitlines()]


def load_corpus(path: Path = CORPUS) -> list[Case]:
    cases = []
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # not splitlines(): U+2028 is in a case
        c = json.loads(line)
        if c.get("null"):
            value = None
        elif "base64" in c:
            value = base64.b64decode(c["base64"])
        elif "text" in c:
            value = c["text"].encode("utf-8", "surrogatepass")
        else:
            value = json.dumps(c["record"], ensure_ascii=False).encode()
        cases.append(Case(c["case"], value, c["valid"], c.get("fields", []), c.get("expect", {})))
    return cases


# --- the two validators -----------------------------------------------------------------------


def python_verdict(value: bytes | None) -> Verdict:
    if value is None:  # a Kafka tombstone: nothing to validate (pydantic is never given one)
        return Verdict(False, "(event): empty record (null value)", None)
    try:
        event = parse_usage(value, now=NOW)
    except ContractError as error:
        return Verdict(False, explain(error), None)
    row = event.model_dump(include=set(EVENT_FIELDS))
    provider = normalize_provider(event.provider)
    row |= {"occurred_at": _wire_time(event.occurred_at), "provider_raw": event.provider, "provider": provider,
            "model": normalize_model(provider, event.response_model)}  # fmt: skip
    return Verdict(True, None, row)


@pytest.fixture(scope="module")
def java_verdicts():
    classpath = udf_classpath()

    def run(values: list[bytes | None], clocks: list[datetime] | None = None) -> list[Verdict]:
        """Each record judged on NOW, or on its own clock."""
        lines = ["-" if v is None else base64.b64encode(v).decode() for v in values]
        if clocks:
            lines = [f"{line} {int(clock.timestamp() * 1000)}" for line, clock in zip(lines, clocks)]
        verdicts = []
        for out in run_main(classpath, "UsageEventParser", lines, str(int(NOW.timestamp() * 1000))):
            row = json.loads(out)
            reason = row.pop("reason")
            session_key = row.pop("session_key")
            if reason is None:
                assert json.loads(session_key) == (
                    ["session", row["org_id"], row["session_id"]] if row["session_id"] is not None
                    else ["user", row["org_id"], row["user_id"], row["app"]])  # fmt: skip
            verdicts.append(Verdict(reason is None, reason, row if reason is None else None))
        assert len(verdicts) == len(values)
        return verdicts

    return run


# --- generated records ------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
_names = _text | st.sampled_from(["", " ", "\u00a0", "\u200b", "x" * 128, "x" * 129, "😀" * 128, "😀" * 129])
_times = st.builds(lambda t, form: t.strftime(form), st.datetimes(datetime(1999, 12, 31, 23), datetime(2026, 11, 22, 13, 6),
                                                                   timezones=st.just(UTC)),
                   st.sampled_from(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S+00:00", "%Y-%m-%dt%H:%Mz",
                                    "%Y-%m-%dT%H:%M:%S.%f+0530", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]))  # fmt: skip
_times |= st.integers(946_684_800, 1_795_352_700).map(str)  # Unix seconds as a string
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | _names
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
                     max_leaves=5)  # fmt: skip
_counts = st.integers(0, 10**9) | st.integers(-2, 10**9 + 2) | st.sampled_from([2**63, -(2**63) - 1, 10**30]) | _json
_idents = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}", fullmatch=True) | st.sampled_from(
    ["OpenAI", "gcp.gemini", "vertex_ai", "x_ai", "aws.bedrock", "\u212aimi", "\u0130bm", "", "ö", "open ai", "a" * 65]) | _json
_keys = ["schema_version", "event_id", "occurred_at", "org_id", "team", "user_id", "user.id", "app", "feature",
         "provider", "gen_ai.provider.name", "gen_ai.system", "request_model", "gen_ai.request.model", "response_model",
         "operation", "input_tokens", "gen_ai.usage.input_tokens", "cache_read_tokens", "cache_write_tokens",
         "output_tokens", "reasoning_tokens", "service_tier", "session_id", "trace_id", "latency_ms", "status",
         "error_type", "retry_of", "tool_calls", "attributes", "colour"]  # fmt: skip
_ALIASES = {"user.id": "user_id", "gen_ai.provider.name": "provider", "gen_ai.system": "provider",
            "gen_ai.request.model": "request_model", "gen_ai.usage.input_tokens": "input_tokens"}


def _value_for(key: str) -> st.SearchStrategy:
    """Mostly values of the right kind (often valid), then anything JSON holds."""
    if key == "occurred_at":
        return _times | _json
    if key in ("provider", "gen_ai.provider.name", "gen_ai.system", "operation", "service_tier"):
        return _idents
    if key == "schema_version":
        return st.sampled_from([1, 1.0, True, 2, "1"]) | _json
    if key.endswith("_tokens") or key in ("latency_ms", "tool_calls"):
        return _counts
    if key == "status":
        return st.sampled_from(["ok", "error", "cancelled", "OK", ""]) | _json
    if key == "attributes":
        return st.dictionaries(_text, _text, max_size=4) | st.dictionaries(_names, _names | _json, max_size=4) | _json
    return _names | _json


@st.composite
def _records(draw) -> bytes:
    record = dict(VALID)
    for key in draw(st.lists(st.sampled_from(_keys), max_size=4, unique=True)):
        if key in record and draw(st.integers(0, 4)) == 0:
            del record[key]
            continue
        if key in _ALIASES and draw(st.integers(0, 3)):  # mostly instead of the field's own name
            record.pop(_ALIASES[key], None)
        record[key] = draw(_value_for(key))
    return json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def hypothesis_records(n: int) -> list[bytes]:
    found: list[bytes] = []

    # Derandomized and generate-only: a fixed sequence of records, the same on every run.
    @settings(max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(_records())
    def collect(record: bytes) -> None:
        found.append(record)

    # Hypothesis also draws literals it finds in every module imported so far (its "local
    # constants"), so the records would depend on which tests ran before: generate without them.
    # A private API (hypothesis 6.170, pinned in requirements/app.lock).
    from hypothesis.internal.conjecture import providers

    with mock.patch.object(providers, "_get_local_constants", lambda: providers.Constants()):
        collect()
    return found


_TOKENS = [b'"', b"\\", b"{", b"}", b"[", b",", b":", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\u", b"\\ud800", b"-",
           b"0", b"9" * 20, b".", b"e", b"null", b" ", b"\x00", b"\xef\xbb\xbf", b"Z", b"+01:00"]  # fmt: skip


def mutated_records(seeds: list[bytes], n: int, seed: int = 15) -> list[bytes]:
    """Byte-level mutations (flip, insert, delete, duplicate, truncate, splice a JSON token) of
    valid records, one to three each."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) + 1)
            kind = rng.randrange(6)
            if kind == 0 and at < len(data):
                data[at] ^= 1 << rng.randrange(8)
            elif kind == 1:
                data[at:at] = bytes([rng.randrange(256)])
            elif kind == 2:
                del data[at : at + rng.randint(1, 4)]
            elif kind == 3:
                data[at:at] = data[rng.randrange(len(data) + 1) :][: rng.randint(1, 12)]
            elif kind == 4:
                del data[at:]
            else:
                data[at:at] = rng.choice(_TOKENS)
        out.append(bytes(data))
    return out


@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    return load_corpus()


@pytest.fixture(scope="module")
def generated(corpus) -> list[Case]:
    records = hypothesis_records(GENERATED)
    seeds = [c.value for c in corpus if c.valid]
    seeds += [r for r in records if python_verdict(r).valid]
    mutants = mutated_records(seeds, MUTATED)
    return [Case(f"hypothesis #{i}", r) for i, r in enumerate(records)] + [
        Case(f"mutation #{i}", r) for i, r in enumerate(mutants)
    ]


AHEAD = json.dumps(VALID | {"occurred_at": "2026-11-22T13:06:00Z"}).encode()
LATER = NOW + timedelta(minutes=10)


@pytest.fixture(scope="module")
def verdicts(corpus, generated, java_verdicts) -> dict[str, tuple[Verdict, Verdict]]:
    """(python, java) per case name: every record through both validators once (one JVM), and
    the clock cases of test_a_future_time_is_judged_on_each_validators_own_clock."""
    cases = corpus + generated
    java = java_verdicts([c.value for c in cases] + [AHEAD, AHEAD], [NOW] * len(cases) + [NOW, LATER])
    found = {c.name: (python_verdict(c.value), j) for c, j in zip(cases, java)}
    found["ahead, on NOW"] = (python_verdict(AHEAD), java[-2])
    found["ahead, 10 minutes later"] = (python_verdict(AHEAD), java[-1])
    return found


# --- the tests --------------------------------------------------------------------------------


def _show(case: Case, python: Verdict, java: Verdict) -> str:
    return f"{case.name}: {case.value!r:.300}\n  python: {python.reason or python.event}\n  java:   {java.reason or java.event}"


def _disagreements(cases: list[Case], verdicts) -> list[str]:
    problems = []
    for case in cases:
        p, j = verdicts[case.name]
        if (p.valid, p.fields, p.event) != (j.valid, j.fields, j.event):
            problems.append(_show(case, p, j))
    return problems


def test_the_corpus_covers_every_kind_of_record(corpus):
    names = {c.name for c in corpus}
    assert len(corpus) == len(names), "case names are unique"
    assert sum(c.valid for c in corpus) >= 50 and sum(not c.valid for c in corpus) >= 150
    for required in VALID:
        assert f"{required} missing" in names
    kinds = {c.name.split(":")[0] for c in corpus}
    assert {"not an object", "not UTF-8"} <= kinds


def test_both_validators_give_the_expected_verdict_on_every_case(corpus, verdicts):
    wrong = []
    for case in corpus:
        p, j = verdicts[case.name]
        for who, verdict in (("python", p), ("java", j)):
            if verdict.valid != case.valid or (not verdict.valid and verdict.fields != case.fields):
                wrong.append(f"{case.name}: {who} said {verdict.reason or 'valid'!r}, expected {case.fields or 'valid'}")
            if verdict.valid and case.valid:
                differs = {k: (verdict.event[k], v) for k, v in case.expect.items() if verdict.event[k] != v}
                if differs:
                    wrong.append(f"{case.name}: {who} read {differs} (got, expected)")
    assert not wrong, "\n".join(wrong)
    disagree = _disagreements(corpus, verdicts)
    assert not disagree, f"{len(disagree)} cases where the validators differ:\n" + "\n".join(disagree[:20])


def test_both_validators_agree_on_generated_records(generated, verdicts):
    assert len(generated) >= GENERATED + MUTATED - 100  # hypothesis may find fewer distinct records
    valid = sum(verdicts[c.name][0].valid for c in generated)
    assert valid > 200 and len(generated) - valid > 3000, f"{valid} valid: the generators make both"
    disagree = _disagreements(generated, verdicts)
    assert not disagree, f"{len(disagree)} of {len(generated)} records where the validators differ:\n" + "\n".join(disagree[:20])


def test_the_reasons_are_worded_alike(corpus, generated, verdicts):
    """Same field, and the same rule in the same words, except where the two JSON and time parsers
    explain a syntax error in their own words (the line still names the field: a documented
    difference) and for a null value, which only the decoder is given."""
    own_words = re.compile(r"^\(event\): (Invalid JSON|not valid JSON)|^occurred_at: Input should be a valid datetime")
    worded = []
    for case in corpus + generated:
        p, j = verdicts[case.name]
        if not p.valid:
            pairs = zip(p.reason.splitlines(), j.reason.splitlines())
            worded += [f"{case.name}:\n  {a}\n  {b}" for a, b in pairs if a != b and not own_words.match(a)]
    assert not worded, f"{len(worded)} lines:\n" + "\n".join(worded[:30])


def test_a_future_time_is_judged_on_each_validators_own_clock(verdicts):
    """The same 5-minute rule on two clocks (a documented difference): a call 6 minutes ahead of
    one clock is refused by a validator reading that clock, accepted on a clock 10 minutes later."""
    python, refused = verdicts["ahead, on NOW"]
    accepted = verdicts["ahead, 10 minutes later"][1]
    assert python.fields == ["occurred_at"] and refused.reason == python.reason
    assert parse_usage(AHEAD, now=LATER).occurred_at == datetime(2026, 11, 22, 13, 6, tzinfo=UTC)
    assert accepted.valid and accepted.event["occurred_at"] == "2026-11-22T13:06:00.000Z"


def test_outcomes_get_the_expected_verdict():
    """OutcomeEvents have one validator, the warehouse ingest's (pydantic): their corpus is its spec."""
    wrong = []
    for case in load_corpus(OUTCOMES):
        try:
            event = json.loads(to_json_bytes(parse_outcome(case.value, now=NOW)))
        except ContractError as error:
            fields = [line.split(": ", 1)[0] for line in explain(error).splitlines()]
            if case.valid or fields != case.fields:
                wrong.append(f"{case.name}: {explain(error)!r}, expected {case.fields or 'valid'}")
            continue
        if not case.valid:
            wrong.append(f"{case.name}: valid, expected {case.fields}")
        wrong += [f"{case.name}: read {k}={event[k]!r}, expected {v!r}" for k, v in case.expect.items() if event[k] != v]
    assert not wrong, "\n".join(wrong)
