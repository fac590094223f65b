"""`GeneratedPassword`'s provider, called the way the dynamic-provider host calls it."""

from __future__ import annotations

import bcrypt
import pytest

from components.password import ALPHABET, PasswordProvider


def test_numbers_arrive_as_doubles_and_are_accepted():
    checked = PasswordProvider().check({}, {"password_length": 24.0})
    assert checked.failures == []
    assert checked.inputs["password_length"] == 24


@pytest.mark.parametrize("length", [8, 73, 24.5, "24", True, None])
def test_check_names_a_bad_length(length):
    failures = PasswordProvider().check({}, {"password_length": length}).failures
    assert [f.property for f in failures] == ["password_length"]
    assert "from 16 to 72" in failures[0].reason


def test_create_draws_a_password_with_its_bcrypt_hash():
    provider = PasswordProvider()
    first = provider.create({"password_length": 24})
    second = provider.create({"password_length": 24})
    value = first.outs["result"]
    assert len(value) == 24 and set(value) <= set(ALPHABET)
    assert bcrypt.checkpw(value.encode(), first.outs["bcrypt_hash"].encode())
    assert value != second.outs["result"] and first.id != second.id


def test_the_password_is_kept_until_its_length_changes():
    provider = PasswordProvider()
    outs = provider.create({"password_length": 24}).outs
    assert not provider.diff("id", outs, {"password_length": 24}).changes
    longer = provider.diff("id", outs, {"password_length": 32})
    assert longer.changes and longer.replaces == ["password_length"]
