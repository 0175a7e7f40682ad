"""Fraud scoring (`shared.domain.fraud`): rules as data, one pass, a combined score.

Signals are built by hand (the receive time is fixed, no clock is read); user agents go
through the real parser, as the process stage does. The only file read is the built-in rules.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.domain.distinct_users import DistinctUsersTracker
from shared.domain.enrichment import parse_user_agent
from shared.domain.envelope import Envelope
from shared.domain.events import Event
from shared.domain.fraud import DISTINCT_USERS_HEADROOM, RULE_KINDS, FraudRuleSet, FraudSignals
from shared.domain.fraud_rules import FraudRulesError, default_rules, rules_from_bytes, rules_from_path
from shared.domain.stored_event import FraudReason, FraudResult

RECEIVED_AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
T0 = 1_000_000.0
"""A whole second, far from zero, like a Unix time (the tracker's clock)."""

RULES = default_rules()

CLEAN = FraudSignals(
    ip_requests_last_minute=1,
    agent=None,
    user_agent=None,
    event_timestamp=RECEIVED_AT,
    received_at=RECEIVED_AT,
    distinct_users_from_ip=1,
)
"""An event no default rule fires for."""

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

CRAWLERS = {
    "googlebot": GOOGLEBOT,
    "googlebot-smartphone": (
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.199 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ),
    "bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "ahrefsbot": "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "semrushbot": "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "yandexbot": "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "baiduspider": "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "gptbot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "facebook": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "scrapy": "Scrapy/2.11.0 (+https://scrapy.org)",
}
HEADLESS_BROWSERS = {
    "headless-chrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 "
        "Safari/537.36"
    ),
    "phantomjs": (
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1"
    ),
}
BROWSERS = {
    "chrome-windows": CHROME,
    "firefox-mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0",
    "safari-iphone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.6 Mobile/15E148 Safari/604.1"
    ),
    "edge": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36 Edg/131.0.0.0"
    ),
    "chrome-android": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.135 "
        "Mobile Safari/537.36"
    ),
}
HTTP_CLIENTS = {
    "curl": "curl/8.5.0",
    "python-httpx": "python-httpx/0.28.1",
    "python-requests": "python-requests/2.32.3",
    "okhttp": "okhttp/4.12.0",
    "go-http-client": "Go-http-client/2.0",
    "axios": "axios/1.7.9",
    "node-fetch": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "python-urllib": "Python-urllib/3.11",
    "java": "Java/17.0.2",
    "aiohttp": "Python/3.11 aiohttp/3.9.1",
}


def signals(**overrides: Any) -> FraudSignals:
    """`CLEAN` with some signals changed."""
    return dataclasses.replace(CLEAN, **overrides)


def with_user_agent(user_agent: str) -> FraudSignals:
    """The signals of an event sent with `user_agent`, parsed as the process stage parses it."""
    return signals(user_agent=user_agent, agent=parse_user_agent(user_agent))


def fired(result: FraudResult) -> dict[str, FraudReason]:
    """The reasons of a result, by rule id."""
    return {reason.rule: reason for reason in result.reasons}


def default_rules_data() -> dict[str, Any]:
    """The built-in rules file as plain data, to change and load again."""
    data = orjson.loads(resources.files("shared.domain").joinpath("fraud_rules.json").read_bytes())
    assert isinstance(data, dict)
    return data


def rule_data(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    [rule] = [rule for rule in data["rules"] if rule["id"] == rule_id]
    assert isinstance(rule, dict)
    return rule


def load(data: Any) -> FraudRuleSet:
    return rules_from_bytes(orjson.dumps(data), source="test-rules.json")


def load_error(data: Any) -> str:
    with pytest.raises(FraudRulesError) as raised:
        load(data)
    return str(raised.value)


def only(rule: dict[str, Any], threshold: float = 0.6) -> FraudRuleSet:
    """A rule set of one rule."""
    return load({"suspiciousThreshold": threshold, "rules": [rule]})


# --- The built-in rules file ----------------------------------------------------------------------


def test_the_default_rules_load_and_cover_every_rule_kind() -> None:
    assert {rule.kind for rule in RULES.rules} == set(RULE_KINDS)
    assert [rule.id for rule in RULES.rules] == [
        "ip-velocity",
        "bot-user-agent",
        "timestamp-skew",
        "distinct-users-per-ip",
    ]
    assert 0 < RULES.suspicious_threshold <= 1


@pytest.mark.parametrize(
    ("rule_id", "alone_suspicious"),
    [("ip-velocity", True), ("bot-user-agent", True), ("distinct-users-per-ip", True), ("timestamp-skew", False)],
)
def test_which_default_rules_make_an_event_suspicious_on_their_own(rule_id: str, alone_suspicious: bool) -> None:
    [rule] = [rule for rule in RULES.rules if rule.id == rule_id]

    assert (rule.weight >= RULES.suspicious_threshold) is alone_suspicious
    assert rule.description, "every rule says what it is for"


def test_a_clean_event_fires_nothing_and_scores_zero() -> None:
    result = RULES.evaluate(CLEAN)

    assert result == FraudResult(score=0.0, suspicious=False, reasons=())


def test_the_rules_file_on_disk_loads_like_the_packaged_resource() -> None:
    import shared.domain

    path = Path(shared.domain.__file__).parent / "fraud_rules.json"

    assert rules_from_path(path) == RULES
    assert rules_from_path(str(path)) == RULES


# --- ip_velocity: the 10th request in a minute is clean, the 11th fires ------------------------------


@pytest.mark.parametrize(("requests", "fires"), [(1, False), (9, False), (10, False), (11, True), (12, True)])
def test_velocity_fires_only_past_ten_requests_a_minute(requests: int, fires: bool) -> None:
    # GIVEN the IP's request count in the last minute, this request included
    result = RULES.evaluate(signals(ip_requests_last_minute=requests))

    # THEN the velocity rule fires from the 11th request on, and alone makes the event suspicious
    assert ("ip-velocity" in fired(result)) is fires
    assert result.suspicious is fires


def test_the_velocity_reason_says_the_observed_count_and_the_limit() -> None:
    reason = fired(RULES.evaluate(signals(ip_requests_last_minute=14)))["ip-velocity"]

    assert reason.description == "14 requests in the last minute from this client (more than 10)"
    assert reason.code == "VELOCITY_IP_MINUTE"
    assert reason.weight == 0.8


def test_the_velocity_limit_is_a_parameter_of_the_rule() -> None:
    data = default_rules_data()
    rule_data(data, "ip-velocity")["parameters"]["maxRequestsPerMinute"] = 3
    rules = load(data)

    assert "ip-velocity" not in fired(rules.evaluate(signals(ip_requests_last_minute=3)))
    assert "ip-velocity" in fired(rules.evaluate(signals(ip_requests_last_minute=4)))


# --- bot_user_agent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("user_agent", CRAWLERS.values(), ids=CRAWLERS.keys())
def test_known_crawlers_fire_the_bot_rule_and_are_suspicious_alone(user_agent: str) -> None:
    result = RULES.evaluate(with_user_agent(user_agent))

    assert "bot-user-agent" in fired(result)
    assert result.suspicious


def test_the_bot_reason_names_the_crawler() -> None:
    reason = fired(RULES.evaluate(with_user_agent(GOOGLEBOT)))["bot-user-agent"]

    assert reason.description == "user agent is a known bot or crawler (Googlebot)"
    assert reason.code == "BOT_USER_AGENT"


@pytest.mark.parametrize("user_agent", HEADLESS_BROWSERS.values(), ids=HEADLESS_BROWSERS.keys())
def test_headless_browsers_fire_the_bot_rule_by_a_listed_substring(user_agent: str) -> None:
    # GIVEN a headless browser, which the parser does not call a bot
    parsed = parse_user_agent(user_agent)
    assert parsed is not None
    assert not parsed.is_bot

    # WHEN it is scored, THEN a listed substring of the default rule catches it
    reason = fired(RULES.evaluate(with_user_agent(user_agent)))["bot-user-agent"]
    assert "a listed bot marker" in reason.description


@pytest.mark.parametrize("user_agent", BROWSERS.values(), ids=BROWSERS.keys())
def test_real_browsers_do_not_fire_the_bot_rule(user_agent: str) -> None:
    assert RULES.evaluate(with_user_agent(user_agent)).reasons == ()


@pytest.mark.parametrize("user_agent", HTTP_CLIENTS.values(), ids=HTTP_CLIENTS.keys())
def test_http_client_libraries_are_not_bots(user_agent: str) -> None:
    # Producers are apps, and apps are built on these libraries.
    assert RULES.evaluate(with_user_agent(user_agent)).reasons == ()


def test_an_event_without_a_user_agent_does_not_fire_the_bot_rule() -> None:
    assert "bot-user-agent" not in fired(RULES.evaluate(signals(user_agent=None, agent=None)))


def test_extra_bot_substrings_match_case_insensitively() -> None:
    rules = only(
        {
            "id": "scrapers",
            "description": "Our own list.",
            "kind": "bot_user_agent",
            "parameters": {"userAgentSubstrings": ["PriceWatcher"]},
            "weight": 0.9,
            "reasonCode": "SCRAPER",
        }
    )

    reason = fired(rules.evaluate(with_user_agent(f"{CHROME} pricewatcher/2.1")))["scrapers"]

    assert reason.description == "user agent contains 'PriceWatcher', a listed bot marker"
    assert rules.evaluate(with_user_agent("curl/8.5.0")).reasons == ()


# --- timestamp_skew: 5 minutes ahead, 24 hours old --------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "fires"),
    [
        (timedelta(0), False),
        (timedelta(minutes=5), False),
        (timedelta(minutes=5) + MICROSECOND, True),
        (timedelta(hours=1), True),
        (-timedelta(hours=24), False),
        (-timedelta(hours=24) - MICROSECOND, True),
        (-timedelta(days=7), True),
    ],
    ids=["now", "ahead-at-limit", "ahead-over", "hour-ahead", "old-at-limit", "old-over", "week-old"],
)
def test_skew_fires_for_timestamps_too_far_ahead_or_too_old(offset: timedelta, fires: bool) -> None:
    result = RULES.evaluate(signals(event_timestamp=RECEIVED_AT + offset))

    assert ("timestamp-skew" in fired(result)) is fires


def test_the_skew_reason_says_how_far_ahead() -> None:
    result = RULES.evaluate(signals(event_timestamp=RECEIVED_AT + timedelta(minutes=7, seconds=30)))

    assert fired(result)["timestamp-skew"].description == (
        "event timestamp is 7 min 30 s ahead of the receive time (more than 5 min)"
    )


def test_the_skew_reason_says_how_old() -> None:
    result = RULES.evaluate(signals(event_timestamp=RECEIVED_AT - timedelta(hours=26)))

    assert fired(result)["timestamp-skew"].description == (
        "event timestamp is 26 h older than the receive time (more than 24 h)"
    )


def test_skew_alone_is_not_suspicious_but_adds_to_other_signals() -> None:
    skewed = signals(event_timestamp=RECEIVED_AT - timedelta(days=2))

    alone = RULES.evaluate(skewed)
    with_bot = RULES.evaluate(dataclasses.replace(skewed, user_agent=GOOGLEBOT, agent=parse_user_agent(GOOGLEBOT)))

    assert (alone.score, alone.suspicious) == (0.3, False)
    assert with_bot.score == 0.79  # 1 - (1 - 0.7)(1 - 0.3)
    assert with_bot.suspicious


# --- distinct_users_per_ip --------------------------------------------------------------------------------


@pytest.mark.parametrize(("users", "fires"), [(1, False), (10, False), (11, True), (12, True)])
def test_distinct_users_fire_only_past_the_limit(users: int, fires: bool) -> None:
    result = RULES.evaluate(signals(distinct_users_from_ip=users))

    assert ("distinct-users-per-ip" in fired(result)) is fires
    assert result.suspicious is fires


def test_the_distinct_users_reason_says_the_count_and_the_window() -> None:
    reason = fired(RULES.evaluate(signals(distinct_users_from_ip=11)))["distinct-users-per-ip"]

    assert reason.description == "11 distinct users in the last 10 min from this client (more than 10)"


def test_a_saturated_distinct_users_count_is_reported_as_a_lower_bound() -> None:
    # GIVEN a count at the tracker's cap, past which it stops counting
    reason = fired(RULES.evaluate(signals(distinct_users_from_ip=10 + DISTINCT_USERS_HEADROOM)))

    assert reason["distinct-users-per-ip"].description.startswith(f"{10 + DISTINCT_USERS_HEADROOM} or more ")


def test_the_tracker_from_the_rules_counts_k_users_clean_and_k_plus_one_suspicious() -> None:
    # GIVEN the default rules' tracker, and one client sending as ten users, then an eleventh
    tracker = RULES.distinct_users_tracker()
    assert tracker is not None
    counts = [tracker.observe("client-a", f"user-{n}", T0 + n) for n in range(11)]

    # THEN the tenth event is clean and the eleventh is suspicious
    assert counts[9] == 10
    assert not RULES.evaluate(signals(distinct_users_from_ip=counts[9])).suspicious
    assert RULES.evaluate(signals(distinct_users_from_ip=counts[10])).suspicious


def test_a_rule_set_without_a_distinct_users_rule_needs_no_tracker() -> None:
    data = default_rules_data()
    data["rules"] = [rule for rule in data["rules"] if rule["kind"] != "distinct_users_per_ip"]

    assert load(data).distinct_users_tracker() is None


# --- DistinctUsersTracker ------------------------------------------------------------------------------------


@pytest.fixture
def make_tracker() -> Callable[..., DistinctUsersTracker]:
    def make(
        window_seconds: float = 600.0, max_users_per_client: int = 15, max_clients: int = 100
    ) -> DistinctUsersTracker:
        return DistinctUsersTracker(window_seconds, max_users_per_client, max_clients)

    return make


def test_the_count_includes_this_event_and_a_repeated_user_counts_once(
    make_tracker: Callable[..., DistinctUsersTracker],
) -> None:
    tracker = make_tracker()

    assert tracker.observe("client-a", "alice", T0) == 1
    assert tracker.observe("client-a", "alice", T0 + 1) == 1
    assert tracker.observe("client-a", "bob", T0 + 2) == 2


def test_clients_are_counted_separately(make_tracker: Callable[..., DistinctUsersTracker]) -> None:
    tracker = make_tracker()
    tracker.observe("client-a", "alice", T0)

    assert tracker.observe("client-b", "bob", T0) == 1


def test_events_without_a_user_id_do_not_count(make_tracker: Callable[..., DistinctUsersTracker]) -> None:
    tracker = make_tracker()

    # GIVEN a client whose first event has no user id: nothing is remembered for it
    assert tracker.observe("client-a", None, T0) == 0
    assert len(tracker) == 0

    # WHEN users follow, THEN events without one still report the users seen, adding none
    tracker.observe("client-a", "alice", T0 + 1)
    assert tracker.observe("client-a", None, T0 + 2) == 1


def test_a_user_leaves_the_count_when_the_window_has_passed(make_tracker: Callable[..., DistinctUsersTracker]) -> None:
    tracker = make_tracker(window_seconds=600.0)
    tracker.observe("client-a", "alice", T0)

    assert tracker.observe("client-a", "bob", T0 + 599.5) == 2  # alice is still inside the window
    assert tracker.observe("client-a", "carol", T0 + 600) == 2  # alice left it: bob and carol


def test_seeing_a_user_again_keeps_it_in_the_window(make_tracker: Callable[..., DistinctUsersTracker]) -> None:
    tracker = make_tracker(window_seconds=600.0)
    tracker.observe("client-a", "alice", T0)
    tracker.observe("client-a", "bob", T0 + 300)
    tracker.observe("client-a", "alice", T0 + 500)

    # bob expires at T0 + 900, alice (seen again at T0 + 500) only at T0 + 1100
    assert tracker.observe("client-a", None, T0 + 900) == 1
    assert tracker.observe("client-a", None, T0 + 1100) == 0


def test_a_client_keeps_at_most_its_cap_of_users_and_stays_saturated_while_new_ones_arrive(
    make_tracker: Callable[..., DistinctUsersTracker],
) -> None:
    tracker = make_tracker(window_seconds=600.0, max_users_per_client=3)

    # GIVEN 100 distinct users in a minute: the count stops at the cap
    counts = [tracker.observe("client-a", f"user-{n}", T0 + n * 0.5) for n in range(100)]
    assert max(counts) == 3
    assert counts[-1] == 3

    # WHEN the earliest users leave the window but new ones keep coming, THEN it stays at the cap
    assert tracker.observe("client-a", "user-new", T0 + 640) == 3


def test_the_least_recently_seen_client_is_forgotten_first(make_tracker: Callable[..., DistinctUsersTracker]) -> None:
    tracker = make_tracker(max_clients=2)
    tracker.observe("client-a", "alice", T0)
    tracker.observe("client-b", "bob", T0 + 1)
    tracker.observe("client-a", "anna", T0 + 2)  # a is now the most recently seen

    # WHEN a third client arrives, THEN b (least recently seen) is forgotten, a is kept
    tracker.observe("client-c", "carol", T0 + 3)
    assert len(tracker) == 2
    assert tracker.observe("client-a", None, T0 + 4) == 2
    assert tracker.observe("client-b", "bob", T0 + 5) == 1  # starts over


def test_memory_stays_bounded_under_many_clients_and_users(make_tracker: Callable[..., DistinctUsersTracker]) -> None:
    tracker = make_tracker(max_users_per_client=4, max_clients=50)

    for client, user in itertools.product(range(500), range(20)):
        tracker.observe(f"client-{client}", f"user-{user}", T0 + client)

    assert len(tracker) == 50
    assert all(tracker.observe(f"client-{client}", None, T0 + 500) == 4 for client in range(450, 500))


@pytest.mark.parametrize(
    ("window_seconds", "max_users_per_client", "max_clients"), [(0, 5, 10), (60, 0, 10), (60, 5, 0)]
)
def test_a_tracker_needs_a_positive_window_and_bounds(
    window_seconds: float, max_users_per_client: int, max_clients: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        DistinctUsersTracker(window_seconds, max_users_per_client, max_clients)


def test_the_rules_size_the_tracker() -> None:
    tracker = RULES.distinct_users_tracker(max_clients=123)

    assert tracker is not None
    assert (tracker.window_seconds, tracker.max_users_per_client, tracker.max_clients) == (
        600.0,
        10 + DISTINCT_USERS_HEADROOM,
        123,
    )


# --- Combining the rules: one pass, noisy-or, threshold --------------------------------------------------

TRIGGERS: dict[str, dict[str, Any]] = {
    "ip-velocity": {"ip_requests_last_minute": 11},
    "bot-user-agent": {"user_agent": GOOGLEBOT, "agent": parse_user_agent(GOOGLEBOT)},
    "timestamp-skew": {"event_timestamp": RECEIVED_AT + timedelta(hours=1)},
    "distinct-users-per-ip": {"distinct_users_from_ip": 11},
}
"""For each default rule, the signals that fire it (and only it)."""


def firing(rule_ids: tuple[str, ...]) -> FraudSignals:
    overrides: dict[str, Any] = {}
    for rule_id in rule_ids:
        overrides.update(TRIGGERS[rule_id])
    return signals(**overrides)


def test_every_rule_is_evaluated_in_one_pass_with_one_reason_each_in_file_order() -> None:
    result = RULES.evaluate(firing(tuple(TRIGGERS)))

    assert [reason.rule for reason in result.reasons] == [rule.id for rule in RULES.rules]
    assert result.score == 0.9874  # 1 - 0.2 * 0.3 * 0.7 * 0.3
    assert result.suspicious


def test_two_rules_combine_as_a_noisy_or() -> None:
    result = RULES.evaluate(firing(("ip-velocity", "bot-user-agent")))

    assert result.score == 0.94  # 1 - (1 - 0.8)(1 - 0.7)


def test_another_fired_rule_never_lowers_the_score_and_it_stays_within_0_and_1() -> None:
    # GIVEN every subset of the default rules firing, and one more rule added to it
    for size in range(len(TRIGGERS)):
        for subset in itertools.combinations(TRIGGERS, size):
            base = RULES.evaluate(firing(subset))
            for extra in set(TRIGGERS) - set(subset):
                more = RULES.evaluate(firing((*subset, extra)))

                # THEN the score does not go down, and every score is a probability
                assert more.score >= base.score, (subset, extra)
                assert 0 <= base.score <= more.score <= 1
                assert len(more.reasons) == len(base.reasons) + 1


def velocity_rule(weight: float) -> dict[str, Any]:
    return {
        "id": "velocity",
        "description": "Too many requests.",
        "kind": "ip_velocity",
        "parameters": {"maxRequestsPerMinute": 10},
        "weight": weight,
        "reasonCode": "VELOCITY",
    }


@pytest.mark.parametrize(("weight", "suspicious"), [(0.6, True), (0.599999, False), (0.7, True)])
def test_an_event_is_suspicious_when_its_score_reaches_the_threshold(weight: float, suspicious: bool) -> None:
    result = only(velocity_rule(weight), threshold=0.6).evaluate(signals(ip_requests_last_minute=11))

    assert result.score == weight
    assert result.suspicious is suspicious


def test_a_rule_of_weight_zero_is_reported_but_does_not_score() -> None:
    # A weight of 0 lets a new rule run in the open before it counts.
    result = only(velocity_rule(0.0)).evaluate(signals(ip_requests_last_minute=11))

    assert (result.score, result.suspicious, len(result.reasons)) == (0.0, False, 1)


def test_a_rule_of_weight_one_makes_the_score_one() -> None:
    result = only(velocity_rule(1.0), threshold=1.0).evaluate(signals(ip_requests_last_minute=11))

    assert (result.score, result.suspicious) == (1.0, True)


def test_an_empty_rule_set_scores_everything_zero() -> None:
    rules = load({"suspiciousThreshold": 0.5, "rules": []})

    assert rules.evaluate(firing(tuple(TRIGGERS))) == FraudResult(score=0.0, suspicious=False, reasons=())


# --- A bad rules file fails with a message naming the rule and the field ------------------------------------


def test_an_unknown_kind_is_an_error_naming_the_rule_and_the_known_kinds() -> None:
    data = default_rules_data()
    rule_data(data, "bot-user-agent")["kind"] = "crystal_ball"

    message = load_error(data)

    assert "test-rules.json" in message
    assert "rule 'bot-user-agent' (rules[1]) kind" in message
    assert "'crystal_ball'" in message
    assert all(kind in message for kind in RULE_KINDS)


def test_a_rule_without_a_kind_is_an_error_listing_the_kinds() -> None:
    data = default_rules_data()
    del rule_data(data, "bot-user-agent")["kind"]

    assert "rule 'bot-user-agent' (rules[1]) kind: Field required; one of ip_velocity" in load_error(data)


@pytest.mark.parametrize("weight", [1.5, -0.1])
def test_a_weight_outside_0_and_1_is_an_error_naming_the_rule(weight: float) -> None:
    data = default_rules_data()
    rule_data(data, "ip-velocity")["weight"] = weight

    assert "rule 'ip-velocity' (rules[0]) weight: Input should be" in load_error(data)


@pytest.mark.parametrize("field", ["id", "description", "weight", "reasonCode", "parameters"])
def test_a_missing_rule_field_is_an_error_naming_it(field: str) -> None:
    data = default_rules_data()
    del rule_data(data, "timestamp-skew")[field]

    message = load_error(data)

    # A rule without an id is named by its place alone.
    where = "rules[2]" if field == "id" else "rule 'timestamp-skew' (rules[2])"
    assert f"{where} {field}: Field required" in message


def test_a_misspelt_parameter_is_an_error_not_ignored() -> None:
    data = default_rules_data()
    rule_data(data, "timestamp-skew")["parameters"] = {"maxAheadSecs": 60}

    assert "rule 'timestamp-skew' (rules[2]) parameters.maxAheadSecs: Extra inputs are not permitted" in load_error(
        data
    )


def test_a_parameter_of_the_wrong_type_is_an_error_naming_it() -> None:
    data = default_rules_data()
    rule_data(data, "ip-velocity")["parameters"]["maxRequestsPerMinute"] = "ten"

    assert "rule 'ip-velocity' (rules[0]) parameters.maxRequestsPerMinute:" in load_error(data)


def test_a_missing_threshold_is_an_error() -> None:
    data = default_rules_data()
    del data["suspiciousThreshold"]

    assert "suspiciousThreshold: Field required" in load_error(data)


@pytest.mark.parametrize("threshold", [0, 1.01])
def test_a_threshold_outside_0_exclusive_and_1_is_an_error(threshold: float) -> None:
    data = default_rules_data()
    data["suspiciousThreshold"] = threshold

    assert "suspiciousThreshold: Input should be" in load_error(data)


def test_repeated_rule_ids_are_an_error() -> None:
    data = default_rules_data()
    data["rules"].append(copy.deepcopy(rule_data(data, "ip-velocity")))

    assert "rule ids must be unique; repeated: ip-velocity" in load_error(data)


def test_two_distinct_users_rules_are_an_error() -> None:
    data = default_rules_data()
    second = copy.deepcopy(rule_data(data, "distinct-users-per-ip"))
    second["id"] = "distinct-users-per-ip-hourly"
    data["rules"].append(second)

    assert "at most one rule may be of kind distinct_users_per_ip" in load_error(data)


def test_a_rules_file_that_is_not_json_is_an_error() -> None:
    with pytest.raises(FraudRulesError, match=r"fraud rules in rules\.json are not valid JSON"):
        rules_from_bytes(b'{"suspiciousThreshold": 0.6,', source="rules.json")


def test_a_missing_rules_file_is_an_error_naming_it() -> None:
    with pytest.raises(FraudRulesError, match=r"cannot read fraud rules file '/nonexistent/rules\.json'"):
        rules_from_path("/nonexistent/rules.json")


# --- Signals from a queued event ----------------------------------------------------------------------------


def test_signals_come_from_the_envelope_and_an_event_without_a_timestamp_happened_on_receipt() -> None:
    envelope = Envelope(
        event=Event.model_validate({"eventType": "page_view", "tenantId": "acme"}),
        received_at=RECEIVED_AT,
        client_network="203.0.113.0/24",
        client_key="0123456789abcdef0123456789abcdef",
        user_agent=GOOGLEBOT,
        ip_requests_last_minute=12,
    )
    agent = parse_user_agent(GOOGLEBOT)

    result = FraudSignals.from_envelope(envelope, agent=agent, distinct_users_from_ip=3)

    assert result == FraudSignals(
        ip_requests_last_minute=12,
        agent=agent,
        user_agent=GOOGLEBOT,
        event_timestamp=RECEIVED_AT,
        received_at=RECEIVED_AT,
        distinct_users_from_ip=3,
    )
