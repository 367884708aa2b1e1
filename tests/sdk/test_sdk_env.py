"""jobfn.env: the one environment reader; each problem is one line naming the variable."""

from __future__ import annotations

import pytest

from jobfn.env import Env, EnvError


def test_unset_or_blank_values_take_the_default() -> None:
    env = Env({"BLANK": "  ", "SET": " value "})
    assert env.text("MISSING") is None
    assert env.text("BLANK", "fallback") == "fallback"
    assert env.text("SET") == "value"
    assert env.integer("BLANK", 7) == 7
    assert env.flag("MISSING", True) is True
    assert env.json_object("MISSING", "a JSON object") == {}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda e: e.integer("PORT", 1, minimum=1, maximum=65535),
            "PORT: expected an integer from 1 to 65535 (got 'x')",
        ),
        (
            lambda e: e.flag("PORT"),
            "PORT: expected a boolean (true/false, 1/0, yes/no, on/off) (got 'x')",
        ),
        (lambda e: e.seconds("PORT", 1.0), "PORT: expected a number of seconds ≥ 0 (got 'x')"),
        (lambda e: e.http_url("PORT"), "PORT: expected an http(s) URL with a host (got 'x')"),
        (
            lambda e: e.json_object("PORT", "a JSON object"),
            "PORT: expected a JSON object (got 'x')",
        ),
        (lambda e: e.required("NOPE", "a host name"), "NOPE: expected a host name (not set)"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(call: object, message: str) -> None:
    with pytest.raises(EnvError) as info:
        call(Env({"PORT": "x"}))  # type: ignore[operator]
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_values_are_typed_and_bounded() -> None:
    env = Env({"N": "42", "S": "2.5", "B": "Yes", "U": "https://example.com/", "J": '{"a": 1}'})
    assert env.integer("N", 0, maximum=100) == 42
    assert env.seconds("S", 0.0, maximum=3) == 2.5
    assert env.flag("B") is True
    assert env.http_url("U") == "https://example.com"
    assert env.json_object("J", "an object") == {"a": 1}
    with pytest.raises(EnvError, match=r"^N: expected an integer from 1 to 10 \(got '42'\)$"):
        env.integer("N", 1, maximum=10)
    with pytest.raises(EnvError, match=r"^S: expected a number of seconds from 0 to 1"):
        env.seconds("S", 0.0, maximum=1)


def test_callers_choose_their_error_class() -> None:
    class MyError(EnvError):
        pass

    with pytest.raises(MyError, match=r"^X: expected"):
        Env({"X": "nope"}, error=MyError).flag("X")
