#!/usr/bin/env python3
"""Writes tests/data/toolhive-contract.json: the wire-contract facts berth's
tests check (paths, methods, status codes, schema field names) taken from
ToolHive's OpenAPI reference, so the tests need no file outside the
repository. Usage: extract-contract.py REFERENCE.json > toolhive-contract.json
(.ci/run checks that the committed file matches the reference)."""
import json
import sys

ref = json.load(open(sys.argv[1]))
paths = {}
for path, item in sorted(ref["paths"].items()):
    ops = {}
    for method, op in sorted(item.items()):
        if method in ("get", "put", "post", "delete", "patch", "head", "options"):
            ops[method] = sorted(op.get("responses", {}).keys())
    paths[path] = ops
schemas = {
    name: sorted(schema.get("properties", {}).keys())
    for name, schema in sorted(ref.get("components", {}).get("schemas", {}).items())
}
json.dump({"source": "ToolHive OpenAPI reference", "paths": paths, "schemas": schemas},
          sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")
