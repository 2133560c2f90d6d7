"""Which Host names the server answers to, and which Origins count as its own."""

from __future__ import annotations

import socket

from starlette.requests import Request

from bimedix2.serve.config import ServeConfig
from bimedix2.serve.deps import same_origin
from bimedix2.serve.middleware import allowed_hosts


def test_loopback_bind_answers_to_loopback_names_only() -> None:
    hosts = allowed_hosts(ServeConfig(host="127.0.0.1"))
    assert {"127.0.0.1", "localhost", "::1", "[::1]"} <= set(hosts)
    assert "evil.example" not in hosts and "*" not in hosts
    assert "chat.example" in allowed_hosts(ServeConfig(allowed_hosts=("Chat.Example",)))


def test_a_specific_address_is_the_only_name_unless_configured() -> None:
    assert allowed_hosts(ServeConfig(host="192.0.2.7")) == ["192.0.2.7"]
    assert allowed_hosts(ServeConfig(host="192.0.2.7", allowed_hosts=("*",))) == ["*"]
    assert set(allowed_hosts(ServeConfig(host="2001:db8::5"))) == {"2001:db8::5", "[2001:db8::5]"}


def test_a_wildcard_bind_answers_to_this_machines_names() -> None:
    hosts = allowed_hosts(ServeConfig(host="0.0.0.0"))
    assert "0.0.0.0" not in hosts and "localhost" in hosts and socket.gethostname().lower() in hosts


def request_to(host: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [(b"host", host.encode())]})


def test_same_origin_compares_host_and_port() -> None:
    assert same_origin("http://127.0.0.1:8000", request_to("127.0.0.1:8000"))
    assert same_origin("http://localhost", request_to("localhost:80"))
    assert same_origin("https://chat.example", request_to("chat.example"))
    assert same_origin("http://[::1]:8000", request_to("[::1]:8000"))
    assert not same_origin("http://127.0.0.1:3000", request_to("127.0.0.1:8000"))
    assert not same_origin("http://localhost:8000", request_to("127.0.0.1:8000"))
    assert not same_origin("null", request_to("127.0.0.1:8000"))
    assert not same_origin("http://127.0.0.1:8000.evil.example", request_to("127.0.0.1:8000"))
