"""Fill a marked block of ``benchmarks/README.md`` with a benchmark's results."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def update_readme(text: str, tag: str) -> None:
    """Put ``text`` between ``<!-- tag:start -->`` and ``<!-- tag:end -->``.

    The block is replaced where it stands, or appended if the README has none.
    """
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    readme = README.read_text()
    block = f"{start}\n{text}\n{end}"
    if start in readme:
        pattern = re.escape(start) + ".*?" + re.escape(end)
        readme = re.sub(pattern, lambda _: block, readme, flags=re.S)
    else:
        readme = readme.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(readme)
    print(f"updated {README}")
