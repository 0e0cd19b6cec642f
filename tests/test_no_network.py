import httpx
import pytest


def test_a_test_that_forgets_to_mock_a_provider_cannot_reach_it():
    with pytest.raises(httpx.ConnectError, match="tests must not reach the network"):
        httpx.get("https://api.mixin.one/me")
