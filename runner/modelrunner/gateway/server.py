"""``modelrunner gateway``: bind the listen addresses and serve the gateway with uvicorn."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from modelrunner.gateway.app import create_gateway_app
from modelrunner.gateway.settings import GatewaySettings
from modelrunner.settings import parse_listen


def run(settings: GatewaySettings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    sockets = []
    for address in settings.listen:
        host, port = parse_listen(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.bind((host, port))
        sockets.append(sock)
    config = uvicorn.Config(
        create_gateway_app(settings), log_level=settings.log_level, lifespan="on",
        timeout_graceful_shutdown=30,
    )  # fmt: skip
    print("modelrunner gateway listening on " + ", ".join(settings.listen), flush=True)
    asyncio.run(uvicorn.Server(config).serve(sockets=sockets))
    return 0
