"""Upstream calls counted at the wire: the kernel's own timestamp of each request's first packet.

The simulator stamps a call when its handler runs. On a loaded machine a starved simulator reads
several requests late and stamps them together, so its busiest second can count calls that left
their senders a slot apart. What upstream's ceiling is about is when the requests left, and the
kernel knows: a packet socket on the loopback device (Linux, CAP_NET_RAW; the benches run as
root) sees every TCP segment to the simulator's port, and SO_TIMESTAMPNS stamps each one as the
device passed it, however late this process reads it.

A segment whose payload starts with "POST " is a request's first bytes (phonebridge's client
writes a request's headers and body together, service/wire.py), so one per call. Where the socket
cannot be opened (not Linux, not root) the counter says so and counts nothing: the benches print
the simulator's figure alone.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
from types import TracebackType

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: the packet's type, for BPF
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
_HEADER_BYTES = 14 + 60 + 60 + 5  # Ethernet, IPv4 and TCP headers at their longest, "POST "


def _dst_port_filter(port: int) -> bytes:
    """A classic BPF program: IPv4 TCP segments to `port` as they leave, unfragmented (`outbound
    and tcp dst port N`), so the kernel drops PostgreSQL's and Redis's loopback traffic before it
    reaches this socket."""
    program = [
        (0x30, 0, 0, SKF_AD_PKTTYPE),  # ldb: the packet's type
        (0x15, 0, 10, PACKET_OUTGOING),  # leaving (loopback shows each twice), or drop
        (0x28, 0, 0, 12),  # ldh [12]: the ethertype
        (0x15, 0, 8, 0x0800),  # IPv4, or drop
        (0x30, 0, 0, 23),  # ldb [23]: the IP protocol
        (0x15, 0, 6, 6),  # TCP, or drop
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, 4, 0, 0x1FFF),  # a fragment after the first: drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): the IP header's length
        (0x48, 0, 0, 16),  # ldh [x+16]: the TCP destination port
        (0x15, 0, 1, port),  # the port, or drop
        (0x06, 0, 0, 0xFFFF),  # accept (the first 64 KiB)
        (0x06, 0, 0, 0),  # drop
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


def request_start(frame: bytes, port: int) -> bool:
    """Whether a captured loopback frame (Ethernet, IPv4, TCP) carries the first bytes of an HTTP
    POST to `port`. (The filter says as much, but frames queued before it was attached did not
    pass it.)"""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 6:
        return False
    ip = frame[14:]
    tcp = ip[(ip[0] & 0x0F) * 4 :]
    if len(tcp) < 20 or int.from_bytes(tcp[2:4], "big") != port:
        return False
    payload = (tcp[12] >> 4) * 4
    return tcp[payload : payload + 5] == b"POST "


class WireCalls:
    """Counts the POSTs sent to a loopback port while it runs (a context manager): `times` is each
    one's kernel timestamp (epoch seconds, the clock time.time() reads)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.times: list[float] = []
        self.unavailable: str | None = None
        self.dropped = 0
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> WireCalls:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except (AttributeError, OSError) as error:
            self.unavailable = f"no packet socket ({error.__class__.__name__})"
            return self
        try:
            instructions = _dst_port_filter(self.port)
            program = ctypes.create_string_buffer(instructions)
            fprog = struct.pack("HL", len(instructions) // 8, ctypes.addressof(program))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            # Room for seconds of frames should this thread be starved (CAP_NET_ADMIN).
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
            sock.bind(("lo", 0))
            sock.settimeout(0.2)
        except OSError as error:
            sock.close()
            self.unavailable = f"the packet socket could not be set up ({error.__class__.__name__})"
            return self
        self._socket = sock
        self._thread = threading.Thread(target=self._read, name="wire-calls", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                frame, ancillary, _flags, address = self._socket.recvmsg(_HEADER_BYTES, 64)
            except TimeoutError:
                continue
            # Loopback shows each segment twice, leaving and arriving: count it leaving.
            if address[2] != PACKET_OUTGOING or not request_start(frame, self.port):
                continue
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", data[:16])
                    self.times.append(seconds + nanoseconds / 1e9)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._socket is not None:
            # Frames the kernel dropped for want of room: calls not counted.
            _received, self.dropped = struct.unpack(
                "II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            )
            self._socket.close()

    def between(self, since: float, until: float) -> list[float]:
        return [t for t in self.times if since <= t < until]
