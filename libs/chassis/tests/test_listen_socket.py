import asyncio
import socket

from hospital.chassis.app import listen_socket
from hospital.testing.servers import free_port


async def test_http_listener_connections_have_nodelay_and_share_the_port() -> None:
    port = free_port()
    first, second = listen_socket("127.0.0.1", port), listen_socket("127.0.0.1", port)  # SO_REUSEPORT
    accepted: list[socket.socket] = []

    def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("socket"))

    servers = [await asyncio.start_server(handler, sock=s) for s in (first, second)]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(100):
        if accepted:
            break
        await asyncio.sleep(0.01)
    assert accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    writer.close()
    for server in servers:
        server.close()
