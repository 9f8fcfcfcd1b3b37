"""Read what an offline W&B run recorded (``run-<id>.wandb``), for tests: no network, no mocks.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version) followed by LevelDB
log blocks of 32 KiB holding protobuf ``Record`` messages (chunked FULL/FIRST/MIDDLE/LAST).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7  # crc32c (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[Any]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    records, chunks, pos = [], b"", 7
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + HEADER])
        if pos + HEADER + length > len(data):  # a chunk still being written
            break
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        chunks = payload if kind in (FULL, FIRST) else chunks + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
    return records


def closed_records(path: str | Path, timeout: float = 300.0) -> list[Any]:
    """The records once the log ends with the run's ``exit`` record.

    ``wandb.finish()`` (and a process's exit) can return before W&B's service has written the last
    buffered records to the file; reading at once then misses the final rows. On a loaded 2-core
    machine that took over 60 s once.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path) if Path(path).is_file() else []
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        if time.monotonic() > deadline:
            last = records[-1].WhichOneof("record_type") if records else None
            raise AssertionError(f"{path}: no exit record within {timeout} s (last record: {last})")
        time.sleep(0.1)


def history(path: str | Path) -> list[dict[str, Any]]:
    """Every ``log`` call of the run: ``{key: value}`` dicts (values JSON-decoded), in order."""
    rows = []
    for record in closed_records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def config(path: str | Path) -> dict[str, Any]:
    """The run config (``wandb.config``) as the last config records left it."""
    result: dict[str, Any] = {}
    for record in closed_records(path):
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            for item in updates:
                key = item.key or "/".join(item.nested_key)
                result[key] = json.loads(item.value_json)
    return result
