"""``unflatten`` / ``flatten``: the one mapping between a form's flat values and a body, for every provider."""

from __future__ import annotations

from providers.base import dig, flatten, unflatten


def test_unflatten_strips_drops_blanks_and_nests_dotted_names():
    values = {
        "identity": " ann ",
        "messaging_binding.address": "+1555",
        "messaging_binding.proxy": " ",
        "x": 1,
    }
    names = ["identity", "messaging_binding.address", "messaging_binding.proxy", "x", "missing"]
    assert unflatten(values, names) == {"identity": "ann", "messaging_binding": {"address": "+1555"}}


def test_unflatten_keeps_dotted_keys_whole_when_not_nested():
    assert unflatten({"Timers.Inactive": "PT5M"}, ["Timers.Inactive"], nested=False) == {
        "Timers.Inactive": "PT5M"
    }


def test_flatten_digs_objects_and_lists_and_says_what_is_missing():
    body = {"threads": [{"posts": [{"body": {"content": "hi"}}]}], "count": 0, "empty": ""}
    names = ["threads.0.posts.0.body.content", "threads.1.posts", "count", "empty"]
    assert flatten(body, names) == {"threads.0.posts.0.body.content": "hi", "count": "0"}
    assert flatten(body, names, present=bool, blank=True) == {
        "threads.0.posts.0.body.content": "hi",
        "threads.1.posts": "",
        "count": "",
        "empty": "",
    }
    assert dig(body, "threads.0.posts.9") is None and dig("text", "a") is None


def test_flatten_undoes_unflatten():
    names = ["a", "b.c", "b.d"]
    values = {"a": "1", "b.c": "2", "b.d": "3"}
    assert flatten(unflatten(values, names), names) == values
