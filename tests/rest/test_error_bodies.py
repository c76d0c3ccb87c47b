"""Discord's error bodies, as the typed errors read them."""

from __future__ import annotations

import pytest

from workers.rest.errors import parse_error_body

FORM = (
    b'{"message":"Invalid Form Body","code":50035,"errors":{"content":{"_errors":'
    b'[{"code":"BASE_TYPE_MAX_LENGTH","message":"Must be 2000 or fewer in length."}]}}}'
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"message":"Missing Permissions","code":50013}', (50013, "Missing Permissions")),
        (
            FORM,
            (
                50035,
                'Invalid Form Body: {"content":{"_errors":[{"code":"BASE_TYPE_MAX_LENGTH",'
                '"message":"Must be 2000 or fewer in length."}]}}',
            ),
        ),
        (b'{"message":"Unknown Channel","code":10003,"errors":null}', (10003, "Unknown Channel")),
        (b"<html>502 Bad Gateway</html>", (0, "non-JSON error body (28 bytes)")),
    ],
    ids=["plain", "form-errors-detail", "null-errors", "html"],
)
def test_error_body_gives_discords_code_and_message(body: bytes, expected: tuple[int, str]) -> None:
    assert parse_error_body(body) == expected
