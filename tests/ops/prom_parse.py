#!/usr/bin/env python3
"""Parses Prometheus text exposition from stdin with the official Python client's parser and
prints every sample as one JSON object: {"samples": [[name, {labels}, value], ...],
"families": {name: type}}. A parse error exits non-zero (the tests then fail)."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    text = sys.stdin.read()
    samples = []
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for s in family.samples:
            samples.append([s.name, s.labels, s.value])
    json.dump({"samples": samples, "families": families}, sys.stdout)


if __name__ == "__main__":
    main()
