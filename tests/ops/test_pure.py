"""Pure logic: filters to SQL fragments, plan hashes, redaction, intent checks (no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from powertools_core import ops
from powertools_core.errors import InvalidInput
from powertools_core.ops import filters
from powertools_core.ops.actions import Action
from powertools_core.ops.errors import ReasonTooShort, check_intent
from powertools_core.ops.preview import GroupRow, plan_hash, summarise, token_matches, token_of
from powertools_core.redaction import REDACTED_TEXT, DenyList, normalise_key, redact
from powertools_core.workers import Redacted, Worker


class ChargeCard(Worker):
    class Args(BaseModel):
        customer: str
        card_token: Redacted[str]
        note: Redacted[str] = ""
        amount: int = 0

    def perform(self, job: object) -> None:
        return None


def test_empty_filter_matches_everything() -> None:
    assert filters.where_clause(ops.JobFilter()) == ("TRUE", {})


def test_each_field_adds_its_constant_fragment_with_bound_values() -> None:
    f = ops.build_filter(
        states=["discarded", "available"],
        queue="mailers",
        worker="app.SendEmail",
        tags=["b", "a", "b"],
        args_contains='{"tenant": "acme"}',
        older_than="2h",
        ids=[3, 1],
    )
    where, params = filters.where_clause(f)
    assert where.split(" AND ") == [
        filters.STATES_CLAUSE,
        filters.QUEUE_CLAUSE,
        filters.WORKER_CLAUSE,
        filters.TAGS_CLAUSE,
        filters.ARGS_CLAUSE,
        filters.OLDER_THAN_CLAUSE,
        filters.IDS_CLAUSE,
    ]
    assert params["states"] == ["available", "discarded"]
    assert params["tags"] == ["a", "b"]
    assert params["ids"] == [1, 3]
    assert params["older_than"] == timedelta(hours=2)
    assert isinstance(params["args_contains"], Jsonb)
    assert "acme" not in where and "mailers" not in where
    without_states, _ = filters.where_clause(f, with_states=False)
    assert filters.STATES_CLAUSE not in without_states


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"states": ["failed"]}, "unknown state 'failed'"),
        ({"args_contains": "[1]"}, "must be a JSON object"),
        ({"args_contains": "{oops"}, "not valid JSON"),
        ({"older_than": "soon"}, "invalid duration"),
        ({"limit": 0}, "invalid filter limit"),
    ],
)
def test_bad_filters_are_one_line_input_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ops.build_filter(**kwargs)  # type: ignore[arg-type]
    assert message in err.value.one_line()
    assert "\n" not in err.value.one_line()


def test_registered_bare_worker_name_resolves_to_its_path() -> None:
    resolved = ops.build_filter(worker="ChargeCard").resolved()
    assert resolved.worker == "tests.ops.test_pure.ChargeCard"
    assert ops.build_filter(worker="Elsewhere").resolved().worker == "Elsewhere"


def test_bulk_filter_uses_default_states_only_without_states_or_ids() -> None:
    assert ops.bulk_filter("retry", ops.JobFilter()).states == (
        "retryable",
        "discarded",
        "cancelled",
    )
    assert ops.bulk_filter("retry", ops.JobFilter(ids=(4,))).states == ()
    assert ops.bulk_filter("cancel", ops.JobFilter(states=("executing",))).states == ("executing",)


GROUPS = [
    GroupRow("discarded", "mailers", "W", 3, "6", 3),
    GroupRow("completed", "q", "W", 1, "4", 4),
]


def test_plan_hash_is_stable_and_sensitive() -> None:
    canonical = ops.build_filter(states=["discarded"]).canonical()
    base = plan_hash(Action.retry, canonical, GROUPS)
    assert base == plan_hash(Action.retry, dict(canonical), list(GROUPS))
    assert len(base) == 64
    moved = [GROUPS[0], GroupRow("completed", "q", "W", 1, "5", 5)]
    assert plan_hash(Action.retry, canonical, moved) != base
    assert plan_hash(Action.discard, canonical, GROUPS) != base
    assert plan_hash(Action.retry, {"states": ["completed"]}, GROUPS) != base
    token = token_of(base)
    assert token_matches(token, base) and token_matches(token.upper() + " ", base)
    assert not token_matches(token[:7], base)


def test_summary_counts_legal_and_illegal() -> None:
    counts = summarise(Action.discard, GROUPS)
    assert (counts["total"], counts["would_act"], counts["would_skip"]) == (4, 0, 4)
    counts = summarise(Action.retry, GROUPS)
    assert counts["by_state"] == {"completed": 1, "discarded": 3}
    assert counts["would_act"] == 4


def test_intent_needs_actor_and_eight_character_reason() -> None:
    assert check_intent(" alice ", "  provider   outage ") == ("alice", "provider outage")
    with pytest.raises(ReasonTooShort):
        check_intent("alice", "  short  ")


@pytest.mark.parametrize(
    ("key", "hidden"),
    [
        ("password", True),
        ("Password", True),
        ("smtp_password", True),
        ("accessToken", True),
        ("refresh-token", True),
        ("API_KEY", True),
        ("apiKey", True),
        ("Authorization", True),
        ("private_key", True),
        ("token_count", False),
        ("author", False),
        ("email", False),
    ],
)
def test_deny_list_matching(key: str, hidden: bool) -> None:
    assert DenyList().matches(key) is hidden


def test_redact_worker_fields_and_nested_deny_keys() -> None:
    args = {
        "customer": "c_1",
        "card_token": "tok_123",
        "note": "vip",
        "amount": 5,
        "extra": {"headers": [{"Authorization": "Bearer x", "accept": "json"}], "ok": 1},
    }
    shown = redact(args, ChargeCard, None)
    assert shown == {
        "customer": "c_1",
        "card_token": REDACTED_TEXT,
        "note": REDACTED_TEXT,
        "amount": 5,
        "extra": {"headers": [{"Authorization": REDACTED_TEXT, "accept": "json"}], "ok": 1},
    }
    assert args["card_token"] == "tok_123"
    assert redact(args, None, ["customer"])["customer"] == REDACTED_TEXT
    assert redact(args, None, ["customer"])["extra"]["headers"][0]["Authorization"] == "Bearer x"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["password", "a", "Token", "b"]), children, max_size=3
            )
        ),
        max_leaves=10,
    )
)
def test_redaction_never_leaks_a_denied_key(value: object) -> None:
    shown = redact({"root": value}, None, None)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if DenyList().matches(k):
                    assert v == REDACTED_TEXT
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(shown)


def test_normalise_key() -> None:
    assert normalise_key("X-Api-Key") == "x_api_key"
    assert normalise_key("clientSecret") == "client_secret"
