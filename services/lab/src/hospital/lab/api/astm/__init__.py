"""ASTM E1381/E1394 analyzer protocol layer: framing, records, link state machines, asyncio transport."""

from hospital.lab.api.astm.codec import Frame, FrameBuffer, build_frames, checksum, encode_frame
from hospital.lab.api.astm.dialects import Dialect, detect_dialect
from hospital.lab.api.astm.hostquery import HostOrder, build_host_query_reply
from hospital.lab.api.astm.link import Receiver, Sender
from hospital.lab.api.astm.message import AstmMessage, AstmParseError, Query, Result, parse_message
from hospital.lab.api.astm.server import AstmClient, AstmEndpoint, AstmHandler, AstmServer, Peer

__all__ = [
    "AstmClient",
    "AstmEndpoint",
    "AstmHandler",
    "AstmMessage",
    "AstmParseError",
    "AstmServer",
    "Dialect",
    "Frame",
    "FrameBuffer",
    "HostOrder",
    "Peer",
    "Query",
    "Receiver",
    "Result",
    "Sender",
    "build_frames",
    "build_host_query_reply",
    "checksum",
    "detect_dialect",
    "encode_frame",
    "parse_message",
]
