#!/usr/bin/env python3
"""Build an inverted search index over a (fake, deterministic) product catalogue.

    python3 build_index.py --index products --batch-size 500 --out products.next.json

Documents are processed in batches of --batch-size, the way a real reindex pages through
its source. The index maps every lower-case term to the sorted ids of the documents that
contain it, and is written to a temporary file renamed into place.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ADJECTIVES = ["compact", "wireless", "ergonomic", "silent", "portable", "premium", "basic"]
NOUNS = ["keyboard", "mouse", "monitor", "headset", "dock", "webcam", "charger", "stand"]
COLOURS = ["black", "white", "grey", "blue", "red"]
TOKEN = re.compile(r"[a-z0-9]+")


def catalogue(index: str, size: int) -> Iterator[dict[str, str]]:
    """Deterministic documents: the same index name always yields the same catalogue."""
    for i in range(size):
        adjective = ADJECTIVES[i % len(ADJECTIVES)]
        noun = NOUNS[(i // len(ADJECTIVES)) % len(NOUNS)]
        colour = COLOURS[(i * 7) % len(COLOURS)]
        yield {
            "id": f"{index}-{i:05d}",
            "title": f"{adjective.title()} {noun} ({colour})",
            "body": f"A {colour} {adjective} {noun} for home and office, model {i % 97}.",
        }


def batches(docs: Iterator[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    batch: list[dict[str, str]] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build an inverted index as JSON.")
    parser.add_argument("--index", required=True, help="index name, e.g. products")
    parser.add_argument("--batch-size", type=int, default=500, help="documents per batch")
    parser.add_argument("--docs", type=int, default=2000, help="catalogue size (default: 2000)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.docs < 0:
        parser.error("--docs must not be negative")

    started = time.perf_counter()
    postings: dict[str, set[str]] = defaultdict(set)
    count = 0
    for number, batch in enumerate(batches(catalogue(args.index, args.docs), args.batch_size), 1):
        for doc in batch:
            for term in TOKEN.findall(f"{doc['title']} {doc['body']}".lower()):
                postings[term].add(doc["id"])
        count += len(batch)
        print(f"build: batch {number}: {len(batch)} documents ({count}/{args.docs})")

    index = {
        "index": args.index,
        "documents": count,
        "built_by": os.environ.get("FLOWPLAN_RUN_ID", "manual"),
        "terms": {term: sorted(ids) for term, ids in sorted(postings.items())},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, separators=(",", ":")) + "\n", encoding="utf-8")
    tmp.replace(out)
    elapsed = time.perf_counter() - started
    print(f"build: {count} documents, {len(postings)} terms in {elapsed:.3f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
