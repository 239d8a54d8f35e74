from __future__ import annotations

import pytest

from powertools_core.db.urls import check_url, mask_url
from powertools_core.errors import InvalidDatabaseUrl

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"postgresql://app:{SECRET}@db:5432/app", "postgresql://app:***@db:5432/app"),
        (
            f"postgres://app:{SECRET}@db/app?sslmode=require",
            "postgres://app:***@db/app?sslmode=require",
        ),
        (
            f"postgresql://app@db/app?password={SECRET}&sslmode=require",
            "postgresql://app@db/app?password=***&sslmode=require",
        ),
        ("postgresql://app:p%40ss%3Aword@db/app", "postgresql://app:***@db/app"),
        (f"postgresql://app:{SECRET}@[::1]:5433/app", "postgresql://app:***@[::1]:5433/app"),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/pg",
            "postgresql://postgres:@/postgres?host=/tmp/pg",
        ),
        (
            f"host=db user=app password={SECRET} dbname=app",
            "host=db user=app password=*** dbname=app",
        ),
        (f"host=db password='{SECRET} with space' dbname=app", "host=db password=*** dbname=app"),
        (f"host=db PASSWORD = {SECRET}", "host=db PASSWORD = ***"),
    ],
)
def test_mask_url_hides_every_password_form(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert SECRET not in mask_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        f"mysql://app:{SECRET}@db/app",
        f"http://app:{SECRET}@db/app",
        f"host=db password={SECRET} port",
        f"postgresql://app:{SECRET}@db/app?not_a_libpq_option=1",
    ],
)
def test_check_url_rejects_with_a_message_that_hides_the_password(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as caught:
        check_url(url)
    message = caught.value.one_line()
    assert SECRET not in message
    assert "postgresql://USER" in message  # the hint shows the expected shape


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("  postgres://u@h/d  ", "postgres://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql://u@h/d"),
        ("host=h dbname=d", "host=h dbname=d"),
    ],
)
def test_check_url_accepts_and_normalises(url: str, expected: str) -> None:
    assert check_url(url) == expected
