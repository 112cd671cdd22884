"""MkDocs hook: docs pages may link to files of the repository outside docs/ (results tables, figures).

The pages are plain Markdown that reads the same on a code host and in the site, so they link to
`../experiments/results/orderings.md` or `../analysis/figures/scale.png` by their real relative path.
MkDocs only knows files under `docs_dir` and, in `--strict` mode, fails on such links. This hook
keeps the links checked instead of silencing them:

- `on_files`: every relative link of a docs page whose target lies outside docs/ must name a file
  that exists inside the repository (else the build stops with the page and the link); each target
  is added to the site as `repo/<path in the repository>` (a results `.md` becomes a page outside
  the nav, a figure a static file);
- `on_page_markdown`: those links are rewritten to the `repo/...` copies, which MkDocs then
  validates like any other link. Links inside docs/ are left alone: MkDocs checks them.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files, InclusionLevel

PREFIX = "repo/"
# An inline Markdown link or image target: `](target)` or `](target#anchor)`, up to the first space.
LINK = re.compile(r"\]\(([^)\s#]+)((?:#[^)\s]*)?)\)")

_targets: dict[str, dict[str, str]] = {}  # page src_uri -> {link as written: src_uri of the copy}


def _outside_links(page: Path, docs_dir: Path, repo_root: Path) -> tuple[dict[str, Path], list[str]]:
    """The page's relative links that leave docs/: link -> file, and one problem line per bad link."""
    found: dict[str, Path] = {}
    problems = []
    for match in LINK.finditer(page.read_text(encoding="utf-8")):
        link = match.group(1)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", link) or link.startswith("/"):
            continue  # a URL or an absolute path: not a repository file
        target = (page.parent / link).resolve()
        if target.is_relative_to(docs_dir):
            continue  # MkDocs validates it
        name = f"docs/{page.relative_to(docs_dir).as_posix()}"
        if not target.is_relative_to(repo_root):
            problems.append(f"{name}: link {link!r} leaves the repository")
        elif not target.is_file():
            problems.append(f"{name}: link {link!r} names no file ({target.relative_to(repo_root)})")
        else:
            found[link] = target
    return found, problems


def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config.docs_dir).resolve()
    repo_root = Path(config.config_file_path).resolve().parent
    _targets.clear()
    problems: list[str] = []
    added: set[str] = set()
    for file in list(files):
        if not file.is_documentation_page() or file.abs_src_path is None:
            continue
        found, bad = _outside_links(Path(file.abs_src_path), docs_dir, repo_root)
        problems += bad
        mapping = {}
        for link, target in found.items():
            src_uri = PREFIX + target.relative_to(repo_root).as_posix()
            mapping[link] = src_uri
            if src_uri not in added and files.get_file_from_path(src_uri) is None:
                inclusion = InclusionLevel.NOT_IN_NAV if src_uri.endswith(".md") else InclusionLevel.UNDEFINED
                files.append(File.generated(config, src_uri, abs_src_path=str(target), inclusion=inclusion))
                added.add(src_uri)
        _targets[file.src_uri] = mapping
    if problems:
        raise PluginError("broken links to repository files:\n  " + "\n  ".join(problems))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    mapping = _targets.get(page.file.src_uri, {})
    if not mapping:
        return markdown
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        link, anchor = match.group(1), match.group(2)
        if link not in mapping:
            return match.group(0)
        return f"]({posixpath.relpath(mapping[link], here or '.')}{anchor})"

    return LINK.sub(rewrite, markdown)
