"""Check that relative links in Markdown files point at files that exist (used by `make docs`).

Usage: python .ci/check_links.py README.md docs [more files or folders]
External links (http/https/mailto) are not fetched. Anchors are checked for links into Markdown
files: `page.md#some-heading` must match a heading of that page (GitHub's slug rules, simplified).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[`*_]", "", s)
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", md.read_text(encoding="utf-8")))}


def check(md: Path) -> list[str]:
    errors = []
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, frag = target.partition("#")
        dest = md if not path else (md.parent / path).resolve()
        if not dest.exists():
            errors.append(f"{md}: broken link {target}")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            errors.append(f"{md}: no heading for anchor {target}")
    return errors


def main(args: list[str]) -> int:
    files: list[Path] = []
    for a in args or ["README.md", "docs"]:
        p = Path(a)
        files += sorted(p.rglob("*.md")) if p.is_dir() else [p]
    errors = [e for f in files for e in check(f)]
    print("\n".join(errors) if errors else f"links ok in {len(files)} files")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
