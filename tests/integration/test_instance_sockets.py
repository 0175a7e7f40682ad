"""The supervisor's listening sockets: one per instance on one port, and connections that do not wait for Nagle."""

from __future__ import annotations

import asyncio
import socket

import pytest

from cloudscale_local.host.instances import ListenError, bind_listeners


def test_connections_accepted_by_an_instance_send_small_writes_at_once() -> None:
    """asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say they are TCP;
    without it a response written as head then body waited for the client's delayed ACK (40 ms)."""
    listeners = bind_listeners("127.0.0.1", 0, 1)
    try:

        async def nodelay_of_an_accepted_connection() -> int:
            accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            class Recorder(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    sock = transport.get_extra_info("socket")
                    accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                    transport.close()

            server = await asyncio.get_running_loop().create_server(Recorder, sock=listeners[0])
            async with server:
                _, writer = await asyncio.open_connection(*listeners[0].getsockname())
                try:
                    return await asyncio.wait_for(accepted, 10)
                finally:
                    writer.close()

        assert asyncio.run(nodelay_of_an_accepted_connection()) != 0
    finally:
        for listener in listeners:
            listener.close()


def test_every_instance_gets_its_own_socket_on_the_one_port() -> None:
    listeners = bind_listeners("127.0.0.1", 0, 3)
    try:
        ports = {listener.getsockname()[1] for listener in listeners}
        assert len(ports) == 1
        assert len({listener.fileno() for listener in listeners}) == 3
    finally:
        for listener in listeners:
            listener.close()


def test_a_port_held_by_another_socket_that_shares_ports_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_listeners("127.0.0.1", port, 2)
