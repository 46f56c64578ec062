"""Produce records whose header names are any bytes, as a Java, Go or C producer may send them.

A Kafka header's name is a string on the wire, but no broker checks that it is UTF-8, and a
producer that is not Python's (librdkafka's C API, Java's ``RecordHeader`` from bytes, Go's
``sarama``) sends whatever bytes it is given. confluent-kafka's Python ``Producer`` cannot: it
encodes every header name it is given as UTF-8. So this module calls the librdkafka that the
``confluent_kafka`` wheel ships (``rd_kafka_produceva``) through :mod:`ctypes`: a record with
the name ``b"\\xff\\xfe"`` reaches the broker as those two bytes. For tests only.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import confluent_kafka

# rd_kafka_vtype_t (rdkafka.h)
_END, _TOPIC, _PARTITION, _VALUE, _KEY, _MSGFLAGS, _HEADER = 0, 1, 3, 4, 5, 7, 9
_MSG_F_COPY = 0x2
_PRODUCER = 0


class _Mem(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _Header(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("val", ctypes.c_void_p), ("size", ctypes.c_ssize_t)]


class _Value(ctypes.Union):
    _fields_ = [
        ("cstr", ctypes.c_char_p),
        ("i", ctypes.c_int),
        ("i32", ctypes.c_int32),
        ("mem", _Mem),
        ("header", _Header),
        ("pad", ctypes.c_char * 64),
    ]


class _Vu(ctypes.Structure):  # rd_kafka_vu_t
    _fields_ = [("vtype", ctypes.c_int), ("u", _Value)]


_DELIVERED = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def _librdkafka() -> ctypes.CDLL:
    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if not found:
        raise FileNotFoundError(f"no librdkafka in {libs}: the confluent-kafka wheel ships one")
    lib = ctypes.CDLL(str(found[0]))
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_char_p, ctypes.c_size_t]  # fmt: skip
    lib.rd_kafka_conf_set_dr_msg_cb.argtypes = [ctypes.c_void_p, _DELIVERED]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_produceva.restype = ctypes.c_void_p
    lib.rd_kafka_produceva.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Vu), ctypes.c_size_t]
    lib.rd_kafka_error_string.restype = ctypes.c_char_p
    lib.rd_kafka_error_string.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_error_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_flush.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
    return lib


class RawRecord:
    """One record: its value, key, partition and headers (names as bytes, no NUL)."""

    def __init__(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int = -1,
        headers: Sequence[tuple[bytes, bytes | None]] = (),
    ) -> None:
        if any(b"\x00" in name for name, _ in headers):
            raise ValueError("librdkafka takes a header name up to its first NUL byte")
        self.value, self.key, self.partition, self.headers = value, key, partition, headers


def produce_raw(
    brokers: str, topic: str, records: Sequence[RawRecord], timeout: float = 30
) -> None:
    """Deliver ``records`` to ``topic`` in order, or raise with librdkafka's reason."""
    lib = _librdkafka()
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    for name, value in (("bootstrap.servers", brokers), ("linger.ms", "0")):
        if lib.rd_kafka_conf_set(conf, name.encode(), value.encode(), errstr, 512) != 0:
            raise ValueError(errstr.value.decode(errors="replace"))
    failures: list[str] = []
    delivered: list[int] = []

    def on_delivery(_rk: int | None, message: int | None, _opaque: int | None) -> None:
        err = ctypes.c_int.from_address(message).value if message else -1  # rkmessage->err
        if err:
            failures.append(lib.rd_kafka_err2str(err).decode(errors="replace"))
        delivered.append(err)

    callback = _DELIVERED(on_delivery)  # kept alive until the producer is destroyed
    lib.rd_kafka_conf_set_dr_msg_cb(conf, callback)
    producer = lib.rd_kafka_new(_PRODUCER, conf, errstr, 512)
    if not producer:
        raise RuntimeError(errstr.value.decode(errors="replace"))
    try:
        for record in records:
            _produce(lib, producer, topic, record)
            lib.rd_kafka_flush(producer, int(timeout * 1000))  # one at a time: in order
        if failures or len(delivered) != len(records):
            raise RuntimeError(
                f"{len(records) - len(delivered) + len(failures)} of {len(records)} records not "
                f"delivered to {topic}: {failures[:3]}"
            )
    finally:
        lib.rd_kafka_destroy(producer)


def _produce(lib: ctypes.CDLL, producer: int, topic: str, record: RawRecord) -> None:
    kept: list[object] = []  # buffers that must outlive the call (copied: _MSG_F_COPY)

    def buffer(data: bytes) -> int:
        made = ctypes.create_string_buffer(data, len(data))
        kept.append(made)
        return ctypes.addressof(made)

    vus: list[_Vu] = []
    topic_name = topic.encode()
    vus.append(_Vu(_TOPIC, _Value(cstr=topic_name)))
    vus.append(_Vu(_MSGFLAGS, _Value(i=_MSG_F_COPY)))
    if record.partition >= 0:
        vus.append(_Vu(_PARTITION, _Value(i32=record.partition)))
    if record.value is not None:
        vus.append(_Vu(_VALUE, _Value(mem=_Mem(buffer(record.value), len(record.value)))))
    if record.key is not None:
        vus.append(_Vu(_KEY, _Value(mem=_Mem(buffer(record.key), len(record.key)))))
    for name, value in record.headers:
        header = (
            _Header(name, buffer(value), len(value))
            if value is not None
            else _Header(name, None, 0)
        )
        vus.append(_Vu(_HEADER, _Value(header=header)))
    array = (_Vu * len(vus))(*vus)
    error = lib.rd_kafka_produceva(producer, array, len(vus))
    if error:
        said = lib.rd_kafka_error_string(error).decode(errors="replace")
        lib.rd_kafka_error_destroy(error)
        raise RuntimeError(f"librdkafka refused a record for {topic}: {said}")
