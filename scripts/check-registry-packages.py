#!/usr/bin/env python3
"""Check berth's built-in registry catalogue (src/registry/data/catalog.json).

Run by hand when the catalogue changes; CI does not run it, so CI stays
offline-safe. Python 3.11 or later, standard library only.

    python3 scripts/check-registry-packages.py [path/to/catalog.json] [--offline]

Local checks (always):
  - the envelope: `$schema`, `version`, `meta.last_updated`, `data.servers`;
  - each entry: `$schema`, a reverse-DNS `name` (unique, entries sorted by
    name), `description` of 1-100 characters, `version`;
  - each entry has a way to run: an npm, pypi or oci package, or (and then
    no packages) a `remotes` entry;
  - versions are pinned: npm and pypi packages carry an exact `version` (no
    ranges, no `latest`), OCI images a tag other than `latest` or a digest;
  - transports, environment variable names, and the `_meta` extension block
    (keyed by the OCI identifier, else the npm/pypi identifier, else the
    remote URL; tool names and tags well formed).

Online checks (unless --offline), one line per package:
  - npm:  https://registry.npmjs.org/<url-encoded name>/<version> answers 200
  - pypi: https://pypi.org/pypi/<name>/<version>/json answers 200 (when a
    mirror lacks that document: the project document lists the release)
OCI images are not checked online (container registries need tokens).

Exits 1 when any check fails.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ENVELOPE_SCHEMA = (
    "https://raw.githubusercontent.com/stacklok/toolhive-core/main/"
    "registry/types/data/upstream-registry.schema.json"
)
SERVER_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
META_KEY = "io.modelcontextprotocol.registry/publisher-provided"
PUBLISHER = "io.github.stacklok"

NAME_RE = re.compile(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOOL_RE = re.compile(r"^[\w-]+$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*[a-z0-9]$")
# An exact version: no operators, wildcards, spaces or `latest`.
EXACT_VERSION_RE = re.compile(r"^v?\d+(\.\d+)*([.+-][0-9A-Za-z.+-]+)?$")
TRANSPORTS = {"stdio", "sse", "streamable-http"}
REGISTRY_TYPES = {"npm", "pypi", "oci"}
TIERS = {"Official", "Community"}

TIMEOUT = 30
USER_AGENT = "berth-check-registry-packages/1"


class Report:
    """Collects failures; prints each as it is found."""

    def __init__(self) -> None:
        self.failures = 0

    def fail(self, where: str, what: str) -> None:
        self.failures += 1
        print(f"FAIL {where}: {what}")


def oci_tag(identifier: str) -> str | None:
    """The tag (or digest) of an image reference, or None when it has neither."""
    if "@" in identifier:
        return identifier.split("@", 1)[1]
    last = identifier.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def check_envelope(doc: object, r: Report) -> list[dict]:
    if not isinstance(doc, dict):
        r.fail("envelope", "not a JSON object")
        return []
    if doc.get("$schema") != ENVELOPE_SCHEMA:
        r.fail("envelope", f"$schema should be {ENVELOPE_SCHEMA}")
    if not isinstance(doc.get("version"), str) or not doc["version"]:
        r.fail("envelope", "missing version")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("last_updated"), str):
        r.fail("envelope", "missing meta.last_updated")
    data = doc.get("data")
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, list) or not servers:
        r.fail("envelope", "data.servers should be a non-empty list")
        return []
    return servers


def check_transport(where: str, transport: object, r: Report) -> None:
    if not isinstance(transport, dict) or transport.get("type") not in TRANSPORTS:
        r.fail(where, f"transport.type should be one of {sorted(TRANSPORTS)}")
        return
    if transport["type"] != "stdio":
        url = transport.get("url", "")
        if not isinstance(url, str) or not url.startswith("http://localhost:"):
            r.fail(where, "an HTTP transport of a package needs url http://localhost:<port>/...")


def check_env(where: str, envs: object, r: Report) -> None:
    if envs is None:
        return
    if not isinstance(envs, list):
        r.fail(where, "environmentVariables should be a list")
        return
    seen = set()
    for e in envs:
        name = e.get("name") if isinstance(e, dict) else None
        if not isinstance(name, str) or not ENV_RE.match(name):
            r.fail(where, f"bad environment variable name {name!r}")
            continue
        if name in seen:
            r.fail(where, f"environment variable {name} declared twice")
        seen.add(name)
        if not e.get("description"):
            r.fail(where, f"environment variable {name} has no description")


def check_package(where: str, p: object, r: Report) -> None:
    if not isinstance(p, dict):
        r.fail(where, "package is not an object")
        return
    rtype, ident = p.get("registryType"), p.get("identifier")
    if rtype not in REGISTRY_TYPES:
        r.fail(where, f"registryType {rtype!r} is not one of {sorted(REGISTRY_TYPES)}")
        return
    if not isinstance(ident, str) or not ident:
        r.fail(where, "package without identifier")
        return
    where = f"{where} {rtype} {ident}"
    if rtype == "oci":
        tag = oci_tag(ident)
        if not tag or tag == "latest":
            r.fail(where, "OCI image must be pinned to a tag other than latest, or a digest")
        if p.get("version") not in (None, tag):
            r.fail(where, "an OCI package's version, when given, must match its tag")
    else:
        version = p.get("version")
        if not isinstance(version, str) or not EXACT_VERSION_RE.match(version):
            r.fail(where, f"version {version!r} is not an exact pinned version")
    check_transport(where, p.get("transport"), r)
    check_env(where, p.get("environmentVariables"), r)
    for arg in p.get("packageArguments", []) or []:
        if not isinstance(arg, dict) or arg.get("type") not in ("positional", "named"):
            r.fail(where, f"bad package argument {arg!r}")


def check_meta(where: str, entry: dict, r: Report) -> None:
    packages = entry.get("packages") or []
    remotes = entry.get("remotes") or []
    oci = [p.get("identifier") for p in packages if isinstance(p, dict) and p.get("registryType") == "oci"]
    others = [
        p.get("identifier") for p in packages if isinstance(p, dict) and p.get("registryType") in ("npm", "pypi")
    ]
    expected = (oci or others or [rem.get("url") for rem in remotes] or [None])[0]
    block = (entry.get("_meta") or {}).get(META_KEY, {}).get(PUBLISHER)
    if not isinstance(block, dict) or list(block) != [expected]:
        r.fail(where, f"_meta {META_KEY}/{PUBLISHER} should have exactly the key {expected!r}")
        return
    ext = block[expected]
    if str(ext.get("status", "")).lower() != "active":
        r.fail(where, "_meta status should be active")
    if ext.get("tier") not in TIERS:
        r.fail(where, f"_meta tier should be one of {sorted(TIERS)}")
    for tool in ext.get("tools", []):
        if not isinstance(tool, str) or not TOOL_RE.match(tool):
            r.fail(where, f"bad tool name {tool!r}")
    tags = ext.get("tags", [])
    if not tags:
        r.fail(where, "_meta has no tags")
    for tag in tags:
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            r.fail(where, f"bad tag {tag!r}")


def check_entry(entry: object, r: Report) -> None:
    if not isinstance(entry, dict):
        r.fail("data.servers", "an entry is not an object")
        return
    name = entry.get("name")
    where = str(name)
    if entry.get("$schema") != SERVER_SCHEMA:
        r.fail(where, f"$schema should be {SERVER_SCHEMA}")
    if not isinstance(name, str) or not NAME_RE.match(name):
        r.fail(where, "name should be reverse-DNS namespace/name")
    description = entry.get("description")
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        r.fail(where, "description should have 1-100 characters")
    if not isinstance(entry.get("version"), str) or not entry["version"]:
        r.fail(where, "missing version")
    elif entry["version"] == "latest":
        r.fail(where, "version must not be latest")
    packages = entry.get("packages") or []
    remotes = entry.get("remotes") or []
    if packages and remotes:
        r.fail(where, "an entry with remotes should have no packages")
    if not packages and not remotes:
        r.fail(where, "no way to run: no packages and no remotes")
    for p in packages:
        check_package(where, p, r)
    for rem in remotes:
        url = rem.get("url") if isinstance(rem, dict) else None
        if not isinstance(rem, dict) or rem.get("type") not in ("sse", "streamable-http"):
            r.fail(where, "remote type should be sse or streamable-http")
        if not isinstance(url, str) or not url.startswith("https://"):
            r.fail(where, f"remote url {url!r} should be https")
    check_meta(where, entry, r)


def check_local(servers: list, r: Report) -> None:
    names = [e.get("name") for e in servers if isinstance(e, dict)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    for n in dupes:
        r.fail(n, "name is not unique")
    if names != sorted(names):
        r.fail("data.servers", "entries are not sorted by name")
    last = [n.rsplit("/", 1)[-1] for n in names if isinstance(n, str)]
    for seg in sorted({s for s in last if last.count(s) > 1}):
        print(f"note: short name {seg!r} is used by more than one entry")
    for entry in servers:
        check_entry(entry, r)


def url_for(rtype: str, name: str, version: str) -> str:
    if rtype == "npm":
        return f"https://registry.npmjs.org/{urllib.parse.quote(name, safe='@')}/{urllib.parse.quote(version)}"
    return f"https://pypi.org/pypi/{urllib.parse.quote(name)}/{urllib.parse.quote(version)}/json"


def exists(url: str) -> tuple[bool | None, str]:
    """(True, "") on 200, (False, status) on 404/410, (None, reason) otherwise."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return (resp.status == 200, str(resp.status))
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            return (False, str(err.code))
        return (None, f"HTTP {err.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        return (None, str(getattr(err, "reason", err)))


def pypi_release_listed(name: str, version: str) -> tuple[bool | None, str]:
    """Whether PyPI's project document lists files for `version`."""
    url = f"https://pypi.org/pypi/{urllib.parse.quote(name)}/json"
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as err:
        return (False, str(err.code)) if err.code in (404, 410) else (None, f"HTTP {err.code}")
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as err:
        return (None, str(getattr(err, "reason", err)))
    files = (doc.get("releases") or {}).get(version)
    if not files:
        return (False, "404, and not among the project's releases")
    if all(f.get("yanked") for f in files):
        return (False, "yanked")
    return (True, "")


def check_online(servers: list, r: Report) -> None:
    seen = set()
    for entry in servers:
        packages = (entry.get("packages") or []) if isinstance(entry, dict) else []
        for p in packages:
            if not isinstance(p, dict):
                continue
            rtype = p.get("registryType")
            if rtype not in ("npm", "pypi"):
                continue
            key = (rtype, p.get("identifier"), p.get("version"))
            if key in seen:
                continue
            seen.add(key)
            _, name, version = key
            label = f"{rtype} {name}@{version}"
            ok, why = exists(url_for(rtype, name, version))
            if ok is False and rtype == "pypi":
                # Some PyPI mirrors serve only the project document, not the
                # per-version one: fall back to its `releases` table.
                ok, why = pypi_release_listed(name, version)
                if ok:
                    label += " (project JSON)"
            if ok:
                print(f"ok {label}")
            elif ok is False:
                r.failures += 1
                print(f"MISSING {label} ({why})")
            else:
                r.failures += 1
                print(f"ERROR {label} ({why})")


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    offline = "--offline" in argv
    unknown = [a for a in argv if a.startswith("--") and a != "--offline"]
    if unknown or len(args) > 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    default = Path(__file__).resolve().parent.parent / "src" / "registry" / "data" / "catalog.json"
    path = Path(args[0]) if args else default
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        print(f"FAIL {path}: {err}")
        return 1
    r = Report()
    servers = check_envelope(doc, r)
    check_local(servers, r)
    print(f"{len(servers)} entries checked locally, {r.failures} problem(s)")
    if not offline:
        check_online(servers, r)
    if r.failures:
        print(f"{r.failures} problem(s)")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
