"""How the operator configures kopf: where its bookkeeping lives, and how long it keeps trying
when the API server is away (a watch kopf gives up on is not restarted)."""

from __future__ import annotations

import kopf

from modeloperator.handlers import configure


def test_bookkeeping_under_our_group_and_api_errors_retried_for_minutes() -> None:
    settings = kopf.OperatorSettings()
    default = sum(settings.networking.error_backoffs)  # type: ignore[arg-type]
    configure(settings)
    assert settings.persistence.finalizer == "modelrunner.io/finalizer"
    backoffs = list(settings.networking.error_backoffs)  # type: ignore[arg-type]
    assert default < 60 and sum(backoffs) >= 240  # an etcd restart under load outlasts a minute
    assert max(backoffs) <= 30  # but a recovered API server is noticed within half a minute
