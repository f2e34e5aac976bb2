#!/usr/bin/env python3
"""Write the field reference of both resources into README.md from the CRDs in crds/.

python hack/gen_reference.py           # update README.md between the reference markers
python hack/gen_reference.py --check   # exit 1 when README.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def rows(schema: dict[str, Any], prefix: str) -> list[str]:
    out = []
    required = set(schema.get("required") or [])
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        kind = sub.get("type", "any")
        if kind == "array":
            kind = f"[]{(sub.get('items') or {}).get('type', 'any')}"
        details = []
        if name in required:
            details.append("required")
        if "default" in sub:
            details.append(f"default `{sub['default']}`")
        if "enum" in sub:
            details.append("one of " + ", ".join(f"`{v}`" for v in sub["enum"]))
        for key, word in (("minimum", "min"), ("maximum", "max")):
            if key in sub:
                details.append(f"{word} {sub[key]}")
        desc = (sub.get("description") or "").replace("|", "\\|")
        extra = f" ({'; '.join(details)})" if details else ""
        out.append(f"| `{path}` | {kind} | {desc}{extra} |")
        if sub.get("type") == "object" and "properties" in sub:
            out += rows(sub, path)
        elif isinstance(sub.get("additionalProperties"), dict):
            out += rows(sub["additionalProperties"], f"{path}.<name>")
    return out


def reference() -> str:
    parts = [START, ""]
    for crd_file in sorted((ROOT / "crds").glob("*.yaml"), reverse=True):
        crd = yaml.safe_load(crd_file.read_text())
        names = crd["spec"]["names"]
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        parts += [
            f"#### {names['kind']} (`{names['shortNames'][0]}`)",
            "",
            schema.get("description", ""),
            "",
            "| field | type | meaning |",
            "|---|---|---|",
        ]
        parts += rows(schema["properties"]["spec"], "spec")
        parts += [""]
    parts.append(END)
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    updated = head + reference() + tail
    if args.check:
        if updated != text:
            print(
                "README.md's field reference is stale: run python hack/gen_reference.py",
                file=sys.stderr,
            )
            return 1
        return 0
    readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
